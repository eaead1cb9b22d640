//! Drills of a domain group's master key change on the fake Crypto Express platform
//! (`mkplan drill GROUP.yaml`, docs/zcrypt.md). Each run copies the world the group file
//! names, arms one fault drawn from its seed, runs `mkplan apply` on the copy as a child
//! process with a scripted ceremony operator who performs each step with the fake TKE, reruns
//! it as an operator would until it converges or is refused, and reads the fake's incident
//! log after every attempt.
//!
//! The runs themselves are in [`super::group_run`]. The crashes are real processes dying: the fake tools kill themselves or the apply that ran
//! them (faults armed in the copy's world, `docs/zcrypt-sim.md`), and the operator kills the
//! apply while it waits at a ceremony step. A rerun finds the journal as a killed apply left
//! it. The same seed draws the same fault; latency makes only the timing differ.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::backend::zcrypt::fake::world::{Fault, FaultKind, World};
use crate::model::domain_group::StoreKind;
use crate::model::domain_group_desired::{DesiredGroup, DesiredStore};
use crate::plan::domain_group::{GroupAction, GroupPlan, GroupStep};

/// Latencies a run may draw (every action of the fake, the TKE's included).
pub const LATENCY_MS_CHOICES: [u64; 3] = [10, 50, 150];
/// How long an apply of a run waits for `mkvps` to show a ceremony step.
pub const VERIFY_TIMEOUT_S: u64 = 30;

/// A step of the change as the operator names it: `load_new_mk@03.0006` for a ceremony
/// step, `stage_reencipher:backup` for a tool step. A plan's `z…` ids are not used: every
/// apply plans again and numbers its steps afresh.
#[derive(Clone, Debug)]
pub struct Target {
    pub step: String,
    pub ceremony: bool,
    /// For a tool step the fake runs: the action a world fault names (`zkey reencipher`),
    /// and how many runs of it come before this step's.
    pub tool: Option<(String, u32)>,
}

/// The steps of `plan` a fault may hit, in the order the apply runs them.
pub fn targets(desired: &DesiredGroup, plan: &GroupPlan) -> Vec<Target> {
    let mut targets: Vec<Target> = Vec::new();
    for step in &plan.steps {
        let tool = fake_action(desired, step).map(|action| {
            let before = targets
                .iter()
                .filter(|t| t.tool.as_ref().is_some_and(|(a, _)| a == &action))
                .count() as u32;
            (action, before)
        });
        targets.push(Target {
            step: step_name(step),
            ceremony: step.ceremony,
            tool,
        });
    }
    targets
}

fn step_name(step: &GroupStep) -> String {
    match (&step.apqn, &step.store) {
        (Some(apqn), _) => format!("{}@{apqn}", step.action),
        (None, Some(store)) => format!("{}:{}", step.action, store.name),
        (None, None) => step.action.to_string(),
    }
}

/// The fake's name for the action a tool step runs, when the fake plays that tool.
fn fake_action(desired: &DesiredGroup, step: &GroupStep) -> Option<String> {
    let store = step.store.as_ref()?;
    match (store.kind, step.action) {
        (StoreKind::ZkeyKey, _) => Some("zkey reencipher".into()),
        (StoreKind::Luks2Volume, _) => Some("zkey-cryptsetup reencipher".into()),
        (StoreKind::OpenCryptoki, GroupAction::StageReencipher) => {
            Some("pkcshsm_mk_change reencipher".into())
        }
        (StoreKind::OpenCryptoki, _) => Some("pkcshsm_mk_change finalize".into()),
        (StoreKind::Application, action) => {
            let command = desired.stores.iter().find_map(|s| match s {
                DesiredStore::Application {
                    name,
                    stage,
                    complete,
                    ..
                } if name == &store.name => Some(if action == GroupAction::StageReencipher {
                    stage
                } else {
                    complete
                }),
                _ => None,
            })?;
            let program = Path::new(command.first()?).file_name()?.to_str()?;
            let verb = command.get(1)?;
            (program == "appkey").then(|| format!("appkey {verb}"))
        }
        // An HPCS key storage is never a domain group's store.
        (StoreKind::KeyStorage, _) => None,
    }
}

/// The one fault of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum GroupFault {
    /// The tool records its effect and is killed before it prints.
    ToolCrashAfterEffect { step: String },
    /// The tool fails before any effect.
    ToolFailure { step: String },
    /// The apply is killed after the tool's effect, before the outcome is journaled.
    LostOutcome { step: String },
    /// The apply is killed at the step: at a ceremony step while it waits for the operator
    /// (who performed the step, or not); at a tool step as the tool starts.
    ApplyKilled { step: String, performed: bool },
    /// The operator answers `stop` at a ceremony step without performing it.
    OperatorStops { step: String },
    /// Every action of the fake is this much slower, and the operator answers `done`
    /// while the TKE is still at work.
    Latency { ms: u64 },
}

impl GroupFault {
    pub fn describe(&self) -> String {
        match self {
            Self::ToolCrashAfterEffect { step } => {
                format!("tool killed after its effect at {step}")
            }
            Self::ToolFailure { step } => format!("tool failure at {step}"),
            Self::LostOutcome { step } => {
                format!(
                    "apply killed after the tool ran, before its outcome was journaled, at {step}"
                )
            }
            Self::ApplyKilled {
                step,
                performed: true,
            } => {
                format!("apply killed at {step} after the operator performed it")
            }
            Self::ApplyKilled { step, .. } => format!("apply killed at {step}"),
            Self::OperatorStops { step } => format!("operator stops at {step}"),
            Self::Latency { ms } => format!("latency {ms} ms"),
        }
    }

    /// The kind, for the summary's counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ToolCrashAfterEffect { .. } => "tool killed after its effect",
            Self::ToolFailure { .. } => "tool failure",
            Self::LostOutcome { .. } => "lost outcome",
            Self::ApplyKilled { .. } => "apply killed",
            Self::OperatorStops { .. } => "operator stops",
            Self::Latency { .. } => "latency",
        }
    }
}

/// The fault of the run seeded `seed`: the kinds take turns by seed (so that a short drill
/// meets each of them), the step and the rest are drawn.
pub fn draw(seed: u64, targets: &[Target]) -> GroupFault {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tools: Vec<&Target> = targets.iter().filter(|t| t.tool.is_some()).collect();
    let ceremonies: Vec<&Target> = targets.iter().filter(|t| t.ceremony).collect();
    let pick =
        |rng: &mut ChaCha8Rng, list: &[&Target]| list[rng.random_range(0..list.len())].step.clone();
    let mut kind = seed % 6;
    loop {
        match kind {
            0 if !tools.is_empty() => {
                return GroupFault::ToolCrashAfterEffect {
                    step: pick(&mut rng, &tools),
                };
            }
            1 if !tools.is_empty() => {
                return GroupFault::ToolFailure {
                    step: pick(&mut rng, &tools),
                };
            }
            2 if !tools.is_empty() => {
                return GroupFault::LostOutcome {
                    step: pick(&mut rng, &tools),
                };
            }
            3 if !tools.is_empty() || !ceremonies.is_empty() => {
                let all: Vec<&Target> = tools.iter().chain(&ceremonies).copied().collect();
                let step = pick(&mut rng, &all);
                let ceremony = ceremonies.iter().any(|t| t.step == step);
                return GroupFault::ApplyKilled {
                    step,
                    performed: ceremony && rng.random_bool(0.5),
                };
            }
            4 if !ceremonies.is_empty() => {
                return GroupFault::OperatorStops {
                    step: pick(&mut rng, &ceremonies),
                };
            }
            5 => {
                return GroupFault::Latency {
                    ms: LATENCY_MS_CHOICES[rng.random_range(0..LATENCY_MS_CHOICES.len())],
                };
            }
            _ => kind = 5,
        }
    }
}

/// Arms `fault` in a run's copy of the world.
pub(super) fn arm(world: &mut World, fault: &GroupFault, targets: &[Target]) {
    let (kind, step) = match fault {
        GroupFault::ToolCrashAfterEffect { step } => (FaultKind::CrashAfterEffect, step),
        GroupFault::ToolFailure { step } => (FaultKind::FailBeforeEffect, step),
        GroupFault::LostOutcome { step } => (FaultKind::KillCallerAfterEffect, step),
        GroupFault::ApplyKilled { step, .. } => (FaultKind::KillCallerBeforeEffect, step),
        GroupFault::Latency { ms } => {
            world.latency_ms = *ms;
            return;
        }
        GroupFault::OperatorStops { .. } => return,
    };
    // A ceremony step's kill is the operator's doing; a tool step's, the fake's.
    let Some((action, skip)) = targets
        .iter()
        .find(|t| &t.step == step)
        .and_then(|t| t.tool.clone())
    else {
        return;
    };
    world.faults.push(Fault {
        kind,
        tool: Some(action),
        apqn: None,
        times: 1,
        skip,
    });
}
