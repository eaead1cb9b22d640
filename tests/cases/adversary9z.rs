//! Regressions from the ninth adversarial review, Crypto Express side (repro9z W2, W4, F2):
//! openCryptoki finalizes an operation only while the slots its tokens count are the ones it
//! began with. A token slot taken out after the set made every finalize of mkplan's fail;
//! one created after the set was given advice to cancel, which openCryptoki refuses then.
//! Now both are refused before the finalize with advice that works, and followed, converge
//! with no incident. An operation stuck `Finalizing`, which no command closes, is refused
//! instead of finalized again on every run.

use crate::cases::adversary6::{
    assert_wk_objects_under, ep11_world_with_tokens, open_operation, pin_ep11_configs,
};
use crate::cases::zcrypt::{NEW, World};

const BOTH: &str = "\"03.0006\", \"04.0006\"";

fn slots_file(world: &World) -> std::path::PathBuf {
    world.root.join("w/opencryptoki/opencryptoki.conf")
}

/// `opencryptoki.conf` without slot `slot`'s entry.
fn without_slot(text: &str, slot: u32) -> String {
    let start = text.find(&format!("\nslot {slot}\n")).unwrap();
    let end = start + text[start..].find("}\n").unwrap() + 2;
    format!("{}{}", &text[..start], &text[end..])
}

/// The operator sets every APQN (the apply stopped at the first set) and pins the new key,
/// as the finalize step asks.
fn set_by_hand(world: &World) -> String {
    world.apply_until_the_first_set();
    let id = open_operation(world);
    world.tke_with("set", "03.0006,04.0006", None);
    pin_ep11_configs(world, NEW);
    id
}

/// W2. Slot 7 was staged with slot 3, then decommissioned after the set.
#[test]
fn adversary9z_w2_a_slot_taken_out_after_the_set_is_put_back_for_the_finalize() {
    let world = ep11_world_with_tokens(&[(3, BOTH), (7, BOTH)]);
    let id = set_by_hand(&world);
    let slots = std::fs::read_to_string(slots_file(&world)).unwrap();
    std::fs::write(slots_file(&world), without_slot(&slots, 7)).unwrap();
    world.assert_refused(&[
        "opencryptoki_operation_covers",
        &format!("operation {id} affects slot 7, which opencryptoki.conf no longer configures"),
        "slot 7 back in opencryptoki.conf",
        "mkplan finalizes the operation",
    ]);
    std::fs::write(slots_file(&world), &slots).unwrap();
    world.assert_apply_converges();
    assert_wk_objects_under(&world, 3, NEW);
    assert_wk_objects_under(&world, 7, NEW);
}

/// W4. Slot 7 was created on the group's APQNs after the set: no cancel helps, and the advice
/// takes it out for mkplan's finalize.
#[test]
fn adversary9z_w4_a_token_created_after_the_set_is_taken_out_for_the_finalize() {
    let world = ep11_world_with_tokens(&[(3, BOTH)]);
    let id = set_by_hand(&world);
    let slots = std::fs::read_to_string(slots_file(&world)).unwrap();
    let ock = world.root.join("w/opencryptoki");
    // An application team creates slot 7, its objects under the CURRENT WK (the new one).
    let mut truth: serde_json::Value = serde_json::from_slice(&world.truth()).unwrap();
    let mut token = truth["tokens"][0].clone();
    token["slot"] = 7.into();
    token["objects"] = serde_json::json!({ "WK": NEW });
    token["staged"] = serde_json::json!({});
    truth["tokens"].as_array_mut().unwrap().push(token);
    std::fs::write(world.root.join("w/world.json"), truth.to_string()).unwrap();
    let with_7 = format!(
        "{slots}\nslot 7\n{{\n    stdll = libpkcs11_ep11.so\n    confname = \"ep11tok7.conf\"\n}}\n"
    );
    std::fs::write(slots_file(&world), &with_7).unwrap();
    std::fs::copy(ock.join("ep11tok3.conf"), ock.join("ep11tok7.conf")).unwrap();
    let said = world.assert_refused(&[
        "opencryptoki_operation_covers",
        "slot 7's token",
        "openCryptoki refuses a cancel",
        "Take slot 7 out of opencryptoki.conf",
    ]);
    assert!(
        !said.contains(&format!("`pkcshsm_mk_change cancel --id {id}`")),
        "{said}"
    );
    std::fs::write(slots_file(&world), &slots).unwrap();
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(0), "{stderr}");
    std::fs::write(slots_file(&world), &with_7).unwrap();
    world.assert_converged();
    world.assert_no_incidents();
    assert_wk_objects_under(&world, 3, NEW);
    assert_wk_objects_under(&world, 7, NEW);
}

/// F2. A finalize stopped between its passes leaves the operation `Finalizing`, which
/// pkcshsm_mk_change neither finalizes nor cancels: mkplan used to plan the finalize again
/// on every run; now it is refused, naming the state.
#[test]
fn adversary9z_f2_an_operation_stuck_finalizing_is_refused_not_finalized_forever() {
    let world = ep11_world_with_tokens(&[(3, BOTH)]);
    let id = set_by_hand(&world);
    let mut truth: serde_json::Value = serde_json::from_slice(&world.truth()).unwrap();
    truth["operations"][0]["state"] = "finalizing".into();
    std::fs::write(world.root.join("w/world.json"), truth.to_string()).unwrap();
    world.assert_refused(&[
        "opencryptoki_operation_state",
        &format!("operation {id} on the group's APQNs is in state \"Finalizing\""),
        &format!("pkcshsm_mk_change list --id {id}"),
    ]);
}

/// K1's statement belongs to a CCA group only, and says `none`: anything else is an error at
/// its line, with nothing read from the machine.
#[test]
fn adversary9z_k1_the_asym_keys_statement_is_checked_where_it_is_written() {
    let world = ep11_world_with_tokens(&[(3, BOTH)]);
    let group = std::fs::read_to_string(world.root.join("group.yaml")).unwrap();
    std::fs::write(
        world.root.join("group.yaml"),
        format!("{group}cca_token_asym_keys: none\n"),
    )
    .unwrap();
    let out = world.run(&["validate", "group.yaml"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("cca_token_asym_keys: \"none\" (the group's mode is EP11)")
            && said.contains("group.yaml:"),
        "{said}"
    );
}
