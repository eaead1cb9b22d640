//! `mkplan drill` on a domain group file, through the binary: seeded runs on copies of a
//! fake Crypto Express world, each under one fault, every run converged with zero incidents,
//! the world drilled left untouched; and a group file that leaves a token out fails its drill
//! with the incident, the seed and the command that replays the run.

use crate::cases::zcrypt::{LUKS2_STORE, LUKS2_VOLUME, NEW, OLD, World, ep11_group, world_yaml};

/// The harness's world with one zkey key (`backup`): a change of 8 steps.
fn one_key_world() -> String {
    let world = world_yaml(true);
    world[..world.find("  - name: archive").unwrap()].to_string()
}

#[test]
fn zcrypt_a_drill_meets_every_fault_kind_and_every_run_converges_without_incidents() {
    let world = World::with(&one_key_world(), &ep11_group(), "EP11", NEW);
    let before = std::fs::read(world.root.join("w/world.json")).unwrap();
    // Six runs: the fault kinds take turns by seed, so each kind is met once.
    let out = world.run(&["drill", "group.yaml", "--runs", "6", "--seed", "42"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("6 runs, seed 42, 8 steps per change"),
        "{stderr}"
    );
    assert!(
        stdout.contains("6 converged, 0 refused safely, 0 failed; 0 incidents."),
        "{stdout}"
    );
    for kind in [
        "tool killed after its effect 1",
        "tool failure 1",
        "lost outcome 1",
        "apply killed 1",
        "operator stops 1",
        "latency 1",
    ] {
        assert!(stdout.contains(kind), "no {kind:?} in {stdout}");
    }
    assert!(stdout.contains("Longest recovery: run "), "{stdout}");
    assert_eq!(
        std::fs::read(world.root.join("w/world.json")).unwrap(),
        before,
        "a drill never touches the world it copies"
    );
    world.assert_no_incidents();
}

/// The world's one key and an EP11 token on the group's APQNs.
fn key_and_token_world() -> String {
    format!(
        "{}opencryptoki:\n  - {{ slot: 3, type: ep11, apqns: [\"03.0006\", \"04.0006\"], expected: {{ WK: \"{}\" }} }}\n",
        one_key_world(),
        &OLD[..32]
    )
}

#[test]
fn zcrypt_a_drill_with_a_token_pins_its_config_after_the_set_and_converges() {
    // pkcshsm_mk_change finalize needs EXPECTED_WKVP naming the new key: the drill's
    // operator pins it after the set, as the procedure asks of a real one.
    let group = format!(
        "{}  - opencryptoki: tokens\nopencryptoki_user_pins:\n  - {{ slot: 3, file: keys/slot3.pin }}\n",
        ep11_group()
    );
    let world = World::with(&key_and_token_world(), &group, "EP11", NEW);
    std::fs::write(world.root.join("keys/slot3.pin"), "1234\n").unwrap();
    let out = world.run(&["drill", "group.yaml", "--runs", "1", "--seed", "6"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("10 steps per change"), "{stderr}");
    assert!(
        stdout.contains("1 converged, 0 refused safely, 0 failed; 0 incidents."),
        "{stdout}"
    );
    world.assert_no_incidents();
}

/// A drill reads the world's token configs, never this machine's `opencryptoki_config`
/// (adversary round 6): a token on the group's APQNs that the file leaves out is refused
/// before any run, as `plan` refuses it.
#[test]
fn zcrypt_a_drill_reads_the_worlds_token_configs_and_refuses_a_token_left_out() {
    let group = ep11_group().replace("opencryptoki_config: w/opencryptoki\n", "");
    let world = World::with(&key_and_token_world(), &group, "EP11", NEW);
    let out = world.run(&["drill", "group.yaml", "--runs", "1", "--seed", "5"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        stderr.contains("names opencryptoki_config /etc/opencryptoki: the drill reads the world's")
            && stderr.contains("undeclared_stores")
            && stderr.contains("w/opencryptoki/ep11tok3.conf"),
        "{stderr}"
    );
    world.assert_no_incidents();
}

/// An application key the group file leaves out, which mkplan cannot see (an application
/// declares its keys only to the file): the drill's ground truth sees the set lose it, and
/// the run fails with the incident, the seed and the command that replays it.
#[test]
fn zcrypt_a_drill_of_a_group_that_leaves_an_application_key_out_fails_with_the_incident_and_the_replay()
 {
    let world_file = format!(
        "{}applications:\n  - {{name: payments, type: WK, apqns: [\"03.0006\", \"04.0006\"], mkvp: \"{}\"}}\n",
        one_key_world(),
        &OLD[..32]
    );
    let world = World::with(&world_file, &ep11_group(), "EP11", NEW);
    let out = world.run(&["drill", "group.yaml", "--runs", "1", "--seed", "5"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("FAILED run 0 (seed 5)")
            && stdout.contains("incident(s)")
            && stdout.contains("payments")
            && stdout.contains("replay: mkplan drill group.yaml --runs 1 --seed 5"),
        "{stdout}"
    );
    assert!(stderr.contains("the drill failed: 1 of 1 runs"), "{stderr}");
    world.assert_no_incidents();
}

/// An application key declared with the fake's `appkey` (its `mkvps` is the check a group
/// file needs) is rehearsed like every other store: staged, set, completed under faults,
/// with no incident (repro9z D1: no drill could include one).
#[test]
fn zcrypt_a_drill_rehearses_a_declared_application_key() {
    let world_file = format!(
        "{}applications:\n  - {{name: payments, type: WK, apqns: [\"03.0006\", \"04.0006\"], mkvp: \"{}\"}}\n",
        one_key_world(),
        &OLD[..32]
    );
    let group = format!(
        "{}  - application: {{ name: payments, check: [appkey, mkvps, payments], stage: [appkey, reencipher, payments, --to-new], complete: [appkey, reencipher, payments, --complete] }}\n",
        ep11_group()
    );
    let world = World::with(&world_file, &group, "EP11", NEW);
    let out = world.run(&["drill", "group.yaml", "--runs", "3", "--seed", "45"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("3 converged, 0 refused safely, 0 failed; 0 incidents."),
        "{stdout}"
    );
    world.assert_no_incidents();
}

/// An application key whose command is a program of this machine (by path, or a name not
/// among the world's tools) is refused before any run: a drill never runs it.
#[test]
fn zcrypt_a_drill_never_runs_an_application_command_outside_its_world() {
    for program in ["/usr/local/bin/payments-keys", "payments-keys"] {
        let group = format!(
            "{}  - application: {{ name: payments, check: [{program}, check], stage: [appkey, stage, payments], complete: [appkey, complete, payments] }}\n",
            ep11_group()
        );
        let world = World::with(&one_key_world(), &group, "EP11", NEW);
        let out = world.run(&["drill", "group.yaml", "--runs", "1", "--seed", "5"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{program}: {stderr}");
        assert!(
            stderr.contains("application key payments's check command runs ")
                && stderr.contains(program)
                && stderr.contains("which is not one of the drill world's tools")
                && !stderr.contains("runs, seed"),
            "{program}: {stderr}"
        );
        world.assert_no_incidents();
    }
}

#[test]
fn zcrypt_a_drill_of_a_group_with_a_luks2_volume_converges_without_incidents() {
    // The key's LUKS2 volume declared with its key file (relative to the group file, which
    // each run's copy finds beside it): 10 steps, the volume's stage and complete among the
    // tool steps the faults hit.
    let world = World::with(
        &format!("{}{LUKS2_VOLUME}", one_key_world()),
        &format!("{}{LUKS2_STORE}", ep11_group()),
        "EP11",
        NEW,
    );
    let out = world.run(&["drill", "group.yaml", "--runs", "6", "--seed", "7"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("10 steps per change"), "{stderr}");
    assert!(
        stdout.contains("6 converged, 0 refused safely, 0 failed; 0 incidents."),
        "{stdout}"
    );
    world.assert_no_incidents();
}
