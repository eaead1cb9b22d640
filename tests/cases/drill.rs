//! `mkplan drill` and `status --export-fleet` through the binary.

use crate::cases::apply::{PASSWORDS, three_units};
use crate::support::*;

fn drill(ws: &Workspace, extra: &[&str]) -> Run {
    let mut args = vec!["drill", "desired.yaml"];
    args.extend_from_slice(extra);
    ws.mkplan_with_env(&args, &PASSWORDS)
}

fn verdicts(result: &serde_json::Value) -> Vec<(String, u64, u64)> {
    result["schedules"]
        .as_array()
        .expect("schedules")
        .iter()
        .map(|r| {
            (
                r["verdict"].as_str().unwrap().to_string(),
                r["attempts"].as_u64().unwrap(),
                r["operations"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_drill_proves_every_run_safe_reports_it_and_replays_by_seed() {
    let ws = rotate_to_b(&three_units(false));
    let before = ws.bytes(FLEET);
    let run = drill(
        &ws,
        &[
            "--runs",
            "200",
            "--seed",
            "5",
            "--json",
            "--report",
            "report.md",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let result = run.json();
    assert_eq!(result["runs"], 200);
    assert_eq!(result["seed"], 5);
    assert_eq!(result["incidents"], 0);
    assert_eq!(result["failed"], 0);
    let converged = result["converged"].as_u64().unwrap();
    let refused = result["refused"].as_u64().unwrap();
    assert_eq!(converged + refused, 200);
    // Without a rotation status, a crash between the commits and the rewrap needs the
    // operator's word (a drill never gives it): those runs refuse.
    assert!(converged > 120, "{converged}");
    // Without a rotation status, a rewrap whose outcome is lost must be refused, never resent.
    for r in result["schedules"].as_array().unwrap() {
        if r["verdict"] == "refused" {
            assert!(
                r["reason"].as_str().unwrap().contains("rewrap_evidence"),
                "{r:#}"
            );
        }
    }
    assert_eq!(
        ws.bytes(FLEET),
        before,
        "a drill never touches the fleet it copies"
    );
    let report = ws.read("report.md");
    for needle in [
        "**PASSED**",
        "plan (SHA-256 of its JSON)",
        "fleet fingerprint",
        "seed | 5",
        "## Longest recovery",
        "## Every run",
    ] {
        assert!(report.contains(needle), "the report lacks {needle:?}");
    }
    // The same seed gives the same schedules and verdicts; one run replays by its own seed.
    let again = drill(&ws, &["--runs", "200", "--seed", "5", "--json"]).json();
    assert_eq!(verdicts(&result), verdicts(&again));
    assert_eq!(result["schedules"], again["schedules"]);
    let seventh = &result["schedules"][7];
    let replay = drill(
        &ws,
        &[
            "--runs",
            "1",
            "--seed",
            &seventh["schedule"]["seed"].to_string(),
            "--json",
        ],
    )
    .json();
    assert_eq!(replay["schedules"][0]["schedule"], seventh["schedule"]);
    assert_eq!(replay["schedules"][0]["verdict"], seventh["verdict"]);
}

#[test]
fn a_drill_from_a_live_http_backend_and_an_exported_fleet_agree() {
    let ws = rotate_to_b(&three_units(true));
    let server = Server::start(&ws.path(FLEET), "", &[]);
    let from_live = drill(
        &ws,
        &[
            "--from-live",
            &server.url,
            "--runs",
            "50",
            "--seed",
            "9",
            "--json",
        ],
    );
    assert_eq!(from_live.code, 0, "{}", from_live.stderr);
    assert!(
        from_live
            .stderr
            .contains(&format!("a snapshot of {}", server.url)),
        "{}",
        from_live.stderr
    );
    let export = ws.mkplan_with_env(
        &["status", "desired.yaml", "--export-fleet", "exported.yaml"],
        &[("MKPLAN_BACKEND", server.url.as_str())],
    );
    assert_eq!(export.code, 0, "{}", export.stderr);
    assert!(
        ws.read("exported.yaml")
            .contains("inferred from the evidence")
    );
    let again = ws.mkplan_with_env(
        &["status", "desired.yaml", "--export-fleet", "exported.yaml"],
        &[("MKPLAN_BACKEND", server.url.as_str())],
    );
    assert_eq!(
        again.code, 1,
        "an export never overwrites: {}",
        again.stderr
    );
    let from_file = drill(
        &ws,
        &[
            "--backend",
            "sim:exported.yaml",
            "--runs",
            "50",
            "--seed",
            "9",
            "--json",
        ],
    );
    assert_eq!(from_file.code, 0, "{}", from_file.stderr);
    assert_eq!(verdicts(&from_live.json()), verdicts(&from_file.json()));
    assert_eq!(
        from_live.json()["fleet_fingerprint"],
        from_file.json()["fleet_fingerprint"]
    );
}

#[test]
fn a_drill_needs_a_simulator_fleet_or_a_live_snapshot() {
    let ws = rotate_to_b(&three_units(true));
    let run = drill(&ws, &["--backend", "http://127.0.0.1:9", "--runs", "1"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("--from-live"), "{}", run.stderr);
    // All committed, no status, no journal: the evidence settles nothing; no snapshot, exit 3.
    let silent = Fleet::instance()
        .reports_rotation_status(false)
        .units(3, committed(B), valid(A));
    let ws = rotate_to_b(&silent);
    let run = drill(&ws, &["--from-live", "sim:fleet.yaml", "--runs", "1"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("rewrap_evidence"), "{}", run.stderr);
}

#[test]
fn a_drill_over_http_restarts_the_server_mid_operation_and_stays_safe() {
    let ws = rotate_to_b(&three_units(true));
    let before = ws.bytes(FLEET);
    let run = drill(
        &ws,
        &[
            "--over-http",
            "--runs",
            "40",
            "--seed",
            "11",
            "--json",
            "--report",
            "http.md",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let result = run.json();
    assert_eq!(result["over_http"], true);
    assert_eq!(result["incidents"], 0);
    assert_eq!(result["failed"], 0);
    let restarts = result["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["fired"].as_array().unwrap().iter())
        .filter(|f| f.as_str().unwrap().contains("server died"))
        .count();
    assert!(
        restarts > 0,
        "some schedule restarted the server mid-operation"
    );
    assert!(ws.read("http.md").contains("restart_server_after_op"));
    assert_eq!(ws.bytes(FLEET), before, "the drill works on copies");
}
