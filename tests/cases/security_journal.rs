//! What someone who can write the state folder, but not read the journal key, can make the
//! journal say (issue: security, point 4). Each test plants the forgery and shows it refused
//! as evidence, with nothing sent, and the simulator as the judge.

use mkplan::apply::journal::{Outcome, Record};
use mkplan::model::VerificationPattern;
use sha2::{Digest, Sha256};

use crate::cases::apply::{PASSWORDS, assert_converged, assert_no_incidents, three_units};
use crate::support::*;

fn apply(ws: &Workspace, faults: &str) -> Run {
    let mut env = PASSWORDS.to_vec();
    if !faults.is_empty() {
        env.push(("MKPLAN_SIM_FAULTS", faults));
    }
    ws.mkplan_with_env(
        &["apply", DESIRED, "--auto-approve", "--parallelism", "1"],
        &env,
    )
}

/// A rotation on a service without rotation status, killed after the 3 loads and 3 commits:
/// the rewrap was never sent, and only the journal knows it.
pub(crate) fn interrupted_after_the_commits() -> Workspace {
    let ws = rotate_to_b(&three_units(false));
    assert_eq!(apply(&ws, "crash_after_op=6").code, -1);
    ws
}

fn vp(text: &str) -> VerificationPattern {
    VerificationPattern::parse(text).unwrap()
}

/// A journal line as an attacker writes it: the record and its recomputed SHA-256, and
/// `seal` (none, or one copied from a genuine line).
fn forged_line(record: &Record, seal: Option<&str>) -> String {
    let sha256 = hex::encode(Sha256::digest(serde_json::to_vec(record).unwrap()));
    let mut line = serde_json::json!({ "sha256": sha256, "record": record });
    if let Some(seal) = seal {
        line["seal"] = seal.into();
    }
    line.to_string() + "\n"
}

/// The forgery of the review: "the rewrap completed" (mkplan's own rewrap request and its
/// outcome), and a fresh "completed" attestation to vouch for it.
fn rewrap_completed(seal: Option<&str>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    [
        Record::Intent {
            step: "r1.rewrap".into(),
            action: mkplan::plan::Action::RewrapKeyStorage,
            instance: INSTANCE.into(),
            unit: None,
            by_hand: false,
            send_within_ms: None,
            at: None,
        },
        Record::Outcome {
            step: "r1.rewrap".into(),
            outcome: Outcome::Done,
            at: None,
        },
    ]
    .iter()
    .map(|r| forged_line(r, seal))
    .collect::<String>()
        + &forged_line(
            &Record::Attested {
                instance: INSTANCE.into(),
                backend: String::new(),
                units: vec![],
                from: vp(A),
                to: vp(B),
                ran: true,
                statement: "forged".into(),
                service_evidence: None,
                at: "now".into(),
                at_unix: Some(now),
                weighed: None,
            },
            seal,
        )
}

/// Appends `text` to the workspace's journal, as the attacker does.
fn plant(ws: &Workspace, text: &str) {
    let path = ws.path(".mkplan/journal.jsonl");
    let mut journal = std::fs::read_to_string(&path).unwrap();
    journal += text;
    std::fs::write(&path, journal).unwrap();
}

/// The attestation record's binding as the binary writes it (the backend identity and the
/// units), taken from the journal's own rotation record so the forgery is exact.
fn bind_attestation(ws: &Workspace, forged: &str) -> String {
    let journal = ws.read(".mkplan/journal.jsonl");
    let rotation = journal
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["record"]["kind"] == "rotation_started")
        .expect("the apply recorded its rotation");
    forged
        .lines()
        .map(|line| {
            let mut line: serde_json::Value = serde_json::from_str(line).unwrap();
            if line["record"]["kind"] == "attested" {
                line["record"]["backend"] = rotation["record"]["backend"].clone();
                line["record"]["units"] = rotation["record"]["units"].clone();
                let record: Record = serde_json::from_value(line["record"].clone()).unwrap();
                let seal = line.get("seal").and_then(|s| s.as_str()).map(String::from);
                return forged_line(&record, seal.as_deref());
            }
            line.to_string() + "\n"
        })
        .collect()
}

/// A refusal for safety that names the unauthenticated record, and touched nothing.
#[track_caller]
fn assert_refused_untouched(ws: &Workspace, run: &Run, before: &[u8], context: &str) {
    assert_eq!(run.code, 3, "{context}\n{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("is not authenticated"),
        "{context}: the refusal must name the forged record\n{}",
        run.stderr
    );
    assert_eq!(ws.bytes(FLEET), before, "{context}: the fleet was touched");
    assert_no_incidents(ws, context);
}

/// The review's attack: on a service without rotation status, after the commits, forged
/// lines (checksums recomputed; no seal, or a seal copied from a genuine line) say "the
/// rewrap completed" and vouch for it. Before seals, the plan was set immediate only, and the
/// key storage lost. Now they are no evidence: plan and apply refuse (exit 3), naming the
/// record, and send nothing. They still refuse the operator's plain `--not-run` (a record of a
/// rewrap mkplan sent, even unverified, makes mkplan more careful); the operator's
/// attestation with the service's evidence, sealed, then settles it, and the rotation
/// converges with zero incidents, the forged lines still in the file.
#[test]
fn forged_rewrap_completed_lines_are_no_evidence() {
    for copied_seal in [false, true] {
        let ws = interrupted_after_the_commits();
        let genuine_seal = ws
            .read(".mkplan/journal.jsonl")
            .lines()
            .last()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seal"].clone())
            .and_then(|s| s.as_str().map(String::from))
            .expect("mkplan seals its records");
        let seal = copied_seal.then_some(genuine_seal.as_str());
        plant(&ws, &bind_attestation(&ws, &rewrap_completed(seal)));
        let before = ws.bytes(FLEET);
        let plan = ws.mkplan(&["plan", DESIRED]);
        assert_refused_untouched(&ws, &plan, &before, "plan after the forgery");
        let rerun = apply(&ws, "");
        assert_refused_untouched(&ws, &rerun, &before, "apply after the forgery");
        assert!(!rerun.stderr.contains("set_immediate"), "{}", rerun.stderr);
        // Lines that cannot vouch still refuse the operator's plain word against them: only
        // the service's evidence settles a rewrap they say mkplan sent.
        says(&ws.mkplan(&NOT_RUN), 3, "they are enough to refuse");
        let mut with_evidence = NOT_RUN.to_vec();
        with_evidence.extend(["--service-evidence", "IBM support: the storage is under A"]);
        ws.mkplan(&with_evidence).expect_code(0);
        let settled = apply(&ws, "");
        assert_eq!(settled.code, 0, "{}", settled.stderr);
        assert_converged(&ws, B);
        assert_no_incidents(&ws, "after the operator's attestation");
    }
}

/// Genuine, sealed lines replayed from another journal (a rotation that did complete, in
/// another folder of the same user) do not verify here: each seal chains to the line before
/// it where it was written.
#[test]
fn sealed_lines_replayed_from_another_journal_are_no_evidence() {
    let done = rotate_to_b(&three_units(false));
    assert_eq!(apply(&done, "").code, 0);
    let replayed: String = done
        .read(".mkplan/journal.jsonl")
        .lines()
        .filter(|l| l.contains("rewrap_key_storage") || l.contains("\"kind\":\"outcome\""))
        .map(|l| l.to_string() + "\n")
        .collect();
    let ws = interrupted_after_the_commits();
    plant(&ws, &replayed);
    let before = ws.bytes(FLEET);
    let rerun = apply(&ws, "");
    assert_refused_untouched(&ws, &rerun, &before, "apply after the replay");
}

/// A journal sealed with another key (another machine or user, or a key lost) is no evidence
/// either, and the refusal says so; a key kept inside the state folder, or that others may
/// read, is refused before anything is read or sent.
#[test]
fn journal_keys_are_the_users_own_and_kept_outside_the_state_folder() {
    let ws = interrupted_after_the_commits();
    let before = ws.bytes(FLEET);
    let other_key = ws.path("other/journal.key");
    let other = other_key.to_str().unwrap();
    let run = ws.mkplan_with_env(&["plan", DESIRED], &[("MKPLAN_JOURNAL_KEY", other)]);
    says(&run, 3, "there is no journal key here");
    let mut env = PASSWORDS.to_vec();
    env.push(("MKPLAN_JOURNAL_KEY", other));
    let run = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &env);
    says(&run, 3, "sealed with another journal key");
    assert_eq!(ws.bytes(FLEET), before);
    let inside = ws.path(".mkplan/journal.key");
    let run = ws.mkplan_with_env(
        &["plan", DESIRED],
        &[("MKPLAN_JOURNAL_KEY", inside.to_str().unwrap())],
    );
    says(&run, 1, "inside the state folder");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&other_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = ws.mkplan_with_env(&["plan", DESIRED], &[("MKPLAN_JOURNAL_KEY", other)]);
    says(&run, 1, "chmod 600");
    assert_eq!(ws.bytes(FLEET), before);
    assert_no_incidents(&ws, "other keys");
}

/// Removing the audit trail's last entries kept the chain intact, and `audit verify` said so.
/// The journal's sealed records anchor the trail's head at each run's start and end: the
/// truncation is found, and apply refuses to extend the trail (exit 3) and sends nothing.
#[test]
fn removing_the_audit_trails_last_entries_is_found() {
    let ws = rotate_to_b(&three_units(true));
    assert_eq!(apply(&ws, "").code, 0);
    let intact = ws.mkplan(&["audit", "verify"]);
    assert_eq!(intact.code, 0, "{}", intact.stderr);
    let entries = ws.read(".mkplan/audit.jsonl").lines().count();
    keep_audit_entries(&ws, entries - 2);
    let run = ws.mkplan(&["audit", "verify"]);
    says(&run, 1, "its last entries were removed");
    // Mid-rotation: two runs died (after the loads, then after the commits); the trail is
    // cut back below what the second run's start anchored. The rerun must not write over the
    // gap.
    let ws = rotate_to_b(&three_units(true));
    assert_eq!(apply(&ws, "crash_after_op=3").code, -1);
    assert_eq!(apply(&ws, "crash_after_op=3").code, -1);
    keep_audit_entries(&ws, 2);
    let before = ws.bytes(FLEET);
    let run = apply(&ws, "");
    says(&run, 3, "its last entries were removed");
    assert_eq!(ws.bytes(FLEET), before);
    assert_no_incidents(&ws, "a truncated audit trail");
}

/// Cuts the audit trail back to its first `n` entries, as the attacker does.
fn keep_audit_entries(ws: &Workspace, n: usize) {
    let kept: String = ws
        .read(".mkplan/audit.jsonl")
        .lines()
        .take(n)
        .map(|l| l.to_string() + "\n")
        .collect();
    ws.write(".mkplan/audit.jsonl", &kept);
}

/// The run exited with `code` and said `words`.
#[track_caller]
pub(crate) fn says(run: &Run, code: i32, words: &str) {
    assert_eq!(run.code, code, "{}", run.stderr);
    assert!(run.stderr.contains(words), "{}", run.stderr);
}

/// The adversarial review's break: every genuine prefix of a journal verifies line by line,
/// so cutting the journal back to a fresh `--not-run` attestation (after mkplan had sent the
/// rewrap it allowed) used to send a second rewrap and lose the key storage. The journal's
/// head, kept among the journal heads, shows the cut: the rerun refuses (exit 3) and sends nothing.
#[test]
fn cutting_the_journal_back_to_a_fresh_attestation_sends_no_second_rewrap() {
    let ws = interrupted_after_the_commits();
    attest_not_run(&ws);
    let attested = ws.read(".mkplan/journal.jsonl");
    // The rewrap is sent (and completes); the run dies before set immediate.
    assert_eq!(apply(&ws, "crash_after_op=1").code, -1);
    ws.write(".mkplan/journal.jsonl", &attested);
    let before = ws.bytes(FLEET);
    let rerun = apply(&ws, "");
    says(&rerun, 3, "cut back or replaced");
    assert_eq!(
        ws.bytes(FLEET),
        before,
        "the refused rerun touched the fleet"
    );
    assert_no_incidents(&ws, "the rerun after the cut");
    // The audit trail cannot be vouched for either, and says why.
    says(&ws.mkplan(&["audit", "verify"]), 1, "");
}

/// The same cut, back to before the attestation, used to make the plan say "the journal
/// never sent the rewrap" about a rewrap mkplan itself had sent. Now the plan says the
/// journal was cut back, and never that.
#[test]
fn a_journal_cut_back_never_speaks_for_what_it_lost() {
    let ws = interrupted_after_the_commits();
    let before_attesting = ws.read(".mkplan/journal.jsonl");
    attest_not_run(&ws);
    assert_eq!(apply(&ws, "crash_after_op=1").code, -1);
    ws.write(".mkplan/journal.jsonl", &before_attesting);
    let plan = ws.mkplan(&["plan", DESIRED]);
    says(&plan, 3, "cut back or replaced");
    assert!(!plan.stderr.contains("never sent"), "{}", plan.stderr);
    // Removing the whole state folder is a cut too.
    std::fs::remove_dir_all(ws.path(".mkplan")).unwrap();
    says(&ws.mkplan(&["plan", DESIRED]), 3, "cut back or replaced");
    assert_no_incidents(&ws, "plans after the cut");
}

/// The adversary's fork: the state folder copied (another path, the same user and journal
/// key) while a `--not-run` attestation was in force. The original's apply used it (the
/// rewrap sent, then a crash); an apply from the copy used to use it again and send a second
/// rewrap. Both journals share one chain, whose head is kept among the journal heads by the first
/// record's seal: the copy no longer extends it, and is refused with what it missed.
#[test]
fn a_copy_of_the_state_folder_cannot_use_an_attestation_the_original_used() {
    let ws = interrupted_after_the_commits();
    attest_not_run(&ws);
    let copied = std::process::Command::new("cp")
        .args(["-a", ".mkplan", "copy"])
        .current_dir(ws.path("."))
        .status()
        .unwrap();
    assert!(copied.success());
    assert_eq!(apply(&ws, "crash_after_op=1").code, -1);
    let before = ws.bytes(FLEET);
    let mut env = PASSWORDS.to_vec();
    env.push(("MKPLAN_STATE_DIR", "copy"));
    let from_copy = ws.mkplan_with_env(
        &["apply", DESIRED, "--auto-approve", "--parallelism", "1"],
        &env,
    );
    says(&from_copy, 3, "a copy of this journal in");
    assert!(
        from_copy.stderr.contains("cut back or replaced"),
        "{}",
        from_copy.stderr
    );
    let plan = ws.mkplan_with_env(&["plan", DESIRED], &[("MKPLAN_STATE_DIR", "copy")]);
    says(&plan, 3, "a copy of this journal in");
    // Nor can the operator's word alone settle it from the copy: the records it lacks may
    // say (and here do say) that mkplan sent the rewrap.
    let attest = ws.mkplan_with_env(&NOT_RUN, &[("MKPLAN_STATE_DIR", "copy")]);
    says(&attest, 3, "lost records");
    assert!(
        attest.stderr.contains("--service-evidence"),
        "{}",
        attest.stderr
    );
    assert_eq!(
        ws.bytes(FLEET),
        before,
        "the copy's apply touched the fleet"
    );
    assert_no_incidents(&ws, "an apply from a copy of the state folder");
}

/// `attest rewrap --not-run`: the operator's word that nobody rewrapped since.
pub(crate) const NOT_RUN: [&str; 6] = [
    "attest",
    "rewrap",
    INSTANCE,
    "--not-run",
    "--desired",
    DESIRED,
];

/// The operator's word: nobody rewrapped since.
pub(crate) fn attest_not_run(ws: &Workspace) {
    ws.mkplan(&NOT_RUN).expect_code(0);
}
