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
//!
//! - this file: the helpers, and classes 1–3 (silence, interruptions, one backend);
//! - `settling`: classes 4–7 (an abort, the re-read before a rewrap, unknown rewraps,
//!   attestations);
//! - `after_rewrap`: classes 8–10 (candidates, stale journals, recoveries);
//! - `adversary`: regressions from an adversarial review.

mod adversary;
mod after_rewrap;
mod settling;

use mkplan::backend::sim::{Faults, Fleet as SimFleet, SimOperation, Simulator};
use mkplan::model::VerificationPattern;
use serde_json::Value;

use crate::cases::apply::{PASSWORDS, assert_converged, assert_no_incidents, three_units};
use crate::support::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// `mkplan attest rewrap INSTANCE --desired desired.yaml HOW…` for the workspace's instance.
fn attest(ws: &Workspace, instance: &str, how: &[&str]) -> Run {
    attest_with_env(ws, instance, how, &[])
}

/// `attest` with more environment variables (another journal key).
fn attest_with_env(ws: &Workspace, instance: &str, how: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec!["attest", "rewrap", instance, "--desired", DESIRED];
    args.extend_from_slice(how);
    ws.mkplan_with_env(&args, env)
}

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

/// A fleet file of the workspace as every process reads it: the file, with the operation log
/// a killed apply left replayed.
fn sim_file(ws: &Workspace, name: &str) -> SimFleet {
    mkplan::backend::sim::oplog::read(&ws.path(name)).expect("the fleet reads")
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

pub(crate) fn clear_new(unit: &str) -> SimOperation {
    SimOperation::ClearNewMk {
        instance: INSTANCE.into(),
        unit: unit.into(),
        verification_pattern: None,
    }
}

/// Another operator, with the TKE CLI: performs `operations` on the fleet file `name`.
pub(crate) fn operator(ws: &Workspace, name: &str, operations: &[SimOperation]) {
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
    let attest = attest(&ws, INSTANCE, &["--not-run"]);
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
