//! openCryptoki USER PINs, through the binary on the fake platform: `pkcshsm_mk_change`
//! logs in to each affected token with a PIN read from stdin (OCK `login_tokens`), and
//! mkplan answers each prompt with the PIN of the slot it names, read from the file or
//! environment variable the group file names for that slot. A PIN never reaches an argument,
//! the journal, the plan, stdout or stderr; a missing source stops the apply before anything
//! is done; a wrong PIN fails the login with nothing changed.

use crate::cases::zcrypt::{NEW, OLD, World, ep11_group, world_yaml};

pub(crate) const PIN_3: &str = "pin-of-slot-3-7d1c";
pub(crate) const PIN_4: &str = "pin-of-slot-4-9e2b";

/// The harness's world with two EP11 tokens on its APQNs, slots 3 and 4, and their PINs.
pub(crate) fn tokens_world() -> String {
    let token = |slot: u32, pin: &str| {
        format!(
            "  - {{ slot: {slot}, type: ep11, apqns: [\"03.0006\", \"04.0006\"], expected: {{ WK: \"{}\" }}, user_pin: \"{pin}\" }}\n",
            &OLD[..32]
        )
    };
    format!(
        "{}opencryptoki:\n{}{}",
        world_yaml(true),
        token(3, PIN_3),
        token(4, PIN_4)
    )
}

/// The harness's group with the tokens declared and `pins` under `opencryptoki_user_pins:`.
pub(crate) fn world_with_pins(pins: &str) -> World {
    let group = format!(
        "{}  - opencryptoki: tokens\nopencryptoki_user_pins:\n{pins}",
        ep11_group()
    );
    World::with(&tokens_world(), &group, "EP11", NEW)
}

/// Slot 3's PIN from an environment variable, slot 4's from a file.
fn world_with_both_sources() -> World {
    let mut world = world_with_pins(
        "  - { slot: 3, env: MKPLAN_TEST_SLOT3_PIN }\n  - { slot: 4, file: keys/slot4.pin }\n",
    );
    std::fs::write(world.root.join("keys/slot4.pin"), format!("{PIN_4}\n")).unwrap();
    world.env.push(("MKPLAN_TEST_SLOT3_PIN", PIN_3.into()));
    world
}

/// Every token config's EXPECTED_WKVP names the new key, as the operator sets it after the
/// set and before `finalize`.
pub(crate) fn pin_the_new_key_in_the_configs(world: &World) {
    for slot in [3, 4] {
        let path = world
            .root
            .join(format!("w/opencryptoki/ep11tok{slot}.conf"));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace(&OLD[..32], &NEW[..32])).unwrap();
    }
}

/// Every file below `folder`, as text.
pub(crate) fn all_text_below(folder: &std::path::Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&all_text_below(&path));
        } else {
            text.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    text
}

#[test]
fn zcrypt_pins_each_prompt_is_answered_from_its_slots_source_and_no_pin_is_ever_shown() {
    let world = world_with_both_sources();
    let plan = world.run(&["plan", "group.yaml", "--json"]);
    let text_plan = world.run(&["plan", "group.yaml"]);
    let saved = world.run(&["plan", "group.yaml", "--out", "saved.plan"]);
    assert!(saved.status.success());
    // finalize waits for the configs to name the new key: the first apply stops there.
    let (code, first) = world.apply();
    assert_eq!(code, Some(1), "{first}");
    assert!(
        first.contains(
            "stage_reencipher: pkcshsm_mk_change reencipher --apqns 03.0006,04.0006 --ep11-wkvp"
        ) && first.contains("EXPECTED_"),
        "{first}"
    );
    world.assert_no_incidents();
    pin_the_new_key_in_the_configs(&world);
    let (code, second) = world.apply();
    let finalized = second.contains("pkcshsm_mk_change finalize --id");
    assert!(code == Some(0) && finalized, "{second}");
    world.assert_nothing_left();
    let mut everything = format!("{first}{second}");
    for out in [&plan, &text_plan, &saved] {
        everything.push_str(&String::from_utf8_lossy(&out.stdout));
        everything.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    everything.push_str(&String::from_utf8_lossy(
        &std::fs::read(world.root.join("saved.plan")).unwrap(),
    ));
    everything.push_str(&all_text_below(&world.root.join("state")));
    let journal = all_text_below(&world.root.join("state"));
    assert!(
        journal.contains("pkcshsm_mk_change reencipher"),
        "{journal}"
    );
    for pin in [PIN_3, PIN_4] {
        assert!(!everything.contains(pin), "PIN {pin} shown: {everything}");
    }
}

#[test]
fn zcrypt_pins_a_missing_source_stops_the_apply_before_anything_is_done() {
    let world = world_with_pins(
        "  - { slot: 3, env: MKPLAN_TEST_UNSET_PIN }\n  - { slot: 4, file: keys/slot4.pin }\n",
    );
    let before = std::fs::read(world.root.join("w/world.json")).unwrap();
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the USER PIN of slot 3: environment variable MKPLAN_TEST_UNSET_PIN is not set"
        ) && stderr.contains("Nothing was done")
            && !stderr.contains("Ceremony step"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(world.root.join("w/world.json")).unwrap(),
        before
    );
    let journaled = std::fs::read_dir(world.root.join("state"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".jsonl"));
    assert!(!journaled, "a journal was begun");
    // No source at all for a group with tokens: the same, naming the setting.
    let none = World::with(
        &tokens_world(),
        &format!("{}  - opencryptoki: tokens\n", ep11_group()),
        "EP11",
        NEW,
    );
    let (code, stderr) = none.apply();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("names no PIN source") && stderr.contains("opencryptoki_user_pins:"),
        "{stderr}"
    );
}

#[test]
fn zcrypt_pins_a_wrong_pin_fails_the_login_with_nothing_changed_and_is_not_shown() {
    let mut world = world_with_both_sources();
    let wrong = "not-the-pin-55aa";
    world.env = vec![("MKPLAN_TEST_SLOT3_PIN", wrong.into())];
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("Error logging in for slot 3: 0xA0 (CKR_PIN_INCORRECT)")
            && !stderr.contains(wrong),
        "{stderr}"
    );
    let truth: serde_json::Value = serde_json::from_slice(&world.truth()).unwrap();
    assert_eq!(
        truth["operations"],
        serde_json::json!([]),
        "an operation was opened"
    );
    world.assert_no_incidents();
    // A slot the file names no source for, whose token config mkplan reads: the apply
    // stops before anything is done, naming it.
    let mut world = world_with_pins("  - { slot: 3, env: MKPLAN_TEST_SLOT3_PIN }\n");
    world.env.push(("MKPLAN_TEST_SLOT3_PIN", PIN_3.into()));
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("so pkcshsm_mk_change will ask for its USER PIN, and the group file names no source for slot 4")
            && stderr.contains("Nothing was done"),
        "{stderr}"
    );
    world.assert_no_incidents();
}

#[test]
fn zcrypt_pins_a_pin_written_in_the_group_file_is_refused_without_echoing_it() {
    let world = world_with_pins("  - { slot: 3, pin: \"s3cr3t-literal-1\" }\n");
    let out = world.run(&["validate", "group.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("never write a PIN in the group file")
            && !stderr.contains("s3cr3t-literal-1"),
        "{stderr}"
    );
}

/// A PIN read from the environment, and the other variables that hold secrets (the
/// database's password, the `sim serve` token, the IBM Cloud credentials, any other name), are not passed on to the tools mkplan runs
/// (adversary round 6, S2): every zkey, zkey-cryptsetup and pkcshsm_mk_change used to inherit
/// them, where a tool that logs its environment or a reader of `/proc/PID/environ` found them.
/// A PIN written where its file's path belongs (round 7, S3's residue): placed, never shown.
/// A path that names its folder is shown, as the usual mistake.
#[test]
fn zcrypt_pins_a_pin_written_as_a_file_name_is_placed_not_shown() {
    let world = world_with_pins("  - { slot: 3, file: s3cr3t-literal-2 }\n");
    for args in [&["validate", "group.yaml"][..], &["plan", "group.yaml"]] {
        let out = world.run(args);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(out.status.code(), Some(0), "{args:?}: {said}");
        assert!(
            said.contains("group.yaml:") && said.contains("its value is not shown"),
            "{args:?}: {said}"
        );
        assert!(!said.contains("s3cr3t-literal-2"), "{args:?}: {said}");
    }
    let world = world_with_pins("  - { slot: 3, file: keys/slot3.pin.missing }\n");
    let out = world.run(&["validate", "group.yaml"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("keys/slot3.pin.missing"), "{said}");
}

#[test]
fn zcrypt_pins_no_tool_is_given_a_variable_that_holds_a_secret() {
    use std::os::unix::fs::PermissionsExt;
    let mut world = world_with_both_sources();
    world.env.push(("PGPASSWORD", "pg-secret-5a1e".into()));
    world.env.push(("MKPLAN_TOKEN", "token-secret-9c2d".into()));
    // The IBM Cloud credentials of the HPCS backends, in the same shell (round 7, S4).
    world
        .env
        .push(("IBMCLOUD_API_KEY", "token-secret-apikey".into()));
    world
        .env
        .push(("IBMCLOUD_IAM_TOKEN", "token-secret-iam".into()));
    world
        .env
        .push(("MKPLAN_SIM_TOKENS", "token-secret-sim".into()));
    // Any name at all: a key part's password, a signing service's token (round 8, S1). Tools
    // get an allow list of mkplan's variables, never the rest.
    world
        .env
        .push(("MKPLAN_PART1_PASSWORD", "token-secret-part".into()));
    world
        .env
        .push(("BOB_SIGNSERV_TOKEN", "token-secret-sign".into()));
    // Another group's PIN, under openCryptoki's own prefix (round 9, S1).
    world
        .env
        .push(("OCK_SLOT4_USER_PIN", "token-secret-ock4".into()));
    let wrap = world.root.join("wrap");
    std::fs::create_dir_all(&wrap).unwrap();
    let log = wrap.join("environments.log");
    for tool in ["zkey", "zkey-cryptsetup", "pkcshsm_mk_change"] {
        let script = format!(
            "#!/bin/sh\necho \"{tool} $1 $(env | grep -c -e '{PIN_3}' -e pg-secret-5a1e -e token-secret-)\" >> '{log}'\nexec '{real}' \"$@\"\n",
            log = log.display(),
            real = world.root.join("w/bin").join(tool).display(),
        );
        std::fs::write(wrap.join(tool), script).unwrap();
        std::fs::set_permissions(wrap.join(tool), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (code, first) = world.apply();
    assert_eq!(code, Some(1), "{first}");
    assert!(first.contains("pkcshsm_mk_change reencipher"), "{first}");
    let runs = std::fs::read_to_string(&log).unwrap();
    assert!(
        runs.lines().count() > 3
            && [
                "zkey list",
                "zkey reencipher",
                "pkcshsm_mk_change reencipher"
            ]
            .iter()
            .all(|tool| runs.contains(tool)),
        "{runs}"
    );
    assert!(runs.lines().all(|line| line.ends_with(" 0")), "{runs}");
    world.assert_no_incidents();
}
