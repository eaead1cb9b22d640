//! The JSON documents mkplan prints, against their schemas in docs/schemas and their
//! description in docs/json.md. The harness checks every `--json` output of every test
//! against its schema (`support::schemas`), the scenario table's rows included; these tests
//! show that the check has teeth, cover the documents no other test prints, and keep the
//! schemas, the docs and the plan file's version rule honest.

use serde_json::{Value, json};

use crate::cases::apply::PASSWORDS;
use crate::support::schemas::{self, Document};
use crate::support::*;

#[test]
fn every_schema_is_a_draft_2020_12_schema() {
    // Compiling checks each file against the draft 2020-12 meta-schema.
    schemas::compile_all();
    for document in Document::ALL {
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(repo_file(document.schema_file())).unwrap(),
        )
        .unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema",
            "{}",
            document.schema_file()
        );
        assert_eq!(
            schema["additionalProperties"],
            false,
            "{}",
            document.schema_file()
        );
        assert_eq!(
            schema["properties"]["format_version"],
            json!({ "const": "1" }),
            "{}",
            document.schema_file()
        );
    }
}

/// Every row of the scenario table, in one place: a plan or a refusal that fits its schema.
/// (Each row's own test checks the same through the harness, on both backends.)
#[test]
fn the_scenario_tables_plans_and_refusals_fit_their_schemas() {
    let rows = [
        Fleet::instance().key_storage(A).units(3, empty(), valid(A)),
        Fleet::instance()
            .key_storage(A)
            .units(3, committed(B), valid(A)),
        Fleet::instance()
            .key_storage(B)
            .units(3, committed(B), valid(A)),
        Fleet::instance()
            .key_storage(B)
            .unit(empty(), valid(B))
            .units(2, committed(B), valid(A)),
        Fleet::instance().key_storage(B).units(3, empty(), valid(B)),
        Fleet::instance()
            .key_storage(B)
            .reports_rotation_status(false)
            .units(3, empty(), valid(B)),
        Fleet::instance()
            .key_storage(A)
            .units(2, empty(), valid(A))
            .unit(empty(), valid(A))
            .imprint(),
        Fleet::instance()
            .key_storage(A)
            .units(2, empty(), valid(A))
            .unit(empty(), valid(A))
            .signature_threshold(3),
        Fleet::instance()
            .key_storage(A)
            .reports_rotation_status(false)
            .units(3, committed(B), valid(A)),
    ];
    let mut refusals = 0;
    for (index, fleet) in rows.iter().enumerate() {
        let run = rotate_to_b(fleet).plan();
        let document = match run.code {
            0 | 2 => Document::Plan,
            3 => {
                refusals += 1;
                Document::Refusal
            }
            _ => panic!("row {}: exit {}\n{}", index + 1, run.code, run.stderr),
        };
        schemas::check(document, &run.json());
    }
    assert_eq!(refusals, 3, "rows 6, 7 and 8 refuse");
}

#[test]
fn a_saved_plan_with_every_action_and_a_ceremony_fits_the_plan_schema() {
    let ws = rotate_to_b(
        &Fleet::instance()
            .key_storage(A)
            .units(3, empty(), valid(A))
            .and_instance()
            .key_storage(A)
            .unit(committed(B), valid(A))
            .unit(uncommitted(C), valid(A))
            .unit(committed(B), valid(A))
            .and_instance()
            .key_storage(B)
            .unit(empty(), valid(B))
            .units(2, committed(B), valid(A)),
    );
    crate::cases::ceremony::with_smart_cards(&ws);
    let run = ws.mkplan(&["plan", DESIRED, "--json", "--out", "p.json"]);
    run.expect_code(0);
    let plan = run.json();
    assert!(
        plan["instances"][0].get("ceremony").is_some(),
        "the fixture should plan a ceremony: {plan:#}"
    );
    let saved: Value = serde_json::from_str(&ws.read("p.json")).unwrap();
    assert!(saved.get("desired_file").is_some() && saved.get("backend_identity").is_some());
    schemas::check(Document::Plan, &saved);
    schemas::check(
        Document::Plan,
        &ws.mkplan(&["show", "p.json", "--json"]).json(),
    );
}

#[test]
fn status_drill_and_cards_documents_fit_their_schemas() {
    let ws = rotate_to_b(
        &Fleet::instance()
            .key_storage(A)
            .units(2, empty(), valid(A))
            .unit(empty(), valid(A))
            .kind("recovery"),
    );
    let status = ws.mkplan(&["status", DESIRED, "--json"]);
    status.expect_code(0);
    schemas::check(Document::Status, &status.json());
    for extra in [&[][..], &["--actors"][..]] {
        let args = [
            &["drill", DESIRED, "--runs", "4", "--seed", "3", "--json"][..],
            extra,
        ]
        .concat();
        let drill = ws.mkplan_with_env(&args, &PASSWORDS);
        drill.expect_code(0);
        let result = drill.json();
        schemas::check(Document::Drill, &result);
        if !extra.is_empty() {
            assert!(
                result["schedules"][0]["schedule"].get("actors").is_some(),
                "{result:#}"
            );
        }
    }
    // `cards --json` needs a PC/SC stack (the smartcards tests print it through the harness);
    // here, the shape it prints with one reader holding a card and one empty.
    schemas::check(
        Document::Cards,
        &json!({
            "format_version": "1",
            "readers": [
                { "name": "Key part reader 00 00", "card_present": true, "atr": "3B8F8001804F0CA0" },
                { "name": "Key part reader 00 01", "card_present": false }
            ]
        }),
    );
}

/// A document that does not fit is caught: an unknown field, a missing one, another
/// version, a wrong value, one document for another.
#[test]
fn the_schema_check_has_teeth() {
    let ws = rotate_to_b(&Fleet::instance().key_storage(A).units(3, empty(), valid(A)));
    let plan = ws.plan().json();
    assert!(schemas::validate(Document::Plan, &plan).is_ok());
    type Change = Box<dyn Fn(&mut Value)>;
    let mut changes: Vec<(&str, Change)> = vec![
        ("an unknown field", Box::new(|p| p["surprise"] = json!(1))),
        (
            "a missing field",
            Box::new(|p| {
                p.as_object_mut().unwrap().remove("live_fingerprint");
            }),
        ),
        (
            "another version",
            Box::new(|p| p["format_version"] = json!("2")),
        ),
        (
            "a version as a number",
            Box::new(|p| p["format_version"] = json!(1)),
        ),
        (
            "an unknown action",
            Box::new(|p| p["steps"][0]["action"] = json!("zeroize")),
        ),
        (
            "a short verification pattern",
            Box::new(|p| p["instances"][0]["target_verification_pattern"] = json!("57c060")),
        ),
        (
            "an Empty register with a verification pattern",
            Box::new(|p| {
                p["instances"][0]["units"][0]["before"]["new_register"]["verification_pattern"] =
                    json!(B)
            }),
        ),
    ];
    for (what, change) in changes.drain(..) {
        let mut changed = plan.clone();
        change(&mut changed);
        assert!(
            schemas::validate(Document::Plan, &changed).is_err(),
            "{what} passed the plan schema"
        );
    }
    for other in [
        Document::Refusal,
        Document::Status,
        Document::Drill,
        Document::Cards,
    ] {
        assert!(
            schemas::validate(other, &plan).is_err(),
            "a plan passed as {other:?}"
        );
    }
}

/// A plan file of another format version is refused as such, before any field error.
#[test]
fn a_plan_file_of_another_format_version_is_refused_before_any_field_error() {
    let ws = rotate_to_b(&Fleet::instance().key_storage(A).units(3, empty(), valid(A)));
    let fleet = ws.bytes(FLEET);
    for (version, said) in [
        (json!("2"), "is of format version \"2\""),
        (json!(1), "is of format version 1"),
        (Value::Null, "has no format_version"),
    ] {
        // Fields this mkplan does not know, and one of the wrong type.
        let mut file = json!({ "steps": "none", "future_field": true });
        if !version.is_null() {
            file["format_version"] = version;
        }
        ws.write("p.json", &file.to_string());
        for command in ["show", "runbook", "apply"] {
            let run = ws.mkplan_with_env(&[command, "p.json"], &PASSWORDS);
            run.expect_code(1);
            assert!(run.stderr.contains(said), "{command}: {}", run.stderr);
            assert!(
                run.stderr
                    .contains("this mkplan reads format version \"1\""),
                "{command}: {}",
                run.stderr
            );
            assert!(
                !run.stderr.contains("invalid type") && !run.stderr.contains("missing field"),
                "{command}: a field error came first: {}",
                run.stderr
            );
        }
    }
    assert_eq!(ws.bytes(FLEET), fleet, "the fleet was touched");
}

/// Every field of every schema is described in docs/json.md.
#[test]
fn docs_json_md_describes_every_field() {
    let docs = std::fs::read_to_string(repo_file("docs/json.md")).expect("docs/json.md");
    let mut missing = Vec::new();
    for document in Document::ALL {
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(repo_file(document.schema_file())).unwrap(),
        )
        .unwrap();
        let mut names = Vec::new();
        property_names(&schema, &mut names);
        for name in names {
            if !docs.contains(&format!("`{name}`")) {
                missing.push(format!("{} ({})", name, document.schema_file()));
            }
        }
        assert!(
            docs.contains(document.schema_file().trim_start_matches("docs/")),
            "docs/json.md does not link {}",
            document.schema_file()
        );
    }
    assert!(
        missing.is_empty(),
        "fields not described in docs/json.md: {missing:?}"
    );
}

fn property_names(schema: &Value, names: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(properties)) = map.get("properties") {
                names.extend(properties.keys().cloned());
            }
            for value in map.values() {
                property_names(value, names);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| property_names(v, names)),
        _ => {}
    }
}
