
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'trinity-watchdog' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'trinity-watchdog'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'trinity-watchdog' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'Trinity''s SQLite database')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Trinity''s PostgreSQL database, e.g. postgres://trinity@db/trinity; used instead of --db')
            [CompletionResult]::new('--redis-url', '--redis-url', [CompletionResultType]::ParameterName, 'Redis holding the capacity slots, e.g. redis://redis:6379. Unset means capacity is not checked')
            [CompletionResult]::new('--events', '--events', [CompletionResultType]::ParameterName, 'Publish a recovery event per won write to Trinity''s event stream (trinity:events), so that open dashboards update at once: auto (when the stream exists), on, or off')
            [CompletionResult]::new('--agent-url', '--agent-url', [CompletionResultType]::ParameterName, 'Agent base URL; {agent} is replaced by the percent-encoded agent name')
            [CompletionResult]::new('--agent-secret', '--agent-secret', [CompletionResultType]::ParameterName, 'Shared secret for the X-Trinity-Agent-Token header (never printed)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'A PEM file of CA certificates to trust for agents, Redis and PostgreSQL, next to the system''s roots (repeatable; without it, TRINITY_CA_CERT: a `:`-separated list)')
            [CompletionResult]::new('--agent', '--agent', [CompletionResultType]::ParameterName, 'Only look at this agent (repeatable)')
            [CompletionResult]::new('--shard', '--shard', [CompletionResultType]::ParameterName, 'Own only the agents of shard K of N (K from 0, as JOB_COMPLETION_INDEX): those whose name''s 64-bit FNV-1a hash is K modulo N. N instances split one fleet; each has its own apply lock')
            [CompletionResult]::new('--grace', '--grace', [CompletionResultType]::ParameterName, 'How long a row the agent does not know is left alone after it started')
            [CompletionResult]::new('--default-timeout', '--default-timeout', [CompletionResultType]::ParameterName, 'Timeout of a running row whose schedule and agent set none (Trinity''s own default; 900s for deployments of the seed era)')
            [CompletionResult]::new('--http-timeout', '--http-timeout', [CompletionResultType]::ParameterName, 'Time limit for each request to an agent')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'How many agents are queried at once [default: half of the descriptor limit (the soft RLIMIT_NOFILE, first raised to the hard one) less 64, at most 512; 480 under 1024]')
            [CompletionResult]::new('--terminate-timeout', '--terminate-timeout', [CompletionResultType]::ParameterName, 'Time limit for a terminate request (the agent needs ~10 s: SIGINT, 5 s, SIGKILL)')
            [CompletionResult]::new('--max-actions', '--max-actions', [CompletionResultType]::ParameterName, 'Refuse an apply whose plan has more actions than this (exit 5) unless --force')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Append one JSON line per applied action to this file')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format of the result on stdout')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of the result on stdout')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to color the table')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Write the run''s figures here in the Prometheus text format (node_exporter textfile collector)')
            [CompletionResult]::new('--no-redis', '--no-redis', [CompletionResultType]::ParameterName, 'Do not use Redis even if REDIS_URL is set')
            [CompletionResult]::new('--recover-abandoned', '--recover-abandoned', [CompletionResultType]::ParameterName, 'Fail `abandoned` rows (their agent was deleted and does not answer) instead of only reporting them: guarded write, capacity release, activity close; no terminate')
            [CompletionResult]::new('--apply', '--apply', [CompletionResultType]::ParameterName, 'Carry out the plan''s actions (without it nothing is changed)')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Apply even past --max-actions or the systemic-failure brake')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Show healthy executions in the table too')
            [CompletionResult]::new('--exit-code', '--exit-code', [CompletionResultType]::ParameterName, 'Exit with 4 when the plan has an action, an unreachable agent, or an item or capacity finding that needs a person')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stderr but errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stderr but errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more on stderr (per-agent timings)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more on stderr (per-agent timings)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('scan', 'scan', [CompletionResultType]::ParameterValue, 'Show the full plan: every running execution, agent process and leaked slot, with its verdict')
            [CompletionResult]::new('recover', 'recover', [CompletionResultType]::ParameterValue, 'Plan only `orphaned` rows and `leaked_slot`s. Never terminates a process')
            [CompletionResult]::new('kill', 'kill', [CompletionResultType]::ParameterValue, 'Plan `timed_out` and `zombie` processes, or terminate exactly the executions named')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'trinity-watchdog;scan' {
            [CompletionResult]::new('--save', '--save', [CompletionResultType]::ParameterName, 'Save the plan''s actions, with the facts each depends on, to this file for review')
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'Apply exactly the actions saved in this file (with --apply); each is re-checked first')
            [CompletionResult]::new('--max-plan-age', '--max-plan-age', [CompletionResultType]::ParameterName, 'Refuse a saved plan older than this')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'Trinity''s SQLite database')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Trinity''s PostgreSQL database, e.g. postgres://trinity@db/trinity; used instead of --db')
            [CompletionResult]::new('--redis-url', '--redis-url', [CompletionResultType]::ParameterName, 'Redis holding the capacity slots, e.g. redis://redis:6379. Unset means capacity is not checked')
            [CompletionResult]::new('--events', '--events', [CompletionResultType]::ParameterName, 'Publish a recovery event per won write to Trinity''s event stream (trinity:events), so that open dashboards update at once: auto (when the stream exists), on, or off')
            [CompletionResult]::new('--agent-url', '--agent-url', [CompletionResultType]::ParameterName, 'Agent base URL; {agent} is replaced by the percent-encoded agent name')
            [CompletionResult]::new('--agent-secret', '--agent-secret', [CompletionResultType]::ParameterName, 'Shared secret for the X-Trinity-Agent-Token header (never printed)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'A PEM file of CA certificates to trust for agents, Redis and PostgreSQL, next to the system''s roots (repeatable; without it, TRINITY_CA_CERT: a `:`-separated list)')
            [CompletionResult]::new('--agent', '--agent', [CompletionResultType]::ParameterName, 'Only look at this agent (repeatable)')
            [CompletionResult]::new('--shard', '--shard', [CompletionResultType]::ParameterName, 'Own only the agents of shard K of N (K from 0, as JOB_COMPLETION_INDEX): those whose name''s 64-bit FNV-1a hash is K modulo N. N instances split one fleet; each has its own apply lock')
            [CompletionResult]::new('--grace', '--grace', [CompletionResultType]::ParameterName, 'How long a row the agent does not know is left alone after it started')
            [CompletionResult]::new('--default-timeout', '--default-timeout', [CompletionResultType]::ParameterName, 'Timeout of a running row whose schedule and agent set none (Trinity''s own default; 900s for deployments of the seed era)')
            [CompletionResult]::new('--http-timeout', '--http-timeout', [CompletionResultType]::ParameterName, 'Time limit for each request to an agent')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'How many agents are queried at once [default: half of the descriptor limit (the soft RLIMIT_NOFILE, first raised to the hard one) less 64, at most 512; 480 under 1024]')
            [CompletionResult]::new('--terminate-timeout', '--terminate-timeout', [CompletionResultType]::ParameterName, 'Time limit for a terminate request (the agent needs ~10 s: SIGINT, 5 s, SIGKILL)')
            [CompletionResult]::new('--max-actions', '--max-actions', [CompletionResultType]::ParameterName, 'Refuse an apply whose plan has more actions than this (exit 5) unless --force')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Append one JSON line per applied action to this file')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format of the result on stdout')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of the result on stdout')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to color the table')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Write the run''s figures here in the Prometheus text format (node_exporter textfile collector)')
            [CompletionResult]::new('--no-redis', '--no-redis', [CompletionResultType]::ParameterName, 'Do not use Redis even if REDIS_URL is set')
            [CompletionResult]::new('--recover-abandoned', '--recover-abandoned', [CompletionResultType]::ParameterName, 'Fail `abandoned` rows (their agent was deleted and does not answer) instead of only reporting them: guarded write, capacity release, activity close; no terminate')
            [CompletionResult]::new('--apply', '--apply', [CompletionResultType]::ParameterName, 'Carry out the plan''s actions (without it nothing is changed)')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Apply even past --max-actions or the systemic-failure brake')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Show healthy executions in the table too')
            [CompletionResult]::new('--exit-code', '--exit-code', [CompletionResultType]::ParameterName, 'Exit with 4 when the plan has an action, an unreachable agent, or an item or capacity finding that needs a person')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stderr but errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stderr but errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more on stderr (per-agent timings)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more on stderr (per-agent timings)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'trinity-watchdog;recover' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'Trinity''s SQLite database')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Trinity''s PostgreSQL database, e.g. postgres://trinity@db/trinity; used instead of --db')
            [CompletionResult]::new('--redis-url', '--redis-url', [CompletionResultType]::ParameterName, 'Redis holding the capacity slots, e.g. redis://redis:6379. Unset means capacity is not checked')
            [CompletionResult]::new('--events', '--events', [CompletionResultType]::ParameterName, 'Publish a recovery event per won write to Trinity''s event stream (trinity:events), so that open dashboards update at once: auto (when the stream exists), on, or off')
            [CompletionResult]::new('--agent-url', '--agent-url', [CompletionResultType]::ParameterName, 'Agent base URL; {agent} is replaced by the percent-encoded agent name')
            [CompletionResult]::new('--agent-secret', '--agent-secret', [CompletionResultType]::ParameterName, 'Shared secret for the X-Trinity-Agent-Token header (never printed)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'A PEM file of CA certificates to trust for agents, Redis and PostgreSQL, next to the system''s roots (repeatable; without it, TRINITY_CA_CERT: a `:`-separated list)')
            [CompletionResult]::new('--agent', '--agent', [CompletionResultType]::ParameterName, 'Only look at this agent (repeatable)')
            [CompletionResult]::new('--shard', '--shard', [CompletionResultType]::ParameterName, 'Own only the agents of shard K of N (K from 0, as JOB_COMPLETION_INDEX): those whose name''s 64-bit FNV-1a hash is K modulo N. N instances split one fleet; each has its own apply lock')
            [CompletionResult]::new('--grace', '--grace', [CompletionResultType]::ParameterName, 'How long a row the agent does not know is left alone after it started')
            [CompletionResult]::new('--default-timeout', '--default-timeout', [CompletionResultType]::ParameterName, 'Timeout of a running row whose schedule and agent set none (Trinity''s own default; 900s for deployments of the seed era)')
            [CompletionResult]::new('--http-timeout', '--http-timeout', [CompletionResultType]::ParameterName, 'Time limit for each request to an agent')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'How many agents are queried at once [default: half of the descriptor limit (the soft RLIMIT_NOFILE, first raised to the hard one) less 64, at most 512; 480 under 1024]')
            [CompletionResult]::new('--terminate-timeout', '--terminate-timeout', [CompletionResultType]::ParameterName, 'Time limit for a terminate request (the agent needs ~10 s: SIGINT, 5 s, SIGKILL)')
            [CompletionResult]::new('--max-actions', '--max-actions', [CompletionResultType]::ParameterName, 'Refuse an apply whose plan has more actions than this (exit 5) unless --force')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Append one JSON line per applied action to this file')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format of the result on stdout')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of the result on stdout')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to color the table')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Write the run''s figures here in the Prometheus text format (node_exporter textfile collector)')
            [CompletionResult]::new('--no-redis', '--no-redis', [CompletionResultType]::ParameterName, 'Do not use Redis even if REDIS_URL is set')
            [CompletionResult]::new('--recover-abandoned', '--recover-abandoned', [CompletionResultType]::ParameterName, 'Fail `abandoned` rows (their agent was deleted and does not answer) instead of only reporting them: guarded write, capacity release, activity close; no terminate')
            [CompletionResult]::new('--apply', '--apply', [CompletionResultType]::ParameterName, 'Carry out the plan''s actions (without it nothing is changed)')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Apply even past --max-actions or the systemic-failure brake')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Show healthy executions in the table too')
            [CompletionResult]::new('--exit-code', '--exit-code', [CompletionResultType]::ParameterName, 'Exit with 4 when the plan has an action, an unreachable agent, or an item or capacity finding that needs a person')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stderr but errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stderr but errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more on stderr (per-agent timings)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more on stderr (per-agent timings)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'trinity-watchdog;kill' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'Trinity''s SQLite database')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Trinity''s PostgreSQL database, e.g. postgres://trinity@db/trinity; used instead of --db')
            [CompletionResult]::new('--redis-url', '--redis-url', [CompletionResultType]::ParameterName, 'Redis holding the capacity slots, e.g. redis://redis:6379. Unset means capacity is not checked')
            [CompletionResult]::new('--events', '--events', [CompletionResultType]::ParameterName, 'Publish a recovery event per won write to Trinity''s event stream (trinity:events), so that open dashboards update at once: auto (when the stream exists), on, or off')
            [CompletionResult]::new('--agent-url', '--agent-url', [CompletionResultType]::ParameterName, 'Agent base URL; {agent} is replaced by the percent-encoded agent name')
            [CompletionResult]::new('--agent-secret', '--agent-secret', [CompletionResultType]::ParameterName, 'Shared secret for the X-Trinity-Agent-Token header (never printed)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'A PEM file of CA certificates to trust for agents, Redis and PostgreSQL, next to the system''s roots (repeatable; without it, TRINITY_CA_CERT: a `:`-separated list)')
            [CompletionResult]::new('--agent', '--agent', [CompletionResultType]::ParameterName, 'Only look at this agent (repeatable)')
            [CompletionResult]::new('--shard', '--shard', [CompletionResultType]::ParameterName, 'Own only the agents of shard K of N (K from 0, as JOB_COMPLETION_INDEX): those whose name''s 64-bit FNV-1a hash is K modulo N. N instances split one fleet; each has its own apply lock')
            [CompletionResult]::new('--grace', '--grace', [CompletionResultType]::ParameterName, 'How long a row the agent does not know is left alone after it started')
            [CompletionResult]::new('--default-timeout', '--default-timeout', [CompletionResultType]::ParameterName, 'Timeout of a running row whose schedule and agent set none (Trinity''s own default; 900s for deployments of the seed era)')
            [CompletionResult]::new('--http-timeout', '--http-timeout', [CompletionResultType]::ParameterName, 'Time limit for each request to an agent')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'How many agents are queried at once [default: half of the descriptor limit (the soft RLIMIT_NOFILE, first raised to the hard one) less 64, at most 512; 480 under 1024]')
            [CompletionResult]::new('--terminate-timeout', '--terminate-timeout', [CompletionResultType]::ParameterName, 'Time limit for a terminate request (the agent needs ~10 s: SIGINT, 5 s, SIGKILL)')
            [CompletionResult]::new('--max-actions', '--max-actions', [CompletionResultType]::ParameterName, 'Refuse an apply whose plan has more actions than this (exit 5) unless --force')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Append one JSON line per applied action to this file')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format of the result on stdout')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of the result on stdout')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to color the table')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Write the run''s figures here in the Prometheus text format (node_exporter textfile collector)')
            [CompletionResult]::new('--no-terminate', '--no-terminate', [CompletionResultType]::ParameterName, 'Close exactly the named running rows without contacting their agent (for an agent that is gone but still owned): guarded write, capacity release, activity close; no HTTP request')
            [CompletionResult]::new('--no-redis', '--no-redis', [CompletionResultType]::ParameterName, 'Do not use Redis even if REDIS_URL is set')
            [CompletionResult]::new('--recover-abandoned', '--recover-abandoned', [CompletionResultType]::ParameterName, 'Fail `abandoned` rows (their agent was deleted and does not answer) instead of only reporting them: guarded write, capacity release, activity close; no terminate')
            [CompletionResult]::new('--apply', '--apply', [CompletionResultType]::ParameterName, 'Carry out the plan''s actions (without it nothing is changed)')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Apply even past --max-actions or the systemic-failure brake')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Show healthy executions in the table too')
            [CompletionResult]::new('--exit-code', '--exit-code', [CompletionResultType]::ParameterName, 'Exit with 4 when the plan has an action, an unreachable agent, or an item or capacity finding that needs a person')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stderr but errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stderr but errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more on stderr (per-agent timings)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more on stderr (per-agent timings)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'trinity-watchdog;completions' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'Trinity''s SQLite database')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Trinity''s PostgreSQL database, e.g. postgres://trinity@db/trinity; used instead of --db')
            [CompletionResult]::new('--redis-url', '--redis-url', [CompletionResultType]::ParameterName, 'Redis holding the capacity slots, e.g. redis://redis:6379. Unset means capacity is not checked')
            [CompletionResult]::new('--events', '--events', [CompletionResultType]::ParameterName, 'Publish a recovery event per won write to Trinity''s event stream (trinity:events), so that open dashboards update at once: auto (when the stream exists), on, or off')
            [CompletionResult]::new('--agent-url', '--agent-url', [CompletionResultType]::ParameterName, 'Agent base URL; {agent} is replaced by the percent-encoded agent name')
            [CompletionResult]::new('--agent-secret', '--agent-secret', [CompletionResultType]::ParameterName, 'Shared secret for the X-Trinity-Agent-Token header (never printed)')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'A PEM file of CA certificates to trust for agents, Redis and PostgreSQL, next to the system''s roots (repeatable; without it, TRINITY_CA_CERT: a `:`-separated list)')
            [CompletionResult]::new('--agent', '--agent', [CompletionResultType]::ParameterName, 'Only look at this agent (repeatable)')
            [CompletionResult]::new('--shard', '--shard', [CompletionResultType]::ParameterName, 'Own only the agents of shard K of N (K from 0, as JOB_COMPLETION_INDEX): those whose name''s 64-bit FNV-1a hash is K modulo N. N instances split one fleet; each has its own apply lock')
            [CompletionResult]::new('--grace', '--grace', [CompletionResultType]::ParameterName, 'How long a row the agent does not know is left alone after it started')
            [CompletionResult]::new('--default-timeout', '--default-timeout', [CompletionResultType]::ParameterName, 'Timeout of a running row whose schedule and agent set none (Trinity''s own default; 900s for deployments of the seed era)')
            [CompletionResult]::new('--http-timeout', '--http-timeout', [CompletionResultType]::ParameterName, 'Time limit for each request to an agent')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'How many agents are queried at once [default: half of the descriptor limit (the soft RLIMIT_NOFILE, first raised to the hard one) less 64, at most 512; 480 under 1024]')
            [CompletionResult]::new('--terminate-timeout', '--terminate-timeout', [CompletionResultType]::ParameterName, 'Time limit for a terminate request (the agent needs ~10 s: SIGINT, 5 s, SIGKILL)')
            [CompletionResult]::new('--max-actions', '--max-actions', [CompletionResultType]::ParameterName, 'Refuse an apply whose plan has more actions than this (exit 5) unless --force')
            [CompletionResult]::new('--audit-log', '--audit-log', [CompletionResultType]::ParameterName, 'Append one JSON line per applied action to this file')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format of the result on stdout')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of the result on stdout')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to color the table')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Write the run''s figures here in the Prometheus text format (node_exporter textfile collector)')
            [CompletionResult]::new('--no-redis', '--no-redis', [CompletionResultType]::ParameterName, 'Do not use Redis even if REDIS_URL is set')
            [CompletionResult]::new('--recover-abandoned', '--recover-abandoned', [CompletionResultType]::ParameterName, 'Fail `abandoned` rows (their agent was deleted and does not answer) instead of only reporting them: guarded write, capacity release, activity close; no terminate')
            [CompletionResult]::new('--apply', '--apply', [CompletionResultType]::ParameterName, 'Carry out the plan''s actions (without it nothing is changed)')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Apply even past --max-actions or the systemic-failure brake')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Show healthy executions in the table too')
            [CompletionResult]::new('--exit-code', '--exit-code', [CompletionResultType]::ParameterName, 'Exit with 4 when the plan has an action, an unreachable agent, or an item or capacity finding that needs a person')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing on stderr but errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing on stderr but errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more on stderr (per-agent timings)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more on stderr (per-agent timings)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'trinity-watchdog;help' {
            [CompletionResult]::new('scan', 'scan', [CompletionResultType]::ParameterValue, 'Show the full plan: every running execution, agent process and leaked slot, with its verdict')
            [CompletionResult]::new('recover', 'recover', [CompletionResultType]::ParameterValue, 'Plan only `orphaned` rows and `leaked_slot`s. Never terminates a process')
            [CompletionResult]::new('kill', 'kill', [CompletionResultType]::ParameterValue, 'Plan `timed_out` and `zombie` processes, or terminate exactly the executions named')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'trinity-watchdog;help;scan' {
            break
        }
        'trinity-watchdog;help;recover' {
            break
        }
        'trinity-watchdog;help;kill' {
            break
        }
        'trinity-watchdog;help;completions' {
            break
        }
        'trinity-watchdog;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
