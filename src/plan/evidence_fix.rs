//! What evidence would settle where the key storage is: the fix lines of the evidence
//! refusals, each naming the attestation or the witness that would.

use crate::model::{JournalEvidence, LiveInstance, RewrapStatus, VerificationPattern};

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
        "ask everyone who can act on this instance (other operators and state folders, TKE CLI and TKE application users) whether anyone did since the interruption. If nobody did, confirm the journal with `mkplan attest rewrap {id} --completed --desired {file}`. If someone did, this journal did not see their rotation: plan with their state folder (--state-dir), or settle it with the service's rotation status or IBM support confirming which master key the key storage is under. Until then do not rerun the rotation, rewrap, set immediate, or clear any new register (target {t}…)",
        id = live.id,
        file = desired_file(journal),
        t = to.short()
    )
}

/// Records the journal can no longer verify say mkplan sent this rotation's rewrap: "nobody
/// sent it" on the operator's word alone is not enough (`attest` refuses it).
pub(super) fn sent_fix(
    live: &LiveInstance,
    target: &VerificationPattern,
    journal: &JournalEvidence,
) -> String {
    format!(
        "settle it with evidence about that rewrap: the service's rotation status, or what IBM support or the TKE CLI showed. If the service reported \"{ok}\", journal it with `mkplan attest rewrap {id} --completed --desired {file}`; if it showed that the rewrap did not run, `--not-run --service-evidence \"…\"` with what it showed (plain `--not-run` is refused: the request left mkplan, so nobody at this end can see that it did not run). Never send another rewrap, set immediate, or clear a new register until then (target {t}…)",
        id = live.id,
        file = desired_file(journal),
        ok = RewrapStatus::Rewrapped.describe(),
        t = target.short()
    )
}
