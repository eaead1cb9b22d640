//! The views of a plan (JSON, saved plan file, `show`, DOT, Markdown), the live register
//! table (`status --json`), and secrets: none in any view.

use serde_json::Value;

use crate::support::*;

fn row1() -> Workspace {
    rotate_to_b(&Fleet::instance().key_storage(A).units(3, empty(), valid(A)))
}

/// A fleet whose plan has every kind of step: instance 0 fresh, instance 1 with a wrong key
/// on u2, instance 2 after the rewrap with u1 promoted.
fn every_action() -> Fleet {
    Fleet::instance()
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
        .units(2, committed(B), valid(A))
}

#[test]
fn saved_plan_shows_as_the_same_json() {
    let workspace = rotate_to_b(&every_action());
    let planned = workspace.mkplan(&["plan", DESIRED, "--json", "--out", "p.json"]);
    planned.expect_code(0);
    let plan = planned.json();
    assert_well_formed(&plan);
    let saved: Value =
        serde_json::from_str(&workspace.read("p.json")).expect("the plan file is JSON");
    assert_eq!(saved, plan, "the saved plan differs from the plan printed");
    let shown = workspace.mkplan(&["show", "p.json", "--json"]);
    shown.expect_code(0);
    assert_eq!(shown.json(), plan, "show --json differs from plan --json");
    assert_eq!(shown.stdout.trim_end(), planned.stdout.trim_end());
}

#[test]
fn dot_has_an_edge_for_every_dependency() {
    let workspace = rotate_to_b(&every_action());
    let plan = workspace
        .mkplan(&["plan", DESIRED, "--json", "--out", "p.json"])
        .json();
    let run = workspace.mkplan(&["show", "p.json", "--dot"]);
    run.expect_code(0);
    let dot = &run.stdout;
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.trim_end().ends_with('}'), "{dot}");
    let mut edges = 0;
    for step in steps(&plan) {
        let to = id(step);
        assert!(
            dot.contains(&format!("\"{to}\"")),
            "no node for {to}:\n{dot}"
        );
        for from in depends_on(step) {
            edges += 1;
            assert!(
                dot.contains(&format!("\"{from}\" -> \"{to}\"")),
                "no edge {from} -> {to}:\n{dot}"
            );
        }
    }
    assert!(edges > 0);
    assert_eq!(
        dot.matches(" -> ").count(),
        edges,
        "the DOT has edges that are not dependencies:\n{dot}"
    );
}

/// The summary rows of the first Markdown table: action name → count.
fn summary_rows(markdown: &str) -> Vec<(String, String)> {
    let above_the_fold = markdown.split("<details>").next().unwrap();
    above_the_fold
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|cells| cells.len() >= 3)
        .map(|cells| (cells[1].to_string(), cells[2].trim_matches('*').to_string()))
        .collect()
}

const ACTIONS: [&str; 6] = [
    "clear_new_mk",
    "load_new_mk",
    "commit_new_mk",
    "rewrap_key_storage",
    "remove_unit",
    "set_immediate",
];

#[track_caller]
fn assert_summary_matches(markdown: &str, plan: &Value) {
    let rows = summary_rows(markdown);
    for action in ACTIONS {
        let count = find(plan, action, None).len();
        let row = rows.iter().find(|(name, _)| name.contains(action));
        match row {
            Some((_, shown)) => assert_eq!(
                shown,
                &count.to_string(),
                "count of {action} in\n{markdown}"
            ),
            None => assert_eq!(count, 0, "no summary row for {action} in\n{markdown}"),
        }
    }
}

#[test]
fn markdown_has_a_summary_row_per_action_and_details() {
    let workspace = rotate_to_b(&every_action());
    let plan = workspace
        .mkplan(&["plan", DESIRED, "--json", "--out", "p.json"])
        .json();
    for action in ACTIONS {
        assert!(
            !find(&plan, action, None).is_empty(),
            "the fixture should plan every action; no {action}"
        );
    }
    let from_plan = workspace.mkplan(&["plan", DESIRED, "--markdown", "--detailed-exitcode"]);
    from_plan.expect_code(2);
    let from_show = workspace.mkplan(&["show", "p.json", "--markdown"]);
    from_show.expect_code(0);
    for markdown in [&from_plan.stdout, &from_show.stdout] {
        assert_summary_matches(markdown, &plan);
        assert!(markdown.contains("<details>"), "{markdown}");
        assert!(markdown.contains("</details>"), "{markdown}");
        for instance in plan["instances"].as_array().unwrap() {
            assert!(
                markdown.contains(instance["id"].as_str().unwrap()),
                "instance missing:\n{markdown}"
            );
        }
        assert!(markdown.chars().count() < 65_000);
    }
}

#[test]
fn markdown_stays_under_65000_characters_for_300_instances() {
    let mut fleet = Fleet::instance().key_storage(A).units(3, empty(), valid(A));
    for _ in 1..300 {
        fleet = fleet
            .and_instance()
            .key_storage(A)
            .units(3, empty(), valid(A));
    }
    let workspace = rotate_to_b(&fleet);
    let json = workspace.plan();
    json.expect_code(2);
    let plan = json.json();
    assert_eq!(plan["instances"].as_array().unwrap().len(), 300);
    assert_eq!(steps(&plan).len(), 300 * 10);
    let run = workspace.mkplan(&["plan", DESIRED, "--markdown"]);
    run.expect_code(0);
    let markdown = &run.stdout;
    let characters = markdown.chars().count();
    assert!(characters < 65_000, "{characters} characters");
    assert_summary_matches(markdown, &plan);
    assert!(markdown.contains("<details>"));
}

#[test]
fn status_json_lists_every_units_registers() {
    let fleet = every_action();
    let workspace = rotate_to_b(&fleet);
    let run = workspace.mkplan(&["status", DESIRED, "--json"]);
    run.expect_code(0);
    let status = run.json();
    let instances = status["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("{status:#}"));
    assert_eq!(instances.len(), fleet.instances.len());
    for instance in &fleet.instances {
        let live = instances
            .iter()
            .find(|i| i["id"] == instance.id.as_str())
            .unwrap_or_else(|| panic!("instance {} missing from {status:#}", instance.id));
        let units = live["crypto_units"].as_array().unwrap();
        assert_eq!(units.len(), instance.units.len());
        for unit in &instance.units {
            let shown = units
                .iter()
                .find(|u| u["hsm_id"] == unit.hsm_id.as_str())
                .unwrap_or_else(|| panic!("unit {} missing from {live:#}", unit.hsm_id));
            assert_eq!(
                shown["new_register"]["status"],
                unit.new.status(),
                "{shown:#}"
            );
            assert_eq!(
                shown["new_register"]
                    .get("verification_pattern")
                    .and_then(Value::as_str),
                unit.new.vp(),
                "{shown:#}"
            );
            assert_eq!(
                shown["current_register"]["status"],
                unit.current.status(),
                "{shown:#}"
            );
            assert_eq!(
                shown["current_register"]
                    .get("verification_pattern")
                    .and_then(Value::as_str),
                unit.current.vp(),
                "{shown:#}"
            );
        }
    }
    // The live state never reveals the simulator's ground truth.
    assert!(
        !run.stdout.contains("key_storage"),
        "status reveals the key storage:\n{}",
        run.stdout
    );
}

#[test]
fn no_secret_in_any_view() {
    let workspace = row1();
    let mut secrets: Vec<String> = DEMO_PASSWORDS.iter().map(|p| p.to_string()).collect();
    for n in 1..=2 {
        let file: Value =
            serde_json::from_str(&workspace.read(&format!("keyparts/custodian-{n}.json"))).unwrap();
        let ciphertext = file["ciphertext"].as_str().expect("ciphertext").to_string();
        assert!(ciphertext.len() > 32);
        secrets.push(ciphertext.clone());
        // A part of the ciphertext is as bad as all of it.
        secrets.push(ciphertext[..32].to_string());
    }
    // The passwords are in the environment, as an operator would have them.
    let env = [
        ("MKPLAN_PART1_PASSWORD", DEMO_PASSWORDS[0]),
        ("MKPLAN_PART2_PASSWORD", DEMO_PASSWORDS[1]),
    ];
    let runs = [
        workspace.mkplan_with_env(&["plan", DESIRED, "--json", "--out", "p.json"], &env),
        workspace.mkplan_with_env(&["plan", DESIRED, "--markdown"], &env),
        workspace.mkplan_with_env(&["plan", DESIRED], &env),
        workspace.mkplan_with_env(&["show", "p.json"], &env),
        workspace.mkplan_with_env(&["show", "p.json", "--json"], &env),
        workspace.mkplan_with_env(&["show", "p.json", "--markdown"], &env),
        workspace.mkplan_with_env(&["show", "p.json", "--dot"], &env),
        workspace.mkplan_with_env(&["status", DESIRED], &env),
        workspace.mkplan_with_env(&["status", DESIRED, "--json"], &env),
        workspace.mkplan_with_env(&["validate", DESIRED], &env),
    ];
    let plan_file = workspace.read("p.json");
    for run in &runs {
        run.expect_code(0);
        assert!(!run.stdout.is_empty() || !run.stderr.is_empty());
        for secret in &secrets {
            assert!(
                !run.stdout.contains(secret.as_str()),
                "a secret on stdout: {secret}"
            );
            assert!(
                !run.stderr.contains(secret.as_str()),
                "a secret on stderr: {secret}"
            );
        }
    }
    for secret in &secrets {
        assert!(
            !plan_file.contains(secret.as_str()),
            "a secret in the plan file: {secret}"
        );
    }
    // The human plan (on stdout, like the other reports) is a real plan, not an empty one.
    assert!(
        runs[2].stdout.contains("rewrap_key_storage"),
        "{}",
        runs[2].stdout
    );
}
