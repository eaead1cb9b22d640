//! Regressions from the seventh adversarial review (repro7z F3, F2, E1, E4 and the CCA ASYM
//! note), each against openCryptoki's own sources: a CCA token's config has no allow list (its
//! APQNs come from the CCA library), so mkplan counts a CCA token on every CCA APQN whatever
//! its config says; the CCA token never uses ASYM; `pkcshsm_mk_change list` is read in the
//! layout openCryptoki prints; the fake affects every token on the operation's APQNs for a
//! type its mode uses, as openCryptoki does; and a group declaring tokens where none is plans
//! no token step. Each test runs the binary on the fake platform and ends with the world
//! recording no incident.

use crate::cases::adversary6::{
    self, CCA_AES, CCA_APKA, NEW_AES, NEW_APKA, aes_line, apka_line, token_objects,
};
use crate::cases::zcrypt::{NEW, Operator, World, ep11_group, world_yaml};
use crate::cases::zcrypt_pins::PIN_3;

const ASYM_OLD: &str = "31313131313131313131313131313131";
const ASYM_NEW: &str = "a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9";

/// adversary6's CCA world (05.0006, 06.0006; zkey key db-data; token slot 4 with SYM, AES and
/// APKA objects) with an ASYM register on each APQN, and the tokens `more` (world-file lines).
fn cca_world(more: &str) -> String {
    let sym = "        SYM: { current: \"7171717171717171\" }\n";
    let world = adversary6::cca_world(None);
    assert!(world.contains(sym), "{world}");
    let with_asym = world.replace(
        sym,
        &format!("{sym}        ASYM: {{ current: \"{ASYM_OLD}\" }}\n"),
    );
    format!("{with_asym}{more}")
}

/// adversary6's CCA group changing `master_keys`, with the tokens declared (the PINs of
/// `slots`, from slot 4's file) or, when `slots` is empty, not.
fn cca_group(master_keys: &str, tokens: bool, slots: &[u64]) -> String {
    let group = adversary6::cca_group("ledger-cca", master_keys);
    let declared = "  - opencryptoki: tokens\nopencryptoki_user_pins:\n  - { slot: 4, file: keys/slot3.pin }\n";
    assert!(group.ends_with(declared), "{group}");
    let mut group = group.replace(declared, "");
    if tokens {
        group.push_str("  - opencryptoki: tokens\nopencryptoki_user_pins:\n");
        for slot in slots {
            group.push_str(&format!("  - {{ slot: {slot}, file: keys/slot3.pin }}\n"));
        }
    }
    group
}

/// The CCA world changing AES, the tokens declared when `tokens`, slot 4's PIN beside it.
fn cca_aes_world(more: &str, tokens: bool, slots: &[u64]) -> World {
    let world = World::with(
        &cca_world(more),
        &cca_group(&aes_line(), tokens, slots),
        "AES",
        NEW_AES,
    );
    std::fs::write(world.root.join("keys/slot3.pin"), format!("{PIN_3}\n")).unwrap();
    world
}

/// Every CCA token config pins `to` where it pinned `from`, as the operator does at the set.
fn pin_cca_configs(world: &World, from: &str, to: &str) {
    for entry in std::fs::read_dir(world.root.join("w/opencryptoki")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("ccatok")
        {
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, text.replace(from, to)).unwrap();
        }
    }
}

/// An apply whose operator pins `from` → `to` in the CCA token configs at the first set;
/// it converges with no incident. Returns its stderr.
fn apply_pinning(world: &World, from: &str, to: &str) -> String {
    let (code, stderr) = world.apply_as(|action, _| {
        if action == "set_immediate" {
            pin_cca_configs(world, from, to);
        }
        Operator::Performs
    });
    assert_eq!(code, Some(0), "{stderr}");
    world.assert_no_incidents();
    world.assert_converged();
    stderr
}

/// F3. The application team wrote card 07 into slot 4's ccatok4.conf as an `APQN_ALLOWLIST`.
/// openCryptoki's CCA token has no such setting (its APQNs come from the CCA library), and
/// the token stayed on 05.0006 and 06.0006; mkplan believed the list, left the token out of
/// `undeclared_stores`, and two AES changes later its objects were lost with two exit 0s.
/// Now a CCA token counts on every CCA APQN whatever its config says: the group that does not
/// declare the tokens is refused, and the plan says the list is not openCryptoki's.
#[test]
fn adversary7z_f3_a_cca_configs_allow_list_does_not_take_the_token_off_the_group() {
    let world = cca_aes_world("", false, &[]);
    let config = world.root.join("w/opencryptoki/ccatok4.conf");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        !text.contains("APQN_ALLOWLIST"),
        "the fake's CCA config: {text}"
    );
    std::fs::write(&config, format!("APQN_ALLOWLIST\n  7 6\nEND\n{text}")).unwrap();
    world.assert_refused(&[
        "`undeclared_stores`",
        "the openCryptoki token of",
        "ccatok4.conf (add `- opencryptoki: tokens` to stores:)",
        "ccatok4.conf has an APQN_ALLOWLIST, which openCryptoki's CCA token does not have",
    ]);
    assert_eq!(token_objects(&world, 4)["AES"], CCA_AES);
    // Declared: the fake's CCA token, as openCryptoki's, cannot load a config with an allow
    // list, so the staging fails before anything of the token moves.
    std::fs::write(
        world.root.join("group.yaml"),
        cca_group(&aes_line(), true, &[4]),
    )
    .unwrap();
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("unexpected token 'APQN_ALLOWLIST' at line 1"),
        "{stderr}"
    );
    world.assert_no_incidents();
    // The list removed, the token is staged and finalized with the zkey key.
    std::fs::write(&config, text).unwrap();
    let stderr = apply_pinning(&world, CCA_AES, NEW_AES);
    assert!(
        stderr.contains(&format!(
            "pkcshsm_mk_change reencipher --apqns 05.0006,06.0006 --cca-aes-mkvp {NEW_AES}"
        )),
        "{stderr}"
    );
    assert_eq!(token_objects(&world, 4)["AES"], NEW_AES);
}

/// The CCA ASYM note. openCryptoki's CCA token never uses the ASYM master key (it keeps RSA,
/// EC and QSA private keys under APKA, and `cca_mk_change_is_affected` names SYM, AES and
/// APKA only), and `--cca-asym-mkvp` reads 8 bytes where mkplan passed 16. A CCA group
/// changing ASYM with `opencryptoki: tokens` used to stage the tokens with `--cca-asym-mkvp`,
/// which openCryptoki aborts ("No token is affected"), at every run. Now it plans no token
/// step and says why (and the fake refuses a world whose CCA token has ASYM objects:
/// adversary6), once the group file says no token keeps older RSA-CRT keys under ASYM.
#[test]
fn adversary7z_a_cca_group_changing_asym_plans_no_token_step() {
    let group = cca_group(
        &format!("  - {{ type: ASYM, verification_pattern: \"{ASYM_NEW}\" }}\n"),
        true,
        &[4],
    );
    let world = World::with(&cca_world(""), &group, "ASYM", ASYM_NEW);
    std::fs::write(world.root.join("keys/slot3.pin"), format!("{PIN_3}\n")).unwrap();
    // A token of openCryptoki 3.14 or older may keep RSA-CRT keys under ASYM, which no tool
    // moves (repro9z K1): refused until the group file says none is left.
    world.assert_refused(&["opencryptoki_asym_keys", "pkcscca -m oldrsakeys"]);
    std::fs::write(
        world.root.join("group.yaml"),
        format!("{group}cca_token_asym_keys: none\n"),
    )
    .unwrap();
    let out = world.run(&["plan", "group.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("changes only ASYM, which pkcshsm_mk_change moves for no token"),
        "{stderr}"
    );
    assert!(
        !world
            .planned()
            .iter()
            .any(|s| s.contains("05.0006,06.0006")),
        "{:?}",
        world.planned()
    );
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("pkcshsm_mk_change reencipher"), "{stderr}");
    world.assert_no_incidents();
    world.assert_converged();
    assert_eq!(token_objects(&world, 4)["APKA"], CCA_APKA);
}

/// E1. A CCA group changes APKA; slot 8's CCA token, on the same APQNs, holds AES objects
/// only. openCryptoki affects a token for every type its mode uses, whatever objects it
/// holds, and mkplan's model follows it; the fake affected only slot 4, so mkplan refused its
/// own operation for leaving slot 8 out, and the group could never change APKA. Now the
/// fake follows openCryptoki, and the change converges with no incident.
#[test]
fn adversary7z_e1_a_token_without_objects_of_the_changed_type_is_affected_all_the_same() {
    let slot8 = format!(
        "  - {{ slot: 8, type: cca, apqns: [\"05.0006\", \"06.0006\"], expected: {{ AES: \"{CCA_AES}\" }}, user_pin: \"{PIN_3}\" }}\n"
    );
    let world = World::with(
        &cca_world(&slot8),
        &cca_group(&apka_line(), true, &[4, 8]),
        "APKA",
        NEW_APKA,
    );
    std::fs::write(world.root.join("keys/slot3.pin"), format!("{PIN_3}\n")).unwrap();
    let stderr = apply_pinning(&world, CCA_APKA, NEW_APKA);
    assert!(
        stderr.contains(&format!(
            "pkcshsm_mk_change reencipher --apqns 05.0006,06.0006 --cca-apka-mkvp {NEW_APKA}"
        )),
        "{stderr}"
    );
    assert_eq!(token_objects(&world, 4)["APKA"], NEW_APKA);
    assert_eq!(token_objects(&world, 8)["AES"], CCA_AES);
}

/// E4. The example EP11 group declares `opencryptoki: tokens`, but no token uses its APQNs
/// (the last one deleted after the group file was written). The plan used to stage and
/// finalize the tokens anyway (exit 0), and every apply stopped half way, exit 1, after
/// staging the zkey keys: `pkcshsm_mk_change` had nothing to re-encipher. Now the plan has no
/// token step and says why, and the change converges.
#[test]
fn adversary7z_e4_tokens_declared_where_there_are_none_plan_no_token_step() {
    let group = format!(
        "{}  - opencryptoki: tokens\nopencryptoki_user_pins:\n  - {{ slot: 3, file: keys/slot3.pin }}\n",
        ep11_group()
    );
    let world = World::with(&world_yaml(true), &group, "EP11", NEW);
    std::fs::write(world.root.join("keys/slot3.pin"), format!("{PIN_3}\n")).unwrap();
    let out = world.run(&["plan", "group.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("but no token config in") && stderr.contains("puts an openCryptoki EP11 token on its APQNs and no pkcshsm_mk_change operation is open there: nothing to re-encipher, so the plan has no openCryptoki step."),
        "{stderr}"
    );
    let planned = world.planned();
    assert!(
        !planned.iter().any(|s| s.contains("03.0006,04.0006")),
        "{planned:?}"
    );
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("pkcshsm_mk_change reencipher"), "{stderr}");
    world.assert_no_incidents();
    world.assert_converged();
    // A folder that is not there is no evidence that no token exists: refused.
    let elsewhere = group.replace(
        "opencryptoki_config: w/opencryptoki",
        "opencryptoki_config: w/nowhere",
    );
    std::fs::write(world.root.join("group.yaml"), elsewhere).unwrap();
    world.assert_refused(&[
        "`undeclared_stores`",
        "the group declares `opencryptoki: tokens`, but its opencryptoki_config",
        "w/nowhere does not exist",
    ]);
}

/// F2. `pkcshsm_mk_change list` prints openCryptoki's nested layout (`perform_list_cb`), not
/// the single lines mkplan and its fake had invented: with the real tool, every change with
/// tokens stopped after mkplan's own staging. Now the fake prints the real layout, and
/// mkplan reads the open operation from it mid-change and finishes the change.
#[test]
fn adversary7z_f2_the_operation_is_read_in_the_layout_opencryptoki_prints() {
    let world = cca_aes_world("", true, &[4]);
    world.apply_until_the_first_set();
    let out = std::process::Command::new(world.root.join("w/bin/pkcshsm_mk_change"))
        .current_dir(&world.root)
        .env("SYSFS_ROOT", world.root.join("w/sys"))
        .env("ZKEY_REPOSITORY", world.root.join("w/zkey"))
        .arg("list")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{listed}");
    let lines: Vec<&str> = listed.lines().collect();
    assert!(lines[0].starts_with("Operation:       "), "{listed}");
    assert_eq!(
        lines[1..].join("\n"),
        format!(
            "    State:       Key objects have been re-enciphered,
                 new master key(s) can now be set/activated
    APQNs:
        05.0006
        06.0006
    New master key verification patterns:
        Type:    CCA AES
        MKVP:    {}
    Affected slots:
        Slot: 4 Label: token4                          
            Current master key verification patterns:
                Type:    CCA AES
                MKVP:    {}",
            NEW_AES.to_uppercase(),
            CCA_AES.to_uppercase()
        ),
        "{listed}"
    );
    // mkplan reads it: the rest of the change is planned from the open operation.
    let planned = world.planned();
    assert!(
        planned.contains(&"complete_reencipher:05.0006,06.0006".to_string()),
        "{planned:?}"
    );
    assert!(
        !planned.contains(&"stage_reencipher:05.0006,06.0006".to_string()),
        "{planned:?}"
    );
    apply_pinning(&world, CCA_AES, NEW_AES);
    assert_eq!(token_objects(&world, 4)["AES"], NEW_AES);
}
