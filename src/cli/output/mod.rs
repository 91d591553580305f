//! Results go to stdout through [`out`], which never panics: when the reader has gone away
//! (`dynamo-etl run | head -1`) the rest of the output is dropped and the command's exit code
//! stays the work's own. The reports the phases return are turned into text here, one module
//! per report: the phases return data, and only the command line decides how it reads.

pub mod drift;
pub mod estimate;
pub mod follow;
pub mod gc;
pub mod infer_schema;
pub mod run;
pub mod status;
pub mod verify;

use std::io::Write;

/// Writes `text` to stdout; a closed stdout is ignored.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// `text` and a newline, to stdout.
pub fn line(text: impl std::fmt::Display) {
    out(&format!("{text}\n"));
}
