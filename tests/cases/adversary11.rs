//! Regressions from the eleventh adversarial review, HPCS side (/work/adv/r11).
//!
//! F2: folder s1's rewrap went unanswered; then the journal key was replaced (moved away
//! after a suspected leak, as docs/security.md says to). Heads are kept per key id, so s1's
//! head stayed under the old key's id, which the new key never read: a fresh folder s2 took
//! `attest --not-run`, planned a second rewrap and lost the key storage. Now the heads kept
//! for earlier keys are asked too: s2 refuses, naming s1 and how to settle it there.
//!
//! F1 and F1b (an attestation stamped by a clock that ran ahead outweighed another folder's
//! later rewrap) need a clock moved under a running mkplan; they are covered where the rule
//! lives, `plan::evidence_tests::an_attestation_speaks_only_for_the_other_folders_rewraps_it_
//! weighed_whatever_the_clocks_say`, and below: an attestation names the rewraps it weighed.

use crate::cases::adversary3::{assert_says, said};
use crate::cases::adversary4::{in_folder, rewrap_unanswered_in};
use crate::cases::apply::{assert_no_incidents, three_units};
use crate::cases::security_journal::NOT_RUN;
use crate::support::*;

#[test]
fn a_folder_written_with_a_replaced_journal_key_still_refuses_another_folders_plan() {
    let ws = rotate_to_b(&three_units(false));
    rewrap_unanswered_in(&ws, "s1");
    let old_heads = ws.heads();
    // The key is replaced: the next run makes a new one.
    std::fs::rename(ws.journal_key(), ws.path("journal.key.leaked")).unwrap();
    let s1 = ws.path("s1").canonicalize().unwrap().display().to_string();
    let before = ws.bytes(FLEET);

    let attest = in_folder(&ws, "s2", &NOT_RUN, &[]);
    assert_says(&attest, 3, &[&s1, "earlier journal key"], "s2's attest");
    let plan = in_folder(&ws, "s2", &["plan", DESIRED], &[]);
    assert_says(
        &plan,
        3,
        &[
            "rewrap_evidence",
            &s1,
            "earlier journal key",
            "remove its head",
        ],
        "s2's plan",
    );
    assert!(!said(&plan).contains("Plan:"), "{}", said(&plan));
    let apply = in_folder(
        &ws,
        "s2",
        &["apply", DESIRED, "--auto-approve"],
        &crate::cases::apply::PASSWORDS,
    );
    assert_says(&apply, 3, &["rewrap_evidence", &s1], "s2's apply");
    assert_eq!(ws.bytes(FLEET), before, "nothing was sent");
    assert_no_incidents(&ws, "s2 after a replaced key");

    // The head names the folder: once the operator removes it (their word that s1 holds
    // no rewrap), s2 plans again.
    let head = std::fs::read_dir(&old_heads)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            let chain = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("chain-"));
            !chain && std::fs::read_to_string(p).is_ok_and(|t| t.contains("\"rewraps\""))
        })
        .expect("s1's head under the old key's id");
    std::fs::remove_file(head).unwrap();
    let plan = in_folder(&ws, "s2", &["plan", DESIRED], &[]);
    assert!(
        !said(&plan).contains(&s1),
        "the removed head no longer names s1: {}",
        said(&plan)
    );
}

/// Every attestation names the other folders' rewraps it weighed, whatever it attests: a
/// later plan lets it speak for those and no others.
#[test]
fn an_attestation_names_the_other_folders_rewraps_it_weighed() {
    let ws = rotate_to_b(&three_units(false));
    rewrap_unanswered_in(&ws, "s1");
    let mut completed = NOT_RUN.to_vec();
    completed.retain(|a| *a != "--not-run");
    completed.push("--completed");
    let run = in_folder(&ws, "s2", &completed, &[]);
    assert_eq!(run.code, 0, "{}", said(&run));
    let journal = ws.read("s2/journal.jsonl");
    let attested = journal
        .lines()
        .find(|l| l.contains("\"attested\""))
        .unwrap_or_else(|| panic!("an attestation in {journal}"));
    assert!(attested.contains("\"weighed\":["), "{attested}");
    assert!(attested.contains("/s1|"), "s1's rewrap weighed: {attested}");
}

/// A rotation's record names the other folders' rewraps its plan weighed (none here): a later
/// plan lets it speak for a completed one only if it is named, whatever the time stamps say
/// (`plan::evidence_tests::a_rotation_speaks_only_for_the_completed_rewraps_its_plan_weighed_
/// whatever_the_clocks_say`).
#[test]
fn a_rotations_record_names_the_other_folders_rewraps_its_plan_weighed() {
    let ws = rotate_to_b(&three_units(false));
    rewrap_unanswered_in(&ws, "s1");
    let journal = ws.read("s1/journal.jsonl");
    let started = journal
        .lines()
        .find(|l| l.contains("\"rotation_started\""))
        .unwrap_or_else(|| panic!("a rotation in {journal}"));
    assert!(started.contains("\"weighed\":[]"), "{started}");
    assert_no_incidents(&ws, "s1's unanswered rewrap");
}
