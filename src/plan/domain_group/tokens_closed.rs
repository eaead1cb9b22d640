//! An openCryptoki operation that closed where mkplan did not see it. With every APQN set,
//! no operation open and the token configs pinning the new key (or none), the tokens look
//! finalized, and two histories leave that trace. A finalize outside mkplan (by hand, or by
//! an mkplan whose journal this is not); or a cancel before any APQN was set (openCryptoki
//! refuses one after: a token expects the key its objects were under, saved at
//! `reencipher`), with the APQNs set after it, so that the objects were never re-enciphered
//! and are under the old key, which no EP11 register holds any more. So when the open change
//! relied on an operation (mkplan staged the tokens with it, or a set began while it held
//! their copies) and the journal shows neither a finalize of mkplan's nor the operator's word,
//! the planner refuses and says what settles it.

use crate::model::domain_group::{GroupMode, LiveGroup, StoreKind, StoreState};
use crate::model::domain_group_desired::DesiredGroup;
use crate::model::registers::MkType;

/// The step of the open change that relied on an openCryptoki operation, as journaled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReliedOperation {
    pub step: String,
    /// When its intent was written.
    pub at: String,
    /// Its intent's words: the command, or the ceremony.
    pub what: String,
}

/// Makes the group's openCryptoki tokens unknown when they show a target key with no
/// operation open, while `evidence` holds an operation the change relied on and never saw
/// closed.
pub fn settle_closed_operation(
    live: &mut LiveGroup,
    desired: &DesiredGroup,
    evidence: &super::GroupEvidence,
) {
    let Some(relied) = &evidence.tokens_operation else {
        return;
    };
    for store in live
        .stores
        .iter_mut()
        .filter(|s| s.id.kind == StoreKind::OpenCryptoki && s.handle.is_none())
    {
        let StoreState::Known(copies) = &store.state else {
            continue;
        };
        let moved: Vec<String> = copies
            .iter()
            .filter(|(t, c)| desired.master_keys.get(t) == Some(&c.active))
            .map(|(t, c)| format!("{t} {}", c.active))
            .collect();
        if moved.is_empty() {
            continue;
        }
        store.state = StoreState::Unknown {
            why: why(desired.mode, relied, &moved),
            settle: settle(desired.mode),
        };
    }
}

fn why(mode: GroupMode, relied: &ReliedOperation, moved: &[String]) -> String {
    let old = match mode {
        GroupMode::Ep11 => "the old WK, which no register holds any more",
        GroupMode::Cca => "the old keys, which only the OLD registers still hold",
    };
    format!(
        "no pkcshsm_mk_change operation is open on the group's APQNs and the tokens look finalized under {}, but this change relied on an operation that mkplan never finalized (`{}`, step {} of the run at {}). It was finalized outside mkplan, or canceled before an APQN was set and the APQNs set after it: then the objects were never re-enciphered and are under {old}",
        moved.join(", "),
        relied.what,
        relied.step,
        relied.at
    )
}

fn settle(mode: GroupMode) -> String {
    let canceled = match mode {
        GroupMode::Ep11 => {
            "the objects are under the old WK: only that WK, loaded again from its key parts with the TKE, makes them usable (a backup of the token is under it too)"
        }
        GroupMode::Cca => {
            "the objects are under the keys now in the OLD registers: move them offline (pkcscca -m keys) before any other change of this group"
        }
    };
    format!(
        "this machine's syslog, where openCryptoki logs `Slot N: Concurrent HSM master key change operation ID is finalized` (or `is canceled`) for each token it affected (`journalctl --grep 'master key change operation'`). If it says finalized for every slot: `mkplan attest finalized GROUP_FILE --evidence \"what the log shows\"`, then plan again. If it says canceled, {canceled}"
    )
}

/// Whether a ceremony intent's words (`ceremony on APQN TYPE`) name a type a token of
/// `mode` uses.
pub fn ceremony_of_token_type(mode: GroupMode, what: &str) -> bool {
    what.rsplit(' ')
        .next()
        .and_then(MkType::parse)
        .is_some_and(|t| crate::model::ock_tokens::token_types(mode).contains(&t))
}
