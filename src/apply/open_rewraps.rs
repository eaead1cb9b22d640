//! What a state folder's head says the folder may hold, kept by the journal as it appends:
//! the instances whose rewrap it recorded as sent in a rotation not closed since
//! (`journal_key::Head::rewraps`). Another folder reads it when this one cannot be read
//! (`store::files::other_folders`).

use super::journal::Record;

/// What a state folder's head says it may hold (`Head::rewraps`): the (instance, backend) pairs
/// whose rewrap the journal recorded as sent in a rotation not closed on that backend, and
/// each run's backend, kept up to date as records are appended. A superset of what
/// `evidence::rewraps_on_record` finds, never less: it answers for a folder nobody can read
/// any more.
#[derive(Default)]
pub(super) struct OpenRewraps {
    open: std::collections::BTreeSet<(String, String)>,
    runs: std::collections::HashMap<u32, String>,
}

impl OpenRewraps {
    /// Notes `record`; true when it opened a pair. A rewrap's intent (a ceremony step's too)
    /// opens its instance on its run's backend ("" when the run names none); only a verified
    /// close of the rotation on that backend closes it.
    pub(super) fn note(&mut self, record: &Record) -> bool {
        let verified = !matches!(record, Record::Unauthenticated { .. });
        match record.written() {
            Record::ApplyStarted {
                run,
                backend: Some(backend),
                ..
            } if verified => {
                self.runs.insert(*run, backend.clone());
                false
            }
            Record::Intent {
                step,
                action: crate::plan::Action::RewrapKeyStorage,
                instance,
                ..
            } => {
                let backend = super::evidence::run_of(step)
                    .and_then(|run| self.runs.get(&run))
                    .cloned()
                    .unwrap_or_default();
                self.open.insert((instance.to_ascii_lowercase(), backend))
            }
            Record::RotationClosed {
                instance, backend, ..
            } if verified => {
                self.open
                    .remove(&(instance.to_ascii_lowercase(), backend.clone()));
                false
            }
            _ => false,
        }
    }

    /// The instances, each once.
    pub(super) fn instances(&self) -> Vec<String> {
        let mut out: Vec<String> = self.open.iter().map(|(i, _)| i.clone()).collect();
        out.dedup();
        out
    }
}
