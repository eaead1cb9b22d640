//! Running the customer-side tools (`zkey`, `zkey-cryptsetup`, `pkcshsm_mk_change`, an
//! application's declared commands) through one seam, [`ToolRunner`], so tests script them.
//! The program is found on `PATH` (tests put a folder of fake tools first); every run has a
//! timeout and a bound on what it may print.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a tool may run: a zkey reencipher of a large repository takes seconds, an
/// openCryptoki reencipher of many objects minutes.
pub const TOOL_TIMEOUT_MS_DEFAULT: u64 = 600_000;
/// Bytes of stdout or stderr kept from one run.
pub const TOOL_OUTPUT_BYTES_MAX: u64 = 4 * 1024 * 1024;
const POLL_MS: u64 = 20;

/// One run: the program, its arguments and the variables set for it (besides the caller's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl ToolCall {
    /// As an operator would type it (for messages and the journal; no secret is ever an
    /// argument: a LUKS2 passphrase is a `--key-file` path).
    pub fn shown(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a run returned. `code` is `None` when a signal ended it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last line of stderr, else of stdout: what a message quotes.
    pub fn last_words(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        crate::quote::message(text.trim().lines().last().unwrap_or("(nothing)"))
    }
}

pub trait ToolRunner: Send + Sync {
    /// Runs `call`; `Err` when it could not be started or did not end in time (then its
    /// effect is unknown until the store is read again).
    fn run(&self, call: &ToolCall) -> Result<ToolOutput, String>;
}

/// Runs real processes.
pub struct SystemRunner {
    pub timeout: Duration,
}

impl Default for SystemRunner {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(TOOL_TIMEOUT_MS_DEFAULT),
        }
    }
}

impl ToolRunner for SystemRunner {
    fn run(&self, call: &ToolCall) -> Result<ToolOutput, String> {
        let mut child = Command::new(&call.program)
            .args(&call.args)
            .envs(call.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {}: {e} (is it installed and on PATH?)",
                    call.program
                )
            })?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let read = |pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                let _ = pipe.take(TOOL_OUTPUT_BYTES_MAX).read_to_end(&mut text);
                String::from_utf8_lossy(&text).into_owned()
            })
        };
        let out = read(Box::new(stdout));
        let err = read(Box::new(stderr));
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(POLL_MS))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{} did not end within {} s and was stopped: what it did is read again from the store",
                        call.shown(),
                        self.timeout.as_secs()
                    ));
                }
                Err(e) => return Err(format!("{}: {e}", call.shown())),
            }
        };
        Ok(ToolOutput {
            code: status.code(),
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }
}

/// A scripted runner for tests: each call is answered by the closure.
pub struct ScriptedRunner<F: Fn(&ToolCall) -> Result<ToolOutput, String> + Send + Sync>(pub F);

impl<F: Fn(&ToolCall) -> Result<ToolOutput, String> + Send + Sync> ToolRunner
    for ScriptedRunner<F>
{
    fn run(&self, call: &ToolCall) -> Result<ToolOutput, String> {
        (self.0)(call)
    }
}
