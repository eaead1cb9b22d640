//! Which MK is the key storage encrypted under? The whole safety of a rotation hangs on this
//! answer, and the service does not reveal it directly. Three witnesses may speak: the
//! service's rotation status, mkplan's journal, and the live registers themselves. Each gives
//! an answer or stays silent; if they disagree, or all stay silent, the planner refuses and
//! says what evidence would settle it. It never guesses.

use std::collections::BTreeSet;

use serde::Serialize;

use super::refusal::{Check, Refusal, UnitValue};
use crate::model::{
    CurrentRegister, JournalRewrap, JournalRotation, LiveInstance, RewrapStatus,
    VerificationPattern,
};

/// The planner's finding about the key storage, with the evidence that supports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StorageFinding {
    /// The MK the key storage is encrypted under.
    pub key_storage_under: VerificationPattern,
    pub evidence: Vec<String>,
}

struct Claim {
    witness: &'static str,
    under: VerificationPattern,
    why: String,
}

pub(crate) fn find_key_storage_mk(
    live: &LiveInstance,
    target: &VerificationPattern,
    journal: Option<&JournalRotation>,
) -> Result<StorageFinding, Refusal> {
    let mut claims = Vec::new();
    if let Some(claim) = status_claim(live)? {
        claims.push(claim);
    }
    let unsettled = journal.is_some_and(|j| matches!(j.rewrap, JournalRewrap::Unsettled { .. }));
    if let Some(claim) = journal
        .filter(|j| journal_applies(j, live))
        .and_then(journal_claim)
    {
        claims.push(claim);
    }
    if let Some(claim) = live_claim(live) {
        claims.push(claim);
    }
    let answers: BTreeSet<&VerificationPattern> = claims.iter().map(|c| &c.under).collect();
    match answers.len() {
        1 => Ok(StorageFinding {
            key_storage_under: claims[0].under.clone(),
            evidence: claims
                .iter()
                .map(|c| format!("{}: {}", c.witness, c.why))
                .collect(),
        }),
        0 => Err(silent(live, target, unsettled)),
        _ => Err(Refusal::new(
            &live.id,
            Check::EvidenceConsistent,
            format!(
                "the evidence about the key storage's master key contradicts itself:\n{}",
                claims
                    .iter()
                    .map(|c| format!("- {} says it is under {}…: {}", c.witness, c.under.short(), c.why))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        )
        .fix("find out which witness is wrong before acting (a journal from another rotation? a register changed by hand?); do not rerun the rotation or clear any new register until it is settled")),
    }
}

/// The service's word. `NotRewrapped` means the storage is under the MK all current registers
/// hold; `Rewrapped` means it is under the MK staged in the committed new registers.
fn status_claim(live: &LiveInstance) -> Result<Option<Claim>, Refusal> {
    match live.rewrap_status {
        RewrapStatus::NotReported => Ok(None),
        RewrapStatus::InProgress => Err(Refusal::new(
            &live.id,
            Check::RewrapEvidence,
            "the service reports a rewrap of the key storage in progress: it completes on the service whatever happens to the client that sent it",
        )
        .fix("wait until the service reports the rewrap done (about 60 s per 3,000 keys), then plan again; do not send another rewrap, set immediate or clear any new register meanwhile")),
        RewrapStatus::NotRewrapped => match common_current(live) {
            Some(under) => Ok(Some(Claim {
                witness: "service",
                under,
                why: "reports no rewrap waiting on set immediate".into(),
            })),
            None => Err(currents_differ(
                live,
                "the service reports no rewrap waiting on set immediate, yet the current registers differ: no rotation explains it",
            )),
        },
        RewrapStatus::Rewrapped => {
            let candidates = rewrapped_candidates(live);
            match candidates.as_slice() {
                [only] => Ok(Some(Claim {
                    witness: "service",
                    under: (*only).clone(),
                    why: format!("reports \"{}\"", RewrapStatus::Rewrapped.describe()),
                })),
                candidates => Err(Refusal::new(
                    &live.id,
                    Check::EvidenceConsistent,
                    format!(
                        "the service reports \"{}\", but the registers fit {} master keys as the one the key storage was rewrapped to, so it is unknown",
                        RewrapStatus::Rewrapped.describe(),
                        candidates.len()
                    ),
                )
                .units(new_registers(live))
                .fix("do not clear any new register: ask IBM support which master key the key storage is under")),
            }
        }
    }
}

/// The keys the service can have rewrapped to, given that it waits on set immediate: a key
/// staged (committed) in some new register, such that every unit not yet promoted to it
/// still holds one and the same old key in its current register (a rewrap needs equal
/// current registers, and only set immediate changes them).
fn rewrapped_candidates(live: &LiveInstance) -> Vec<&VerificationPattern> {
    let staged: BTreeSet<&VerificationPattern> = live
        .crypto_units
        .iter()
        .filter_map(|u| u.new_register.committed())
        .collect();
    staged
        .into_iter()
        .filter(|candidate| {
            let old: BTreeSet<Option<&VerificationPattern>> = live
                .crypto_units
                .iter()
                .filter(|u| !u.current_register.holds(candidate))
                .map(|u| u.current_register.verification_pattern())
                .collect();
            old.len() == 1 && !old.contains(&None)
        })
        .collect()
}

/// The journal speaks only of its own rotation: it applies while every register holds that
/// rotation's old key, its new key, or nothing. A register holding any other key means
/// something happened that the journal did not see, so its word no longer counts.
fn journal_applies(rotation: &JournalRotation, live: &LiveInstance) -> bool {
    let from = match &rotation.rewrap {
        JournalRewrap::NotStarted { from }
        | JournalRewrap::Unsettled { from }
        | JournalRewrap::Completed { from } => from,
    };
    let known =
        |vp: Option<&VerificationPattern>| vp.is_none_or(|vp| vp == from || *vp == rotation.to);
    live.crypto_units.iter().all(|u| {
        known(u.new_register.verification_pattern())
            && u.current_register.verification_pattern().is_some()
            && known(u.current_register.verification_pattern())
    })
}

fn journal_claim(rotation: &JournalRotation) -> Option<Claim> {
    match &rotation.rewrap {
        JournalRewrap::NotStarted { from } => Some(Claim {
            witness: "journal",
            under: from.clone(),
            why: format!(
                "mkplan started this rotation to {}… and never sent a rewrap",
                rotation.to.short()
            ),
        }),
        JournalRewrap::Completed { .. } => Some(Claim {
            witness: "journal",
            under: rotation.to.clone(),
            why: "mkplan recorded the rewrap as completed".into(),
        }),
        JournalRewrap::Unsettled { .. } => None,
    }
}

/// What the registers alone prove. A rewrap needs every new register Full Committed with one
/// key, and after it that key stays in the new registers until set immediate. So when every
/// current register holds `A` and no new register holds any other key, no rewrap can have
/// moved the storage anywhere but `A`. In any other state the registers alone prove nothing.
fn live_claim(live: &LiveInstance) -> Option<Claim> {
    let current = common_current(live)?;
    let other_staged = live.crypto_units.iter().any(|u| {
        u.new_register
            .verification_pattern()
            .is_some_and(|vp| *vp != current)
    });
    (!other_staged).then(|| Claim {
        witness: "live state",
        under: current,
        why: "every current register holds it and no new register holds another key, so no rewrap can have moved the key storage".into(),
    })
}

pub(crate) fn common_current(live: &LiveInstance) -> Option<VerificationPattern> {
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

fn new_registers(live: &LiveInstance) -> Vec<UnitValue> {
    live.crypto_units
        .iter()
        .map(|u| UnitValue::new(u, format!("new register {:#}", u.new_register)))
        .collect()
}

fn silent(live: &LiveInstance, target: &VerificationPattern, unsettled: bool) -> Refusal {
    let journal = if unsettled {
        "the journal shows a rewrap that was sent but whose outcome was never recorded (a crash or a lost response)"
    } else {
        "the journal in the state directory has no record of this rotation"
    };
    Refusal::new(
        &live.id,
        Check::RewrapEvidence,
        format!(
            "cannot tell whether the rewrap of the key storage ran (target {}…): the service does not report its rotation status, {journal}, and the registers alone cannot prove it",
            target.short()
        ),
    )
    .units(
        live.crypto_units
            .iter()
            .map(|u| UnitValue::new(u, format!("new {:#}, current {:#}", u.new_register, u.current_register)))
            .collect(),
    )
    .fix("settle it with one of: the journal of the mkplan run that started this rotation (rerun with its --state-dir); the service's rotation status (`KMS CRK rewrap successful, waiting on cryptounit-mk-setimm` means the rewrap ran); what the operator saw, journaled with `mkplan attest rewrap INSTANCE --completed` or `--not-run` when the journal holds that rewrap; or IBM support confirming which master key the key storage is under. Until then do not rerun the rotation, rewrap, set immediate, or clear any new register")
}
