//! Over the network: tokens that expire, a server killed in the middle of an apply, the
//! concurrent executor's limits as the journal shows them, and the HTTP error messages.

use std::time::{Duration, Instant};

use crate::cases::apply::{PASSWORDS, assert_converged, assert_no_incidents, three_units};
use crate::support::*;

/// `apply desired.yaml --auto-approve` against `url`, with `token` and extra flags.
pub(crate) fn apply_via(ws: &Workspace, url: &str, token: Option<&str>, flags: &[&str]) -> Run {
    let mut env = PASSWORDS.to_vec();
    env.push(("MKPLAN_BACKEND", url));
    if let Some(token) = token {
        env.push(("MKPLAN_TOKEN", token));
    }
    let mut args = vec!["apply", "desired.yaml", "--auto-approve"];
    args.extend_from_slice(flags);
    ws.mkplan_with_env(&args, &env)
}

/// The journal's records as (kind, step), in order.
fn journal(ws: &Workspace) -> Vec<(String, String)> {
    ws.read(".mkplan/journal.jsonl")
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("a journal line");
            let record = &value["record"];
            (
                record["kind"].as_str().unwrap_or_default().to_string(),
                record["step"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The most operations the journal shows in flight at once (intents without outcomes yet).
fn most_in_flight(ws: &Workspace) -> usize {
    let mut open = 0usize;
    let mut most = 0;
    for (kind, _) in journal(ws) {
        match kind.as_str() {
            "intent" => open += 1,
            "outcome" => open -= 1,
            _ => {}
        }
        most = most.max(open);
    }
    most
}

#[test]
fn a_token_that_expires_mid_apply_stops_cleanly_and_a_new_token_resumes() {
    let ws = rotate_to_b(&three_units(true));
    // The token lives 1 s from the refresh's first request; the loads are sent at once and
    // answered 1.2 s later, so the commits always arrive after it expired, and the rewrap is
    // never sent (a rewrap refused with 401 would leave its outcome for the evidence rules;
    // at 400 ms the rewrap arrived about when the token expired, and a busy machine decided).
    let mut server = Server::start(
        &ws.path(FLEET),
        "latency_ms=1200",
        &["--token", "first-token-expires", "--token-ttl-s", "1"],
    );
    let first = apply_via(&ws, &server.url, Some("first-token-expires"), &[]);
    assert_eq!(first.code, 1, "{}", first.stderr);
    assert!(first.stderr.contains("Log in again"), "{}", first.stderr);
    assert!(first.stderr.contains("token"), "{}", first.stderr);
    assert!(
        !first.stderr.contains("first-token-expires") && !first.stdout.contains("first-token"),
        "the token leaked"
    );
    let kinds = journal(&ws);
    assert!(
        kinds.iter().any(|(k, _)| k == "outcome"),
        "some steps ran before the token expired: {kinds:?}"
    );
    assert_eq!(
        ws.mkplan(&["audit", "verify"]).code,
        0,
        "the audit trail is intact"
    );
    assert_no_incidents(&ws, "after the token expired");

    // The operator logs in again: the service now knows a new token (a restart keeps the
    // fleet: every operation was durable before its response).
    drop(server);
    server = Server::start(&ws.path(FLEET), "", &["--token", "second-token"]);
    let missing = ws.mkplan_with_env(
        &["plan", "desired.yaml"],
        &[("MKPLAN_BACKEND", server.url.as_str())],
    );
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(
        missing
            .stderr
            .contains("No token was sent: set MKPLAN_TOKEN"),
        "{}",
        missing.stderr
    );
    let rerun = apply_via(&ws, &server.url, Some("second-token"), &[]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(
        rerun.stderr.contains("Resuming from the journal"),
        "{}",
        rerun.stderr
    );
    assert!(!rerun.stderr.contains("second-token"), "the token leaked");
    drop(server);
    assert_converged(&ws, "after the new token");
    let journal_text = ws.read(".mkplan/journal.jsonl") + &ws.read(".mkplan/audit.jsonl");
    assert!(
        !journal_text.contains("-token"),
        "a token reached the state directory"
    );
}

#[test]
fn a_server_killed_mid_apply_and_restarted_lets_the_rerun_converge() {
    let ws = rotate_to_b(&three_units(true));
    let server = Server::start(&ws.path(FLEET), "latency_ms=300", &[]);
    let apply = ws
        .process(&["apply", "desired.yaml", "--auto-approve"])
        .env("MKPLAN_BACKEND", &server.url)
        .envs(PASSWORDS)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the apply");
    // Kill the server once the loads are done and the commits are in flight.
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(ws.path(".mkplan/journal.jsonl")).unwrap_or_default();
        if text.matches("\"kind\":\"outcome\"").count() >= 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the apply did not progress"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(server);
    let output = apply.wait_with_output().expect("the apply ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert_no_incidents(&ws, "after the kill");

    let server = Server::start(&ws.path(FLEET), "", &[]);
    let rerun = apply_via(&ws, &server.url, None, &[]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    drop(server);
    assert_converged(&ws, "after the restart");
}

#[test]
fn steps_run_concurrently_up_to_the_parallelism_and_one_at_a_time_per_unit() {
    let fleet = Fleet::instance()
        .key_storage(A)
        .units(3, empty(), valid(A))
        .and_instance()
        .key_storage(A)
        .units(3, empty(), valid(A));
    for (parallelism, expected) in [("1", 1), ("4", 4), ("64", 6)] {
        let ws = rotate_to_b(&fleet);
        let plan = ws.plan().planned(2);
        let server = Server::start(&ws.path(FLEET), "latency_ms=100", &[]);
        let run = apply_via(&ws, &server.url, None, &["--parallelism", parallelism]);
        assert_eq!(run.code, 0, "--parallelism {parallelism}: {}", run.stderr);
        // The server answers 409 to a second command on a busy unit: a converged apply
        // shows that the executor never sent one.
        drop(server);
        assert_converged(&ws, &format!("--parallelism {parallelism}"));
        assert_eq!(
            most_in_flight(&ws),
            expected,
            "--parallelism {parallelism}: journal {:?}",
            journal(&ws)
        );
        // A step's intent is journaled only after the outcomes of its dependencies.
        let records = journal(&ws);
        let position = |kind: &str, step: &str| {
            records
                .iter()
                .position(|(k, s)| k == kind && s == &format!("r1.{step}"))
                .unwrap_or_else(|| panic!("no {kind} for {step}: {records:?}"))
        };
        for step in steps(&plan) {
            for dependency in depends_on(step) {
                assert!(
                    position("outcome", &dependency) < position("intent", &id(step)),
                    "--parallelism {parallelism}: {} started before {dependency} finished",
                    id(step)
                );
            }
        }
    }
}

#[test]
fn http_errors_say_what_to_do() {
    let ws = rotate_to_b(&three_units(true));
    let unreachable = ws.mkplan_with_env(
        &["plan", "desired.yaml"],
        &[("MKPLAN_BACKEND", "http://127.0.0.1:9")],
    );
    assert_eq!(unreachable.code, 1, "{}", unreachable.stderr);
    assert!(
        unreachable
            .stderr
            .contains("cannot reach http://127.0.0.1:9"),
        "{}",
        unreachable.stderr
    );

    let two = three_units(true).and_instance().units(3, empty(), valid(A));
    let elsewhere = Workspace::new(&two, &Desired::rotate_to(B));
    elsewhere.write(FLEET, &three_units(true).to_yaml());
    let server = Server::start(&elsewhere.path(FLEET), "", &[]);
    // The desired file names two instances; the server knows only the first.
    let missing = elsewhere.mkplan_with_env(
        &["plan", "desired.yaml"],
        &[("MKPLAN_BACKEND", server.url.as_str())],
    );
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("no service instance"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("Check the instance id"),
        "{}",
        missing.stderr
    );

    let faults = ws.mkplan_with_env(
        &["plan", "desired.yaml"],
        &[
            ("MKPLAN_BACKEND", server.url.as_str()),
            ("MKPLAN_SIM_FAULTS", "fail_op=1"),
        ],
    );
    assert_eq!(faults.code, 1, "{}", faults.stderr);
    assert!(
        faults.stderr.contains("sim serve --faults"),
        "{}",
        faults.stderr
    );
}

/// `sim serve` commits to an operation log beside the fleet file. Killed, it leaves the
/// acknowledged changes there, with a torn line at the end (a write the crash cut short, never
/// acknowledged): a server started again drops that line, replays the rest into the fleet file
/// exactly once and removes the log; a clean stop (SIGTERM) leaves no log.
#[test]
fn a_killed_server_replays_its_operation_log_and_drops_a_torn_last_line() {
    let ws = rotate_to_b(&three_units(true));
    let before = ws.bytes(FLEET);
    let log = ws.path("fleet.yaml.oplog");
    let server = Server::start(&ws.path(FLEET), "", &[]);
    let applied = apply_via(&ws, &server.url, None, &[]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    drop(server); // SIGKILL: no compaction
    assert_eq!(ws.bytes(FLEET), before, "the changes are in the log only");
    assert_converged(&ws, "the log replayed by a reader");
    let mut torn = std::fs::read(&log).expect("the operation log");
    torn.extend_from_slice(b"99 0123456789abcdef {\"change\":{\"instances\":[{\"id\":");
    std::fs::write(&log, torn).unwrap();
    assert_converged(&ws, "a torn last line is dropped by a reader");

    let mut server = Server::start(&ws.path(FLEET), "", &[]);
    assert!(!log.exists(), "replayed into the fleet file at start");
    let fleet = mkplan::backend::sim::Fleet::parse("fleet.yaml", &ws.read(FLEET)).unwrap();
    assert!(fleet.incidents.is_empty(), "{:?}", fleet.incidents);
    assert_converged(&ws, "after the replay");
    let rerun = apply_via(&ws, &server.url, None, &[]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stderr.contains("No changes"), "{}", rerun.stderr);
    assert!(server.stop().success());
    assert!(!log.exists(), "a clean stop leaves no log");
    assert_converged(&ws, "after a clean stop");
}
