//! `--instance ID`, like Terraform's `-target` (issue 13, point 14): on a fleet of three
//! service instances, only the named ones are refreshed, planned, applied and shown, the plan
//! names the others as left out, a saved plan applies exactly its subset (and checks only that
//! subset for staleness), and an id the desired file lacks is an error listing those it has.

use mkplan::backend::sim::SimInstance;

use crate::cases::apply::{PASSWORDS, sim};
use crate::support::*;

/// Three instances at the start of a rotation: 3, 3 and 2 crypto units.
fn three_instances() -> Fleet {
    Fleet::instance()
        .units(3, empty(), valid(A))
        .and_instance()
        .units(3, empty(), valid(A))
        .and_instance()
        .units(2, empty(), valid(A))
}

fn instances(ws: &Workspace) -> Vec<SimInstance> {
    sim(ws).instances
}

#[track_caller]
fn assert_rotated(instance: &SimInstance) {
    assert_eq!(instance.key_storage.verification_pattern.as_str(), B);
    for unit in &instance.crypto_units {
        assert_eq!(unit.new_register.status(), "Empty", "{unit:?}");
        assert_eq!(
            unit.current_register
                .verification_pattern()
                .map(|vp| vp.as_str().to_string()),
            Some(B.to_string()),
            "{unit:?}"
        );
    }
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

#[test]
fn plan_with_instance_shows_only_it_and_names_the_others_left_out() {
    let ws = rotate_to_b(&three_instances());
    let (first, second, third) = (instance_id(0), instance_id(1), instance_id(2));
    let fleet = ws.bytes(FLEET);

    let plan = ws
        .mkplan(&["plan", DESIRED, "--instance", &second, "--json"])
        .planned(0);
    assert_eq!(strings(&plan["targeted"]), vec![second.clone()]);
    assert_eq!(
        strings(&plan["left_out"]),
        vec![first.clone(), third.clone()]
    );
    let planned: Vec<&str> = plan["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(planned, vec![second.as_str()]);
    assert!(
        steps(&plan)
            .iter()
            .all(|s| s["instance"] == second.as_str())
    );
    assert_steps_of(
        &plan,
        Some(&second),
        [
            each_of(1, "load_new_mk", 1..=3),
            each_of(1, "commit_new_mk", 1..=3),
            vec![wide("rewrap_key_storage")],
            each_of(1, "set_immediate", 1..=3),
        ]
        .concat(),
    );

    // The text plan (wherever it is printed) and the Markdown plan say what was left out.
    let run = ws.mkplan(&["plan", DESIRED, "--instance", &second]);
    run.expect_code(0);
    let shown = format!("{}{}", run.stdout, run.stderr);
    assert!(
        shown.contains(&format!("Left out by --instance: {first}, {third}")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("Service instance {second}")),
        "{shown}"
    );
    assert!(
        !shown.contains(&format!("Service instance {first}")),
        "{shown}"
    );
    let markdown = ws
        .mkplan(&["plan", DESIRED, "--instance", &second, "--markdown"])
        .stdout;
    assert!(
        markdown.contains(&format!(
            "**Left out by `--instance`**: `{first}`, `{third}`"
        )),
        "{markdown}"
    );
    assert!(
        !markdown.contains(&format!("<code>{first}</code>")),
        "{markdown}"
    );
    assert_eq!(ws.bytes(FLEET), fleet, "planning changed the fleet");
}

#[test]
fn apply_with_instance_rotates_only_that_instance() {
    let ws = rotate_to_b(&three_instances());
    let before = instances(&ws);
    let second = instance_id(1);
    ws.mkplan_with_env(
        &["apply", DESIRED, "--instance", &second, "--auto-approve"],
        &PASSWORDS,
    )
    .expect_code(0);
    let after = sim(&ws);
    assert!(after.incidents.is_empty(), "{:#?}", after.incidents);
    assert_rotated(&after.instances[1]);
    assert_eq!(after.instances[0], before[0], "a left-out instance changed");
    assert_eq!(after.instances[2], before[2], "a left-out instance changed");
    // The next targeted plan of that instance has nothing to do; the others still do.
    let plan = ws
        .mkplan(&["plan", DESIRED, "--instance", &second, "--json"])
        .planned(0);
    assert!(steps(&plan).is_empty(), "{plan:#}");
    let rest = ws.plan().planned(2);
    assert!(
        steps(&rest)
            .iter()
            .all(|s| s["instance"] != second.as_str())
    );
}

#[test]
fn a_saved_plan_with_instance_applies_its_subset_and_checks_only_it() {
    let ws = rotate_to_b(&three_instances());
    let third = instance_id(2);
    ws.mkplan(&["plan", DESIRED, "--instance", &third, "--out", "plan.json"])
        .expect_code(0);

    // Another subset on the command line than the plan's: refused, nothing touched.
    let fleet = ws.bytes(FLEET);
    let run = ws.mkplan_with_env(
        &["apply", "plan.json", "--instance", &instance_id(0)],
        &PASSWORDS,
    );
    run.expect_code(1);
    assert!(run.stderr.contains(&third), "{}", run.stderr);
    assert_eq!(ws.bytes(FLEET), fleet, "the fleet was touched");

    // A left-out instance moves on (someone loads a key by hand on its first unit): the plan
    // for the third instance is still current, and the first instance is left as it is.
    let mut moved = three_instances();
    moved.instances[0].units[0].new = uncommitted(C);
    ws.write(FLEET, &moved.to_yaml());
    let before = instances(&ws);
    ws.mkplan_with_env(&["apply", "plan.json"], &PASSWORDS)
        .expect_code(0);
    let after = sim(&ws);
    assert!(after.incidents.is_empty(), "{:#?}", after.incidents);
    assert_rotated(&after.instances[2]);
    assert_eq!(after.instances[0], before[0], "a left-out instance changed");
    assert_eq!(after.instances[1], before[1], "a left-out instance changed");
}

#[test]
fn a_saved_plan_with_instance_is_stale_when_its_own_instance_changed() {
    let ws = rotate_to_b(&three_instances());
    let third = instance_id(2);
    ws.mkplan(&["plan", DESIRED, "--instance", &third, "--out", "plan.json"])
        .expect_code(0);
    let mut moved = three_instances();
    moved.instances[2].units[1].new = uncommitted(C);
    ws.write(FLEET, &moved.to_yaml());
    let fleet = ws.bytes(FLEET);
    let run = ws.mkplan_with_env(&["apply", "plan.json"], &PASSWORDS);
    run.expect_code(4);
    assert!(run.stderr.contains(&hsm(2, 2)), "{}", run.stderr);
    assert_eq!(ws.bytes(FLEET), fleet, "the fleet was touched");
}

#[test]
fn status_and_drill_with_instance_cover_only_it() {
    let ws = rotate_to_b(&three_instances());
    let first = instance_id(0);
    let fleet = ws.bytes(FLEET);
    let status = ws.mkplan(&["status", DESIRED, "--instance", &first, "--json"]);
    status.expect_code(0);
    let live = status.json();
    let shown: Vec<&str> = live["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(shown, vec![first.as_str()]);

    let drill = ws.mkplan_with_env(
        &[
            "drill",
            DESIRED,
            "--instance",
            &first,
            "--runs",
            "3",
            "--seed",
            "9",
            "--json",
        ],
        &PASSWORDS,
    );
    drill.expect_code(0);
    let result = drill.json();
    assert_eq!(result["incidents"], 0);
    assert_eq!(result["failed"], 0);
    // One instance of 3 units: 3 loads, 3 commits, 1 rewrap, 3 set immediates.
    assert_eq!(result["operations_per_rotation"], 10, "{result:#}");
    assert!(
        drill.stderr.contains("Left out by --instance"),
        "{}",
        drill.stderr
    );
    assert_eq!(ws.bytes(FLEET), fleet, "status or drill changed the fleet");
}

#[test]
fn an_instance_the_desired_file_lacks_is_an_error_listing_those_it_has() {
    let ws = rotate_to_b(&three_instances());
    let fleet = ws.bytes(FLEET);
    let unknown = "99999999-2222-4333-8444-000000000000";
    let second = instance_id(1);
    for command in [
        vec!["plan", DESIRED],
        vec!["apply", DESIRED, "--auto-approve"],
        vec!["status", DESIRED],
        vec!["drill", DESIRED, "--runs", "1"],
    ] {
        let mut args = command.clone();
        args.extend(["--instance", &second, "--instance", unknown]);
        let run = ws.mkplan_with_env(&args, &PASSWORDS);
        run.expect_code(1);
        assert!(run.stderr.contains(unknown), "{command:?}: {}", run.stderr);
        for index in 0..3 {
            assert!(
                run.stderr.contains(&instance_id(index)),
                "{command:?} does not list the desired file's instances: {}",
                run.stderr
            );
        }
        assert_eq!(ws.bytes(FLEET), fleet, "{command:?} touched the fleet");
    }
}
