//! What the live registers alone prove about the key storage's master key. A rewrap needs
//! its key Full Committed in every crypto unit's new register (the service refuses it
//! otherwise), and after it that key stays there until set immediate moves it into the
//! current register. So a unit whose registers hold the key neither way shows that no rewrap
//! to it can have completed, unless someone cleared that register after the rewrap and
//! loaded the key again: enough to refuse a witness that says it completed (an attestation),
//! never enough alone to send a rewrap.

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

/// The registers' word, when every current register holds one key `A`: if no new register
/// holds another key, no rewrap can have moved the key storage; if some do, but a rewrap to
/// none of those keys can have completed, it is still under `A`. In any other state the
/// registers alone prove nothing. The second form only checks the other witnesses.
pub(super) fn live_claim(live: &LiveInstance) -> Option<Claim> {
    let current = common_current(live)?;
    let staged: Vec<&VerificationPattern> = live
        .crypto_units
        .iter()
        .filter_map(|u| u.new_register.verification_pattern())
        .filter(|vp| **vp != current)
        .collect();
    let Some(first) = staged.first() else {
        return Some(Claim::one(
            "live state",
            current,
            "every current register holds it and no new register holds another key, so no rewrap can have moved the key storage",
        ));
    };
    if staged.iter().any(|vp| *vp != *first) {
        return None;
    }
    let ruled_out = rewrap_ruled_out(live, first);
    let unit = ruled_out.first()?;
    let why = format!(
        "every current register holds it, and no rewrap to {}… can have completed: crypto unit {}'s new register is {} (a rewrap needs it Full Committed in every new register, and it stays there until set immediate)",
        first.short(),
        unit.hsm_id,
        unit.new_register
    );
    // Only a check on the other witnesses: someone who cleared a new register after a
    // rewrap and loaded the key again would leave these registers too.
    Some(Claim {
        alone: false,
        ..Claim::one("live state", current, why)
    })
}
