//! What a domain group's journal tells the planner (`GroupEvidence`): the cards' serial
//! numbers recorded when the open change began, and the LUKS2 volumes this change staged.
//!
//! `zkey-cryptsetup validate` shows that a volume's staged re-encipherment is pending, not
//! which master key its unbound keyslot is under. mkplan writes a stage step's intent (the
//! exact command) before it runs it, only while the volume has nothing staged and every
//! APQN's NEW holds the change's key; so a pending staging after such an intent in the open
//! change is under that change's key. Nothing else counts: another state folder's journal,
//! a closed change, or a command for another device leaves the volume unseen. A staging of an
//! earlier run is staged again before the set (see `settle_unseen_staging`): between runs,
//! anyone may have staged the volume again under another key.

use std::collections::BTreeMap;

use super::group_journal::{GroupJournal, GroupRecord};
use crate::backend::zcrypt::group::{LUKS2_STAGE_FLAGS, luks2_args};
use crate::model::domain_group::{StoreId, StoreKind};
use crate::model::domain_group_desired::{DesiredGroup, DesiredStore};
use crate::model::registers::{MkType, Mkvp};
use crate::plan::domain_group::GroupEvidence;

/// The journal's evidence for planning `desired`.
pub fn group_evidence(journal: &GroupJournal, desired: &DesiredGroup) -> GroupEvidence {
    let staged = staged_in_change(journal.records(), desired);
    GroupEvidence {
        recorded_serials: journal.open_change_serials(),
        recorded_apqns: journal.open_change_apqns(),
        recorded_targets: journal.open_change_targets(),
        staged_earlier: staged
            .iter()
            .filter(|(_, (at, _))| *at < journal.earlier_records())
            .map(|(id, _)| id.clone())
            .collect(),
        staged_in_change: staged
            .into_iter()
            .map(|(id, (_, targets))| (id, targets))
            .collect(),
    }
}

/// Each volume the open change staged: the index of its last stage intent, and the targets.
fn staged_in_change(
    records: &[GroupRecord],
    desired: &DesiredGroup,
) -> BTreeMap<StoreId, (usize, BTreeMap<MkType, Mkvp>)> {
    let mut found = BTreeMap::new();
    let Some(begin) = records
        .iter()
        .rposition(|r| matches!(r, GroupRecord::Begin { .. } | GroupRecord::Done { .. }))
    else {
        return found;
    };
    let GroupRecord::Begin { targets, .. } = &records[begin] else {
        return found;
    };
    let targets = super::group_journal::begin_targets(targets);
    for (at, record) in records.iter().enumerate().skip(begin + 1) {
        let GroupRecord::Intent { action, what, .. } = record else {
            continue;
        };
        if action != "stage_reencipher" {
            continue;
        }
        for store in &desired.stores {
            let DesiredStore::Luks2Volume { device, key_file } = store else {
                continue;
            };
            // The command up to its key file: which file opened the keyslot does not change
            // the key the staging is under.
            let mut args = luks2_args("reencipher", device, key_file, LUKS2_STAGE_FLAGS);
            args.pop();
            let shown = std::iter::once("zkey-cryptsetup".to_string())
                .chain(args)
                .collect::<Vec<_>>()
                .join(" ");
            if what.starts_with(&format!("{shown} ")) {
                let id = StoreId {
                    kind: StoreKind::Luks2Volume,
                    name: device.clone(),
                };
                found.insert(id, (at, targets.clone()));
            }
        }
    }
    found
}
