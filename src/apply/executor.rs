//! Runs a checked plan, one step at a time in plan order, journal before effect: an intent
//! (fsynced) before every operation, the outcome after it. A transient error is settled by
//! reading the live state before anything is retried; an outcome that cannot be settled stops
//! the apply, and the rerun plans from the live state and the journal.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::json;

use super::audit::{Audit, AuditError};
use super::evidence::unsettled;
use super::journal::{Journal, JournalError, Outcome, Record};
use crate::backend::{Backend, BackendError, Operation};
use crate::keypart::Secret32;
use crate::model::{
    CryptoUnit, JournalEvidence, JournalRewrap, LiveInstance, NewRegister, RewrapStatus,
    VerificationPattern,
};
use crate::plan::{Action, InstancePlan, Plan, Registers, Step, by_instance, effect};

/// Attempts of one operation whose earlier attempt was settled as not done.
pub const OPERATION_ATTEMPTS_MAX: u32 = 3;

/// Where the executor reports what it does; only views print.
pub trait Progress {
    /// A step is about to start: `index` of `total`.
    fn step_started(&mut self, index: usize, total: usize, step: &Step);
    /// A line for the operator.
    fn line(&mut self, text: &str);
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(
        "step {step} ({action}) failed: {source}. The journal records it; fix the cause and run apply again"
    )]
    Step {
        step: String,
        action: Action,
        source: Box<BackendError>,
    },
    #[error(
        "step {step} ({action}): the outcome is unknown ({why}) and the live state cannot settle it. Nothing more was sent. Run `mkplan apply` again: it settles it from the service's status, or refuses and says what evidence it needs"
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

/// Settles the intents that an earlier run left without an outcome, from the live state the
/// plan was made from and the plan's finding about the key storage, so that the journal says
/// what happened before anything new is sent. Returns one line per settled intent.
pub fn settle_previous(
    journal: &mut Journal,
    plan: &Plan,
    live: &[LiveInstance],
) -> Result<Vec<String>, ApplyError> {
    let open: Vec<Record> = unsettled(journal.records())
        .into_iter()
        .map(|(_, r)| r.clone())
        .collect();
    let mut settled = Vec::new();
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
        let found = live.iter().find(|i| i.id == instance);
        let planned = plan.instances.iter().find(|i| i.id == instance);
        let (Some(found), Some(planned)) = (found, planned) else {
            continue;
        };
        let done = match action {
            Action::RewrapKeyStorage => {
                planned.key_storage_under == planned.target_verification_pattern
            }
            Action::RemoveUnit => true,
            _ => observed(
                action,
                found,
                unit.as_deref(),
                &planned.target_verification_pattern,
            ),
        };
        let evidence = format!(
            "live state read by a later run: the key storage is under {}…, the unit's registers as refreshed",
            planned.key_storage_under.short()
        );
        settled.push(format!(
            "{step} {action}{}: {}",
            unit.as_deref()
                .map(|u| format!(" on {u}"))
                .unwrap_or_default(),
            if done { "took effect" } else { "had no effect" }
        ));
        let outcome = if done {
            Outcome::SettledDone { evidence }
        } else {
            Outcome::SettledNotDone { evidence }
        };
        journal.append(Record::Outcome { step, outcome })?;
    }
    Ok(settled)
}

/// Records the start of each rotation the plan rewraps, unless the journal already has it.
pub fn record_rotations(
    journal: &mut Journal,
    plan: &Plan,
    evidence: &JournalEvidence,
) -> Result<(), ApplyError> {
    let grouped = by_instance(&plan.steps);
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
        Action::RemoveUnit => true,
        Action::RewrapKeyStorage => false,
    }
}

/// What the executor needs besides the plan.
pub struct Context<'a, B: Backend> {
    pub backend: &'a B,
    pub journal: &'a mut Journal,
    pub audit: &'a mut Audit,
    pub progress: &'a mut dyn Progress,
    /// The apply run number in the journal.
    pub run: u32,
    /// The decrypted key parts of each instance that loads.
    pub key_parts: &'a HashMap<String, Vec<Secret32>>,
}

/// Runs every step of `plan` in order. `live` is the state the plan was made from; the
/// executor tracks each unit's registers from it for the audit trail.
pub async fn run<B: Backend>(
    context: &mut Context<'_, B>,
    plan: &Plan,
    live: &[LiveInstance],
) -> Result<(), ApplyError> {
    let mut units: HashMap<&str, CryptoUnit> = live
        .iter()
        .flat_map(|i| i.crypto_units.iter())
        .map(|u| (u.hsm_id.as_str(), u.clone()))
        .collect();
    let instances: HashMap<&str, &InstancePlan> =
        plan.instances.iter().map(|i| (i.id.as_str(), i)).collect();
    for (index, step) in plan.steps.iter().enumerate() {
        let instance = instances[step.instance.as_str()];
        let key = format!("r{}.{}", context.run, step.id);
        context.progress.step_started(index, plan.steps.len(), step);
        let started = Instant::now();
        context.journal.append(Record::Intent {
            step: key.clone(),
            action: step.action,
            instance: step.instance.clone(),
            unit: step.unit.clone(),
        })?;
        let result = if step.action == Action::RemoveUnit {
            Ok(Outcome::Done)
        } else {
            let parts = context
                .key_parts
                .get(&step.instance)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            perform_settled(
                context.backend,
                step,
                instance,
                parts,
                &mut *context.progress,
            )
            .await
        };
        let unit = step.unit.as_deref().and_then(|id| units.get_mut(id));
        let before = unit.as_ref().map(|u| registers(u));
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(error) => {
                if let ApplyError::Step { source, .. } = &error {
                    context.journal.append(Record::Outcome {
                        step: key.clone(),
                        outcome: Outcome::NotDone {
                            reason: source.to_string(),
                        },
                    })?;
                }
                context.audit.record(json!({
                    "kind": "step", "run": context.run, "step": step.id, "action": step.action,
                    "instance": step.instance, "unit": step.unit, "before": before,
                    "outcome": "failed", "error": error.to_string(),
                    "elapsed_ms": started.elapsed().as_millis() as u64,
                }))?;
                return Err(error);
            }
        };
        context.journal.append(Record::Outcome {
            step: key,
            outcome: outcome.clone(),
        })?;
        let after = unit.map(|u| {
            effect(
                step.action,
                &mut u.new_register,
                &mut u.current_register,
                &instance.target_verification_pattern,
            );
            registers(u)
        });
        context.audit.record(json!({
            "kind": "step", "run": context.run, "step": step.id, "action": step.action,
            "instance": step.instance, "unit": step.unit, "before": before, "after": after,
            "outcome": outcome, "elapsed_ms": started.elapsed().as_millis() as u64,
        }))?;
        context.progress.line(&format!(
            "{} {:<4} {:<18} {}  done in {:.2} s{}",
            step.action.symbol(),
            step.id,
            step.action.as_str(),
            step.unit.as_deref().unwrap_or("(whole service instance)"),
            started.elapsed().as_secs_f64(),
            match &outcome {
                Outcome::SettledDone { .. } => " (response lost; settled from the live state)",
                _ => "",
            }
        ));
    }
    Ok(())
}

fn registers(unit: &CryptoUnit) -> Registers {
    Registers {
        new_register: unit.new_register.clone(),
        current_register: unit.current_register.clone(),
    }
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
            "  {} {}: {error}; reading the live state to settle it",
            step.id, step.action
        ));
        let live =
            crate::backend::refresh_with_retries(backend, std::slice::from_ref(&step.instance))
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
                    "  {} {}: it had no effect; sending it again (attempt {})",
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
