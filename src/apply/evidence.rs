//! From journal records to the planner's evidence: for each instance, the latest open rotation
//! this journal recorded against the backend being planned, what it saw of its loads and
//! commits, what became of its rewrap, and the operator's attestations. Records bound to
//! another backend (a rehearsal on a simulator copy, another fleet with the same instance id)
//! are no evidence here: they are only named. Pure.

use std::collections::{BTreeMap, BTreeSet};

use super::journal::{Outcome, Record};
use crate::model::{JournalEvidence, JournalRewrap, JournalRotation, NotRunAttestation};
use crate::plan::Action;

/// The unit ids a record binds to, in the form records keep them: lower case, sorted.
pub fn unit_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut ids: Vec<String> = ids.into_iter().map(|id| id.to_ascii_lowercase()).collect();
    ids.sort();
    ids
}

/// `witness` names the journal for messages ("the journal in .mkplan"); `backend` is the
/// identity of the backend being planned (`Backend::identity`).
pub fn journal_evidence(records: &[Record], backend: &str, witness: &str) -> JournalEvidence {
    let mut evidence = JournalEvidence {
        witness: witness.to_string(),
        ..JournalEvidence::default()
    };
    let mut run_backend: BTreeMap<u32, (Option<&str>, Option<&str>)> = BTreeMap::new();
    let mut last_run = None;
    // Where each instance's not-run attestation was recorded: a run after it ends its force.
    let mut attested_at: BTreeMap<String, usize> = BTreeMap::new();
    for (index, record) in records.iter().enumerate() {
        match record {
            Record::ApplyStarted {
                run,
                backend: bound,
                at,
                ..
            } => {
                run_backend.insert(*run, (bound.as_deref(), at.as_deref()));
                last_run = Some(index);
            }
            Record::RotationStarted {
                instance,
                from,
                to,
                backend: bound,
                units,
                at,
                ..
            } => {
                let key = instance.to_ascii_lowercase();
                let (Some(bound), Some(units)) = (bound, units) else {
                    note_elsewhere(
                        &mut evidence,
                        key,
                        "(an older journal record bound to no backend)",
                    );
                    continue;
                };
                if bound != backend {
                    note_elsewhere(&mut evidence, key, bound);
                    continue;
                }
                let same = evidence
                    .rotations
                    .get(&key)
                    .is_some_and(|r| r.from == *from && r.to == *to && r.units == *units);
                if !same {
                    evidence.rotations.insert(
                        key,
                        JournalRotation {
                            from: from.clone(),
                            to: to.clone(),
                            units: units.clone(),
                            started_at: at.clone(),
                            rewrap: JournalRewrap::NotSent,
                            loaded: BTreeSet::new(),
                            committed: BTreeSet::new(),
                            committed_at: None,
                            promoted: BTreeSet::new(),
                            attested_not_run: None,
                        },
                    );
                }
            }
            Record::Attested {
                instance,
                backend: bound,
                units,
                from,
                to,
                ran,
                statement,
                at,
                ..
            } => {
                let key = instance.to_ascii_lowercase();
                if bound != backend {
                    note_elsewhere(&mut evidence, key, bound);
                    continue;
                }
                let rotation = evidence
                    .rotations
                    .entry(key.clone())
                    .and_modify(|r| {
                        if r.from != *from || r.to != *to || r.units != *units {
                            *r = fresh(from, to, units, Some(at.clone()));
                        }
                    })
                    .or_insert_with(|| fresh(from, to, units, Some(at.clone())));
                if *ran {
                    rotation.rewrap = JournalRewrap::Completed {
                        how: format!("the operator attested at {at}: {statement}"),
                    };
                } else {
                    rotation.attested_not_run = Some(NotRunAttestation {
                        at: at.clone(),
                        statement: statement.clone(),
                    });
                    attested_at.insert(key, index);
                }
            }
            Record::RotationClosed {
                instance,
                backend: bound,
                ..
            } if bound == backend => {
                evidence.rotations.remove(&instance.to_ascii_lowercase());
            }
            Record::Intent {
                step,
                action,
                instance,
                unit,
            } => {
                let (bound, run_at) = run_of(step)
                    .and_then(|run| run_backend.get(&run).copied())
                    .unwrap_or((None, None));
                if bound != Some(backend) {
                    continue;
                }
                let Some(rotation) = evidence.rotations.get_mut(&instance.to_ascii_lowercase())
                else {
                    continue;
                };
                let outcome = outcome_of(records, index, step);
                witness_step(rotation, *action, unit.as_deref(), outcome, run_at);
            }
            _ => {}
        }
    }
    for (instance, index) in attested_at {
        if last_run.is_some_and(|run| run > index)
            && let Some(rotation) = evidence.rotations.get_mut(&instance)
        {
            rotation.attested_not_run = None;
        }
    }
    evidence
}

/// Records made against another backend: no evidence here, but a refusal names them.
fn note_elsewhere(evidence: &mut JournalEvidence, instance: String, backend: &str) {
    evidence
        .elsewhere
        .entry(instance)
        .or_default()
        .insert(backend.to_string());
}

fn fresh(
    from: &crate::model::VerificationPattern,
    to: &crate::model::VerificationPattern,
    units: &[String],
    at: Option<String>,
) -> JournalRotation {
    JournalRotation {
        from: from.clone(),
        to: to.clone(),
        units: units.to_vec(),
        started_at: at,
        rewrap: JournalRewrap::NotSent,
        loaded: BTreeSet::new(),
        committed: BTreeSet::new(),
        committed_at: None,
        promoted: BTreeSet::new(),
        attested_not_run: None,
    }
}

/// What one journaled operation tells about its rotation.
fn witness_step(
    rotation: &mut JournalRotation,
    action: Action,
    unit: Option<&str>,
    outcome: Option<(&Outcome, Option<&str>)>,
    run_at: Option<&str>,
) {
    let unit = unit.map(str::to_ascii_lowercase);
    let took_effect = outcome.is_some_and(|(o, _)| o.took_effect());
    // A load or commit this journal sent and never heard back from (the run died with it in
    // flight) is still this journal's: the next run settles it from the live state.
    let sent = took_effect || outcome.is_none();
    match (action, unit) {
        (Action::LoadNewMk, Some(unit)) if sent => {
            rotation.loaded.insert(unit);
        }
        (Action::CommitNewMk, Some(unit)) if sent => {
            rotation.committed.insert(unit);
            rotation.committed_at = outcome
                .and_then(|(_, at)| at)
                .or(run_at)
                .map(str::to_string);
        }
        (Action::SetImmediate, Some(unit)) if took_effect => {
            rotation.promoted.insert(unit);
        }
        (Action::ClearNewMk, Some(unit)) if took_effect => {
            rotation.loaded.remove(&unit);
            rotation.committed.remove(&unit);
        }
        (Action::RewrapKeyStorage, _) => {
            rotation.rewrap = match outcome {
                None => JournalRewrap::Unsettled {
                    sent_at: run_at.map(str::to_string),
                },
                Some((Outcome::Done, at)) => JournalRewrap::Completed {
                    how: format!(
                        "mkplan's own rewrap request completed{}",
                        at.map(|t| format!(" at {t}")).unwrap_or_default()
                    ),
                },
                Some((Outcome::SettledDone { evidence }, _)) => JournalRewrap::Completed {
                    how: evidence.clone(),
                },
                Some((Outcome::NotDone { reason }, _)) => JournalRewrap::NotRun {
                    how: format!("the service refused it: {reason}"),
                },
                Some((Outcome::SettledNotDone { evidence }, _)) => JournalRewrap::NotRun {
                    how: evidence.clone(),
                },
            };
        }
        _ => {}
    }
}

/// `r12.s3` → 12.
pub fn run_of(step: &str) -> Option<u32> {
    step.strip_prefix('r')?.split('.').next()?.parse().ok()
}

/// The outcome recorded for the intent at `index` (the first outcome for its step after it),
/// with its time.
pub fn outcome_of<'a>(
    records: &'a [Record],
    index: usize,
    step: &str,
) -> Option<(&'a Outcome, Option<&'a str>)> {
    records[index + 1..].iter().find_map(|r| match r {
        Record::Outcome {
            step: s,
            outcome,
            at,
        } if s == step => Some((outcome, at.as_deref())),
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

/// The backend the run that journaled `step` acted on.
pub fn backend_of_step<'a>(records: &'a [Record], step: &str) -> Option<&'a str> {
    let run = run_of(step)?;
    records.iter().find_map(|r| match r {
        Record::ApplyStarted {
            run: n, backend, ..
        } if *n == run => backend.as_deref(),
        _ => None,
    })
}
