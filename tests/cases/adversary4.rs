//! Regressions from the fourth adversarial review (repro4 F6, F2, F4): the other state folders
//! this user's mkplan wrote on this machine are witnesses too. A rewrap one of them sent and
//! never saw answered may still be queued at the service; a folder that cannot be read may
//! hold one; the same service reached another way has another identity. Every test runs the
//! binary, with a second state folder beside the first (one journal key, so their heads lie
//! side by side), and ends with the simulator's incidents checked where anything was applied.

use std::time::Instant;

use crate::cases::adversary3::{
    assert_says, clear_new_register, said, the_queued_rewrap_lands_on_nothing,
};
use crate::cases::apply::{PASSWORDS, assert_no_incidents, three_units};
use crate::cases::network::apply_via;
use crate::cases::security_journal::NOT_RUN;
use crate::support::*;

/// A rehearsal of the workspace's rotation: a copy of its fleet as it is now
/// (`rehearsal.yaml`, same instance and unit ids, another backend identity) and a desired
/// file naming it (`rehearsal-desired.yaml`).
pub(crate) fn with_a_rehearsal(ws: &Workspace) {
    ws.write("rehearsal.yaml", &ws.read(FLEET));
    ws.write(
        "rehearsal-desired.yaml",
        &ws.read(DESIRED)
            .replace("sim:fleet.yaml", "sim:rehearsal.yaml"),
    );
}

/// `mkplan --state FOLDER ARGS` with `env`.
pub(crate) fn in_folder(ws: &Workspace, folder: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all = vec!["--state", folder];
    all.extend_from_slice(args);
    ws.mkplan_with_env(&all, env)
}

/// Folder `s1` sends the rewrap of A → B on the embedded simulator (no rotation status) and
/// its answer is lost after the service ran it: exit 1, the outcome unknown.
fn s1_rewrap_unanswered(ws: &Workspace) {
    rewrap_unanswered_in(ws, "s1");
}

/// `s1_rewrap_unanswered` from state folder `folder`.
pub(crate) fn rewrap_unanswered_in(ws: &Workspace, folder: &str) {
    let mut env = PASSWORDS.to_vec();
    env.push(("MKPLAN_SIM_FAULTS", "lose_response_op=7"));
    let first = in_folder(
        ws,
        folder,
        &["apply", DESIRED, "--auto-approve", "--parallelism", "1"],
        &env,
    );
    assert_says(
        &first,
        1,
        &["outcome is unknown"],
        &format!("{folder}'s rewrap"),
    );
}

/// F6. A slow service queued folder s1's rewrap and its answer was lost; the team aborts
/// (another operator clears every new register: every current A, every new Empty). s1 itself
/// refuses to go on. A fresh folder s2 used to need no evidence at all ("every current register
/// holds A"): it staged B again, s1's queued rewrap landed, and s2's own rewrap ran after it.
/// Now s2's plan and apply refuse, naming s1, and nothing is staged before the rewrap lands.
#[test]
fn a_fresh_folder_refuses_while_another_folders_rewrap_may_still_be_queued() {
    let ws = rotate_to_b(&three_units(false));
    let mut server = Server::start(
        &ws.path(FLEET),
        "lose_response_op=7,lost_response_lands_after_ms=8000",
        &[],
    );
    let sent = Instant::now();
    let first = apply_via(
        &ws,
        &server.url,
        None,
        &["--parallelism", "1", "--state", "s1"],
    );
    assert_says(&first, 1, &["outcome is unknown"], "s1's rewrap");
    for n in 1..=3 {
        clear_new_register(&server.url, &u(n));
    }
    let backend = [("MKPLAN_BACKEND", server.url.as_str())];
    let s1 = ws.path("s1").canonicalize().unwrap().display().to_string();

    let plan = in_folder(&ws, "s2", &["plan", DESIRED], &backend);
    assert_says(
        &plan,
        3,
        &[
            "rewrap_evidence",
            "another state folder",
            &s1,
            "never answered",
            "--service-evidence",
        ],
        "s2's plan",
    );
    assert!(!said(&plan).contains("Plan:"), "{}", said(&plan));
    let before = ws.bytes(FLEET);
    let apply = apply_via(
        &ws,
        &server.url,
        None,
        &["--parallelism", "1", "--state", "s2"],
    );
    assert_says(&apply, 3, &["rewrap_evidence", &s1], "s2's apply");
    let attest = in_folder(&ws, "s2", &NOT_RUN, &backend);
    assert_says(&attest, 3, &["refused", &s1], "s2's attestation");
    assert_eq!(
        ws.bytes(FLEET),
        before,
        "a refused command touched the fleet"
    );
    the_queued_rewrap_lands_on_nothing(&ws, &mut server, sent, 8_000, "after s2 refused");
}

/// F2. s1's rewrap ran and its answer was lost. The fleet file then moves (same instance and
/// crypto units, another path: another backend identity). A fresh folder s2 used to take
/// "nobody rewrapped" on the operator's word, for s1's records name another backend; the
/// apply then rewrapped a second time. Now the attestation is refused, naming s1 and the
/// backend its records name; nothing is journaled.
#[test]
fn not_run_is_refused_while_another_folder_sent_the_rewrap_to_the_fleet_before_it_moved() {
    let ws = rotate_to_b(&three_units(false));
    s1_rewrap_unanswered(&ws);
    std::fs::create_dir(ws.path("prod")).unwrap();
    std::fs::rename(ws.path(FLEET), ws.path("prod/fleet.yaml")).unwrap();
    ws.write(
        DESIRED,
        &ws.read(DESIRED)
            .replace("sim:fleet.yaml", "sim:prod/fleet.yaml"),
    );
    let s1 = ws.path("s1").canonicalize().unwrap().display().to_string();
    let attest = in_folder(&ws, "s2", &NOT_RUN, &[]);
    assert_says(
        &attest,
        3,
        &["refused", &s1, "reached another way", "--service-evidence"],
        "s2's attestation after the move",
    );
    assert!(
        !ws.path("s2/journal.jsonl").exists() || !ws.read("s2/journal.jsonl").contains("attested"),
        "the refused attestation was journaled"
    );
    let plan = in_folder(&ws, "s2", &["plan", DESIRED], &[]);
    assert_says(&plan, 3, &["rewrap_evidence"], "s2's plan after the move");
}

/// F4. s1's rewrap ran and its answer was lost. s1 then becomes unreadable (a team share:
/// group-writable, so mkplan refuses it), or is renamed: its head still names the old path.
/// A fresh folder s2 used to skip it without a word and take "nobody rewrapped". Now both the
/// attestation and the plan refuse, naming the folder and its head file, and removing that
/// head is the operator's explicit word.
#[test]
fn a_folder_that_cannot_be_read_or_is_gone_is_named_never_skipped() {
    use std::os::unix::fs::PermissionsExt;
    let ws = rotate_to_b(&three_units(false));
    s1_rewrap_unanswered(&ws);
    let s1 = ws.path("s1").canonicalize().unwrap();

    std::fs::set_permissions(&s1, std::fs::Permissions::from_mode(0o770)).unwrap();
    let s1_named = s1.display().to_string();
    let refused = |words: &[&str], context: &str| {
        let attest = in_folder(&ws, "s2", &NOT_RUN, &[]);
        assert_says(
            &attest,
            3,
            &[&["refused", &s1_named], words].concat(),
            context,
        );
    };
    refused(
        &["cannot be read", "chmod go-w"],
        "s2's attestation, s1 group-writable",
    );
    std::fs::set_permissions(&s1, std::fs::Permissions::from_mode(0o700)).unwrap();

    std::fs::rename(&s1, ws.path("s1.archived")).unwrap();
    refused(
        &["its journal is gone", "its head"],
        "s2's attestation, s1 renamed",
    );
    let plan = in_folder(&ws, "s2", &["plan", DESIRED], &[]);
    assert_says(&plan, 3, &["rewrap_evidence"], "s2's plan, s1 renamed");
    assert!(
        !ws.read("s2/journal.jsonl").contains("attested"),
        "a refused attestation was journaled"
    );
}

/// The other side of F4: a folder moved and written at its new place since is not "gone"
/// (its new journal holds the record its old head ends at), and a rotation that folder
/// finished there leaves nothing to settle: a fresh folder plans the next rotation, and so
/// does the moved folder itself.
#[test]
fn a_folder_moved_and_used_at_its_new_place_is_not_gone() {
    let ws = rotate_to_b(&three_units(false));
    let mut env = PASSWORDS.to_vec();
    env.push(("MKPLAN_SIM_FAULTS", "crash_after_op=3"));
    // One operation at a time: the crash comes after the third load, before any commit (with
    // several in flight, a slow third load let two commits land first on a loaded machine,
    // and a rerun then rightly needs evidence about the rewrap).
    let loads = in_folder(
        &ws,
        "s1",
        &["apply", DESIRED, "--auto-approve", "--parallelism", "1"],
        &env,
    );
    assert_eq!(loads.code, -1, "{}", said(&loads));
    std::fs::rename(ws.path("s1"), ws.path("s1-moved")).unwrap();
    in_folder(
        &ws,
        "s1-moved",
        &["apply", DESIRED, "--auto-approve"],
        &PASSWORDS,
    )
    .expect_code(0);
    assert_no_incidents(&ws, "the rotation finished from the moved folder");

    ws.write(
        DESIRED,
        &Desired::rotate_to(A).to_yaml(&[INSTANCE.to_string()]),
    );
    for folder in ["s2", "s1-moved"] {
        let plan = in_folder(&ws, folder, &["plan", DESIRED], &[]);
        assert_says(&plan, 0, &["Plan:"], folder);
        assert!(!said(&plan).contains("cannot be read"), "{}", said(&plan));
    }
}

/// The heads say what a folder may hold: one removed after its rotation finished (closed
/// there, so its head lists no rewrap) is not asked, and a fresh folder plans the next
/// rotation. One removed while its rewrap was unanswered still refuses (F4, above).
#[test]
fn a_folder_removed_after_its_rotation_finished_is_not_asked() {
    let ws = rotate_to_b(&three_units(false));
    in_folder(&ws, "s1", &["apply", DESIRED, "--auto-approve"], &PASSWORDS).expect_code(0);
    assert_no_incidents(&ws, "s1's rotation");
    std::fs::remove_dir_all(ws.path("s1")).unwrap();
    ws.write(
        DESIRED,
        &Desired::rotate_to(A).to_yaml(&[INSTANCE.to_string()]),
    );
    let plan = in_folder(&ws, "s2", &["plan", DESIRED], &[]);
    assert_says(&plan, 0, &["Plan:"], "s2 after s1 was removed");
    assert!(!said(&plan).contains("cannot be read"), "{}", said(&plan));
}

/// Two folders of one user plan the same instance at the same moment: each holds only its own
/// lock, neither has sent anything, so neither plan refuses. Here folder s2's apply is past
/// its plan (loading, on a slow service) when folder s1 journals a rewrap of the same
/// instance id (a rehearsal copy of the fleet, whose answer is lost: its record stays
/// unanswered). Before its own rewrap, s2 asks the other folders again, finds that record,
/// and sends no rewrap: exit 4, journaled "not sent", the service's key storage untouched.
#[test]
fn a_rewrap_another_folder_journaled_since_the_plan_stops_this_rewrap() {
    use std::process::Stdio;
    let ws = rotate_to_b(&three_units(false));
    with_a_rehearsal(&ws);
    let mut server = Server::start(&ws.path(FLEET), "latency_ms=400", &[]);
    let mut s2 = ws.process(&[
        "--state",
        "s2",
        "apply",
        DESIRED,
        "--auto-approve",
        "--parallelism",
        "1",
    ]);
    s2.envs(PASSWORDS)
        .env("MKPLAN_BACKEND", &server.url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let s2 = s2.spawn().expect("start s2's apply");
    wait_until("s2's apply journals its first intent", || {
        std::fs::read_to_string(ws.path("s2/journal.jsonl"))
            .is_ok_and(|text| text.contains("\"intent\""))
    });
    let mut env = PASSWORDS.to_vec();
    env.push(("MKPLAN_SIM_FAULTS", "lose_response_op=7"));
    let s1 = in_folder(
        &ws,
        "s1",
        &[
            "apply",
            "rehearsal-desired.yaml",
            "--auto-approve",
            "--parallelism",
            "1",
        ],
        &env,
    );
    assert_says(&s1, 1, &["outcome is unknown"], "s1's rehearsal");
    let s2 = s2.wait_with_output().expect("s2's apply ends");
    let stderr = String::from_utf8_lossy(&s2.stderr);
    assert_eq!(s2.status.code(), Some(4), "s2: {stderr}");
    assert!(
        stderr.contains("another state folder of this machine recorded a rewrap"),
        "{stderr}"
    );
    assert!(
        ws.read("s2/journal.jsonl").contains("not sent"),
        "s2's rewrap intent has no outcome"
    );
    // Its own rewrap "not sent" says nothing of s1's: the next plan still refuses (repro5 P3).
    let again = in_folder(
        &ws,
        "s2",
        &["plan", DESIRED],
        &[("MKPLAN_BACKEND", &server.url)],
    );
    assert_says(
        &again,
        3,
        &["rewrap_evidence", "another state folder"],
        "s2's next plan",
    );
    assert!(server.stop().success());
    assert_no_incidents(&ws, "s2 stopped before its rewrap");
    assert_eq!(
        crate::cases::apply::sim(&ws).instances[0]
            .key_storage
            .verification_pattern
            .as_str(),
        A,
        "the service's key storage was rewrapped"
    );
}
