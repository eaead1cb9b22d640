//! The fake platform's faults and failures, driven through the world's `bin` scripts: a
//! tool killed after its effect, an APQN gone offline, and faults armed in the world file
//! with latency.

use crate::cases::zcrypt_fake::{B, ZWorld, ep11_only_world};

#[test]
fn a_tool_killed_after_its_effect_leaves_a_consistent_world() {
    let world = ZWorld::example();
    world.load_and_commit_ep11(B);
    let killed = world.tool_with_env(
        "zkey",
        &["reencipher", "--to-new", "--name", "backup"],
        &[("MKPLAN_ZCRYPT_FAULT", "crash_after_effect")],
    );
    assert_eq!(killed.code, -1, "killed by a signal: {killed:?}");
    assert_eq!(killed.stdout, "", "nothing printed");
    // The effect is durable and every view shows it: the rerun just overwrites the .renc.
    assert!(world.path("zkey/backup.renc").exists());
    let validated = world.tool("zkey", &["validate", "--name", "backup"]);
    assert!(
        validated.stdout.contains("(re-enciphering pending)"),
        "{}",
        validated.stdout
    );
    world
        .tool("zkey", &["reencipher", "--to-new", "--name", "backup"])
        .expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&world.read("world.json")).unwrap();
    assert!(json["keys"].as_array().unwrap().iter().any(
        |k| k["name"] == "backup" && k["renc"].as_str().is_some_and(|r| r.starts_with("b2b2"))
    ));

    let before = world.read("world.json");
    let failed = world.tool_with_env(
        "zkey",
        &["reencipher", "--to-new", "--name", "disk-root"],
        &[("MKPLAN_ZCRYPT_FAULT", "fail_before_effect")],
    );
    failed.expect_code(1);
    assert!(
        failed.stderr.contains("injected fault"),
        "{}",
        failed.stderr
    );
    assert_eq!(world.read("world.json"), before, "nothing changed");
    world.assert_no_incidents();
}

#[test]
fn an_apqn_gone_offline_shows_dashes_and_zkey_uses_the_other() {
    let world = ZWorld::example();
    world.load_and_commit_ep11(B);
    let run = world.tool_with_env(
        "zkey",
        &["reencipher", "--to-new", "--name", "backup"],
        &[("MKPLAN_ZCRYPT_FAULT", "apqn_offline=03.0006")],
    );
    run.expect_code(0);
    assert_eq!(
        world.read("sys/devices/ap/card03/03.0006/mkvps"),
        "WK CUR: - -\nWK NEW: - -\n"
    );
    assert_eq!(world.read("sys/devices/ap/card03/03.0006/online"), "0\n");
    let validated = world.tool("zkey", &["validate", "--name", "backup"]);
    assert!(
        validated.stdout.contains("WARNING: APQN 03.0006"),
        "{}",
        validated.stdout
    );
}

#[test]
fn faults_armed_in_the_world_file_fire_the_given_times_and_latency_slows_every_action() {
    let yaml = format!(
        "{}faults:\n  - {{kind: crash_after_effect, tool: zkey reencipher}}\n",
        ep11_only_world()
    );
    let world = ZWorld::new(&yaml);
    world.load_and_commit_ep11(B);
    let validated = world.tool("zkey", &["validate"]);
    validated.expect_code(0);
    let killed = world.tool("zkey", &["reencipher", "--to-new"]);
    assert_eq!(
        (killed.code, killed.stdout.as_str()),
        (-1, ""),
        "{killed:?}"
    );
    assert!(world.path("zkey/k1.renc").exists());
    world
        .tool("zkey", &["reencipher", "--to-new"])
        .expect_code(0);
    world.assert_no_incidents();

    let started = std::time::Instant::now();
    world
        .tool_with_env("zkey", &["list"], &[("MKPLAN_ZCRYPT_LATENCY_MS", "400")])
        .expect_code(0);
    assert!(started.elapsed() >= std::time::Duration::from_millis(400));
}
