//! Which MK is the key storage encrypted under? The whole safety of a rotation hangs on this
//! answer, and the service does not reveal it directly. Three witnesses may speak: the
//! service's rotation status, mkplan's journal (with the operator's attestations), and the
//! live registers themselves. Each names the keys the storage may be under, or stays silent;
//! the answer is the one key they all allow. If they allow none (a contradiction), several,
//! or all stay silent, the planner refuses and says what evidence would settle it. It never
//! guesses.
//!
//! A journal is a witness only of what it saw: the rotations it recorded against this
//! backend and these crypto units. Its silence about a rewrap proves nothing unless it saw the
//! key staged on every unit arrive, and nothing could have happened out of its sight since:
//! once any new register is committed, a run that stopped before its rewrap leaves a gap in
//! which another operator, state folder or the TKE CLI may have rewrapped. Only the
//! operator's attestation (`mkplan attest rewrap`) closes that gap.

use std::collections::BTreeSet;

use serde::Serialize;

use super::refusal::{Check, Refusal, UnitValue};
use crate::model::{
    CurrentRegister, JournalEvidence, JournalRewrap, JournalRotation, LiveInstance, NewRegister,
    RewrapStatus, VerificationPattern,
};

/// The planner's finding about the key storage, with the evidence that supports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StorageFinding {
    /// The MK the key storage is encrypted under.
    pub key_storage_under: VerificationPattern,
    pub evidence: Vec<String>,
}

/// One witness's word: the key storage is under one of `under`.
struct Claim {
    witness: &'static str,
    under: BTreeSet<VerificationPattern>,
    why: String,
}

impl Claim {
    fn one(witness: &'static str, under: VerificationPattern, why: impl Into<String>) -> Self {
        Self {
            witness,
            under: BTreeSet::from([under]),
            why: why.into(),
        }
    }
}

/// Why the journal said nothing, and what would settle it: the refusal's words.
struct JournalSilence {
    detail: String,
    fix: String,
}

pub(crate) fn find_key_storage_mk(
    live: &LiveInstance,
    target: &VerificationPattern,
    journal: &JournalEvidence,
) -> Result<StorageFinding, Refusal> {
    if converged(live, target) {
        return Ok(StorageFinding {
            key_storage_under: target.clone(),
            evidence: vec!["live state: every current register holds the desired master key and every new register is Empty; the rotation is finished, whatever older records say".into()],
        });
    }
    if let Some(rotation) = journal.rotation(&live.id)
        && let Some(seen) = &rotation.foreign_rewrap
    {
        return Err(foreign_rewrap(live, journal, rotation, seen));
    }
    let mut claims = Vec::new();
    // "No rewrap" speaks of this moment: a rewrap request this journal left unanswered may
    // still be on its way or queued at the service (apply::resume::rewrap_done).
    let unanswered = journal
        .rotation(&live.id)
        .is_some_and(|r| matches!(r.rewrap, JournalRewrap::Unsettled { .. }));
    // So may one that records made against another identity of the service (a moved fleet
    // file, another endpoint), or records this journal cannot vouch for, say was sent from
    // the key the current registers hold, whatever rotation it was (round 12, F1).
    let queued_elsewhere = journal.may_land_from_records(&live.id, common_current(live).as_ref());
    if let Some(claim) = status_claim(live, journal)?
        && !((unanswered || queued_elsewhere) && live.rewrap_status == RewrapStatus::NotRewrapped)
    {
        claims.push(claim);
    }
    let journal_word = journal_claim(live, target, journal);
    if let Some(pending) = folders::pending(live, journal) {
        // What this journal says, why it is silent included (a copy, a cut), comes first.
        let silence = match journal_word {
            Err(silence) => silence,
            Ok(claim) => JournalSilence {
                detail: format!(
                    "{} says it is under {}, but holds no evidence about a rewrap sent from another state folder",
                    journal.witness_named(),
                    keys(&claim.under)
                ),
                fix: String::new(),
            },
        };
        return Err(folders::refused(live, target, Some(silence), pending));
    }
    let silence = match journal_word {
        Ok(claim) => {
            claims.push(claim);
            None
        }
        Err(silence) => Some(silence),
    };
    if let Some(claim) = live_claim(live) {
        // The registers speak of this moment only. They never outweigh a rewrap this journal
        // sent: one never answered may still be queued at the service and land once its key
        // is staged again, and one seen to complete leaves its key in no register only if
        // someone cleared the new registers after it (`rewrap_sent_away`).
        if !rewrap_sent_away(live, journal, &claim) && !queued_elsewhere {
            claims.push(claim);
        }
    }
    let Some(first) = claims.first() else {
        return Err(silent(live, target, silence));
    };
    let allowed: BTreeSet<VerificationPattern> = claims
        .iter()
        .skip(1)
        .fold(first.under.clone(), |acc, c| &acc & &c.under);
    let evidence: Vec<String> = claims
        .iter()
        .map(|c| format!("{}: {}", c.witness, c.why))
        .collect();
    match allowed.len() {
        1 => {
            let under = allowed.into_iter().next().expect("one key");
            // The registers never choose a key (someone may have cleared a new register after
            // a rewrap and loaded it again), but they refuse one no rewrap can have left.
            if let Some(why) = ruled_out_by_registers(live, &under) {
                return Err(contradiction(
                    live,
                    &claims,
                    &format!(
                        "- live state says it is not under {}…: {why}",
                        under.short()
                    ),
                ));
            }
            Ok(StorageFinding {
                key_storage_under: under,
                evidence,
            })
        }
        0 => Err(contradiction(live, &claims, "")),
        _ => {
            let mut refusal = silent(live, target, silence);
            refusal.detail = format!(
                "the key storage may be under any of {}: {}; nothing settles which.\n{}",
                keys(&allowed),
                evidence.join("; "),
                refusal.detail
            );
            Err(refusal)
        }
    }
}

/// The journal's open rotation of `live` holds a rewrap this journal sent whose key the
/// registers' own claim (`live_claim`) leaves out: never answered (it may still land: a
/// service queued one for 20 s after the connection that carried it was reset), or seen to
/// complete while the registers still fit the rotation (a new register cleared after it).
/// Then the registers' claim is no evidence: it would plan a second rewrap.
fn rewrap_sent_away(live: &LiveInstance, journal: &JournalEvidence, claim: &Claim) -> bool {
    let Some(rotation) = journal.rotation(&live.id) else {
        return false;
    };
    if claim.under.contains(&rotation.to) {
        return false;
    }
    match rotation.rewrap {
        JournalRewrap::Unsettled { .. } => true,
        JournalRewrap::Completed { .. } => registers_fit(rotation, live),
        JournalRewrap::NotSent | JournalRewrap::NotRun { .. } => false,
    }
}

/// The witnesses name keys no one key fits, or one the registers rule out (`extra`).
fn contradiction(live: &LiveInstance, claims: &[Claim], extra: &str) -> Refusal {
    let said: Vec<String> = claims
        .iter()
        .map(|c| {
            format!(
                "- {} says it is under {}: {}",
                c.witness,
                keys(&c.under),
                c.why
            )
        })
        .chain((!extra.is_empty()).then(|| extra.to_string()))
        .collect();
    Refusal::new(
        &live.id,
        Check::EvidenceConsistent,
        format!(
            "the evidence about the key storage's master key contradicts itself:\n{}",
            said.join("\n")
        ),
    )
    .units(registers(live))
    .fix("find out which witness is wrong before acting (a journal from another rotation? an attestation given in error? a register changed by hand?); the service's rotation status or IBM support confirming which master key the key storage is under settles it. Do not rerun the rotation, set immediate or clear any new register until it is settled")
}

/// Every current register holds the target and every new register is Empty.
fn converged(live: &LiveInstance, target: &VerificationPattern) -> bool {
    live.crypto_units
        .iter()
        .all(|u| u.current_register.holds(target) && u.new_register == NewRegister::Empty)
}

fn keys(set: &BTreeSet<VerificationPattern>) -> String {
    set.iter()
        .map(|k| format!("{}…", k.short()))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The service's word. `NotRewrapped` means the storage is under the MK all current registers
/// hold; `Rewrapped` means it is under a key it rewrapped to and some unit still waits to be
/// promoted to; `InProgress` means nothing may be done until it completes.
fn status_claim(live: &LiveInstance, journal: &JournalEvidence) -> Result<Option<Claim>, Refusal> {
    match live.rewrap_status {
        RewrapStatus::NotReported => Ok(None),
        // This rotation's rewrap completed: one running now is a second, somebody else's.
        RewrapStatus::InProgress
            if let Some(rotation) = journal.rotation(&live.id)
                && matches!(rotation.rewrap, JournalRewrap::Completed { .. })
                && registers_fit(rotation, live) =>
        {
            Err(foreign_rewrap(
                live,
                journal,
                rotation,
                "the service reports a rewrap of the key storage in progress now",
            ))
        }
        RewrapStatus::InProgress => Err(Refusal::new(
            &live.id,
            Check::RewrapEvidence,
            "the service reports a rewrap of the key storage in progress: it completes on the service whatever happens to the client that sent it",
        )
        .units(registers(live))
        .fix("wait until the service reports the rewrap done (about 60 s per 3,000 keys), then plan again; do not send another rewrap, set immediate or clear any new register meanwhile")),
        RewrapStatus::NotRewrapped => match common_current(live) {
            Some(under) => Ok(Some(Claim::one(
                "service",
                under,
                "reports no rewrap in progress and none waiting on set immediate",
            ))),
            None => Err(currents_differ(
                live,
                "the service reports no rewrap waiting on set immediate, yet the current registers differ: no rotation explains it",
            )),
        },
        RewrapStatus::Rewrapped => {
            let (under, why) = rewrapped_candidates(live);
            if under.is_empty() {
                return Err(no_rewrapped_key(live, journal));
            }
            Ok(Some(Claim {
                witness: "service",
                under,
                why: format!("reports \"{}\"; {why}", RewrapStatus::Rewrapped.describe()),
            }))
        }
    }
}

/// The service waits on set immediate, yet no register holds a key it can have rewrapped to:
/// every key the registers hold is in every current register already (a service forgets its
/// rewrap once every unit is promoted to its key). The key it rewrapped to was cleared from
/// the new registers after the rewrap: the key storage is under a key no register holds. A
/// rewrap now would be a second one; only its key, loaded again from its key parts, saves it.
fn no_rewrapped_key(live: &LiveInstance, journal: &JournalEvidence) -> Refusal {
    let held: BTreeSet<VerificationPattern> = live
        .crypto_units
        .iter()
        .filter_map(|u| u.current_register.verification_pattern().cloned())
        .collect();
    let journal_word = journal
        .rotation(&live.id)
        .filter(|r| matches!(r.rewrap, JournalRewrap::Completed { .. }));
    let (said, key) = match journal_word {
        Some(r) => (
            format!(
                "; {} says the rewrap from {}… to {}… completed, and no register holds {}…",
                journal.witness_named(),
                r.from.short(),
                r.to.short(),
                r.to.short()
            ),
            format!("{}…", r.to.short()),
        ),
        None => (String::new(), "the key it rewrapped to".to_string()),
    };
    Refusal::new(
        &live.id,
        Check::EvidenceConsistent,
        format!(
            "the evidence about the key storage's master key contradicts itself: the service reports \"{}\", but no register holds a key it can have rewrapped to ({}){said}. A service waiting on set immediate waits on a unit not yet promoted to the key it rewrapped to, so it cannot be a key every current register already holds: the new registers were cleared after the rewrap, and the key storage is under a key no register holds",
            RewrapStatus::Rewrapped.describe(),
            if held.is_empty() {
                "no register holds any key".to_string()
            } else {
                format!("every current register holds {}", keys(&held))
            }
        ),
    )
    .units(registers(live))
    .fix(format!(
        "do not rewrap, set immediate or clear any new register: a second rewrap makes the key storage unusable. Load {key} again from its key parts into every crypto unit's new register and commit it (TKE CLI), then plan again. If you do not know which key it rewrapped to, ask IBM support which master key the key storage is under"
    ))
}

/// The journal's rotation speaks of the registers as they are: every new register holds its
/// new key or nothing, and every current register its old key or its new one. A new register
/// holding the old key means a rotation back (a later one), any other key something the
/// journal did not see.
pub fn registers_fit(rotation: &JournalRotation, live: &LiveInstance) -> bool {
    live.crypto_units.iter().all(|u| {
        u.new_register
            .verification_pattern()
            .is_none_or(|vp| *vp == rotation.to)
            && u.current_register
                .verification_pattern()
                .is_some_and(|vp| *vp == rotation.from || *vp == rotation.to)
    })
}

pub fn common_current(live: &LiveInstance) -> Option<VerificationPattern> {
    let mut vps = live.crypto_units.iter().map(|u| match &u.current_register {
        CurrentRegister::Valid(vp) => Some(vp),
        CurrentRegister::Empty => None,
    });
    let first = vps.next()??;
    vps.all(|vp| vp == Some(first)).then(|| first.clone())
}

pub(crate) fn currents_differ(live: &LiveInstance, detail: &str) -> Refusal {
    Refusal::new(&live.id, Check::CurrentRegistersEqual, detail)
        .units(
            live.crypto_units
                .iter()
                .map(|u| UnitValue::new(u, format!("current register {:#}", u.current_register)))
                .collect(),
        )
        .fix("find out how the current registers came to differ (a set immediate on some units only? a zeroized unit?) before acting; mkplan will not guess")
}

fn registers(live: &LiveInstance) -> Vec<UnitValue> {
    live.crypto_units
        .iter()
        .map(|u| {
            UnitValue::new(
                u,
                format!("new {:#}, current {:#}", u.new_register, u.current_register),
            )
        })
        .collect()
}

fn silent(
    live: &LiveInstance,
    target: &VerificationPattern,
    silence: Option<JournalSilence>,
) -> Refusal {
    let (journal, fix) = match silence {
        Some(s) => (s.detail, s.fix),
        None => (
            "the journal is silent".into(),
            "settle it with the service's rotation status or `mkplan attest rewrap`".into(),
        ),
    };
    Refusal::new(
        &live.id,
        Check::RewrapEvidence,
        format!(
            "cannot tell whether the rewrap of the key storage ran (target {}…):\n- service: {}\n- journal: {journal}\n- registers: they alone cannot prove it",
            target.short(),
            match live.rewrap_status {
                RewrapStatus::NotReported => "does not report its rotation status",
                RewrapStatus::NotRewrapped => "reports no rewrap, which speaks of this moment only: a rewrap request left unanswered may still be on its way or queued at the service",
                _ => "does not settle it",
            }
        ),
    )
    .units(registers(live))
    .fix(fix)
}

#[path = "evidence_folders.rs"]
mod folders;

#[path = "evidence_journal.rs"]
mod journal_word;
use journal_word::journal_claim;

#[path = "evidence_fix.rs"]
mod fix;

#[path = "evidence_foreign.rs"]
mod foreign;
use foreign::foreign_rewrap;

#[path = "evidence_registers.rs"]
mod registers_alone;
pub use registers_alone::rewrap_ruled_out;
use registers_alone::{live_claim, rewrapped_candidates, ruled_out_by_registers};

#[cfg(test)]
#[path = "evidence_tests.rs"]
mod tests;
