//! The witnesses of the key storage's master key, through the binary: the service's rotation
//! status, mkplan's journal, the registers, and the operator's attestation. Each test is one
//! class of mistake a planner can make when it trusts a witness too far: silence taken as
//! proof, a journal from another folder or another backend, an abort settling a rewrap, a
//! rewrap whose outcome is unknown, a stale journal that blocks forever, a recovery after the
//! rewrap refused for no reason. The simulator is the judge: every test that applies anything
//! ends with zero incidents.
//!
//! "Another operator with the TKE CLI" acts on the simulator directly
//! (`Simulator::perform`), as `cases::ceremony::perform` does, or edits the fleet file.

use std::process::Stdio;
use std::time::{Duration, Instant};

use mkplan::backend::sim::{Faults, Fleet as SimFleet, SimOperation, Simulator};
use mkplan::model::{NewRegister, VerificationPattern};
use serde_json::Value;

use crate::cases::apply::{PASSWORDS, assert_converged, assert_no_incidents, three_units};
use crate::cases::ceremony::{Asked, Ceremony, perform};
use crate::support::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// `mkplan apply desired.yaml --auto-approve EXTRA…` with the demo passwords and `faults`.
fn apply(ws: &Workspace, faults: &str, extra: &[&str]) -> Run {
    let mut env = PASSWORDS.to_vec();
    if !faults.is_empty() {
        env.push(("MKPLAN_SIM_FAULTS", faults));
    }
    let mut args = vec!["apply", DESIRED, "--auto-approve"];
    args.extend_from_slice(extra);
    ws.mkplan_with_env(&args, &env)
}

/// A first apply that the embedded simulator kills right after operation `n`.
#[track_caller]
fn crash_after(ws: &Workspace, n: usize) {
    let run = apply(ws, &format!("crash_after_op={n}"), &["--parallelism", "1"]);
    assert_eq!(
        run.code, -1,
        "the first apply must die after operation {n}\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout, run.stderr
    );
}

/// Everything the command said (messages go to stderr today, reports to stdout).
fn said(run: &Run) -> String {
    format!("{}\n{}", run.stdout, run.stderr)
}

/// A fleet file of the workspace as the simulator reads it.
fn sim_file(ws: &Workspace, name: &str) -> SimFleet {
    SimFleet::parse(name, &ws.read(name)).expect("the fleet reads")
}

/// The journal's bytes (empty when there is none yet).
fn journal(ws: &Workspace) -> Vec<u8> {
    std::fs::read(ws.path(".mkplan/journal.jsonl")).unwrap_or_default()
}

fn vp(text: &str) -> VerificationPattern {
    VerificationPattern::parse(text).expect("a VP")
}

fn rewrap() -> SimOperation {
    SimOperation::RewrapKeyStorage {
        instance: INSTANCE.into(),
    }
}

fn commit(n: usize, key: &str) -> SimOperation {
    SimOperation::CommitNewMk {
        instance: INSTANCE.into(),
        unit: u(n),
        verification_pattern: vp(key),
        signers: vec!["alice".into(), "bob".into()],
    }
}

fn clear_new(unit: &str) -> SimOperation {
    SimOperation::ClearNewMk {
        instance: INSTANCE.into(),
        unit: unit.into(),
    }
}

/// Another operator, with the TKE CLI: performs `operations` on the fleet file `name`.
fn operator(ws: &Workspace, name: &str, operations: &[SimOperation]) {
    let simulator = Simulator::open(&ws.path(name), Faults::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    for operation in operations {
        runtime
            .block_on(simulator.perform(operation))
            .unwrap_or_else(|e| {
                panic!(
                    "the simulator accepts the other operator's {}: {e}",
                    operation.name()
                )
            });
    }
}

/// Adds `line` (one or more `key: value` lines, already joined with the right indentation)
/// under every `key_storage:` of a fleet written by `Fleet::to_yaml`.
fn key_storage_field(yaml: &str, line: &str) -> String {
    assert!(yaml.contains("    key_storage:\n"), "{yaml}");
    yaml.replace(
        "    key_storage:\n",
        &format!("    key_storage:\n      {line}\n"),
    )
}

/// The service's memory of a rewrap from `from`, as the simulator writes it.
fn rewrapped_from(fleet: &Fleet, from: &str) -> String {
    key_storage_field(&fleet.to_yaml(), &format!("rewrapped_from: \"{from}\""))
}

/// A fleet whose rewrap takes `keys × ms_per_key` milliseconds (`key_storage.keys` and
/// `key_storage.rewrap_ms_per_key`), whatever the builder wrote for them.
fn slow_rewrap(fleet: &Fleet, keys: u64, ms_per_key: u64) -> String {
    let yaml = fleet.to_yaml();
    let kept: Vec<&str> = yaml
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            !l.starts_with("keys:") && !l.starts_with("rewrap_ms_per_key:")
        })
        .collect();
    key_storage_field(
        &(kept.join("\n") + "\n"),
        &format!("keys: {keys}\n      rewrap_ms_per_key: {ms_per_key}"),
    )
}

/// A refusal for safety that names a key storage evidence check, and touched nothing.
#[track_caller]
fn assert_refused_untouched(ws: &Workspace, run: &Run, before: &[u8], context: &str) {
    assert_eq!(
        run.code,
        3,
        "{context}: must refuse (exit 3); incidents now {:#?}\n--- stdout\n{}\n--- stderr\n{}",
        sim_file(ws, FLEET).incidents,
        run.stdout,
        run.stderr
    );
    let text = said(run);
    assert!(
        text.contains("rewrap_evidence") || text.contains("evidence_consistent"),
        "{context}: the refusal names no evidence check\n{text}"
    );
    assert_eq!(
        ws.bytes(FLEET),
        before,
        "{context}: the refused run touched the fleet"
    );
    assert_no_incidents(ws, context);
}

/// The full rotation of three units.
fn full_rotation() -> Vec<Pair> {
    [
        each("load_new_mk", 1..=3),
        each("commit_new_mk", 1..=3),
        vec![wide("rewrap_key_storage")],
        each("set_immediate", 1..=3),
    ]
    .concat()
}

/// Journal records as JSON, in order.
fn journal_records(ws: &Workspace) -> Vec<Value> {
    String::from_utf8_lossy(&journal(ws))
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|l| l["record"].clone())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Silence is not proof

/// Class 1, silence is not proof. No rotation status; this folder's apply died after the 3
/// loads and 3 commits, before sending the rewrap; then another operator sent the rewrap with
/// the TKE CLI. This folder's journal only knows "mkplan never sent a rewrap", which says
/// nothing about what others did. Today the rerun takes that silence as "the key storage is
/// still under A" and sends a second rewrap (an incident: the key storage is lost). It must
/// refuse (exit 3), touch nothing, and say `mkplan attest rewrap` would settle it.
#[test]
fn silence_of_this_journal_after_the_commits_is_not_proof_that_no_rewrap_ran() {
    let ws = rotate_to_b(&three_units(false));
    crash_after(&ws, 6);
    operator(&ws, FLEET, &[rewrap()]);
    assert_no_incidents(&ws, "the other operator's rewrap");
    let before = ws.bytes(FLEET);
    let rerun = apply(&ws, "", &[]);
    assert_refused_untouched(&ws, &rerun, &before, "rerun after another's rewrap");
    assert!(
        said(&rerun).contains("mkplan attest rewrap"),
        "the refusal must say what settles it:\n{}",
        said(&rerun)
    );
}

/// Class 1, variant: this folder's apply died after the loads only; another operator
/// committed all three units and rewrapped. Today the journal ("rotation started from A, no
/// rewrap sent") is taken as proof the storage is under A and the rerun rewraps again (an
/// incident). It must refuse (exit 3) and touch nothing.
#[test]
fn silence_of_this_journal_after_the_loads_is_not_proof_that_no_rewrap_ran() {
    let ws = rotate_to_b(&three_units(false));
    crash_after(&ws, 3);
    operator(
        &ws,
        FLEET,
        &[commit(1, B), commit(2, B), commit(3, B), rewrap()],
    );
    assert_no_incidents(&ws, "the other operator's commits and rewrap");
    let before = ws.bytes(FLEET);
    let rerun = apply(&ws, "", &[]);
    assert_refused_untouched(&ws, &rerun, &before, "rerun after another's rewrap");
}

// ---------------------------------------------------------------------------------------------
// 2. An interrupted rotation needs the operator's word

/// Class 2, an interrupted rotation needs the operator's word. No rotation status; the apply
/// died after the commits, before the rewrap. From then on nobody can tell from the registers
/// whether someone rewrapped. Today the rerun silently rewraps and converges (exit 0). It must
/// refuse (exit 3) touching nothing; after `mkplan attest rewrap ID --not-run --desired …`
/// (exit 0) the plan says the operator confirmed it, and the rerun converges with zero
/// incidents.
#[test]
fn an_interrupted_rotation_without_status_needs_the_operators_attestation() {
    let ws = rotate_to_b(&three_units(false));
    crash_after(&ws, 6);
    let before = ws.bytes(FLEET);
    let rerun = apply(&ws, "", &[]);
    assert_refused_untouched(&ws, &rerun, &before, "rerun without attestation");
    assert!(
        said(&rerun).contains("mkplan attest rewrap"),
        "{}",
        said(&rerun)
    );
    let attest = ws.mkplan(&[
        "attest",
        "rewrap",
        INSTANCE,
        "--not-run",
        "--desired",
        DESIRED,
    ]);
    assert_eq!(attest.code, 0, "attest --not-run: {}", said(&attest));
    let plan = ws.mkplan(&["plan", DESIRED]);
    assert_eq!(plan.code, 0, "plan after the attestation: {}", said(&plan));
    assert!(
        said(&plan).contains("confirmed by the operator"),
        "the plan must show the operator's word as its evidence:\n{}",
        said(&plan)
    );
    let rerun = apply(&ws, "", &[]);
    assert_eq!(
        rerun.code,
        0,
        "rerun after the attestation: {}",
        said(&rerun)
    );
    assert_converged(&ws, "after the attestation");
}

/// Class 2, the other side: where the service reports its rotation status, the same crash
/// needs no attestation: the status settles it and a plain rerun converges. (Passes today; it
/// guards against the fix for the silent service refusing here too.)
#[test]
fn an_interrupted_rotation_with_status_resumes_without_attestation() {
    let ws = rotate_to_b(&three_units(true));
    crash_after(&ws, 6);
    let rerun = apply(&ws, "", &[]);
    assert_eq!(rerun.code, 0, "{}", said(&rerun));
    assert_converged(&ws, "rerun with status");
}

// ---------------------------------------------------------------------------------------------
// 3. A journal belongs to one backend

/// Class 3 (a), a journal belongs to one backend. A rehearsal ran the whole rotation on a
/// simulator copy (rehearsal.yaml) with the same instance id, from the same state folder. The
/// real fleet is fresh. Today the rehearsal's "rewrap completed" record counts for the real
/// fleet and contradicts its status: `plan` refuses (exit 3). It must plan the full rotation
/// (exit 2), and the apply converge with zero incidents.
#[test]
fn a_rehearsals_journal_does_not_count_for_the_real_backend() {
    let ws = rotate_to_b(&three_units(true));
    ws.write("rehearsal.yaml", &ws.read(FLEET));
    let rehearsal = apply(&ws, "", &["--backend", "sim:rehearsal.yaml"]);
    assert_eq!(rehearsal.code, 0, "the rehearsal: {}", said(&rehearsal));
    let rehearsed = sim_file(&ws, "rehearsal.yaml");
    assert!(rehearsed.incidents.is_empty(), "{:#?}", rehearsed.incidents);
    assert_eq!(
        rehearsed.instances[0]
            .key_storage
            .verification_pattern
            .as_str(),
        B
    );

    let run = ws.plan();
    let plan = run.planned(2);
    assert_steps(&plan, full_rotation());
    let real = apply(&ws, "", &[]);
    assert_eq!(real.code, 0, "the real rotation: {}", said(&real));
    assert_converged(&ws, "the real rotation after a rehearsal");
}

/// Class 3 (b): a rehearsal without status sent its rewrap (journaled as completed) and died
/// right after the first set immediate. The real fleet, without status, has every new register
/// Full Committed B, staged by hand, storage still under A. Today the rehearsal's record is
/// taken as proof the real storage is under B and `plan` plans set immediate only (exit 2),
/// which would make the real key storage unusable. It must refuse (exit 3).
#[test]
fn a_rehearsals_completed_rewrap_is_no_evidence_for_the_real_backend() {
    let ws = rotate_to_b(&three_units(false));
    ws.write("rehearsal.yaml", &ws.read(FLEET));
    let rehearsal = apply(
        &ws,
        "crash_after_op=8",
        &["--backend", "sim:rehearsal.yaml", "--parallelism", "1"],
    );
    assert_eq!(
        rehearsal.code,
        -1,
        "the rehearsal dies: {}",
        said(&rehearsal)
    );
    let rehearsed = sim_file(&ws, "rehearsal.yaml");
    assert!(rehearsed.incidents.is_empty(), "{:#?}", rehearsed.incidents);
    assert_eq!(
        rehearsed.instances[0]
            .key_storage
            .verification_pattern
            .as_str(),
        B
    );

    let real = Fleet::instance()
        .key_storage(A)
        .reports_rotation_status(false)
        .units(3, committed(B), valid(A));
    ws.write(FLEET, &real.to_yaml());
    let before = ws.bytes(FLEET);
    let run = ws.plan();
    if run.code == 2 {
        panic!(
            "the rehearsal's journal was taken as evidence for the real fleet; planned {:?}",
            pairs(&run.json(), None)
        );
    }
    assert_refused_untouched(&ws, &run, &before, "the real fleet after a rehearsal");
}

// ---------------------------------------------------------------------------------------------
// 4. Settle against the rotation's own target

/// Class 4, settle against the rotation's own target (an abort). Status reported; the rewrap
/// failed with no effect and the apply stopped, leaving the rewrap's intent open. The operator
/// aborts: desired back to A, apply clears the staged B. Today that abort's apply settles the
/// old rewrap against the *abort's* target (A = where the storage is) as "took effect", so the
/// journal says the storage is under B and every later rotation to B is refused (exit 3). It
/// must plan the full rotation again (exit 2) and converge with zero incidents.
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
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("mkplan"))
        .current_dir(ws.path(""))
        .env("MKPLAN_STATE_DIR", ws.path(".mkplan"))
        .env_remove("MKPLAN_BACKEND")
        .env("NO_COLOR", "1")
        .env("MKPLAN_SIM_FAULTS", "latency_ms=400")
        .envs(PASSWORDS)
        .args(["apply", DESIRED, "--auto-approve", "--parallelism", "1"])
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
    let not_run = ws.mkplan(&[
        "attest",
        "rewrap",
        INSTANCE,
        "--not-run",
        "--desired",
        DESIRED,
    ]);
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

    let completed = ws.mkplan(&[
        "attest",
        "rewrap",
        INSTANCE,
        "--completed",
        "--desired",
        DESIRED,
    ]);
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
    let attest = ws.mkplan(&[
        "attest",
        "rewrap",
        INSTANCE,
        "--not-run",
        "--desired",
        DESIRED,
        "--service-evidence",
        "IBM support case 123: no rotation ran",
    ]);
    assert_eq!(attest.code, 0, "{}", said(&attest));
    assert!(
        journal(&ws).len() > journaled.len(),
        "the attestation was not journaled"
    );
    assert_no_incidents(&ws, "attestation only");
}

// ---------------------------------------------------------------------------------------------
// 8. "Rewrapped" candidates come from every register

/// Class 8, "rewrapped" candidates come from every register. The service reports "rewrap
/// successful, waiting on set immediate" (from A); the storage is under C, whose only copy is
/// u1's new register (Full Uncommitted C): u2 and u3 were restaged with B by hand after a
/// rewrap A → C. Today only committed new registers are candidates, so B is taken as the
/// storage's key and the plan clears u1's C (the key storage lost). It must refuse (exit 3)
/// and plan no clear_new_mk.
#[test]
fn an_uncommitted_register_is_a_rewrap_candidate_too() {
    let fleet = Fleet::instance()
        .key_storage(C)
        .reports_rotation_status(true)
        .unit(uncommitted(C), valid(A))
        .unit(committed(B), valid(A))
        .unit(committed(B), valid(A));
    let ws = rotate_to_b(&fleet);
    ws.write(FLEET, &rewrapped_from(&fleet, A));
    let before = ws.bytes(FLEET);
    let run = ws.plan();
    if run.code == 2 {
        let plan = run.json();
        panic!(
            "planned instead of refusing (clears: {:?}): {:?}",
            find(&plan, "clear_new_mk", None)
                .iter()
                .map(|s| s["unit"].clone())
                .collect::<Vec<_>>(),
            pairs(&plan, None)
        );
    }
    assert_refused_untouched(&ws, &run, &before, "storage under an uncommitted key");
}

// ---------------------------------------------------------------------------------------------
// 9. A stale journal never blocks forever

/// Class 9, a stale journal never blocks forever. No status; this folder's apply died after
/// the loads; someone else finished the rotation (every current B, every new Empty). Today the
/// journal's "rotation started from A, no rewrap sent" contradicts the registers and `plan`
/// refuses (exit 3) forever. A finished rotation must plan nothing (exit 0); `journal close`
/// closes the record (exit 0) and the next plan still has no changes.
#[test]
fn a_rotation_finished_elsewhere_plans_nothing_and_its_record_closes() {
    let ws = rotate_to_b(&three_units(false));
    crash_after(&ws, 3);
    let finished = Fleet::instance()
        .key_storage(B)
        .reports_rotation_status(false)
        .units(3, empty(), valid(B));
    ws.write(FLEET, &finished.to_yaml());
    let plan = ws.plan();
    let plan = plan.planned(0);
    assert_steps(&plan, vec![]);
    let close = ws.mkplan(&["journal", "close", DESIRED]);
    assert_eq!(close.code, 0, "journal close: {}", said(&close));
    ws.plan().planned(0);
    assert_no_incidents(&ws, "finished elsewhere");
}

/// Class 9: `journal close` refuses (exit 3, with the reason) for an instance whose rotation
/// is not finished, and closes nothing. Today there is no `journal` command (a usage error).
#[test]
fn journal_close_refuses_an_unfinished_rotation() {
    let ws = rotate_to_b(&three_units(false));
    crash_after(&ws, 3);
    let journaled = journal(&ws);
    let close = ws.mkplan(&["journal", "close", DESIRED]);
    assert_eq!(close.code, 3, "journal close, unfinished: {}", said(&close));
    assert!(
        said(&close).contains(INSTANCE),
        "the refusal names the instance:\n{}",
        said(&close)
    );
    assert_eq!(
        journal(&ws),
        journaled,
        "the refused close changed the journal"
    );
    assert_no_incidents(&ws, "journal close refused");
}

// ---------------------------------------------------------------------------------------------
// 10. After the rewrap, the safe recovery

/// The plan of class 10 (a): u1 leaves the selection; u2 and u3 are reloaded, committed and
/// promoted; never a rewrap, never a clear.
fn reload_after_the_rewrap() -> Vec<Pair> {
    [
        vec![on("remove_unit", u(1))],
        each("load_new_mk", 2..=3),
        each("commit_new_mk", 2..=3),
        each("set_immediate", 2..=3),
    ]
    .concat()
}

/// Class 10 (a), after the rewrap, the safe recovery. Status reported; this folder's apply
/// rewrapped A → B (journaled as done), promoted u1 and died; then u2 and u3 lost their
/// staged copy (current A, new Empty: the fleet file is edited, as a replaced card would
/// leave them). Today the status is matched only against committed new registers, "fits 0
/// master keys", and the plan is refused before the journal is heard. The journal's
/// completed rewrap A → B and the status agree: plan remove_unit u1 and load, commit, set
/// immediate on u2 and u3, never a rewrap (exit 2), and converge with zero incidents.
#[test]
fn after_the_rewrap_units_that_lost_their_copy_are_reloaded() {
    let ws = rotate_to_b(&three_units(true));
    crash_after(&ws, 8);
    // u2 and u3 lose their staged copy (a card replaced, say): an edit of the fleet, not an
    // operation, since clearing it would be a harmful operation of its own.
    let mut fleet = sim_file(&ws, FLEET);
    for unit in &mut fleet.instances[0].crypto_units[1..] {
        unit.new_register = NewRegister::Empty;
    }
    ws.write(FLEET, &fleet.to_yaml());
    assert_no_incidents(&ws, "u2 and u3 lost their staged copy");
    let units = &fleet.instances[0].crypto_units;
    assert_eq!(
        units[0]
            .current_register
            .verification_pattern()
            .map(|v| v.as_str()),
        Some(B),
        "the crashed apply promoted u1 first: {units:?}"
    );
    let plan = ws.plan().planned(2);
    assert_steps(&plan, reload_after_the_rewrap());
    let run = apply(&ws, "", &[]);
    assert_eq!(run.code, 0, "{}", said(&run));
    assert_converged(&ws, "reloaded after the rewrap");
}

/// Class 10 (a) without a journal: the same registers, hand-written (status reported,
/// `rewrapped_from: A`, storage under B). They fit two histories the planner cannot tell
/// apart: a rewrap A → B, u1 promoted, u2 and u3 lost their staged B (the reload is safe); or
/// a rewrap B → A, u2 and u3 promoted, u1 lost its staged A (setting B on u2 and u3 loses the
/// storage). The status says neither key, so the plan refuses (exit 3), names both keys, and
/// asks for the evidence that settles it; the operator's `--completed` attestation does, and
/// the reload then converges.
#[test]
fn after_the_rewrap_lost_copies_without_a_journal_need_the_operators_word() {
    let fleet = Fleet::instance()
        .key_storage(B)
        .reports_rotation_status(true)
        .unit(empty(), valid(B))
        .unit(empty(), valid(A))
        .unit(empty(), valid(A));
    let ws = rotate_to_b(&fleet);
    ws.write(FLEET, &rewrapped_from(&fleet, A));
    let refused = ws.plan();
    refused.expect_code(3);
    assert!(
        said(&refused).contains("may be under any of"),
        "{}",
        said(&refused)
    );
    assert!(
        said(&refused).contains("mkplan attest rewrap"),
        "{}",
        said(&refused)
    );
    let instance = fleet.ids()[0].clone();
    ws.mkplan(&[
        "attest",
        "rewrap",
        &instance,
        "--completed",
        "--desired",
        DESIRED,
    ])
    .expect_code(0);
    let plan = ws.plan().planned(2);
    assert_steps(&plan, reload_after_the_rewrap());
    let run = apply(&ws, "", &[]);
    assert_eq!(run.code, 0, "{}", said(&run));
    assert_converged(&ws, "reloaded after the rewrap");
}

/// Class 10 (b): as (a), but u2 and u3 were reloaded and not committed (new Full Uncommitted
/// B). Today: refused ("fit 0 master keys"). Must plan remove_unit u1, commit then set
/// immediate on u2 and u3, no rewrap (exit 2), and converge with zero incidents.
#[test]
fn after_the_rewrap_reloaded_units_are_committed_then_promoted() {
    let fleet = Fleet::instance()
        .key_storage(B)
        .reports_rotation_status(true)
        .unit(empty(), valid(B))
        .unit(uncommitted(B), valid(A))
        .unit(uncommitted(B), valid(A));
    let ws = rotate_to_b(&fleet);
    ws.write(FLEET, &rewrapped_from(&fleet, A));
    let plan = ws.plan().planned(2);
    assert_steps(
        &plan,
        [
            vec![on("remove_unit", u(1))],
            each("commit_new_mk", 2..=3),
            each("set_immediate", 2..=3),
        ]
        .concat(),
    );
    let run = apply(&ws, "", &[]);
    assert_eq!(run.code, 0, "{}", said(&run));
    assert_converged(&ws, "committed after the rewrap");
}

/// Class 10 (c): as (a), but u2 was zeroized (imprint mode): refuse (exit 3) naming u2's
/// hsm_id and "imprint". (Passes today: the pre-check comes first; it guards the recovery
/// path against skipping the pre-checks.)
#[test]
fn after_the_rewrap_a_unit_in_imprint_mode_is_refused() {
    let fleet = Fleet::instance()
        .key_storage(B)
        .reports_rotation_status(true)
        .unit(empty(), valid(B))
        .unit(empty(), Current::Empty)
        .imprint()
        .unit(empty(), valid(A));
    let ws = rotate_to_b(&fleet);
    ws.write(FLEET, &rewrapped_from(&fleet, A));
    let run = ws.plan();
    run.expect_code(3);
    let text = said(&run);
    assert!(text.contains(&u(2)), "{text}");
    assert!(text.contains("imprint"), "{text}");
}
