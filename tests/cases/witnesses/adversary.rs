//! Regressions from an adversarial review: each lost a key storage (or hid a credential)
//! before its fix.

use super::*;
use crate::cases::apply::{PASSWORDS, assert_converged, assert_no_incidents, sim, three_units};
use crate::cases::security_journal::says;
use crate::support::*;

/// Key parts for a third master key in `keyparts/custodian-3.json` and `-4.json` (passwords
/// in MKPLAN_PART3_PASSWORD and MKPLAN_PART4_PASSWORD), and a desired file `name` rotating to
/// it; returns the key's VP.
fn third_key(ws: &Workspace, name: &str) -> String {
    for n in 3..=4 {
        ws.mkplan_with_env(
            &[
                "keypart",
                "new",
                "--out",
                &format!("keyparts/custodian-{n}.json"),
                "--password-env",
                "PW",
            ],
            &[("PW", &format!("demo-custodian-{n}"))],
        )
        .expect_code(0);
    }
    let vp = ws.mkplan_with_env(
        &[
            "keypart",
            "vp",
            "keyparts/custodian-3.json",
            "keyparts/custodian-4.json",
            "--password-env",
            "PW3",
            "--password-env",
            "PW4",
        ],
        &[("PW3", "demo-custodian-3"), ("PW4", "demo-custodian-4")],
    );
    let vp = vp.stdout.trim().to_string();
    assert_eq!(vp.len(), 64, "{vp:?}");
    let desired = ws
        .read(DESIRED)
        .replace(B, &vp)
        .replace("custodian-1", "custodian-3")
        .replace("custodian-2", "custodian-4")
        .replace("MKPLAN_PART1_PASSWORD", "MKPLAN_PART3_PASSWORD")
        .replace("MKPLAN_PART2_PASSWORD", "MKPLAN_PART4_PASSWORD");
    ws.write(name, &desired);
    vp
}

fn with_all_passwords(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut env = PASSWORDS.to_vec();
    env.extend([
        ("MKPLAN_PART3_PASSWORD", "demo-custodian-3"),
        ("MKPLAN_PART4_PASSWORD", "demo-custodian-4"),
    ]);
    env.extend_from_slice(extra);
    env
}

/// Regression (adversarial review, F1): folder X rotated A → B to completion; folder Y then
/// rotated B → D and died right after its rewrap. X, asked to rotate to D, took its old
/// "rewrap A → B completed" record for this rotation (every register held B or D) and sent
/// a second rewrap. A finished rotation is closed when its apply converges, and a record
/// speaks only of registers that fit its direction: X must refuse, not rewrap.
#[test]
fn a_finished_rotations_record_is_no_evidence_for_a_later_one() {
    let ws = rotate_to_b(&three_units(false));
    let _d = third_key(&ws, "to-d.yaml");
    let env = with_all_passwords(&[]);
    ws.mkplan_with_env(
        &["--state-dir", "x", "apply", DESIRED, "--auto-approve"],
        &env,
    )
    .expect_code(0);
    let crash = with_all_passwords(&[("MKPLAN_SIM_FAULTS", "crash_after_op=7")]);
    let died = ws.mkplan_with_env(
        &["--state-dir", "y", "apply", "to-d.yaml", "--auto-approve"],
        &crash,
    );
    assert_eq!(died.code, -1, "{}", died.stderr);
    let before = ws.bytes(FLEET);
    let again = ws.mkplan_with_env(
        &["--state-dir", "x", "apply", "to-d.yaml", "--auto-approve"],
        &env,
    );
    assert_eq!(again.code, 3, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(
        ws.bytes(FLEET),
        before,
        "the refused apply touched the fleet"
    );
    assert_no_incidents(&ws, "X after Y's rewrap");
}

/// Regression (adversarial review, F2): `sim:link.yaml`, a symlink to the fleet file, made the
/// simulator's atomic write replace the link with a file of its own, while the journal bound
/// its records to the fleet file; a later apply on the fleet file then trusted records of the
/// copy and set immediate before the rewrap. The simulator writes the file the link names.
#[test]
fn a_symlink_to_the_fleet_file_is_the_same_fleet() {
    let ws = rotate_to_b(&three_units(false));
    std::os::unix::fs::symlink(ws.path(FLEET), ws.path("link.yaml")).unwrap();
    apply(&ws, "", &["--backend", "sim:link.yaml"]).expect_code(0);
    assert!(
        std::fs::symlink_metadata(ws.path("link.yaml"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link is still a link"
    );
    assert_converged(&ws, "applied through the link");
}

/// Regression (adversarial review, F5): after mkplan's own rewrap lost its response, a crypto
/// unit left the instance; the changed unit list made `attest --not-run` forget that the
/// rewrap was mkplan's own and accept it without the service's evidence, and the next apply
/// rewrapped again.
#[test]
fn an_unknown_rewrap_stays_unknown_when_the_units_change() {
    let fleet = three_units(false);
    let ws = rotate_to_b(&fleet);
    let first = apply(&ws, "lose_response_op=7", &[]);
    assert_eq!(first.code, 1, "{}", first.stderr);
    let text = ws.read(FLEET);
    let third = text.find(&format!("  - hsm_id: {}", u(3))).expect("unit 3");
    let end = text.find("incidents:").expect("incidents");
    ws.write(FLEET, &format!("{}{}", &text[..third], &text[end..]));
    let id = fleet.ids()[0].clone();
    let attest = attest(&ws, &id, &["--not-run"]);
    assert_eq!(attest.code, 3, "{}", attest.stderr);
    assert!(
        attest.stderr.contains("--service-evidence"),
        "{}",
        attest.stderr
    );
    let rerun = apply(&ws, "", &[]);
    assert_eq!(rerun.code, 3, "{}", rerun.stderr);
    assert_no_incidents(&ws, "after the unit left");
}

/// Regression (adversarial review, F8): a password in the backend URL reached the journal,
/// the audit trail and error messages. Such a URL is refused before anything is read.
#[test]
fn a_backend_url_with_a_password_is_refused() {
    let ws = rotate_to_b(&three_units(true));
    let run = ws.mkplan(&[
        "plan",
        DESIRED,
        "--backend",
        "http://user:hunter2@127.0.0.1:9",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("MKPLAN_TOKEN"), "{}", run.stderr);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
}

/// Regression (adversarial review, F3): over HTTP the journal bound its records to the URL
/// alone, so a rehearsal served on one address and the real fleet served later on the same
/// address shared them; the real fleet, staged by hand, got set immediate before its rewrap.
/// `sim serve` names its fleet file in its answers, and records bind to that.
#[test]
fn a_rehearsal_and_the_real_fleet_on_one_address_are_two_services() {
    let ws = rotate_to_b(&three_units(false));
    ws.write("rehearsal.yaml", &ws.read(FLEET));
    let staged = three_units(false).to_yaml().replace(
        "new_register: { status: Empty }",
        &format!("new_register: {{ status: Full Committed, verification_pattern: \"{B}\" }}"),
    );
    assert!(staged.contains("Full Committed"), "{staged}");
    ws.write(FLEET, &staged);
    let rehearsal = Server::start(&ws.path("rehearsal.yaml"), "", &[]);
    let url = rehearsal.url.clone();
    apply(&ws, "", &["--backend", &url]).expect_code(0);
    drop(rehearsal);
    let listen = url.trim_start_matches("http://").to_string();
    let _real = Server::start_on(&ws.path(FLEET), "", &[], &listen);
    let before = ws.bytes(FLEET);
    let run = apply(&ws, "", &["--backend", &url]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("no evidence here"), "{}", run.stderr);
    drop(_real);
    assert_eq!(
        ws.bytes(FLEET),
        before,
        "the refused apply touched the real fleet"
    );
    assert_no_incidents(&ws, "the real fleet");
}

/// Regression (second adversarial review, finding 1): folder X's rotation D → B stopped right
/// after its rewrap, before any set immediate; folder Y finished it, rotated back to D, and
/// staged B again. X's "rewrap to B completed" record fit those registers, so X set
/// immediate before any new rewrap. A completed rewrap counts only while a unit the journal
/// promoted still holds its key, or the operator vouches for the time since.
#[test]
fn a_rotation_on_and_back_does_not_revive_a_completed_rewrap() {
    let ws = rotate_to_b(&three_units(false));
    let d = third_key(&ws, "to-d.yaml");
    ws.write(FLEET, &ws.read(FLEET).replace(A, &d));
    let env = with_all_passwords(&[]);
    let x = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["--state-dir", "x"];
        all.extend_from_slice(args);
        ws.mkplan_with_env(&all, env)
    };
    let y = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["--state-dir", "y"];
        all.extend_from_slice(args);
        ws.mkplan_with_env(&all, env)
    };
    // The rewrap completes and is journaled; every attempt of the first set immediate fails,
    // so X stops having promoted nobody.
    let stopped = x(
        &["apply", DESIRED, "--auto-approve", "--parallelism", "1"],
        &with_all_passwords(&[("MKPLAN_SIM_FAULTS", "fail_op=8,fail_op=9,fail_op=10")]),
    );
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    let id = sim(&ws).instances[0].id.clone();
    y(
        &["attest", "rewrap", &id, "--completed", "--desired", DESIRED],
        &[],
    )
    .expect_code(0);
    y(&["apply", DESIRED, "--auto-approve"], &env).expect_code(0);
    y(&["apply", "to-d.yaml", "--auto-approve"], &env).expect_code(0);
    let loads = y(
        &["apply", DESIRED, "--auto-approve"],
        &with_all_passwords(&[("MKPLAN_SIM_FAULTS", "crash_after_op=3")]),
    );
    assert_eq!(loads.code, -1, "{}", loads.stderr);
    let before = ws.bytes(FLEET);
    let again = x(&["apply", DESIRED, "--auto-approve"], &env);
    assert_eq!(again.code, 3, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(
        ws.bytes(FLEET),
        before,
        "the refused apply touched the fleet"
    );
    assert_no_incidents(&ws, "X after a rotation on and back");
}

/// Regression (second adversarial review, finding 5): `attest rewrap --completed` was taken
/// on a fleet where no register holds the key, which no completed rewrap can leave.
#[test]
fn a_completed_rewrap_cannot_be_attested_where_no_register_holds_its_key() {
    let ws = rotate_to_b(&three_units(false));
    let id = sim(&ws).instances[0].id.clone();
    let run = attest(&ws, &id, &["--completed"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        !ws.path(".mkplan/journal.jsonl").exists() || ws.read(".mkplan/journal.jsonl").is_empty()
    );
}

/// Regression (second adversarial review, finding 4): mkplan died while showing the rewrap
/// ceremony step, before the operator ran anything; the operator's true `--not-run` was
/// refused as if mkplan's own request had gone unanswered. A step by hand is the operator's
/// own: they saw whether they ran it.
#[test]
fn the_operator_may_say_a_rewrap_by_hand_did_not_run() {
    let staged = three_units(false).to_yaml().replace(
        "new_register: { status: Empty }",
        &format!("new_register: {{ status: Full Committed, verification_pattern: \"{B}\" }}"),
    );
    let ws = rotate_to_b(&three_units(false));
    ws.write(FLEET, &staged);
    let id = sim(&ws).instances[0].id.clone();
    attest(&ws, &id, &["--not-run"]).expect_code(0);
    let mut ceremony = crate::cases::ceremony::Ceremony::start(&ws, &["--manual"]);
    let first = ceremony.next().expect("the rewrap step is shown");
    assert!(
        matches!(&first, crate::cases::ceremony::Asked::Step { action, .. } if action == "rewrap_key_storage"),
        "{first:?}"
    );
    let _ = ceremony.kill();
    ws.mkplan(&["plan", DESIRED]).expect_code(3);
    attest(&ws, &id, &["--not-run"]).expect_code(0);
    apply(&ws, "", &[]).expect_code(0);
    assert_converged(&ws, "after the ceremony that never ran");
}

/// Regression (third adversarial review, u3): a rotation stopped after its own rewrap
/// completed, every set immediate failing. The plan's fix offered `attest rewrap --not-run`,
/// which was taken although it contradicts the journal's own record, and the next plan gave
/// the same refusal and the same advice: a loop. Now the fix offers `--completed` only, the
/// contradicting attestation is refused with nothing journaled, and the confirmation lets the
/// rotation finish.
#[test]
fn a_rewrap_the_journal_saw_complete_cannot_be_attested_as_not_run() {
    let ws = rotate_to_b(&three_units(false));
    // Operations 1-6 load and commit, 7 is the rewrap; every set immediate after it fails.
    let failing: Vec<String> = (8..=20).map(|n| format!("fail_op={n}")).collect();
    let first = apply(&ws, &failing.join(","), &["--parallelism", "1"]);
    assert_ne!(first.code, 0, "{}", said(&first));
    assert_eq!(
        sim(&ws).instances[0]
            .key_storage
            .verification_pattern
            .as_str(),
        B
    );
    let plan = ws.mkplan(&["plan", DESIRED]);
    assert_eq!(plan.code, 3, "{}", said(&plan));
    let fix = said(&plan);
    assert!(fix.contains("--completed"), "{fix}");
    assert!(
        !fix.contains("--not-run"),
        "the fix must not offer a contradiction:\n{fix}"
    );
    let before = journal(&ws);
    let id = sim(&ws).instances[0].id.clone();
    let refused = attest(&ws, &id, &["--not-run"]);
    assert_eq!(refused.code, 3, "{}", said(&refused));
    assert!(
        said(&refused).contains("nobody can attest that it did not run"),
        "{}",
        said(&refused)
    );
    assert_eq!(journal(&ws), before, "nothing journaled");
    attest(&ws, &id, &["--completed"]).expect_code(0);
    apply(&ws, "", &[]).expect_code(0);
    assert_converged(&ws, "after the confirmation");
}

/// Regression (fourth adversarial review, a12): the apply died after the three loads, so
/// every new register held B Full Uncommitted and no rewrap could have run; `attest rewrap
/// --completed` was taken anyway (a register merely holding B was enough), and the next apply
/// committed and set immediate before any rewrap (four incidents). A completed rewrap leaves
/// its key Full Committed in every new register until set immediate: the attestation is
/// refused, naming each unit, and the rotation then runs as planned.
#[test]
fn a_completed_rewrap_cannot_be_attested_while_no_new_register_is_committed() {
    let ws = rotate_to_b(&three_units(false));
    crash_after(&ws, 3);
    let (before, fleet) = (journal(&ws), ws.bytes(FLEET));
    let refused = attest(&ws, INSTANCE, &["--completed"]);
    assert_eq!(refused.code, 3, "{}", said(&refused));
    let text = said(&refused);
    assert!(
        text.contains("no rewrap to 57c060b114f5… can have completed"),
        "{text}"
    );
    for n in 1..=3 {
        assert!(
            text.contains(&format!(
                "crypto unit {}: new register Full Uncommitted {B}",
                u(n)
            )),
            "{text}"
        );
    }
    assert!(text.contains("IBM support"), "{text}");
    assert_eq!(journal(&ws), before, "nothing journaled");
    assert_eq!(ws.bytes(FLEET), fleet, "nothing touched");
    apply(&ws, "", &[]).expect_code(0);
    assert_converged(&ws, "after the refused attestation");
}

/// The planner's side of the same rule (defence in depth): an attestation that the rewrap
/// completed, taken while every new register held B Full Committed, and then another operator
/// cleared crypto unit 1's new register and loaded B again without committing it. The
/// registers now show that no rewrap to B can have completed (none ran: the key storage is
/// still under A); the attestation says it did. Without the service's status to say which,
/// planning on the attestation commits and sets immediate before any rewrap. The plan must
/// refuse the contradiction (`evidence_consistent`, exit 3), naming both witnesses.
#[test]
fn an_attested_rewrap_the_registers_rule_out_is_a_contradiction() {
    let ws = rotate_to_b(&three_units(false));
    crash_after(&ws, 6);
    attest(&ws, INSTANCE, &["--completed"]).expect_code(0);
    let load = SimOperation::LoadNewMk {
        instance: INSTANCE.into(),
        unit: u(1),
        verification_pattern: vp(B),
    };
    operator(&ws, FLEET, &[clear_new(&u(1)), load]);
    let before = ws.bytes(FLEET);
    let plan = ws.mkplan(&["plan", DESIRED]);
    assert_refused_untouched(&ws, &plan, &before, "plan");
    let text = said(&plan);
    assert!(text.contains("evidence_consistent"), "{text}");
    assert!(text.contains("the operator attested"), "{text}");
    assert!(
        text.contains("live state says it is not under 57c060b114f5…")
            && text.contains("no rewrap to 57c060b114f5… can have completed"),
        "{text}"
    );
    let run = apply(&ws, "", &[]);
    assert_refused_untouched(&ws, &run, &before, "apply");
}

/// Regression (fourth adversarial review, a8): mkplan's own rewrap lost its answer; then the
/// journal key was replaced (moved away after a suspected leak, as docs/security.md advises).
/// The records no longer verified, so `attest --not-run` forgot the unanswered rewrap and was
/// taken without the service's evidence, the plan's fix offered it, and the apply rewrapped a
/// second time (an incident). Records that no longer verify authorise nothing, but they are
/// enough to refuse: the plan names the rewrap they speak of, offers no plain `--not-run`,
/// the attestation is refused, and only evidence about that rewrap settles it.
#[test]
fn an_unanswered_rewrap_still_refuses_not_run_after_the_journal_key_is_replaced() {
    let ws = rotate_to_b(&three_units(false));
    let first = apply(&ws, "lose_response_op=7", &[]);
    assert_eq!(first.code, 1, "{}", said(&first));
    let new_key = ws.path("new-key/journal.key");
    std::fs::create_dir_all(ws.path("new-key")).unwrap();
    let key = [("MKPLAN_JOURNAL_KEY", new_key.to_str().unwrap())];
    let before = ws.bytes(FLEET);
    let plan = ws.mkplan_with_env(&["plan", DESIRED], &key);
    assert_refused_untouched(&ws, &plan, &before, "plan with the new key");
    let text = said(&plan);
    assert!(
        text.contains("was sent") && text.contains("never answered"),
        "{text}"
    );
    assert!(text.contains("they are enough to refuse"), "{text}");
    assert!(
        !text.contains(&format!("--not-run --desired {DESIRED}`")),
        "the fix must not offer a plain --not-run:\n{text}"
    );
    assert!(text.contains("--service-evidence"), "{text}");
    let journaled = journal(&ws);
    let refused = attest_with_env(&ws, INSTANCE, &["--not-run"], &key);
    assert_eq!(refused.code, 3, "{}", said(&refused));
    assert!(
        said(&refused).contains("no longer verify"),
        "{}",
        said(&refused)
    );
    assert_eq!(journal(&ws), journaled, "nothing journaled");
    let mut env = PASSWORDS.to_vec();
    env.extend(key);
    let rerun = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &env);
    assert_refused_untouched(&ws, &rerun, &before, "apply with the new key");
    // The service's word settles it: here the rewrap did complete.
    attest_with_env(&ws, INSTANCE, &["--completed"], &key).expect_code(0);
    ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &env)
        .expect_code(0);
    assert_converged(&ws, "after the service's word");
}

/// Regression (left open by adversary round 3): set immediate found the service busy with a
/// rewrap after this rotation's own rewrap had completed, and retried it as "busy". Set
/// immediate follows only a completed rewrap, so that rewrap is somebody else's (here the
/// TKE CLI of another operator, sent while mkplan's set immediate was on its way): the apply
/// stops at once, exit 3, saying so and what to do, and no unit is promoted. The one loss is
/// the other operator's second rewrap, which the simulator records as it lands.
#[test]
fn set_immediate_stops_when_someone_else_rewraps_after_the_rewrap_completed() {
    let ws = after_own_rewrap_with_slow_rewraps();
    let running = apply_until_its_first_set_immediate(&ws, 1500);
    other_operator_starts_a_rewrap(&ws);
    let output = running.wait_with_output().expect("wait for mkplan");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    for words in [
        "set_immediate) was not sent again",
        "though this rotation's rewrap to",
        "A rewrap that mkplan did not send is running",
        "do not set immediate, rewrap or clear any new register",
    ] {
        assert!(stderr.contains(words), "{words}: {stderr}");
    }
    assert!(!stderr.contains("To resume"), "{stderr}");
    let fleet = sim(&ws);
    assert_eq!(fleet.incidents.len(), 1, "{:#?}", fleet.incidents);
    assert!(
        fleet.incidents[0]
            .description
            .contains("rewrap started again after it completed"),
        "the other operator's rewrap: {:#?}",
        fleet.incidents
    );
    for unit in &fleet.instances[0].crypto_units {
        assert_eq!(
            unit.current_register.status(),
            "Valid",
            "{}: not promoted",
            unit.hsm_id
        );
        assert_ne!(
            unit.current_register
                .verification_pattern()
                .map(|v| v.to_string()),
            unit.new_register.committed().map(|v| v.to_string()),
            "{}: not promoted",
            unit.hsm_id
        );
    }
    // Sticky (adversary round 4, F1c): once the other rewrap has ended, the service shows
    // what it showed after mkplan's own ("waiting on set immediate"), yet every later run
    // refuses, and the operator's plain word does not lift it: only IBM support's does.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let rerun = apply(&ws, "", &[]);
    assert_eq!(rerun.code, 3, "{}", rerun.stderr);
    for words in [
        "evidence_consistent",
        "yet a rewrap mkplan did not send ran after it",
        "only IBM support can say",
        "--completed --service-evidence",
    ] {
        assert!(rerun.stderr.contains(words), "{words}: {}", rerun.stderr);
    }
    assert_eq!(attest(&ws, INSTANCE, &["--completed"]).code, 0);
    assert_eq!(
        apply(&ws, "", &[]).code,
        3,
        "a plain --completed does not lift it"
    );
    let ibm = attest(
        &ws,
        INSTANCE,
        &[
            "--completed",
            "--service-evidence",
            "IBM support case 123: usable under B",
        ],
    );
    assert_eq!(ibm.code, 0, "{}", ibm.stderr);
    assert_eq!(sim(&ws).incidents.len(), 1, "mkplan sent nothing harmful");
}

/// Regression (adversary round 4, F5): mkplan's own rewrap completed and was journaled, the
/// apply died, and another operator started a second rewrap. The rerun used to say "wait until
/// the service reports the rewrap done, then plan again", and after that wait it set
/// immediate over the ruined key storage. A rewrap in progress after this rotation's own
/// completed is refused as contradictory evidence, with IBM support as the way out, never
/// "wait".
#[test]
fn a_rewrap_in_progress_after_the_journals_own_completed_is_refused_not_waited_for() {
    let ws = after_own_rewrap_with_slow_rewraps();
    // The rerun settles the rewrap as done from the service's status, journals it, and is
    // killed while its first set immediate is on its way.
    let mut running = apply_until_its_first_set_immediate(&ws, 3000);
    running.kill().expect("kill mkplan");
    running.wait().expect("reap mkplan");
    assert!(
        String::from_utf8_lossy(&journal(&ws)).contains("settled_done"),
        "the rewrap was settled as done"
    );
    other_operator_starts_a_rewrap(&ws);
    for run in [ws.mkplan(&["plan", DESIRED]), apply(&ws, "", &[])] {
        says(&run, 3, "yet a rewrap mkplan did not send ran after it");
        assert!(!run.stderr.contains("wait until"), "{}", run.stderr);
    }
    // The apply journaled what it saw: once the other rewrap has ended (3 s; the service then
    // shows what it showed after mkplan's own), plan and apply still refuse.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    for run in [ws.mkplan(&["plan", DESIRED]), apply(&ws, "", &[])] {
        says(&run, 3, "an apply found the service running a rewrap");
    }
    assert_eq!(
        sim(&ws).incidents.len(),
        1,
        "only the other operator's rewrap"
    );
}

/// A service that reports its rotation status, after an apply that died right after its
/// rewrap (which completed at once); from now on a rewrap takes 3 s (3,000 keys at 1 ms).
fn after_own_rewrap_with_slow_rewraps() -> Workspace {
    let ws = rotate_to_b(&three_units(true));
    crash_after(&ws, 7);
    ws.mkplan(&["sim", "compact", "--fleet", FLEET])
        .expect_code(0);
    let slow = ws
        .read(FLEET)
        .replace("rewrap_ms_per_key: 0", "rewrap_ms_per_key: 1");
    ws.write(FLEET, &slow);
    ws
}

/// `mkplan apply` in the background, each operation `latency_ms` on its way, returned once
/// its first set immediate is journaled (and not yet at the service).
fn apply_until_its_first_set_immediate(ws: &Workspace, latency_ms: u64) -> std::process::Child {
    let mut command = ws.process(&["apply", DESIRED, "--auto-approve", "--parallelism", "1"]);
    let running = command
        .envs(PASSWORDS)
        .env("MKPLAN_SIM_FAULTS", format!("latency_ms={latency_ms}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start mkplan apply");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !String::from_utf8_lossy(&journal(ws)).contains("\"action\":\"set_immediate\"") {
        assert!(
            std::time::Instant::now() < deadline,
            "no set immediate intent"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    running
}

/// Another operator's rewrap with the TKE CLI: its response lost at once, it runs on in the
/// simulator.
fn other_operator_starts_a_rewrap(ws: &Workspace) {
    let simulator = Simulator::open(
        &ws.path(FLEET),
        Faults::parse("lose_response_op=1").expect("faults"),
    )
    .expect("the fleet opens");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    assert!(runtime.block_on(simulator.perform(&rewrap())).is_err());
}
