fn main() -> std::process::ExitCode {
    one_malloc_arena();
    // The report handler only affects how fatal errors and panics look; failing to install it
    // (it can only fail when installed twice) must not stop the tool.
    let _ = color_eyre::install();
    trinity_watchdog::run(std::env::args_os()).into()
}

/// glibc gives every thread that allocates an arena of its own. The runtime's threads build the
/// snapshot (agents' answers, Redis slots) and the main thread plans from it, so memory one of
/// them frees is not reused by the others: one arena is 12 MB less peak RSS at A = 10 000
/// (BENCHMARKS.md), at no measurable cost in CPU with so few threads. Before any thread starts.
/// An operator's own `MALLOC_ARENA_MAX` wins.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
