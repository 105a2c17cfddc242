fn main() -> std::process::ExitCode {
    // The report handler only affects how fatal errors and panics look; failing to install it
    // (it can only fail when installed twice) must not stop the tool.
    let _ = color_eyre::install();
    trinity_watchdog::run(std::env::args_os()).into()
}
