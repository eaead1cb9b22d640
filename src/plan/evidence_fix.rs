//! What evidence would settle where the key storage is: the fix lines of the evidence
//! refusals, each naming the attestation or the witness that would.

use super::JournalSilence;
use crate::model::{
    JournalEvidence, JournalRotation, LiveInstance, RewrapStatus, VerificationPattern,
};

pub(super) fn desired_file(journal: &JournalEvidence) -> &str {
    if journal.desired_file.is_empty() {
        "DESIRED.yaml"
    } else {
        &journal.desired_file
    }
}

/// The evidence that settles whether the rewrap ran.
pub(super) fn attest_fix(
    live: &LiveInstance,
    target: &VerificationPattern,
    journal: &JournalEvidence,
    interrupted: bool,
) -> String {
    let ask = if interrupted {
        "ask everyone who can act on this instance (other operators and state folders, TKE CLI and TKE application users) and check the TKE CLI output since the interruption"
    } else {
        "use the journal of the mkplan run that started this rotation (rerun with its --state-dir), or find out from the TKE CLI output and from everyone who can act on this instance whether a rewrap ran"
    };
    format!(
        "{ask}; then journal what you found with `mkplan attest rewrap {id} --not-run --desired {file}` (nobody rewrapped since) or `--completed` (the service reported \"{ok}\"). The service's rotation status, where it reports one, settles it too, and so does IBM support confirming which master key the key storage is under. Until then do not rerun the rotation, rewrap, set immediate, or clear any new register (target {t}…)",
        id = live.id,
        file = desired_file(journal),
        ok = RewrapStatus::Rewrapped.describe(),
        t = target.short()
    )
}

/// The journal saw its own rewrap complete, then its run stopped before any set immediate:
/// only "nobody acted since" (`--completed`) or the other operator's journal settles it. An
/// attestation that the rewrap did not run would contradict the journal (`attest` refuses it).
pub(super) fn confirm_fix(
    live: &LiveInstance,
    to: &VerificationPattern,
    journal: &JournalEvidence,
) -> String {
    format!(
        "ask everyone who can act on this instance (other operators and state folders, TKE CLI and TKE application users) whether anyone did since the interruption. If nobody did, confirm the journal with `mkplan attest rewrap {id} --completed --desired {file}`{against}. If someone did, this journal did not see their rotation: plan with their state folder (--state-dir), or settle it with the service's rotation status or IBM support confirming which master key the key storage is under. Until then do not rerun the rotation, rewrap, set immediate, or clear any new register (target {t}…)",
        id = live.id,
        file = desired_file(journal),
        against = journal.records_made_against(),
        t = to.short()
    )
}

/// The journal saw its own rewrap to `to` complete, and no register holds `to` now: the new
/// registers were cleared after it, or someone rotated back unseen. Only the people who can
/// act on the instance, or the service, can say which; a rewrap is safe in neither case until
/// it is known.
pub(super) fn cleared_fix(
    live: &LiveInstance,
    to: &VerificationPattern,
    journal: &JournalEvidence,
) -> String {
    format!(
        "ask everyone who can act on this instance (other operators and state folders, TKE CLI and TKE application users) what they did since the rewrap. If someone cleared the new registers, load {t}… again from its key parts into every crypto unit's new register and commit it (TKE CLI), confirm the journal with `mkplan attest rewrap {id} --completed --desired {file}`, and plan again. If someone finished the rotation and rotated back, plan with their state folder (--state-dir), or settle it with the service's rotation status or IBM support confirming which master key the key storage is under. Until then do not rewrap, set immediate, or clear any new register (target {t}…)",
        id = live.id,
        file = desired_file(journal),
        t = to.short()
    )
}

/// Records made against another backend identity say a rewrap of this instance id was sent
/// there: if that was this service, only evidence about that rewrap settles it; if it was a
/// rehearsal, the service's own evidence does.
pub(super) fn elsewhere_fix(
    live: &LiveInstance,
    target: &VerificationPattern,
    journal: &JournalEvidence,
) -> String {
    format!(
        "find out whether that backend was this service reached another way (the fleet file at another path, another endpoint of the service) or a rehearsal. Either way settle it with the service's own evidence: plan again once the service's rotation status reports the rewrap in progress or done, or journal what the TKE CLI, the service or IBM support showed with `mkplan attest rewrap {id} --completed --desired {file}`, or with `--not-run --service-evidence \"…\"` (the operator's word alone is not enough: the request may have reached this service). Never rewrap again, set immediate, or clear a new register until then (target {t}…)",
        id = live.id,
        file = desired_file(journal),
        t = target.short()
    )
}

/// The journal's rewrap of `rotation` has no outcome: mkplan's own request went unanswered, or
/// (`by_hand`) the ceremony step was shown and the run ended without the operator's word.
/// Only evidence about that very rewrap settles it.
pub(super) fn unanswered(
    live: &LiveInstance,
    rotation: &JournalRotation,
    journal: &JournalEvidence,
    witness: &str,
    sent_at: Option<&str>,
    by_hand: bool,
) -> JournalSilence {
    let (id, file, to) = (&live.id, desired_file(journal), rotation.to.short());
    let run = sent_at
        .map(|t| format!(" in the run of {t}"))
        .unwrap_or_default();
    let ok = RewrapStatus::Rewrapped.describe();
    let never = "Never rewrap again, set immediate, or clear a new register until then";
    let against = journal.records_made_against();
    if by_hand {
        return JournalSilence {
            detail: format!(
                "{witness} shows the rewrap to {to}… as a ceremony step{run}: it was shown to the operator, who runs the TKE CLI command, and the run ended without their word on whether they ran it (they stopped, could not say, or the run was cut off). mkplan sent no rewrap itself"
            ),
            fix: format!(
                "the operator who was shown the step says what happened: `mkplan attest rewrap {id} --not-run --desired {file}` if they did not run the command (ask everyone else who can act on the instance too), or `--completed` if the TKE CLI reported \"{ok}\"{against}. {never}"
            ),
        };
    }
    JournalSilence {
        detail: format!(
            "{witness} shows mkplan's own rewrap to {to}… sent{run} whose outcome was never recorded (a crash, a lost response); it may still be on its way, queued or running at the service, or have completed"
        ),
        fix: sent_fix(live, &rotation.to, journal),
    }
}

/// mkplan sent this rotation's rewrap (its request went unanswered, or records the journal
/// can no longer verify say so): only evidence about that rewrap settles it, and "nobody sent
/// it" on the operator's word alone is not enough (`attest` refuses it).
pub(super) fn sent_fix(
    live: &LiveInstance,
    target: &VerificationPattern,
    journal: &JournalEvidence,
) -> String {
    let status = if live.rewrap_status == RewrapStatus::NotReported {
        String::new()
    } else {
        "plan again once the service's rotation status reports it in progress or done (its \"no rewrap\" does not settle it: the request may still be on its way or queued at the service); or ".into()
    };
    format!(
        "settle it with evidence about that rewrap: {status}journal what the TKE CLI, the service or IBM support showed with `mkplan attest rewrap {id} --completed --desired {file}`, or with `--not-run --service-evidence \"…\"` (the request left mkplan, so nobody at this end can see that it did not run). Never rewrap again, set immediate, or clear a new register until then (target {t}…)",
        id = live.id,
        file = desired_file(journal),
        t = target.short()
    )
}
