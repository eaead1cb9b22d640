//! Messages that name the real fix (issue 13, points 7 and 8), for the files an operator
//! writes or keeps: a value of the wrong type says what its key holds, in the file's words,
//! never `invalid u8` or serde's jargon; an alias bomb says what happened; `.YAML` is a
//! desired file; and `validate` checks the backend offline, the fleet of `sim:` included.
//! Each refusal exits 1 and touches nothing.

use crate::cases::apply::{PASSWORDS, assert_converged, assert_no_incidents, three_units};
use crate::support::*;

/// Words of the parsers that an operator should never read.
const JARGON: &[&str] = &[
    "invalid u8",
    "invalid u32",
    "invalid u64",
    "invalid type",
    "invalid value",
    "expected sequence start",
    "expected mapping start",
    "expected string scalar",
    "expected u32",
    "expected a boolean",
    "budget breached",
    "Ratio",
    "unknown field",
];

/// The workspace's files, but the state folder (`apply` takes its lock before it reads the
/// plan file; its journal is checked to stay empty instead).
fn files(ws: &Workspace) -> Vec<String> {
    let journal = ws.path(".mkplan/journal.jsonl");
    let records = std::fs::read_to_string(journal).unwrap_or_default();
    assert!(records.trim().is_empty(), "a journal record: {records}");
    ws.listing()
        .into_iter()
        .filter(|f| !f.starts_with(".mkplan"))
        .collect()
}

/// Runs `args`, expects exit 1 with every `said` on stderr, no jargon, and nothing in the
/// folder changed; returns stderr.
#[track_caller]
fn refused(ws: &Workspace, args: &[&str], said: &[&str]) -> String {
    let listing = files(ws);
    let fleet = ws.bytes(FLEET);
    let run = ws.mkplan_with_env(args, &PASSWORDS);
    assert_eq!(
        run.code, 1,
        "mkplan {args:?}: exit {}\n{}",
        run.code, run.stderr
    );
    for words in said {
        assert!(
            run.stderr.contains(words),
            "mkplan {args:?}: no {words:?} in\n{}",
            run.stderr
        );
    }
    for jargon in JARGON {
        assert!(
            !run.stderr.contains(jargon),
            "mkplan {args:?}: {jargon:?} in\n{}",
            run.stderr
        );
    }
    assert_eq!(
        files(ws),
        listing,
        "mkplan {args:?} created or removed files"
    );
    assert_eq!(ws.bytes(FLEET), fleet, "mkplan {args:?} touched the fleet");
    run.stderr
}

fn fresh() -> Workspace {
    rotate_to_b(&three_units(true))
}

/// 1-based line of `text` holding `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect(needle) + 1
}

#[test]
fn a_wrong_type_in_the_desired_file_says_what_the_key_holds() {
    // Before: "invalid u8", "expected sequence start", "invalid u32".
    let cases = [
        (
            "signature_threshold: 2",
            "signature_threshold: two",
            "signature_threshold must be a whole number from 1 to 8",
        ),
        (
            "revocation_threshold: 2",
            "revocation_threshold: -1",
            "revocation_threshold must be a whole number from 1 to 8",
        ),
        (
            "administrators: [alice, bob]",
            "administrators: alice",
            "administrators must be a list of administrator names, e.g. [alice, bob]",
        ),
        (
            "version: 1",
            "version: one",
            "version must be the format version, `1`",
        ),
        (
            "      key_parts:",
            "      key_parts: keyparts/custodian-1.json\n      x_key_parts:",
            "key_parts must be a list of 2 or 3 key parts",
        ),
    ];
    for (from, to, said) in cases {
        let ws = fresh();
        let text = ws.read(DESIRED).replacen(from, to, 1);
        ws.write(DESIRED, &text);
        let line = line_of(&text, to.lines().next().unwrap());
        let place = format!("desired.yaml:{line}:");
        for command in ["validate", "plan", "status"] {
            refused(&ws, &[command, DESIRED], &[&place, said, "fix:"]);
        }
    }
}

#[test]
fn a_wrong_type_in_the_fleet_says_what_the_key_holds() {
    let ws = fresh();
    let fleet = ws.read(FLEET);
    let (from, to) = fleet
        .lines()
        .find(|l| l.trim_start().starts_with("keys:"))
        .map(|l| (l.to_string(), l.replace(l.trim_start(), "keys: lots")))
        .expect("a keys: line");
    ws.write(FLEET, &fleet.replacen(&from, &to, 1));
    let place = format!("fleet.yaml:{}:", line_of(&ws.read(FLEET), "keys: lots"));
    for command in ["validate", "plan"] {
        refused(
            &ws,
            &[command, DESIRED],
            &[
                &place,
                "keys must be a whole number (the keys in the key storage)",
            ],
        );
    }
    let ws = fresh();
    ws.write(
        FLEET,
        &ws.read(FLEET).replacen("mode: admin", "mode: sleepy", 1),
    );
    refused(
        &ws,
        &["plan", DESIRED],
        &["mode is `sleepy`; it is one of admin, imprint"],
    );
}

#[test]
fn a_wrong_type_in_a_key_part_file_or_a_plan_file_says_what_the_key_holds() {
    let ws = fresh();
    let part = "keyparts/custodian-1.json";
    let mut file: serde_json::Value = serde_json::from_str(&ws.read(part)).unwrap();
    file["kdf"]["memory_kib"] = serde_json::json!("lots");
    ws.write(part, &serde_json::to_string_pretty(&file).unwrap());
    for command in ["validate", "plan"] {
        refused(
            &ws,
            &[command, DESIRED],
            &["damaged key part file: memory_kib must be a whole number of KiB"],
        );
    }

    let ws = fresh();
    ws.mkplan(&["plan", DESIRED, "--out", "p.json"])
        .expect_code(0);
    let mut plan: serde_json::Value = serde_json::from_str(&ws.read("p.json")).unwrap();
    plan["changes"] = serde_json::json!("yes");
    plan["steps"][0]["signatures"] = serde_json::json!("three");
    ws.write("p.json", &serde_json::to_string_pretty(&plan).unwrap());
    for command in ["show", "runbook", "apply"] {
        refused(
            &ws,
            &[command, "p.json"],
            &["damaged plan file: changes must be true or false"],
        );
    }
    assert_no_incidents(&ws, "a damaged plan file");
}

/// A YAML "billion laughs": aliases of one anchor, far more than any real file has.
#[test]
fn an_alias_bomb_is_said_in_words() {
    let aliases = vec!["*name"; 150].join(", ");
    let ws = fresh();
    ws.write(
        DESIRED,
        &ws.read(DESIRED).replacen(
            "administrators: [alice, bob]",
            &format!("administrators: [&name alice, {aliases}]"),
            1,
        ),
    );
    let said = [
        "the file uses 150 aliases (`*name`) of only 1 anchor(s) (`&name`)",
        "billion laughs",
        "fix: write each value out",
    ];
    for command in ["validate", "plan"] {
        refused(&ws, &[command, DESIRED], &said);
    }
    let ws = fresh();
    let fleet = ws.read(FLEET);
    let incidents =
        format!("incidents: [&name {{instance: a, operation: b, description: c}}, {aliases}]\n");
    ws.write(FLEET, &fleet.replace("incidents: []\n", &incidents));
    refused(&ws, &["plan", DESIRED], &said);
}

/// `.YAML`, `.Yml`: desired files wherever the extension decides (before: `apply X.YAML`
/// took it for a plan file and said "this is not a plan file").
#[test]
fn upper_case_yaml_extensions_are_desired_files() {
    for name in ["DESIRED.YAML", "desired.Yml"] {
        let ws = fresh();
        ws.write(name, &ws.read(DESIRED));
        ws.mkplan(&["validate", name]).expect_code(0);
        ws.mkplan(&["plan", name]).expect_code(0);
        let run = ws.mkplan_with_env(&["apply", name, "--auto-approve"], &PASSWORDS);
        assert_eq!(run.code, 0, "apply {name}: {}", run.stderr);
        assert!(!run.stderr.contains("not a plan file"), "{}", run.stderr);
        assert_converged(&ws, name);
        assert_no_incidents(&ws, name);
    }
}

#[test]
fn validate_checks_the_backend_offline_with_its_place_in_the_desired_file() {
    let ws = fresh();
    let text = ws.read(DESIRED);
    let backend_line = line_of(&text, "backend:");
    let place = format!("desired.yaml:{backend_line}:10:");

    // Before: exit 0, "is valid".
    ws.write(
        DESIRED,
        &text.replace("sim:fleet.yaml", "sim:no-such-fleet.yaml"),
    );
    refused(
        &ws,
        &["validate", DESIRED],
        &[
            &place,
            "cannot read the simulator's fleet file",
            "no-such-fleet.yaml",
            "fix:",
        ],
    );

    // Before: no line and column.
    ws.write(DESIRED, &text.replace("sim:fleet.yaml", "simm:fleet.yaml"));
    for command in ["validate", "plan"] {
        refused(
            &ws,
            &[command, DESIRED],
            &[&place, "unknown backend", "fix:"],
        );
    }
    // --backend overrides it for `plan`; `validate` still checks the file's own line.
    ws.mkplan(&["plan", DESIRED, "--backend", "sim:fleet.yaml"])
        .expect_code(0);
    refused(
        &ws,
        &["validate", DESIRED, "--backend", "sim:fleet.yaml"],
        &[&place, "unknown backend"],
    );

    // A URL with a password: placed, and neither the line nor the password shown.
    ws.write(
        DESIRED,
        &text.replace("sim:fleet.yaml", "http://user:s3cret-pw@127.0.0.1:9"),
    );
    let stderr = refused(
        &ws,
        &["validate", DESIRED],
        &[&place, "user name or password"],
    );
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");

    // A fleet that does not parse: the fleet's own file, line and column.
    ws.write(DESIRED, &text);
    let fleet = ws.read(FLEET);
    ws.write(FLEET, &fleet.replacen("instances:", "instances: 7\nx:", 1));
    refused(
        &ws,
        &["validate", DESIRED],
        &[
            "fleet.yaml:",
            "instances must be a list of service instances",
        ],
    );

    // A fleet that lacks a service instance of the desired file.
    ws.write(
        FLEET,
        &fleet.replace(INSTANCE, "00000000-0000-4000-8000-000000000000"),
    );
    refused(
        &ws,
        &["validate", DESIRED],
        &[
            "backend sim:",
            "is not known to the backend",
            "Add the instance to the fleet file",
        ],
    );

    // --backend (or MKPLAN_BACKEND) is checked as plan would use it, without a request.
    ws.write(FLEET, &fleet);
    refused(
        &ws,
        &["validate", DESIRED, "--backend", "sim:elsewhere.yaml"],
        &["cannot read the simulator's fleet file", "elsewhere.yaml"],
    );
    let remote = ws.mkplan_with_env(
        &["validate", DESIRED, "--backend", "http://192.0.2.1:8080"],
        &[("MKPLAN_TOKEN", "t0ken-never-shown")],
    );
    remote.expect_code(1);
    assert!(remote.stderr.contains("clear text"), "{}", remote.stderr);
    assert!(
        !remote.stderr.contains("t0ken-never-shown"),
        "{}",
        remote.stderr
    );

    let valid = ws.mkplan(&["validate", DESIRED]);
    valid.expect_code(0);
    assert!(
        valid
            .stderr
            .contains("the fleet file parses and holds every service instance"),
        "{}",
        valid.stderr
    );
    let http = ws.mkplan(&["validate", DESIRED, "--backend", "http://127.0.0.1:9"]);
    http.expect_code(0);
    assert!(http.stderr.contains("not contacted"), "{}", http.stderr);
}
