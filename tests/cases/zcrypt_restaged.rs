//! A LUKS2 volume staged again by hand between two runs (adversary round 3, z1): mkplan staged
//! it under the change's key and the operator stopped at the set ceremony; then another
//! administrator loaded another key into NEW, staged the volume again under it
//! (`--batch-mode` cancels the pending staging), and loaded the change's key back. The
//! registers and `zkey-cryptsetup validate` look as mkplan left them, and a set on the
//! journal's word alone would lose the volume. The rerun stages it again before the set.

use crate::cases::zcrypt::NEW;
use crate::cases::zcrypt_scenarios::luks2_world;

const OTHER: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
const APQNS: &str = "03.0006,04.0006";

#[test]
fn zcrypt_a_luks2_volume_staged_again_by_hand_between_runs_is_staged_again_before_the_set() {
    let world = luks2_world();
    world.apply_until_the_first_set();
    world.assert_no_incidents();

    for (action, vp) in [("clear", None), ("load", Some(OTHER)), ("commit", None)] {
        world.tke_with(action, APQNS, vp);
    }
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
    for (action, vp) in [("clear", None), ("load", Some(NEW)), ("commit", None)] {
        world.tke_with(action, APQNS, vp);
    }
    world.assert_no_incidents();

    let plan = world.run(&["plan", "group.yaml"]);
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&plan.stdout),
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(
        shown.contains("staged again") && shown.contains("/dev/dasdb1"),
        "the rerun's plan must stage the volume again:\n{shown}"
    );
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(0), "{stderr}");
    world.assert_no_incidents();
    world.assert_converged();
}
