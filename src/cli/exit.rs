//! The one place a command's result becomes the exit code: 0 done; 1 needs a retry (the message
//! names the command); 2 usage, configuration or a fault no retry fixes. The cause chain is
//! printed once, then the commands that fix it.

use dynamo_etl::error::{Class, Error};
use std::io::Write;

pub const EXIT_OK: i32 = 0;
pub const EXIT_RETRY: i32 = 1;
pub const EXIT_FATAL: i32 = 2;

/// How a command ended.
pub enum Ended {
    /// The arguments did not parse (or help/version was asked for).
    Usage(clap::Error),
    /// The command ran.
    Ran(Result<(), Error>),
}

/// Prints what went wrong, if anything, and returns the exit code.
pub fn code(ended: Ended) -> i32 {
    match ended {
        Ended::Usage(e) => {
            let _ = e.print();
            if e.use_stderr() {
                EXIT_FATAL
            } else {
                EXIT_OK
            }
        }
        Ended::Ran(Ok(())) => EXIT_OK,
        Ended::Ran(Err(e)) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {}", e.chain());
            for step in e.next_steps() {
                let _ = writeln!(stderr, "  run: {step}");
            }
            match e.class() {
                Class::Retry => EXIT_RETRY,
                Class::Fatal => EXIT_FATAL,
            }
        }
    }
}
