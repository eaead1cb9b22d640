//! From journal records to the planner's evidence: for each instance, the latest open rotation
//! this journal recorded against the backend being planned, what it saw of its loads and
//! commits, what became of its rewrap, and the operator's attestations. Records bound to
//! another backend (a rehearsal on a simulator copy, another fleet with the same instance id)
//! are no evidence here: they are only named. Neither are records whose seal does not verify
//! (`journal_key`): such a record voids what the journal recorded of its instance up to it,
//! because someone without the key wrote, moved or removed something there. Pure.

use std::collections::{BTreeMap, BTreeSet};

use super::journal::{Outcome, Record};
use crate::model::{
    ATTESTATION_TTL_S, Began, FreshAttestation, JournalEvidence, JournalRewrap, JournalRotation,
    RewrapOnRecord, VerificationPattern,
};
use crate::plan::Action;

/// How far in the future an attestation's time may lie (clock steps) and still be in force.
const ATTESTATION_SKEW_S: u64 = 60;

/// The unit ids a record binds to, in the form records keep them: lower case, sorted.
pub fn unit_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut ids: Vec<String> = ids.into_iter().map(|id| id.to_ascii_lowercase()).collect();
    ids.sort();
    ids
}

/// `witness` names the journal for messages ("the journal in .mkplan"); `backend` is the
/// identity of the backend being planned (`Backend::identity`). Attestations are in force
/// until the next apply run begins (their age is not checked: see `journal_evidence_at`).
pub fn journal_evidence(records: &[Record], backend: &str, witness: &str) -> JournalEvidence {
    journal_evidence_at(records, backend, witness, None)
}

/// As `journal_evidence`, with the time now (seconds since the epoch): an attestation older
/// than `ATTESTATION_TTL_S` is no longer in force.
pub fn journal_evidence_at(
    records: &[Record],
    backend: &str,
    witness: &str,
    now_unix: Option<u64>,
) -> JournalEvidence {
    let mut evidence = JournalEvidence {
        witness: witness.to_string(),
        backend: backend.to_string(),
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
                weighed,
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
                evidence.began.insert(
                    key.clone(),
                    Began {
                        at: at.clone(),
                        weighed: weighed.clone(),
                    },
                );
                let same = evidence
                    .rotations
                    .get(&key)
                    .is_some_and(|r| r.from == *from && r.to == *to && r.units == *units);
                if !same {
                    evidence
                        .rotations
                        .insert(key, fresh(from, to, units, at.clone()));
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
                service_evidence,
                at,
                at_unix,
                weighed,
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
                // Out of force when old, stamped in the future (a clock, or a hand, that
                // cannot be trusted), or unstamped when the time now is known.
                let expired = match (now_unix, at_unix) {
                    (Some(now), Some(then)) => {
                        now.saturating_sub(*then) > ATTESTATION_TTL_S
                            || *then > now + ATTESTATION_SKEW_S
                    }
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                let word = (!expired).then(|| FreshAttestation {
                    at: at.clone(),
                    weighed: weighed.clone(),
                });
                // After a rewrap mkplan did not send, only IBM support's word (journaled with
                // the attestation) says the key storage survived it.
                if *ran && service_evidence.is_some() {
                    rotation.foreign_rewrap = None;
                }
                if *ran {
                    rotation.rewrap = JournalRewrap::Completed {
                        how: format!("the operator attested at {at}: {statement}"),
                    };
                    rotation.attested_completed = word;
                } else {
                    rotation.attested_not_run = word;
                }
                attested_at.insert(key, index);
            }
            Record::ForeignRewrapSeen {
                instance,
                backend: bound,
                from,
                to,
                seen,
                at,
            } if bound == backend => {
                if let Some(rotation) = evidence.rotations.get_mut(&instance.to_ascii_lowercase())
                    && rotation.from == *from
                    && rotation.to == *to
                {
                    rotation.foreign_rewrap = Some(format!("{seen} (journaled at {at})"));
                }
            }
            Record::RotationClosed {
                instance,
                backend: bound,
                ..
            } if bound == backend => {
                evidence.rotations.remove(&instance.to_ascii_lowercase());
            }
            voided @ (Record::RolledBack { .. } | Record::Pushed { .. }) => {
                // Whatever the missing records said, and whatever the older ones still say
                // (an attestation now out of date, a rewrap not yet sent), is no evidence.
                evidence.rotations.clear();
                evidence.began.clear();
                attested_at.clear();
                last_run = Some(index);
                evidence.unauthenticated.clear();
                evidence.unauthenticated_all = Some(void_reason(voided));
            }
            Record::Unauthenticated { line, why, record } => {
                // A run may have started there: attestations before it are out of force.
                if matches!(**record, Record::ApplyStarted { .. }) {
                    last_run = Some(index);
                }
                // An audit anchor, or a record about another backend, is about nothing here.
                if matches!(record.written(), Record::AuditAnchored { .. })
                    || bound_elsewhere(record, backend)
                {
                    continue;
                }
                let reason = format!(
                    "its record at line {line} ({}) is not authenticated: {}",
                    record.kind(),
                    why.describe()
                );
                match instance_of(records, record) {
                    Some(instance) => {
                        evidence.rotations.remove(&instance);
                        evidence.began.remove(&instance);
                        attested_at.remove(&instance);
                        evidence.unauthenticated.entry(instance).or_insert(reason);
                    }
                    None => {
                        evidence.rotations.clear();
                        evidence.began.clear();
                        attested_at.clear();
                        evidence.unauthenticated_all.get_or_insert(reason);
                    }
                }
            }
            Record::Intent {
                step,
                action,
                instance,
                unit,
                by_hand,
                ..
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
                witness_step(
                    rotation,
                    *action,
                    unit.as_deref(),
                    outcome,
                    run_at,
                    *by_hand,
                );
            }
            _ => {}
        }
    }
    for (instance, index) in attested_at {
        if last_run.is_some_and(|run| run > index)
            && let Some(rotation) = evidence.rotations.get_mut(&instance)
        {
            rotation.attested_not_run = None;
            rotation.attested_completed = None;
        }
    }
    evidence.rewraps_elsewhere = rewraps_elsewhere(records, backend);
    for (instance, rewraps) in rewraps_on_record(records, backend) {
        let vouched = evidence.unauthenticated(&instance).is_none();
        let unverified: Vec<RewrapOnRecord> = rewraps
            .into_iter()
            .filter(|r| !(r.verified && vouched))
            .collect();
        if !unverified.is_empty() {
            evidence.unverified_rewraps.insert(instance, unverified);
        }
    }
    evidence
}

/// The records an apply journals before planning: for each instance whose service reports a
/// rewrap in progress though `evidence` saw the rotation's own rewrap complete (its registers
/// still fit it), a rewrap mkplan did not send. Kept, every later plan refuses
/// (`JournalRotation::foreign_rewrap`), even once that rewrap has ended.
pub fn foreign_rewraps_seen(
    live: &crate::model::LiveFleet,
    evidence: &JournalEvidence,
    backend: &str,
) -> Vec<Record> {
    live.instances
        .iter()
        .filter(|i| i.rewrap_status == crate::model::RewrapStatus::InProgress)
        .filter_map(|i| {
            let rotation = evidence.rotation(&i.id)?;
            let completed = matches!(rotation.rewrap, JournalRewrap::Completed { .. });
            (completed
                && rotation.foreign_rewrap.is_none()
                && crate::plan::registers_fit(rotation, i))
            .then(|| Record::ForeignRewrapSeen {
                instance: i.id.to_ascii_lowercase(),
                backend: backend.to_string(),
                from: rotation.from.clone(),
                to: rotation.to.clone(),
                seen: "an apply found the service running a rewrap of the key storage".into(),
                at: crate::timestamp::utc_now(),
            })
        })
        .collect()
}

/// Per instance (lower case), the rewraps mkplan sent against `backend` that any record,
/// whether its seal verifies or not, says were never answered or completed. A record that does
/// not verify can never settle one: only a verified answer that it did not run does, and only
/// a verified close of its rotation. The operator's rewraps by hand are left out when the
/// intent verifies (they saw whether they ran it).
pub fn rewraps_on_record(
    records: &[Record],
    backend: &str,
) -> BTreeMap<String, Vec<RewrapOnRecord>> {
    rewraps_sent(records, backend, false)
}

/// `rewraps_on_record`, with the ceremony steps whose intent verifies too (completed, or left
/// without the operator's word): what speaks against an attestation about another rotation.
pub fn rewraps_on_record_by_hand_too(
    records: &[Record],
    backend: &str,
) -> BTreeMap<String, Vec<RewrapOnRecord>> {
    rewraps_sent(records, backend, true)
}

/// Per instance (lower case), the rewraps records made against backends other than `backend`
/// say were sent (by mkplan, or shown as a ceremony step) and never answered, or completed,
/// in a rotation not closed on that backend, with that backend's identity. No evidence of
/// anything here: only reason to refuse "nobody rewrapped" on the operator's word alone,
/// since one service reached another way (a moved fleet file, another endpoint) has another
/// identity.
pub fn rewraps_elsewhere(
    records: &[Record],
    backend: &str,
) -> BTreeMap<String, Vec<(String, RewrapOnRecord)>> {
    let others: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| match r.written() {
            Record::ApplyStarted {
                backend: Some(b), ..
            } if b != backend => Some(b.as_str()),
            _ => None,
        })
        .collect();
    let mut out: BTreeMap<String, Vec<(String, RewrapOnRecord)>> = BTreeMap::new();
    for other in others {
        for (instance, rewraps) in rewraps_sent(records, other, true) {
            out.entry(instance)
                .or_default()
                .extend(rewraps.into_iter().map(|r| (other.to_string(), r)));
        }
    }
    out
}

/// Per instance (lower case), the rewraps records made against any backend say were sent
/// (by mkplan, or shown as a ceremony step) and never answered, or completed, in a rotation
/// not closed on that backend, with that backend's identity: what another state folder's
/// journal tells one that never saw it (`store::files::other_folders`).
pub fn rewraps_on_any_backend(
    records: &[Record],
) -> BTreeMap<String, Vec<(String, RewrapOnRecord)>> {
    rewraps_elsewhere(records, "")
}

/// As `rewraps_on_record`; `by_hand` keeps the ceremony steps whose intent verifies too (the
/// operator who ran them on another backend may not be the one here), when they completed
/// or were left without the operator's word.
fn rewraps_sent(
    records: &[Record],
    backend: &str,
    by_hand_too: bool,
) -> BTreeMap<String, Vec<RewrapOnRecord>> {
    type Keys = (VerificationPattern, VerificationPattern, bool);
    let mut rotations: BTreeMap<String, Keys> = BTreeMap::new();
    let mut runs: BTreeMap<u32, (Option<&str>, Option<&str>, bool)> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<RewrapOnRecord>> = BTreeMap::new();
    for (index, record) in records.iter().enumerate() {
        let verified = !matches!(record, Record::Unauthenticated { .. });
        match record.written() {
            Record::ApplyStarted {
                run,
                backend: bound,
                at,
                ..
            } => {
                runs.insert(*run, (bound.as_deref(), at.as_deref(), verified));
            }
            Record::RotationStarted {
                instance,
                from,
                to,
                backend: Some(bound),
                ..
            } if bound == backend => {
                let keys = (from.clone(), to.clone(), verified);
                rotations.insert(instance.to_ascii_lowercase(), keys);
            }
            Record::RotationClosed {
                instance,
                backend: bound,
                ..
            } if verified && bound == backend => {
                out.remove(&instance.to_ascii_lowercase());
            }
            Record::Intent {
                step,
                action: Action::RewrapKeyStorage,
                instance,
                by_hand,
                at,
                ..
            } if by_hand_too || !(verified && *by_hand) => {
                let Some(&(Some(bound), sent_at, run_verified)) =
                    run_of(step).and_then(|run| runs.get(&run))
                else {
                    continue;
                };
                if bound != backend {
                    continue;
                }
                let answer = records[index + 1..].iter().find_map(|r| match r.written() {
                    Record::Outcome {
                        step: s, outcome, ..
                    } if s == step => Some((outcome, !matches!(r, Record::Unauthenticated { .. }))),
                    _ => None,
                });
                if let Some((outcome, true)) = answer
                    && !outcome.took_effect()
                {
                    continue;
                }
                let instance = instance.to_ascii_lowercase();
                let keys = rotations.get(&instance);
                out.entry(instance).or_default().push(RewrapOnRecord {
                    step: step.clone(),
                    from: keys.map(|k| k.0.clone()),
                    to: keys.map(|k| k.1.clone()),
                    completed: answer.is_some_and(|(o, _)| o.took_effect()),
                    sent_at: sent_at.map(str::to_string),
                    intent_at: at.clone(),
                    verified: verified
                        && run_verified
                        && keys.is_some_and(|k| k.2)
                        && answer.is_none_or(|(_, v)| v),
                    by_hand: *by_hand,
                });
            }
            _ => {}
        }
    }
    out
}

/// The instance (lower case) a record speaks of; `None` when it may be any (a run's start, an
/// outcome whose intent is unknown).
fn instance_of(records: &[Record], record: &Record) -> Option<String> {
    match record.written() {
        Record::RotationStarted { instance, .. }
        | Record::Intent { instance, .. }
        | Record::Attested { instance, .. }
        | Record::RotationClosed { instance, .. }
        | Record::ForeignRewrapSeen { instance, .. } => Some(instance.to_ascii_lowercase()),
        Record::Outcome { step, .. } => records.iter().find_map(|r| match r.written() {
            Record::Intent {
                step: s, instance, ..
            } if s == step => Some(instance.to_ascii_lowercase()),
            _ => None,
        }),
        Record::ApplyStarted { .. }
        | Record::AuditAnchored { .. }
        | Record::RolledBack { .. }
        | Record::Pushed { .. }
        | Record::Unauthenticated { .. } => None,
    }
}

/// Why the records before `record` (a rollback found, or the folder pushed to a database)
/// are no evidence, for messages.
fn void_reason(record: &Record) -> String {
    match record {
        Record::RolledBack {
            expected,
            found,
            at,
            why,
        } => format!(
            "it was cut back or replaced by an older copy: {}{}",
            why.clone().unwrap_or_else(|| format!(
                "mkplan last left it with {expected} records and found {found}"
            )),
            at.as_ref().map(|t| format!(" at {t}")).unwrap_or_default()
        ),
        // The file store refuses such a folder before its records are read as evidence.
        Record::Pushed { to, at } => format!(
            "it was pushed to {} at {}, and goes on there",
            crate::quote::bare(to),
            crate::quote::bare(at)
        ),
        other => other.kind().to_string(),
    }
}

/// A record that names another backend than `backend`: no evidence here either way.
fn bound_elsewhere(record: &Record, backend: &str) -> bool {
    match record.written() {
        Record::RotationStarted {
            backend: Some(b), ..
        }
        | Record::ApplyStarted {
            backend: Some(b), ..
        } => b != backend,
        Record::Attested { backend: b, .. } | Record::RotationClosed { backend: b, .. } => {
            b != backend
        }
        _ => false,
    }
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
        promotion_sent: BTreeSet::new(),
        attested_not_run: None,
        attested_completed: None,
        foreign_rewrap: None,
    }
}

/// What one journaled operation tells about its rotation.
fn witness_step(
    rotation: &mut JournalRotation,
    action: Action,
    unit: Option<&str>,
    outcome: Option<(&Outcome, Option<&str>)>,
    run_at: Option<&str>,
    by_hand: bool,
) {
    let unit = unit.map(str::to_ascii_lowercase);
    if let Some((Outcome::ForeignRewrap { evidence }, at)) = outcome {
        rotation.foreign_rewrap = Some(format!(
            "{evidence}{}",
            at.map(|t| format!(" (journaled at {t})"))
                .unwrap_or_default()
        ));
    }
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
        (Action::SetImmediate, Some(unit)) if sent => {
            rotation.promotion_sent.insert(unit);
        }
        (Action::ClearNewMk, Some(unit)) if took_effect => {
            rotation.loaded.remove(&unit);
            rotation.committed.remove(&unit);
        }
        (Action::RewrapKeyStorage, _) => {
            rotation.rewrap = match outcome {
                None => JournalRewrap::Unsettled {
                    sent_at: run_at.map(str::to_string),
                    by_hand,
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
                Some((
                    Outcome::SettledNotDone { evidence } | Outcome::ForeignRewrap { evidence },
                    _,
                )) => JournalRewrap::NotRun {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keypart::Secret32;

    fn attested(ran: bool, at_unix: u64) -> Record {
        let key = |b: u8| Secret32::from_bytes([b; 32]).verification_pattern();
        Record::Attested {
            instance: "i".into(),
            backend: "sim:/f".into(),
            units: vec!["u".into()],
            from: key(0xA),
            to: key(0xB),
            ran,
            statement: "s".into(),
            service_evidence: None,
            at: "t".into(),
            at_unix: Some(at_unix),
            weighed: None,
        }
    }

    #[test]
    fn an_attestation_expires_with_time_and_with_the_next_run() {
        let fresh = |records: &[Record], now| {
            let e = journal_evidence_at(records, "sim:/f", "", Some(now));
            let r = e.rotation("i").unwrap();
            (r.attested_not_run.is_some(), r.attested_completed.is_some())
        };
        let not_run = [attested(false, 1_000)];
        assert_eq!(fresh(&not_run, 1_000 + ATTESTATION_TTL_S), (true, false));
        assert_eq!(fresh(&not_run, 1_001 + ATTESTATION_TTL_S), (false, false));
        assert_eq!(fresh(&not_run, 1_000 - ATTESTATION_SKEW_S), (true, false));
        assert_eq!(fresh(&not_run, 999 - ATTESTATION_SKEW_S), (false, false));
        let completed = [attested(true, 1_000)];
        assert_eq!(fresh(&completed, 1_000), (false, true));
        let then_a_run = [
            attested(true, 1_000),
            Record::ApplyStarted {
                run: 1,
                plan_sha256: "p".into(),
                backend: Some("sim:/f".into()),
                at: None,
                audit: None,
            },
        ];
        assert_eq!(fresh(&then_a_run, 1_000), (false, false));
        // Bound to another backend: no evidence at all.
        assert!(
            journal_evidence(&not_run, "sim:/other", "")
                .rotation("i")
                .is_none()
        );
    }

    fn unauthenticated(record: Record) -> Record {
        Record::Unauthenticated {
            line: 9,
            why: crate::apply::journal_key::SealFault::Mismatch,
            record: Box::new(record),
        }
    }

    /// A record whose seal fails voids what the journal recorded of its instance up to it
    /// (here: the attestation), and is named; about another backend, it voids nothing; a run
    /// start that fails ends every attestation's force, as a run would.
    #[test]
    fn an_unauthenticated_record_is_no_evidence_and_voids_its_instance() {
        let completed = attested(true, 1_000);
        let forged_intent = Record::Intent {
            step: "r1.s9".into(),
            action: Action::RewrapKeyStorage,
            instance: "I".into(),
            unit: None,
            by_hand: false,
            send_within_ms: None,
            at: None,
        };
        let e = journal_evidence_at(
            &[completed.clone(), unauthenticated(forged_intent.clone())],
            "sim:/f",
            "",
            Some(1_000),
        );
        assert!(e.rotation("i").is_none());
        let why = e.unauthenticated("i").unwrap();
        assert!(why.contains("line 9 (intent)"), "{why}");
        // An attestation after it is the operator's word now: evidence again.
        let e = journal_evidence_at(
            &[unauthenticated(forged_intent), completed.clone()],
            "sim:/f",
            "",
            Some(1_000),
        );
        assert!(e.rotation("i").unwrap().attested_completed.is_some());
        let elsewhere = Record::RotationClosed {
            instance: "i".into(),
            backend: "sim:/other".into(),
            why: "w".into(),
            at: "t".into(),
        };
        let e = journal_evidence_at(
            &[completed.clone(), unauthenticated(elsewhere)],
            "sim:/f",
            "",
            Some(1_000),
        );
        assert!(e.rotation("i").unwrap().attested_completed.is_some());
        let run = Record::ApplyStarted {
            run: 1,
            plan_sha256: "p".into(),
            backend: Some("sim:/other".into()),
            at: None,
            audit: None,
        };
        let e = journal_evidence_at(
            &[completed, unauthenticated(run)],
            "sim:/f",
            "",
            Some(1_000),
        );
        assert!(e.rotation("i").unwrap().attested_completed.is_none());
    }

    /// A rewrap intent whose seal does not verify is still listed; a verified answer that it
    /// did not run settles it, an unverified one does not.
    #[test]
    fn a_rewrap_on_record_is_settled_only_by_a_verified_answer() {
        let key = |b: u8| Secret32::from_bytes([b; 32]).verification_pattern();
        let started = Record::ApplyStarted {
            run: 1,
            plan_sha256: "p".into(),
            backend: Some("sim:/f".into()),
            at: Some("t".into()),
            audit: None,
        };
        let rotation = Record::RotationStarted {
            instance: "I".into(),
            from: key(0xA),
            to: key(0xB),
            backend: Some("sim:/f".into()),
            units: Some(vec!["u".into()]),
            registers: None,
            at: None,
            weighed: None,
        };
        let intent = Record::Intent {
            step: "r1.s7".into(),
            action: Action::RewrapKeyStorage,
            instance: "I".into(),
            unit: None,
            by_hand: false,
            send_within_ms: None,
            at: None,
        };
        let not_done = Record::Outcome {
            step: "r1.s7".into(),
            outcome: Outcome::NotDone {
                reason: "refused".into(),
            },
            at: None,
        };
        let unverified: Vec<Record> = [started, rotation, intent]
            .into_iter()
            .map(unauthenticated)
            .collect();
        let on_record = rewraps_on_record(&unverified, "sim:/f");
        let rewrap = &on_record["i"][0];
        assert!(!rewrap.verified && !rewrap.completed);
        assert!(rewrap.of_rotation(&key(0xA), &key(0xB)));
        assert!(rewraps_on_record(&unverified, "sim:/other").is_empty());
        let mut answered = unverified.clone();
        answered.push(unauthenticated(not_done.clone()));
        assert_eq!(rewraps_on_record(&answered, "sim:/f")["i"].len(), 1);
        let mut answered = unverified;
        answered.push(not_done);
        assert!(rewraps_on_record(&answered, "sim:/f").is_empty());
    }
}
