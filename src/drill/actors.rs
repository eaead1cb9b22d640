//! Drills with several actors on one fleet: mkplan from state folder X, mkplan from state
//! folder Y, and an operator with the TKE CLI, taking turns. mkplan's journals see only what
//! their own folder did; the operator acts outside both, following the TKE CLI's sequence
//! (load, commit, rotate, set immediate) and never doing harm by the simulator's ground
//! truth, and tells mkplan the truth through `attest` when a plan asks for it. Faults hit
//! mkplan's applies as in single-actor drills, and a rewrap may run for longer than mkplan
//! waits. The verdict is the simulator's: zero incidents, and every run converged, refused
//! with the evidence it needs, or waiting for an attestation nobody could truthfully give.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::backend::DrillBackend;
use super::schedule::{AttemptFaults, PARALLELISM_CHOICES, Schedule};
use super::{Drill, Ending, Opened, Place, RunResult, Verdict, attempt_once, judge};
use crate::apply::attest::{Attestation, attestation_records, rotation_of};
use crate::backend::Backend;
use crate::backend::sim::{Fleet, SimOperation, live_of};
use crate::model::NewRegister;
use crate::store::Store;

/// This drill's name in a shared database: every `mkplan drill` writes scopes of its own.
fn invocation() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let mut nonce = [0u8; 6];
        let _ = getrandom::fill(&mut nonce);
        format!("{}-{}", std::process::id(), hex::encode(nonce))
    })
}

/// Turns drawn for one run, at most, before the settling turns.
pub const TURNS_MAX: usize = 6;
/// Clean applies from folder X after the drawn turns, with the operator answering.
pub const SETTLING_APPLIES_MAX: usize = 6;
/// The longest pause a turn may draw (a rewrap of 3,000 keys takes about 60 s).
pub const WAIT_MS_MAX: u64 = 120_000;

/// One actor's turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "actor", rename_all = "snake_case")]
pub enum Turn {
    /// `mkplan apply DESIRED --auto-approve` from state folder `folder`, with `faults`.
    Apply { folder: char, faults: AttemptFaults },
    /// The operator takes `steps` steps of the TKE CLI's sequence.
    Cli { steps: u32 },
    /// Time passes: a slow rewrap runs on.
    Wait { ms: u64 },
}

impl Turn {
    pub fn describe(&self) -> String {
        match self {
            Self::Apply { folder, faults } => {
                format!("apply from {folder} ({})", faults.describe())
            }
            Self::Cli { steps } => format!("TKE CLI, {steps} step(s)"),
            Self::Wait { ms } => format!("wait {} s", ms / 1000),
        }
    }
}

/// Draws the turns of a run of a plan of `operations` mutating operations.
pub fn draw_turns(seed: u64, operations: u64) -> Vec<Turn> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xac70_25ac_7025);
    let operations = operations.max(1);
    let count = rng.random_range(2..=TURNS_MAX);
    (0..count)
        .map(|turn| match rng.random_range(0..100) {
            // Most runs begin with an apply that may die half-way, for the others to find.
            _ if turn == 0 && rng.random_bool(0.7) => Turn::Apply {
                folder: 'X',
                faults: draw_faults(&mut rng, operations),
            },
            0..40 => Turn::Apply {
                folder: 'X',
                faults: draw_faults(&mut rng, operations),
            },
            40..65 => Turn::Apply {
                folder: 'Y',
                faults: draw_faults(&mut rng, operations),
            },
            65..92 => Turn::Cli {
                steps: rng.random_range(1..=4),
            },
            _ => Turn::Wait {
                ms: rng.random_range(1..=WAIT_MS_MAX),
            },
        })
        .collect()
}

fn draw_faults(rng: &mut ChaCha8Rng, operations: u64) -> AttemptFaults {
    let mut faults = AttemptFaults::default();
    let at = rng.random_range(1..=operations);
    match rng.random_range(0..10) {
        0..4 => faults.crash_after_op = Some(at),
        4..5 => {
            faults.lose_response_op.insert(at);
        }
        5..7 => {
            faults.fail_op.insert(at);
        }
        _ => {}
    }
    faults
}

/// One multi-actor run from `seed`, in scratch state folders under `scratch`; with `shared`,
/// X and Y instead share one journal, in a scope of their own in that database.
pub async fn run_cast(
    drill: &Drill<'_>,
    run: u64,
    seed: u64,
    operations: u64,
    scratch: &Path,
    shared: Option<&Store>,
) -> std::io::Result<RunResult> {
    let turns = draw_turns(seed, operations);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let schedule = Schedule {
        seed,
        parallelism: PARALLELISM_CHOICES[rng.random_range(0..PARALLELISM_CHOICES.len())],
        latency_ms: 0,
        attempts: Vec::new(),
        actors: turns.clone(),
    };
    let folders = [
        tempfile::tempdir_in(scratch)?,
        tempfile::tempdir_in(scratch)?,
    ];
    let scope = format!("drill {} run {run} seed {seed}", invocation());
    let folder = |name: char| match shared {
        Some(store) => Place::Shared {
            store,
            scope: &scope,
        },
        None => Place::Folder(folders[usize::from(name == 'Y')].path()),
    };
    let backend = DrillBackend::new(drill.fleet.clone(), schedule.clone());
    let ids: Vec<String> = drill
        .desired
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect();
    let mut cast = Cast {
        drill,
        rng: Some(ChaCha8Rng::seed_from_u64(seed ^ 0x7e57_1f1e)),
        operations,
        backend: &backend,
        ids: &ids,
        parallelism: schedule.parallelism,
        attempt: 0,
        endings: Vec::new(),
    };
    for turn in &turns {
        match turn {
            Turn::Apply {
                folder: name,
                faults,
            } => {
                cast.apply(*name, folder(*name), faults.clone()).await;
            }
            Turn::Cli { steps } => {
                for _ in 0..*steps {
                    cast.cli_step();
                }
            }
            Turn::Wait { ms } => tokio::time::sleep(std::time::Duration::from_millis(*ms)).await,
        }
    }
    cast.rng = None;
    let mut verdict = None;
    for _ in 0..SETTLING_APPLIES_MAX {
        match cast.apply('X', folder('X'), AttemptFaults::default()).await {
            Ending::Converged => verdict = Some(Verdict::Converged),
            Ending::Refused(reason) if !cast.waiting() => {
                verdict = Some(Verdict::Refused { reason });
            }
            _ => {}
        }
        if verdict.is_some() {
            break;
        }
    }
    let fleet = backend.fleet();
    let violations = backend.violations();
    let log = backend.log();
    let verdict = judge(
        drill.desired,
        &fleet,
        &violations,
        verdict,
        SETTLING_APPLIES_MAX,
    );
    let first_fault = log.iter().position(|p| p.result.contains("(injected)"));
    Ok(RunResult {
        run,
        schedule,
        verdict,
        attempts: cast.attempt,
        attempt_endings: cast.endings,
        operations: log.len(),
        recovery_operations: first_fault.map_or(0, |i| log.len() - i - 1),
        over_http: false,
        fired: log
            .iter()
            .filter(|p| p.result.contains("(injected)"))
            .map(|p| {
                format!(
                    "attempt {}, operation {} ({}): {}",
                    p.attempt, p.number, p.operation, p.result
                )
            })
            .collect(),
        violations,
        log,
    })
}

struct Cast<'a> {
    drill: &'a Drill<'a>,
    /// Draws the faults of the drawn turns' reruns; None in the settling turns.
    rng: Option<ChaCha8Rng>,
    operations: u64,
    backend: &'a DrillBackend,
    ids: &'a [String],
    parallelism: usize,
    attempt: usize,
    endings: Vec<String>,
}

impl Cast<'_> {
    /// One apply from `state_dir`; when the plan asks for the operator's word, the operator
    /// gives it truthfully (if the truth is known) and reruns at once, without faults.
    async fn apply(&mut self, name: char, state_dir: Place<'_>, faults: AttemptFaults) -> Ending {
        let mut ending = self.attempt_from(name, state_dir, faults).await;
        if let Ending::Refused(_) = &ending
            && self.attest_truthfully(name, state_dir).await
        {
            // The rerun right after the attestation may die too: the attestation must not
            // outlive it.
            let operations = self.operations;
            let faults = match self.rng.as_mut() {
                Some(rng) => {
                    if rng.random_bool(0.5) {
                        draw_faults(rng, operations)
                    } else {
                        AttemptFaults::default()
                    }
                }
                None => AttemptFaults::default(),
            };
            ending = self.attempt_from(name, state_dir, faults).await;
        }
        ending
    }

    async fn attempt_from(
        &mut self,
        name: char,
        state_dir: Place<'_>,
        faults: AttemptFaults,
    ) -> Ending {
        self.attempt += 1;
        let crashed = self.backend.start_attempt_with(self.attempt, faults);
        let ending = attempt_once(
            self.drill,
            self.backend,
            self.ids,
            state_dir,
            self.parallelism,
            &crashed,
        )
        .await;
        self.endings.push(format!(
            "{name}: {}",
            match &ending {
                Ending::Converged => "converged".to_string(),
                Ending::Refused(reason) => format!("refused: {reason}"),
                Ending::Stopped(why) => why.clone(),
            }
        ));
        ending
    }

    /// Whether a rewrap is running on some instance (the settling applies then wait).
    fn waiting(&self) -> bool {
        self.backend
            .fleet()
            .instances
            .iter()
            .any(|i| i.key_storage.rewrap_in_progress.is_some())
    }

    /// The operator answers a refused plan from the ground truth: waits for a running
    /// rewrap, then journals in `state_dir` whether the rewrap of the rotation the journal or
    /// the registers show ran. Returns whether something was attested.
    async fn attest_truthfully(&mut self, name: char, state_dir: Place<'_>) -> bool {
        if let Some(until) = self
            .backend
            .fleet()
            .instances
            .iter()
            .filter_map(|i| i.key_storage.rewrap_in_progress.as_ref())
            .map(|r| r.completes_at_ms)
            .max()
        {
            self.backend.wait_until(until).await;
        }
        let fleet = self.backend.fleet();
        let Ok(live) = live_of(&fleet, self.ids) else {
            return false;
        };
        let Ok(mut opened) = Opened::open(state_dir, self.ids, "drill attest") else {
            return false;
        };
        let journal = opened.journal();
        let identity = self.backend.identity();
        let mut attested = false;
        for wanted in &self.drill.desired.instances {
            let (Some(found), Some(truth)) =
                (live.instance(&wanted.id), fleet.instance(&wanted.id))
            else {
                continue;
            };
            let target = &wanted.master_key.verification_pattern;
            let Ok((from, to)) = rotation_of(journal.records(), found, target, &identity) else {
                continue;
            };
            let storage = &truth.key_storage.verification_pattern;
            let ran = if *storage == to {
                true
            } else if *storage == from {
                false
            } else {
                continue;
            };
            let attestation = Attestation {
                ran,
                service_evidence: (!ran).then(|| "the simulator's ground truth".to_string()),
                other_folders: Default::default(),
            };
            let Ok((records, _)) = attestation_records(
                journal.records(),
                found,
                target,
                &identity,
                "the drill's journal",
                &attestation,
            ) else {
                continue;
            };
            attested |= journal.append_all(records).is_ok();
        }
        if attested {
            self.endings.push(format!("operator attested in {name}"));
        }
        attested
    }

    /// One step of the TKE CLI's sequence towards the desired key, on the first instance
    /// that needs one, chosen from the ground truth so that the operator never does harm.
    fn cli_step(&mut self) {
        let fleet = self.backend.fleet();
        for wanted in &self.drill.desired.instances {
            let target = &wanted.master_key.verification_pattern;
            let signers: Vec<String> = wanted
                .administrators
                .iter()
                .take(usize::from(wanted.signature_threshold))
                .cloned()
                .collect();
            if let Some(operation) = next_cli_step(&fleet, &wanted.id, target, &signers) {
                let name = operation.name();
                let result = self.backend.operator_perform(&operation);
                self.endings
                    .push(format!("operator (TKE CLI): {name}: {result}"));
                return;
            }
        }
    }
}

/// The TKE CLI's next step on one instance, from the ground truth: before the rewrap, stage
/// the target everywhere (clear a wrong key, load, commit) and rotate; after it, set
/// immediate (staging the target again where a unit lost it). Nothing while a rewrap runs.
pub(super) fn next_cli_step(
    fleet: &Fleet,
    instance: &str,
    target: &crate::model::VerificationPattern,
    signers: &[String],
) -> Option<SimOperation> {
    let truth = fleet.instance(instance)?;
    if truth.key_storage.rewrap_in_progress.is_some() || truth.key_storage.unusable {
        return None;
    }
    let storage = &truth.key_storage.verification_pattern;
    let ids = |u: &crate::model::CryptoUnit| (instance.to_string(), u.hsm_id.clone());
    let stage = |u: &crate::model::CryptoUnit| {
        let (instance, unit) = ids(u);
        match &u.new_register {
            NewRegister::Empty => Some(SimOperation::LoadNewMk {
                instance,
                unit,
                verification_pattern: target.clone(),
            }),
            NewRegister::FullUncommitted(vp) if vp == target => Some(SimOperation::CommitNewMk {
                instance,
                unit,
                verification_pattern: target.clone(),
                signers: signers.to_vec(),
            }),
            NewRegister::FullCommitted(vp) if vp == target => None,
            _ => Some(SimOperation::ClearNewMk {
                instance,
                unit,
                verification_pattern: u.new_register.verification_pattern().cloned(),
            }),
        }
    };
    if storage == target {
        let waiting = truth
            .crypto_units
            .iter()
            .find(|u| !u.current_register.holds(target))?;
        return stage(waiting).or_else(|| {
            let (instance, unit) = ids(waiting);
            Some(SimOperation::SetImmediate {
                instance,
                unit,
                verification_pattern: target.clone(),
                signers: signers.to_vec(),
            })
        });
    }
    if !truth
        .crypto_units
        .iter()
        .all(|u| u.current_register.holds(storage))
    {
        return None;
    }
    truth.crypto_units.iter().find_map(stage).or_else(|| {
        Some(SimOperation::RewrapKeyStorage {
            instance: instance.to_string(),
        })
    })
}
