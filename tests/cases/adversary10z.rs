//! Regressions from the tenth adversarial review, Crypto Express side (repro10z W1, W2).
//!
//! W1: a token that also uses an APQN outside the group (an EP11 allow list naming one,
//! `APQN_ANY` with another EP11 card online, a CCA token with another CCA card) was planned,
//! and the apply stopped half way at `pkcshsm_mk_change reencipher` on every run. Now it is
//! refused before any step, naming the token, the APQNs and both fixes.
//!
//! W2: a set made before the stores were staged was refused with no advice, then with advice
//! ("every APQN's CURRENT register agreeing") whose only forward reading, setting the other
//! APQN, lost every store. Now both refusals name the stores, the APQN that alone still holds
//! their key, say not to set it, and give the ways that keep them; the way back converges.

use crate::cases::adversary6::{
    CCA_AES, NEW_AES, aes_line, apply_pinning_at_the_set, assert_wk_objects_under, cca_aes_world,
    cca_group, cca_world, ep11_world_with_tokens, pin_ep11_configs,
};
use crate::cases::zcrypt::{NEW, OLD, Operator, World, ep11_group, world_yaml};
use crate::cases::zcrypt_pins::PIN_3;

/// EP11 card 02 with the harness's WK, `online` or not.
fn card_02(online: bool) -> String {
    format!(
        "cards:\n  - card: \"02\"\n    type: CEX8P\n    serialnr: \"93AABC0200000009\"\n    online: {online}\n    domains:\n      - domain: \"0006\"\n        WK: {{ current: \"{OLD}\" }}\n"
    )
}

/// The harness's EP11 world plus card 02, token slot 3 on `apqns` (its allow list), and a
/// group on 03.0006, 04.0006 declaring the tokens.
fn ep11_world_with_02(apqns: &str, online: bool) -> World {
    let world = world_yaml(true).replacen("cards:\n", &card_02(online), 1);
    let token = format!(
        "opencryptoki:\n  - {{ slot: 3, type: ep11, apqns: [{apqns}], expected: {{ WK: \"{}\" }}, user_pin: \"{PIN_3}\" }}\n",
        &OLD[..32]
    );
    let group = format!(
        "{}  - opencryptoki: tokens\nopencryptoki_user_pins:\n  - {{ slot: 3, file: keys/slot3.pin }}\n",
        ep11_group()
    );
    let world = World::with(&format!("{world}{token}"), &group, "EP11", NEW);
    std::fs::write(world.root.join("keys/slot3.pin"), format!("{PIN_3}\n")).unwrap();
    world
}

/// The fake ran no tool that changes anything and no ceremony: its history is `init` alone.
fn assert_nothing_ran(world: &World) {
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(world.root.join("w/world.json")).unwrap()).unwrap();
    assert_eq!(truth["history"], serde_json::json!(["init"]), "{truth}");
}

/// An apply whose operator performs every step, pinning the new key at the set, converges.
fn converges(world: &World) {
    apply_pinning_at_the_set(world, || pin_ep11_configs(world, NEW));
    world.assert_converged();
}

fn config_3(world: &World) -> std::path::PathBuf {
    world.root.join("w/opencryptoki/ep11tok3.conf")
}

/// W1, EP11: slot 3's APQN_ALLOWLIST names 02.0006 beside the group's two APQNs.
#[test]
fn adversary10z_w1_an_allow_list_with_an_apqn_outside_the_group_is_refused_before_any_step() {
    let world = ep11_world_with_02("\"02.0006\", \"03.0006\", \"04.0006\"", true);
    world.assert_refused(&[
        "refused by pre-check `token_apqns_in_group`",
        "slot 3's token",
        "uses 02.0006 outside the group: its APQN_ALLOWLIST names 02.0006, 03.0006, 04.0006",
        "Slot N: APQN 02.0006 must be included into this operation.",
        "either the group on every APQN the tokens use (apqns: [02.0006, 03.0006, 04.0006]",
        "narrowed to the group's APQNs (`APQN_ALLOWLIST 3 6  4 6 END`), then pkcsslotd and the applications using slot 3 restarted",
    ]);
    assert_nothing_ran(&world);
    // The first fix: the group on every APQN the token uses.
    world.edit_group(
        "apqns: [03.0006, 04.0006]",
        "apqns: [02.0006, 03.0006, 04.0006]",
    );
    converges(&world);
    assert_wk_objects_under(&world, 3, NEW);
}

/// W1, EP11 with APQN_ANY: every APQN of every online EP11 card counts; an offline card's
/// do not (openCryptoki scans online EP11 cards only).
#[test]
fn adversary10z_w1_apqn_any_counts_every_online_ep11_card() {
    for online in [true, false] {
        let world = ep11_world_with_02("\"03.0006\", \"04.0006\"", online);
        let text = std::fs::read_to_string(config_3(&world)).unwrap();
        let start = text.find("APQN_ALLOWLIST").unwrap();
        let end = start + text[start..].find("END\n").unwrap() + 4;
        let any = format!("{}APQN_ANY\n{}", &text[..start], &text[end..]);
        std::fs::write(config_3(&world), any).unwrap();
        if online {
            world.assert_refused(&[
                "`token_apqns_in_group`",
                "has APQN_ANY (or no APQN_ALLOWLIST), so it uses every APQN of every online EP11 card, 02.0006 outside the group too",
                "(`APQN_ALLOWLIST 3 6  4 6 END` in place of APQN_ANY)",
            ]);
            assert_nothing_ran(&world);
        } else {
            converges(&world);
        }
    }
}

/// W1, CCA: a third CCA card on the machine; the CCA token counts on every CCA APQN.
#[test]
fn adversary10z_w1_a_cca_token_with_another_cca_card_is_refused_before_any_step() {
    let cca = cca_world(None);
    let start = cca.find("  - card: \"06\"").unwrap();
    let end = cca.find("zkey:\n").unwrap();
    let card_07 = cca[start..end].replace("\"06\"", "\"07\"");
    let world_text = cca
        .replacen("zkey:\n", &format!("{card_07}zkey:\n"), 1)
        .replace(
            "apqns: [\"05.0006\", \"06.0006\"], expected",
            "apqns: [\"05.0006\", \"06.0006\", \"07.0006\"], expected",
        );
    let world = World::with(
        &world_text,
        &cca_group("ledger-aes", &aes_line()),
        "AES",
        NEW_AES,
    );
    std::fs::write(world.root.join("keys/slot3.pin"), format!("{PIN_3}\n")).unwrap();
    world.assert_refused(&[
        "`token_apqns_in_group`",
        "slot 4's token",
        "is a CCA token, whose APQNs the CCA library picks",
        "07.0006 outside the group too",
        "apqns: [05.0006, 06.0006, 07.0006]",
        "the CCA cards of 07.0006 offline (`chzcrypt -d CARD`) until the change is done",
    ]);
    assert_nothing_ran(&world);
}

/// W1 with the change under way: the token's allow list grew after the stagings. The group
/// cannot change its APQNs now, so the advice is the token's side; followed, it converges.
#[test]
fn adversary10z_w1_under_way_the_advice_is_the_allow_list() {
    let world = ep11_world_with_02("\"03.0006\", \"04.0006\"", true);
    world.apply_until_the_first_set();
    let text = std::fs::read_to_string(config_3(&world)).unwrap();
    let wider = text.replacen("APQN_ALLOWLIST\n", "APQN_ALLOWLIST\n  2 6\n", 1);
    std::fs::write(config_3(&world), &wider).unwrap();
    let said = world.assert_refused(&[
        "`token_apqns_in_group`",
        "uses 02.0006 outside the group",
        "This change is under way on 03.0006, 04.0006",
        "so the tokens' side must move",
        "`APQN_ALLOWLIST 3 6  4 6 END`",
    ]);
    assert!(!said.contains("either the group on every APQN"), "{said}");
    std::fs::write(config_3(&world), &text).unwrap();
    converges(&world);
    assert_wk_objects_under(&world, 3, NEW);
}

/// W2: 03.0006 set right after its commit, before any staging (04.0006's NEW loaded, not yet
/// committed). Both refusals name the stores, 04.0006 and say not to set it; the way back
/// (the old key into 03.0006 again) converges with no incident.
#[test]
fn adversary10z_w2_an_early_set_names_the_stores_and_the_apqn_not_to_set() {
    let world = ep11_world_with_tokens(&[(3, "\"03.0006\", \"04.0006\"")]);
    let (code, stderr) = world.apply_as(|action, apqn| {
        if action == "commit_new_mk" && apqn == "04.0006" {
            world.tke_with("set", "03.0006", None);
            Operator::Stops
        } else {
            Operator::Performs
        }
    });
    assert_eq!(code, Some(1), "{stderr}");
    let stores = [
        "zkey key \"archive\"",
        "zkey key \"backup\"",
        "openCryptoki tokens \"03.0006,04.0006\" (slot 3's token",
    ];
    let advice = [
        "03.0006 was set to b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2 before the stores were staged",
        "still under a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1 with no copy staged",
        "04.0006 now holds a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1 alone",
        "Do NOT set 04.0006 until those stores are staged through it",
        "`pkcsep11_migrate` through 04.0006",
        "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1 loaded back into 03.0006",
    ];
    let mut needles = vec!["`one_current_mk`", "Evidence that would settle it"];
    needles.extend(stores);
    needles.extend(advice);
    world.assert_refused(&needles);
    // 04.0006 committed: the tokens' refusal gives the same advice, never "agreeing".
    world.tke_with("commit", "04.0006", None);
    let mut needles = vec!["`stores_observable`"];
    needles.extend(stores);
    needles.extend(advice);
    let said = world.assert_refused(&needles);
    assert!(!said.contains("CURRENT register agreeing"), "{said}");
    // The way back: the old key into 03.0006 again, then mkplan's change from the loads.
    world.tke_with("load", "03.0006", Some(OLD));
    world.tke_with("commit", "03.0006", None);
    world.tke_with("set", "03.0006", None);
    converges(&world);
    assert_wk_objects_under(&world, 3, NEW);
}

/// M1: a CCA zkey key left under 06.0006's OLD while 05.0006 is already set: the refusal
/// names the command that moves it. Since round 14z it is `keys_under_old`, before any step
/// is played: 06.0006, whose OLD holds the key, does not have the change's key as CURRENT.
#[test]
fn adversary10z_m1_the_loss_rule_names_the_from_old_move() {
    let card = |card: &str, aes: &str| {
        format!(
            "  - card: \"{card}\"\n    type: CEX7C\n    serialnr: \"93AAC0{card}\"\n    domains:\n      - domain: \"0006\"\n        AES: {aes}\n"
        )
    };
    let world_text = format!(
        "latency_ms: 0\ncards:\n{}{}zkey:\n  - name: db-data\n    key_type: CCA-AESDATA\n    apqns: [\"05.0006\", \"06.0006\"]\n    mkvp: \"c1c1c1c1c1c1c1c1\"\n  - name: old-key\n    key_type: CCA-AESDATA\n    apqns: [\"05.0006\", \"06.0006\"]\n    mkvp: \"c0c0c0c0c0c0c0c0\"\n",
        card(
            "05",
            "{current: \"e5e5e5e5e5e5e5e5\", old: \"c1c1c1c1c1c1c1c1\"}"
        ),
        card(
            "06",
            "{current: \"c1c1c1c1c1c1c1c1\", old: \"c0c0c0c0c0c0c0c0\", new: {full: \"e5e5e5e5e5e5e5e5\"}}"
        ),
    );
    let group = format!(
        "domain_group: ledger-cca\nversion: 1\nbackend: zcrypt:w/sys\napqns: [05.0006, 06.0006]\nprocedure: set_then_from_old\nmaster_keys:\n{}zkey_repository: w/zkey\nopencryptoki_config: w/opencryptoki\nstores:\n  - zkey_keys: associated\n",
        aes_line()
    );
    let world = World::with(&world_text, &group, "AES", NEW_AES);
    world.assert_refused(&[
        "`keys_under_old`",
        "zkey key \"old-key\"",
        "`zkey reencipher --from-old --name old-key`",
    ]);
}

/// W2, CCA: 05.0006 SET before the stores were staged keeps the old AES key in its OLD; the
/// advice says so, not to SET 06.0006 (nor 05.0006 again), and the way back converges.
#[test]
fn adversary10z_w2_an_early_cca_set_names_current_and_old_holders() {
    let world = cca_aes_world();
    let (code, stderr) = world.apply_as(|action, apqn| {
        if action == "load_new_mk" && apqn == "06.0006" {
            world.tke_with("set", "05.0006", None);
            Operator::Stops
        } else {
            Operator::Performs
        }
    });
    assert_eq!(code, Some(1), "{stderr}");
    world.assert_refused(&[
        "`one_current_mk`",
        "05.0006 was SET to e5e5e5e5e5e5e5e5 before the stores were staged",
        "zkey key \"db-data\"",
        "openCryptoki tokens \"05.0006,06.0006\" (slot 4's token",
        "06.0006 holds c1c1c1c1c1c1c1c1 as CURRENT and 05.0006 as OLD (do not SET AES on 05.0006 again",
        "Do not SET 06.0006 until those stores are staged through it",
        "c1c1c1c1c1c1c1c1 loaded back into 05.0006's NEW",
    ]);
    world.tke_with("load", "05.0006", Some(CCA_AES));
    world.tke_with("set", "05.0006", None);
    let config = world.root.join("w/opencryptoki/ccatok4.conf");
    apply_pinning_at_the_set(&world, || {
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text.replace(CCA_AES, NEW_AES)).unwrap();
    });
    world.assert_converged();
}
