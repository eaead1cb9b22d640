//! Regressions from the sixth adversarial review (repro6 Z3b, Z3, Z2, Z2b, and the CCA ASYM
//! note): openCryptoki tokens lost with mkplan ending exit 0, because every token of a group
//! was one aggregate store and any open `pkcshsm_mk_change` operation on one of the group's
//! APQNs was taken as the re-encipherment of every token and type. Now an operation counts
//! only for the slots it lists and the types it names; a token or type it leaves out is a
//! refusal (exit 3) that names the operation and what settles it; a group file retargeted
//! mid-change is refused; and (since repro7z) a CCA token has no ASYM objects. Each
//! test runs the binary on the fake platform and ends with the world recording no incident.

use crate::cases::zcrypt::{NEW, OLD, Operator, World, ep11_group, world_yaml};
use crate::cases::zcrypt_pins::PIN_3;

/// EP11 token slots, each `(slot, APQNs)`, under the harness's WK `OLD`, all with `PIN_3`.
fn ep11_tokens(slots: &[(u32, &str)]) -> String {
    let mut text = String::from("opencryptoki:\n");
    for (slot, apqns) in slots {
        text.push_str(&format!(
            "  - {{ slot: {slot}, type: ep11, apqns: [{apqns}], expected: {{ WK: \"{}\" }}, user_pin: \"{PIN_3}\" }}\n",
            &OLD[..32]
        ));
    }
    text
}

/// The harness's EP11 world and group with the tokens `slots` declared, a PIN source each.
pub(crate) fn ep11_world_with_tokens(slots: &[(u32, &str)]) -> World {
    let pins: String = slots
        .iter()
        .map(|(slot, _)| format!("  - {{ slot: {slot}, file: keys/slot3.pin }}\n"))
        .collect();
    let group = format!(
        "{}  - opencryptoki: tokens\nopencryptoki_user_pins:\n{pins}",
        ep11_group()
    );
    let world = World::with(
        &format!("{}{}", world_yaml(true), ep11_tokens(slots)),
        &group,
        "EP11",
        NEW,
    );
    std::fs::write(world.root.join("keys/slot3.pin"), format!("{PIN_3}\n")).unwrap();
    world
}

/// `pkcshsm_mk_change ARGS` run by hand, `PIN_3` answering each slot's prompt; its stdout.
pub(crate) fn ock_by_hand(world: &World, args: &[&str], slots: usize) -> String {
    let out = std::process::Command::new(world.root.join("w/bin/pkcshsm_mk_change"))
        .current_dir(&world.root)
        .env("SYSFS_ROOT", world.root.join("w/sys"))
        .env("ZKEY_REPOSITORY", world.root.join("w/zkey"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let answers = format!("{PIN_3}\n").repeat(slots);
            child.stdin.take().unwrap().write_all(answers.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pkcshsm_mk_change {args:?}: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

/// The id of the one open `pkcshsm_mk_change` operation.
pub(crate) fn open_operation(world: &World) -> String {
    let listed = ock_by_hand(world, &["list"], 0);
    let id = listed
        .lines()
        .find_map(|l| l.strip_prefix("Operation: "))
        .unwrap_or_else(|| panic!("no operation open: {listed}"));
    id.trim().to_string()
}

/// Every EP11 token config pins `vp` (as the procedure asks after the set, before finalize).
pub(crate) fn pin_ep11_configs(world: &World, vp: &str) {
    for entry in std::fs::read_dir(world.root.join("w/opencryptoki")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("ep11tok") {
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, text.replace(&OLD[..32], &vp[..32])).unwrap();
        }
    }
}

/// An apply whose operator pins the new key in the token configs at the first set.
pub(crate) fn apply_pinning_at_the_set(world: &World, pin: impl Fn()) -> String {
    let (code, stderr) = world.apply_as(|action, _| {
        if action == "set_immediate" {
            pin();
        }
        Operator::Performs
    });
    assert_eq!(code, Some(0), "{stderr}");
    world.assert_no_incidents();
    stderr
}

/// What the world's token of `slot` has its objects under, by type.
pub(crate) fn token_objects(world: &World, slot: u64) -> serde_json::Value {
    let truth: serde_json::Value = serde_json::from_slice(&world.truth()).unwrap();
    truth["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["slot"] == slot)
        .unwrap()["objects"]
        .clone()
}

/// Slot `slot`'s WK objects are under `vp`.
pub(crate) fn assert_wk_objects_under(world: &World, slot: u64, vp: &str) {
    let objects = token_objects(world, slot);
    assert!(
        objects["WK"].as_str().unwrap().starts_with(&vp[..32]),
        "slot {slot}: {objects}"
    );
}

/// Z3b. mkplan staged the group's tokens (slot 3), the operator stopped at the set, and then
/// slot 7's token was created on the same APQNs. The open operation used to be taken as its
/// staged copy, and the set lost its objects. Now the plan is refused until the operation is
/// canceled; mkplan then stages both tokens in one operation.
#[test]
fn adversary6_z3b_a_token_created_mid_change_is_refused_until_the_operation_is_closed() {
    let world = ep11_world_with_tokens(&[(3, "\"03.0006\", \"04.0006\"")]);
    world.apply_until_the_first_set();
    let id = open_operation(&world);
    // An application team creates slot 7 on the group's APQNs, its objects under CURRENT.
    let mut truth: serde_json::Value = serde_json::from_slice(&world.truth()).unwrap();
    let mut token = truth["tokens"][0].clone();
    token["slot"] = 7.into();
    token["staged"] = serde_json::json!({});
    truth["tokens"].as_array_mut().unwrap().push(token);
    std::fs::write(world.root.join("w/world.json"), truth.to_string()).unwrap();
    let ock = world.root.join("w/opencryptoki");
    let mut slots = std::fs::read_to_string(ock.join("opencryptoki.conf")).unwrap();
    let without_slot_7 = slots.clone();
    slots.push_str(
        "\nslot 7\n{\n    stdll = libpkcs11_ep11.so\n    confname = \"ep11tok7.conf\"\n}\n",
    );
    std::fs::write(ock.join("opencryptoki.conf"), &slots).unwrap();
    std::fs::copy(ock.join("ep11tok3.conf"), ock.join("ep11tok7.conf")).unwrap();
    let group = std::fs::read_to_string(world.root.join("group.yaml")).unwrap();
    std::fs::write(
        world.root.join("group.yaml"),
        format!("{group}  - {{ slot: 7, file: keys/slot3.pin }}\n"),
    )
    .unwrap();
    world.assert_refused(&[
        "refused by pre-check `opencryptoki_operation_covers`",
        &format!("operation {id}"),
        "slot 7's token",
        "not among the operation's affected slots",
        &format!("pkcshsm_mk_change cancel --id {id}"),
        "take slot 7 out of opencryptoki.conf",
    ]);
    // openCryptoki refuses the cancel while slot 7 is configured (the slots it counts
    // changed since the operation began): the advice takes it out for the cancel.
    let out = std::process::Command::new(world.root.join("w/bin/pkcshsm_mk_change"))
        .env("SYSFS_ROOT", world.root.join("w/sys"))
        .args(["cancel", "--id", &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("list of slots affected"),
        "{out:?}"
    );
    std::fs::write(ock.join("opencryptoki.conf"), &without_slot_7).unwrap();
    ock_by_hand(&world, &["cancel", "--id", &id], 1);
    std::fs::write(ock.join("opencryptoki.conf"), &slots).unwrap();
    let stderr = apply_pinning_at_the_set(&world, || pin_ep11_configs(&world, NEW));
    assert!(stderr.contains("pkcshsm_mk_change finalize"), "{stderr}");
    world.assert_converged();
    for slot in [3, 7] {
        let objects = token_objects(&world, slot);
        assert!(
            objects["WK"].as_str().unwrap().starts_with(&NEW[..32]),
            "slot {slot}: {objects}"
        );
    }
}

/// Z3. Slot 5's owners re-enciphered their token by hand on 04.0006 only; the group's other
/// token, slot 3 on 03.0006, is not among that operation's slots. It used to be taken as the
/// operation of every token, and the set lost slot 3's objects.
#[test]
fn adversary6_z3_an_operation_for_one_token_is_not_taken_for_the_others() {
    let world = ep11_world_with_tokens(&[(3, "\"03.0006\""), (5, "\"04.0006\"")]);
    world.tke_with("load", "03.0006,04.0006", Some(NEW));
    world.tke_with("commit", "03.0006,04.0006", None);
    let args = [
        "reencipher",
        "--apqns",
        "04.0006",
        "--ep11-wkvp",
        &NEW[..32],
    ];
    ock_by_hand(&world, &args, 1);
    let id = open_operation(&world);
    let said = world.assert_refused(&[
        "refused by pre-check `opencryptoki_operation_covers`",
        &format!("operation {id} (APQNs 04.0006;"),
        "affected slots 5",
        "slot 3's token",
        "not among the operation's affected slots",
    ]);
    assert!(!said.contains("slot 5's token"), "{said}");
    ock_by_hand(&world, &["cancel", "--id", &id], 1);
    let stderr = apply_pinning_at_the_set(&world, || pin_ep11_configs(&world, NEW));
    assert!(
        stderr.contains("pkcshsm_mk_change reencipher --apqns 03.0006,04.0006"),
        "{stderr}"
    );
    world.assert_converged();
}

pub(crate) const CCA_AES: &str = "c1c1c1c1c1c1c1c1";
pub(crate) const CCA_APKA: &str = "d1d1d1d1d1d1d1d1";
pub(crate) const NEW_AES: &str = "e5e5e5e5e5e5e5e5";
pub(crate) const NEW_APKA: &str = "f6f6f6f6f6f6f6f6";

/// Two CCA APQNs (AES, APKA and, as `asym`, ASYM registers), a zkey key under AES, and
/// token slot 4 with SYM, AES and APKA objects (and `asym`'s ASYM ones).
pub(crate) fn cca_world(asym: Option<&str>) -> String {
    let asym_register = asym.map_or(String::new(), |vp| {
        format!("        ASYM: {{ current: \"{vp}\" }}\n")
    });
    let card = |card: &str| {
        format!(
            "  - card: \"{card}\"\n    type: CEX7C\n    serialnr: \"93AAC0{card}\"\n    domains:\n      - domain: \"0006\"\n        AES: {{ current: \"{CCA_AES}\", old: \"c0c0c0c0c0c0c0c0\" }}\n        APKA: {{ current: \"{CCA_APKA}\", old: \"d0d0d0d0d0d0d0d0\" }}\n        SYM: {{ current: \"7171717171717171\" }}\n{asym_register}"
        )
    };
    let asym_objects = asym.map_or(String::new(), |vp| format!(", ASYM: \"{vp}\""));
    format!(
        "latency_ms: 0\ncards:\n{}{}zkey:\n  - name: db-data\n    key_type: CCA-AESDATA\n    apqns: [\"05.0006\", \"06.0006\"]\n    mkvp: \"{CCA_AES}\"\nopencryptoki:\n  - {{ slot: 4, type: cca, apqns: [\"05.0006\", \"06.0006\"], expected: {{ SYM: \"7171717171717171\", AES: \"{CCA_AES}\", APKA: \"{CCA_APKA}\"{asym_objects} }}, user_pin: \"{PIN_3}\" }}\n",
        card("05"),
        card("06")
    )
}

/// A CCA group on the world's two APQNs changing `master_keys` (YAML list lines).
pub(crate) fn cca_group(name: &str, master_keys: &str) -> String {
    format!(
        "domain_group: {name}
version: 1
backend: zcrypt:w/sys
apqns: [05.0006, 06.0006]
master_keys:
{master_keys}zkey_repository: w/zkey
opencryptoki_config: w/opencryptoki
stores:
  - zkey_keys: associated
  - opencryptoki: tokens
opencryptoki_user_pins:
  - {{ slot: 4, file: keys/slot3.pin }}
"
    )
}

pub(crate) fn aes_line() -> String {
    format!("  - {{ type: AES, verification_pattern: \"{NEW_AES}\" }}\n")
}

pub(crate) fn apka_line() -> String {
    format!("  - {{ type: APKA, verification_pattern: \"{NEW_APKA}\" }}\n")
}

/// The CCA world with group.yaml changing AES, and slot 4's PIN beside it.
pub(crate) fn cca_aes_world() -> World {
    let world = World::with(
        &cca_world(None),
        &cca_group("ledger-aes", &aes_line()),
        "AES",
        NEW_AES,
    );
    std::fs::write(world.root.join("keys/slot3.pin"), format!("{PIN_3}\n")).unwrap();
    world
}

/// Slot 4's config pins `from` → `to` (EXPECTED_MKVPS), as the operator sets it.
fn pin_cca_config(world: &World, from: &str, to: &str) {
    let path = world.root.join("w/opencryptoki/ccatok4.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

/// `plan FILE`: exit code and everything it said.
fn plan_of(world: &World, file: &str) -> (Option<i32>, String) {
    let out = world.run(&["plan", file]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), said)
}

/// Z2. Group ledger-aes's AES-only operation is open (its operator stopped at the set) when
/// group ledger-apka, on the same APQNs, plans APKA. The token's APKA objects used to vanish
/// from its plan, and its SETs left them under OLD, then lost them at the next change. Now
/// ledger-apka is refused while the operation is open, and once ledger-aes is done it
/// stages the token's APKA objects itself.
#[test]
fn adversary6_z2_another_groups_operation_does_not_hide_the_tokens_other_types() {
    let world = cca_aes_world();
    std::fs::write(
        world.root.join("apka.yaml"),
        cca_group("ledger-apka", &apka_line()),
    )
    .unwrap();
    world.apply_until_the_first_set();
    let id = open_operation(&world);
    let (code, said) = plan_of(&world, "apka.yaml");
    assert_eq!(code, Some(3), "{said}");
    for needle in [
        "refused by pre-check `opencryptoki_operation_covers`",
        &format!("operation {id}"),
        "slot 4's token",
        "does not re-encipher its APKA objects",
    ] {
        assert!(said.contains(needle), "{needle:?} not in: {said}");
    }
    let args = [
        "apply",
        "apka.yaml",
        "--auto-approve",
        "--verify-timeout-s",
        "20",
    ];
    let (code, stderr) = world.apply_with(&args, |_, _| Operator::Performs);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(!stderr.contains("Ceremony step"), "{stderr}");
    world.assert_no_incidents();
    // ledger-aes finishes; then ledger-apka stages the token's APKA objects.
    apply_pinning_at_the_set(&world, || pin_cca_config(&world, CCA_AES, NEW_AES));
    world.assert_converged();
    let (code, said) = plan_of(&world, "apka.yaml");
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("re-encipher openCryptoki tokens \"05.0006,06.0006\" under the NEW"),
        "{said}"
    );
    assert_eq!(token_objects(&world, 4)["APKA"], CCA_APKA);
}

/// Z2b. The group file gains APKA while its AES change is open (operation staged, set not
/// done). The token's APKA objects used to be left out of the plan; now any edit of the
/// master keys mid-change is refused, naming both sets, until the change is done.
#[test]
fn adversary6_z2b_master_keys_edited_mid_change_are_refused_until_the_change_is_done() {
    let world = cca_aes_world();
    world.apply_until_the_first_set();
    let id = open_operation(&world);
    let aes_only = std::fs::read_to_string(world.root.join("group.yaml")).unwrap();
    let both = cca_group("ledger-aes", &format!("{}{}", aes_line(), apka_line()));
    std::fs::write(world.root.join("group.yaml"), &both).unwrap();
    world.assert_refused(&[
        "refused by pre-check `targets_unchanged`",
        &format!("AES {NEW_AES}, APKA {NEW_APKA} now"),
        &format!("began with AES {NEW_AES}"),
        "APKA added",
        "master_keys back to",
        &format!("pkcshsm_mk_change cancel --id {id}, while no APQN is set"),
    ]);
    let retargeted = cca_group(
        "ledger-aes",
        "  - { type: AES, verification_pattern: \"a5a5a5a5a5a5a5a5\" }\n",
    );
    std::fs::write(world.root.join("group.yaml"), retargeted).unwrap();
    world.assert_refused(&[
        "`targets_unchanged`",
        "AES retargeted from e5e5e5e5e5e5e5e5",
    ]);
    // Back to the keys it began with, the change finishes; then APKA is a change of its own.
    std::fs::write(world.root.join("group.yaml"), aes_only).unwrap();
    apply_pinning_at_the_set(&world, || pin_cca_config(&world, CCA_AES, NEW_AES));
    world.assert_converged();
    std::fs::write(world.root.join("group.yaml"), both).unwrap();
    let (code, said) = plan_of(&world, "group.yaml");
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("openCryptoki tokens"), "{said}");
}

const ASYM_OLD: &str = "a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7";

/// A CCA token's ASYM objects were staged with `--cca-asym-mkvp`; but openCryptoki's CCA
/// token never uses the ASYM master key (it keeps RSA, EC and QSA private keys under APKA,
/// and `cca_mk_change_is_affected` names SYM, AES and APKA only). Now a world file that gives
/// a CCA token ASYM objects is refused, naming the place (repro7z; a CCA group changing ASYM
/// plans no token step: adversary7z).
#[test]
fn adversary6_a_cca_token_with_asym_objects_is_refused_by_the_fake() {
    let said = crate::cases::zcrypt::init_refused(&cca_world(Some(ASYM_OLD)));
    assert!(
        said.contains("opencryptoki slot 4: expected names ASYM, but openCryptoki's CCA token never uses the ASYM master key: it keeps RSA, EC and QSA private keys under APKA"),
        "{said}"
    );
}
