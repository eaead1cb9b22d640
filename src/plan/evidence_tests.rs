//! The witness rules, on live states built in memory.

use std::collections::BTreeSet;

use super::*;
use crate::keypart::Secret32;
use crate::model::{
    Administrator, CryptoUnit, FreshAttestation, JournalRotation, Mode, Ski, UnitType,
};

const INSTANCE: &str = "5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b";

fn key(byte: u8) -> VerificationPattern {
    Secret32::from_bytes([byte; 32]).verification_pattern()
}

fn unit(index: usize, new_register: NewRegister, current: u8) -> CryptoUnit {
    CryptoUnit {
        hsm_id: format!("0a1b2c3d-0000-4000-8000-{index:012}"),
        unit_type: UnitType::Operational,
        location: format!("[us-south].[AZ1-CS1].[01].[{index:02}]"),
        mode: Mode::Admin,
        signature_threshold: 2,
        revocation_threshold: 2,
        administrators: vec![Administrator {
            name: "alice".into(),
            ski: Ski::parse(&format!("{:064x}", 1)).unwrap(),
            public_key: None,
        }],
        new_register,
        current_register: CurrentRegister::Valid(key(current)),
    }
}

fn instance(status: RewrapStatus, units: Vec<CryptoUnit>) -> LiveInstance {
    LiveInstance {
        id: INSTANCE.into(),
        region: "us-south".into(),
        rewrap_status: status,
        crypto_units: units,
    }
}

fn committed(byte: u8) -> NewRegister {
    NewRegister::FullCommitted(key(byte))
}

fn rotation(rewrap: JournalRewrap, seen: &[usize]) -> JournalRotation {
    let ids = |ns: &[usize]| -> BTreeSet<String> {
        ns.iter()
            .map(|i| format!("0a1b2c3d-0000-4000-8000-{i:012}"))
            .collect()
    };
    JournalRotation {
        from: key(0xA),
        to: key(0xB),
        units: (0..3)
            .map(|i| format!("0a1b2c3d-0000-4000-8000-{i:012}"))
            .collect(),
        started_at: Some("2026-11-30T10:00:00Z".into()),
        rewrap,
        loaded: ids(seen),
        committed: ids(seen),
        committed_at: Some("2026-11-30T10:05:00Z".into()),
        promoted: BTreeSet::new(),
        promotion_sent: BTreeSet::new(),
        attested_not_run: None,
        attested_completed: None,
        foreign_rewrap: None,
    }
}

fn journal(rotation: Option<JournalRotation>) -> JournalEvidence {
    let mut evidence = JournalEvidence {
        witness: "the journal in .mkplan".into(),
        ..JournalEvidence::default()
    };
    if let Some(r) = rotation {
        evidence.rotations.insert(INSTANCE.into(), r);
    }
    evidence
}

fn staged_everywhere(status: RewrapStatus) -> LiveInstance {
    instance(
        status,
        (0..3).map(|i| unit(i, committed(0xB), 0xA)).collect(),
    )
}

#[test]
fn a_journal_interrupted_after_its_commits_is_not_proof() {
    let live = staged_everywhere(RewrapStatus::NotReported);
    let refused = find_key_storage_mk(
        &live,
        &key(0xB),
        &journal(Some(rotation(JournalRewrap::NotSent, &[0, 1, 2]))),
    )
    .unwrap_err();
    assert_eq!(refused.check, Check::RewrapEvidence);
    assert!(
        refused.detail.contains("run stopped before it"),
        "{refused}"
    );
    assert!(refused.fix.contains("mkplan attest rewrap"), "{refused}");
}

#[test]
fn the_operators_attestation_closes_the_gap() {
    let live = staged_everywhere(RewrapStatus::NotReported);
    let mut attested = rotation(JournalRewrap::NotSent, &[0, 1, 2]);
    attested.attested_not_run = Some(FreshAttestation {
        at: "2026-11-30T11:00:00Z".into(),
        weighed: Some(Vec::new()),
    });
    let found = find_key_storage_mk(&live, &key(0xB), &journal(Some(attested))).unwrap();
    assert_eq!(found.key_storage_under, key(0xA));
    let said = found.evidence.join("\n");
    assert!(
        said.contains("witnessed the commits at 2026-11-30T10:05:00Z"),
        "{said}"
    );
    assert!(
        said.contains("confirmed by the operator at 2026-11-30T11:00:00Z"),
        "{said}"
    );
}

#[test]
fn loads_by_someone_else_are_not_witnessed() {
    let units = (0..3)
        .map(|i| unit(i, NewRegister::FullUncommitted(key(0xB)), 0xA))
        .collect();
    let live = instance(RewrapStatus::NotReported, units);
    let partly = rotation(JournalRewrap::NotSent, &[0, 1]);
    let refused = find_key_storage_mk(&live, &key(0xB), &journal(Some(partly))).unwrap_err();
    assert!(refused.detail.contains("did not see the load"), "{refused}");
    let mut all = rotation(JournalRewrap::NotSent, &[0, 1, 2]);
    all.committed.clear();
    let found = find_key_storage_mk(&live, &key(0xB), &journal(Some(all))).unwrap();
    assert_eq!(found.key_storage_under, key(0xA));
}

#[test]
fn a_rotation_recorded_against_other_units_is_no_evidence() {
    let live = staged_everywhere(RewrapStatus::NotReported);
    let mut elsewhere = rotation(JournalRewrap::Completed { how: "done".into() }, &[0, 1, 2]);
    elsewhere.units = vec!["ffffffff-0000-4000-8000-000000000000".into()];
    let refused = find_key_storage_mk(&live, &key(0xB), &journal(Some(elsewhere))).unwrap_err();
    assert!(
        refused.detail.contains("against other crypto units"),
        "{refused}"
    );
}

#[test]
fn a_converged_instance_is_finished_whatever_old_records_say() {
    let units = (0..3).map(|i| unit(i, NewRegister::Empty, 0xB)).collect();
    let live = instance(RewrapStatus::NotReported, units);
    let stale = rotation(JournalRewrap::NotSent, &[0, 1, 2]);
    let found = find_key_storage_mk(&live, &key(0xB), &journal(Some(stale))).unwrap();
    assert_eq!(found.key_storage_under, key(0xB));
}

#[test]
fn rewrapped_candidates_come_from_every_register() {
    // A rewrap A → C, then u2 and u3 restaged with B by hand: C may be the storage's key.
    let units = vec![
        unit(0, NewRegister::FullUncommitted(key(0xC)), 0xA),
        unit(1, committed(0xB), 0xA),
        unit(2, committed(0xB), 0xA),
    ];
    let live = instance(RewrapStatus::Rewrapped, units);
    let refused = find_key_storage_mk(&live, &key(0xB), &journal(None)).unwrap_err();
    assert_eq!(refused.check, Check::RewrapEvidence, "{refused}");
}

#[test]
fn promoted_units_and_staged_copies_name_the_rewrapped_key() {
    // scenarios.md row 4: u1 promoted, u2 and u3 staged.
    let units = vec![
        unit(0, NewRegister::Empty, 0xB),
        unit(1, committed(0xB), 0xA),
        unit(2, committed(0xB), 0xA),
    ];
    let live = instance(RewrapStatus::Rewrapped, units);
    let found = find_key_storage_mk(&live, &key(0xB), &journal(None)).unwrap();
    assert_eq!(found.key_storage_under, key(0xB));
}

#[test]
fn lost_staged_copies_need_a_second_witness() {
    // u1 promoted; u2 and u3 lost their staged copy: A or B, by the registers and status.
    let units = vec![
        unit(0, NewRegister::Empty, 0xB),
        unit(1, NewRegister::Empty, 0xA),
        unit(2, NewRegister::Empty, 0xA),
    ];
    let live = instance(RewrapStatus::Rewrapped, units);
    let refused = find_key_storage_mk(&live, &key(0xB), &journal(None)).unwrap_err();
    assert!(refused.detail.contains("may be under any of"), "{refused}");
    let mut done = rotation(JournalRewrap::Completed { how: "done".into() }, &[0, 1, 2]);
    done.promoted
        .insert("0a1b2c3d-0000-4000-8000-000000000000".into());
    let found = find_key_storage_mk(&live, &key(0xB), &journal(Some(done))).unwrap();
    assert_eq!(found.key_storage_under, key(0xB));
}

#[test]
fn a_completed_rewrap_needs_a_voucher_for_the_time_since() {
    // Rewrapped A → B, nobody promoted: the same registers as after a rotation on to B and
    // back to A with B staged again.
    let live = staged_everywhere(RewrapStatus::NotReported);
    let done = rotation(JournalRewrap::Completed { how: "done".into() }, &[0, 1, 2]);
    let refused = find_key_storage_mk(&live, &key(0xB), &journal(Some(done.clone()))).unwrap_err();
    assert!(refused.detail.contains("rotated back"), "{refused}");
    let mut attested = done;
    attested.attested_completed = Some(FreshAttestation {
        at: "2026-11-30T11:00:00Z".into(),
        weighed: Some(Vec::new()),
    });
    let found = find_key_storage_mk(&live, &key(0xB), &journal(Some(attested))).unwrap();
    assert_eq!(found.key_storage_under, key(0xB));
}

#[test]
fn a_rewrap_in_progress_refuses() {
    let live = staged_everywhere(RewrapStatus::InProgress);
    let refused = find_key_storage_mk(&live, &key(0xB), &journal(None)).unwrap_err();
    assert!(refused.detail.contains("in progress"), "{refused}");
}

/// A completed rewrap leaves its key Full Committed in every new register until set
/// immediate: an attestation that it completed, while one unit holds it uncommitted and none
/// is promoted, contradicts the registers. They never choose a key: alone, they settle nothing.
#[test]
fn an_attested_completion_the_registers_rule_out_is_a_contradiction() {
    let mut units: Vec<CryptoUnit> = (1..3).map(|i| unit(i, committed(0xB), 0xA)).collect();
    units.insert(0, unit(0, NewRegister::FullUncommitted(key(0xB)), 0xA));
    let live = instance(RewrapStatus::NotReported, units);
    let mut attested = rotation(
        JournalRewrap::Completed {
            how: "the operator attested".into(),
        },
        &[0, 1, 2],
    );
    attested.attested_completed = Some(FreshAttestation {
        at: "2026-11-30T11:00:00Z".into(),
        weighed: Some(Vec::new()),
    });
    let refused = find_key_storage_mk(&live, &key(0xB), &journal(Some(attested))).unwrap_err();
    assert_eq!(refused.check, Check::EvidenceConsistent);
    assert!(
        refused.detail.contains("journal says it is under"),
        "{refused}"
    );
    assert!(
        refused.detail.contains("live state says it is not under")
            && refused.detail.contains("Full Uncommitted"),
        "{refused}"
    );
    let refused = find_key_storage_mk(&live, &key(0xB), &journal(None)).unwrap_err();
    assert_eq!(refused.check, Check::RewrapEvidence);
}

/// Records the journal can no longer verify that say mkplan sent the rewrap are named, and
/// the fix offers no plain `--not-run`.
#[test]
fn an_unverified_record_of_a_rewrap_is_named_and_refuses_plain_not_run() {
    let live = staged_everywhere(RewrapStatus::NotReported);
    let mut evidence = journal(None);
    evidence
        .unauthenticated
        .insert(INSTANCE.into(), "no journal key".into());
    evidence.unverified_rewraps.insert(
        INSTANCE.into(),
        vec![crate::model::RewrapOnRecord {
            step: "r1.s7".into(),
            from: Some(key(0xA)),
            to: Some(key(0xB)),
            completed: false,
            sent_at: Some("2026-11-30T10:00:00Z".into()),
            intent_at: None,
            verified: false,
            by_hand: false,
        }],
    );
    let refused = find_key_storage_mk(&live, &key(0xB), &evidence).unwrap_err();
    assert!(refused.detail.contains("never answered"), "{refused}");
    assert!(refused.detail.contains("enough to refuse"), "{refused}");
    assert!(refused.fix.contains("--service-evidence"), "{refused}");
    assert!(!refused.fix.contains("--not-run --desired"), "{refused}");
}

/// Every new register cleared after the journal's rewrap A → B, every current A. Neither a
/// rewrap never answered (it may still land) nor one seen to complete (its key was cleared)
/// lets the registers' "no rewrap can have moved it" decide; with the service "waiting on set
/// immediate", no key is left that it can have rewrapped to: a contradiction naming B.
#[test]
fn registers_cleared_after_a_rewrap_the_journal_sent_never_plan_another() {
    let cleared = |status| {
        instance(
            status,
            (0..3).map(|i| unit(i, NewRegister::Empty, 0xA)).collect(),
        )
    };
    let unanswered = JournalRewrap::Unsettled {
        sent_at: Some("2026-11-30T10:06:00Z".into()),
        by_hand: false,
    };
    let completed = JournalRewrap::Completed {
        how: "mkplan's own rewrap request completed".into(),
    };
    for rewrap in [unanswered, completed.clone()] {
        let evidence = journal(Some(rotation(rewrap.clone(), &[0, 1, 2])));
        let refused =
            find_key_storage_mk(&cleared(RewrapStatus::NotReported), &key(0xB), &evidence)
                .unwrap_err();
        assert_eq!(
            refused.check,
            Check::RewrapEvidence,
            "{rewrap:?}: {refused}"
        );
    }
    let (candidates, _) = rewrapped_candidates(&cleared(RewrapStatus::Rewrapped));
    assert!(candidates.is_empty(), "{candidates:?}");
    let refused = find_key_storage_mk(
        &cleared(RewrapStatus::Rewrapped),
        &key(0xB),
        &journal(Some(rotation(completed, &[0, 1, 2]))),
    )
    .unwrap_err();
    assert_eq!(refused.check, Check::EvidenceConsistent, "{refused}");
    assert!(refused.fix.contains(key(0xB).short()), "{refused}");
    // With no journal rotation the registers still decide, as before.
    let found = find_key_storage_mk(
        &cleared(RewrapStatus::NotReported),
        &key(0xB),
        &journal(None),
    )
    .unwrap();
    assert_eq!(found.key_storage_under, key(0xA));
}

// ---------------------------------------------------------------------------------------------
// The other state folders of this machine (`evidence_folders`)

/// Every current register holds A and every new register is Empty: the registers' own claim.
fn nothing_staged() -> LiveInstance {
    instance(
        RewrapStatus::NotReported,
        (0..3).map(|i| unit(i, NewRegister::Empty, 0xA)).collect(),
    )
}

fn folder_rewrap(folder: &str, completed: bool, sent_at: &str) -> crate::model::FolderRewrap {
    crate::model::FolderRewrap {
        state_dir: folder.into(),
        scope: None,
        backend: "sim:/srv/fleet.yaml".into(),
        rewrap: crate::model::RewrapOnRecord {
            step: "r1.s7".into(),
            from: Some(key(0xA)),
            to: Some(key(0xB)),
            completed,
            sent_at: Some(sent_at.into()),
            intent_at: Some(sent_at.into()),
            verified: true,
            by_hand: false,
        },
    }
}

fn with_folders(
    mut evidence: JournalEvidence,
    rewraps: Vec<crate::model::FolderRewrap>,
    unread: Vec<crate::model::UnreadFolder>,
) -> JournalEvidence {
    if !rewraps.is_empty() {
        evidence
            .other_folders
            .rewraps
            .insert(INSTANCE.into(), rewraps);
    }
    evidence.other_folders.unread = unread;
    evidence
}

fn unread(folder: &str, instances: Option<Vec<String>>) -> crate::model::UnreadFolder {
    crate::model::UnreadFolder {
        state_dir: folder.into(),
        head: format!("/home/op/.config/mkplan/heads/{folder}"),
        why: "its journal is gone".into(),
        instances,
    }
}

#[test]
fn another_folders_unanswered_rewrap_refuses_even_the_registers_own_claim() {
    let evidence = with_folders(
        journal(None),
        vec![folder_rewrap("/srv/s1", false, "2026-11-30T09:00:00Z")],
        Vec::new(),
    );
    let refused = find_key_storage_mk(&nothing_staged(), &key(0xC), &evidence).unwrap_err();
    assert_eq!(refused.check, Check::RewrapEvidence);
    assert!(refused.detail.contains("/srv/s1"), "{refused}");
    assert!(refused.detail.contains("never answered"), "{refused}");
    assert!(refused.fix.contains("--state /srv/s1"), "{refused}");
    // Without it, the registers speak.
    let found = find_key_storage_mk(&nothing_staged(), &key(0xC), &journal(None)).unwrap();
    assert_eq!(found.key_storage_under, key(0xA));
}

#[test]
fn evidence_about_this_rotations_rewrap_settles_another_folders_unanswered_one() {
    let other = folder_rewrap("/srv/s1", false, "2026-11-30T09:00:00Z");
    let live = staged_everywhere(RewrapStatus::NotReported);
    let evidence = |weighed: Option<Vec<String>>| {
        let mut attested = rotation(JournalRewrap::NotSent, &[0, 1, 2]);
        attested.attested_not_run = Some(FreshAttestation {
            at: "2026-11-30T11:00:00Z".into(),
            weighed,
        });
        with_folders(journal(Some(attested)), vec![other.clone()], Vec::new())
    };
    // The attestation weighed it: it speaks for it.
    let found = find_key_storage_mk(&live, &key(0xB), &evidence(Some(vec![other.witnessed()])));
    assert_eq!(found.unwrap().key_storage_under, key(0xA));
}

/// Adversarial round 11, F1 and F1b: an attestation stamped after another folder's rewrap
/// intent, by a clock that ran ahead (stepped back since, or another machine's on the same
/// database), was made before that rewrap was on record. It weighed nothing, so it speaks
/// for nothing: the rewrap still refuses, whatever the time stamps say. So does an older
/// mkplan's attestation, which names nothing it weighed.
#[test]
fn an_attestation_speaks_only_for_the_other_folders_rewraps_it_weighed_whatever_the_clocks_say() {
    let other = folder_rewrap("/srv/s1", false, "2026-11-30T09:00:00Z");
    let live = staged_everywhere(RewrapStatus::NotReported);
    for weighed in [
        Some(Vec::new()),
        None,
        Some(vec![
            folder_rewrap("/srv/s2", false, "2026-11-30T09:00:00Z").witnessed(),
        ]),
    ] {
        let mut attested = rotation(JournalRewrap::NotSent, &[0, 1, 2]);
        attested.attested_not_run = Some(FreshAttestation {
            at: "2026-11-30T11:00:00Z".into(),
            weighed: weighed.clone(),
        });
        let evidence = with_folders(journal(Some(attested)), vec![other.clone()], Vec::new());
        let refused = find_key_storage_mk(&live, &key(0xB), &evidence).unwrap_err();
        assert_eq!(refused.check, Check::RewrapEvidence, "{weighed:?}");
        assert!(refused.detail.contains("/srv/s1"), "{weighed:?}: {refused}");
        assert!(
            refused.detail.contains("never answered"),
            "{weighed:?}: {refused}"
        );
    }
}

#[test]
fn another_folders_completed_rewrap_counts_only_after_this_journals_rotation_began() {
    let live = nothing_staged();
    let completed = vec![folder_rewrap("/srv/s1", true, "2026-11-30T09:00:00Z")];
    // This journal has no rotation of the instance: the registers may have been cleared
    // after that rewrap.
    let refused = find_key_storage_mk(
        &live,
        &key(0xC),
        &with_folders(journal(None), completed.clone(), Vec::new()),
    )
    .unwrap_err();
    assert!(refused.detail.contains("completed"), "{refused}");
    // A rotation whose record an older mkplan made names nothing it weighed: one it began
    // later, or in the same second, weighed it then, as far as the clocks tell.
    for (began, refuses) in [
        ("2026-11-30T09:30:00Z", false),
        ("2026-11-30T09:00:00Z", false),
        ("2026-11-30T08:59:59Z", true),
    ] {
        let mut evidence = with_folders(journal(None), completed.clone(), Vec::new());
        evidence.began.insert(
            INSTANCE.into(),
            crate::model::Began {
                at: Some(began.into()),
                weighed: None,
            },
        );
        let found = find_key_storage_mk(&live, &key(0xC), &evidence);
        assert_eq!(found.is_err(), refuses, "began {began}: {found:?}");
    }
}

#[test]
fn a_rotation_speaks_only_for_the_completed_rewraps_its_plan_weighed_whatever_the_clocks_say() {
    let live = nothing_staged();
    let completed = vec![folder_rewrap("/srv/s1", true, "2026-11-30T09:00:00Z")];
    let named = completed[0].witnessed();
    // Its record names what the plan that began it weighed: the time stamps say nothing
    // (a clock stepped back, or another machine's running behind, makes a rewrap sent while
    // the rotation ran look older than it).
    for (began, weighed, refuses) in [
        ("2026-11-30T09:30:00Z", vec![], true),
        (
            "2026-11-30T09:30:00Z",
            vec!["/srv/s2||sim:/srv/fleet.yaml|r1.s7|2026-11-30T09:00:00Z".to_string()],
            true,
        ),
        ("2026-11-30T08:00:00Z", vec![named.clone()], false),
        ("2026-11-30T09:30:00Z", vec![named.clone()], false),
    ] {
        let mut evidence = with_folders(journal(None), completed.clone(), Vec::new());
        evidence.began.insert(
            INSTANCE.into(),
            crate::model::Began {
                at: Some(began.into()),
                weighed: Some(weighed.clone()),
            },
        );
        let found = find_key_storage_mk(&live, &key(0xC), &evidence);
        assert_eq!(
            found.is_err(),
            refuses,
            "began {began}, weighed {weighed:?}: {found:?}"
        );
    }
}

#[test]
fn a_folder_that_cannot_be_read_blocks_the_instances_its_head_lists() {
    let live = nothing_staged();
    for (instances, refuses) in [
        (None, true),
        (Some(vec![INSTANCE.to_string()]), true),
        (Some(vec!["another-instance".to_string()]), false),
    ] {
        let evidence = with_folders(
            journal(None),
            Vec::new(),
            vec![unread("s1", instances.clone())],
        );
        let found = find_key_storage_mk(&live, &key(0xC), &evidence);
        assert_eq!(found.is_err(), refuses, "{instances:?}: {found:?}");
    }
}

#[test]
fn a_refusal_names_five_folders_and_counts_the_rest() {
    let folders: Vec<_> = (0..8).map(|i| unread(&format!("s{i}"), None)).collect();
    let evidence = with_folders(journal(None), Vec::new(), folders);
    let refused = find_key_storage_mk(&nothing_staged(), &key(0xC), &evidence).unwrap_err();
    assert!(refused.detail.contains("s4"), "{refused}");
    assert!(!refused.detail.contains("heads/s5"), "{refused}");
    assert!(refused.detail.contains("and 3 more"), "{refused}");
}

#[test]
fn a_rewrap_an_older_mkplan_bound_to_a_tke_url_alone_refuses_until_the_service_is_attested() {
    // Records of `tke:REGION (URL)`, from before the OA root was part of the identity: a
    // simulator at that URL or the service, nobody can tell.
    let legacy = "tke:us-south (http://127.0.0.1:8443)";
    let mut rewrap = folder_rewrap(".mkplan", true, "2026-11-30T09:00:00Z");
    rewrap.scope = Some(legacy.into());
    rewrap.backend = legacy.into();
    let evidence = with_folders(journal(None), vec![rewrap], Vec::new());
    let staged = instance(
        RewrapStatus::NotReported,
        (0..3)
            .map(|i| unit(i, NewRegister::FullCommitted(key(0xB)), 0xA))
            .collect(),
    );
    let refused = find_key_storage_mk(&staged, &key(0xB), &evidence).unwrap_err();
    assert_eq!(refused.check, Check::RewrapEvidence);
    assert!(refused.detail.contains(legacy), "{refused}");
    assert!(refused.fix.contains("older than this one"), "{refused}");
    assert!(refused.fix.contains("--service-evidence"), "{refused}");
    assert!(crate::plan::other_stores::is_legacy_tke(legacy));
    assert!(!crate::plan::other_stores::is_legacy_tke(
        "tke:us-south (http://127.0.0.1:8443; IBM's OA root)"
    ));
}

/// Round 12, F1 (variant C): a rewrap that records made against another identity of the
/// service say was sent from the current key and never answered, to whatever key, may still
/// be queued there. Neither the service's "no rewrap" nor registers with nothing staged
/// outweigh it, whatever rotation is staged now; one seen to complete, or sent from another
/// key, is no such rewrap.
#[test]
fn an_unanswered_rewrap_under_another_identity_outweighs_the_words_of_the_moment() {
    let elsewhere = |completed: bool, from: u8, to: u8| {
        let mut evidence = journal(None);
        evidence.rewraps_elsewhere.insert(
            INSTANCE.into(),
            vec![(
                "sim:/old/fleet.yaml".to_string(),
                crate::model::RewrapOnRecord {
                    step: "r1.s7".into(),
                    from: Some(key(from)),
                    to: Some(key(to)),
                    completed,
                    sent_at: Some("2026-11-30T09:00:00Z".into()),
                    intent_at: Some("2026-11-30T09:00:00Z".into()),
                    verified: true,
                    by_hand: false,
                },
            )],
        );
        evidence
    };
    let staged = staged_everywhere(RewrapStatus::NotRewrapped);
    let nothing = instance(
        RewrapStatus::NotRewrapped,
        (0..3).map(|i| unit(i, NewRegister::Empty, 0xA)).collect(),
    );
    // To B, the rotation staged now; to C, another one: either may still land.
    for to in [0xB, 0xC] {
        for live in [&staged, &nothing] {
            let refused =
                find_key_storage_mk(live, &key(0xB), &elsewhere(false, 0xA, to)).unwrap_err();
            assert_eq!(refused.check, Check::RewrapEvidence, "to {to:x}: {refused}");
            assert!(refused.detail.contains("sim:/old/fleet.yaml"), "{refused}");
        }
    }
    // Sent from another key: it cannot land on key storage under A.
    let found = find_key_storage_mk(&staged, &key(0xB), &elsewhere(false, 0xD, 0xC)).unwrap();
    assert_eq!(found.key_storage_under, key(0xA));
    // Seen to complete to C while the registers hold B: not this rotation's, and landed.
    let found = find_key_storage_mk(&staged, &key(0xB), &elsewhere(true, 0xA, 0xC)).unwrap();
    assert_eq!(found.key_storage_under, key(0xA));
}
