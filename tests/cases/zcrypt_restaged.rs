//! A LUKS2 volume staged again by hand between two runs (adversary round 3, z1): mkplan staged
//! it under the change's key and the operator stopped at the set ceremony; then another
//! administrator loaded another key into NEW, staged the volume again under it
//! (`--batch-mode` cancels the pending staging), and loaded the change's key back. The
//! registers and `zkey-cryptsetup validate` look as mkplan left them, and a set on the
//! journal's word alone would lose the volume.
//!
//! mkplan reads the staged key slot's master key from the header (`cryptsetup luksDump
//! --unbound`), not from its journal: a staging made by hand under another key is seen, before
//! any set or after the first (adversary round 10z, K1), and refused as any store staged under
//! another key is.

use crate::cases::zcrypt::{NEW, Operator};
use crate::cases::zcrypt_scenarios::{ep11_load_commit, luks2_world};

const OTHER: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
const APQNS: &str = "03.0006,04.0006";

#[test]
fn zcrypt_a_luks2_volume_staged_again_by_hand_between_runs_is_refused() {
    let world = luks2_world();
    world.apply_until_the_first_set();
    world.assert_no_incidents();

    restage_by_hand(&world, APQNS);
    world.assert_no_incidents();
    assert_rerun_refuses_then_converges(&world);
}

/// Round 10z K1: the first APQN is set, then a colleague stages the volume again under
/// another key through the second APQN, which still holds the volume's key in CURRENT, and
/// puts the change's key back. A set of the second APQN on the journal's word would lose the
/// volume (the fake records an incident): the rerun sees the staged copy's key and refuses.
#[test]
fn zcrypt_a_luks2_volume_staged_again_by_hand_after_the_first_set_is_refused() {
    let world = luks2_world();
    let mut sets = 0;
    let (code, stderr) = world.apply_as(|action, _| {
        if action == "set_immediate" {
            sets += 1;
            if sets > 1 {
                return Operator::Stops;
            }
        }
        Operator::Performs
    });
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(sets, 2, "{stderr}");
    world.assert_no_incidents();

    restage_by_hand(&world, "04.0006");
    world.assert_no_incidents();
    assert_rerun_refuses_then_converges(&world);
}

/// A volume staged by hand under the change's key, which no journal shows: its key slot says
/// which key it is under, so the plan sets and completes it without staging it again, and the
/// change converges with no incident.
#[test]
fn zcrypt_a_luks2_volume_staged_by_hand_under_the_changes_key_is_taken_as_staged() {
    let world = luks2_world();
    ep11_load_commit(&world, "03.0006");
    ep11_load_commit(&world, "04.0006");
    world.cryptsetup(&["reencipher", "/dev/dasdb1", "--to-new", "--staged"]);
    let plan = world.run(&["plan", "group.yaml"]);
    let shown = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(
        !shown.contains("re-encipher LUKS2 volume \"/dev/dasdb1\" under the NEW master key")
            && shown
                .contains("complete the staged re-encipherment of LUKS2 volume \"/dev/dasdb1\""),
        "{shown}"
    );
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(0), "{stderr}");
    world.assert_no_incidents();
    world.assert_converged();
}

/// On `apqns`: another key loaded and committed into NEW, the volume staged with
/// `--batch-mode` (which cancels the pending staging), and the change's key put back.
fn restage_by_hand(world: &crate::cases::zcrypt::World, apqns: &str) {
    for (action, vp) in [("clear", None), ("load", Some(OTHER)), ("commit", None)] {
        world.tke_with(action, apqns, vp);
    }
    stage(world);
    for (action, vp) in [("clear", None), ("load", Some(NEW)), ("commit", None)] {
        world.tke_with(action, apqns, vp);
    }
}

/// `zkey-cryptsetup reencipher /dev/dasdb1 --staged --batch-mode`, as an administrator runs it.
fn stage(world: &crate::cases::zcrypt::World) {
    let staged = std::process::Command::new(assert_cmd::cargo::cargo_bin("mkplan"))
        .current_dir(&world.root)
        .env("ZKEY_REPOSITORY", "w/zkey")
        .env("SYSFS_ROOT", "w/sys")
        .args([
            "sim",
            "zcrypt",
            "tool",
            "zkey-cryptsetup",
            "--world-dir",
            "w",
            "--",
        ])
        .args(["reencipher", "/dev/dasdb1", "--staged", "--batch-mode"])
        .args(["--key-file", "keys/dasdb1.key"])
        .output()
        .unwrap();
    assert!(
        staged.status.success(),
        "{}",
        String::from_utf8_lossy(&staged.stderr)
    );
}

/// The rerun sees the staged key slot under the other key and refuses, naming it, with nothing
/// run; staged again as the refusal says, the apply converges with no incident.
fn assert_rerun_refuses_then_converges(world: &crate::cases::zcrypt::World) {
    let plan = world.run(&["plan", "group.yaml"]);
    let shown = String::from_utf8_lossy(&plan.stderr);
    assert_eq!(plan.status.code(), Some(3), "{shown}");
    assert!(
        shown.contains("no_earlier_staged_stores")
            && shown.contains("/dev/dasdb1")
            && shown.contains(&OTHER[..32])
            && shown.contains("--staged --batch-mode"),
        "the rerun must see the staging under the other key:\n{shown}"
    );
    world.assert_no_incidents();
    stage(world);
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(0), "{stderr}");
    world.assert_no_incidents();
    world.assert_converged();
}
