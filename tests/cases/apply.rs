//! `apply` through the binary. The faults at the operations where the outcome differs (after
//! a load, after a commit, at the rewrap, at the last step), then a plain rerun, on a 3-unit
//! instance and on one with 3 operational, 2 recovery and 2 failover units, with and without a
//! service that reports its rewrap status: the real process dies (`crash_after_op` aborts the
//! embedded simulator's mkplan; over HTTP the `sim serve` process dies), and on a shared
//! database another operator resumes. `cases::sweeps` puts a fault at every operation, in
//! process. The simulator is the judge: after every sequence it must show zero incidents, and
//! the fleet must be converged or untouched.

use mkplan::backend::sim::Fleet as SimFleet;

use crate::support::*;

pub(crate) const PASSWORDS: [(&str, &str); 2] = [
    ("MKPLAN_PART1_PASSWORD", "demo-custodian-1"),
    ("MKPLAN_PART2_PASSWORD", "demo-custodian-2"),
];

fn apply(ws: &Workspace, faults: &str) -> Run {
    let mut env = PASSWORDS.to_vec();
    if !faults.is_empty() {
        env.push(("MKPLAN_SIM_FAULTS", faults));
    }
    ws.mkplan_with_env(&["apply", "desired.yaml", "--auto-approve"], &env)
}

/// The rerun after a fault: on a shared database, by another operator from another folder
/// with another journal key (the rotation X started, Y resumes); else by the same one.
fn resume(ws: &Workspace) -> Run {
    if ws.store.is_some() {
        ws.mkplan_as_other(&["apply", DESIRED, "--auto-approve"], &PASSWORDS)
    } else {
        apply(ws, "")
    }
}

pub(crate) fn three_units(reports: bool) -> Fleet {
    Fleet::instance()
        .key_storage(A)
        .reports_rotation_status(reports)
        .units(3, empty(), valid(A))
}

pub(crate) fn seven_units(reports: bool) -> Fleet {
    let mut fleet = Fleet::instance()
        .key_storage(A)
        .reports_rotation_status(reports)
        .units(3, empty(), valid(A));
    for kind in ["recovery", "recovery", "failover", "failover"] {
        fleet = fleet.unit(empty(), valid(A)).kind(kind);
    }
    fleet
}

/// Mutating operations of a full rotation of `units` crypto units.
fn operations(units: usize) -> usize {
    3 * units + 1
}

/// The simulator's state: the fleet file, with the operation log of a `sim serve` on it (still
/// running, or killed) replayed.
pub(crate) fn sim(ws: &Workspace) -> SimFleet {
    mkplan::backend::sim::oplog::read(&ws.path("fleet.yaml")).expect("the fleet reads")
}

pub(crate) fn assert_no_incidents(ws: &Workspace, context: &str) {
    let fleet = sim(ws);
    assert!(
        fleet.incidents.is_empty(),
        "{context}: incidents {:#?}",
        fleet.incidents
    );
    assert!(
        !fleet.instances[0].key_storage.unusable,
        "{context}: key storage unusable"
    );
}

pub(crate) fn assert_converged(ws: &Workspace, context: &str) {
    assert_no_incidents(ws, context);
    let fleet = sim(ws);
    let instance = &fleet.instances[0];
    assert_eq!(
        instance.key_storage.verification_pattern.as_str(),
        B,
        "{context}: key storage"
    );
    for unit in &instance.crypto_units {
        assert_eq!(
            unit.current_register.to_string().split(' ').next(),
            Some("Valid"),
            "{context}"
        );
        assert!(
            unit.current_register
                .verification_pattern()
                .unwrap()
                .as_str()
                == B,
            "{context}: {unit:?}"
        );
        assert_eq!(unit.new_register.status(), "Empty", "{context}: {unit:?}");
    }
}

/// Journal records of rewraps that took effect in the fleet: a second one would be an incident
/// too, but this names it.
fn rewraps_in_audit(ws: &Workspace) -> usize {
    let text = ws.audit_text();
    text.lines()
        .filter(|l| l.contains("\"action\":\"rewrap_key_storage\"") && l.contains("\"after\""))
        .count()
}

/// `fault` at each operation of `points` (counted from 1), each in a fresh workspace.
fn sweep(fleet: fn(bool) -> Fleet, units: usize, fault: &str, reports: bool, points: &[usize]) {
    let rewrap_op = 2 * units + 1;
    for &n in points {
        assert!((1..=operations(units)).contains(&n), "no operation {n}");
        let ws = rotate_to_b(&fleet(reports));
        let context = format!("{fault}={n}, reports_rotation_status={reports}");
        let first = apply(&ws, &format!("{fault}={n}"));
        match (fault, ws.via) {
            // The embedded simulator runs in mkplan's process: the crash kills mkplan.
            ("crash_after_op", Via::Sim) => assert_eq!(
                first.code, -1,
                "{context}: the first run must die\n{}",
                first.stderr
            ),
            // Over HTTP the server dies: mkplan cannot settle the step and stops cleanly.
            ("crash_after_op", Via::Http) => {
                assert_eq!(first.code, 1, "{context}: {}", first.stderr);
                assert!(
                    first
                        .stderr
                        .contains("reading the live state to settle step"),
                    "{context}: {}",
                    first.stderr
                );
            }
            _ => assert_ne!(first.code, 3, "{context}: {}", first.stderr),
        }
        assert_no_incidents(&ws, &context);
        // Which operation is the n-th depends on scheduling (with several in flight, a
        // commit may come before the last load): ask the fleet whether a commit took effect.
        let committed = sim(&ws).instances[0]
            .crypto_units
            .iter()
            .any(|u| u.new_register.status() == "Full Committed");
        // The fleet as the simulator knows it (its operation log replayed): over HTTP the
        // server folds the log into the file when it restarts, which changes the bytes only.
        let before = sim(&ws).to_yaml();
        let rerun = resume(&ws);
        // A transient error on the rewrap leaves its outcome unknown, whether or not it took
        // effect; a crash after a commit and before the rewrap leaves a gap in which someone
        // else may have rewrapped. Without the service's status the rerun must refuse, never
        // resend it, until the operator says what happened. With it, a rewrap that took effect
        // is settled as done; but one that failed with no effect is not settled by "no
        // rewrap": the request may still be queued at the service (the adversary's a7), so
        // the rerun refuses until the operator says what the service showed.
        let unknown_rewrap = n == rewrap_op && (!reports || fault == "fail_op");
        let interrupted_after_commits =
            !reports && fault == "crash_after_op" && committed && n < rewrap_op;
        if (unknown_rewrap || interrupted_after_commits) && first.code != 0 {
            assert_eq!(
                rerun.code, 3,
                "{context}: the rerun must refuse\n{}",
                rerun.stderr
            );
            assert!(
                rerun.stderr.contains("rewrap_evidence")
                    && rerun.stderr.contains("mkplan attest rewrap"),
                "{context}: {}",
                rerun.stderr
            );
            assert_eq!(
                sim(&ws).to_yaml(),
                before,
                "{context}: the refused rerun touched the fleet"
            );
            assert_no_incidents(&ws, &context);
            // The operator tells the truth (here: the simulator's ground truth), and the
            // next rerun converges.
            attest_the_truth(&ws, &context);
            let last = resume(&ws);
            assert_eq!(
                last.code, 0,
                "{context}: after the attestation\n{}",
                last.stderr
            );
            assert_converged(&ws, &context);
        } else {
            assert_eq!(
                rerun.code, 0,
                "{context}: the rerun must converge\n{}",
                rerun.stderr
            );
            assert_converged(&ws, &context);
        }
        assert!(
            rewraps_in_audit(&ws) <= 1,
            "{context}: rewrap recorded twice\n{}",
            ws.audit_text()
        );
    }
}

/// `mkplan attest rewrap` with what the simulator knows: the rewrap ran if the key storage
/// is under B.
fn attest_the_truth(ws: &Workspace, context: &str) {
    let fleet = sim(ws);
    let instance = fleet.instances[0].id.clone();
    let ran = fleet.instances[0].key_storage.verification_pattern.as_str() == B;
    let mut args = vec!["attest", "rewrap", &instance, "--desired", DESIRED];
    if ran {
        args.push("--completed");
    } else {
        args.extend([
            "--not-run",
            "--service-evidence",
            "the simulator's ground truth",
        ]);
    }
    let attested = if ws.store.is_some() {
        ws.mkplan_as_other(&args, &[])
    } else {
        ws.mkplan(&args)
    };
    assert_eq!(attested.code, 0, "{context}: attest\n{}", attested.stderr);
}

// A rotation of 3 units: loads 1–3, commits 4–6, the rewrap 7, set immediate 8–10 (which load
// or commit comes first depends on scheduling; the rewrap waits for every commit).
crate::on_both_backends! {
    fn crash_then_rerun_three_units() {
        for reports in [true, false] {
            sweep(three_units, 3, "crash_after_op", reports, &[1, 5, 7, 10]);
        }
    }
}

// 7 units: loads 1–7, commits 8–14, the rewrap 15, set immediate 16–22.
crate::on_both_backends! {
    fn crash_then_rerun_seven_units() {
        for reports in [true, false] {
            sweep(seven_units, 7, "crash_after_op", reports, &[9, 15, 22]);
        }
    }
}

// A lost response and a failed operation through the binary: only where the rerun is another
// operator's, on a shared database (issue 14). Nothing dies here, and the executor sees these
// faults as the same errors in process: `cases::sweeps` puts each at every operation of both
// fleets, with and without the rotation status, on the embedded simulator and over HTTP, its
// journal in a state folder as a single operator's is. The rest of what these runs asserted
// on the embedded simulator and over HTTP (the refusal naming `mkplan attest rewrap`, the
// fleet untouched by it, the attestation, then convergence) the runs below assert through the
// binary at the same operations; `cases::ceremony` and `cases::witnesses::settling` attest a
// lost and a failed rewrap in a state folder, and `cases::messages_http`, `cases::network`
// and `cases::witnesses::adversary` give `sim serve` these faults over HTTP.
macro_rules! on_the_shared_database {
    ($(fn $name:ident() $body:block)*) => {$(
        mod $name {
            use super::*;

            fn scenario() $body

            /// On the embedded simulator, with the state in PostgreSQL.
            #[test]
            fn postgres() {
                crate::support::postgres::run_on_postgres(scenario);
            }
        }
    )*};
}

on_the_shared_database! {
    fn lost_response_then_rerun() {
        for reports in [true, false] {
            sweep(three_units, 3, "lose_response_op", reports, &[4, 7]);
            sweep(seven_units, 7, "lose_response_op", reports, &[15]);
        }
    }

    fn failed_operation_then_rerun() {
        for reports in [true, false] {
            sweep(three_units, 3, "fail_op", reports, &[1, 7]);
            sweep(seven_units, 7, "fail_op", reports, &[15]);
        }
    }
}

crate::on_both_backends! {
    fn a_lost_rewrap_response_is_settled_by_the_status_and_never_resent() {
        let ws = rotate_to_b(&three_units(true));
        let run = apply(&ws, "lose_response_op=7");
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stderr.contains("settled from the live state"),
            "{}",
            run.stderr
        );
        assert_converged(&ws, "lost rewrap response");
    }
}

crate::on_both_backends! {
    fn a_saved_plan_that_went_stale_is_refused_and_nothing_is_touched() {
        let ws = rotate_to_b(&three_units(true));
        ws.mkplan(&["plan", "desired.yaml", "--out", "plan.json"])
            .expect_code(0);
        // Someone loads a key on unit 2 after the review.
        let changed = Fleet::instance()
            .key_storage(A)
            .unit(empty(), valid(A))
            .unit(uncommitted(C), valid(A))
            .unit(empty(), valid(A));
        ws.write("fleet.yaml", &changed.to_yaml());
        let before = ws.bytes("fleet.yaml");
        let run = ws.mkplan_with_env(&["apply", "plan.json"], &PASSWORDS);
        assert_eq!(run.code, 4, "{}", run.stderr);
        assert!(run.stderr.contains("stale"), "{}", run.stderr);
        assert!(
            run.stderr
                .contains("new register was Empty, now Full Uncommitted"),
            "{}",
            run.stderr
        );
        assert_eq!(ws.bytes("fleet.yaml"), before);
    }
}

crate::on_both_backends! {
    fn a_saved_plan_applies_as_reviewed() {
        let ws = rotate_to_b(&three_units(false));
        ws.mkplan(&["plan", "desired.yaml", "--out", "plan.json"])
            .expect_code(0);
        let run = ws.mkplan_with_env(&["apply", "plan.json"], &PASSWORDS);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_converged(&ws, "saved plan");
        let verify = ws.mkplan(&["audit", "verify"]);
        assert_eq!(verify.code, 0, "{}", verify.stderr);
    }
}

crate::on_both_backends! {
    fn wrong_key_parts_stop_before_the_first_step() {
        let ws = Workspace::new(&three_units(true), &Desired::rotate_to(C));
        let before = ws.bytes("fleet.yaml");
        let run = apply(&ws, "");
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(run.stderr.contains("Nothing was touched"), "{}", run.stderr);
        assert_eq!(ws.bytes("fleet.yaml"), before);
        let missing = rotate_to_b(&three_units(true));
        let run = missing.mkplan_with_env(
            &["apply", "desired.yaml", "--auto-approve"],
            &PASSWORDS[..1],
        );
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            run.stderr.contains("MKPLAN_PART2_PASSWORD"),
            "{}",
            run.stderr
        );
        assert_no_incidents(&missing, "missing password");
    }
}

#[test]
fn apply_without_approval_on_no_terminal_touches_nothing() {
    let ws = rotate_to_b(&three_units(true));
    let before = ws.bytes("fleet.yaml");
    let run = ws.mkplan_with_env(&["apply", "desired.yaml"], &PASSWORDS);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("--auto-approve"), "{}", run.stderr);
    assert_eq!(ws.bytes("fleet.yaml"), before);
}

#[test]
fn a_second_apply_while_the_first_runs_is_refused_by_the_lock() {
    let ws = rotate_to_b(&three_units(true));
    let mut first = ws
        .process(&["apply", "desired.yaml", "--auto-approve"])
        .env("MKPLAN_SIM_FAULTS", "latency_ms=400")
        .envs(PASSWORDS)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the first apply");
    // Wait until the first holds the lock and has begun (its journal exists).
    let started = std::time::Instant::now();
    while !ws.path(".mkplan/journal.jsonl").exists()
        && started.elapsed() < std::time::Duration::from_secs(20)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = apply(&ws, "");
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert!(
        second.stderr.contains("another apply holds the lock"),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains(&format!("process {}", first.id())),
        "{}",
        second.stderr
    );
    assert!(first.wait().expect("the first apply ends").success());
    assert_converged(&ws, "after the first apply");
}

#[test]
fn a_torn_journal_tail_is_tolerated_and_a_flipped_bit_is_refused() {
    let ws = rotate_to_b(&three_units(true));
    assert_eq!(apply(&ws, "crash_after_op=4").code, -1);
    let journal = ws.path(".mkplan/journal.jsonl");
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes.extend_from_slice(b"{\"sha256\":\"12\",\"record\":{\"kind\":\"outc");
    std::fs::write(&journal, &bytes).unwrap();
    let run = apply(&ws, "");
    assert_eq!(run.code, 0, "torn tail: {}", run.stderr);
    assert_converged(&ws, "torn tail");

    let ws = rotate_to_b(&three_units(true));
    assert_eq!(apply(&ws, "crash_after_op=4").code, -1);
    let journal = ws.path(".mkplan/journal.jsonl");
    let mut bytes = std::fs::read(&journal).unwrap();
    let at = bytes.iter().position(|b| *b == b'r').unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(&journal, &bytes).unwrap();
    let before = ws.bytes("fleet.yaml");
    let run = apply(&ws, "");
    assert_eq!(run.code, 3, "flipped bit: {}", run.stderr);
    assert!(run.stderr.contains("damaged at line 1"), "{}", run.stderr);
    assert_eq!(ws.bytes("fleet.yaml"), before);
}

#[test]
fn audit_verify_finds_the_first_broken_link() {
    let ws = rotate_to_b(&three_units(true));
    assert_eq!(apply(&ws, "").code, 0);
    let path = ws.path(".mkplan/audit.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.lines().count() >= 12);
    let tampered = text.replacen("\"outcome\":\"done\"", "\"outcome\":\"not_done\"", 1);
    assert_ne!(tampered, text);
    let line = tampered
        .lines()
        .position(|l| l.contains("not_done"))
        .unwrap()
        + 1;
    std::fs::write(&path, tampered).unwrap();
    let run = ws.mkplan(&["audit", "verify"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("first broken link at line {}", line + 1)),
        "{}",
        run.stderr
    );
}

#[test]
fn no_secret_reaches_the_state_directory_plan_files_or_output() {
    let ws = rotate_to_b(&three_units(true));
    let plan = ws.mkplan(&["plan", "desired.yaml", "--out", "plan.json", "--json"]);
    let crash = apply(&ws, "crash_after_op=5");
    let rerun = apply(&ws, "");
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    let mut haystack = format!(
        "{}{}{}{}{}{}",
        plan.stdout, plan.stderr, crash.stdout, crash.stderr, rerun.stdout, rerun.stderr
    );
    for name in [
        ".mkplan/journal.jsonl",
        ".mkplan/audit.jsonl",
        ".mkplan/lock",
        "plan.json",
        "fleet.yaml",
    ] {
        haystack.push_str(&ws.read(name));
    }
    for (_, password) in PASSWORDS {
        assert!(!haystack.contains(password), "a password leaked");
    }
    let mut parts = Vec::new();
    for n in 1..=2 {
        let text = ws.read(&format!("keyparts/custodian-{n}.json"));
        let file = mkplan::keypart::parse_file("part", &text).unwrap();
        assert!(
            !haystack.contains(&file.ciphertext[..16]),
            "key part ciphertext leaked"
        );
        let password = mkplan::keypart::Password::new(PASSWORDS[n - 1].1.into());
        parts.push(mkplan::keypart::open(&file, &password).unwrap());
    }
    let key = mkplan::keypart::combine(&parts).unwrap();
    for secret in parts.iter().chain([&key]) {
        let bytes = hex::encode(secret.expose());
        assert!(
            !haystack.to_lowercase().contains(&bytes[..16]),
            "key bytes leaked"
        );
    }
}

#[test]
fn unlock_needs_the_exact_id_and_never_breaks_a_live_lock() {
    let ws = rotate_to_b(&three_units(true));
    assert_eq!(apply(&ws, "crash_after_op=2").code, -1);
    let holder: serde_json::Value = serde_json::from_str(&ws.read(".mkplan/lock")).unwrap();
    let id = holder["lock_id"].as_str().unwrap().to_string();
    let wrong = ws.mkplan(&["unlock", "0000000000000000"]);
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(wrong.stderr.contains(&id), "{}", wrong.stderr);
    let right = ws.mkplan(&["unlock", &id]);
    assert_eq!(right.code, 0, "{}", right.stderr);
    // The crashed apply's lock never blocked the rerun anyway: an OS lock dies with its process.
    assert_eq!(apply(&ws, "").code, 0);
    assert_converged(&ws, "after unlock");
}

/// Regression (found in review): a plan saved before a rewrap was sent, on a service that
/// reports no rotation status, still matched the live state (a rewrap changes no register),
/// and applying it again sent a second rewrap. A saved plan is now planned again from the
/// journal, and planning refuses until the rewrap's outcome is known.
#[test]
fn a_saved_plan_never_resends_a_rewrap_the_journal_has_sent() {
    let ws = rotate_to_b(&three_units(false));
    let first = ws.mkplan_with_env(
        &[
            "apply",
            "desired.yaml",
            "--auto-approve",
            "--parallelism",
            "1",
        ],
        &[
            PASSWORDS[0],
            PASSWORDS[1],
            ("MKPLAN_SIM_FAULTS", "crash_after_op=6"),
        ],
    );
    assert_eq!(first.code, -1, "{}", first.stderr);
    // Interrupted after the commits, on a service without status: the operator's word first.
    ws.mkplan(&["plan", "desired.yaml"]).expect_code(3);
    let instance = sim(&ws).instances[0].id.clone();
    ws.mkplan(&[
        "attest",
        "rewrap",
        &instance,
        "--not-run",
        "--desired",
        "desired.yaml",
    ])
    .expect_code(0);
    ws.mkplan(&["plan", "desired.yaml", "--out", "plan.json"])
        .expect_code(0);
    let crash = ws.mkplan_with_env(
        &["apply", "plan.json"],
        &[
            PASSWORDS[0],
            PASSWORDS[1],
            ("MKPLAN_SIM_FAULTS", "crash_after_op=1"),
        ],
    );
    assert_eq!(
        crash.code, -1,
        "the rewrap is sent, then mkplan dies: {}",
        crash.stderr
    );
    let before = ws.bytes("fleet.yaml");
    let again = ws.mkplan_with_env(&["apply", "plan.json"], &PASSWORDS);
    assert_eq!(again.code, 3, "planned again, it refuses: {}", again.stderr);
    assert!(again.stderr.contains("rewrap_evidence"), "{}", again.stderr);
    assert_eq!(ws.bytes("fleet.yaml"), before, "nothing was sent");
    let fresh = ws.mkplan(&["plan", "desired.yaml"]);
    assert_eq!(fresh.code, 3, "{}", fresh.stderr);
    assert!(fresh.stderr.contains("rewrap_evidence"), "{}", fresh.stderr);
    assert_no_incidents(&ws, "after the saved plan was refused");
}
