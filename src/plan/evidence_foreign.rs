//! A rewrap mkplan did not send, seen after this rotation's own rewrap completed: the one
//! contradiction no register can settle, refused until IBM support's word is journaled.

use super::registers;
use crate::model::{JournalEvidence, JournalRewrap, JournalRotation, LiveInstance};
use crate::plan::refusal::{Check, Refusal};

/// A rewrap mkplan did not send ran after this rotation's own completed (`seen`: what showed
/// it): a second rewrap makes the key storage unusable, and nothing at this end can tell
/// whether it did. Refused until IBM support's word is attested.
pub(super) fn foreign_rewrap(
    live: &LiveInstance,
    journal: &JournalEvidence,
    rotation: &JournalRotation,
    seen: &str,
) -> Refusal {
    let how = match &rotation.rewrap {
        JournalRewrap::Completed { how } => format!(" ({how})"),
        _ => String::new(),
    };
    Refusal::new(
        &live.id,
        Check::EvidenceConsistent,
        format!(
            "{} saw this rotation's rewrap from {}… to {}… complete{how}, yet a rewrap mkplan did not send ran after it: {seen}. A second rewrap after one completed makes the key storage unusable, and no register shows whether it did",
            journal.witness_named(),
            rotation.from.short(),
            rotation.to.short()
        ),
    )
    .units(registers(live))
    .fix(format!(
        "find out who sent it (the TKE CLI, another operator or state folder). Do not set immediate, rewrap or clear any new register: only IBM support can say whether the key storage is still usable, and under which key. If it confirms it is usable under {}…, journal its word with `mkplan attest rewrap {} --completed --service-evidence \"…\" --desired {}`, then plan again",
        rotation.to.short(),
        live.id,
        super::fix::desired_file(journal)
    ))
}
