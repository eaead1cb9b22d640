//! `--backend tke:REGION` against `mkplan sim serve --protocol tke`: the real service's wire
//! protocol over loopback. Every example fleet gives the same plan and status as the embedded
//! simulator (which is told to publish no rotation status, as the real service publishes
//! none); faults are retried, IAM API keys are exchanged, and `apply` refuses plainly.

use crate::support::*;

const EXAMPLES: [&str; 4] = [
    "three-units",
    "interrupted-after-rewrap",
    "mixed-types",
    "several-instances",
];

/// A workspace with an example's desired file and its fleet, the fleet made silent about the
/// rotation status.
pub(super) fn example(name: &str) -> Workspace {
    let ws = Workspace::empty();
    let fleet = std::fs::read_to_string(repo_file(&format!("examples/fleets/{name}.yaml")))
        .unwrap()
        .replace(
            "reports_rotation_status: true",
            "reports_rotation_status: false",
        );
    ws.write(FLEET, &fleet);
    let desired = std::fs::read_to_string(repo_file(&format!("plans/{name}.yaml")))
        .unwrap()
        .replace(
            &format!("sim:../examples/fleets/{name}.yaml"),
            "sim:fleet.yaml",
        );
    ws.write(DESIRED, &desired);
    ws
}

fn via_tke(ws: &Workspace, server: &Server, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--backend", "tke:us-south", "--tke-endpoint", &server.url]);
    ws.mkplan_with_env(&all, &with_test_oa_root(env))
}

/// The plan JSON without what names the backend.
pub(super) fn comparable(run: &Run) -> serde_json::Value {
    let mut value = run.json();
    if let Some(object) = value.as_object_mut() {
        object.remove("backend");
        object.remove("backend_identity");
        object.remove("desired_file");
    }
    value
}

#[test]
fn every_example_plans_and_reads_the_same_over_the_tke_protocol() {
    for name in EXAMPLES {
        let ws = example(name);
        let embedded_plan = ws.mkplan(&["plan", DESIRED, "--json", "--detailed-exitcode"]);
        let embedded_status = ws.mkplan(&["status", DESIRED, "--json"]);
        let server = Server::start(&ws.path(FLEET), "", &["--protocol", "tke"]);
        let plan = via_tke(
            &ws,
            &server,
            &["plan", DESIRED, "--json", "--detailed-exitcode"],
            &[],
        );
        let status = via_tke(&ws, &server, &["status", DESIRED, "--json"], &[]);
        assert_eq!(plan.code, embedded_plan.code, "{name}: {}", plan.stderr);
        eprintln!(
            "{name}: plan exit {} over both backends, {} bytes of plan",
            plan.code,
            plan.stdout.len()
        );
        assert_eq!(status.code, 0, "{name}: {}", status.stderr);
        assert_eq!(status.json(), embedded_status.json(), "{name}: status");
        if plan.code == 3 {
            assert_eq!(
                plan.stdout, embedded_plan.stdout,
                "{name}: the same refusal"
            );
        } else {
            assert_eq!(
                comparable(&plan),
                comparable(&embedded_plan),
                "{name}: plan"
            );
        }
    }
}

#[test]
fn reads_are_retried_through_faults_and_apply_is_a_ceremony() {
    let ws = example("three-units");
    let embedded = ws.mkplan(&["plan", DESIRED, "--json"]);
    let before = ws.bytes(FLEET);
    let server = Server::start(
        &ws.path(FLEET),
        "fail_op=1,lose_response_op=4",
        &["--protocol", "tke"],
    );
    let plan = via_tke(&ws, &server, &["plan", DESIRED, "--json"], &[]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(comparable(&plan), comparable(&embedded));
    let apply = via_tke(
        &ws,
        &server,
        &["apply", DESIRED, "--auto-approve"],
        &[
            ("MKPLAN_PART1_PASSWORD", "demo-custodian-1"),
            ("MKPLAN_PART2_PASSWORD", "demo-custodian-2"),
        ],
    );
    assert_eq!(apply.code, 1, "{}", apply.stderr);
    assert!(
        apply
            .stderr
            .contains("sends signed commands only with the administrators' signature keys"),
        "{}",
        apply.stderr
    );
    // Every step is a ceremony step; with nobody at stdin, nothing is done.
    assert!(
        apply.stderr.contains("── ceremony step s1"),
        "{}",
        apply.stderr
    );
    assert!(
        apply.stderr.contains("ibmcloud tke cryptounit-mk-load"),
        "{}",
        apply.stderr
    );
    drop(server);
    assert_eq!(ws.bytes(FLEET), before, "nothing was touched");
}

#[test]
fn iam_api_keys_are_exchanged_and_bad_credentials_say_log_in_again() {
    let ws = example("three-units");
    let server = Server::start(
        &ws.path(FLEET),
        "",
        &["--protocol", "tke", "--api-key", "key-for-tests-0123"],
    );
    let iam = [("MKPLAN_IAM_ENDPOINT", server.url.as_str())];
    let good = via_tke(
        &ws,
        &server,
        &["plan", DESIRED],
        &[iam[0], ("IBMCLOUD_API_KEY", "key-for-tests-0123")],
    );
    assert_eq!(good.code, 0, "{}", good.stderr);
    assert!(
        !good.stderr.contains("key-for-tests") && !good.stdout.contains("key-for-tests"),
        "the API key leaked"
    );
    let wrong = via_tke(
        &ws,
        &server,
        &["plan", DESIRED],
        &[iam[0], ("IBMCLOUD_API_KEY", "not-a-key")],
    );
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("refused the API key"),
        "{}",
        wrong.stderr
    );
    assert!(wrong.stderr.contains("Log in again"), "{}", wrong.stderr);
    let token = via_tke(
        &ws,
        &server,
        &["plan", DESIRED],
        &[("IBMCLOUD_IAM_TOKEN", "expired-token-xyz")],
    );
    assert_eq!(token.code, 1, "{}", token.stderr);
    assert!(token.stderr.contains("Log in again"), "{}", token.stderr);
    assert!(
        !token.stderr.contains("expired-token-xyz"),
        "the token leaked"
    );
    let unknown = Workspace::empty();
    unknown.write(
        DESIRED,
        &ws.read(DESIRED).replace(
            "5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b",
            "00000000-0000-4000-8000-000000000000",
        ),
    );
    let missing = via_tke(
        &unknown,
        &server,
        &["plan", DESIRED],
        &[iam[0], ("IBMCLOUD_API_KEY", "key-for-tests-0123")],
    );
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(missing.stderr.contains("region"), "{}", missing.stderr);
}
