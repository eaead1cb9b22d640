//! Where the commands write. The report a command exists for (a plan, a refusal in the format
//! asked for, the live state, a runbook, a drill's result) goes to stdout, so that
//! `mkplan status x.yaml | less` and `mkplan show plan.json > p.txt` work; progress, prompts
//! and diagnostics go to stderr.
//!
//! A reader that stops early (`| head -1`) closes the pipe: the rest of the report is dropped
//! quietly and the command ends with the exit code it would have had (a plan with changes
//! still exits 2 under `--detailed-exitcode`, a refusal 3), as the report was only cut short
//! by its reader. Any other write error (a full disk under `> p.txt`) is an error, exit 1.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// Set once stdout's reader has gone: a command that would go on reporting (`cards --watch`)
/// stops.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether stdout's reader has closed the pipe.
#[cfg(feature = "smartcards")]
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Writes `text` (the report) to stdout.
pub fn report(text: &str) -> Result<()> {
    report_parts(&[text])
}

/// Writes the report, made of `parts`, to stdout.
fn report_parts(parts: &[&str]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    let written = parts
        .iter()
        .try_for_each(|part| stdout.write_all(part.as_bytes()));
    match written.and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(Error::Other(format!(
            "cannot write the report to stdout: {e}"
        ))),
    }
}

/// `report`, with a line end.
pub fn report_line(text: &str) -> Result<()> {
    // Not `format!("{text}\n")`: a plan's JSON is megabytes, and a copy costs page faults.
    report_parts(&[text, "\n"])
}

/// A note on stderr (where the plan was saved, what was exported). Unlike `eprintln!`, a
/// closed stderr does not end the command: the work is done, only the note is lost.
/// `-q` drops it.
pub fn note(text: &str) {
    if super::conventions::quiet() {
        return;
    }
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
