//! The service's rewrap of an instance's key storage: IBM's rotation pre-checks, then a
//! re-encryption that takes `keys × rewrap_ms_per_key` milliseconds. While it runs, the
//! service takes no other command for the instance; it completes when the clock passes its
//! end, whatever became of the client that sent it.

use std::collections::BTreeSet;

use super::fleet::{Fleet, RewrapInProgress, SimInstance};
use super::hsm::{Accepted, Refused, SimOperation, refuse};
use crate::model::{Mode, VerificationPattern};

/// Refuses every operation on an instance whose key storage is being rewrapped.
pub(super) fn refuse_while_running(
    instance: &SimInstance,
    operation: &SimOperation,
    now_ms: u64,
) -> Result<(), Refused> {
    let Some(running) = &instance.key_storage.rewrap_in_progress else {
        return Ok(());
    };
    let rewrap = format!(
        "the rewrap of service instance {}'s key storage from {}… to {}… is in progress (it completes in about {} s)",
        instance.id,
        running.from.short(),
        running.to.short(),
        running
            .completes_at_ms
            .saturating_sub(now_ms)
            .div_ceil(1000)
    );
    Err(Refused::Busy(match operation.unit() {
        None => format!("rewrap refused: {rewrap}; the service runs one rewrap at a time"),
        Some(unit) => format!(
            "{} on crypto unit {unit} refused: {rewrap}; the instance's crypto units take no command until it has completed",
            operation.name()
        ),
    }))
}

/// The pre-checks, then the start of the re-encryption from the current MK to the new one,
/// whether or not the key storage is really under the current MK.
pub(super) fn start(
    instance: &mut SimInstance,
    now_ms: u64,
    incidents: &mut Vec<String>,
) -> Result<Accepted, Refused> {
    let (from, to) = pre_checks(instance)?;
    let storage = &mut instance.key_storage;
    if storage.verification_pattern != from && !storage.unusable {
        storage.unusable = true;
        incidents.push(format!(
            "rewrap started again after it completed: the key storage, under {}, is being re-encrypted as if it were under {from}; its {} keys are lost",
            storage.verification_pattern, storage.keys
        ));
    }
    let completes_at_ms = now_ms.saturating_add(storage.rewrap_ms());
    // The service now remembers this rewrap, not the one before.
    storage.rewrapped_from = None;
    storage.rewrap_in_progress = Some(RewrapInProgress {
        from,
        to,
        completes_at_ms,
    });
    Ok(Accepted::RewrapRunning { completes_at_ms })
}

/// IBM's rotation pre-checks (domain.md); the key the storage goes from and to.
fn pre_checks(
    instance: &SimInstance,
) -> Result<(VerificationPattern, VerificationPattern), Refused> {
    let units = &instance.crypto_units;
    let Some(first) = units.first() else {
        return refuse("rewrap refused: the instance has no crypto unit".into());
    };
    if let Some(unit) = units.iter().find(|u| u.mode == Mode::Imprint) {
        return refuse(format!(
            "rewrap refused: crypto unit {} is in imprint mode",
            unit.hsm_id
        ));
    }
    let threshold = first.signature_threshold;
    if let Some(other) = units.iter().find(|u| u.signature_threshold != threshold) {
        return refuse(format!(
            "rewrap refused: the signature thresholds differ between crypto units ({}: {threshold}, {}: {}); set the same threshold on every unit",
            first.hsm_id, other.hsm_id, other.signature_threshold
        ));
    }
    let common: BTreeSet<&str> = first
        .administrators
        .iter()
        .filter(|a| units.iter().all(|u| u.administrators.contains(a)))
        .map(|a| a.name.as_str())
        .collect();
    if common.len() < usize::from(threshold) {
        return refuse(format!(
            "rewrap refused: {} administrator(s) ({}) are installed with the same name and signature key on every crypto unit, fewer than the signature threshold {threshold}; install a common set of administrators first",
            common.len(),
            if common.is_empty() {
                "none".into()
            } else {
                common.into_iter().collect::<Vec<_>>().join(", ")
            }
        ));
    }
    let from = common_key(
        units
            .iter()
            .map(|u| u.current_register.verification_pattern()),
    );
    let to = common_key(units.iter().map(|u| u.new_register.committed()));
    let (Some(from), Some(to)) = (from, to) else {
        return refuse(
            "rewrap refused: every current register must be Valid with the same verification pattern and every new register Full Committed with the same verification pattern".into(),
        );
    };
    Ok((from, to))
}

fn common_key<'a>(
    mut vps: impl Iterator<Item = Option<&'a VerificationPattern>>,
) -> Option<VerificationPattern> {
    let first = vps.next()??;
    vps.all(|vp| vp == Some(first)).then(|| first.clone())
}

/// Completes every rewrap whose end `now_ms` has passed: the key storage is under the new MK
/// and the service waits on set immediate. Returns whether anything changed.
pub fn complete_rewraps(fleet: &mut Fleet, now_ms: u64) -> bool {
    let mut changed = false;
    for instance in &mut fleet.instances {
        let storage = &mut instance.key_storage;
        let Some(running) = storage
            .rewrap_in_progress
            .take_if(|r| r.completes_at_ms <= now_ms)
        else {
            continue;
        };
        storage.verification_pattern = running.to;
        storage.rewrapped_from = Some(running.from);
        let storage = &storage.verification_pattern;
        if instance
            .crypto_units
            .iter()
            .all(|u| u.current_register.holds(storage))
        {
            // A rewrap to the key every unit already holds leaves nothing to wait on.
            instance.key_storage.rewrapped_from = None;
        }
        changed = true;
    }
    changed
}
