//! The other state folders of this machine as witnesses. A folder this journal never heard
//! may hold a rewrap mkplan sent from there: never answered (it may still be queued at the
//! service, and it lands whenever every new register holds a committed key, whichever key that
//! is) or seen to complete (while the registers still fit it, someone may have cleared the new
//! registers after it). This journal's records cannot speak for it, and the registers cannot
//! show it: while one is on record there, or a folder that may hold one cannot be read, no
//! plan of the instance is made here. A team database this user's mkplan wrote from this
//! machine is asked by a folder's command the same way (`other_stores`).

use super::Refusal;
use super::common_current;
use super::fix::desired_file;
use super::{JournalSilence, silent};
use crate::model::{
    Began, FolderRewrap, JournalEvidence, JournalRewrap, LiveInstance, VerificationPattern,
};
use crate::plan::other_stores;

/// How many folders a refusal names one by one.
const SHOWN_MAX: usize = 5;

/// What the other folders say against any plan of `live`, with what settles it; `None` when
/// they say nothing.
pub(super) fn pending(live: &LiveInstance, journal: &JournalEvidence) -> Option<JournalSilence> {
    let rewraps: Vec<&FolderRewrap> = journal
        .other_folders
        .rewraps_of(&live.id)
        .iter()
        .filter(|r| counts(live, journal, r))
        .collect();
    let unread = journal.other_folders.unread_for(&live.id);
    if rewraps.is_empty() && unread.is_empty() {
        return None;
    }
    let lines: Vec<String> = rewraps
        .iter()
        .map(|r| other_stores::rewrap_described(r))
        .chain(unread.iter().map(|u| other_stores::unread_described(u)))
        .collect();
    let mut said: Vec<String> = lines
        .iter()
        .take(SHOWN_MAX)
        .map(|line| format!("  - {line}"))
        .collect();
    if lines.len() > SHOWN_MAX {
        said.push(format!(
            "  - and {} more, each settled the same way",
            lines.len() - SHOWN_MAX
        ));
    }
    let mut fix = Vec::new();
    if let Some(first) = rewraps.first() {
        fix.push(match &first.scope {
            None if other_stores::is_database(&first.state_dir) => format!(
                "settle that rewrap where it was recorded: `mkplan plan {file} --state {db}` through the backend of those records ({backend}: the same `--backend`, and for `tke:` the same `--tke-endpoint`) says what settles it there (the service's rotation status, or an attestation made there with what the service showed)",
                file = desired_file(journal),
                db = first.state_dir,
                backend = first.backend,
            ),
            Some(scope) if other_stores::is_legacy_tke(scope) => format!(
                "those records were made by an mkplan older than this one, bound to {scope}: an endpoint alone, which does not say whose crypto modules answered (a `mkplan sim serve --protocol tke` rehearsal at that URL, or the service), so they neither count for this service nor can be settled through it. Ask whoever ran mkplan at that URL what it was; then, once the service shows what became of that rewrap (its rotation status, IBM support), journal what it showed here with `mkplan attest rewrap {id} --completed` or `--not-run`, with `--service-evidence \"…\" --desired {file}`",
                id = live.id,
                file = desired_file(journal),
            ),
            Some(scope) => format!(
                "settle that rewrap where it was recorded: `mkplan plan {file}` through the backend of {scope} (the same `--backend`, and for `tke:` the same `--tke-endpoint`), against this same database, says what settles it there (the service's rotation status, or an attestation made there with what the service showed)",
                file = desired_file(journal),
            ),
            None => format!(
                "settle that rewrap where it was recorded: `mkplan plan {file} --state {dir}` says what settles it there (the service's rotation status, or an attestation made there with what the service showed), or push that folder into this store once no run holds it (`mkplan state push --from {dir}`)",
                file = desired_file(journal),
                dir = crate::quote::name(&first.state_dir),
            ),
        });
    }
    if let Some(first) = unread.first() {
        fix.push(other_stores::unread_remedy(first));
    }
    fix.push(format!(
        "or, once the service shows that no rewrap is pending (its rotation status, IBM support), journal what it showed here with `mkplan attest rewrap {id} --not-run --service-evidence \"…\" --desired {file}`. Until then do not load, commit, rewrap or set immediate on this instance",
        id = live.id,
        file = desired_file(journal),
    ));
    Some(JournalSilence {
        detail: format!(
            "another state folder this user's mkplan wrote on this machine, another backend identity of this instance in the same database, or a team database this user's mkplan wrote from this machine, may hold a rewrap of this instance that {} never saw, and a second rewrap after one completed makes the key storage unusable:\n{}",
            journal.witness_named(),
            said.join("\n")
        ),
        fix: fix.join("; "),
    })
}

/// The other state folders leave nothing to settle the rewrap (`folders`): the refusal names
/// them, with what this journal says (`silence`), and says what settles it.
pub(super) fn refused(
    live: &LiveInstance,
    target: &VerificationPattern,
    silence: Option<JournalSilence>,
    folders: JournalSilence,
) -> Refusal {
    let (journal, fix) = match silence {
        Some(s) if !s.fix.is_empty() => (
            s.detail,
            format!(
                "first the other state folders: {}. Then this journal: {}",
                folders.fix, s.fix
            ),
        ),
        Some(s) => (s.detail, folders.fix),
        None => ("it does not settle it".to_string(), folders.fix),
    };
    silent(
        live,
        target,
        Some(JournalSilence {
            detail: format!("{journal}\n- other state folders: {}", folders.detail),
            fix,
        }),
    )
}

/// The rewrap `r` another folder recorded may still move the key storage, or may have moved
/// it where this journal cannot see:
/// - never once the key it goes to is every unit's current key (promoted: it landed, or no
///   longer matters, as a rotation's own unanswered rewrap is settled by its registers), nor
///   once this journal saw its own rotation's rewrap complete (what is left is set immediate,
///   which leaves a late rewrap nothing committed to land on);
/// - never when this journal's rotation holds an attestation that weighed it (`attest` found
///   it in the other folders and asked about it, or the service's evidence spoke for all it
///   found); one made before it was on record speaks for nothing it did not see, whatever
///   the time stamps say;
/// - else, never answered: always;
/// - seen to complete: while the registers still fit it, unless the plan that began this
///   journal's latest rotation of the instance weighed it (found it on record and not able to
///   land then; its record names it). Which came first is what that plan saw, never the
///   clocks'. A record an older mkplan made names none: a rewrap sent before it began, or in
///   the same second, as its time stamps say. One sent while that rotation ran is caught
///   before this journal's own rewrap (`apply::other_folders`), and its commits leave this
///   journal unable to vouch alone, so `attest` asks the other folders again.
fn counts(live: &LiveInstance, journal: &JournalEvidence, r: &FolderRewrap) -> bool {
    let to = r.rewrap.to.as_ref();
    if to.is_some() && to == common_current(live).as_ref() {
        return false;
    }
    let rotation = journal.rotation(&live.id);
    if rotation.is_some_and(|r| matches!(r.rewrap, JournalRewrap::Completed { .. })) {
        return false;
    }
    let attested = rotation.and_then(|r| {
        r.attested_not_run
            .as_ref()
            .or(r.attested_completed.as_ref())
    });
    // Which came first is what the attestation saw, never the clocks': one stepped back, or
    // another machine's running behind, makes a rewrap sent after it look older.
    if attested
        .and_then(|a| a.weighed.as_ref())
        .is_some_and(|weighed| weighed.contains(&r.witnessed()))
    {
        return false;
    }
    if !r.rewrap.completed {
        return true;
    }
    let before = match journal.began.get(&live.id.to_ascii_lowercase()) {
        Some(Began {
            weighed: Some(weighed),
            ..
        }) => weighed.contains(&r.witnessed()),
        // A record an older mkplan made: as far as the clocks tell.
        Some(Began {
            at: Some(began),
            weighed: None,
        }) => r
            .rewrap
            .intent_at
            .as_ref()
            .or(r.rewrap.sent_at.as_ref())
            .is_some_and(|sent| sent <= began),
        _ => false,
    };
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
