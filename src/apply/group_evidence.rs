//! What a domain group's journal tells the planner (`GroupEvidence`): the cards' serial
//! numbers, APQNs and master keys recorded when the open change began, and whether the change
//! relied on an openCryptoki operation that it has not closed.
//!
//! Every store's state, a LUKS2 volume's staged key slot included (`backend::zcrypt::luks2`),
//! is read from the machine: the journal never says which key a store is under.

use super::group_journal::{GroupJournal, GroupRecord};
use crate::model::domain_group::GroupMode;
use crate::model::domain_group_desired::{DesiredGroup, DesiredStore};
use crate::plan::domain_group::GroupEvidence;
use crate::plan::domain_group::tokens_closed::{ReliedOperation, ceremony_of_token_type};

/// The journal's evidence for planning `desired`.
pub fn group_evidence(journal: &GroupJournal, desired: &DesiredGroup) -> GroupEvidence {
    GroupEvidence {
        recorded_serials: journal.open_change_serials(),
        recorded_apqns: journal.open_change_apqns(),
        recorded_targets: journal.open_change_targets(),
        tokens_operation: desired
            .stores
            .contains(&DesiredStore::OpenCryptoki)
            .then(|| tokens_operation(journal.records(), desired.mode))
            .flatten(),
    }
}

/// The first step of the open change that relied on an openCryptoki operation (mkplan's
/// `pkcshsm_mk_change reencipher`, or a set ceremony of a type the tokens use: a set is
/// planned only while their copies are staged), unless a finalize of mkplan's or the
/// operator's word (`Attested`) closed it since (a later reliance starts again).
///
/// Any finalize intent of mkplan's closes it, whatever its outcome: mkplan sends one only
/// once every APQN is set with the operation open, and from then on openCryptoki refuses a
/// cancel (a token expects the key its objects were under, saved at `reencipher`), so an
/// operation gone after it was finalized, by that command or another.
fn tokens_operation(records: &[GroupRecord], mode: GroupMode) -> Option<ReliedOperation> {
    let begin = records
        .iter()
        .rposition(|r| matches!(r, GroupRecord::Begin { .. } | GroupRecord::Done { .. }))?;
    if !matches!(records[begin], GroupRecord::Begin { .. }) {
        return None;
    }
    let mut relied = None;
    for record in records.iter().skip(begin + 1) {
        match record {
            GroupRecord::Intent {
                step,
                action,
                what,
                at: when,
                ..
            } => {
                let relies = (action == "stage_reencipher"
                    && what.starts_with("pkcshsm_mk_change reencipher "))
                    || (action == "set_immediate" && ceremony_of_token_type(mode, what));
                if relies {
                    // The first step since the last close names it best: mkplan's reencipher.
                    relied.get_or_insert_with(|| ReliedOperation {
                        step: step.clone(),
                        at: when.clone(),
                        what: what.clone(),
                    });
                } else if action == "complete_reencipher"
                    && what.starts_with("pkcshsm_mk_change finalize ")
                {
                    relied = None;
                }
            }
            GroupRecord::Attested { store, .. } if store == TOKENS_ATTESTED => relied = None,
            _ => {}
        }
    }
    relied
}

/// What an `Attested` record names for the group's openCryptoki tokens.
pub const TOKENS_ATTESTED: &str = "opencryptoki";

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn intent(step: &str, action: &str, what: &str) -> GroupRecord {
        GroupRecord::Intent {
            identity: "zcrypt:/".into(),
            at: "t".into(),
            step: step.into(),
            action: action.into(),
            what: what.into(),
            send_within_ms: None,
        }
    }

    fn outcome(step: &str, result: &str) -> GroupRecord {
        GroupRecord::Outcome {
            identity: "zcrypt:/".into(),
            at: "t".into(),
            step: step.into(),
            result: result.into(),
            detail: String::new(),
        }
    }

    #[test]
    fn an_operation_is_closed_by_a_finalize_of_mkplans_or_the_operators_word() {
        let begin = GroupRecord::Begin {
            identity: "zcrypt:/".into(),
            at: "t".into(),
            targets: BTreeMap::new(),
            serials: BTreeMap::new(),
            apqns: Vec::new(),
        };
        let stage = intent(
            "s4",
            "stage_reencipher",
            "pkcshsm_mk_change reencipher --apqns 03.0006",
        );
        let set = intent("s5", "set_immediate", "ceremony on 03.0006 WK");
        let finalize = intent(
            "s6",
            "complete_reencipher",
            "pkcshsm_mk_change finalize --id 6d591c",
        );
        let open =
            |records: &[GroupRecord]| tokens_operation(records, GroupMode::Ep11).map(|r| r.step);
        let base = vec![
            begin.clone(),
            stage.clone(),
            outcome("s4", "done"),
            set.clone(),
        ];
        assert_eq!(open(&base), Some("s4".into()));
        // A set relies on the operation too (one opened by hand); a CCA ASYM set does not.
        assert_eq!(open(&[begin.clone(), set.clone()]), Some("s5".into()));
        let asym = [
            begin.clone(),
            intent("z1", "set_immediate", "ceremony on 06.0006 ASYM"),
        ];
        assert_eq!(tokens_operation(&asym, GroupMode::Cca), None);
        let cca_aes = [
            begin.clone(),
            intent("z1", "set_immediate", "ceremony on 06.0006 AES"),
        ];
        assert_eq!(
            tokens_operation(&cca_aes, GroupMode::Cca),
            Some(ReliedOperation {
                step: "z1".into(),
                at: "t".into(),
                what: "ceremony on 06.0006 AES".into()
            })
        );
        // A finalize of mkplan's closes it, whatever its outcome (a cancel is refused then).
        for result in [
            None,
            Some("done"),
            Some("failed"),
            Some("settled_by_reading"),
        ] {
            let mut records = base.clone();
            records.push(finalize.clone());
            records.extend(result.map(|r| outcome("s6", r)));
            assert_eq!(open(&records), None, "{result:?}");
        }
        // A zkey complete is no finalize.
        let mut zkey = base.clone();
        zkey.push(intent(
            "s6",
            "complete_reencipher",
            "zkey reencipher --name k --complete",
        ));
        assert_eq!(open(&zkey), Some("s4".into()));
        let mut attested = base.clone();
        attested.push(GroupRecord::Attested {
            identity: "zcrypt:/".into(),
            at: "t".into(),
            store: TOKENS_ATTESTED.into(),
            statement: "syslog: finalized".into(),
        });
        assert_eq!(open(&attested), None);
        // A closed change relies on nothing.
        let mut closed = base.clone();
        closed.push(GroupRecord::Done {
            identity: "zcrypt:/".into(),
            at: "t".into(),
        });
        assert_eq!(open(&closed), None);
    }
}
