//! A CCA change by set, then re-encipher from OLD, of a group with a LUKS2 volume, through
//! the binary on the fake platform: after every APQN is set, mkplan moves the zkey key
//! (`zkey reencipher --from-old`) and the volume's header copy (`zkey-cryptsetup reencipher
//! DEVICE --from-old --in-place --key-file F`). Each mid state plans what remains and
//! converges; each interruption (the operator stopping, the apply killed, the tool killed
//! after its effect or failing) is settled by reading; each refusal names its check. Zero
//! incidents after every apply.

use crate::cases::zcrypt::{LUKS2_STORE, LUKS2_VOLUME, World};
use crate::cases::zcrypt_interruptions::{
    Crashes, assert_each_crash_settled, assert_stop_then_kill_at_each_ceremony_step,
};
use crate::cases::zcrypt_scenarios::{
    CCA_NEW, CCA_OLD, CCA_OLDER, Converges, Refused, assert_each_converges, assert_each_refused,
    cca_texts,
};

const BOTH: &str = "05.0006,06.0006";
/// An AES master key no register of the group holds.
const FOREIGN: &str = "f7f7f7f7f7f7f7f7";

/// The CCA world's key `db-data` with LUKS2 volume /dev/dasdb1 (its header's copy under
/// `header`), `cards` added to the world's, `world_tail` appended to the world file, and the
/// group under `set_then_from_old` declaring the volume when `declared`.
fn world_with(header: &str, cards: &str, world_tail: &str, declared: bool) -> World {
    let (world, group) = cca_texts(CCA_OLD);
    let world = world.replacen("zkey:\n", &format!("{cards}zkey:\n"), 1);
    let volume = LUKS2_VOLUME.replace(" }\n", &format!(", header_mkvp: \"{header}\" }}\n"));
    let group = group.replace("master_keys:", "procedure: set_then_from_old\nmaster_keys:");
    World::with(
        &format!("{world}{volume}{world_tail}"),
        &format!("{group}{}", if declared { LUKS2_STORE } else { "" }),
        "AES",
        CCA_NEW,
    )
}

fn luks2_from_old() -> World {
    world_with(CCA_OLD, "", "", true)
}

/// `luks2_from_old` with a fault armed for the next run of `tool`.
fn with_fault(kind: &str, tool: &str) -> World {
    world_with(
        CCA_OLD,
        "",
        &format!("faults:\n  - {{ kind: {kind}, tool: {tool}, times: 1 }}\n"),
        true,
    )
}

fn loaded_and_set(world: &World, set: &str) {
    world.tke_with("load", BOTH, Some(CCA_NEW));
    world.tke_with("set", set, None);
}

#[test]
fn zcrypt_from_old_with_a_luks2_volume_plans_what_remains_and_converges_from_each_mid_state() {
    assert_each_converges([
        Converges {
            name: "fresh CCA change, set then from OLD, with a LUKS2 volume",
            world: luks2_from_old,
            mid: |_| {},
            steps: vec![
                "load_new_mk@05.0006",
                "load_new_mk@06.0006",
                "set_immediate@05.0006",
                "set_immediate@06.0006",
                "reencipher_from_old:db-data",
                "reencipher_from_old:/dev/dasdb1",
            ],
        },
        Converges {
            name: "set on one APQN only",
            world: luks2_from_old,
            mid: |w| loaded_and_set(w, "05.0006"),
            steps: vec![
                "set_immediate@06.0006",
                "reencipher_from_old:db-data",
                "reencipher_from_old:/dev/dasdb1",
            ],
        },
        Converges {
            name: "set everywhere, the zkey key moved from OLD by hand, the volume not",
            world: luks2_from_old,
            mid: |w| {
                loaded_and_set(w, BOTH);
                w.tool("zkey", &["reencipher", "--from-old", "--name", "db-data"]);
            },
            steps: vec!["reencipher_from_old:/dev/dasdb1"],
        },
        Converges {
            name: "set everywhere, the volume moved from OLD by hand, the zkey key not",
            world: luks2_from_old,
            mid: |w| {
                loaded_and_set(w, BOTH);
                w.cryptsetup(&["reencipher", "/dev/dasdb1", "--from-old"]);
            },
            steps: vec!["reencipher_from_old:db-data"],
        },
    ]);
}

#[test]
fn zcrypt_from_old_the_luks2_step_runs_in_place_with_the_key_file_and_journals_its_outcome() {
    let world = luks2_from_old();
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(0), "{stderr}");
    let key_file = world.root.join("keys/dasdb1.key");
    let command = format!(
        "reencipher_from_old: zkey-cryptsetup reencipher /dev/dasdb1 --from-old --in-place --key-file {}",
        key_file.display()
    );
    assert!(stderr.contains(&command), "{stderr}");
    let journal = std::fs::read_dir(world.root.join("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".jsonl"))
        .unwrap();
    let journal = std::fs::read_to_string(journal).unwrap();
    let lines: Vec<&str> = journal.lines().collect();
    let intent = lines
        .iter()
        .position(|l| l.contains("\"what\":\"zkey-cryptsetup reencipher /dev/dasdb1 --from-old"))
        .expect("the intent is journaled");
    // The intent is synced before the tool runs; the next record is its outcome.
    let outcome = lines[intent + 1];
    assert!(
        outcome.contains("\"record\":\"outcome\"") && outcome.contains("\"result\":\"done\""),
        "{outcome}"
    );
    world.assert_converged();
    world.assert_no_incidents();
}

#[test]
fn zcrypt_from_old_a_stop_or_a_kill_at_every_ceremony_step_is_followed_by_a_rerun_that_converges() {
    let ceremony = [
        "load_new_mk@05.0006",
        "load_new_mk@06.0006",
        "set_immediate@05.0006",
        "set_immediate@06.0006",
    ];
    assert_stop_then_kill_at_each_ceremony_step(&luks2_from_old(), &ceremony);
}

#[test]
fn zcrypt_from_old_tools_killed_after_their_effect_or_failing_are_settled_and_the_change_converges()
{
    assert_each_crash_settled([
        Crashes {
            name: "zkey reencipher --from-old killed after its effect",
            world: || with_fault("crash_after_effect", "zkey reencipher"),
            killed: 0,
            failed: 0,
            signalled: 1,
        },
        Crashes {
            name: "zkey-cryptsetup --from-old killed after its effect",
            world: || with_fault("crash_after_effect", "zkey-cryptsetup reencipher"),
            killed: 0,
            failed: 0,
            signalled: 1,
        },
        Crashes {
            name: "apply killed after zkey-cryptsetup --from-old's effect (outcome lost)",
            world: || with_fault("kill_caller_after_effect", "zkey-cryptsetup reencipher"),
            killed: 1,
            failed: 0,
            signalled: 0,
        },
        Crashes {
            name: "apply killed as zkey-cryptsetup --from-old starts",
            world: || with_fault("kill_caller_before_effect", "zkey-cryptsetup reencipher"),
            killed: 1,
            failed: 0,
            signalled: 0,
        },
        Crashes {
            name: "zkey-cryptsetup --from-old fails once",
            world: || with_fault("fail_before_effect", "zkey-cryptsetup reencipher"),
            killed: 0,
            failed: 1,
            signalled: 0,
        },
    ]);
}

#[test]
fn zcrypt_from_old_refusals_with_a_luks2_volume_name_their_check_and_run_nothing() {
    assert_each_refused([
        Refused {
            name: "a LUKS2 volume the set_then_from_old group file does not declare",
            world: || world_with(CCA_OLD, "", "", false),
            mid: |_| {},
            check: "luks2_volumes",
            names: vec![
                "zkey key \"db-data\" has LUKS2 volume /dev/dasdb1".into(),
                "- luks2_volume: {device: DEVICE, key_file: PATH}".into(),
            ],
        },
        Refused {
            name: "an APQN outside the group whose OLD holds the volume's key, under another CURRENT",
            world: || {
                let card = format!(
                    "  - card: \"07\"\n    type: CEX7C\n    domains:\n      - domain: \"0006\"\n        AES: {{ current: \"{FOREIGN}\", old: \"{CCA_OLD}\" }}\n"
                );
                world_with(CCA_OLD, &card, "", true)
            },
            mid: |_| {},
            check: "luks2_volumes",
            names: vec![
                "APQN 07.0006, outside the group".into(),
                "LUKS2 volume \"/dev/dasdb1\"".into(),
                format!("{CCA_OLD} as OLD and {FOREIGN} as CURRENT"),
            ],
        },
        Refused {
            name: "a LUKS2 volume staged by hand under another key in a set_then_from_old group",
            world: luks2_from_old,
            mid: |w| {
                w.tke_with("load", BOTH, Some(FOREIGN));
                w.cryptsetup(&["reencipher", "/dev/dasdb1", "--to-new", "--staged"]);
                w.tke_with("clear", BOTH, None);
                w.tke_with("load", BOTH, Some(CCA_NEW));
            },
            check: "no_earlier_staged_stores",
            names: vec!["LUKS2 volume \"/dev/dasdb1\"".into(), FOREIGN.into()],
        },
        Refused {
            name: "a LUKS2 volume still under OLD from an earlier change",
            world: || world_with(CCA_OLDER, "", "", true),
            mid: |_| {},
            check: "keys_under_old",
            names: vec!["LUKS2 volume \"/dev/dasdb1\"".into(), CCA_OLDER.into()],
        },
    ]);
}
