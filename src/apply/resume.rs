//! What a run does before its first step: settle the intents that earlier runs against this
//! backend left without an outcome, each from evidence about that very operation, and record
//! the rotations it starts, bound to the backend, its crypto units and their registers.

use super::evidence::{backend_of_step, journal_evidence, unit_ids, unsettled};
use super::executor::ApplyError;
use super::journal::{Journal, Outcome, Record};
use crate::model::{
    FolderRewrap, JournalEvidence, JournalRewrap, JournalRotation, LiveInstance, NewRegister,
    OtherFolders, RewrapStatus, VerificationPattern,
};
use crate::plan::{Action, Plan, by_instance};
use crate::timestamp::utc_now;

/// Settles the intents that an earlier run against `backend` left without an outcome, from
/// the live state the plan was made from, so that the journal says what happened before
/// anything new is sent. An intent that the live state cannot settle stays open. Returns one
/// line per settled intent.
pub fn settle_previous(
    journal: &mut Journal,
    plan: &Plan,
    live: &[LiveInstance],
    backend: &str,
) -> Result<Vec<String>, ApplyError> {
    let evidence = journal_evidence(journal.records(), backend, "");
    let open: Vec<Record> = unsettled(journal.records())
        .into_iter()
        .filter(|(_, r)| match r {
            Record::Intent { step, .. } => {
                backend_of_step(journal.records(), step) == Some(backend)
            }
            _ => false,
        })
        .map(|(_, r)| r.clone())
        .collect();
    let mut settled = Vec::new();
    for record in open {
        let Record::Intent {
            step,
            action,
            instance,
            unit,
            by_hand,
            ..
        } = record
        else {
            continue;
        };
        let Some(found) = live.iter().find(|i| i.id.eq_ignore_ascii_case(&instance)) else {
            continue;
        };
        // The key the operation was about: its rotation's, whatever the plan aims at now (an
        // abort must never settle the earlier rotation's rewrap as done).
        let rotation = evidence.rotation(&instance);
        let planned = plan
            .instances
            .iter()
            .find(|i| i.id.eq_ignore_ascii_case(&instance));
        let Some(to) = rotation
            .map(|r| &r.to)
            .or(planned.map(|p| &p.target_verification_pattern))
        else {
            continue;
        };
        let settled_as = match action {
            Action::RewrapKeyStorage => {
                let Some(rotation) = rotation else { continue };
                rewrap_done(found, &rotation.from, &rotation.to).map(|why| (true, why))
            }
            Action::RemoveUnit => Some((true, "remove_unit sends nothing".to_string())),
            _ => {
                let done = observed(action, found, unit.as_deref(), to);
                if by_hand && action == Action::ClearNewMk && !done {
                    return Err(ApplyError::ClearByHandOpen {
                        step,
                        registers: unit_registers(found, unit.as_deref()),
                        unit: unit.unwrap_or_default(),
                    });
                }
                Some((
                    done,
                    format!(
                        "the unit's registers as a later run read them: {}",
                        unit_registers(found, unit.as_deref())
                    ),
                ))
            }
        };
        let Some((done, evidence)) = settled_as else {
            continue;
        };
        settled.push(format!(
            "{step} {action}{}: {} ({evidence})",
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
        journal.append(Record::outcome(step, outcome))?;
    }
    Ok(settled)
}

/// "new Full Uncommitted d1d1…, current Valid c2c2…" for unit `unit` of `found`.
fn unit_registers(found: &LiveInstance, unit: Option<&str>) -> String {
    unit.and_then(|u| found.unit(u))
        .map(|u| format!("new {}, current {}", u.new_register, u.current_register))
        .unwrap_or_else(|| "not reported".into())
}

/// Whether the live state settles a rewrap from `from` to `to` whose outcome was never
/// recorded, as done: the service reporting it done with every unit holding `to`, or a unit
/// promoted to `to` (only a completed rewrap allows that). Some(why) when it does.
///
/// Nothing in the live state settles it as not run. "No rewrap" from the service speaks of
/// this moment only: the request may still be on its way or queued at the service, and take
/// effect after it (a slow service applied one 20 s after the connection that carried it was
/// reset), and no figure bounds how long a service may hold a request it received. A second
/// rewrap after it loses the key storage. So only evidence about that very request settles it
/// as not run: the operator's attestation (`mkplan attest rewrap --not-run`, with
/// `--service-evidence` for mkplan's own request). Sending and resuming both decide here.
pub(crate) fn rewrap_done(
    found: &LiveInstance,
    from: &VerificationPattern,
    to: &VerificationPattern,
) -> Option<String> {
    if let Some(promoted) = found
        .crypto_units
        .iter()
        .find(|u| u.current_register.holds(to) && from != to)
    {
        return Some(format!(
            "crypto unit {} was promoted to {}…, which only a completed rewrap allows",
            promoted.hsm_id,
            to.short()
        ));
    }
    (found.rewrap_status == RewrapStatus::Rewrapped
        && found
            .crypto_units
            .iter()
            .all(|u| u.new_register.holds(to) || u.current_register.holds(to)))
    .then(|| {
        format!(
            "the service reports \"{}\" and every crypto unit holds {}…",
            RewrapStatus::Rewrapped.describe(),
            to.short()
        )
    })
}

/// Whether a unit operation's effect shows in the live state (rotating to `target`).
pub(crate) fn observed(
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

/// Records the start of each rotation the plan rewraps, unless the journal already has it,
/// bound to `backend`, the instance's crypto units and their registers as the plan found them,
/// and naming the other folders' rewraps the plan weighed (`weighed`: what it was made with).
pub fn record_rotations(
    journal: &mut Journal,
    plan: &Plan,
    live: &[LiveInstance],
    evidence: &JournalEvidence,
    weighed: &OtherFolders,
    backend: &str,
) -> Result<(), ApplyError> {
    let grouped = by_instance(&plan.steps);
    // One durable batch for the whole fleet, before the first step: one fsync, not one a
    // rotation.
    let mut started = Vec::new();
    for instance in &plan.instances {
        let rewraps = grouped
            .get(instance.id.as_str())
            .is_some_and(|steps| steps.iter().any(|s| s.action == Action::RewrapKeyStorage));
        if !rewraps {
            continue;
        }
        let Some(found) = live
            .iter()
            .find(|i| i.id.eq_ignore_ascii_case(&instance.id))
        else {
            continue;
        };
        let units = unit_ids(found.crypto_units.iter().map(|u| u.hsm_id.as_str()));
        let rotation = evidence.rotation(&instance.id);
        if rotation.is_some_and(|r| matches!(r.rewrap, JournalRewrap::Unsettled { .. })) {
            // The planner refuses this; a plan that gets here anyway must not start over.
            return Err(ApplyError::Unknown {
                step: "(before the first step)".into(),
                action: Action::RewrapKeyStorage,
                why: format!(
                    "the journal holds a rewrap of service instance {} whose outcome is unknown; refusing to start another",
                    instance.id
                ),
            });
        }
        let known = rotation.is_some_and(|r| {
            r.to == instance.target_verification_pattern
                && r.from == instance.key_storage_under
                && r.units == units
                && matches!(
                    r.rewrap,
                    JournalRewrap::NotSent | JournalRewrap::NotRun { .. }
                )
        });
        if !known {
            started.push(Record::RotationStarted {
                instance: instance.id.to_ascii_lowercase(),
                from: instance.key_storage_under.clone(),
                to: instance.target_verification_pattern.clone(),
                backend: Some(backend.to_string()),
                units: Some(units),
                registers: Some(
                    crate::model::LiveFleet {
                        instances: vec![found.clone()],
                    }
                    .fingerprint(),
                ),
                at: Some(utc_now()),
                weighed: Some(
                    weighed
                        .rewraps_of(&instance.id)
                        .iter()
                        .map(FolderRewrap::witnessed)
                        .collect(),
                ),
            });
        }
    }
    journal.append_all(started)?;
    Ok(())
}

/// Closes the journal's open rotation of every instance in `live` that the live state shows
/// finished (every current register holds one key, every new register is Empty), so that
/// older records say nothing more about it. Returns one line per closed rotation, and one
/// (starting "Kept open") per finished-looking rotation whose rewrap the registers cannot
/// settle (`kept_open`): that one stays open.
pub fn close_finished(
    journal: &mut Journal,
    live: &[LiveInstance],
    backend: &str,
) -> Result<Vec<String>, ApplyError> {
    let evidence = journal_evidence(journal.records(), backend, "");
    let mut closed = Vec::new();
    // One durable batch: one fsync for a fleet, not one a rotation.
    let mut records = Vec::new();
    for instance in live {
        let Some(rotation) = evidence.rotation(&instance.id) else {
            continue;
        };
        let Some(why) = finished(instance) else {
            continue;
        };
        if let Some(open) = kept_open(instance, rotation) {
            closed.push(open);
            continue;
        }
        records.push(Record::RotationClosed {
            instance: instance.id.to_ascii_lowercase(),
            backend: backend.to_string(),
            why: why.clone(),
            at: utc_now(),
        });
        closed.push(format!(
            "Closed the journal's rotation of service instance {} from {}… to {}…: {why}.",
            instance.id,
            rotation.from.short(),
            rotation.to.short()
        ));
    }
    journal.append_all(records)?;
    Ok(closed)
}

/// Why the journal's rotation of `instance`, although its registers look finished, must stay
/// open, or None when it may close. Registers that show one key everywhere do not settle a
/// rewrap: one mkplan sent and never saw answered may still be queued at the service and land
/// whenever the key is staged again (an abort leaves the registers just as a finished
/// rotation does), and one it saw complete, while every current register holds the old key,
/// means the new registers were cleared after it (or a rotation back it did not see). Closing
/// would let the next plan rewrap again. Only a unit promoted to the rotation's key settles
/// its rewrap from the registers (`rewrap_done`).
pub fn kept_open(instance: &LiveInstance, rotation: &JournalRotation) -> Option<String> {
    if crate::plan::common_current(instance).as_ref() == Some(&rotation.to) {
        return None;
    }
    let (what, settles) = match &rotation.rewrap {
        JournalRewrap::Unsettled { sent_at, by_hand } => (
            format!(
                "its rewrap{} was {}{} and its outcome never recorded: it may still be queued at the service and land once {}… is staged again",
                if *by_hand { " ceremony step" } else { "" },
                if *by_hand { "shown" } else { "sent" },
                sent_at
                    .as_ref()
                    .map(|t| format!(" in the run of {t}"))
                    .unwrap_or_default(),
                rotation.to.short()
            ),
            format!(
                "settle it with evidence about that rewrap: the service's rotation status reporting it, or `mkplan attest rewrap {id} --completed` (the service reported it done) or `--not-run --service-evidence \"…\"` (the service showed that it did not run)",
                id = instance.id
            ),
        ),
        JournalRewrap::Completed { how } => (
            format!(
                "its rewrap completed ({how}), yet every current register holds {}…: the new registers were cleared after it (the key storage is under {}…, which no register holds) or someone rotated back unseen",
                crate::plan::common_current(instance)
                    .map(|k| k.short().to_string())
                    .unwrap_or_default(),
                rotation.to.short()
            ),
            "find out which (ask everyone who can act on the instance; the service's rotation status or IBM support settles it); `mkplan plan` says what settles it".to_string(),
        ),
        JournalRewrap::NotSent | JournalRewrap::NotRun { .. } => return None,
    };
    Some(format!(
        "Kept open the journal's rotation of service instance {} from {}… to {}…: {what}. {settles}. Until then no rotation of this instance starts",
        instance.id,
        rotation.from.short(),
        rotation.to.short()
    ))
}

/// Why the live state shows the instance's rotation finished, or None when it does not.
pub fn finished(instance: &LiveInstance) -> Option<String> {
    let current = crate::plan::common_current(instance)?;
    instance
        .crypto_units
        .iter()
        .all(|u| u.new_register == NewRegister::Empty)
        .then(|| {
            format!(
                "every current register holds {}… and every new register is Empty",
                current.short()
            )
        })
}
