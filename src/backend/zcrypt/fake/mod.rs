//! The fake Linux on IBM Z / LinuxONE Crypto Express platform: ground truth for the `zcrypt:`
//! backend's tests, drills and examples. It plays the kernel's sysfs (`mkvps`), zkey's secure
//! key repository, the customer-side tools (`zkey`, `zkey-cryptsetup`, `pkcshsm_mk_change`)
//! with their real option names, output lines and exit codes (zcrypt.md §4), and the ceremony
//! steps an operator performs at the TKE or with `panel.exe` (load, commit, set, clear).
//!
//! It is strict: a harmful sequence is performed as the real platform would, and every key it
//! loses is recorded as an incident (zcrypt.md §6). Every action takes the world's lock,
//! records its effect durably, then prints: a tool killed mid-way leaves a consistent world.
//!
//! - [`world`]: the truth (`DIR/world.json`); [`world_file`]: the YAML an operator writes.
//! - [`render`]: the views real readers read, `DIR/sys` and `DIR/zkey`.
//! - [`zkey`], [`cryptsetup`], [`ock`]: the fake tools; [`appkey`]: a declared application
//!   key's command and check; [`ceremony`]: the TKE's side.
//! - [`incidents`]: the loss rule and the incident log.
//! - [`init`]: `mkplan sim zcrypt init`.

pub mod appkey;
pub mod ceremony;
pub mod cryptsetup;
pub mod incidents;
pub mod init;
mod luks_dump;
pub mod ock;
pub mod ock_login;
pub mod render;
pub mod world;
pub mod world_file;
mod world_tokens;
pub mod zkey;
pub mod zkey_list;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use incidents::Incident;
use world::{FaultKind, Lock, World};

/// Environment variable that arms a fault for every tool run it is set for:
/// `crash_after_effect`, `fail_before_effect` or `apqn_offline=03.0006`.
pub const FAULT_ENV: &str = "MKPLAN_ZCRYPT_FAULT";
/// Environment variable that makes every action this many milliseconds slower.
pub const LATENCY_ENV: &str = "MKPLAN_ZCRYPT_LATENCY_MS";
/// Longest latency asked for.
pub const LATENCY_MS_MAX: u64 = 600_000;

/// What a tool prints and its exit code, printed only after the effect is durable.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub code: u8,
}

impl Output {
    pub fn out(&mut self, line: impl AsRef<str>) {
        self.stdout.push_str(line.as_ref());
        self.stdout.push('\n');
    }

    pub fn err(&mut self, line: impl AsRef<str>) {
        self.stderr.push_str(line.as_ref());
        self.stderr.push('\n');
    }

    /// A tool's failure before any effect: its message on stderr, exit 1.
    pub fn failure(tool: &str, message: impl AsRef<str>) -> Self {
        let mut output = Self {
            code: 1,
            ..Self::default()
        };
        output.err(format!("{tool}: {}", message.as_ref()));
        output
    }

    pub fn print(&self) {
        use std::io::Write;
        let _ = std::io::stdout().write_all(self.stdout.as_bytes());
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().write_all(self.stderr.as_bytes());
    }
}

/// One action on the world: the lock held, the truth loaded, faults and latency applied.
pub struct Session {
    pub dir: PathBuf,
    pub world: World,
    label: String,
    crash_after_effect: bool,
    kill_caller_after_effect: bool,
    _lock: Lock,
}

/// Why an action did not start: a message for stderr (exit 1).
pub type Refusal = String;

impl Session {
    /// Opens the world in `dir` for the action `label` (`zkey reencipher`, `tke set`…). A
    /// `fail_before_effect` fault armed for it returns `Err` with the tool's failure.
    pub fn open(dir: &Path, label: &str) -> Result<Self, Refusal> {
        let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let lock = world::lock(&dir.join(world::WORLD_LOCK))?;
        let world = World::load(&dir)?;
        let mut session = Self {
            dir,
            world,
            label: label.into(),
            crash_after_effect: false,
            kill_caller_after_effect: false,
            _lock: lock,
        };
        session.apply_faults()?;
        let latency = std::env::var(LATENCY_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(session.world.latency_ms)
            .min(LATENCY_MS_MAX);
        if latency > 0 {
            std::thread::sleep(std::time::Duration::from_millis(latency));
        }
        Ok(session)
    }

    fn apply_faults(&mut self) -> Result<(), Refusal> {
        let mut armed: Vec<(FaultKind, Option<String>)> = Vec::new();
        if let Ok(text) = std::env::var(FAULT_ENV) {
            for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                let (kind, apqn) = match word.split_once('=') {
                    Some((kind, apqn)) => (kind, Some(apqn.to_ascii_lowercase())),
                    None => (word, None),
                };
                let kind = match kind {
                    "crash_after_effect" => FaultKind::CrashAfterEffect,
                    "fail_before_effect" => FaultKind::FailBeforeEffect,
                    "apqn_offline" if apqn.is_some() => FaultKind::ApqnOffline,
                    _ => {
                        return Err(format!(
                            "{FAULT_ENV}: {word:?} is not crash_after_effect, fail_before_effect or apqn_offline=CARD.DOMAIN"
                        ));
                    }
                };
                armed.push((kind, apqn));
            }
        }
        let label = self.label.clone();
        let mut fired_from_world = false;
        for fault in &mut self.world.faults {
            let matches = fault
                .tool
                .as_deref()
                .is_none_or(|tool| label == tool || label.starts_with(&format!("{tool} ")));
            if matches && fault.skip > 0 {
                fault.skip -= 1;
                fired_from_world = true;
            } else if matches && fault.times > 0 {
                fault.times -= 1;
                fired_from_world = true;
                armed.push((
                    fault.kind,
                    fault.apqn.clone().map(|a| a.to_ascii_lowercase()),
                ));
            }
        }
        let mut failure = None;
        let mut kill_caller = false;
        for (kind, apqn) in armed {
            match kind {
                FaultKind::CrashAfterEffect => self.crash_after_effect = true,
                FaultKind::KillCallerAfterEffect => self.kill_caller_after_effect = true,
                FaultKind::KillCallerBeforeEffect => {
                    kill_caller = true;
                    failure = Some(format!(
                        "{}: the process that ran it was killed (an injected fault); nothing was changed",
                        self.label
                    ));
                }
                FaultKind::FailBeforeEffect => {
                    failure = Some(format!(
                        "{}: the crypto library reported an error (an injected fault); nothing was changed",
                        self.label
                    ));
                }
                FaultKind::ApqnOffline => {
                    let apqn = apqn.unwrap_or_default();
                    let Some((card, index)) = self.world.find_mut(&apqn) else {
                        return Err(format!("fault apqn_offline: no APQN {apqn} in this world"));
                    };
                    card.domains[index].online = false;
                    fired_from_world = true;
                    self.world
                        .history
                        .push(format!("fault: {apqn} went offline"));
                }
            }
        }
        if fired_from_world {
            self.world.save(&self.dir)?;
            render::render(&self.dir, &self.world)?;
        }
        if kill_caller {
            kill_parent();
        }
        match failure {
            Some(message) => Err(message),
            None => Ok(()),
        }
    }

    /// Records the action's effect: applies the loss rule, writes the truth with its new
    /// incidents and `warnings` in one durable write (a kill leaves both or neither), then its
    /// views. Then, under a `crash_after_effect` fault, the process dies before anything is
    /// printed.
    pub fn commit(
        &mut self,
        action: &str,
        warnings: &[Incident],
    ) -> Result<Vec<Incident>, Refusal> {
        let incidents = incidents::newly_lost(&mut self.world, action);
        self.world.history.push(action.to_string());
        self.world.incidents.extend(incidents.iter().cloned());
        self.world.warnings.extend(warnings.iter().cloned());
        self.world.save(&self.dir)?;
        render::render(&self.dir, &self.world)?;
        if self.kill_caller_after_effect {
            kill_parent();
        }
        if self.crash_after_effect || self.kill_caller_after_effect {
            // SAFETY: signals this very process; nothing is printed, as when an operator's
            // session dies after the tool's effect.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        Ok(incidents)
    }
}

/// Kills the process that ran this tool (`DIR/bin/NAME` execs the fake, so it is mkplan, or
/// whoever ran the script), as when the machine or the operator's session is lost.
fn kill_parent() {
    // SAFETY: getppid has no preconditions; SIGKILL to the parent only.
    unsafe {
        libc::kill(libc::getppid(), libc::SIGKILL);
    }
}

/// The tools that `DIR/bin` holds, each a script that execs `mkplan sim zcrypt tool NAME`.
pub const TOOLS: [&str; 5] = [
    "zkey",
    "zkey-cryptsetup",
    "cryptsetup",
    "pkcshsm_mk_change",
    "appkey",
];

/// Runs a fake tool by name with its arguments, as `DIR/bin/NAME` would.
pub fn run_tool(name: &str, dir: &Path, args: &[String]) -> Output {
    match name {
        "zkey" => zkey::run(dir, args),
        "zkey-cryptsetup" => cryptsetup::run(dir, args),
        "cryptsetup" => luks_dump::run(dir, args),
        "pkcshsm_mk_change" => ock::run(dir, args),
        "appkey" => appkey::run(dir, args),
        other => Output::failure(
            "mkplan",
            format!(
                "{} is not a fake tool: one of {}",
                crate::quote::quote(other),
                TOOLS.join(", ")
            ),
        ),
    }
}

/// Parses a tool's arguments with clap; a usage error is the tool's exit 1.
pub fn parse_args<T: clap::Parser>(tool: &str, args: &[String]) -> Result<T, Output> {
    T::try_parse_from(std::iter::once(tool.to_string()).chain(args.iter().cloned())).map_err(|e| {
        let code = if e.exit_code() == 0 { 0 } else { 1 };
        let text = e.render().to_string();
        let mut output = Output {
            code,
            ..Output::default()
        };
        if code == 0 {
            output.stdout = text;
        } else {
            output.stderr = text;
        }
        output
    })
}

/// Glob match with `*` and `?` (zkey's `--name` and `--apqns` filters take wildcards).
pub fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// The current time as zkey stamps it (`%F %T`).
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%F %T").to_string()
}
