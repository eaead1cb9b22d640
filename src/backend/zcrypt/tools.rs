//! Running the customer-side tools (`zkey`, `zkey-cryptsetup`, `pkcshsm_mk_change`, an
//! application's declared commands) through one seam, [`ToolRunner`], so tests script them.
//! The program is found on `PATH` (tests put a folder of fake tools first); every run has a
//! timeout and a bound on what it may print.

use std::io::{Read, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pins::{UserPins, prompted_slot};

/// Longest a tool may run: a zkey reencipher of a large repository takes seconds, an
/// openCryptoki reencipher of many objects minutes.
pub const TOOL_TIMEOUT_MS_DEFAULT: u64 = 600_000;
/// Bytes of stdout or stderr kept from one run.
pub const TOOL_OUTPUT_BYTES_MAX: u64 = 4 * 1024 * 1024;
const POLL_MS: u64 = 20;

/// One run: the program, its arguments and the variables set for it (besides the caller's),
/// and the USER PINs it is answered with when it prompts for one (`pkcshsm_mk_change`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub user_pins: Option<Arc<UserPins>>,
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

/// The variables a tool is given from mkplan's environment, by exact name: what finds it
/// (`PATH`, `LD_LIBRARY_PATH`), who runs it, where its files are, how it talks, and those the
/// tools read by their sources: zkey's (`ZKEY_REPOSITORY`, `ZKEY_KMS_PLUGINS`,
/// `ZKEY_KMIP_PROFILES`), openCryptoki's (`OCK_EP11_TOKEN_DIR`, `PKCSLIB`, `PKCS_APP_STORE`,
/// `PKCS11_SHMEM_FILE`, `OPENCRYPTOKI_TRACE_LEVEL`), the CCA library's (`CSU_DEFAULT_ADAPTER`,
/// `CSU_DEFAULT_DOMAIN`, which pick a CCA token's adapter) and the fake platform's faults and
/// latency. Every other variable stays with mkplan: an operator's shell holds key part
/// passwords, signing tokens, other groups' PINs and cloud credentials under any names
/// (rounds 8 and 9, S1).
const PASSED_VARIABLES: &[&str] = &[
    "PATH",
    "LD_LIBRARY_PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TMPDIR",
    "TZ",
    "LANG",
    "LANGUAGE",
    "TERM",
    "NO_COLOR",
    "SYSFS_ROOT",
    "ZKEY_REPOSITORY",
    "ZKEY_KMS_PLUGINS",
    "ZKEY_KMIP_PROFILES",
    "OCK_EP11_TOKEN_DIR",
    "PKCSLIB",
    "PKCS_APP_STORE",
    "PKCS11_SHMEM_FILE",
    "OPENCRYPTOKI_TRACE_LEVEL",
    "CSU_DEFAULT_ADAPTER",
    "CSU_DEFAULT_DOMAIN",
    crate::backend::zcrypt::fake::FAULT_ENV,
    crate::backend::zcrypt::fake::LATENCY_ENV,
];

/// The same by prefix: the locale's.
const PASSED_PREFIXES: &[&str] = &["LC_"];

/// Variables that hold a secret whichever group runs, hidden even if passed by name one day:
/// the database password libpq reads, the `sim serve` tokens and API
/// keys, and the IBM Cloud credentials the HPCS backends read.
const SECRET_VARIABLES: &[&str] = &[
    "PGPASSWORD",
    "MKPLAN_TOKEN",
    "MKPLAN_SIM_TOKENS",
    "MKPLAN_SIM_API_KEYS",
    "IBMCLOUD_API_KEY",
    "IBMCLOUD_IAM_TOKEN",
];

/// Whether a tool is given mkplan's variable `name`.
fn passed(name: &str) -> bool {
    PASSED_VARIABLES.contains(&name) || PASSED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Runs real processes, in an environment of mkplan's that holds no secret: only the
/// variables [`passed`] names, less those that hold the group's USER PINs (`OCK_…` names
/// among them) and `SECRET_VARIABLES`, plus the call's own. A tool (or an application's
/// command) that logs its environment, or a process that reads its `/proc/PID/environ`,
/// finds no PIN or password there.
pub struct SystemRunner {
    pub timeout: Duration,
    hidden: Vec<String>,
}

impl Default for SystemRunner {
    fn default() -> Self {
        Self::hiding(Vec::new())
    }
}

impl SystemRunner {
    /// A runner whose tools are not given `secrets` (the variables that hold the group's
    /// USER PINs: pkcshsm_mk_change gets each PIN on its stdin), nor `SECRET_VARIABLES`.
    pub fn hiding(secrets: Vec<String>) -> Self {
        let mut hidden = secrets;
        hidden.extend(SECRET_VARIABLES.iter().map(|name| name.to_string()));
        Self {
            timeout: Duration::from_millis(TOOL_TIMEOUT_MS_DEFAULT),
            hidden,
        }
    }

    /// mkplan's variables a tool is given.
    fn environment(&self) -> impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)> {
        std::env::vars_os().filter(|(name, _)| {
            name.to_str()
                .is_some_and(|name| passed(name) && !self.hidden.iter().any(|h| h == name))
        })
    }
}

impl ToolRunner for SystemRunner {
    fn run(&self, call: &ToolCall) -> Result<ToolOutput, String> {
        let mut command = Command::new(&call.program);
        command.env_clear().envs(self.environment());
        let mut child = command
            .args(&call.args)
            .envs(call.env.iter().map(|(k, v)| (k, v)))
            .stdin(if call.user_pins.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
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
        // Read whole, or known to be cut: the rest is drained (the tool must not block on a
        // full pipe) and counted.
        let read = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                let _ = (&mut pipe)
                    .take(TOOL_OUTPUT_BYTES_MAX)
                    .read_to_end(&mut text);
                let cut = std::io::copy(&mut pipe, &mut std::io::sink()).unwrap_or(0) > 0;
                (String::from_utf8_lossy(&text).into_owned(), cut)
            })
        };
        let stdin = child.stdin.take();
        let out = match (&call.user_pins, stdin) {
            (Some(pins), Some(stdin)) => answer_prompts(stdout, stdin, pins.clone()),
            _ => {
                let plain = read(Box::new(stdout));
                std::thread::spawn(move || {
                    let (text, cut) = plain.join().unwrap_or_default();
                    (text, cut, None)
                })
            }
        };
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
        let (stdout, cut, unanswered) = out.join().unwrap_or_default();
        // A listing cut short would lose what it did not show: a key never staged, then lost
        // at the set. Its effect, if any, is read again from the store.
        if cut {
            return Err(format!(
                "{} printed more than {} MiB: mkplan reads a tool's output whole or not at all, so what it did is read again from the store",
                call.shown(),
                TOOL_OUTPUT_BYTES_MAX >> 20
            ));
        }
        let (mut stderr, _) = err.join().unwrap_or_default();
        if let Some(slot) = unanswered {
            stderr.push_str(&format!(
                "mkplan: {} asked for the USER PIN of slot {slot}, and the group file names no source for it: add `- {{slot: {slot}, env: NAME}}` (or `file: PATH`) under opencryptoki_user_pins\n",
                call.program
            ));
        }
        Ok(ToolOutput {
            code: status.code(),
            stdout,
            stderr,
        })
    }
}

/// Reads a tool's stdout and answers each USER PIN prompt it ends with by that slot's PIN
/// and a newline on its stdin. A prompt for a slot with no PIN, or any other question
/// (`Continue [y/N]? `, asked when a token is not present), closes stdin: the tool then reads
/// end of file and stops ("Aborted by user."), with nothing changed. Returns what it printed,
/// whether that was cut (`TOOL_OUTPUT_BYTES_MAX`), and the slot asked for without a PIN, if
/// any.
fn answer_prompts(
    mut stdout: std::process::ChildStdout,
    stdin: ChildStdin,
    pins: Arc<UserPins>,
) -> std::thread::JoinHandle<(String, bool, Option<u64>)> {
    std::thread::spawn(move || {
        let mut stdin = Some(stdin);
        let mut printed = Vec::new();
        let mut answered_to = 0;
        let mut unanswered = None;
        let mut chunk = [0u8; 4096];
        while let Ok(read) = stdout.read(&mut chunk) {
            if read == 0 || printed.len() as u64 >= TOOL_OUTPUT_BYTES_MAX {
                break;
            }
            printed.extend_from_slice(&chunk[..read]);
            let tail = String::from_utf8_lossy(&printed[answered_to..]).into_owned();
            let pin = prompted_slot(&tail).map(|slot| (slot, pins.get(slot)));
            match (pin, stdin.as_mut()) {
                (Some((_, Some(pin))), Some(input)) => {
                    let mut line = zeroize::Zeroizing::new(pin.expose().as_bytes().to_vec());
                    line.push(b'\n');
                    if input.write_all(&line).and_then(|()| input.flush()).is_err() {
                        stdin = None;
                    }
                    answered_to = printed.len();
                }
                (Some((slot, None)), _) => {
                    unanswered = Some(slot);
                    stdin = None;
                }
                (None, _) if tail.ends_with("? ") => stdin = None,
                _ => {}
            }
        }
        let cut = std::io::copy(&mut stdout, &mut std::io::sink()).unwrap_or(0) > 0;
        (
            String::from_utf8_lossy(&printed).into_owned(),
            cut,
            unanswered,
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> ToolCall {
        ToolCall {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: Vec::new(),
            user_pins: None,
        }
    }

    /// A listing longer than mkplan keeps is an error, never parsed as far as it was read:
    /// the keys past the cut would be missed (adversary round 6).
    #[test]
    fn output_past_the_limit_is_an_error_not_a_shorter_listing() {
        let runner = SystemRunner::default();
        let size = TOOL_OUTPUT_BYTES_MAX + 10;
        let cut = runner
            .run(&sh(&format!("head -c {size} /dev/zero | tr '\\0' k")))
            .unwrap_err();
        assert!(cut.contains("printed more than 4 MiB"), "{cut}");
        let whole = runner
            .run(&sh(&format!(
                "head -c {TOOL_OUTPUT_BYTES_MAX} /dev/zero | tr '\\0' k"
            )))
            .unwrap();
        assert_eq!(whole.stdout.len() as u64, TOOL_OUTPUT_BYTES_MAX);
    }

    #[test]
    fn tools_get_the_allowed_variables_less_the_secret_ones() {
        for name in [
            "PATH",
            "LANG",
            "LC_ALL",
            "ZKEY_REPOSITORY",
            "OCK_EP11_TOKEN_DIR",
            "SYSFS_ROOT",
            "MKPLAN_ZCRYPT_FAULT",
            "CSU_DEFAULT_DOMAIN",
        ] {
            assert!(passed(name), "{name}");
        }
        for name in [
            "MKPLAN_PART1_PASSWORD",
            "PGPASSWORD",
            "IBMCLOUD_API_KEY",
            "AWS_SECRET_ACCESS_KEY",
            "MKPLAN_TOKEN",
            "PATHX",
            "lc_all",
            "OCK_SLOT4_USER_PIN",
            "OCK_SRK_SECRET",
            "ZKEY_X",
        ] {
            assert!(!passed(name), "{name}");
        }
    }
}
