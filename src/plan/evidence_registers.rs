//! What the live registers alone prove about the key storage's master key. A rewrap needs
//! its key Full Committed in every crypto unit's new register (the service refuses it
//! otherwise), and after it that key stays there until set immediate moves it into the
//! current register. So a unit whose registers hold the key neither way shows that no rewrap
//! to it can have completed, unless someone cleared that register after the rewrap and
//! loaded the key again: enough to refuse a witness that says it completed (an attestation),
//! never enough to choose between keys. Here too: the registers' own claim (nothing staged
//! but the current key), and the keys a service waiting on set immediate can have rewrapped to.

use std::collections::BTreeSet;

use super::{Claim, common_current};
use crate::model::{CryptoUnit, LiveInstance, NewRegister, VerificationPattern};

/// The crypto units whose registers show that no rewrap to `to` can have completed: while no
/// unit is promoted to `to` (set immediate moved it into its current register), every unit
/// not holding it Full Committed in its new register. Empty when the registers allow it. Once
/// a unit is promoted, the others may have lost their staged copy since (a register cleared
/// and loaded again, `after_rewrap` recoveries), so nothing is ruled out.
pub fn rewrap_ruled_out<'a>(
    live: &'a LiveInstance,
    to: &VerificationPattern,
) -> Vec<&'a CryptoUnit> {
    if live
        .crypto_units
        .iter()
        .any(|u| u.current_register.holds(to))
    {
        return Vec::new();
    }
    live.crypto_units
        .iter()
        .filter(|u| !matches!(&u.new_register, NewRegister::FullCommitted(vp) if vp == to))
        .collect()
}

/// What the registers alone prove. A rewrap needs every new register Full Committed with one
/// key, and after it that key stays in the new registers until set immediate. So when every
/// current register holds `A` and no new register holds any other key, no rewrap can have
/// moved the storage anywhere but `A`. In any other state the registers alone prove nothing.
pub(super) fn live_claim(live: &LiveInstance) -> Option<Claim> {
    let current = common_current(live)?;
    let other_staged = live.crypto_units.iter().any(|u| {
        u.new_register
            .verification_pattern()
            .is_some_and(|vp| *vp != current)
    });
    (!other_staged).then(|| Claim::one(
        "live state",
        current,
        "every current register holds it and no new register holds another key, so no rewrap can have moved the key storage",
    ))
}

/// Why the registers show that the key storage cannot be under `key`, if they do: no rewrap
/// to it can have completed (`rewrap_ruled_out`) and no current register holds it.
pub(super) fn ruled_out_by_registers(
    live: &LiveInstance,
    key: &VerificationPattern,
) -> Option<String> {
    let unit = *rewrap_ruled_out(live, key).first()?;
    Some(format!(
        "no rewrap to {}… can have completed: no crypto unit is promoted to it, and crypto unit {}'s new register is {} (a rewrap needs it Full Committed in every new register, and it stays there until set immediate)",
        key.short(),
        unit.hsm_id,
        unit.new_register
    ))
}

/// The keys the service can have rewrapped to, given that it waits on set immediate. A rewrap
/// leaves its key in every unit's new register, and only set immediate moves it to the current
/// register; so the key a rewrap left behind is one that every unit still holds in one of its
/// registers, while the units not yet promoted to it share one old current key. When no key
/// fits (some unit lost its copy), any key held in any register may be the one: nothing may
/// be cleared or overwritten on the service's word alone, and other witnesses must say which.
/// Never a key every current register holds: a service waiting on set immediate waits on a
/// unit not yet promoted to its key (it forgets the rewrap once every unit is). Empty when
/// no key is left: the service's word contradicts the registers.
pub(super) fn rewrapped_candidates(live: &LiveInstance) -> (BTreeSet<VerificationPattern>, String) {
    let held: BTreeSet<&VerificationPattern> = live
        .crypto_units
        .iter()
        .flat_map(|u| {
            u.new_register
                .verification_pattern()
                .into_iter()
                .chain(u.current_register.verification_pattern())
        })
        .collect();
    let left_behind: BTreeSet<VerificationPattern> = held
        .iter()
        .filter(|key| {
            let everywhere = live
                .crypto_units
                .iter()
                .all(|u| u.current_register.holds(key) || u.new_register.holds(key));
            let old: BTreeSet<Option<&VerificationPattern>> = live
                .crypto_units
                .iter()
                .filter(|u| !u.current_register.holds(key))
                .map(|u| u.current_register.verification_pattern())
                .collect();
            everywhere && old.len() == 1 && !old.contains(&None)
        })
        .map(|key| (*key).clone())
        .collect();
    if left_behind.is_empty() {
        let promoted_everywhere = |key: &VerificationPattern| {
            live.crypto_units
                .iter()
                .all(|u| u.current_register.holds(key))
        };
        (
            held.into_iter()
                .filter(|key| !promoted_everywhere(key))
                .cloned()
                .collect(),
            "no key is held by every crypto unit, so any key in any register but one every current register holds may be the one it rewrapped to".into(),
        )
    } else {
        (
            left_behind,
            "every crypto unit still holds the key it rewrapped to".into(),
        )
    }
}
