//! The operator's attestation about a rewrap, as journal records: which rotation it speaks of
//! (the journal's, or the one the live registers show), whether it may be given at all, and
//! the records that carry it. Shared by `mkplan attest rewrap` and the multi-actor drills.

use std::collections::BTreeSet;

use super::evidence::{
    backend_of_step, journal_evidence, rewraps_elsewhere, rewraps_on_record,
    rewraps_on_record_by_hand_too, unit_ids, unsettled,
};
use super::journal::{Outcome, Record, unix_now};
use crate::model::{
    JournalRewrap, LiveInstance, OtherFolders, RewrapOnRecord, RewrapStatus, VerificationPattern,
};
use crate::plan::{Action, common_current, rewrap_ruled_out};
use crate::timestamp::utc_now;

/// What the operator says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    /// The rewrap completed (the service reported it), or nobody sent it.
    pub ran: bool,
    /// With `ran == false` after mkplan's own rewrap went unanswered: what the service showed.
    pub service_evidence: Option<String>,
    /// What the other state folders this user's mkplan wrote on this machine say (folders
    /// other than the one attested into): a rewrap they say was sent never reached this
    /// journal, and refuses "nobody sent it" as one on record here does; so does a folder
    /// that cannot be read. Whatever is attested, the attestation names the rewraps they
    /// held (`Record::Attested::weighed`): it speaks for those and no others.
    pub other_folders: OtherFolders,
}

/// Why an attestation cannot be taken: nothing is journaled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotTaken(pub String);

/// The records that journal `attestation` about `found` (against the backend `backend`), and
/// the statement as the operator gave it. `target` is the desired key, used when the
/// registers show no staged key and the journal no rotation.
pub fn attestation_records(
    records: &[Record],
    found: &LiveInstance,
    target: &VerificationPattern,
    backend: &str,
    witness: &str,
    attestation: &Attestation,
) -> Result<(Vec<Record>, String), NotTaken> {
    let units = unit_ids(found.crypto_units.iter().map(|u| u.hsm_id.as_str()));
    let (from, to) = rotation_of(records, found, target, backend)?;
    // mkplan's own rewrap of this instance on this backend, sent and never answered: whatever
    // the rotation record says now (a unit removed since, a rotation record replaced). A
    // rewrap step by hand is the operator's own: they saw whether they ran it.
    let open = open_rewraps(records, &found.id, backend);
    let own_unknown = open.iter().find(|(_, by_hand)| !by_hand);
    // Each rewrap on record here, with the rotation it was sent in.
    let rotations = rewraps_on_record_by_hand_too(records, backend)
        .remove(&found.id.to_ascii_lowercase())
        .unwrap_or_default();
    if attestation.ran {
        completed_possible(found, &to)?;
    }
    // mkplan's own rewrap of this rotation, seen to complete: nobody can say it did not run.
    // (Whether someone rotated back since is another rotation, which this journal did not see.)
    if !attestation.ran
        && let Some(rotation) = journal_evidence(records, backend, witness).rotation(&found.id)
        && rotation.from == from
        && rotation.to == to
        && let JournalRewrap::Completed { how } = &rotation.rewrap
    {
        return Err(NotTaken(format!(
            "refused: {witness} saw the rewrap of service instance {} from {}… to {}… complete ({how}): nobody can attest that it did not run. Nothing was journaled. If nobody acted on the instance since, confirm the journal with --completed. If someone did (a rotation back and a new load of {}…), this journal did not see that rotation: ask them for its journal (its --state-dir), or settle it with the service's rotation status or IBM support",
            found.id,
            from.short(),
            to.short(),
            to.short()
        )));
    }
    if !attestation.ran
        && let Some((step, _)) = own_unknown
        && attestation.service_evidence.is_none()
    {
        // The keys of the rotation it was sent in, which may be another than the one attested.
        let sent = rotations.iter().find(|r| &r.step == step);
        let (sent_from, sent_to) = match sent.and_then(|r| r.from.as_ref().zip(r.to.as_ref())) {
            Some((f, t)) => (f.short(), t.short()),
            None => (from.short(), to.short()),
        };
        return Err(NotTaken(format!(
            "refused: {witness} holds mkplan's own rewrap of service instance {} from {sent_from}… to {sent_to}…, sent and never answered. Nobody at this end can see that it did not run: it may have completed, or still be running or queued on the service (a queued rewrap lands on whatever key is committed next). Nothing was journaled. If the service showed that it did not run (IBM support, the service's rotation status), say what it showed with `--service-evidence \"…\"`; if the TKE CLI or the service reported \"{}\", use --completed",
            found.id,
            RewrapStatus::Rewrapped.describe()
        )));
    }
    if !attestation.ran && attestation.service_evidence.is_none() {
        unanswered_on_record(records, &rotations, found, backend, witness, &from, &to)?;
        lost_records(records, &found.id, witness)?;
        unanswered_in_other_folders(&attestation.other_folders, found, backend, witness, &from)?;
    }
    let statement = if attestation.ran {
        format!(
            "the service reported \"{}\" for the rewrap from {}… to {}…",
            RewrapStatus::Rewrapped.describe(),
            from.short(),
            to.short()
        )
    } else {
        format!(
            "nobody sent a rewrap from {}… to {}… (checked with everyone who can act on the instance)",
            from.short(),
            to.short()
        )
    };
    let mut out = Vec::new();
    if !open.is_empty() {
        let said = format!(
            "ceremony: the operator attests: {statement}{}",
            attestation
                .service_evidence
                .as_ref()
                .map(|e| format!("; the service showed: {e}"))
                .unwrap_or_default()
        );
        // Of the rewraps left open, only this rotation's are what the operator speaks of; one
        // of another rotation stays unknown (an attestation that nobody ran this one is given
        // past it only on the service's evidence, which speaks of the instance).
        let of_this = |step: &str| {
            rotations
                .iter()
                .find(|r| r.step == step)
                .is_none_or(|r| r.of_rotation(&from, &to))
        };
        for (step, _) in open {
            if !of_this(&step) && (attestation.ran || attestation.service_evidence.is_none()) {
                continue;
            }
            let outcome = if attestation.ran {
                Outcome::SettledDone {
                    evidence: said.clone(),
                }
            } else {
                Outcome::SettledNotDone {
                    evidence: said.clone(),
                }
            };
            out.push(Record::outcome(step, outcome));
        }
    }
    out.push(Record::Attested {
        instance: found.id.to_ascii_lowercase(),
        backend: backend.to_string(),
        units,
        from,
        to,
        ran: attestation.ran,
        statement: statement.clone(),
        service_evidence: attestation.service_evidence.clone(),
        at: utc_now(),
        at_unix: Some(unix_now()),
        weighed: Some(
            attestation
                .other_folders
                .rewraps_of(&found.id)
                .iter()
                .map(crate::model::FolderRewrap::witnessed)
                .collect(),
        ),
    });
    Ok((out, statement))
}

/// Records that no longer verify can vouch for nothing, but one that says mkplan sent this
/// rotation's rewrap (never answered, or completed) is enough to refuse "nobody sent it" on the
/// operator's word alone: the request left mkplan, and nobody at this end can see that it did
/// not run. So are verified records a later unverified one voids. Records made against
/// another backend identity (the fleet file at another path, the same service reached at
/// another endpoint) are no evidence here either, but one saying a rewrap of this instance id
/// was sent there, in a rotation not closed there, may speak of this very service: the same
/// refusal (if it was a rehearsal, the service's own evidence settles it). `by_hand_too`:
/// the instance's rewraps on record against `backend`, ceremony steps included.
fn unanswered_on_record(
    records: &[Record],
    by_hand_too: &[RewrapOnRecord],
    found: &LiveInstance,
    backend: &str,
    witness: &str,
    from: &VerificationPattern,
    to: &VerificationPattern,
) -> Result<(), NotTaken> {
    let instance = found.id.to_ascii_lowercase();
    // A ceremony step of this very rotation is the operator's own: their word settles it. One
    // of another rotation, left without their word, is not what they speak of now.
    let by_hand_elsewhere = by_hand_too
        .iter()
        .filter(|r| r.by_hand && !r.of_rotation(from, to))
        .cloned();
    let here = rewraps_on_record(records, backend)
        .remove(&instance)
        .unwrap_or_default()
        .into_iter()
        .chain(by_hand_elsewhere)
        .map(|r| (None, r));
    let elsewhere = rewraps_elsewhere(records, backend)
        .remove(&instance)
        .unwrap_or_default()
        .into_iter()
        .map(|(other, r)| (Some(other), r));
    // This rotation's rewrap, or one from `from` never answered, whatever key it went to: it
    // may still be queued, and land on whatever key is committed next (round 12, F1).
    let Some((other, rewrap)) = here
        .chain(elsewhere)
        .find(|(_, r)| r.speaks_against(from, to))
    else {
        return Ok(());
    };
    let (records_say, why) = match other {
        Some(other) => (
            format!("records in {witness} made against {other}"),
            format!(
                "That backend is not the one named now ({backend}), yet it may be this very service reached another way (the fleet file moved, another endpoint of the service); if it was a rehearsal, the service's own evidence settles it"
            ),
        ),
        None if rewrap.verified && !rewrap.of_rotation(from, to) => (
            format!("records in {witness} of another rotation"),
            "A rewrap request never answered may still be queued at the service, and it lands whatever key is committed next".to_string(),
        ),
        None if rewrap.verified => (
            format!("records in {witness} that a later record voids"),
            "They cannot vouch for anything, but they are enough to refuse".to_string(),
        ),
        None => (
            format!(
                "records in {witness} that no longer verify (sealed with another journal key, or changed since)"
            ),
            "They cannot vouch for anything, but they are enough to refuse".to_string(),
        ),
    };
    Err(NotTaken(format!(
        "refused: {records_say} say that on service instance {}, {}. {why}: nobody at this end can see that it did not run, and a second rewrap after one completed makes the key storage unusable. Nothing was journaled. If the service showed that it did not run (IBM support, the service's rotation status), say what it showed with `--service-evidence \"…\"`; if the TKE CLI or the service reported \"{}\", use --completed",
        found.id,
        rewrap.describe(),
        RewrapStatus::Rewrapped.describe()
    )))
}

/// A rewrap that another state folder of this machine says mkplan sent from `from` (never
/// answered: it may still be queued and land whatever key is staged then; or completed), to
/// this backend or to any other identity of the same instance id (the fleet file moved,
/// another endpoint), never reached `witness`: a `state push` refused or never made, or a
/// second state folder of one fleet. Nobody at this end can see that it did not run, so
/// "nobody sent it" on the operator's word alone is refused, naming that folder. So is a
/// folder that cannot be read: it may hold one.
fn unanswered_in_other_folders(
    others: &OtherFolders,
    found: &LiveInstance,
    backend: &str,
    witness: &str,
    from: &VerificationPattern,
) -> Result<(), NotTaken> {
    let settle = format!(
        "if the service showed that no rewrap ran or is pending (IBM support, the service's rotation status), say what it showed with `--service-evidence \"…\"`; if the TKE CLI or the service reported \"{}\", use --completed",
        RewrapStatus::Rewrapped.describe()
    );
    if let Some(other) = others
        .rewraps_of(&found.id)
        .iter()
        .find(|r| r.rewrap.from.as_ref().is_none_or(|f| f == from))
    {
        let (backend_named, why) = if other.backend == backend {
            ("this very backend".to_string(), String::new())
        } else {
            (
                other.backend.clone(),
                format!(
                    " That backend is not the one named now ({backend}), yet it may be this very service reached another way (the fleet file moved, another endpoint of the service); if it was a rehearsal, the service's own evidence settles it."
                ),
            )
        };
        let (place, received) = match &other.scope {
            None if crate::plan::other_stores::is_database(&other.state_dir) => (
                format!(
                    "the team database {} (which this user's mkplan wrote from this machine)",
                    other.state_dir
                ),
                "never received those records (they were kept in that database)",
            ),
            Some(scope) => (
                format!(
                    "the journal of {scope} in {} (another backend identity of the same instance id in this database)",
                    other.state_dir
                ),
                "keeps its records apart from that scope's",
            ),
            None => (
                format!(
                    "the journal in {} (another state folder this user's mkplan wrote on this machine)",
                    crate::quote::name(&other.state_dir)
                ),
                "never received those records (a `state push` that was refused or never made, or a second state folder of one fleet)",
            ),
        };
        return Err(NotTaken(format!(
            "refused: {place} says that on service instance {id}, against {backend_named}, {what}.{why} {witness} {received}: nobody at this end can see that it did not run, and a second rewrap after one completed makes the key storage unusable. Nothing was journaled. Settle the rotation {with}; {settle}",
            id = found.id,
            what = other.rewrap.describe(),
            with = crate::plan::other_stores::settle_with(other),
        )));
    }
    if let Some(unread) = others.unread_for(&found.id).first() {
        return Err(NotTaken(format!(
            "refused: {}. That {store} may hold a rewrap of service instance {} that {witness} never saw: nobody at this end can see that it did not run, and a second rewrap after one completed makes the key storage unusable. Nothing was journaled. To settle it: {}; then attest again. Or: {settle}",
            crate::plan::other_stores::unread_described(unread),
            found.id,
            crate::plan::other_stores::unread_remedy(unread),
            store = if crate::plan::other_stores::is_database(&unread.state_dir) {
                "database"
            } else {
                "folder"
            },
        )));
    }
    Ok(())
}

/// A journal cut back, replaced by an older copy, or forked (a copy of it elsewhere went on)
/// lost records, and they may say mkplan sent this rotation's rewrap: "nobody sent it" on the
/// operator's word alone is not enough, as for a rewrap on record.
/// A rotation that began after the loss is recorded whole, so only a loss found since the
/// instance's last rotation began (or with no rotation on record) counts.
fn lost_records(records: &[Record], instance: &str, witness: &str) -> Result<(), NotTaken> {
    let began = records.iter().rposition(|r| {
        matches!(r, Record::RotationStarted { instance: i, .. } if i.eq_ignore_ascii_case(instance))
    });
    let Some((expected, found_records, why)) =
        records
            .iter()
            .enumerate()
            .rev()
            .find_map(|(index, r)| match r {
                Record::RolledBack {
                    expected,
                    found,
                    why,
                    ..
                } if began.is_none_or(|b| index > b) => Some((expected, found, why)),
                _ => None,
            })
    else {
        return Ok(());
    };
    let lost = why.clone().unwrap_or_else(|| {
        format!("mkplan last left it with {expected} records and found {found_records}")
    });
    Err(NotTaken(format!(
        "refused: {witness} lost records ({lost}). The records it lost may say that mkplan sent a rewrap of service instance {} that nobody at this end can see, and a second rewrap after one completed makes the key storage unusable. Nothing was journaled. Use the journal that went on (its state folder, if another copy went further), or say what the service showed (IBM support, the service's rotation status) with `--service-evidence \"…\"`; if the TKE CLI or the service reported \"{}\", use --completed",
        instance,
        RewrapStatus::Rewrapped.describe()
    )))
}

/// A completed rewrap to `to` leaves it Full Committed in every crypto unit's new register
/// (the service refuses a rewrap otherwise) until set immediate moves it into a current
/// register: before any unit is promoted, a unit without it Full Committed shows that the
/// rewrap cannot have completed (`plan::rewrap_ruled_out`).
fn completed_possible(found: &LiveInstance, to: &VerificationPattern) -> Result<(), NotTaken> {
    let ruled_out = rewrap_ruled_out(found, to);
    if ruled_out.is_empty() {
        return Ok(());
    }
    Err(NotTaken(format!(
        "refused: the registers of service instance {} show that no rewrap to {}… can have completed: a rewrap needs it Full Committed in every crypto unit's new register (the service refuses it otherwise), and it stays there until set immediate promotes a unit, yet no unit is promoted and\n{}\nNothing was journaled. A report of \"{}\" spoke of another instance or another rotation: check which instance and key it named. If you still believe this instance was rewrapped (a register cleared or reloaded since?), settle it with the service's rotation status or IBM support confirming which master key the key storage is under; until then do not rewrap, set immediate or clear any new register",
        found.id,
        to.short(),
        ruled_out
            .iter()
            .map(|u| format!(
                "  crypto unit {}: new register {:#}, current register {:#}",
                u.hsm_id, u.new_register, u.current_register
            ))
            .collect::<Vec<_>>()
            .join("\n"),
        RewrapStatus::Rewrapped.describe()
    )))
}

/// The rotation an attestation about `found` speaks of: the journal's (bound to `backend`
/// and these crypto units), or else the one the live registers show.
pub fn rotation_of(
    records: &[Record],
    found: &LiveInstance,
    target: &VerificationPattern,
    backend: &str,
) -> Result<(VerificationPattern, VerificationPattern), NotTaken> {
    let evidence = journal_evidence(records, backend, "");
    let units = unit_ids(found.crypto_units.iter().map(|u| u.hsm_id.as_str()));
    match evidence
        .rotation(&found.id)
        .filter(|r| r.units == units)
        .filter(|r| crate::plan::registers_fit(r, found))
    {
        Some(r) => Ok((r.from.clone(), r.to.clone())),
        None => from_to(found, target),
    }
}

/// The rotation the live registers show, when the journal recorded none: to is the key
/// staged in the new registers (the desired key when none is), from the key in the current
/// registers of the units not promoted to it.
fn from_to(
    found: &LiveInstance,
    target: &VerificationPattern,
) -> Result<(VerificationPattern, VerificationPattern), NotTaken> {
    let current = common_current(found);
    let staged: BTreeSet<&VerificationPattern> = found
        .crypto_units
        .iter()
        .filter_map(|u| u.new_register.verification_pattern())
        .filter(|vp| Some(*vp) != current.as_ref())
        .collect();
    let to = match staged.len() {
        0 => target.clone(),
        1 => (*staged.iter().next().expect("one key")).clone(),
        _ => {
            return Err(NotTaken(format!(
                "the new registers of service instance {} hold {} different keys: an attestation about \"the\" rewrap would be ambiguous. Nothing was journaled; find out which rotation ran first",
                found.id,
                staged.len()
            )));
        }
    };
    let old: BTreeSet<Option<&VerificationPattern>> = found
        .crypto_units
        .iter()
        .filter(|u| !u.current_register.holds(&to))
        .map(|u| u.current_register.verification_pattern())
        .collect();
    match old.into_iter().collect::<Vec<_>>()[..] {
        [Some(from)] if *from != to => Ok((from.clone(), to)),
        _ => Err(NotTaken(format!(
            "the registers of service instance {} do not show one rotation to {}… (the units not promoted to it hold different keys, or none, or it is finished); nothing was journaled",
            found.id,
            to.short()
        ))),
    }
}

/// The rewrap intents of `instance` on `backend` with no outcome, and whether each was a
/// step by hand.
fn open_rewraps(records: &[Record], instance: &str, backend: &str) -> Vec<(String, bool)> {
    unsettled(records)
        .into_iter()
        .filter_map(|(_, record)| match record {
            Record::Intent {
                step,
                action: Action::RewrapKeyStorage,
                instance: i,
                by_hand,
                ..
            } if i.eq_ignore_ascii_case(instance)
                && backend_of_step(records, step) == Some(backend) =>
            {
                Some((step.clone(), *by_hand))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(instance: &str) -> Record {
        let vp = |c: char| VerificationPattern::parse(&c.to_string().repeat(64)).unwrap();
        Record::RotationStarted {
            instance: instance.into(),
            from: vp('a'),
            to: vp('b'),
            backend: None,
            units: None,
            registers: None,
            at: None,
            weighed: None,
        }
    }

    fn cut() -> Record {
        Record::RolledBack {
            expected: 9,
            found: 5,
            at: None,
            why: None,
        }
    }

    fn vp(c: char) -> VerificationPattern {
        VerificationPattern::parse(&c.to_string().repeat(64)).unwrap()
    }

    const ID: &str = "5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b";

    /// One unit, its current register `a`, its new register `b` Full Committed.
    fn staged_b() -> LiveInstance {
        use crate::model::{CryptoUnit, CurrentRegister, Mode, NewRegister, UnitType};
        LiveInstance {
            id: ID.into(),
            region: "us-south".into(),
            rewrap_status: RewrapStatus::NotReported,
            crypto_units: vec![CryptoUnit {
                hsm_id: "u1".into(),
                unit_type: UnitType::Operational,
                location: "[us-south].[AZ1-CS1].[01].[01]".into(),
                mode: Mode::Admin,
                signature_threshold: 1,
                revocation_threshold: 1,
                administrators: Vec::new(),
                new_register: NewRegister::FullCommitted(vp('b')),
                current_register: CurrentRegister::Valid(vp('a')),
            }],
        }
    }

    /// A run against `backend` that began the rotation a → c and sent its rewrap (shown as a
    /// ceremony step when `by_hand`), never answered.
    fn rewrap_to_c_unanswered(backend: &str, by_hand: bool) -> Vec<Record> {
        vec![
            Record::ApplyStarted {
                run: 1,
                plan_sha256: "p".into(),
                backend: Some(backend.into()),
                at: Some("2026-12-02T09:00:00Z".into()),
                audit: None,
            },
            Record::RotationStarted {
                instance: ID.into(),
                from: vp('a'),
                to: vp('c'),
                backend: Some(backend.into()),
                units: Some(vec!["u1".into()]),
                registers: None,
                at: Some("2026-12-02T09:00:00Z".into()),
                weighed: Some(Vec::new()),
            },
            Record::Intent {
                step: "r1.s2".into(),
                action: Action::RewrapKeyStorage,
                instance: ID.into(),
                unit: None,
                by_hand,
                send_within_ms: None,
                at: Some("2026-12-02T09:01:00Z".into()),
            },
        ]
    }

    fn attest(records: &[Record], backend: &str, ran: bool) -> Result<Vec<Record>, NotTaken> {
        let attestation = Attestation {
            ran,
            service_evidence: None,
            other_folders: OtherFolders::default(),
        };
        attestation_records(
            records,
            &staged_b(),
            &vp('b'),
            backend,
            "the journal",
            &attestation,
        )
        .map(|(records, _)| records)
    }

    /// Round 12, F1: a rewrap from a never answered, sent in another rotation (a → c), may
    /// still be queued and land on b once it is committed: "nobody sent a rewrap from a to b"
    /// is true, and not enough. Variant B: mkplan's own, under another identity of the
    /// service; variant A: a ceremony step left without the operator's word, here.
    #[test]
    fn not_run_is_refused_while_a_rewrap_of_another_rotation_from_the_same_key_is_unanswered() {
        let moved = attest(
            &rewrap_to_c_unanswered("sim:/old/fleet.yaml", false),
            "sim:/new/fleet.yaml",
            false,
        )
        .unwrap_err();
        assert!(
            moved.0.contains("made against sim:/old/fleet.yaml"),
            "{}",
            moved.0
        );
        let by_hand = attest(
            &rewrap_to_c_unanswered("sim:/f.yaml", true),
            "sim:/f.yaml",
            false,
        )
        .unwrap_err();
        assert!(by_hand.0.contains("of another rotation"), "{}", by_hand.0);
        // The same ceremony step of the rotation attested (a → b) is the operator's own word.
        let mut own = rewrap_to_c_unanswered("sim:/f.yaml", true);
        if let Record::RotationStarted { to, .. } = &mut own[1] {
            *to = vp('b');
        }
        let taken = attest(&own, "sim:/f.yaml", false).unwrap();
        assert!(
            taken
                .iter()
                .any(|r| matches!(r, Record::Outcome { step, .. } if step == "r1.s2")),
            "{taken:?}"
        );
    }

    /// An attestation settles only the open rewraps of the rotation it speaks of: "the rewrap
    /// a → b completed" says nothing of a → c's.
    #[test]
    fn completed_settles_no_open_rewrap_of_another_rotation() {
        let taken = attest(
            &rewrap_to_c_unanswered("sim:/f.yaml", true),
            "sim:/f.yaml",
            true,
        )
        .unwrap();
        assert!(
            !taken.iter().any(|r| matches!(r, Record::Outcome { .. })),
            "{taken:?}"
        );
        assert!(taken.iter().any(|r| matches!(r, Record::Attested { .. })));
    }

    #[test]
    fn a_loss_since_the_rotation_began_refuses_not_run_and_an_older_one_does_not() {
        let refused = lost_records(&[started("i1"), cut()], "I1", "the journal").unwrap_err();
        assert!(
            refused
                .0
                .contains("lost records (mkplan last left it with 9 records and found 5)"),
            "{}",
            refused.0
        );
        assert!(lost_records(&[cut()], "i1", "the journal").is_err());
        // A rotation begun after the cut is recorded whole.
        assert!(lost_records(&[cut(), started("i1")], "i1", "the journal").is_ok());
        // Another instance's rotation does not make the cut older for this one.
        assert!(lost_records(&[cut(), started("i2")], "i1", "the journal").is_err());
        assert!(lost_records(&[started("i1")], "i1", "the journal").is_ok());
    }
}
