# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_trinity_watchdog_global_optspecs
    string join \n db= database-url= redis-url= events= no-redis agent-url= agent-secret= ca-cert= agent= shard= grace= default-timeout= recover-abandoned http-timeout= concurrency= terminate-timeout= apply max-actions= force audit-log= o/output= all exit-code color= q/quiet metrics-file= v/verbose h/help V/version
end

function __fish_trinity_watchdog_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_trinity_watchdog_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_trinity_watchdog_using_subcommand
    set -l cmd (__fish_trinity_watchdog_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l db -d 'Trinity\'s SQLite database' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l database-url -d 'Trinity\'s PostgreSQL database, e.g. postgres://trinity@db/trinity; used instead of --db' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l redis-url -d 'Redis holding the capacity slots, e.g. redis://redis:6379. Unset means capacity is not checked' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l events -d 'Publish a recovery event per won write to Trinity\'s event stream (trinity:events), so that open dashboards update at once: auto (when the stream exists), on, or off' -r -f -a "auto\t'Only when the stream `trinity:events` already exists (a Trinity with the event bus)'
on\t'Always (the stream is created if need be)'
off\t'Never'"
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l agent-url -d 'Agent base URL; {agent} is replaced by the percent-encoded agent name' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l agent-secret -d 'Shared secret for the X-Trinity-Agent-Token header (never printed)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l ca-cert -d 'A PEM file of CA certificates to trust for agents, Redis and PostgreSQL, next to the system\'s roots (repeatable; without it, TRINITY_CA_CERT: a `:`-separated list)' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l agent -d 'Only look at this agent (repeatable)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l shard -d 'Own only the agents of shard K of N (K from 0, as JOB_COMPLETION_INDEX): those whose name\'s 64-bit FNV-1a hash is K modulo N. N instances split one fleet; each has its own apply lock' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l grace -d 'How long a row the agent does not know is left alone after it started' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l default-timeout -d 'Timeout of a running row whose schedule and agent set none (Trinity\'s own default; 900s for deployments of the seed era)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l http-timeout -d 'Time limit for each request to an agent' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l concurrency -d 'How many agents are queried at once [default: half of the descriptor limit (the soft RLIMIT_NOFILE, first raised to the hard one) less 64, at most 512; 480 under 1024]' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l terminate-timeout -d 'Time limit for a terminate request (the agent needs ~10 s: SIGINT, 5 s, SIGKILL)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l max-actions -d 'Refuse an apply whose plan has more actions than this (exit 5) unless --force' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l audit-log -d 'Append one JSON line per applied action to this file' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -s o -l output -d 'Output format of the result on stdout' -r -f -a "table\t''
json\t''"
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l color -d 'When to color the table' -r -f -a "auto\t''
always\t''
never\t''"
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l metrics-file -d 'Write the run\'s figures here in the Prometheus text format (node_exporter textfile collector)' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l no-redis -d 'Do not use Redis even if REDIS_URL is set'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l recover-abandoned -d 'Fail `abandoned` rows (their agent was deleted and does not answer) instead of only reporting them: guarded write, capacity release, activity close; no terminate'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l apply -d 'Carry out the plan\'s actions (without it nothing is changed)'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l force -d 'Apply even past --max-actions or the systemic-failure brake'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l all -d 'Show healthy executions in the table too'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -l exit-code -d 'Exit with 4 when the plan has an action, an unreachable agent, or an item or capacity finding that needs a person'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -s q -l quiet -d 'Print nothing on stderr but errors'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -s v -l verbose -d 'Say more on stderr (per-agent timings)'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -s V -l version -d 'Print version'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -f -a "scan" -d 'Show the full plan: every running execution, agent process and leaked slot, with its verdict'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -f -a "recover" -d 'Plan only `orphaned` rows and `leaked_slot`s. Never terminates a process'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -f -a "kill" -d 'Plan `timed_out` and `zombie` processes, or terminate exactly the executions named'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l save -d 'Save the plan\'s actions, with the facts each depends on, to this file for review' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l from -d 'Apply exactly the actions saved in this file (with --apply); each is re-checked first' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l max-plan-age -d 'Refuse a saved plan older than this' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l db -d 'Trinity\'s SQLite database' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l database-url -d 'Trinity\'s PostgreSQL database, e.g. postgres://trinity@db/trinity; used instead of --db' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l redis-url -d 'Redis holding the capacity slots, e.g. redis://redis:6379. Unset means capacity is not checked' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l events -d 'Publish a recovery event per won write to Trinity\'s event stream (trinity:events), so that open dashboards update at once: auto (when the stream exists), on, or off' -r -f -a "auto\t'Only when the stream `trinity:events` already exists (a Trinity with the event bus)'
on\t'Always (the stream is created if need be)'
off\t'Never'"
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l agent-url -d 'Agent base URL; {agent} is replaced by the percent-encoded agent name' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l agent-secret -d 'Shared secret for the X-Trinity-Agent-Token header (never printed)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l ca-cert -d 'A PEM file of CA certificates to trust for agents, Redis and PostgreSQL, next to the system\'s roots (repeatable; without it, TRINITY_CA_CERT: a `:`-separated list)' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l agent -d 'Only look at this agent (repeatable)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l shard -d 'Own only the agents of shard K of N (K from 0, as JOB_COMPLETION_INDEX): those whose name\'s 64-bit FNV-1a hash is K modulo N. N instances split one fleet; each has its own apply lock' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l grace -d 'How long a row the agent does not know is left alone after it started' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l default-timeout -d 'Timeout of a running row whose schedule and agent set none (Trinity\'s own default; 900s for deployments of the seed era)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l http-timeout -d 'Time limit for each request to an agent' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l concurrency -d 'How many agents are queried at once [default: half of the descriptor limit (the soft RLIMIT_NOFILE, first raised to the hard one) less 64, at most 512; 480 under 1024]' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l terminate-timeout -d 'Time limit for a terminate request (the agent needs ~10 s: SIGINT, 5 s, SIGKILL)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l max-actions -d 'Refuse an apply whose plan has more actions than this (exit 5) unless --force' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l audit-log -d 'Append one JSON line per applied action to this file' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -s o -l output -d 'Output format of the result on stdout' -r -f -a "table\t''
json\t''"
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l color -d 'When to color the table' -r -f -a "auto\t''
always\t''
never\t''"
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l metrics-file -d 'Write the run\'s figures here in the Prometheus text format (node_exporter textfile collector)' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l no-redis -d 'Do not use Redis even if REDIS_URL is set'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l recover-abandoned -d 'Fail `abandoned` rows (their agent was deleted and does not answer) instead of only reporting them: guarded write, capacity release, activity close; no terminate'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l apply -d 'Carry out the plan\'s actions (without it nothing is changed)'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l force -d 'Apply even past --max-actions or the systemic-failure brake'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l all -d 'Show healthy executions in the table too'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -l exit-code -d 'Exit with 4 when the plan has an action, an unreachable agent, or an item or capacity finding that needs a person'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -s q -l quiet -d 'Print nothing on stderr but errors'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -s v -l verbose -d 'Say more on stderr (per-agent timings)'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand scan" -s V -l version -d 'Print version'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l db -d 'Trinity\'s SQLite database' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l database-url -d 'Trinity\'s PostgreSQL database, e.g. postgres://trinity@db/trinity; used instead of --db' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l redis-url -d 'Redis holding the capacity slots, e.g. redis://redis:6379. Unset means capacity is not checked' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l events -d 'Publish a recovery event per won write to Trinity\'s event stream (trinity:events), so that open dashboards update at once: auto (when the stream exists), on, or off' -r -f -a "auto\t'Only when the stream `trinity:events` already exists (a Trinity with the event bus)'
on\t'Always (the stream is created if need be)'
off\t'Never'"
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l agent-url -d 'Agent base URL; {agent} is replaced by the percent-encoded agent name' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l agent-secret -d 'Shared secret for the X-Trinity-Agent-Token header (never printed)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l ca-cert -d 'A PEM file of CA certificates to trust for agents, Redis and PostgreSQL, next to the system\'s roots (repeatable; without it, TRINITY_CA_CERT: a `:`-separated list)' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l agent -d 'Only look at this agent (repeatable)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l shard -d 'Own only the agents of shard K of N (K from 0, as JOB_COMPLETION_INDEX): those whose name\'s 64-bit FNV-1a hash is K modulo N. N instances split one fleet; each has its own apply lock' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l grace -d 'How long a row the agent does not know is left alone after it started' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l default-timeout -d 'Timeout of a running row whose schedule and agent set none (Trinity\'s own default; 900s for deployments of the seed era)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l http-timeout -d 'Time limit for each request to an agent' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l concurrency -d 'How many agents are queried at once [default: half of the descriptor limit (the soft RLIMIT_NOFILE, first raised to the hard one) less 64, at most 512; 480 under 1024]' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l terminate-timeout -d 'Time limit for a terminate request (the agent needs ~10 s: SIGINT, 5 s, SIGKILL)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l max-actions -d 'Refuse an apply whose plan has more actions than this (exit 5) unless --force' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l audit-log -d 'Append one JSON line per applied action to this file' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -s o -l output -d 'Output format of the result on stdout' -r -f -a "table\t''
json\t''"
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l color -d 'When to color the table' -r -f -a "auto\t''
always\t''
never\t''"
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l metrics-file -d 'Write the run\'s figures here in the Prometheus text format (node_exporter textfile collector)' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l no-redis -d 'Do not use Redis even if REDIS_URL is set'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l recover-abandoned -d 'Fail `abandoned` rows (their agent was deleted and does not answer) instead of only reporting them: guarded write, capacity release, activity close; no terminate'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l apply -d 'Carry out the plan\'s actions (without it nothing is changed)'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l force -d 'Apply even past --max-actions or the systemic-failure brake'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l all -d 'Show healthy executions in the table too'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -l exit-code -d 'Exit with 4 when the plan has an action, an unreachable agent, or an item or capacity finding that needs a person'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -s q -l quiet -d 'Print nothing on stderr but errors'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -s v -l verbose -d 'Say more on stderr (per-agent timings)'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand recover" -s V -l version -d 'Print version'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l db -d 'Trinity\'s SQLite database' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l database-url -d 'Trinity\'s PostgreSQL database, e.g. postgres://trinity@db/trinity; used instead of --db' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l redis-url -d 'Redis holding the capacity slots, e.g. redis://redis:6379. Unset means capacity is not checked' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l events -d 'Publish a recovery event per won write to Trinity\'s event stream (trinity:events), so that open dashboards update at once: auto (when the stream exists), on, or off' -r -f -a "auto\t'Only when the stream `trinity:events` already exists (a Trinity with the event bus)'
on\t'Always (the stream is created if need be)'
off\t'Never'"
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l agent-url -d 'Agent base URL; {agent} is replaced by the percent-encoded agent name' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l agent-secret -d 'Shared secret for the X-Trinity-Agent-Token header (never printed)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l ca-cert -d 'A PEM file of CA certificates to trust for agents, Redis and PostgreSQL, next to the system\'s roots (repeatable; without it, TRINITY_CA_CERT: a `:`-separated list)' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l agent -d 'Only look at this agent (repeatable)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l shard -d 'Own only the agents of shard K of N (K from 0, as JOB_COMPLETION_INDEX): those whose name\'s 64-bit FNV-1a hash is K modulo N. N instances split one fleet; each has its own apply lock' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l grace -d 'How long a row the agent does not know is left alone after it started' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l default-timeout -d 'Timeout of a running row whose schedule and agent set none (Trinity\'s own default; 900s for deployments of the seed era)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l http-timeout -d 'Time limit for each request to an agent' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l concurrency -d 'How many agents are queried at once [default: half of the descriptor limit (the soft RLIMIT_NOFILE, first raised to the hard one) less 64, at most 512; 480 under 1024]' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l terminate-timeout -d 'Time limit for a terminate request (the agent needs ~10 s: SIGINT, 5 s, SIGKILL)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l max-actions -d 'Refuse an apply whose plan has more actions than this (exit 5) unless --force' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l audit-log -d 'Append one JSON line per applied action to this file' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -s o -l output -d 'Output format of the result on stdout' -r -f -a "table\t''
json\t''"
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l color -d 'When to color the table' -r -f -a "auto\t''
always\t''
never\t''"
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l metrics-file -d 'Write the run\'s figures here in the Prometheus text format (node_exporter textfile collector)' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l no-terminate -d 'Close exactly the named running rows without contacting their agent (for an agent that is gone but still owned): guarded write, capacity release, activity close; no HTTP request'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l no-redis -d 'Do not use Redis even if REDIS_URL is set'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l recover-abandoned -d 'Fail `abandoned` rows (their agent was deleted and does not answer) instead of only reporting them: guarded write, capacity release, activity close; no terminate'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l apply -d 'Carry out the plan\'s actions (without it nothing is changed)'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l force -d 'Apply even past --max-actions or the systemic-failure brake'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l all -d 'Show healthy executions in the table too'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -l exit-code -d 'Exit with 4 when the plan has an action, an unreachable agent, or an item or capacity finding that needs a person'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -s q -l quiet -d 'Print nothing on stderr but errors'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -s v -l verbose -d 'Say more on stderr (per-agent timings)'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand kill" -s V -l version -d 'Print version'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l db -d 'Trinity\'s SQLite database' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l database-url -d 'Trinity\'s PostgreSQL database, e.g. postgres://trinity@db/trinity; used instead of --db' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l redis-url -d 'Redis holding the capacity slots, e.g. redis://redis:6379. Unset means capacity is not checked' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l events -d 'Publish a recovery event per won write to Trinity\'s event stream (trinity:events), so that open dashboards update at once: auto (when the stream exists), on, or off' -r -f -a "auto\t'Only when the stream `trinity:events` already exists (a Trinity with the event bus)'
on\t'Always (the stream is created if need be)'
off\t'Never'"
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l agent-url -d 'Agent base URL; {agent} is replaced by the percent-encoded agent name' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l agent-secret -d 'Shared secret for the X-Trinity-Agent-Token header (never printed)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l ca-cert -d 'A PEM file of CA certificates to trust for agents, Redis and PostgreSQL, next to the system\'s roots (repeatable; without it, TRINITY_CA_CERT: a `:`-separated list)' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l agent -d 'Only look at this agent (repeatable)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l shard -d 'Own only the agents of shard K of N (K from 0, as JOB_COMPLETION_INDEX): those whose name\'s 64-bit FNV-1a hash is K modulo N. N instances split one fleet; each has its own apply lock' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l grace -d 'How long a row the agent does not know is left alone after it started' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l default-timeout -d 'Timeout of a running row whose schedule and agent set none (Trinity\'s own default; 900s for deployments of the seed era)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l http-timeout -d 'Time limit for each request to an agent' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l concurrency -d 'How many agents are queried at once [default: half of the descriptor limit (the soft RLIMIT_NOFILE, first raised to the hard one) less 64, at most 512; 480 under 1024]' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l terminate-timeout -d 'Time limit for a terminate request (the agent needs ~10 s: SIGINT, 5 s, SIGKILL)' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l max-actions -d 'Refuse an apply whose plan has more actions than this (exit 5) unless --force' -r
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l audit-log -d 'Append one JSON line per applied action to this file' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -s o -l output -d 'Output format of the result on stdout' -r -f -a "table\t''
json\t''"
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l color -d 'When to color the table' -r -f -a "auto\t''
always\t''
never\t''"
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l metrics-file -d 'Write the run\'s figures here in the Prometheus text format (node_exporter textfile collector)' -r -F
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l no-redis -d 'Do not use Redis even if REDIS_URL is set'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l recover-abandoned -d 'Fail `abandoned` rows (their agent was deleted and does not answer) instead of only reporting them: guarded write, capacity release, activity close; no terminate'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l apply -d 'Carry out the plan\'s actions (without it nothing is changed)'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l force -d 'Apply even past --max-actions or the systemic-failure brake'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l all -d 'Show healthy executions in the table too'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -l exit-code -d 'Exit with 4 when the plan has an action, an unreachable agent, or an item or capacity finding that needs a person'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -s q -l quiet -d 'Print nothing on stderr but errors'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -s v -l verbose -d 'Say more on stderr (per-agent timings)'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand completions" -s V -l version -d 'Print version'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand help; and not __fish_seen_subcommand_from scan recover kill completions help" -f -a "scan" -d 'Show the full plan: every running execution, agent process and leaked slot, with its verdict'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand help; and not __fish_seen_subcommand_from scan recover kill completions help" -f -a "recover" -d 'Plan only `orphaned` rows and `leaked_slot`s. Never terminates a process'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand help; and not __fish_seen_subcommand_from scan recover kill completions help" -f -a "kill" -d 'Plan `timed_out` and `zombie` processes, or terminate exactly the executions named'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand help; and not __fish_seen_subcommand_from scan recover kill completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c trinity-watchdog -n "__fish_trinity_watchdog_using_subcommand help; and not __fish_seen_subcommand_from scan recover kill completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
