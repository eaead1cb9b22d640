//! Sending one step's operation, and settling it when its outcome is unknown. A transient
//! error (a timeout, a lost response) is settled by reading the live state before anything is
//! sent again; a rewrap is never sent again in the same run. Just before a rewrap, the live
//! state is read once more: an hour of ceremony may lie between the plan and this moment,
//! and another operator may have acted.

use std::time::Duration;

use super::executor::{ApplyError, OPERATION_ATTEMPTS_MAX};
use super::journal::Outcome;
use super::resume::{observed, rewrap_done};
use crate::backend::{Backend, BackendError, Operation, SendBy, refresh_with_retries};
use crate::keypart::Secret32;
use crate::model::{CurrentRegister, LiveInstance, NewRegister, RewrapStatus, VerificationPattern};
use crate::plan::{Action, InstancePlan, Step};

/// After a rewrap's response is lost: how long the service may report the rewrap in progress
/// before the run stops and leaves it to the next (a real rewrap re-encrypts about 3,000 keys
/// a minute), and the pause between reads.
pub const REWRAP_SETTLE_WAIT_MS_MAX: u64 = 600_000;
pub const REWRAP_SETTLE_POLL_MS: u64 = 1_000;
/// Reads, after a rewrap's response is lost, that must all show no rewrap before the run
/// stops with the outcome unknown (a request may land late).
pub const REWRAP_SETTLE_QUIET_READS: u32 = 3;

pub(super) async fn perform_settled<B: Backend>(
    backend: &B,
    step: &Step,
    instance: &InstancePlan,
    key_parts: &[Secret32],
    send_by: SendBy,
) -> (Result<Outcome, ApplyError>, Vec<String>) {
    let mut notes = Vec::new();
    let result = send(backend, step, instance, key_parts, send_by, &mut notes).await;
    (result, notes)
}

async fn read_instance<B: Backend>(backend: &B, step: &Step) -> Result<LiveInstance, ApplyError> {
    let mut live = refresh_with_retries(backend, std::slice::from_ref(&step.instance))
        .await
        .map_err(|source| ApplyError::Refresh {
            step: step.id.clone(),
            source: Box::new(source),
        })?;
    Ok(live.instances.remove(0))
}

/// Re-reads the live state just before a rewrap and compares it with what the plan expects
/// at this point: every new register Full Committed with the target, every current register
/// the key storage's key, and the service's status as at planning. Anything else means
/// someone acted since the plan was made: stop (exit 4) without sending.
pub(super) async fn check_before_rewrap<B: Backend>(
    backend: &B,
    step: &Step,
    instance: &InstancePlan,
) -> Result<(), ApplyError> {
    let found = read_instance(backend, step).await?;
    let target = &instance.target_verification_pattern;
    let mut changes = Vec::new();
    if found.rewrap_status != instance.rewrap_status {
        changes.push(format!(
            "the service's rotation status was \"{}\", now \"{}\"",
            instance.rewrap_status.describe(),
            found.rewrap_status.describe()
        ));
    }
    for unit in &found.crypto_units {
        let new_ok = unit.new_register == NewRegister::FullCommitted(target.clone());
        let current_ok =
            unit.current_register == CurrentRegister::Valid(instance.key_storage_under.clone());
        if !new_ok || !current_ok {
            changes.push(format!(
                "crypto unit {}: new {:#}, current {:#} (expected new Full Committed {}…, current Valid {}…)",
                unit.hsm_id,
                unit.new_register,
                unit.current_register,
                target.short(),
                instance.key_storage_under.short()
            ));
        }
    }
    let planned: Vec<&str> = instance.units.iter().map(|u| u.hsm_id.as_str()).collect();
    if found.crypto_units.len() != planned.len()
        || found
            .crypto_units
            .iter()
            .any(|u| !planned.iter().any(|p| p.eq_ignore_ascii_case(&u.hsm_id)))
    {
        changes.push("the instance's crypto units are not the ones planned".into());
    }
    if changes.is_empty() {
        return Ok(());
    }
    Err(ApplyError::Changed {
        step: step.id.clone(),
        why: changes.join("; "),
    })
}

/// The key the plan found in the new register of `unit`: the one its clear is meant for.
fn planned_new<'a>(instance: &'a InstancePlan, unit: &str) -> Option<&'a VerificationPattern> {
    instance
        .units
        .iter()
        .find(|u| u.hsm_id.eq_ignore_ascii_case(unit))
        .and_then(|u| u.before.new_register.verification_pattern())
}

async fn send<B: Backend>(
    backend: &B,
    step: &Step,
    instance: &InstancePlan,
    key_parts: &[Secret32],
    send_by: SendBy,
    notes: &mut Vec<String>,
) -> Result<Outcome, ApplyError> {
    let target = &instance.target_verification_pattern;
    let unit = step.unit.as_deref().unwrap_or_default();
    let signing = (step.signatures as usize).min(instance.administrators.len());
    let signers = &instance.administrators[..signing];
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
            signers,
        },
        // The clear names the key the plan found in the new register: if this request is
        // queued at a slow service and lands after the register was cleared and loaded again
        // (this run re-sends a clear that had no effect yet), it clears nothing.
        Action::ClearNewMk => Operation::ClearNewMk {
            instance: &step.instance,
            unit,
            verification_pattern: planned_new(instance, unit),
        },
        Action::RewrapKeyStorage => Operation::RewrapKeyStorage {
            instance: &step.instance,
        },
        Action::SetImmediate => Operation::SetImmediate {
            instance: &step.instance,
            unit,
            verification_pattern: target,
            signers,
        },
        Action::RemoveUnit => unreachable!("remove_unit sends nothing"),
    };
    if step.action == Action::RewrapKeyStorage {
        check_before_rewrap(backend, step, instance).await?;
    }
    let mut attempt = 1;
    loop {
        let error = match backend.perform(&operation, send_by).await {
            Ok(()) => return Ok(Outcome::Done),
            // Set immediate follows only this rotation's completed rewrap: a rewrap running
            // now is somebody else's.
            Err(BackendError::RewrapRunning(why)) if step.action == Action::SetImmediate => {
                return Err(foreign_rewrap(step, target, &why));
            }
            Err(BackendError::RewrapRunning(why)) => BackendError::Transient(why),
            Err(error @ BackendError::Transient(_)) => error,
            Err(source) => {
                return Err(ApplyError::Step {
                    step: step.id.clone(),
                    action: step.action,
                    source: Box::new(source),
                });
            }
        };
        notes.push(format!(
            "  {} {}: {error}; reading the live state to settle it",
            step.id, step.action
        ));
        if step.action == Action::RewrapKeyStorage {
            return settle_rewrap(backend, step, instance, &error, notes).await;
        }
        let found = read_instance(backend, step).await?;
        // Set immediate is sent only once this rotation's rewrap completed: a rewrap running
        // now is somebody else's, and waiting for it to end would promote a unit over a key
        // storage that rewrap is destroying.
        if step.action == Action::SetImmediate && found.rewrap_status == RewrapStatus::InProgress {
            return Err(foreign_rewrap(
                step,
                target,
                &format!("after \"{error}\", the service reports a rewrap in progress"),
            ));
        }
        if observed(step.action, &found, step.unit.as_deref(), target) {
            return Ok(Outcome::SettledDone {
                evidence: format!("after \"{error}\", the live state shows the effect"),
            });
        }
        if attempt >= OPERATION_ATTEMPTS_MAX {
            return Err(ApplyError::Step {
                step: step.id.clone(),
                action: step.action,
                source: Box::new(error),
            });
        }
        notes.push(format!(
            "  {} {}: it had no effect; sending it again (attempt {})",
            step.id,
            step.action,
            attempt + 1
        ));
        attempt += 1;
    }
}

/// Set immediate met a rewrap mkplan did not send (`seen`: how it showed).
fn foreign_rewrap(step: &Step, target: &VerificationPattern, seen: &str) -> ApplyError {
    ApplyError::ForeignRewrap {
        step: step.id.clone(),
        action: step.action,
        why: format!(
            "{seen} on service instance {}, though this rotation's rewrap to {}… had completed",
            step.instance,
            target.short()
        ),
    }
}

/// A rewrap whose response was lost is never sent again by this run: the first may still be
/// running on the service (it re-encrypts for minutes), and a second one loses the key
/// storage. It is settled done when the service reports it done or a unit was promoted; while
/// the service reports it in progress, the run waits (bounded); otherwise the outcome stays
/// unknown. "No rewrap" never settles it (`rewrap_done` says why): the next run refuses until
/// the service reports the rewrap, or the operator says what the service showed.
async fn settle_rewrap<B: Backend>(
    backend: &B,
    step: &Step,
    instance: &InstancePlan,
    error: &BackendError,
    notes: &mut Vec<String>,
) -> Result<Outcome, ApplyError> {
    let (from, to) = (
        &instance.key_storage_under,
        &instance.target_verification_pattern,
    );
    let mut waited_ms = 0;
    let mut quiet_reads = 0;
    loop {
        let found = read_instance(backend, step).await?;
        if let Some(evidence) = rewrap_done(&found, from, to) {
            return Ok(Outcome::SettledDone {
                evidence: format!("after \"{error}\": {evidence}"),
            });
        }
        let why = match found.rewrap_status {
            RewrapStatus::InProgress if waited_ms < REWRAP_SETTLE_WAIT_MS_MAX => {
                if waited_ms == 0 {
                    notes.push(format!(
                        "  {} {}: the service reports the rewrap in progress; waiting for it",
                        step.id, step.action
                    ));
                }
                None
            }
            RewrapStatus::InProgress => Some(format!(
                "{error}; the service still reports the rewrap in progress after {} s",
                REWRAP_SETTLE_WAIT_MS_MAX / 1000
            )),
            RewrapStatus::NotReported => Some(format!(
                "{error}; the service does not report whether the rewrap completed"
            )),
            _ if quiet_reads + 1 < REWRAP_SETTLE_QUIET_READS => {
                quiet_reads += 1;
                None
            }
            _ => Some(format!(
                "{error}; the service reports no rewrap, but the request may still be on its way or queued at the service, so it is not sent again: it is settled once the service reports it in progress or done, or by what the service showed (`mkplan attest rewrap`)"
            )),
        };
        if let Some(why) = why {
            return Err(ApplyError::Unknown {
                step: step.id.clone(),
                action: step.action,
                why,
            });
        }
        tokio::time::sleep(Duration::from_millis(REWRAP_SETTLE_POLL_MS)).await;
        waited_ms += REWRAP_SETTLE_POLL_MS;
    }
}
