//! Adversarial round 13z, through the binary on the fake platform. Both lost a key because
//! the loss rule counted every register of the group, where zkey (and the card) can use a key
//! only through its associated APQNs:
//! - F1: domain 06.0006's key k06 was left under OLD after another team's SET of 06, and 05,
//!   in the merged group, already had the target as CURRENT; mkplan planned the SET of 06,
//!   which dropped k06's key from its only APQN (05's OLD still held it, which k06 cannot use).
//!   Now `keys_under_old` judges a key by its own APQNs: re-encipher it from OLD first.
//! - F3: 03.0006 set early and k3 (on 03 only) completed by hand; the early-set advice's way
//!   (2), the old key set back on 03, destroyed k3's key. Now the advice names k3 and closes
//!   way (2); and a key whose only APQNs lost its key is `keys_recoverable`'s refusal.
//! - F2: under set_then_from_old, a LUKS2 volume whose key an APQN outside the group holds as
//!   CURRENT: zkey-cryptsetup takes it as under CURRENT and never moves it from OLD, so every
//!   rerun after the SET failed. Now refused before any step (`luks2_volumes`); and
//!   `keys_under_old` names the command of the store's own kind.
//!
//! Round 14z, their neighbours for stores whose APQNs mkplan cannot know (application keys,
//! LUKS2 volumes): F1, an application key under OLD on 06 while 05's CURRENT was already the
//! target, planned into the SET of 06 (now: every APQN whose OLD holds a store's key must have
//! the change's key as CURRENT, or `keys_under_old`); F2 and F3, way (2) of the early-set
//! advice offered while such a store was already under the new key (now closed for them too).
//!
//! Round 15z: F1, a declared LUKS2 volume whose zkey key was associated only with an APQN
//! outside the group was moved by the group, and lost (now `luks2_volumes`); F3, way (2) was
//! still offered for a key completed by hand whose other APQN never held the new key.

use super::zcrypt::{LUKS2_STORE, LUKS2_VOLUME, World};

const E5: &str = "e5e5e5e5e5e5e5e5";
const A1: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const B2: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";

/// Two CCA domains, 05.0006 and 06.0006, both with AES c1 as CURRENT and c0 as OLD, and
/// `zkey` (a world file's `zkey:` block).
fn cca_05_06(zkey: &str) -> String {
    let domain = |card: &str| {
        format!(
            "  - card: \"{card}\"
    type: CEX7C
    serialnr: \"93AAC0{card}\"
    domains:
      - domain: \"0006\"
        AES: {{current: \"c1c1c1c1c1c1c1c1\", old: \"c0c0c0c0c0c0c0c0\"}}
"
        )
    };
    format!(
        "latency_ms: 0\ncards:\n{}{}{zkey}",
        domain("05"),
        domain("06")
    )
}

/// The group `ledger` on `apqns`, AES to e5 under set_then_from_old, with `more_stores`.
fn ledger(apqns: &str, more_stores: &str) -> String {
    format!(
        "domain_group: ledger
version: 1
backend: zcrypt:w/sys
apqns: {apqns}
procedure: set_then_from_old
master_keys:
  - {{type: AES, verification_pattern: \"{E5}\"}}
zkey_repository: w/zkey
opencryptoki_config: w/opencryptoki
stores:
  - zkey_keys: associated
{more_stores}"
    )
}

#[test]
fn adversary13z_f1_a_key_under_old_on_its_only_apqn_is_moved_before_that_apqn_is_set() {
    let world = cca_05_06(
        "zkey:
  - {name: k05, key_type: CCA-AESDATA, apqns: [\"05.0006\"], mkvp: \"c1c1c1c1c1c1c1c1\"}
  - {name: k06, key_type: CCA-AESDATA, apqns: [\"06.0006\"], mkvp: \"c1c1c1c1c1c1c1c1\"}
",
    );
    let group = ledger("[05.0006, 06.0006]", "");
    let world = World::with(&world, &group, "AES", E5);
    // Team 1 moved 05 to e5 and k05 from OLD; team 2 moved 06 to d4 and left k06 under OLD.
    world.tke_with("load", "05.0006", Some(E5));
    world.tke_with("set", "05.0006", None);
    world.tool("zkey", &["reencipher", "--from-old", "--name", "k05"]);
    world.tke_with("load", "06.0006", Some("d4d4d4d4d4d4d4d4"));
    world.tke_with("set", "06.0006", None);
    // The registers aligned the obvious way: e5 in 06's NEW.
    world.tke_with("load", "06.0006", Some(E5));
    world.assert_refused(&["`keys_under_old`", "\"k06\"", "zkey reencipher --from-old"]);
    // Moved from OLD as the refusal says, the key is under d4, which 06's SET keeps as OLD:
    // the change goes on without a loss.
    world.tool("zkey", &["reencipher", "--from-old", "--name", "k06"]);
    let out = world.run(&["plan", "group.yaml"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(3), "{said}");
    world.assert_no_incidents();
}

#[test]
fn adversary13z_f3_the_early_set_advice_never_sets_the_old_key_over_a_key_only_that_apqn_uses() {
    let world = format!(
        "latency_ms: 0
cards:
  - {{card: \"03\", type: CEX8P, serialnr: \"93AABC0300000001\", domains: [{{domain: \"0006\", WK: {{current: \"{A1}\"}}}}]}}
  - {{card: \"04\", type: CEX8P, serialnr: \"93AABC0400000002\", domains: [{{domain: \"0006\", WK: {{current: \"{A1}\"}}}}]}}
zkey:
  - {{name: k3, key_type: EP11-AES, apqns: [\"03.0006\"], mkvp: \"{a1}\"}}
  - {{name: k34, key_type: EP11-AES, apqns: [\"03.0006\", \"04.0006\"], mkvp: \"{a1}\"}}
opencryptoki:
  - {{slot: 3, type: ep11, apqns: [\"03.0006\", \"04.0006\"], expected: {{WK: \"{a1}\"}}, user_pin: \"87654321\"}}
",
        a1 = &A1[..32]
    );
    let group = payroll(
        "  - opencryptoki: tokens
opencryptoki_user_pins:
  - {slot: 3, file: slot3.pin}
",
    );
    let world = World::with(&world, &group, "WK", B2);
    std::fs::write(world.root.join("slot3.pin"), "87654321\n").unwrap();
    world.tke_with("load", "03.0006,04.0006", Some(B2));
    world.tke_with("commit", "03.0006,04.0006", None);
    world.tool(
        "zkey",
        &["reencipher", "--to-new", "--staged", "--name", "k3"],
    );
    world.tke_with("set", "03.0006", None);
    world.tool("zkey", &["reencipher", "--complete", "--name", "k3"]);
    let said = world.assert_refused(&[
        "`stores_observable`",
        "\"k34\"",
        "\"k3\"",
        "so do not",
        "pkcsep11_migrate",
    ]);
    assert!(!said.contains("(2)"), "way (2) offered: {said}");
    // Had the operator set the old key back on 03 all the same, k3 is lost, and the plan
    // says so instead of planning around it.
    world.tke_with("load", "03.0006", Some(A1));
    world.tke_with("commit", "03.0006", None);
    world.tke_with("set", "03.0006", None);
    let out = world.run(&["plan", "group.yaml"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(
        said.contains("`keys_recoverable`") && said.contains("\"k3\""),
        "{said}"
    );
}

#[test]
fn adversary13z_f2_a_volume_another_domain_holds_as_current_cannot_move_from_old_and_is_refused() {
    let world = cca_05_06(&format!(
        "zkey:
  - name: db-data
    key_type: CCA-AESDATA
    apqns: [\"05.0006\"]
    mkvp: \"c1c1c1c1c1c1c1c1\"
{LUKS2_VOLUME}"
    ));
    let group = ledger("[05.0006]", LUKS2_STORE);
    let world = World::with(&world, &group, "AES", E5);
    world.assert_refused(&[
        "`luks2_volumes`",
        "APQN 06.0006, outside the group",
        "would not move the volume from OLD",
        "reencipher_then_set",
    ]);
    // Staged before the set instead, the volume moves through the group's own APQN.
    world.edit_group("procedure: set_then_from_old\n", "");
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(0), "{stderr}");
    world.assert_no_incidents();
    world.assert_plan_empty();
}

/// An application store line of a group file, driven by the fake's `appkey`.
fn application(name: &str) -> String {
    format!(
        "  - application: {{name: {name}, check: [appkey, mkvps, {name}], stage: [appkey, reencipher, {name}, --to-new], complete: [appkey, reencipher, {name}, --from-old]}}\n"
    )
}

#[test]
fn adversary14z_f1_an_application_key_under_old_where_another_key_was_set_is_refused() {
    let world = cca_05_06(
        "applications:
  - {name: app05, type: AES, apqns: [\"05.0006\"], mkvp: \"c1c1c1c1c1c1c1c1\"}
  - {name: app06, type: AES, apqns: [\"06.0006\"], mkvp: \"c1c1c1c1c1c1c1c1\"}
",
    );
    let group = ledger(
        "[05.0006, 06.0006]",
        &(application("app05") + &application("app06")),
    )
    .replace("  - zkey_keys: associated\n", "");
    let world = World::with(&world, &group, "AES", E5);
    world.tke_with("load", "05.0006", Some(E5));
    world.tke_with("set", "05.0006", None);
    world.tool("appkey", &["reencipher", "app05", "--from-old"]);
    world.tke_with("load", "06.0006", Some("d4d4d4d4d4d4d4d4"));
    world.tke_with("set", "06.0006", None);
    world.tke_with("load", "06.0006", Some(E5));
    world.assert_refused(&[
        "`keys_under_old`",
        "application key \"app06\"",
        "the application's own re-encipher command",
    ]);
}

#[test]
fn adversary14z_f2_way_two_is_closed_while_an_application_key_is_already_under_the_new_key() {
    let a1 = &A1[..32];
    let world = format!(
        "latency_ms: 0
cards:
  - {{card: \"03\", type: CEX8P, serialnr: \"93AABC0300000001\", domains: [{{domain: \"0006\", WK: {{current: \"{A1}\"}}}}]}}
  - {{card: \"04\", type: CEX8P, serialnr: \"93AABC0400000002\", domains: [{{domain: \"0006\", WK: {{current: \"{A1}\"}}}}]}}
applications:
  - {{name: app03, type: WK, apqns: [\"03.0006\"], mkvp: \"{a1}\"}}
  - {{name: app04, type: WK, apqns: [\"04.0006\"], mkvp: \"{a1}\"}}
opencryptoki:
  - {{slot: 3, type: ep11, apqns: [\"03.0006\", \"04.0006\"], expected: {{WK: \"{a1}\"}}, user_pin: \"87654321\"}}
"
    );
    let app = |name: &str| {
        format!(
            "  - application: {{name: {name}, check: [appkey, mkvps, {name}], stage: [appkey, reencipher, {name}, --to-new], complete: [appkey, reencipher, {name}, --complete]}}\n"
        )
    };
    let group = format!(
        "domain_group: payroll
version: 1
backend: zcrypt:w/sys
apqns: [03.0006, 04.0006]
master_keys:
  - {{type: WK, verification_pattern: \"{B2}\"}}
zkey_repository: w/zkey
opencryptoki_config: w/opencryptoki
stores:
  - opencryptoki: tokens
{}{}opencryptoki_user_pins:
  - {{slot: 3, file: slot3.pin}}
",
        app("app03"),
        app("app04")
    );
    let world = World::with(&world, &group, "WK", B2);
    std::fs::write(world.root.join("slot3.pin"), "87654321\n").unwrap();
    world.tke_with("load", "03.0006,04.0006", Some(B2));
    world.tke_with("commit", "03.0006,04.0006", None);
    world.tool("appkey", &["reencipher", "app03", "--to-new"]);
    world.tke_with("set", "03.0006", None);
    world.tool("appkey", &["reencipher", "app03", "--complete"]);
    let said = world.assert_refused(&[
        "`stores_observable`",
        "application key \"app04\"",
        "application key \"app03\"",
        "so do not",
    ]);
    assert!(!said.contains("(2)"), "way (2) offered: {said}");
}

/// Three EP11 APQNs, all with WK a1, and `zkey` (a world file's `zkey:` block).
fn ep11_03_04_07(zkey: &str) -> String {
    let card = |card: &str| {
        format!(
            "  - {{card: \"{card}\", type: CEX8P, serialnr: \"93AABC{card}00000001\", domains: [{{domain: \"0006\", WK: {{current: \"{A1}\"}}}}]}}\n"
        )
    };
    format!(
        "latency_ms: 0\ncards:\n{}{}{}{zkey}",
        card("03"),
        card("04"),
        card("07")
    )
}

/// The EP11 group [03.0006, 04.0006] to b2, with `more_stores` after its zkey keys.
fn payroll(more_stores: &str) -> String {
    format!(
        "domain_group: payroll
version: 1
backend: zcrypt:w/sys
apqns: [03.0006, 04.0006]
master_keys:
  - {{type: WK, verification_pattern: \"{B2}\"}}
zkey_repository: w/zkey
opencryptoki_config: w/opencryptoki
stores:
  - zkey_keys: associated
{more_stores}"
    )
}

#[test]
fn adversary15z_f1_a_declared_volume_of_a_key_outside_the_group_is_refused() {
    let a1 = &A1[..32];
    let world = ep11_03_04_07(&format!(
        "zkey:
  - {{name: kA, key_type: EP11-AES, apqns: [\"03.0006\", \"04.0006\"], mkvp: \"{a1}\"}}
  - name: kX
    key_type: EP11-AES
    apqns: [\"07.0006\"]
    mkvp: \"{a1}\"
{}",
        LUKS2_VOLUME
    ));
    let world = World::with(&world, &payroll(LUKS2_STORE), "WK", B2);
    world.assert_refused(&[
        "`luks2_volumes`",
        "belongs to zkey key \"kX\"",
        "07.0006, none of this group's",
    ]);
}

#[test]
fn adversary15z_f3_way_two_is_closed_while_a_completed_keys_other_apqn_never_held_the_new_key() {
    let a1 = &A1[..32];
    let world = ep11_03_04_07(&format!(
        "zkey:
  - {{name: kS, key_type: EP11-AES, apqns: [\"03.0006\", \"04.0006\"], mkvp: \"{a1}\"}}
  - {{name: kO, key_type: EP11-AES, apqns: [\"03.0006\", \"04.0006\"], mkvp: \"{a1}\"}}
"
    ));
    let world = World::with(&world, &payroll(""), "WK", B2);
    world.tke_with("load", "03.0006", Some(B2));
    world.tke_with("commit", "03.0006", None);
    world.tool(
        "zkey",
        &["reencipher", "--to-new", "--staged", "--name", "kS"],
    );
    world.tke_with("set", "03.0006", None);
    world.tool("zkey", &["reencipher", "--complete", "--name", "kS"]);
    let said = world.assert_refused(&["\"kS\"", "so do not"]);
    assert!(!said.contains("(2)"), "way (2) offered: {said}");
}
