//! One run of a domain group's drill (docs/zcrypt.md): a copy of the world with the run's
//! fault armed, `mkplan apply` run on it as a child process with the scripted ceremony
//! operator, reruns until converged, refused or given up, and the fake's incidents read after
//! every apply.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde::Serialize;

use super::group::{GroupFault, Target, VERIFY_TIMEOUT_S, arm, draw};
use super::{CLEAN_RERUNS_MAX, Verdict};
use crate::backend::zcrypt::fake::ceremony::{self, Action, Request};
use crate::backend::zcrypt::fake::world::{Mk, World};
use crate::backend::zcrypt::fake::{init, ock};
use crate::model::domain_group_desired::{DesiredGroup, DesiredStore};

/// Runs the fake's tools from a world's `bin` folder (the drill reads the world it copies
/// with them, whatever `PATH` says).
pub struct WorldTools {
    pub bin: PathBuf,
    pub inner: crate::backend::zcrypt::tools::SystemRunner,
}

impl crate::backend::zcrypt::tools::ToolRunner for WorldTools {
    fn run(
        &self,
        call: &crate::backend::zcrypt::tools::ToolCall,
    ) -> Result<crate::backend::zcrypt::tools::ToolOutput, String> {
        let mut call = call.clone();
        let fake = self.bin.join(&call.program);
        if fake.is_file() {
            call.program = fake.display().to_string();
        }
        self.inner.run(&call)
    }
}

/// What every run starts from.
pub struct GroupDrill<'a> {
    /// The group file's text: each run applies a copy pointed at its world.
    pub group_text: &'a str,
    pub desired: &'a DesiredGroup,
    /// The group file's folder, where its relative paths (LUKS2 key files) start.
    pub group_folder: &'a Path,
    /// The world copied (`mkplan sim zcrypt init`'s folder).
    pub world_dir: &'a Path,
    pub targets: &'a [Target],
    /// The binary each apply runs.
    pub mkplan: &'a Path,
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupRun {
    pub run: u64,
    pub seed: u64,
    pub fault: GroupFault,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Applies run, the first included.
    pub attempts: usize,
    /// How each apply ended.
    pub endings: Vec<String>,
    /// Keys the fake recorded as lost during the run.
    pub incidents: usize,
}

impl GroupRun {
    pub fn failed(&self) -> bool {
        matches!(self.verdict, Verdict::Failed { .. })
    }
}

enum Ending {
    Converged,
    Refused(String),
    Stopped(String),
    /// mkplan asked for a ceremony step the TKE could not perform.
    Wrong(String),
}

/// One run in its own folder under `scratch` (removed after it).
pub fn run_one(
    drill: &GroupDrill,
    run: u64,
    seed: u64,
    scratch: &Path,
) -> Result<GroupRun, String> {
    let fault = draw(seed, drill.targets);
    let folder = scratch.join(format!("run-{run}"));
    let world_dir = folder.join("world");
    let baseline = init::copy(drill.world_dir, &world_dir, |world| {
        arm(world, &fault, drill.targets)
    })?;
    let world_dir = std::path::absolute(&world_dir).map_err(|e| e.to_string())?;
    let group = retarget(drill.group_text, &world_dir)?;
    std::fs::write(folder.join("group.yaml"), group)
        .map_err(|e| format!("{}: {e}", folder.display()))?;
    copy_key_files(drill, &folder)?;
    let attempts_max = 1 + CLEAN_RERUNS_MAX;
    let mut endings = Vec::new();
    let mut verdict = None;
    let mut incidents = 0;
    for attempt in 1..=attempts_max {
        let armed = (attempt == 1).then_some(&fault);
        let ending = attempt_once(drill, &folder, &world_dir, armed)?;
        let world = World::load(&world_dir)?;
        incidents = world.incidents.len().saturating_sub(baseline);
        if let Some(lost) = world.incidents.get(baseline) {
            verdict = Some(Verdict::Failed {
                why: format!(
                    "{} incident(s) after apply {attempt}, the first: {} {}: {}, after `{}`",
                    world.incidents.len() - baseline,
                    lost.store,
                    lost.key,
                    lost.description,
                    lost.action
                ),
            });
        }
        let (said, settled) = match ending {
            Ending::Converged if converged(drill, &folder, &world_dir)? => {
                ("converged".to_string(), Some(Verdict::Converged))
            }
            Ending::Converged => (
                "exit 0".to_string(),
                Some(Verdict::Failed {
                    why: "apply ended with exit 0 but a plan still shows steps".into(),
                }),
            ),
            Ending::Refused(reason) => (
                format!("refused: {reason}"),
                Some(Verdict::Refused { reason }),
            ),
            Ending::Wrong(why) => (why.clone(), Some(Verdict::Failed { why })),
            Ending::Stopped(why) => (why, None),
        };
        endings.push(said);
        verdict = verdict.or(settled);
        if verdict.is_some() {
            break;
        }
    }
    let verdict = verdict.unwrap_or_else(|| Verdict::Failed {
        why: format!("not converged after {attempts_max} applies"),
    });
    let _ = std::fs::remove_dir_all(&folder);
    Ok(GroupRun {
        run,
        seed,
        fault,
        verdict,
        attempts: endings.len(),
        endings,
        incidents,
    })
}

/// The LUKS2 key files and USER PIN files the group file names by relative path, copied to
/// the same paths below the run's folder (where its copy of the group file is), readable by
/// the owner only.
fn copy_key_files(drill: &GroupDrill, folder: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let luks2 = drill.desired.stores.iter().filter_map(|store| match store {
        DesiredStore::Luks2Volume { key_file, .. } => Some(key_file),
        _ => None,
    });
    let pins = drill
        .desired
        .user_pins
        .sources()
        .filter_map(|(_, source)| match source {
            crate::model::domain_group_pins::PinSource::File(path) => Some(path),
            crate::model::domain_group_pins::PinSource::Env(_) => None,
        });
    for key_file in luks2.chain(pins) {
        let Ok(relative) = key_file.strip_prefix(drill.group_folder) else {
            continue;
        };
        if key_file.is_absolute() && !drill.group_folder.is_absolute() {
            continue;
        }
        if relative
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "{}: a drill copies a key file named by a relative path below the group file's folder; name this one by its absolute path",
                key_file.display()
            ));
        }
        let copy = folder.join(relative);
        if let Some(parent) = copy.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::copy(key_file, &copy)
            .and_then(|_| std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)))
            .map_err(|e| format!("{}: cannot copy it for the run: {e}", key_file.display()))?;
    }
    Ok(())
}

/// The group file pointed at a run's world: its top-level `backend:`, `zkey_repository:` and
/// `opencryptoki_config:` lines replaced (or added), then read back to prove it.
fn retarget(text: &str, world_dir: &Path) -> Result<String, String> {
    let lines = [
        (
            "backend:",
            format!("backend: \"zcrypt:{}\"", world_dir.join("sys").display()),
        ),
        (
            "zkey_repository:",
            format!("zkey_repository: \"{}\"", world_dir.join("zkey").display()),
        ),
        (
            "opencryptoki_config:",
            format!(
                "opencryptoki_config: \"{}\"",
                world_dir.join("opencryptoki").display()
            ),
        ),
    ];
    let mut out = String::new();
    let mut has = [false; 3];
    for line in text.lines() {
        match lines.iter().position(|(key, _)| line.starts_with(key)) {
            Some(i) => {
                has[i] = true;
                out.push_str(&lines[i].1);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    for (has, (_, line)) in has.iter().zip(&lines) {
        if !has {
            out.push_str(line);
            out.push('\n');
        }
    }
    let copy =
        crate::model::domain_group_desired::parse_domain_group("group.yaml", &out, world_dir)
            .map_err(|e| e.to_string())?;
    if copy.zkey_repository != world_dir.join("zkey")
        || copy.opencryptoki_config != world_dir.join("opencryptoki")
        || copy.backend.as_deref()
            != Some(format!("zcrypt:{}", world_dir.join("sys").display()).as_str())
    {
        return Err("cannot point a copy of the group file at a run's world: write `backend:`, `zkey_repository:` and `opencryptoki_config:` as top-level lines of their own".into());
    }
    Ok(out)
}

fn command(drill: &GroupDrill, folder: &Path, world_dir: &Path, args: &[&str]) -> Command {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![world_dir.join("bin")];
    paths.extend(std::env::split_paths(&path));
    let mut command = Command::new(drill.mkplan);
    command
        .current_dir(folder)
        .env("PATH", std::env::join_paths(paths).unwrap_or(path))
        .env("MKPLAN_STATE_DIR", folder.join("state"))
        // A journal key of the run's own, beside its state folder: the scratch journals'
        // heads never land among the operator's.
        .env("MKPLAN_JOURNAL_KEY", folder.join("journal-key/journal.key"))
        .env_remove("MKPLAN_STATE")
        .env_remove("MKPLAN_BACKEND")
        .env_remove(crate::backend::zcrypt::fake::FAULT_ENV)
        // The run's tokens' configs are the scratch world's (`pin_tokens` writes them there):
        // a variable of the operator's shell would point mkplan and the fake tool at real ones.
        .env_remove(crate::backend::zcrypt::ock_conf::EP11_TOKEN_DIR_VARIABLE)
        // zkey's repository is the run's world's, as the group file's copy names it.
        .env("ZKEY_REPOSITORY", world_dir.join("zkey"))
        .env("NO_COLOR", "1")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn converged(drill: &GroupDrill, folder: &Path, world_dir: &Path) -> Result<bool, String> {
    let status = command(
        drill,
        folder,
        world_dir,
        &["plan", "group.yaml", "--detailed-exitcode"],
    )
    .status()
    .map_err(|e| format!("cannot run {}: {e}", drill.mkplan.display()))?;
    Ok(status.code() == Some(0))
}

/// One apply of the run, with the scripted operator; `fault` on the first only.
fn attempt_once(
    drill: &GroupDrill,
    folder: &Path,
    world_dir: &Path,
    fault: Option<&GroupFault>,
) -> Result<Ending, String> {
    let timeout = VERIFY_TIMEOUT_S.to_string();
    let mut child = command(
        drill,
        folder,
        world_dir,
        &[
            "apply",
            "group.yaml",
            "--auto-approve",
            "--verify-timeout-s",
            &timeout,
        ],
    )
    .stdin(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .map_err(|e| format!("cannot run {}: {e}", drill.mkplan.display()))?;
    let mut operator = Operator {
        drill,
        world_dir,
        fault,
        shown: None,
        behind: Vec::new(),
        wrong: None,
    };
    let stderr = child.stderr.take().expect("piped");
    let mut last = String::new();
    let mut refusal = None;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if line.contains("refused by pre-check") {
            refusal = Some(line.trim().to_string());
        }
        operator.read(&line, &mut child);
        if !line.trim().is_empty() {
            last = line;
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    for performing in operator.behind.drain(..) {
        if let Ok(Some(why)) = performing.join() {
            operator.wrong.get_or_insert(why);
        }
    }
    if let Some(why) = operator.wrong {
        return Ok(Ending::Wrong(why));
    }
    Ok(match status.code() {
        Some(0) => Ending::Converged,
        Some(3) => Ending::Refused(refusal.unwrap_or(last)),
        Some(code) => Ending::Stopped(format!("exit {code}: {}", last.trim())),
        None => Ending::Stopped("killed".into()),
    })
}

/// The scripted operator: reads the apply's instructions, performs each ceremony step with
/// the fake TKE and answers, or does what the run's fault says.
struct Operator<'a> {
    drill: &'a GroupDrill<'a>,
    world_dir: &'a Path,
    fault: Option<&'a GroupFault>,
    /// The ceremony step shown: its action, APQN and master key type.
    shown: Option<(String, String, Option<String>)>,
    /// Ceremony steps still being performed (latency: `done` was answered at once), each
    /// with the TKE's refusal if it refused.
    behind: Vec<std::thread::JoinHandle<Option<String>>>,
    wrong: Option<String>,
}

impl Operator<'_> {
    fn read(&mut self, line: &str, child: &mut Child) {
        if let Some(rest) = line.strip_prefix("Ceremony step ") {
            // "z1 (load_new_mk) on APQN 03.0006 of domain group payroll:"
            let action = rest.split(['(', ')']).nth(1).unwrap_or_default();
            let apqn = rest
                .split("on APQN ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or_default();
            self.shown = Some((action.into(), apqn.into(), None));
        }
        if let (Some(rest), Some(shown)) = (
            line.trim_start().strip_prefix("mkplan then checks "),
            self.shown.as_mut(),
        ) {
            shown.2 = rest
                .split("for: ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(String::from);
        }
        if !line.starts_with("Type 'done'") {
            return;
        }
        let Some((action, apqn, mk_type)) = self.shown.take() else {
            return;
        };
        let step = format!("{action}@{apqn}");
        let answer = |child: &mut Child, text: &str| {
            if let Some(stdin) = child.stdin.as_mut() {
                let _ = stdin.write_all(text.as_bytes());
            }
        };
        let request = match request(self.drill.desired, &action, &apqn, mk_type.as_deref()) {
            Ok(request) => request,
            Err(why) => {
                self.wrong = Some(why);
                let _ = child.kill();
                return;
            }
        };
        match self.fault {
            Some(GroupFault::OperatorStops { step: at }) if at == &step => {
                answer(child, "stop\n");
            }
            Some(GroupFault::ApplyKilled {
                step: at,
                performed,
            }) if at == &step => {
                if *performed {
                    self.perform(&request, &step, child);
                }
                let _ = child.kill();
            }
            Some(GroupFault::Latency { .. }) => {
                let dir = self.world_dir.to_path_buf();
                self.behind
                    .push(std::thread::spawn(move || tke(&dir, &request, &step).err()));
                answer(child, "done\n");
            }
            _ => {
                if self.perform(&request, &step, child) {
                    answer(child, "done\n");
                }
            }
        }
    }

    /// Performs the step; when the TKE refuses it, mkplan asked for a wrong step: the apply
    /// is killed at once (it would wait for `mkvps` in vain).
    fn perform(&mut self, request: &Request, step: &str, child: &mut Child) -> bool {
        match tke(self.world_dir, request, step) {
            Ok(()) => true,
            Err(why) => {
                self.wrong.get_or_insert(why);
                let _ = child.kill();
                false
            }
        }
    }
}

/// The step with the fake TKE, and after a set, the token configs pinned.
fn tke(world_dir: &Path, request: &Request, step: &str) -> Result<(), String> {
    let output = ceremony::run(world_dir, request);
    if output.code != 0 {
        return Err(format!(
            "mkplan asked for ceremony step {step}, which the TKE refused: {}",
            output.stderr.trim()
        ));
    }
    if request.action == Action::Set {
        pin_tokens(world_dir)?;
    }
    Ok(())
}

/// What the procedure asks of the operator after the set, before `pkcshsm_mk_change
/// finalize`: each token config's `EXPECTED_*` pins name the keys its objects were
/// re-enciphered under.
fn pin_tokens(world_dir: &Path) -> Result<(), String> {
    let world = World::load(world_dir)?;
    for token in world.tokens.iter().filter(|t| !t.staged.is_empty()) {
        let mut pinned = token.clone();
        pinned.objects.extend(token.staged.clone());
        let path = ock::config_path(world_dir, token);
        std::fs::write(&path, ock::config_text(&world, &pinned))
            .map_err(|e| format!("{}: {e}", crate::quote::path(&path)))?;
    }
    Ok(())
}

/// The TKE request for a ceremony step the apply showed.
fn request(
    desired: &DesiredGroup,
    action: &str,
    apqn: &str,
    mk_type: Option<&str>,
) -> Result<Request, String> {
    let action = match action {
        "load_new_mk" => Action::Load,
        "commit_new_mk" => Action::Commit,
        "set_immediate" => Action::Set,
        "clear_new_mk" => Action::Clear,
        other => {
            return Err(format!(
                "the apply showed an unknown ceremony step {other:?}"
            ));
        }
    };
    let (mk_type, vp) = desired
        .master_keys
        .iter()
        .find(|(t, _)| Some(t.to_string().as_str()) == mk_type)
        .ok_or_else(|| format!("the apply's ceremony step on {apqn} names no master key type of the group ({mk_type:?})"))?;
    let mk = Mk::parse(&mk_type.to_string())
        .ok_or_else(|| format!("the fake has no {mk_type} master key"))?;
    // The group may give an EP11 pattern's first 16 bytes only (what every tool compares):
    // the key the operator loads has a pattern that begins with them.
    let vp = vp.to_string();
    let vp = vp.repeat(mk.vp_hex_len().div_ceil(vp.len().max(1)))[..mk.vp_hex_len()].to_string();
    Ok(Request {
        action,
        apqns: vec![apqn.to_string()],
        mk,
        vp: (action != Action::Clear).then_some(vp),
        part: None,
    })
}

/// Counts of the runs by verdict, and by fault kind.
pub fn counts(runs: &[GroupRun]) -> (usize, usize, usize) {
    let converged = runs
        .iter()
        .filter(|r| r.verdict == Verdict::Converged)
        .count();
    let refused = runs
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Refused { .. }))
        .count();
    (converged, refused, runs.len() - converged - refused)
}
