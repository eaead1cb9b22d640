//! An openCryptoki operation closed outside mkplan once every APQN is set. openCryptoki lets
//! `pkcshsm_mk_change cancel` through then when the token configs pin no key (the token
//! expects the key its APQNs share), and the cancel keeps the objects under the old WK,
//! which no register holds: lost. A finalize leaves the same trace (no operation open, the
//! APQNs on the new key). mkplan used to take the tokens as finalized and end exit 0; now the
//! plan is refused (exit 3) until the operator attests a finalize from the syslog. Each test
//! runs the binary on the fake platform; the only loss is the colleague's cancel.

use crate::cases::adversary6::{
    assert_wk_objects_under, ep11_world_with_tokens, ock_by_hand, open_operation,
};
use crate::cases::zcrypt::{NEW, World};
use crate::cases::zcrypt_fake::unpin_config;

/// The EP11 world with slot 3's token on both APQNs and its config pinning nothing.
fn unpinned_world() -> World {
    let world = ep11_world_with_tokens(&[(3, "\"03.0006\", \"04.0006\"")]);
    unpin_config(&world.root.join("w/opencryptoki/ep11tok3.conf"));
    world
}

/// mkplan staged the tokens and stopped at the set; an operator set every APQN by hand.
/// The id of the operation mkplan opened.
fn staged_and_set_by_hand() -> (World, String) {
    let world = unpinned_world();
    world.apply_until_the_first_set();
    let id = open_operation(&world);
    world.tke_with("set", "03.0006,04.0006", None);
    (world, id)
}

fn incidents(world: &World) -> String {
    let out = world.run(&["sim", "zcrypt", "incidents", "--world-dir", "w"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused_naming_the_operation(world: &World) {
    for args in [
        &["plan", "group.yaml"][..],
        &["apply", "group.yaml", "--auto-approve"],
    ] {
        let out = world.run(args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {said}");
        for needle in [
            "stores_observable",
            "finalized or canceled outside mkplan",
            "pkcshsm_mk_change reencipher --apqns 03.0006,04.0006",
            "is finalized` (or `is canceled`)",
            "mkplan attest finalized",
        ] {
            assert!(said.contains(needle), "{needle:?} not in: {said}");
        }
        assert!(!said.contains("Ceremony step"), "{said}");
    }
}

/// An unpinned token moves with mkplan's own finalize: its in-flight finalize closes the
/// operation it relied on.
#[test]
fn zcrypt_tokens_unpinned_converge_with_mkplans_own_finalize() {
    let world = unpinned_world();
    let stderr = world.assert_apply_converges();
    assert!(
        stderr.contains("pkcshsm_mk_change finalize --id"),
        "{stderr}"
    );
    assert_wk_objects_under(&world, 3, NEW);
}

/// A colleague canceled the operation after the set (openCryptoki allowed it: no pin). mkplan
/// used to plan the zkey completions and end exit 0, the token's objects lost; now it
/// refuses, and adds no loss of its own.
#[test]
fn zcrypt_tokens_canceled_after_the_set_are_refused_not_taken_as_finalized() {
    let (world, id) = staged_and_set_by_hand();
    ock_by_hand(&world, &["cancel", "--id", &id], 1);
    let lost = incidents(&world);
    assert!(lost.contains("opencryptoki slot 3 WK"), "{lost}");
    refused_naming_the_operation(&world);
    assert_eq!(incidents(&world), lost, "mkplan lost nothing more");
}

/// Finalized by hand: refused the same way (the trace is the same), until the operator
/// attests it from the syslog; then the change completes with no loss. The word is taken
/// only while the journal holds such an operation and none is open.
#[test]
fn zcrypt_tokens_finalized_by_hand_converge_once_attested() {
    let (world, id) = staged_and_set_by_hand();
    let premature = world.run(&[
        "attest",
        "finalized",
        "group.yaml",
        "--evidence",
        "syslog: finalized",
    ]);
    let said = String::from_utf8_lossy(&premature.stderr);
    assert_eq!(premature.status.code(), Some(3), "{said}");
    assert!(
        said.contains(&format!("operation {id} is still open")),
        "{said}"
    );

    ock_by_hand(&world, &["finalize", "--id", &id], 1);
    world.assert_no_incidents();
    refused_naming_the_operation(&world);
    let evidence =
        format!("journalctl: Slot 3: Concurrent HSM master key change operation {id} is finalized");
    let attested = world.run(&["attest", "finalized", "group.yaml", "--evidence", &evidence]);
    let said = String::from_utf8_lossy(&attested.stderr);
    assert_eq!(attested.status.code(), Some(0), "{said}");
    assert!(said.contains("on your word"), "{said}");
    world.assert_apply_converges();

    let again = world.run(&["attest", "finalized", "group.yaml", "--evidence", &evidence]);
    let said = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{said}");
    assert!(said.contains("nothing to attest"), "{said}");
}
