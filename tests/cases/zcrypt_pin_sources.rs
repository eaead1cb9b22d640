//! `validate` and `plan` check the openCryptoki USER PIN sources as `apply` reads them (one
//! rule, `UserPins::read`), through the binary on the fake platform: a variable not set or
//! empty, a file missing or whose first line is empty, and (for `plan`, which reads the
//! machine) a token's slot the group file names no source for are each named with the
//! entry's line, the slot, the source and the fix. `plan` still prints the plan, saves none
//! and exits 1; `validate` exits 1; nothing is touched, and no PIN is ever shown.

use super::zcrypt::{NEW, Operator, World};
use super::zcrypt_pins::{
    PIN_3, PIN_4, all_text_below, pin_the_new_key_in_the_configs, tokens_world, world_with_pins,
};

/// What a command printed, stdout then stderr.
fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `group.yaml:LINE:5:`, the place of the `opencryptoki_user_pins:` entry for `slot`.
fn entry_of(world: &World, slot: u32) -> String {
    let group = std::fs::read_to_string(world.root.join("group.yaml")).unwrap();
    let line = group
        .lines()
        .position(|l| l.contains(&format!("slot: {slot},")))
        .unwrap()
        + 1;
    format!("group.yaml:{line}:5:")
}

/// Nothing was begun: the fake world is as it was and no journal exists.
fn assert_untouched(world: &World, before: &[u8]) {
    assert_eq!(
        std::fs::read(world.root.join("w/world.json")).unwrap(),
        before
    );
    let journal = all_text_below(&world.root.join("state"));
    assert!(
        !journal.contains("zcrypt"),
        "a journal was begun: {journal}"
    );
    world.assert_no_incidents();
}

#[test]
fn zcrypt_pin_sources_plan_and_validate_name_each_source_that_cannot_be_read() {
    let world = world_with_pins(
        "  - { slot: 3, env: MKPLAN_TEST_UNSET_PIN }\n  - { slot: 4, file: keys/slot4.pin }\n",
    );
    let before = std::fs::read(world.root.join("w/world.json")).unwrap();
    let unset = format!(
        "{} the USER PIN of slot 3: environment variable MKPLAN_TEST_UNSET_PIN is not set\n    fix: set MKPLAN_TEST_UNSET_PIN to the token's USER PIN",
        entry_of(&world, 3)
    );
    let missing = format!("{} the USER PIN of slot 4: file ", entry_of(&world, 4));
    let plan = world.run(&["plan", "group.yaml", "--out", "saved.plan"]);
    let text = said(&plan);
    assert_eq!(plan.status.code(), Some(1), "{text}");
    // The plan is shown, and why it cannot be applied; it is not saved.
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("stage_reencipher")
            && text.contains(&unset)
            && text.contains(&missing)
            && text.contains("slot4.pin cannot be read: No such file or directory")
            && text.contains("fix: create it with the token's USER PIN on its first line")
            && text.contains("It was not saved to saved.plan"),
        "{text}"
    );
    assert!(!world.root.join("saved.plan").exists());
    let validate = world.run(&["validate", "group.yaml"]);
    let text = said(&validate);
    assert_eq!(validate.status.code(), Some(1), "{text}");
    assert!(text.contains(&unset) && text.contains(&missing), "{text}");
    let json = world.run(&["plan", "group.yaml", "--json"]);
    assert_eq!(json.status.code(), Some(1), "{}", said(&json));
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&unset) && stderr.contains("Nothing was done"),
        "{stderr}"
    );
    assert_untouched(&world, &before);
}

#[test]
fn zcrypt_pin_sources_an_empty_source_is_named_and_no_pin_is_shown() {
    let mut world = world_with_pins(
        "  - { slot: 3, env: MKPLAN_TEST_SLOT3_PIN }\n  - { slot: 4, file: keys/slot4.pin }\n",
    );
    let before = std::fs::read(world.root.join("w/world.json")).unwrap();
    // The PIN on the second line: the tool reads the first, which is empty.
    std::fs::write(world.root.join("keys/slot4.pin"), format!("\n{PIN_4}\n")).unwrap();
    world.env.push(("MKPLAN_TEST_SLOT3_PIN", PIN_3.into()));
    let mut everything = String::new();
    for args in [
        &["plan", "group.yaml"][..],
        &["plan", "group.yaml", "--json"],
        &["plan", "group.yaml", "--markdown"],
        &["validate", "group.yaml"],
    ] {
        let out = world.run(args);
        let text = said(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(
            text.contains(&format!(
                "{} the USER PIN of slot 4: file ",
                entry_of(&world, 4)
            )) && text.contains("slot4.pin holds an empty PIN")
                && text.contains("fix: write the token's USER PIN on the file's first line")
                && !text.contains("slot 3:"),
            "{args:?}: {text}"
        );
        everything.push_str(&text);
    }
    // An empty variable, and the file fixed.
    std::fs::write(world.root.join("keys/slot4.pin"), format!("{PIN_4}\n")).unwrap();
    world.env = vec![("MKPLAN_TEST_SLOT3_PIN", String::new())];
    let out = world.run(&["plan", "group.yaml"]);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("environment variable MKPLAN_TEST_SLOT3_PIN holds an empty PIN")
            && !text.contains("slot 4:"),
        "{text}"
    );
    everything.push_str(&text);
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(1), "{stderr}");
    everything.push_str(&stderr);
    assert_untouched(&world, &before);
    for pin in [PIN_3, PIN_4] {
        assert!(!everything.contains(pin), "PIN {pin} shown: {everything}");
    }
}

/// The group reads the world's openCryptoki folder, where slots 3 and 4 have tokens on the
/// group's APQNs, and names a source for slot 3 only.
fn world_missing_slot_4() -> World {
    let group = format!(
        "{}  - opencryptoki: tokens\nopencryptoki_user_pins:\n  - {{ slot: 3, env: MKPLAN_TEST_SLOT3_PIN }}\n",
        super::zcrypt::ep11_group()
    );
    let mut world = World::with(&tokens_world(), &group, "EP11", NEW);
    world.env.push(("MKPLAN_TEST_SLOT3_PIN", PIN_3.into()));
    world
}

#[test]
fn zcrypt_pin_sources_plan_names_a_tokens_slot_the_group_file_gives_no_source() {
    let world = world_missing_slot_4();
    let before = std::fs::read(world.root.join("w/world.json")).unwrap();
    let plan = world.run(&["plan", "group.yaml"]);
    let text = said(&plan);
    assert_eq!(plan.status.code(), Some(1), "{text}");
    assert!(
        text.contains("group.yaml: slot 4's token (")
            && text.contains("ep11tok4.conf) uses the group's APQNs, so pkcshsm_mk_change will ask for its USER PIN, and the group file names no source for slot 4")
            && text.contains("fix: add `- {slot: 4, file: PATH}` or `- {slot: 4, env: NAME}` under opencryptoki_user_pins:"),
        "{text}"
    );
    // validate does not read the machine: the source it names is readable.
    let validate = world.run(&["validate", "group.yaml"]);
    assert_eq!(validate.status.code(), Some(0), "{}", said(&validate));
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("no source for slot 4") && !stderr.contains("Ceremony step"),
        "{stderr}"
    );
    assert_untouched(&world, &before);
    // With slot 4's source named, the plan is whole and the change moves both tokens.
    let group = std::fs::read_to_string(world.root.join("group.yaml")).unwrap();
    std::fs::write(
        world.root.join("group.yaml"),
        format!("{group}  - {{ slot: 4, file: keys/slot4.pin }}\n"),
    )
    .unwrap();
    std::fs::write(world.root.join("keys/slot4.pin"), format!("{PIN_4}\n")).unwrap();
    let plan = world.run(&["plan", "group.yaml"]);
    assert_eq!(plan.status.code(), Some(0), "{}", said(&plan));
    let (code, stderr) = world.apply_as(|action, _| {
        if action == "set_immediate" {
            pin_the_new_key_in_the_configs(&world);
        }
        Operator::Performs
    });
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("pkcshsm_mk_change finalize"), "{stderr}");
    world.assert_no_incidents();
    world.assert_converged();
    let shown = format!("{}{stderr}", said(&plan));
    for pin in [PIN_3, PIN_4] {
        assert!(!shown.contains(pin), "PIN {pin} shown: {shown}");
    }
}

/// A PIN written where the variable's name belongs (`env: "87654321"`) is refused with its
/// place, but neither its value nor its line is shown (adversary round 6, S1): it used to be
/// quoted in the message and printed again in the excerpt under it.
#[test]
fn zcrypt_pin_sources_a_pin_written_as_the_variables_name_is_never_shown() {
    let world = world_with_pins(&format!(
        "  - {{ slot: 3, env: \"{PIN_3}\" }}\n  - {{ slot: 4, file: keys/slot4.pin }}\n"
    ));
    let before = std::fs::read(world.root.join("w/world.json")).unwrap();
    for args in [&["validate", "group.yaml"][..], &["plan", "group.yaml"]] {
        let out = world.run(args);
        let text = said(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(
            text.contains(&entry_of(&world, 3).replace(":5:", ":"))
                && text.contains("slot 3: env is not an environment variable name")
                && !text.contains(PIN_3),
            "{args:?}: {text}"
        );
    }
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains(PIN_3), "{stderr}");
    assert_untouched(&world, &before);
}
