//! Disaster-recovery drills (`mkplan drill`): apply a desired state to copies of a fleet many
//! times, each time under a different seeded schedule of faults (crashes of mkplan, lost
//! responses, failed operations, an expiring token, latency that reorders concurrent steps),
//! rerunning after each failure as an operator would, and prove from the simulator's own
//! ground truth that every run ended converged or safely refused, with zero incidents.
//!
//! Runs happen in process, on a simulated clock (latency costs no time, and the order in
//! which concurrent operations finish depends only on the seed): the same seed gives the same
//! schedules and the same verdicts. A crash is the apply being dropped at the end of the
//! crashing operation: every journal record written before it stays, nothing after it is
//! written, exactly as when the process dies (every record is written before the next
//! operation starts). Real process aborts are exercised by the crash sweeps in the tests.

pub mod actors;
pub mod backend;
pub mod group;
pub mod group_run;
pub mod report;
pub mod schedule;

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::apply::audit::Audit;
use crate::apply::evidence::journal_evidence;
use crate::apply::executor::{self, Context, Progress};
use crate::apply::journal::Journal;
use crate::apply::session;
use crate::backend::sim::{Fleet, KeyStorage, SimInstance};
use crate::backend::{Backend, refresh_with_retries};
use crate::keypart::Secret32;
use crate::model::{
    DesiredState, JournalEvidence, LiveFleet, NewRegister, RewrapStatus, VerificationPattern,
};
use crate::plan::{Action, Plan, PlanRefused, Step};
use crate::store::Store;
use backend::{DrillBackend, Performed};
use schedule::Schedule;

/// Runs one drill may ask for, at most.
pub const RUNS_MAX: u64 = 1_000_000;
/// Clean reruns after the faulty attempts before a run counts as stuck.
pub const CLEAN_RERUNS_MAX: usize = 3;

/// The planner a drill exercises: `plan::plan`, or in tests a deliberately defective one.
pub type Planner =
    fn(&DesiredState, &str, &LiveFleet, &JournalEvidence) -> Result<Plan, PlanRefused>;

/// What every run starts from.
pub struct Drill<'a> {
    pub desired: &'a DesiredState,
    pub desired_sha256: &'a str,
    pub fleet: &'a Fleet,
    /// The decrypted key parts of each instance that has them.
    pub key_parts: &'a HashMap<String, Vec<Secret32>>,
    pub planner: Planner,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Every unit holds the desired MK, the key storage is under it, no incident.
    Converged,
    /// The planner refused (exit 3) and nothing was lost: an operator needs more evidence.
    Refused { reason: String },
    /// An incident, a broken invariant, or no convergence after every rerun.
    Failed { why: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub run: u64,
    pub schedule: Schedule,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Apply attempts made, the first included.
    pub attempts: usize,
    /// How each attempt ended.
    pub attempt_endings: Vec<String>,
    /// Mutating operations the simulator received, over all attempts.
    pub operations: usize,
    /// Operations after the first injected fault: the cost of recovering.
    pub recovery_operations: usize,
    /// The run went over HTTP.
    pub over_http: bool,
    /// The faults that fired, as `attempt 1, operation 4 (commit_new_mk): lost response`: a
    /// scheduled fault fires only if its attempt reaches that operation.
    pub fired: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<String>,
    #[serde(skip)]
    pub log: Vec<Performed>,
}

impl RunResult {
    pub fn failed(&self) -> bool {
        matches!(self.verdict, Verdict::Failed { .. })
    }
}

/// Mutating operations of a plan (a remove_unit sends nothing).
pub fn operations(plan: &Plan) -> u64 {
    plan.steps
        .iter()
        .filter(|s| s.action != Action::RemoveUnit)
        .count() as u64
}

/// The runtime drills run on: one thread, a simulated clock; over HTTP a real clock and
/// network (each in-process server has a runtime of its own).
pub fn runtime(over_http: bool) -> std::io::Result<tokio::runtime::Runtime> {
    if over_http {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
}

/// One run: the schedule drawn from `seed`, attempts until converged, refused or stuck, in a
/// scratch state directory under `scratch`.
pub async fn run_one(
    drill: &Drill<'_>,
    run: u64,
    seed: u64,
    operations: u64,
    scratch: &Path,
) -> std::io::Result<RunResult> {
    run_one_via(drill, run, seed, operations, scratch, false).await
}

/// One run, in memory or over HTTP: `over_http` serves the fleet from an in-process
/// `sim serve` on loopback (real clock, server restarts in the schedule).
pub async fn run_one_via(
    drill: &Drill<'_>,
    run: u64,
    seed: u64,
    operations: u64,
    scratch: &Path,
    over_http: bool,
) -> std::io::Result<RunResult> {
    let schedule = Schedule::draw_for(seed, operations, over_http);
    run_schedule(drill, run, schedule, scratch, over_http).await
}

/// One run of a given schedule (the tests' exhaustive sweeps: a fault at every operation).
pub async fn run_schedule(
    drill: &Drill<'_>,
    run: u64,
    schedule: Schedule,
    scratch: &Path,
    over_http: bool,
) -> std::io::Result<RunResult> {
    let state_dir = tempfile::tempdir_in(scratch)?;
    let backend = if over_http {
        // Removed with the scratch folder, after the run.
        let folder = tempfile::tempdir_in(scratch)?.keep();
        DrillBackend::over_http(drill.fleet, schedule.clone(), &folder)
            .map_err(std::io::Error::other)?
    } else {
        DrillBackend::new(drill.fleet.clone(), schedule.clone())
    };
    let ids: Vec<String> = drill
        .desired
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect();
    let attempts_max = schedule.attempts.len() + CLEAN_RERUNS_MAX;
    let mut endings = Vec::new();
    let mut verdict = None;
    for attempt in 1..=attempts_max {
        let crashed = backend.start_attempt(attempt);
        let ending = attempt_once(
            drill,
            &backend,
            &ids,
            Place::Folder(state_dir.path()),
            schedule.parallelism,
            &crashed,
        )
        .await;
        match ending {
            Ending::Converged => {
                endings.push("converged".into());
                verdict = Some(Verdict::Converged);
            }
            Ending::Refused(reason) => {
                endings.push(format!("refused: {reason}"));
                verdict = Some(Verdict::Refused { reason });
            }
            Ending::Stopped(why) => endings.push(why),
        }
        if verdict.is_some() {
            break;
        }
    }
    backend.stop();
    let fleet = backend.fleet();
    let violations = backend.violations();
    let log = backend.log();
    let restarts = backend.restarts();
    let verdict = judge(drill.desired, &fleet, &violations, verdict, attempts_max);
    let first_fault = log.iter().position(|p| p.result.contains("(injected)"));
    let fired = log
        .iter()
        .filter(|p| p.result.contains("(injected)"))
        .map(|p| {
            format!(
                "attempt {}, operation {} ({}): {}",
                p.attempt, p.number, p.operation, p.result
            )
        })
        .chain(restarts)
        .collect();
    Ok(RunResult {
        run,
        schedule,
        verdict,
        attempts: endings.len(),
        attempt_endings: endings,
        operations: log.len(),
        recovery_operations: first_fault.map_or(0, |i| log.len() - i - 1),
        over_http,
        fired,
        violations,
        log,
    })
}

/// The verdict from the ground truth: whatever mkplan believed, the simulator decides.
fn judge(
    desired: &DesiredState,
    fleet: &Fleet,
    violations: &[String],
    ended: Option<Verdict>,
    attempts_max: usize,
) -> Verdict {
    if let Some(first) = violations.first() {
        return Verdict::Failed {
            why: format!("{first} ({} violation(s) in all)", violations.len()),
        };
    }
    match ended {
        Some(Verdict::Converged) => match unconverged(desired, fleet) {
            Some(why) => Verdict::Failed {
                why: format!("mkplan reported success, but {why}"),
            },
            None => Verdict::Converged,
        },
        Some(other) => other,
        None => Verdict::Failed {
            why: format!("not converged after {attempts_max} attempts"),
        },
    }
}

/// Why the fleet is not in the desired state, if it is not.
fn unconverged(desired: &DesiredState, fleet: &Fleet) -> Option<String> {
    for wanted in &desired.instances {
        let target = &wanted.master_key.verification_pattern;
        let Some(instance) = fleet.instance(&wanted.id) else {
            return Some(format!("instance {} is gone", wanted.id));
        };
        if instance.key_storage.verification_pattern != *target {
            return Some(format!(
                "the key storage of {} is under {}, not {}",
                wanted.id,
                instance.key_storage.verification_pattern.short(),
                target.short()
            ));
        }
        for unit in &instance.crypto_units {
            if !unit.current_register.holds(target) || unit.new_register != NewRegister::Empty {
                return Some(format!(
                    "crypto unit {} holds new {:#}, current {:#}",
                    unit.hsm_id, unit.new_register, unit.current_register
                ));
            }
        }
    }
    None
}

enum Ending {
    Converged,
    Refused(String),
    /// The attempt stopped (crash, error): the operator reruns.
    Stopped(String),
}

/// Where a drill's mkplan keeps its journal: a scratch state folder, or a scope of its own in
/// a PostgreSQL database that several actors share.
#[derive(Clone, Copy)]
pub enum Place<'a> {
    Folder(&'a Path),
    Shared { store: &'a Store, scope: &'a str },
}

/// A journal opened at a place; with a database, the lease and the store that keep it.
pub(crate) enum Opened {
    Folder(Box<Journal>),
    Shared(Box<crate::store::Writer>),
}

impl Opened {
    pub(crate) fn open(place: Place<'_>, ids: &[String], command: &str) -> Result<Self, String> {
        match place {
            Place::Folder(dir) => Journal::open_scratch(dir)
                .map(|j| Self::Folder(Box::new(j)))
                .map_err(|e| e.to_string()),
            Place::Shared { store, scope } => store
                .writer(scope, ids, command)
                .map(|w| Self::Shared(Box::new(w)))
                .map_err(|e| e.to_string()),
        }
    }

    pub(crate) fn journal(&mut self) -> &mut Journal {
        match self {
            Self::Folder(journal) => journal,
            Self::Shared(writer) => &mut writer.journal,
        }
    }

    fn audit(&self, place: Place<'_>) -> Result<Audit, String> {
        match (self, place) {
            (Self::Shared(writer), _) => writer.audit().map_err(|e| e.to_string()),
            (Self::Folder(_), Place::Folder(dir)) => {
                Audit::open_scratch(dir).map_err(|e| e.to_string())
            }
            (Self::Folder(_), Place::Shared { .. }) => {
                Err("a folder's journal, a database's place".into())
            }
        }
    }
}

/// One `mkplan apply DESIRED --auto-approve`, as the command runs it.
async fn attempt_once(
    drill: &Drill<'_>,
    backend: &DrillBackend,
    ids: &[String],
    place: Place<'_>,
    parallelism: usize,
    crashed: &tokio::sync::Notify,
) -> Ending {
    let mut opened = match Opened::open(place, ids, "drill apply") {
        Ok(opened) => opened,
        Err(e) => return Ending::Stopped(format!("journal: {e}")),
    };
    let live = match refresh_with_retries(backend, ids).await {
        Ok(live) => live,
        Err(e) => return Ending::Stopped(format!("refresh failed: {e}")),
    };
    // After the refresh: a `tke:` backend's identity names whose modules answered.
    let identity = backend.identity();
    let evidence = journal_evidence(opened.journal().records(), &identity, "the drill's journal");
    let plan = match (drill.planner)(drill.desired, drill.desired_sha256, &live, &evidence) {
        Ok(plan) => plan,
        Err(refused) => {
            let checks: Vec<String> = refused
                .refusals
                .iter()
                .map(|r| format!("{}: {}", r.check.id(), r.detail))
                .collect();
            return Ending::Refused(checks.join("; "));
        }
    };
    if !plan.changes {
        return match executor::settle_previous(opened.journal(), &plan, &live.instances, &identity)
            .and_then(|_| executor::close_finished(opened.journal(), &live.instances, &identity))
        {
            Ok(_) => Ending::Converged,
            Err(e) => Ending::Stopped(e.to_string()),
        };
    }
    let mut audit = match opened.audit(place) {
        Ok(audit) => audit,
        Err(e) => return Ending::Stopped(format!("audit: {e}")),
    };
    let journal = opened.journal();
    // A drill's journal is its own: its plan weighed what the evidence holds of other folders.
    let weighed = &evidence.other_folders;
    let started = match session::begin(journal, &mut audit, &plan, &live, weighed, &identity) {
        Ok(started) => started,
        Err(e) => return Ending::Stopped(e.to_string()),
    };
    let mut progress = Silent;
    let mut context = Context {
        backend,
        journal,
        audit: &mut audit,
        progress: &mut progress,
        run: started.run,
        key_parts: drill.key_parts,
        parallelism,
        ceremony: &HashMap::new(),
        operator: &executor::NoOperator,
        verify_timeout: std::time::Duration::ZERO,
        other_folders: None,
    };
    let result = tokio::select! {
        biased;
        result = executor::run(&mut context, &plan, &live.instances) => result,
        () = crashed.notified() => return Ending::Stopped("crashed (injected)".into()),
    };
    if let Err(e) = result {
        return Ending::Stopped(format!("stopped: {e}"));
    }
    match session::verify_converged(backend, &plan).await {
        Ok(now) => match executor::close_finished(journal, &now.instances, &identity) {
            Ok(_) => Ending::Converged,
            Err(e) => Ending::Stopped(format!("stopped: {e}")),
        },
        Err(e) => Ending::Stopped(format!("stopped: {e}")),
    }
}

struct Silent;

impl Progress for Silent {
    fn step_started(&mut self, _: &Step) {}
    fn step_finished(&mut self, _: usize, _: usize, _: &Step) {}
    fn line(&mut self, _: &str) {}
}

/// The whole drill's result.
#[derive(Debug, Serialize)]
pub struct DrillResult {
    pub runs: u64,
    pub seed: u64,
    pub converged: u64,
    pub refused: u64,
    pub failed: u64,
    /// Incidents and invariant violations over all runs.
    pub incidents: u64,
    pub plan_sha256: String,
    pub fleet_fingerprint: String,
    pub mkplan_version: &'static str,
    pub operations_per_rotation: u64,
    /// Runs went over HTTP to an in-process `sim serve`.
    pub over_http: bool,
    pub elapsed_ms: u64,
    pub schedules: Vec<RunResult>,
}

impl DrillResult {
    pub fn new(
        runs: u64,
        seed: u64,
        plan: &Plan,
        fleet_fingerprint: String,
        results: Vec<RunResult>,
        elapsed_ms: u64,
    ) -> Self {
        let count =
            |f: fn(&Verdict) -> bool| results.iter().filter(|r| f(&r.verdict)).count() as u64;
        Self {
            runs,
            seed,
            converged: count(|v| matches!(v, Verdict::Converged)),
            refused: count(|v| matches!(v, Verdict::Refused { .. })),
            failed: count(|v| matches!(v, Verdict::Failed { .. })),
            incidents: results.iter().map(|r| r.violations.len() as u64).sum(),
            plan_sha256: session::plan_sha256(plan),
            fleet_fingerprint,
            mkplan_version: env!("CARGO_PKG_VERSION"),
            operations_per_rotation: operations(plan),
            over_http: results.iter().any(|r| r.over_http),
            elapsed_ms,
            schedules: results,
        }
    }

    /// The run that needed the most attempts, then the most operations after its first fault.
    pub fn longest_recovery(&self) -> Option<&RunResult> {
        self.schedules
            .iter()
            .filter(|r| !r.failed())
            .max_by_key(|r| (r.attempts, r.recovery_operations, std::cmp::Reverse(r.run)))
    }
}

/// The seed of run `index` of a drill seeded `seed`: `--runs 1 --seed` it to replay the run.
pub fn run_seed(seed: u64, index: u64) -> u64 {
    seed.wrapping_add(index)
}

/// A simulator fleet from a live state, for drills that rehearse production
/// (`--from-live`, `status --export-fleet`). A real service does not reveal the MK its key
/// storage is under: it comes from the planner's finding (service status, journal, registers),
/// and when the evidence does not settle it, there is no snapshot (the refusal says why).
pub fn snapshot(
    desired: &DesiredState,
    desired_sha256: &str,
    live: &LiveFleet,
    evidence: &JournalEvidence,
) -> Result<Fleet, PlanRefused> {
    let plan = crate::plan::plan(desired, desired_sha256, live, evidence)?;
    let mut instances = Vec::new();
    for found in &live.instances {
        let Some(planned) = plan.instances.iter().find(|i| i.id == found.id) else {
            continue;
        };
        let storage = planned.key_storage_under.clone();
        let rewrapped_from: Option<VerificationPattern> = found
            .crypto_units
            .iter()
            .filter_map(|u| u.current_register.verification_pattern())
            .find(|vp| **vp != storage)
            .cloned()
            .filter(|_| {
                found
                    .crypto_units
                    .iter()
                    .any(|u| u.new_register.committed() == Some(&storage))
            });
        instances.push(SimInstance {
            id: found.id.clone(),
            region: found.region.clone(),
            key_storage: KeyStorage {
                verification_pattern: storage,
                keys: 0,
                rewrap_ms_per_key: 0,
                unusable: false,
                rewrapped_from,
                rewrap_in_progress: None,
            },
            reports_rotation_status: found.rewrap_status != RewrapStatus::NotReported,
            crypto_units: found.crypto_units.clone(),
        });
    }
    Ok(Fleet {
        instances,
        incidents: Vec::new(),
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod actors_tests;
