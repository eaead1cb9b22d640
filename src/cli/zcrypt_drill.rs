//! `drill` for a domain group file: rehearse its master key change on copies of the fake
//! Crypto Express world its backend names (src/drill/group.rs), one seeded fault a run, and
//! print the summary the HPCS drill prints: every failed run with the command that replays
//! it, the counts, the longest recovery.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::drill::DrillArgs;
use super::output;
use crate::backend::BackendSpec;
use crate::backend::zcrypt::fake::world::WORLD_FILE;
use crate::backend::zcrypt::group::ZcryptBackend;
use crate::backend::zcrypt::tools::SystemRunner;
use crate::drill::group;
use crate::drill::group_run::{self, GroupDrill, GroupRun, WorldTools};
use crate::drill::{Verdict, run_seed};
use crate::error::{Error, Result};
use crate::model::domain_group_desired::{DesiredGroup, DesiredStore, parse_domain_group};
use crate::plan::domain_group::{GroupEvidence, plan_group};

/// A desired file larger than this is not a domain group file.
const GROUP_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Refuses an application key whose `check`, `stage` or `complete` runs a program that is not
/// one of the world's tools: a drill never runs this machine's own programs, which act on the
/// real keys.
fn only_the_worlds_programs(desired: &DesiredGroup, shown: &str, bin: &Path) -> Result<()> {
    for store in &desired.stores {
        let DesiredStore::Application {
            name,
            check,
            stage,
            complete,
            ..
        } = store
        else {
            continue;
        };
        for (which, command) in [("check", check), ("stage", stage), ("complete", complete)] {
            let program = &command[0];
            if program.contains('/') || !bin.join(program).is_file() {
                return Err(Error::Other(format!(
                    "{shown}: application key {name}'s {which} command runs {}, which is not one of the drill world's tools (in {}): a drill never runs this machine's programs, which act on the real keys.\n  fix: name a stand-in found in {} (the fake `appkey` is one), or drill a copy of the group file without this key",
                    crate::quote::quote(program),
                    bin.display(),
                    bin.display()
                )));
            }
        }
    }
    Ok(())
}

pub fn drill(args: &DrillArgs) -> Result<u8> {
    let unsupported = [
        (args.from_live.is_some(), "--from-live"),
        (!args.only.instances.is_empty(), "--instance"),
        (args.over_http, "--over-http"),
        (args.actors, "--actors"),
        (args.json, "--json"),
        (args.report.is_some(), "--report"),
    ];
    if let Some((_, flag)) = unsupported.iter().find(|(given, _)| *given) {
        return Err(Error::Other(format!(
            "{flag} is not supported for a domain group's drill yet: `mkplan drill GROUP.yaml [--backend zcrypt:WORLD/sys] [--runs N] [--seed S]`"
        )));
    }
    let path = &args.desired;
    let shown = path.display().to_string();
    let text = crate::bounded_read::read_to_string(path, GROUP_FILE_BYTES_MAX)
        .map_err(|e| Error::Other(format!("{shown}: cannot read the domain group file: {e}")))?;
    let mut desired = parse_domain_group(&shown, &text, path.parent().unwrap_or(Path::new("")))?;
    let (root, backend_flag) = sysfs_root(args, desired.backend.as_deref(), path)?;
    let world_dir = world_of(&root)?;
    let repository = world_dir.join("zkey");
    if desired.zkey_repository.canonicalize().ok() != repository.canonicalize().ok() {
        // The file names the machine's repository; the runs use their copy of the world's.
        output::note(&format!(
            "{shown} names zkey_repository {}: the drill reads the world's, {}, and each run its copy of it.",
            desired.zkey_repository.display(),
            repository.display()
        ));
        desired.zkey_repository = repository;
    }
    let tokens = world_dir.join("opencryptoki");
    if desired.opencryptoki_config.canonicalize().ok() != tokens.canonicalize().ok() {
        // Never this machine's token configs (the adversary's round 6).
        output::note(&format!(
            "{shown} names opencryptoki_config {}: the drill reads the world's, {}, and each run its copy of it.",
            desired.opencryptoki_config.display(),
            tokens.display()
        ));
        desired.opencryptoki_config = tokens;
    }
    only_the_worlds_programs(&desired, &shown, &world_dir.join("bin"))?;
    let tools = WorldTools {
        bin: world_dir.join("bin"),
        inner: SystemRunner::hiding(desired.user_pins.variables()),
    };
    let backend = ZcryptBackend::open(&root, Arc::new(tools)).map_err(Error::Other)?;
    backend
        .resolve_apqns(&mut desired)
        .map_err(super::zcrypt::read_error)?;
    let live = backend.read(&desired).map_err(super::zcrypt::read_error)?;
    let plan = plan_group(&desired, &live, &GroupEvidence::default())
        .map_err(|refusal| Error::Unsafe(refusal.to_string()))?;
    if !plan.has_changes() {
        eprintln!(
            "Nothing to drill: the world in {} already holds domain group {}'s master keys.",
            world_dir.display(),
            desired.name
        );
        return Ok(0);
    }
    let targets = group::targets(&desired, &plan);
    let mkplan = std::env::current_exe()
        .map_err(|e| Error::Other(format!("cannot find the mkplan binary: {e}")))?;
    let seed = args.seed.unwrap_or_else(random_seed);
    eprintln!(
        "Drilling {shown} on copies of the fake world {}: {} runs, seed {seed}, {} steps per change.",
        world_dir.display(),
        args.runs,
        plan.steps.len()
    );
    let drill = GroupDrill {
        group_text: &text,
        desired: &desired,
        group_folder: path.parent().unwrap_or(Path::new("")),
        world_dir: &world_dir,
        targets: &targets,
        mkplan: &mkplan,
    };
    let scratch = tempfile::tempdir()
        .map_err(|e| Error::Other(format!("cannot make a scratch folder: {e}")))?;
    let started = Instant::now();
    let mut runs = Vec::new();
    for index in 0..args.runs {
        let run = group_run::run_one(&drill, index, run_seed(seed, index), scratch.path())
            .map_err(|e| Error::Other(format!("drill run {index}: {e}")))?;
        runs.push(run);
    }
    let replay = format!("mkplan drill {shown}{backend_flag} --runs 1 --seed {{seed}}");
    output::report(&summary(&runs, &replay, started.elapsed().as_secs_f64()))?;
    let failed = runs.iter().filter(|r| r.failed()).count();
    if failed > 0 {
        return Err(Error::Other(format!(
            "the drill failed: {failed} of {} runs lost a key or did not converge; each is listed above with the command that replays it",
            runs.len()
        )));
    }
    Ok(0)
}

/// The sysfs root the group names (or `--backend`), and the flag that names it in a replay.
fn sysfs_root(args: &DrillArgs, in_file: Option<&str>, path: &Path) -> Result<(PathBuf, String)> {
    let (spec, relative_to, flag) = match (&args.backend, in_file) {
        (Some(spec), _) => (spec.clone(), None, format!(" --backend {spec}")),
        (None, Some(spec)) => (spec.to_string(), path.parent(), String::new()),
        (None, None) => {
            return Err(Error::Other(format!(
                "{}: no backend: add `backend: zcrypt:WORLD/sys` to the file or give --backend zcrypt:WORLD/sys",
                path.display()
            )));
        }
    };
    match BackendSpec::parse(&spec, relative_to).map_err(Error::Other)? {
        BackendSpec::Zcrypt(root) => Ok((root, flag)),
        _ => Err(Error::Other(format!(
            "a domain group's drill runs on copies of a fake world: give zcrypt:WORLD/sys (mkplan sim zcrypt init WORLD), not {}",
            crate::quote::quote(&spec)
        ))),
    }
}

/// The fake world whose `sys` folder `root` is.
fn world_of(root: &Path) -> Result<PathBuf> {
    let root = std::path::absolute(root).map_err(|e| Error::Other(e.to_string()))?;
    match root.parent() {
        Some(world) if root.ends_with("sys") && world.join(WORLD_FILE).is_file() => {
            Ok(world.to_path_buf())
        }
        _ => Err(Error::Other(format!(
            "{} is not the sysfs of a fake world: a drill never touches real cards; it copies a world made with `mkplan sim zcrypt init WORLD` and names WORLD/sys",
            root.display()
        ))),
    }
}

fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes) >> 16
}

/// The failed runs with the command that replays each, the counts, the runs by fault, and
/// the longest recovery.
fn summary(runs: &[GroupRun], replay: &str, seconds: f64) -> String {
    let mut out = String::new();
    for run in runs {
        if let Verdict::Failed { why } = &run.verdict {
            let _ = writeln!(
                out,
                "FAILED run {} (seed {}), {}: {why}\n  applies: {}\n  replay: {}",
                run.run,
                run.seed,
                run.fault.describe(),
                run.endings.join("; "),
                replay.replace("{seed}", &run.seed.to_string())
            );
        }
    }
    let (converged, refused, failed) = group_run::counts(runs);
    let _ = writeln!(
        out,
        "{} runs in {seconds:.1} s: {converged} converged, {refused} refused safely, {failed} failed; {} incidents.",
        runs.len(),
        runs.iter().map(|r| r.incidents).sum::<usize>()
    );
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for run in runs {
        match kinds.iter_mut().find(|(k, _)| *k == run.fault.kind()) {
            Some((_, n)) => *n += 1,
            None => kinds.push((run.fault.kind(), 1)),
        }
    }
    let _ = writeln!(
        out,
        "Faults: {}.",
        kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(longest) = runs.iter().max_by_key(|r| r.attempts) {
        let _ = writeln!(
            out,
            "Longest recovery: run {} (seed {}), {} {} ({}).",
            longest.run,
            longest.seed,
            longest.attempts,
            if longest.attempts == 1 {
                "apply"
            } else {
                "applies"
            },
            longest.fault.describe()
        );
    }
    out
}
