//! Regressions from the fifth adversarial review (repro5 P1, P3, P4, P5, P7): what another
//! state folder of this machine says must outweigh this journal's own word about its rewrap
//! when it came later, and a folder whose journal lost records, whose head cannot be read, or
//! whose rehearsal closed a rotation on another backend still answers for the rewrap it sent.
//! Each test runs the binary with state folders beside one journal key.

use crate::cases::adversary3::{assert_says, said};
use crate::cases::adversary4::{in_folder, with_a_rehearsal};
use crate::cases::apply::{PASSWORDS, assert_no_incidents, three_units};
use crate::cases::security_journal::NOT_RUN;
use crate::support::*;

fn apply_in(ws: &Workspace, folder: &str, desired: &str, faults: &str) -> Run {
    let mut env = PASSWORDS.to_vec();
    if !faults.is_empty() {
        env.push(("MKPLAN_SIM_FAULTS", faults));
    }
    let args = ["apply", desired, "--auto-approve", "--parallelism", "1"];
    in_folder(ws, folder, &args, &env)
}

/// P1. s2's apply dies after its commits; its operator attests, truthfully, that nobody
/// rewrapped. Then a colleague attests the same in s1 (s2 holds no rewrap: accepted) and s1's
/// apply sends the rewrap, whose answer is lost. s2's plan used to rest on its attestation and
/// plan a second rewrap; now s1's rewrap, written after that attestation, refuses it.
#[test]
fn an_attestation_does_not_speak_for_a_rewrap_another_folder_sent_after_it() {
    let ws = rotate_to_b(&three_units(false));
    assert_eq!(apply_in(&ws, "s2", DESIRED, "crash_after_op=6").code, -1);
    in_folder(&ws, "s2", &NOT_RUN, &[]).expect_code(0);
    in_folder(&ws, "s1", &NOT_RUN, &[]).expect_code(0);
    // Attestations are stamped to the second: the rewrap comes a second later at least.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let s1 = apply_in(&ws, "s1", DESIRED, "lose_response_op=1");
    assert_says(&s1, 1, &["outcome is unknown"], "s1's rewrap");
    let s1_dir = ws.path("s1").canonicalize().unwrap().display().to_string();
    let plan = in_folder(&ws, "s2", &["plan", DESIRED], &[]);
    assert_says(
        &plan,
        3,
        &["rewrap_evidence", &s1_dir, "never answered"],
        "s2's plan",
    );
    let before = ws.bytes(FLEET);
    let apply = apply_in(&ws, "s2", DESIRED, "");
    assert_says(&apply, 3, &["rewrap_evidence"], "s2's apply");
    assert_eq!(ws.bytes(FLEET), before, "s2 touched the fleet");
    assert_no_incidents(&ws, "s1's one rewrap");
}

/// P4. s1's rewrap on the real fleet went unanswered; a rehearsal of the same rotation on a
/// copy of the fleet, from the same folder, then finished and closed its rotation there. That
/// close used to empty s1's head, so once s1 could not be read a fresh folder's `--not-run`
/// was taken. A close on one backend leaves the other's rewrap listed.
#[test]
fn a_rehearsals_close_keeps_the_real_rewrap_in_the_head() {
    use std::os::unix::fs::PermissionsExt;
    let ws = rotate_to_b(&three_units(false));
    with_a_rehearsal(&ws);
    let real = apply_in(&ws, "s1", DESIRED, "lose_response_op=7");
    assert_says(&real, 1, &["outcome is unknown"], "s1's real rewrap");
    // The real rewrap, never answered, refuses the rehearsal's plan too (the rehearsal's
    // fleet may be the same service reached another way: round 12, F1), until the operator
    // gives what the service showed.
    let refused = apply_in(&ws, "s1", "rehearsal-desired.yaml", "");
    assert_says(
        &refused,
        3,
        &["rewrap_evidence", "never answered"],
        "the rehearsal",
    );
    let attest = in_folder(
        &ws,
        "s1",
        &[
            "attest",
            "rewrap",
            INSTANCE,
            "--not-run",
            "--desired",
            "rehearsal-desired.yaml",
            "--service-evidence",
            "a rehearsal on a copy of the fleet, which never received the real rewrap",
        ],
        &[],
    );
    assert_eq!(attest.code, 0, "{}", said(&attest));
    let rehearsal = apply_in(&ws, "s1", "rehearsal-desired.yaml", "");
    assert_eq!(rehearsal.code, 0, "{}", said(&rehearsal));
    let s1 = ws.path("s1").canonicalize().unwrap();
    std::fs::set_permissions(&s1, std::fs::Permissions::from_mode(0o770)).unwrap();
    let attest = in_folder(&ws, "s2", &NOT_RUN, &[]);
    assert_says(
        &attest,
        3,
        &["refused", "cannot be read", &s1.display().to_string()],
        "s2",
    );
    std::fs::set_permissions(&s1, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// P5. s1 is restored from a copy made before its rewrap (the key and heads untouched). s1
/// itself refuses ("cut back"), but its journal no longer holds the rewrap, and a fresh
/// folder's `--not-run` used to be taken. A folder found cut back answers with its head.
#[test]
fn a_folder_restored_from_an_older_copy_answers_with_its_head() {
    let ws = rotate_to_b(&three_units(false));
    assert_eq!(apply_in(&ws, "s1", DESIRED, "crash_after_op=6").code, -1);
    let copy = ws.read("s1/journal.jsonl");
    in_folder(&ws, "s1", &NOT_RUN, &[]).expect_code(0);
    let s1 = apply_in(&ws, "s1", DESIRED, "lose_response_op=1");
    assert_says(&s1, 1, &["outcome is unknown"], "s1's rewrap");
    ws.write("s1/journal.jsonl", &copy);
    let attest = in_folder(&ws, "s2", &NOT_RUN, &[]);
    assert_says(
        &attest,
        3,
        &["refused", "cut back or replaced"],
        "s2's attestation",
    );
    let plan = in_folder(&ws, "s2", &["plan", DESIRED], &[]);
    assert_says(
        &plan,
        3,
        &["rewrap_evidence", "cut back or replaced"],
        "s2's plan",
    );
}

/// P7. s1's rewrap went unanswered, then its head among the journal heads became unreadable (made
/// group-writable, or emptied): it used to be skipped without a word. Now it is named.
#[test]
fn a_head_that_cannot_be_read_is_named_never_skipped() {
    use std::os::unix::fs::PermissionsExt;
    let ws = rotate_to_b(&three_units(false));
    let s1 = apply_in(&ws, "s1", DESIRED, "lose_response_op=7");
    assert_says(&s1, 1, &["outcome is unknown"], "s1's rewrap");
    let heads = ws.heads();
    let s1_dir = ws.path("s1").canonicalize().unwrap().display().to_string();
    let head = std::fs::read_dir(&heads)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("chain-")
                && std::fs::read_to_string(p).is_ok_and(|t| t.contains(&s1_dir))
        })
        .expect("s1's head");
    std::fs::set_permissions(&head, std::fs::Permissions::from_mode(0o660)).unwrap();
    let attest = in_folder(&ws, "s2", &NOT_RUN, &[]);
    assert_says(
        &attest,
        3,
        &[
            "refused",
            "its head cannot be read",
            &head.display().to_string(),
        ],
        "s2's attestation, s1's head group-writable",
    );
    std::fs::write(&head, "").unwrap();
    std::fs::set_permissions(&head, std::fs::Permissions::from_mode(0o600)).unwrap();
    let plan = in_folder(&ws, "s2", &["plan", DESIRED], &[]);
    assert_says(
        &plan,
        3,
        &["rewrap_evidence", "its head cannot be read"],
        "s2's plan",
    );
}

/// P6. s1's rewrap went unanswered; the journal key was backed up to another path, as the docs
/// ask, and a second shell names the copy in `MKPLAN_JOURNAL_KEY`. Heads used to be kept
/// beside the key file, so s2, sealed with the same key from the copy's path, never heard of
/// s1: its `attest --not-run` was taken and its apply sent a second rewrap. Heads are now kept
/// per key, in the state home, wherever the key file lies.
#[test]
fn a_copy_of_the_journal_key_at_another_path_sees_the_same_folders() {
    use std::os::unix::fs::PermissionsExt;
    let ws = rotate_to_b(&three_units(false));
    let s1 = apply_in(&ws, "s1", DESIRED, "lose_response_op=7");
    assert_says(&s1, 1, &["outcome is unknown"], "s1's rewrap");
    // A backup of the key elsewhere (a tempdir is the user's alone: 0700).
    let backup = tempfile::tempdir().unwrap();
    let copy = backup.path().join("journal.key");
    std::fs::copy(ws.journal_key(), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key = [("MKPLAN_JOURNAL_KEY", copy.to_str().unwrap())];
    let s1_dir = ws.path("s1").canonicalize().unwrap().display().to_string();
    let attest = in_folder(&ws, "s2", &NOT_RUN, &key);
    assert_says(
        &attest,
        3,
        &["refused", &s1_dir],
        "s2's attest from the copy",
    );
    let before = ws.bytes(FLEET);
    let mut env = PASSWORDS.to_vec();
    env.extend(key);
    let apply = in_folder(&ws, "s2", &["apply", DESIRED, "--auto-approve"], &env);
    assert_says(
        &apply,
        3,
        &["rewrap_evidence", &s1_dir, "never answered"],
        "s2's apply",
    );
    assert_eq!(ws.bytes(FLEET), before, "s2 touched the fleet");
    assert_no_incidents(&ws, "s1's one rewrap");
}

/// Heads an mkplan before per-key heads kept beside the key file still answer: s1's head
/// moved back there (as an older mkplan left it), a fresh folder still hears of s1's rewrap,
/// and its own journal's head there is still the one it must extend.
#[test]
fn heads_kept_beside_the_key_by_an_older_mkplan_still_answer() {
    let ws = rotate_to_b(&three_units(false));
    let s1 = apply_in(&ws, "s1", DESIRED, "lose_response_op=7");
    assert_says(&s1, 1, &["outcome is unknown"], "s1's rewrap");
    std::fs::rename(ws.heads(), ws.journal_key().with_file_name("heads")).unwrap();
    let s1_dir = ws.path("s1").canonicalize().unwrap().display().to_string();
    let attest = in_folder(&ws, "s2", &NOT_RUN, &[]);
    assert_says(&attest, 3, &["refused", &s1_dir], "s2's attest");
    // s1's journal cut back to before its rewrap: its head beside the key says so.
    let journal = ws.path("s1/journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let kept: Vec<&str> = text.lines().take(text.lines().count() - 2).collect();
    std::fs::write(&journal, kept.join("\n") + "\n").unwrap();
    let plan = in_folder(&ws, "s1", &["plan", DESIRED], &[]);
    assert_says(&plan, 3, &["cut back"], "s1's plan");
    assert_no_incidents(&ws, "s1's one rewrap");
}

/// The folder of the journal heads is the user's alone: one others can write (they could
/// remove a head, and a journal cut back would pass) is refused, named, with the fix.
#[test]
fn a_heads_folder_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let ws = rotate_to_b(&three_units(false));
    apply_in(&ws, "s1", DESIRED, "").expect_code(0);
    let heads = ws.heads();
    std::fs::set_permissions(&heads, std::fs::Permissions::from_mode(0o770)).unwrap();
    let plan = in_folder(&ws, "s1", &["plan", DESIRED], &[]);
    assert_says(
        &plan,
        1,
        &[
            &heads.display().to_string(),
            "not yours alone",
            "chmod go-w",
        ],
        "plan",
    );
    std::fs::set_permissions(&heads, std::fs::Permissions::from_mode(0o700)).unwrap();
    in_folder(&ws, "s1", &["plan", DESIRED], &[]).expect_code(0);
}

/// With the journal in a database, the journal key is not needed to plan, and a key or heads
/// folder that could not be read used to leave the other state folders unasked: s1's
/// unanswered rewrap went unseen and `attest --not-run` was taken. Now the heads that cannot
/// be read refuse it, named, as a folder that cannot be read does.
#[test]
fn heads_that_cannot_be_read_refuse_a_database_stores_not_run() {
    use std::os::unix::fs::PermissionsExt;
    let Some(url) = crate::support::postgres::database() else {
        return;
    };
    let ws = rotate_to_b(&three_units(false));
    let s1 = apply_in(&ws, "s1", DESIRED, "lose_response_op=7");
    assert_says(&s1, 1, &["outcome is unknown"], "s1's rewrap");
    let heads = ws.heads();
    std::fs::set_permissions(&heads, std::fs::Permissions::from_mode(0o770)).unwrap();
    let mut attest = vec!["--state", url.as_str()];
    attest.extend_from_slice(&NOT_RUN);
    let run = ws.mkplan(&attest);
    std::fs::set_permissions(&heads, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_says(
        &run,
        3,
        &[
            "refused",
            "the heads of the other state folders",
            "not yours alone",
        ],
        "attest on the database",
    );
    assert_no_incidents(&ws, "s1's one rewrap");
}
