-- Trinity's tables as a fresh install creates them (SQLite), all NOT NULL columns included.
CREATE TABLE agent_ownership (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_name TEXT UNIQUE NOT NULL,
    owner_id INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    is_system INTEGER DEFAULT 0,
    use_platform_api_key INTEGER DEFAULT 1,
    autonomy_enabled INTEGER DEFAULT 0,
    max_parallel_tasks INTEGER DEFAULT 3,
    execution_timeout_seconds INTEGER DEFAULT 900,
    read_only_mode INTEGER DEFAULT 0,
    memory_limit TEXT,
    cpu_limit TEXT,
    full_capabilities INTEGER DEFAULT 0,
    guardrails_config TEXT
);
CREATE TABLE agent_schedules (
    id TEXT PRIMARY KEY,
    agent_name TEXT NOT NULL,
    name TEXT NOT NULL,
    cron_expression TEXT NOT NULL,
    message TEXT NOT NULL,
    enabled INTEGER DEFAULT 1,
    timezone TEXT,
    description TEXT,
    owner_id INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_run_at TEXT,
    next_run_at TEXT,
    timeout_seconds INTEGER DEFAULT 900,
    allowed_tools TEXT,
    model TEXT
);
CREATE TABLE schedule_executions (
    id TEXT PRIMARY KEY,
    schedule_id TEXT NOT NULL,
    agent_name TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    completed_at TEXT,
    duration_ms INTEGER,
    message TEXT NOT NULL,
    response TEXT,
    error TEXT,
    triggered_by TEXT NOT NULL,
    context_used INTEGER,
    context_max INTEGER,
    cost REAL,
    tool_calls TEXT,
    execution_log TEXT,
    model_used TEXT,
    subscription_id TEXT,
    source_user_id INTEGER,
    source_user_email TEXT,
    source_agent_name TEXT,
    source_mcp_key_id TEXT,
    source_mcp_key_name TEXT,
    claude_session_id TEXT,
    fan_out_id TEXT,
    FOREIGN KEY (schedule_id) REFERENCES agent_schedules(id)
);
CREATE INDEX idx_executions_schedule ON schedule_executions(schedule_id);
CREATE INDEX idx_executions_agent ON schedule_executions(agent_name);
CREATE INDEX idx_executions_status ON schedule_executions(status);
CREATE INDEX idx_executions_agent_started ON schedule_executions(agent_name, started_at DESC);
CREATE INDEX idx_executions_subscription ON schedule_executions(subscription_id, started_at);
CREATE INDEX idx_executions_fan_out ON schedule_executions(fan_out_id);
