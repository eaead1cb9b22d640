//! Classes 4–7: settle against the rotation's own target, re-read just before a rewrap, an
//! unknown rewrap stays unknown, attest only what can be seen.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::cases::apply::{PASSWORDS, assert_converged, assert_no_incidents, three_units};
use crate::cases::ceremony::{Asked, Ceremony, perform};
use crate::cases::network::apply_via;
use crate::support::*;

// ---------------------------------------------------------------------------------------------
// 4. Settle against the rotation's own target

/// Class 4, settle against the rotation's own target (an abort). Status reported; the rewrap
/// failed with no effect and the apply stopped, leaving the rewrap's intent open. The operator
/// aborts: desired back to A, apply clears the staged B. Today that abort's apply settles the
/// old rewrap against the *abort's* target (A = where the storage is) as "took effect", so the
/// journal says the storage is under B and every later rotation to B is refused (exit 3). It
/// must plan the full rotation again (exit 2) and converge with zero incidents. The failed
/// rewrap went unanswered, so the abort first needs what the service showed: clearing the new
/// registers while that request may still land would lose the key storage.
#[test]
fn an_abort_never_settles_the_earlier_rewrap_as_done() {
    let ws = rotate_to_b(&three_units(true));
    let first = apply(&ws, "fail_op=7", &["--parallelism", "1"]);
    assert_eq!(first.code, 1, "the rewrap fails: {}", said(&first));
    assert_no_incidents(&ws, "failed rewrap");

    ws.write(
        DESIRED,
        &Desired::rotate_to(A)
            .without_key_parts()
            .to_yaml(&[INSTANCE.to_string()]),
    );
    let before = ws.bytes(FLEET);
    let refused = apply(&ws, "", &[]);
    assert_refused_untouched(&ws, &refused, &before, "the abort before the evidence");
    attest_the_service_showed_no_rewrap(&ws);
    let abort = apply(&ws, "", &[]);
    assert_eq!(abort.code, 0, "the abort: {}", said(&abort));
    assert_no_incidents(&ws, "the abort");
    let fleet = sim_file(&ws, FLEET);
    for unit in &fleet.instances[0].crypto_units {
        assert_eq!(unit.new_register.status(), "Empty", "{unit:?}");
        assert_eq!(
            unit.current_register
                .verification_pattern()
                .map(|v| v.as_str()),
            Some(A),
            "{unit:?}"
        );
    }
    assert_eq!(
        fleet.instances[0].key_storage.verification_pattern.as_str(),
        A
    );

    ws.write(
        DESIRED,
        &Desired::rotate_to(B).to_yaml(&[INSTANCE.to_string()]),
    );
    let run = ws.plan();
    let plan = run.planned(2);
    assert_steps(&plan, full_rotation());
    let again = apply(&ws, "", &[]);
    assert_eq!(again.code, 0, "the rotation again: {}", said(&again));
    assert_converged(&ws, "the rotation after the abort");
}

// ---------------------------------------------------------------------------------------------
// 5. Re-read just before a rewrap

/// Drives `apply --manual --parallelism 1`: the scripted operator performs every step
/// correctly; right after the third commit (before answering "done" to it) `meanwhile` runs,
/// as another operator would. Returns whether mkplan then showed the rewrap step, its exit
/// code and the transcript. A rewrap step shown is not performed: the test answers "stop".
fn ceremony_with_change_before_the_rewrap(
    ws: &Workspace,
    meanwhile: impl FnOnce(&Workspace),
) -> (bool, i32, String) {
    let mut ceremony = Ceremony::start(ws, &["--manual", "--parallelism", "1"]);
    let mut commits = 0;
    let mut meanwhile = Some(meanwhile);
    let mut rewrap_shown = false;
    while let Some(asked) = ceremony.next() {
        let is_rewrap = matches!(&asked, Asked::Rewrap)
            || matches!(&asked, Asked::Step { action, .. } if action == "rewrap_key_storage");
        if is_rewrap {
            rewrap_shown = true;
            ceremony.answer("stop");
            continue;
        }
        perform(ws, &asked, B);
        if matches!(&asked, Asked::Step { action, .. } if action == "commit_new_mk") {
            commits += 1;
            if commits == 3 {
                (meanwhile.take().expect("once"))(ws);
            }
        }
        ceremony.answer("done");
    }
    let (code, transcript) = ceremony.finish();
    assert_eq!(
        commits, 3,
        "the ceremony reached the commits:\n{transcript}"
    );
    (rewrap_shown, code, transcript)
}

/// Class 5, re-read just before a rewrap (by hand). Between the last commit and the rewrap,
/// another operator clears unit 1's new register. Today mkplan goes straight on to show the
/// rewrap step from the plan it made before. It must re-read the live state before the
/// rewrap, find the change, and stop with exit 4 without showing (or sending) the rewrap.
#[test]
fn a_change_before_the_rewrap_by_hand_stops_the_apply() {
    let ws = rotate_to_b(&three_units(true));
    let (shown, code, transcript) =
        ceremony_with_change_before_the_rewrap(&ws, |ws| operator(ws, FLEET, &[clear_new(&u(1))]));
    assert!(
        !shown,
        "mkplan showed the rewrap step after the live state changed:\n{transcript}"
    );
    assert_eq!(code, 4, "{transcript}");
    assert_no_incidents(&ws, "change before the rewrap");
    let fleet = sim_file(&ws, FLEET);
    assert_eq!(
        fleet.instances[0].key_storage.verification_pattern.as_str(),
        A
    );
    assert!(fleet.instances[0].key_storage.rewrapped_from.is_none());
}

/// Class 5, re-read just before a rewrap (by hand), another operator rewraps. Status reported;
/// right after the last commit another operator runs the rewrap. Today mkplan still shows its
/// own rewrap step, and an operator following it would rewrap a second time (the key storage
/// lost). It must re-read the live state (the status now says rewrapped), stop with exit 4,
/// and not show the rewrap.
#[test]
fn a_rewrap_by_someone_else_before_ours_by_hand_stops_the_apply() {
    let ws = rotate_to_b(&three_units(true));
    let (shown, code, transcript) =
        ceremony_with_change_before_the_rewrap(&ws, |ws| operator(ws, FLEET, &[rewrap()]));
    assert!(
        !shown,
        "mkplan showed its rewrap step after another operator rewrapped:\n{transcript}"
    );
    assert_eq!(code, 4, "{transcript}");
    assert_no_incidents(&ws, "another's rewrap before ours");
}

/// Class 5, re-read just before a rewrap (sent by mkplan). Every operation takes 400 ms;
/// while the last commit is in flight, another operator clears the new register of a unit
/// already committed. Today mkplan sends the rewrap from its stale plan (the service happens
/// to refuse it, its pre-checks failing: exit 1). It must re-read the live state just before
/// the rewrap and stop with exit 4, sending no rewrap.
#[test]
fn a_change_before_the_rewrap_stops_the_apply_before_it_sends_the_rewrap() {
    let ws = rotate_to_b(&three_units(true));
    let child = ws
        .process(&["apply", DESIRED, "--auto-approve", "--parallelism", "1"])
        .env("MKPLAN_SIM_FAULTS", "latency_ms=400")
        .envs(PASSWORDS)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mkplan apply");
    // Wait for the third commit's intent: that commit now sleeps 400 ms before it happens.
    let started = Instant::now();
    let cleared = loop {
        let commits: Vec<Value> = journal_records(&ws)
            .into_iter()
            .filter(|r| r["kind"] == "intent" && r["action"] == "commit_new_mk")
            .collect();
        if commits.len() == 3 {
            let first = commits[0]["unit"].as_str().expect("a unit").to_string();
            operator(&ws, FLEET, &[clear_new(&first)]);
            break first;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the apply never reached its third commit"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = child.wait_with_output().expect("the apply ends");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        output.status.code(),
        Some(4),
        "after {cleared}'s new register was cleared, the apply must stop before the rewrap:\n{text}"
    );
    // Today the service sees the rewrap and refuses it (its pre-checks fail); it must never
    // see it. A rewrap intent, if journaled at all, must be closed as not done.
    assert!(
        !text.contains("refused rewrap_key_storage"),
        "the rewrap was sent:\n{text}"
    );
    let records = journal_records(&ws);
    for intent in records
        .iter()
        .filter(|r| r["kind"] == "intent" && r["action"] == "rewrap_key_storage")
    {
        let outcome = records
            .iter()
            .find(|r| r["kind"] == "outcome" && r["step"] == intent["step"])
            .map(|r| r["outcome"].clone());
        assert!(
            outcome
                .as_ref()
                .is_some_and(|o| *o != "done" && o.get("settled_done").is_none()),
            "a rewrap intent not closed as 'not sent': {intent} → {outcome:?}\n{text}"
        );
    }
    assert_no_incidents(&ws, "change before the rewrap");
    assert_eq!(
        sim_file(&ws, FLEET).instances[0]
            .key_storage
            .verification_pattern
            .as_str(),
        A
    );
}

// ---------------------------------------------------------------------------------------------
// 6. An unknown rewrap stays unknown across reruns

/// Class 6, an unknown rewrap stays unknown across reruns. Status reported; the rewrap takes
/// 1.5 s on the service (3 keys × 500 ms); mkplan dies right after the service accepted it.
/// An immediate rerun must see "rewrap in progress" and refuse (exit 3), sending nothing;
/// once the rewrap is done, the rerun plans set immediate only and converges with zero
/// incidents. Today the simulator has no slow rewrap (the fleet's `rewrap_ms_per_key` is
/// refused as an unknown key), so this fails at the first apply.
#[test]
fn a_rewrap_in_progress_is_never_sent_again_and_settles_once_done() {
    let ws = rotate_to_b(&three_units(true));
    ws.write(FLEET, &slow_rewrap(&three_units(true), 3, 500));
    crash_after(&ws, 7);
    let crashed = Instant::now();
    let before = sim_file(&ws, FLEET).instances[0].crypto_units.clone();
    let rerun = apply(&ws, "", &[]);
    assert!(
        crashed.elapsed() < Duration::from_millis(1500),
        "the rerun came too late to see the rewrap in progress"
    );
    assert_eq!(
        rerun.code,
        3,
        "a rerun while the rewrap runs must refuse: {}",
        said(&rerun)
    );
    assert!(said(&rerun).contains("in progress"), "{}", said(&rerun));
    assert_eq!(
        sim_file(&ws, FLEET).instances[0].crypto_units,
        before,
        "the refused rerun sent something"
    );
    assert_no_incidents(&ws, "rerun during the rewrap");

    let done = Duration::from_millis(1500 + 250);
    if let Some(rest) = done.checked_sub(crashed.elapsed()) {
        std::thread::sleep(rest);
    }
    let plan = ws.plan().planned(2);
    assert_steps(&plan, each("set_immediate", 1..=3));
    let last = apply(&ws, "", &[]);
    assert_eq!(last.code, 0, "{}", said(&last));
    assert_converged(&ws, "after the slow rewrap");
}

/// Regression (adversary, a7): a slow service queues mkplan's rewrap while the connection
/// that carried it is reset. The run reads "no rewrap" three times and stops with the
/// outcome unknown; the rerun right after settled the rewrap "had no effect" from one more
/// "no rewrap" and sent a second one, which ran after the first had completed: the key storage
/// was lost. The rerun must refuse (exit 3) and send nothing; once the service reports the
/// first rewrap, the next rerun sets immediate only and converges with zero incidents.
#[test]
fn a_rewrap_queued_after_its_lost_response_is_never_sent_again() {
    let ws = rotate_to_b(&three_units(true));
    let mut server = Server::start(
        &ws.path(FLEET),
        "lose_response_op=7,lost_response_lands_after_ms=8000",
        &[],
    );
    let sent = Instant::now();
    let first = apply_via(&ws, &server.url, None, &[]);
    assert_eq!(
        first.code,
        1,
        "the rewrap's outcome is unknown: {}",
        said(&first)
    );
    assert!(
        said(&first).contains("queued at the service"),
        "{}",
        said(&first)
    );
    let rerun = apply_via(&ws, &server.url, None, &[]);
    assert!(
        sent.elapsed() < Duration::from_millis(7_000),
        "the rerun came after the queued rewrap landed"
    );
    assert_eq!(rerun.code, 3, "the rerun must refuse: {}", said(&rerun));
    for words in [
        "rewrap_evidence",
        "queued at the service",
        "--service-evidence",
        "mkplan attest rewrap",
    ] {
        assert!(said(&rerun).contains(words), "{words}: {}", said(&rerun));
    }
    assert!(!said(&rerun).contains("had no effect"), "{}", said(&rerun));
    assert_no_incidents(&ws, "the refused rerun");

    let landed = Instant::now();
    while sim_file(&ws, FLEET).instances[0]
        .key_storage
        .verification_pattern
        .as_str()
        != B
    {
        assert!(
            landed.elapsed() < Duration::from_secs(30),
            "the queued rewrap never landed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let last = apply_via(&ws, &server.url, None, &[]);
    assert_eq!(last.code, 0, "{}", said(&last));
    assert!(
        said(&last).contains("rewrap_key_storage: took effect"),
        "{}",
        said(&last)
    );
    assert!(server.stop().success());
    assert_converged(&ws, "after the queued rewrap");
}

/// The same unanswered rewrap on a service that reports its status, when it never ran (the
/// service failed it): "no rewrap" does not settle it either; the operator's word with what
/// the service showed does, and the rerun then rewraps once and converges.
#[test]
fn an_unanswered_rewrap_is_not_settled_by_no_rewrap_but_by_the_services_evidence() {
    let ws = rotate_to_b(&three_units(true));
    let first = apply(&ws, "fail_op=7", &["--parallelism", "1"]);
    assert_eq!(first.code, 1, "{}", said(&first));
    let refused = ws.mkplan(&["plan", DESIRED]);
    assert_eq!(refused.code, 3, "{}", said(&refused));
    for words in ["rewrap_evidence", "--service-evidence"] {
        assert!(
            said(&refused).contains(words),
            "{words}: {}",
            said(&refused)
        );
    }
    attest_the_service_showed_no_rewrap(&ws);
    let last = apply(&ws, "", &[]);
    assert_eq!(last.code, 0, "{}", said(&last));
    assert_converged(&ws, "after the service's evidence");
}

/// The operator journals what the service showed: the unanswered rewrap did not run.
#[track_caller]
fn attest_the_service_showed_no_rewrap(ws: &Workspace) {
    let how = [
        "--not-run",
        "--service-evidence",
        "the service answered 503: no rewrap ran",
    ];
    let attested = attest(ws, INSTANCE, &how);
    assert_eq!(attested.code, 0, "{}", said(&attested));
}

// ---------------------------------------------------------------------------------------------
// 7. Attest only what can be seen

/// Class 7, attest only what can be seen. No status; mkplan's own rewrap lost its response:
/// it may well have run. `attest rewrap --not-run` on that rewrap must be refused (exit 3)
/// and journal nothing; the rerun still refuses; `--completed` settles it and the rerun
/// converges with zero incidents. Today `attest rewrap` takes no `--desired` (a usage
/// error), and without it journals "did not run" for mkplan's own unknown rewrap, after which
/// the next apply rewraps a second time.
#[test]
fn a_lost_rewrap_response_cannot_be_attested_as_not_run() {
    let ws = rotate_to_b(&three_units(false));
    let first = apply(&ws, "lose_response_op=7", &["--parallelism", "1"]);
    assert_eq!(first.code, 1, "{}", said(&first));
    assert_no_incidents(&ws, "lost rewrap response");
    let journaled = journal(&ws);
    let not_run = attest(&ws, INSTANCE, &["--not-run"]);
    assert_eq!(
        not_run.code,
        3,
        "--not-run on mkplan's own unknown rewrap: {}",
        said(&not_run)
    );
    assert_eq!(
        journal(&ws),
        journaled,
        "the refused attestation journaled something"
    );

    let before = ws.bytes(FLEET);
    let rerun = apply(&ws, "", &[]);
    assert_refused_untouched(&ws, &rerun, &before, "rerun after the refused attestation");

    let completed = attest(&ws, INSTANCE, &["--completed"]);
    assert_eq!(completed.code, 0, "--completed: {}", said(&completed));
    let rerun = apply(&ws, "", &[]);
    assert_eq!(rerun.code, 0, "{}", said(&rerun));
    assert_converged(&ws, "after --completed");
}

/// Class 7, with what the service showed: `--not-run --service-evidence TEXT` on the same
/// unknown rewrap is journaled (exit 0). Only the exit code and the journal's growth are
/// checked (the simulator's rewrap did run; nothing is applied afterwards). Today `--desired`
/// and `--service-evidence` are usage errors.
#[test]
fn not_run_with_the_services_evidence_is_journaled() {
    let ws = rotate_to_b(&three_units(false));
    let first = apply(&ws, "lose_response_op=7", &["--parallelism", "1"]);
    assert_eq!(first.code, 1, "{}", said(&first));
    let journaled = journal(&ws);
    let attest = attest(
        &ws,
        INSTANCE,
        &[
            "--not-run",
            "--service-evidence",
            "IBM support case 123: no rotation ran",
        ],
    );
    assert_eq!(attest.code, 0, "{}", said(&attest));
    assert!(
        journal(&ws).len() > journaled.len(),
        "the attestation was not journaled"
    );
    assert_no_incidents(&ws, "attestation only");
}
