//! An openCryptoki operation closed outside mkplan, found with every APQN set. openCryptoki
//! refuses a cancel once an APQN is set, so that trace (no operation open, the APQNs on the
//! new key, no pin or the new one) is left by a finalize outside mkplan, or by a cancel
//! before the set with the APQNs set after it, when the objects were never re-enciphered
//! and are lost. mkplan used to take the tokens as finalized and end exit 0; now the plan is
//! refused (exit 3) until the operator attests a finalize from the syslog. A finalize of
//! mkplan's own closes the operation, even when mkplan was killed while it ran. Each test
//! runs the binary on the fake platform; the only loss is the one the operators made.

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
            "finalized outside mkplan, or canceled before an APQN was set",
            "pkcshsm_mk_change reencipher --apqns 03.0006,04.0006",
            "is finalized` (or `is canceled`)",
            "mkplan attest finalized",
        ] {
            assert!(said.contains(needle), "{needle:?} not in: {said}");
        }
        assert!(!said.contains("Ceremony step"), "{said}");
    }
}

/// An unpinned token moves with mkplan's own finalize; and when mkplan is killed while the
/// finalize runs, the rerun settles it from the machine: no operation open after a finalize
/// sent once every APQN was set can only have been finalized.
#[test]
fn zcrypt_tokens_unpinned_converge_with_mkplans_own_finalize_even_killed() {
    let world = unpinned_world();
    let stderr = world.assert_apply_converges();
    assert!(
        stderr.contains("pkcshsm_mk_change finalize --id"),
        "{stderr}"
    );
    assert_wk_objects_under(&world, 3, NEW);

    let world = unpinned_world();
    world.kill_mkplan_after("pkcshsm_mk_change", "finalize");
    let (code, stderr) = world.apply();
    assert_eq!(code, None, "killed: {stderr}");
    assert!(
        world.run(&["plan", "group.yaml"]).status.code() == Some(0),
        "the rerun plans"
    );
    world.remove_wrapper();
    let stderr = world.assert_apply_converges();
    assert!(stderr.contains("was interrupted"), "{stderr}");
    assert_wk_objects_under(&world, 3, NEW);
}

/// A colleague canceled the operation before the set (openCryptoki allows it then), and the
/// APQNs were set by hand after it: the token's objects were never re-enciphered, and the
/// set lost them. mkplan used to plan the zkey completions and end exit 0; now it refuses,
/// and adds no loss of its own. A cancel after the set is refused by openCryptoki.
#[test]
fn zcrypt_tokens_canceled_before_a_set_by_hand_are_refused_not_taken_as_finalized() {
    let world = unpinned_world();
    world.apply_until_the_first_set();
    let id = open_operation(&world);
    ock_by_hand(&world, &["cancel", "--id", &id], 1);
    world.assert_no_incidents();
    world.tke_with("set", "03.0006,04.0006", None);
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
