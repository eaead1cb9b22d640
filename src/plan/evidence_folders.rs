//! The other state folders of this machine as witnesses. A folder this journal never heard
//! may hold a rewrap mkplan sent from there: never answered (it may still be queued at the
//! service and land once a key is staged again) or seen to complete. The live registers
//! cannot show either, so while one is on record there, or a folder cannot be read, the
//! registers' own claim ("nothing staged but the current key, so no rewrap moved the key
//! storage") and a status of "no rewrap" are no evidence here.

use super::common_current;
use super::fix::desired_file;
use super::{Claim, JournalSilence};
use crate::model::{
    FolderRewrap, JournalEvidence, JournalRewrap, LiveInstance, VerificationPattern,
};

/// A rewrap another folder sent and never saw answered may still be queued at the service:
/// it lands whenever every new register holds a committed key, whichever key that is, so no
/// rotation of this instance may load, commit or rewrap until it is settled. A folder that
/// cannot be read may hold one. Settled here only when this journal's rotation of the
/// instance holds evidence about its rewrap (it completed, or did not run: an attestation
/// checked against the other folders, `apply::attest`), or when the key it would move the key
/// storage to is already every unit's current key (it was promoted, as a rotation's own
/// unanswered rewrap is settled by its registers: `apply::resume::rewrap_done`).
pub(super) fn pending(live: &LiveInstance, journal: &JournalEvidence) -> Option<JournalSilence> {
    if journal.rotation(&live.id).is_some_and(|r| {
        r.attested_not_run.is_some()
            || matches!(
                r.rewrap,
                JournalRewrap::Completed { .. } | JournalRewrap::NotRun { .. }
            )
    }) {
        return None;
    }
    let current = common_current(live);
    let rewraps: Vec<&FolderRewrap> = journal
        .other_folders
        .rewraps_of(&live.id)
        .iter()
        .filter(|r| !r.rewrap.completed)
        .filter(|r| r.rewrap.to.is_none() || r.rewrap.to != current)
        .collect();
    words(live, journal, &rewraps)
}

/// Why the other folders leave the registers' claim `claim` no weight, with what settles it;
/// `None` when they say nothing against it.
pub(super) fn objection(
    live: &LiveInstance,
    journal: &JournalEvidence,
    claim: &Claim,
) -> Option<JournalSilence> {
    let rewraps: Vec<&FolderRewrap> = journal
        .other_folders
        .rewraps_of(&live.id)
        .iter()
        .filter(|r| against(live, journal, claim, r))
        .collect();
    words(live, journal, &rewraps)
}

/// What the other folders say (`rewraps`, and every folder that cannot be read) and what
/// settles it; `None` when they say nothing.
fn words(
    live: &LiveInstance,
    journal: &JournalEvidence,
    rewraps: &[&FolderRewrap],
) -> Option<JournalSilence> {
    let unread = journal.other_folders.unread_for(&live.id);
    if rewraps.is_empty() && unread.is_empty() {
        return None;
    }
    let said: Vec<String> = rewraps
        .iter()
        .map(|r| format!("  - {}", r.describe()))
        .chain(unread.iter().map(|u| format!("  - {}", u.describe())))
        .collect();
    let mut fix = Vec::new();
    if let Some(first) = rewraps.first() {
        fix.push(format!(
            "settle that rewrap where it was recorded: `mkplan plan {file} --state {dir}` says what settles it there (the service's rotation status, or an attestation made there with what the service showed), or push that folder into this store once no run holds it (`mkplan state push --from {dir}`)",
            file = desired_file(journal),
            dir = crate::quote::name(&first.state_dir),
        ));
    }
    if let Some(first) = unread.first() {
        fix.push(format!(
            "make {dir} readable again (its owner: `chmod go-w {dir}`; a folder moved: put it back, or settle it from its new place with --state); if it was removed for good and no rewrap it sent can still land, remove its head {head}, which is your word that it holds none",
            dir = crate::quote::name(&first.state_dir),
            head = crate::quote::name(&first.head),
        ));
    }
    fix.push(format!(
        "or, once the service shows that no rewrap is pending (its rotation status, IBM support), journal what it showed here with `mkplan attest rewrap {id} --not-run --service-evidence \"…\" --desired {file}`. Until then do not load, commit, rewrap or set immediate on this instance",
        id = live.id,
        file = desired_file(journal),
    ));
    Some(JournalSilence {
        detail: format!(
            "another state folder this user's mkplan wrote on this machine may hold a rewrap of this instance that {} never saw, and a second rewrap after one completed makes the key storage unusable:\n{}",
            journal.witness_named(),
            said.join("\n")
        ),
        fix: fix.join("; "),
    })
}

/// The rewrap `r` another folder sent may have moved the key storage away from what `claim`
/// says: never answered (it may still land, whatever key is staged then) unless its key is
/// among the claim's; or seen to complete while the registers still fit its rotation, and
/// sent after this journal's latest rotation of the instance began (the plan that began it
/// weighed it then, and that rotation's own records speak of the time since; a tie counts).
fn against(
    live: &LiveInstance,
    journal: &JournalEvidence,
    claim: &Claim,
    r: &FolderRewrap,
) -> bool {
    let to = r.rewrap.to.as_ref();
    if to.is_some_and(|to| claim.under.contains(to)) {
        return false;
    }
    if !r.rewrap.completed {
        return true;
    }
    let began = journal.began.get(&live.id.to_ascii_lowercase());
    let before = matches!((&r.rewrap.sent_at, began), (Some(sent), Some(began)) if sent < began);
    !before && fits(live, r.rewrap.from.as_ref(), to)
}

/// Every unit's new register is empty or holds `to`, and its current one holds `from` or
/// `to` (a key a record does not name fits anything).
fn fits(
    live: &LiveInstance,
    from: Option<&VerificationPattern>,
    to: Option<&VerificationPattern>,
) -> bool {
    let is =
        |vp: &VerificationPattern, key: Option<&VerificationPattern>| key.is_none_or(|k| k == vp);
    live.crypto_units.iter().all(|u| {
        u.new_register
            .verification_pattern()
            .is_none_or(|vp| is(vp, to))
            && u.current_register
                .verification_pattern()
                .is_some_and(|vp| is(vp, from) || is(vp, to))
    })
}
