//! The journal as a witness: what its records of this rotation say about the key storage's
//! master key (a rewrap it saw complete, one it never sent while it saw everything, an
//! attestation), or why it says nothing, with what would settle it.

use super::fix::{attest_fix, cleared_fix, confirm_fix, elsewhere_fix, sent_fix, unanswered};
use super::*;

/// The journal's word, or why it has none.
pub(super) fn journal_claim(
    live: &LiveInstance,
    target: &VerificationPattern,
    journal: &JournalEvidence,
) -> Result<Claim, JournalSilence> {
    let witness = journal.witness_named();
    let Some(rotation) = journal.rotation(&live.id) else {
        return Err(not_recorded(live, target, journal, witness));
    };
    let mut live_units: Vec<String> = live
        .crypto_units
        .iter()
        .map(|u| u.hsm_id.to_ascii_lowercase())
        .collect();
    live_units.sort();
    if rotation.units != live_units {
        return Err(JournalSilence {
            detail: format!(
                "{witness} recorded this instance's rotation to {}… against other crypto units ({}), so it is no evidence for these",
                rotation.to.short(),
                rotation.units.join(", ")
            ),
            fix: attest_fix(live, target, journal, false),
        });
    }
    if !registers_fit(rotation, live) {
        return Err(JournalSilence {
            detail: format!(
                "{witness} recorded a rotation from {}… to {}…, but the registers now hold other keys: something happened that it did not see",
                rotation.from.short(),
                rotation.to.short()
            ),
            fix: attest_fix(live, target, journal, false),
        });
    }
    if let Some(unit) = promoted_elsewhere(rotation, live) {
        return Err(JournalSilence {
            detail: format!(
                "{witness} saw set immediate of {}… take effect on crypto unit {}, whose current register holds {:#}: its records speak of another history (another fleet, a restored unit)",
                rotation.to.short(),
                unit.hsm_id,
                unit.current_register
            ),
            fix: attest_fix(live, target, journal, false),
        });
    }
    match &rotation.rewrap {
        JournalRewrap::Completed { how } => completed_claim(live, rotation, journal, witness, how),
        JournalRewrap::Unsettled { sent_at, by_hand } => Err(unanswered(
            live,
            rotation,
            journal,
            witness,
            sent_at.as_deref(),
            *by_hand,
        )),
        JournalRewrap::NotSent | JournalRewrap::NotRun { .. } => {
            not_sent_claim(live, rotation, journal, witness)
        }
    }
}

/// A unit whose set immediate to the rotation's key the journal saw, that does not hold that
/// key in its current register: the journal speaks of another history.
fn promoted_elsewhere<'a>(
    rotation: &JournalRotation,
    live: &'a LiveInstance,
) -> Option<&'a crate::model::CryptoUnit> {
    live.crypto_units.iter().find(|u| {
        rotation.promoted.contains(&u.hsm_id.to_ascii_lowercase())
            && !u.current_register.holds(&rotation.to)
    })
}

/// "The rewrap completed": proof that the key storage is still under its key only while no
/// other rotation can have come and gone since. The registers cannot show it (a rotation on
/// and back leaves them as they were), so the journal must vouch for the time since its run
/// stopped: a unit it promoted still holds the key (a rotation back would have promoted it
/// again), or the operator's fresh attestation.
fn completed_claim(
    live: &LiveInstance,
    rotation: &JournalRotation,
    journal: &JournalEvidence,
    witness: &str,
    how: &str,
) -> Result<Claim, JournalSilence> {
    let to = &rotation.to;
    let why = format!("the rewrap to {}… completed ({how})", to.short());
    if let Some(attested) = &rotation.attested_completed {
        return Ok(Claim::one(
            "journal",
            to.clone(),
            format!("{why}; confirmed by the operator at {}", attested.at),
        ));
    }
    if let Some(unit) = live.crypto_units.iter().find(|u| {
        let id = u.hsm_id.to_ascii_lowercase();
        (rotation.promoted.contains(&id) || rotation.promotion_sent.contains(&id))
            && u.current_register.holds(to)
    }) {
        return Ok(Claim::one(
            "journal",
            to.clone(),
            format!(
                "{why}; crypto unit {}, which it promoted, still holds it",
                unit.hsm_id
            ),
        ));
    }
    if !live
        .crypto_units
        .iter()
        .any(|u| u.new_register.holds(to) || u.current_register.holds(to))
    {
        return Err(JournalSilence {
            detail: format!(
                "{witness} saw {why}, yet no register holds {t}…: either someone cleared the new registers after the rewrap (then the key storage is under {t}…, which no register holds, and a second rewrap makes it unusable), or another operator or state folder finished this rotation and rotated back, which it did not see",
                t = to.short()
            ),
            fix: cleared_fix(live, to, journal),
        });
    }
    Err(JournalSilence {
        detail: format!(
            "{witness} saw {why}, but its run stopped before any unit it promoted: since then another operator or state folder may have finished this rotation and rotated back, which leaves the registers as they are now"
        ),
        fix: confirm_fix(live, to, journal),
    })
}

/// "The rewrap was not sent": proof only if the journal saw the whole rotation so far.
fn not_sent_claim(
    live: &LiveInstance,
    rotation: &JournalRotation,
    journal: &JournalEvidence,
    witness: &str,
) -> Result<Claim, JournalSilence> {
    let (from, to) = (&rotation.from, &rotation.to);
    let settled = match &rotation.rewrap {
        JournalRewrap::NotRun { how } => format!("its rewrap did not run ({how}); "),
        _ => String::new(),
    };
    if let Some(promoted) = live
        .crypto_units
        .iter()
        .find(|u| !u.current_register.holds(from))
    {
        return Err(JournalSilence {
            detail: format!(
                "{witness} never saw the rewrap to {}… complete, yet crypto unit {} holds {:#} in its current register: a set immediate it did not see",
                to.short(),
                promoted.hsm_id,
                promoted.current_register
            ),
            fix: attest_fix(live, to, journal, false),
        });
    }
    let committed: Vec<&str> = live
        .crypto_units
        .iter()
        .filter(|u| u.new_register == NewRegister::FullCommitted(to.clone()))
        .map(|u| u.hsm_id.as_str())
        .collect();
    if let Some(attested) = &rotation.attested_not_run {
        let seen = match &rotation.committed_at {
            Some(at) => format!("{witness} witnessed the commits at {at}"),
            None => format!("{witness} recorded this rotation"),
        };
        return Ok(Claim::one(
            "journal",
            from.clone(),
            format!(
                "{settled}rewrap not yet sent: {seen}; confirmed by the operator at {}",
                attested.at
            ),
        ));
    }
    if !committed.is_empty() {
        let seen = rotation
            .committed_at
            .as_ref()
            .map(|at| format!("witnessed the commits (the last at {at})"))
            .unwrap_or_else(|| "did not witness the commits".into());
        let unseen: Vec<&str> = committed
            .iter()
            .copied()
            .filter(|u| !rotation.committed.contains(&u.to_ascii_lowercase()))
            .collect();
        let by_whom = if unseen.is_empty() {
            String::new()
        } else {
            format!(" (someone else committed on {})", unseen.join(", "))
        };
        return Err(JournalSilence {
            detail: format!(
                "{witness} {seen}{by_whom} and never sent the rewrap, but the run stopped before it: since then another operator, another state folder, the TKE CLI or the TKE application may have sent it, and a second rewrap would make the key storage unusable"
            ),
            fix: attest_fix(live, to, journal, true),
        });
    }
    let unseen: Vec<&str> = live
        .crypto_units
        .iter()
        .filter(|u| {
            u.new_register.holds(to) && !rotation.loaded.contains(&u.hsm_id.to_ascii_lowercase())
        })
        .map(|u| u.hsm_id.as_str())
        .collect();
    if !unseen.is_empty() {
        return Err(JournalSilence {
            detail: format!(
                "{witness} did not see the load of {}… on crypto unit(s) {}: someone else staged it",
                to.short(),
                unseen.join(", ")
            ),
            fix: attest_fix(live, to, journal, true),
        });
    }
    Ok(Claim::one(
        "journal",
        from.clone(),
        format!(
            "{settled}{witness} loaded {}… on every unit that holds it and no new register is committed, so no rewrap can have run",
            to.short()
        ),
    ))
}

fn not_recorded(
    live: &LiveInstance,
    target: &VerificationPattern,
    journal: &JournalEvidence,
    witness: &str,
) -> JournalSilence {
    let elsewhere = match journal.elsewhere(&live.id) {
        Some(backends) => format!(
            " against this backend; its records of this instance were made against {} and are no evidence here (a rehearsal is not the real service)",
            backends.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
        None => String::new(),
    };
    let detail = match journal.unauthenticated(&live.id) {
        Some(why) => format!(
            "{witness} cannot vouch for this rotation: {why}. Nothing it recorded of this instance before that point is evidence; keep the journal for investigation"
        ),
        None => format!("{witness} has no record of this rotation{elsewhere}"),
    };
    let from = common_current(live);
    let sent = journal.unverified_rewraps(&live.id, from.as_ref(), target);
    let sent_elsewhere: Vec<&(String, crate::model::RewrapOnRecord)> = journal
        .rewraps_elsewhere(&live.id)
        .iter()
        .filter(|(_, r)| match &from {
            Some(from) => r.speaks_against(from, target),
            None => r.to.as_ref().is_none_or(|t| t == target) || r.may_land(None),
        })
        .collect();
    if sent.is_empty() && !sent_elsewhere.is_empty() {
        return JournalSilence {
            detail: format!(
                "{detail}. Yet its records made against {} say {}: no evidence here, but the same instance id may be this very service reached another way (the fleet file moved, another endpoint), and a second rewrap after one completed makes the key storage unusable",
                sent_elsewhere
                    .iter()
                    .map(|(b, _)| b.as_str())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", "),
                sent_elsewhere
                    .iter()
                    .map(|(_, r)| r.describe())
                    .collect::<Vec<_>>()
                    .join(", and ")
            ),
            fix: elsewhere_fix(live, target, journal),
        };
    }
    if sent.is_empty() {
        return JournalSilence {
            detail,
            fix: attest_fix(live, target, journal, false),
        };
    }
    JournalSilence {
        detail: format!(
            "{detail}. Yet records it can no longer verify (sealed with another journal key, or voided by such a record) say {}; they cannot vouch for anything, but they are enough to refuse",
            sent.iter()
                .map(|r| r.describe())
                .collect::<Vec<_>>()
                .join(", and ")
        ),
        fix: sent_fix(live, target, journal),
    }
}
