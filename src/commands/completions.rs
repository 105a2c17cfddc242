//! `completions`: shell completion scripts generated from the clap definitions.

use crate::exit_code::ExitCode;

/// Print a shell completion script.
///
/// The same scripts are committed under completions/ in the source tree.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The shell to generate for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub(crate) fn run(args: &Args) -> ExitCode {
    match super::to_stdout(|out| out.write_all(script(args.shell).as_bytes())) {
        Ok(()) => ExitCode::Ok,
        Err(err) => {
            crate::log::say!("error: {err:#}");
            ExitCode::Fatal
        }
    }
}

/// The completion script for one shell.
pub fn script(shell: clap_complete::Shell) -> String {
    let mut buffer = Vec::new();
    clap_complete::generate(
        shell,
        &mut crate::cli::command(),
        "trinity-watchdog",
        &mut buffer,
    );
    String::from_utf8_lossy(&buffer).into_owned()
}
