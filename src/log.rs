//! Messages for stderr: warnings unless `-q`, details only with `-v`. stdout is the result's.

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Log {
    pub quiet: bool,
    pub verbose: bool,
}

impl Log {
    pub(crate) fn warn(&self, message: &str) {
        if !self.quiet {
            eprintln!("warning: {message}");
        }
    }

    pub(crate) fn info(&self, message: &str) {
        if self.verbose {
            eprintln!("{message}");
        }
    }
}
