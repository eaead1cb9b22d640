//! From journal records to the planner's evidence: for each instance, the latest rotation
//! this journal started, and what became of its rewrap. Pure.

use super::journal::{Outcome, Record};
use crate::model::{JournalEvidence, JournalRewrap, JournalRotation};
use crate::plan::Action;

pub fn journal_evidence(records: &[Record]) -> JournalEvidence {
    let mut evidence = JournalEvidence::none();
    for (index, record) in records.iter().enumerate() {
        match record {
            Record::RotationStarted { instance, from, to } => {
                evidence.rotations.insert(
                    instance.clone(),
                    JournalRotation {
                        to: to.clone(),
                        rewrap: JournalRewrap::NotStarted { from: from.clone() },
                    },
                );
            }
            Record::Intent {
                step,
                action: Action::RewrapKeyStorage,
                instance,
                ..
            } => {
                if let Some(rotation) = evidence.rotations.get_mut(instance) {
                    let from = match &rotation.rewrap {
                        JournalRewrap::NotStarted { from }
                        | JournalRewrap::Unsettled { from }
                        | JournalRewrap::Completed { from } => from.clone(),
                    };
                    rotation.rewrap = match outcome_of(records, index, step) {
                        None => JournalRewrap::Unsettled { from },
                        Some(Outcome::Done | Outcome::SettledDone { .. }) => {
                            JournalRewrap::Completed { from }
                        }
                        Some(Outcome::NotDone { .. } | Outcome::SettledNotDone { .. }) => {
                            JournalRewrap::NotStarted { from }
                        }
                    };
                }
            }
            _ => {}
        }
    }
    evidence
}

/// The outcome recorded for the intent at `index` (the first outcome for its step after it).
pub fn outcome_of<'a>(records: &'a [Record], index: usize, step: &str) -> Option<&'a Outcome> {
    records[index + 1..].iter().find_map(|r| match r {
        Record::Outcome { step: s, outcome } if s == step => Some(outcome),
        _ => None,
    })
}

/// Intents that have no outcome: operations whose effect is unknown.
pub fn unsettled(records: &[Record]) -> Vec<(usize, &Record)> {
    records
        .iter()
        .enumerate()
        .filter(|(index, record)| match record {
            Record::Intent { step, .. } => outcome_of(records, *index, step).is_none(),
            _ => false,
        })
        .collect()
}
