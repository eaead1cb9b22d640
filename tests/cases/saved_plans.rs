//! Saved plans work from anywhere (issue 13, point 2): `plan --out` records the desired file
//! relative to the plan file, `apply PLANFILE` finds it from there whatever the working folder,
//! `--desired` gives another copy (same content, or exit 4), and `--backend` naming another
//! backend than the plan's is refused with nothing sent.

use std::fs;
use std::path::Path;

use crate::cases::apply::{PASSWORDS, assert_converged, assert_no_incidents, three_units};
use crate::on_both_backends;
use crate::support::*;

/// Copies the desired file and the key part files it names into `folder` of the workspace.
fn copy_desired_to(ws: &Workspace, folder: &str, extra: &str) {
    fs::create_dir_all(ws.path(&format!("{folder}/keyparts"))).unwrap();
    for n in 1..=2 {
        let part = format!("keyparts/custodian-{n}.json");
        fs::copy(ws.path(&part), ws.path(&format!("{folder}/{part}"))).unwrap();
    }
    ws.write(
        &format!("{folder}/{DESIRED}"),
        &format!("{}{extra}", ws.read(DESIRED)),
    );
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

on_both_backends! {
    /// A plan saved in one folder and applied by its absolute path from another working
    /// folder: the desired file (and through it the `sim:` fleet) is found from the plan
    /// file's folder, the rotation converges with zero incidents, and nothing is written in
    /// the working folder.
    fn a_plan_saved_in_one_folder_applies_from_another() {
        let ws = rotate_to_b(&three_units(true));
        fs::create_dir(ws.path("saved")).unwrap();
        ws.mkplan(&["plan", DESIRED, "--out", "saved/plan.json"])
            .expect_code(0);
        let plan: serde_json::Value = serde_json::from_str(&ws.read("saved/plan.json")).unwrap();
        assert_eq!(plan["desired_file"], "../desired.yaml", "{plan:#}");
        let elsewhere = tempfile::tempdir().unwrap();
        let plan_file = ws.path("saved/plan.json");
        let run = ws.mkplan_in(elsewhere.path(), &["apply", text(&plan_file)], &PASSWORDS);
        run.expect_code(0);
        assert_converged(&ws, "apply /abs/saved/plan.json from another folder");
        assert_eq!(
            fs::read_dir(elsewhere.path()).unwrap().count(),
            0,
            "apply wrote into the working folder"
        );
    }
}

#[test]
fn a_saved_plan_takes_a_copy_of_its_desired_file_with_desired() {
    let ws = rotate_to_b(&three_units(true));
    ws.mkplan(&["plan", DESIRED, "--out", "plan.json"])
        .expect_code(0);
    let fleet_spec = format!("sim:{}", ws.path(FLEET).display());
    let plan_file = ws.path("plan.json");
    let elsewhere = tempfile::tempdir().unwrap();
    let apply_with = |desired: &Path| {
        ws.mkplan_in(
            elsewhere.path(),
            &[
                "apply",
                text(&plan_file),
                "--desired",
                text(desired),
                "--backend",
                &fleet_spec,
            ],
            &PASSWORDS,
        )
    };

    // Another content (one comment more): stale, nothing touched.
    copy_desired_to(&ws, "edited", "# one more line\n");
    let fleet = ws.bytes(FLEET);
    let run = apply_with(&ws.path("edited/desired.yaml"));
    run.expect_code(4);
    assert!(run.stderr.contains("--desired"), "{}", run.stderr);
    assert!(run.stderr.contains("edited/desired.yaml"), "{}", run.stderr);
    assert_eq!(ws.bytes(FLEET), fleet, "the fleet was touched");

    // The same content in another folder: accepted, and the rotation converges.
    copy_desired_to(&ws, "copy", "");
    apply_with(&ws.path("copy/desired.yaml")).expect_code(0);
    assert_converged(&ws, "apply PLANFILE --desired copy/desired.yaml");
}

#[test]
fn a_saved_plan_with_backend_naming_another_backend_sends_nothing_to_either() {
    let ws = rotate_to_b(&three_units(true));
    ws.mkplan(&["plan", DESIRED, "--out", "plan.json"])
        .expect_code(0);
    // A twin of the fleet: same content, another service.
    ws.write("twin.yaml", &ws.read(FLEET));
    let (fleet, twin) = (ws.bytes(FLEET), ws.bytes("twin.yaml"));
    let run = ws.mkplan_with_env(
        &["apply", "plan.json", "--backend", "sim:twin.yaml"],
        &PASSWORDS,
    );
    run.expect_code(4);
    assert!(run.stderr.contains("twin.yaml"), "{}", run.stderr);
    assert!(run.stderr.contains("--backend"), "{}", run.stderr);
    assert_eq!(ws.bytes(FLEET), fleet, "the plan's fleet was touched");
    assert_eq!(ws.bytes("twin.yaml"), twin, "the other fleet was touched");
    assert_no_incidents(&ws, "apply PLANFILE --backend OTHER");
}

#[test]
fn a_saved_plan_whose_desired_file_is_not_found_says_to_pass_desired() {
    let ws = rotate_to_b(&three_units(true));
    fs::create_dir(ws.path("saved")).unwrap();
    ws.mkplan(&["plan", DESIRED, "--out", "saved/plan.json"])
        .expect_code(0);
    fs::rename(ws.path(DESIRED), ws.path("moved.yaml")).unwrap();
    let fleet = ws.bytes(FLEET);
    let run = ws.mkplan_with_env(&["apply", "saved/plan.json"], &PASSWORDS);
    run.expect_code(1);
    assert!(run.stderr.contains("--desired"), "{}", run.stderr);
    assert!(run.stderr.contains("../desired.yaml"), "{}", run.stderr);
    assert_eq!(ws.bytes(FLEET), fleet, "the fleet was touched");
    // `--desired` with a desired file (not a plan file) is a usage error.
    let run = ws.mkplan_with_env(
        &[
            "apply",
            "moved.yaml",
            "--desired",
            "moved.yaml",
            "--auto-approve",
        ],
        &PASSWORDS,
    );
    run.expect_code(1);
    assert!(run.stderr.contains("saved plan"), "{}", run.stderr);
    assert_eq!(ws.bytes(FLEET), fleet, "the fleet was touched");
}
