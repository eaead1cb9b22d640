//! Runs a checked plan, one step at a time in plan order, journal before effect: an intent
//! (fsynced) before every operation, the outcome after it. A transient error is settled by
//! reading the live state before anything is retried; an outcome that cannot be settled stops
//! the apply, and the rerun plans from the live state and the journal.

use std::time::Instant;

use super::evidence::unsettled;
use super::journal::{Journal, JournalError, Outcome, Record};
use crate::backend::{Backend, BackendError, Operation};
use crate::keypart::Secret32;
use crate::model::{
    JournalEvidence, JournalRewrap, LiveInstance, NewRegister, RewrapStatus, VerificationPattern,
};
use crate::plan::{Action, InstancePlan, Plan, Step};

/// Attempts of one operation whose earlier attempt was settled as not done.
pub const OPERATION_ATTEMPTS_MAX: u32 = 3;

/// Where the executor reports what it does; only views print.
pub trait Progress {
    fn line(&mut self, text: &str);
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(
        "step {step} ({action}) failed: {source}. The journal records it; fix the cause and run apply again"
    )]
    Step {
        step: String,
        action: Action,
        source: Box<BackendError>,
    },
    #[error(
        "step {step} ({action}): the outcome is unknown ({why}) and the live state cannot settle it. Nothing more was sent. Run `mkplan apply` again: it will settle it from the service's status or refuse with what evidence it needs"
    )]
    Unknown {
        step: String,
        action: Action,
        why: String,
    },
    #[error("reading the live state to settle step {step}: {source}")]
    Refresh {
        step: String,
        source: Box<BackendError>,
    },
}

/// Settles, from the live state the plan was made from, the intents a crashed run left
/// without an outcome, so the journal says what happened before anything new is sent.
pub fn settle_previous(
    journal: &mut Journal,
    plan: &Plan,
    live: &[LiveInstance],
    progress: &mut dyn Progress,
) -> Result<(), ApplyError> {
    let open: Vec<Record> = unsettled(journal.records())
        .into_iter()
        .map(|(_, r)| r.clone())
        .collect();
    for record in open {
        let Record::Intent {
            step,
            action,
            instance,
            unit,
        } = record
        else {
            continue;
        };
        let (Some(found), Some(planned)) = (
            live.iter().find(|i| i.id == instance),
            plan.instances.iter().find(|i| i.id == instance),
        ) else {
            continue;
        };
        let done = match action {
            Action::RewrapKeyStorage => {
                planned.key_storage_under == planned.target_verification_pattern
            }
            _ => observed(
                action,
                found,
                unit.as_deref(),
                &planned.target_verification_pattern,
            ),
        };
        let evidence = format!(
            "live state read after the previous run stopped (key storage under {}…)",
            planned.key_storage_under.short()
        );
        progress.line(&format!(
            "settled {step} ({action}) from the previous run: {}",
            if done {
                "it took effect"
            } else {
                "it had no effect"
            }
        ));
        let outcome = if done {
            Outcome::SettledDone { evidence }
        } else {
            Outcome::SettledNotDone { evidence }
        };
        journal.append(Record::Outcome { step, outcome })?;
    }
    Ok(())
}

/// Records the start of each rotation the plan rewraps, unless the journal already has it.
pub fn record_rotations(
    journal: &mut Journal,
    plan: &Plan,
    evidence: &JournalEvidence,
) -> Result<(), ApplyError> {
    let grouped = crate::plan::by_instance(&plan.steps);
    for instance in &plan.instances {
        let rewraps = grouped
            .get(instance.id.as_str())
            .is_some_and(|steps| steps.iter().any(|s| s.action == Action::RewrapKeyStorage));
        let known = evidence.rotation(&instance.id).is_some_and(|r| {
            r.to == instance.target_verification_pattern
                && matches!(&r.rewrap, JournalRewrap::NotStarted { from } if *from == instance.key_storage_under)
        });
        if rewraps && !known {
            journal.append(Record::RotationStarted {
                instance: instance.id.clone(),
                from: instance.key_storage_under.clone(),
                to: instance.target_verification_pattern.clone(),
            })?;
        }
    }
    Ok(())
}

/// Whether a unit operation's effect shows in the live state.
fn observed(
    action: Action,
    live: &LiveInstance,
    unit: Option<&str>,
    target: &VerificationPattern,
) -> bool {
    let Some(unit) = unit.and_then(|id| live.unit(id)) else {
        return false;
    };
    match action {
        Action::LoadNewMk => unit.new_register.holds(target),
        Action::CommitNewMk => unit.new_register == NewRegister::FullCommitted(target.clone()),
        Action::ClearNewMk => unit.new_register == NewRegister::Empty,
        Action::SetImmediate => {
            unit.current_register.holds(target) && !unit.new_register.holds(target)
        }
        Action::RemoveUnit | Action::RewrapKeyStorage => false,
    }
}

pub async fn run<B: Backend>(
    backend: &B,
    plan: &Plan,
    key_parts: &dyn Fn(&str) -> Option<&[Secret32]>,
    journal: &mut Journal,
    progress: &mut dyn Progress,
) -> Result<(), ApplyError> {
    for step in &plan.steps {
        let instance = plan
            .instances
            .iter()
            .find(|i| i.id == step.instance)
            .expect("steps name planned instances");
        let started = Instant::now();
        journal.append(Record::Intent {
            step: step.id.clone(),
            action: step.action,
            instance: step.instance.clone(),
            unit: step.unit.clone(),
        })?;
        let outcome = if step.action == Action::RemoveUnit {
            Outcome::Done
        } else {
            perform_settled(
                backend,
                step,
                instance,
                key_parts(&step.instance).unwrap_or(&[]),
                progress,
            )
            .await?
        };
        journal.append(Record::Outcome {
            step: step.id.clone(),
            outcome,
        })?;
        progress.line(&format!(
            "{} {} {:<18} {}  done in {:.2} s",
            step.action.symbol(),
            step.id,
            step.action.as_str(),
            step.unit.as_deref().unwrap_or("(whole service instance)"),
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

async fn perform_settled<B: Backend>(
    backend: &B,
    step: &Step,
    instance: &InstancePlan,
    key_parts: &[Secret32],
    progress: &mut dyn Progress,
) -> Result<Outcome, ApplyError> {
    let target = &instance.target_verification_pattern;
    let unit = step.unit.as_deref().unwrap_or_default();
    let operation = match step.action {
        Action::LoadNewMk => Operation::LoadNewMk {
            instance: &step.instance,
            unit,
            key_parts,
        },
        Action::CommitNewMk => Operation::CommitNewMk {
            instance: &step.instance,
            unit,
            verification_pattern: target,
        },
        Action::ClearNewMk => Operation::ClearNewMk {
            instance: &step.instance,
            unit,
        },
        Action::RewrapKeyStorage => Operation::RewrapKeyStorage {
            instance: &step.instance,
        },
        Action::SetImmediate => Operation::SetImmediate {
            instance: &step.instance,
            unit,
        },
        Action::RemoveUnit => unreachable!("remove_unit sends nothing"),
    };
    let mut attempt = 1;
    loop {
        let error = match backend.perform(&operation).await {
            Ok(()) => return Ok(Outcome::Done),
            Err(error @ BackendError::Transient(_)) => error,
            Err(source) => {
                return Err(ApplyError::Step {
                    step: step.id.clone(),
                    action: step.action,
                    source: Box::new(source),
                });
            }
        };
        progress.line(&format!(
            "{} {}: {error}; reading the live state to settle it",
            step.id, step.action
        ));
        let live = backend
            .refresh(std::slice::from_ref(&step.instance))
            .await
            .map_err(|source| ApplyError::Refresh {
                step: step.id.clone(),
                source: Box::new(source),
            })?;
        let found = &live.instances[0];
        let done = match step.action {
            Action::RewrapKeyStorage => match found.rewrap_status {
                RewrapStatus::Rewrapped => Some(true),
                RewrapStatus::NotRewrapped => Some(false),
                RewrapStatus::NotReported => None,
            },
            action => Some(observed(action, found, step.unit.as_deref(), target)),
        };
        match done {
            Some(true) => {
                return Ok(Outcome::SettledDone {
                    evidence: format!("after \"{error}\", the live state shows the effect"),
                });
            }
            Some(false) if attempt < OPERATION_ATTEMPTS_MAX => {
                progress.line(&format!(
                    "{} {}: no effect; sending it again (attempt {})",
                    step.id,
                    step.action,
                    attempt + 1
                ));
                attempt += 1;
            }
            Some(false) => {
                return Err(ApplyError::Step {
                    step: step.id.clone(),
                    action: step.action,
                    source: Box::new(error),
                });
            }
            None => {
                return Err(ApplyError::Unknown {
                    step: step.id.clone(),
                    action: step.action,
                    why: format!(
                        "{error}; the service does not report whether the rewrap completed"
                    ),
                });
            }
        }
    }
}
