//! `attest finalized GROUP.yaml --evidence TEXT`: the operator's word that the openCryptoki
//! operation a domain group's change relied on was finalized outside mkplan. Once every APQN
//! is set, a finalize and a cancel leave the same trace (`plan::domain_group::tokens_closed`);
//! only the syslog, or whoever ran it, can tell them apart. Taken only while the journal holds
//! such an operation and the machine shows it closed; journaled in the open change.

use super::AttestFinalizedArgs;
use super::zcrypt::{hold, open_backend, open_journal, read_error, read_group};
use crate::apply::group_evidence::{TOKENS_ATTESTED, group_evidence};
use crate::apply::group_journal::GroupRecord;
use crate::error::{Error, Result};
use crate::model::domain_group::{StoreKind, StoreState};
use crate::store::Store;

/// The longest statement journaled.
const EVIDENCE_CHARS_MAX: usize = 2000;

pub fn attest_finalized(args: &AttestFinalizedArgs, store: &Store) -> Result<u8> {
    let statement = args.evidence.trim();
    if statement.is_empty() || statement.chars().count() > EVIDENCE_CHARS_MAX {
        return Err(Error::Other(format!(
            "--evidence: say what showed the operation finalized (the syslog lines, or who ran `pkcshsm_mk_change finalize`), in at most {EVIDENCE_CHARS_MAX} characters"
        )));
    }
    let mut desired = read_group(&args.desired)?;
    let backend = open_backend(&mut desired, &args.backend, &args.desired)?;
    let identity = backend.identity(&desired);
    let held = hold(store, &identity, &desired)?;
    let mut journal = open_journal(&held, &identity)?;
    let shown = args.desired.display();
    let Some(relied) = group_evidence(&journal, &desired).tokens_operation else {
        return Err(Error::Other(format!(
            "nothing to attest: the journal of domain group {} shows no openCryptoki operation of an open change that mkplan did not finalize. Nothing was journaled; `mkplan plan {shown}` shows what the machine shows",
            desired.name
        )));
    };
    let live = backend.read(&desired).map_err(read_error)?;
    let tokens = live
        .stores
        .iter()
        .find(|s| s.id.kind == StoreKind::OpenCryptoki);
    if let Some(open) = tokens.and_then(|s| s.handle.as_ref()) {
        return Err(Error::Unsafe(format!(
            "refused: pkcshsm_mk_change operation {open} is still open on the group's APQNs, so it was not finalized. Nothing was journaled; `mkplan apply {shown}` finalizes it once every APQN is set"
        )));
    }
    if let Some(StoreState::Unknown { why, settle }) = tokens.map(|s| &s.state) {
        return Err(Error::Unsafe(format!(
            "refused: whether an operation is still open on the group's APQNs is not shown ({why}). Nothing was journaled. Evidence that would settle it: {settle}"
        )));
    }
    journal
        .append(GroupRecord::Attested {
            identity,
            at: crate::apply::record::utc_now(),
            store: TOKENS_ATTESTED.into(),
            statement: statement.into(),
        })
        .map_err(Error::Unsafe)?;
    eprintln!(
        "Journaled for domain group {}: the openCryptoki operation that `{}` (step {} of the run at {}) relied on was finalized, on your word: {}. `mkplan plan {shown}` now takes the tokens' objects as under the new key.",
        desired.name,
        relied.what,
        relied.step,
        relied.at,
        crate::quote::quote_at_most(statement, EVIDENCE_CHARS_MAX)
    );
    Ok(0)
}
