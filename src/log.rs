//! Messages for stderr: warnings unless `-q`, details only with `-v`. stdout is the result's.
//! Every line goes through `say!`, which never panics: a closed or full stderr (a cron pipe
//! whose reader died) must not abort an apply before its guard lets go of the lock.

/// `eprintln!` that ignores a failed write instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
pub(crate) use say;

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Log {
    pub quiet: bool,
    pub verbose: bool,
}

impl Log {
    pub(crate) fn warn(&self, message: &str) {
        if !self.quiet {
            say!("warning: {message}");
        }
    }

    pub(crate) fn info(&self, message: &str) {
        if self.verbose {
            say!("{message}");
        }
    }
}
