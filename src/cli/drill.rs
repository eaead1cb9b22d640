//! `drill`: rehearse a rotation under seeded fault schedules on copies of a fleet, and
//! `status --export-fleet`: a simulator fleet from the live state. The drill's summary (or,
//! with `--json`, its result) is its report, on stdout; progress goes to stderr.

use std::fmt::Write;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args as ClapArgs;
use indicatif::{ProgressBar, ProgressStyle};

use super::BackendArg;
use super::apply::key_parts;
use super::context::{Desired, evidence_for, read_desired, refresh_desired};
use super::output;
use crate::backend::sim::{Fleet, write_atomically};
use crate::backend::{AnyBackend, Backend, BackendSpec};
use crate::drill::{self, Drill, DrillResult, RUNS_MAX, report, run_seed};
use crate::error::{Error, Result};
use crate::model::{JournalEvidence, LiveFleet};
use crate::render;
use crate::store::Store;

#[derive(Debug, ClapArgs)]
pub struct DrillArgs {
    pub desired: PathBuf,
    /// The fleet to drill: sim:FLEET.yaml (default: `backend:` in the desired file).
    #[arg(long, conflicts_with = "from_live")]
    pub backend: Option<String>,
    /// Snapshot the live state of this backend (sim:… or http://…) and drill that.
    #[arg(long, value_name = "BACKEND")]
    pub from_live: Option<String>,
    #[command(flatten)]
    pub only: super::InstanceArg,
    /// Runs, each with its own fault schedule.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=RUNS_MAX))]
    pub runs: u64,
    /// Seed of the schedules (default: random, printed); run i uses seed + i.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Run over HTTP: each run's fleet is served by an in-process `sim serve` on loopback,
    /// reached with the HTTP backend, and schedules may restart the server in the middle of
    /// an operation. Slower (a real clock), so use fewer runs.
    #[arg(long)]
    pub over_http: bool,
    /// Several actors take turns on each run's fleet: mkplan from two state folders (X and
    /// Y), and an operator with the TKE CLI who also acts outside mkplan and attests the
    /// truth when a plan asks for it. Faults hit mkplan's applies; rewraps run as slowly as
    /// the fleet says (`rewrap_ms_per_key`). In memory only.
    #[arg(long, conflicts_with = "over_http")]
    pub actors: bool,
    /// With --actors: X and Y share one journal in this PostgreSQL database instead of two
    /// state folders, as a team does. Name a scratch database: each run writes a scope of its
    /// own there (`drill …`), with leases, as `apply --state` would.
    #[arg(long, requires = "actors", value_name = "postgres://…")]
    pub shared_state: Option<String>,
    /// Write the evidence report (Markdown) to this file.
    #[arg(long, value_name = "FILE.md")]
    pub report: Option<PathBuf>,
}

pub async fn drill(args: &DrillArgs, store: &Store) -> Result<u8> {
    let desired = read_desired(&args.desired)?.only(&args.only.instances)?;
    let (mut fleet, source, replay_backend) = starting_fleet(&desired, args, store).await?;
    if !desired.targeted.is_empty() {
        // The runs rotate the named instances on copies that hold only them.
        fleet.instances.retain(|i| {
            desired
                .targeted
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&i.id))
        });
    }
    if !desired.left_out.is_empty() {
        eprintln!(
            "{}",
            crate::render::left_out_because(&desired.left_out, "not in the drill's fleet copies")
        );
    }
    let fleet_fingerprint = LiveFleet {
        instances: fleet.instances.iter().map(|i| i.live()).collect(),
    }
    .fingerprint();
    let live = LiveFleet {
        instances: fleet.instances.iter().map(|i| i.live()).collect(),
    };
    let plan = crate::plan::plan(
        &desired.state,
        &desired.sha256,
        &live,
        &JournalEvidence::none(),
    )?;
    if !plan.changes {
        eprintln!(
            "Nothing to drill: {source} already holds the desired state (the plan has no steps)."
        );
        return Ok(0);
    }
    let parts = key_parts(
        &desired,
        &plan,
        &std::collections::HashMap::new(),
        &mut Default::default(),
    )?;
    let seed = args.seed.unwrap_or_else(random_seed);
    let drill = Drill {
        desired: &desired.state,
        desired_sha256: &desired.sha256,
        fleet: &fleet,
        key_parts: &parts,
        planner: crate::plan::plan,
    };
    let operations = drill::operations(&plan);
    eprintln!(
        "Drilling {} against {source}: {} runs, seed {seed}, {operations} operations per rotation.",
        desired.path.display(),
        args.runs
    );
    let started = Instant::now();
    // The runs need a runtime of their own (one thread, a simulated clock), which cannot be
    // started from inside this command's runtime: they run on a thread of their own.
    let results = std::thread::scope(|scope| {
        scope
            .spawn(|| run_all(&drill, args.runs, seed, operations, args))
            .join()
            .expect("the drill thread does not panic")
    })?;
    let elapsed = started.elapsed();
    let result = DrillResult::new(
        args.runs,
        seed,
        &plan,
        fleet_fingerprint,
        results,
        elapsed.as_millis() as u64,
    );
    let replay = format!(
        "mkplan drill {} {replay_backend}{} --runs 1 --seed {{seed}}{}{}{}",
        desired.path.display(),
        desired
            .targeted
            .iter()
            .map(|id| format!(" --instance {id}"))
            .collect::<String>(),
        if args.over_http { " --over-http" } else { "" },
        if args.actors { " --actors" } else { "" },
        match &args.shared_state {
            // Shown without its password, as every URL mkplan prints.
            Some(url) => Store::parse(url)
                .map(|store| format!(" --shared-state {}", store.shown()))
                .unwrap_or_default(),
            None => String::new(),
        }
    );
    // The summary is the report unless JSON was asked for: then it is a note beside it.
    let summary = summary(&result, &replay, elapsed.as_secs_f64());
    if args.json {
        output::note(summary.trim_end());
    } else {
        output::report(&summary)?;
    }
    if let Some(path) = &args.report {
        let text = report::markdown(
            &result,
            &format!("{} against {source}", desired.path.display()),
            &replay,
        );
        write_atomically(path, text.as_bytes()).map_err(|e| {
            Error::Other(format!("cannot write the report {}: {e}", path.display()))
        })?;
        output::note(&format!("Evidence report: {}", path.display()));
    }
    if args.json {
        output::report_line(&render::versioned_json(
            render::DRILL_FORMAT_VERSION,
            &result,
        ))?;
    }
    if result.failed > 0 {
        return Err(Error::Other(format!(
            "the drill failed: {} of {} runs lost data or did not converge; each is listed above with the command that replays it",
            result.failed, result.runs
        )));
    }
    Ok(0)
}

fn run_all(
    drill: &Drill<'_>,
    runs: u64,
    seed: u64,
    operations: u64,
    args: &DrillArgs,
) -> Result<Vec<drill::RunResult>> {
    let over_http = args.over_http;
    let runtime = drill::runtime(over_http)
        .map_err(|e| Error::Other(format!("cannot start the drill's runtime: {e}")))?;
    let scratch = tempfile::tempdir()
        .map_err(|e| Error::Other(format!("cannot make a scratch folder: {e}")))?;
    let shared = match &args.shared_state {
        None => None,
        Some(url) => match Store::parse(url).map_err(Error::Other)? {
            store @ Store::Postgres(_) => Some(store),
            Store::Files(_) => {
                return Err(Error::Other(format!(
                    "--shared-state {url}: name a PostgreSQL database (postgres://USER@HOST:PORT/DATABASE); without it the actors keep two state folders"
                )));
            }
        },
    };
    let bar = progress_bar(runs);
    let mut results = Vec::with_capacity(runs.min(100_000) as usize);
    for index in 0..runs {
        let seed = run_seed(seed, index);
        let result = if args.actors {
            runtime.block_on(drill::actors::run_cast(
                drill,
                index,
                seed,
                operations,
                scratch.path(),
                shared.as_ref(),
            ))
        } else {
            runtime.block_on(drill::run_one_via(
                drill,
                index,
                seed,
                operations,
                scratch.path(),
                over_http,
            ))
        }
        .map_err(|e| Error::Other(format!("drill run {index}: {e}")))?;
        if let Some(bar) = &bar {
            bar.inc(1);
        }
        results.push(result);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(results)
}

fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes) >> 16
}

fn progress_bar(runs: u64) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() || super::conventions::quiet() {
        return None;
    }
    let bar = ProgressBar::new(runs);
    if let Ok(style) = ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} runs")
    {
        bar.set_style(style);
    }
    Some(bar)
}

/// The failed runs with the command that replays each, the counts, and the longest recovery.
fn summary(result: &DrillResult, replay: &str, seconds: f64) -> String {
    let mut out = String::new();
    for run in result.schedules.iter().filter(|r| r.failed()) {
        if let drill::Verdict::Failed { why } = &run.verdict {
            let _ = writeln!(
                out,
                "FAILED run {} (seed {}), schedule {}: {why}\n  replay: {}",
                run.run,
                run.schedule.seed,
                run.schedule.describe(),
                replay.replace("{seed}", &run.schedule.seed.to_string())
            );
        }
    }
    let _ = writeln!(
        out,
        "{} runs in {seconds:.1} s: {} converged, {} refused safely, {} failed; {} incidents.",
        result.runs, result.converged, result.refused, result.failed, result.incidents
    );
    if let Some(longest) = result.longest_recovery() {
        let _ = writeln!(
            out,
            "Longest recovery: run {} (seed {}), {} attempts, {} operations after the first fault ({}).",
            longest.run,
            longest.schedule.seed,
            longest.attempts,
            longest.recovery_operations,
            longest.schedule.describe()
        );
    }
    out
}

/// The fleet every run starts from, how to name it, and the backend flag that replays a run.
async fn starting_fleet(
    desired: &Desired,
    args: &DrillArgs,
    store: &Store,
) -> Result<(Fleet, String, String)> {
    if let Some(spec) = &args.from_live {
        let flag = BackendArg {
            backend: Some(spec.clone()),
            parallelism: 10,
            tke_endpoint: std::env::var("MKPLAN_TKE_ENDPOINT").ok(),
            // A snapshot only reads; the drill's loads go to its own simulators.
            loads_key_parts: false,
        };
        let (backend, live) = refresh_desired(desired, &flag).await?;
        let fleet = snapshot_live(desired, &live, &backend, store)?;
        return Ok((
            fleet,
            format!("a snapshot of {spec}"),
            format!("--from-live {spec}"),
        ));
    }
    let spec = match (&args.backend, &desired.state.backend) {
        (Some(spec), _) => BackendSpec::parse(spec, None),
        (None, Some(spec)) => BackendSpec::parse(spec, desired.path.parent()),
        (None, None) => {
            return Err(Error::Other(
                "no fleet to drill: pass --backend sim:FLEET.yaml, or --from-live BACKEND to snapshot a live state".into(),
            ));
        }
    }
    .map_err(Error::Other)?;
    let BackendSpec::Sim(path) = spec else {
        return Err(Error::Other(
            "a drill runs on copies of a simulator fleet: for an HTTP backend use --from-live http://… (it snapshots the live state first)".into(),
        ));
    };
    let shown = path.display().to_string();
    let text = Fleet::read_text(&path).map_err(|e| {
        Error::Other(format!(
            "cannot read the fleet file {}: {e}",
            crate::quote::name(&shown)
        ))
    })?;
    let fleet = Fleet::parse(&shown, &text)?;
    Ok((
        fleet,
        format!("sim:{shown}"),
        format!("--backend sim:{shown}"),
    ))
}

/// The live state as a simulator fleet, its key storage inferred from the evidence (the
/// service status, the journal in the state directory, the registers).
fn snapshot_live(
    desired: &Desired,
    live: &LiveFleet,
    backend: &AnyBackend,
    store: &Store,
) -> Result<Fleet> {
    let records = store.read_journal(&backend.identity(), Some(&desired.instance_ids()))?;
    Ok(drill::snapshot(
        &desired.state,
        &desired.sha256,
        live,
        &evidence_for(&records, backend, store, desired),
    )?)
}

/// `status --export-fleet FILE`.
pub fn export_fleet(
    desired: &Desired,
    live: &LiveFleet,
    backend: &AnyBackend,
    store: &Store,
    out: &Path,
) -> Result<()> {
    if out.exists() {
        return Err(Error::Other(format!(
            "{} exists: give a new file name (an export never overwrites a fleet)",
            out.display()
        )));
    }
    let fleet = snapshot_live(desired, live, backend, store)?;
    let text = format!(
        "# Exported by mkplan {} from the live state of {}.\n# key_storage is inferred from the evidence (service status, journal, registers), not read:\n# a real service does not reveal it. keys: 0 means unknown.\n{}",
        env!("CARGO_PKG_VERSION"),
        desired.path.display(),
        fleet.to_yaml()
    );
    write_atomically(out, text.as_bytes())
        .map_err(|e| Error::Other(format!("cannot write {}: {e}", out.display())))?;
    output::note(&format!(
        "Exported {} service instance(s) to {}; drill it with `mkplan drill {} --backend sim:{}`.",
        fleet.instances.len(),
        out.display(),
        desired.path.display(),
        out.display()
    ));
    Ok(())
}
