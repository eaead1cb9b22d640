//! Regressions from the eighth adversarial review, Crypto Express side (repro8z): K1, an
//! EP11 token whose slot names its library `PKCS11_EP11.so` (the name openCryptoki installs
//! beside `libpkcs11_ep11.so` for older configs) was no token to mkplan, and its objects
//! were lost at the set with every command ending exit 0; W1, the advice for a token created
//! mid-change named a cancel that openCryptoki refuses while the new slot is configured;
//! K2, a zkey repository bound to a KMS plug-in, whose own secure keys no store moved (read
//! from s390-tools' sources: the fake has no plug-in, so no loss is shown here, only the
//! refusal). Each test runs the binary on the fake platform and ends with no incident.

use crate::cases::adversary6::{
    apply_pinning_at_the_set, assert_wk_objects_under, ep11_world_with_tokens, pin_ep11_configs,
};
use crate::cases::zcrypt::{NEW, OLD, World, ep11_group, world_yaml};

fn name_library(world: &World, stdll: &str) {
    let path = world.root.join("w/opencryptoki/opencryptoki.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    let renamed = text.replace("stdll = libpkcs11_ep11.so", &format!("stdll = {stdll}"));
    assert_ne!(renamed, text);
    std::fs::write(path, renamed).unwrap();
}

#[test]
fn adversary8z_k1_a_token_named_by_its_compat_library_moves_with_the_group() {
    let world = ep11_world_with_tokens(&[(3, "\"03.0006\", \"04.0006\"")]);
    name_library(&world, "/usr/lib64/opencryptoki/stdll/PKCS11_EP11.so");
    let planned = world.planned();
    for step in [
        "stage_reencipher:03.0006,04.0006",
        "complete_reencipher:03.0006,04.0006",
    ] {
        assert!(planned.iter().any(|s| s == step), "{step}: {planned:?}");
    }
    apply_pinning_at_the_set(&world, || pin_ep11_configs(&world, NEW));
    world.assert_converged();
    assert_wk_objects_under(&world, 3, NEW);
}

/// A library openCryptoki does not ship may be an HSM token's: refused, naming it.
#[test]
fn adversary8z_k1_a_slot_whose_library_is_unknown_is_refused_naming_it() {
    let world = ep11_world_with_tokens(&[(3, "\"03.0006\", \"04.0006\"")]);
    name_library(&world, "/opt/vendor/hsm_ep11.so");
    world.assert_refused(&[
        "undeclared_stores",
        "slot 3's stdll \"/opt/vendor/hsm_ep11.so\" is none of openCryptoki's token libraries",
    ]);
}

/// K2. A KMIP plug-in bound on the group's APQNs keeps its identity key under their WK: the
/// plan is refused until a store moves it with `zkey kms reencipher`; a plug-in on other
/// APQNs, or `local`, is none of the group's.
#[test]
fn adversary8z_k2_a_kms_plugin_on_the_groups_apqns_is_a_store_to_declare() {
    let world = World::with(&world_yaml(true), &ep11_group(), "EP11", NEW);
    let kms = world.root.join("w/zkey/kms.conf");
    std::fs::write(&kms, "# written by zkey\nkms=KMIP\napqns=04.0006,07.0001\n").unwrap();
    world.assert_refused(&[
        "undeclared_stores",
        "bound to KMS plug-in \"KMIP\"",
        "on APQNs 04.0006,07.0001, 04.0006 of them the group's",
        "stage: [zkey, kms, reencipher, --to-new, --staged]",
    ]);
    std::fs::write(&kms, "kms=KMIP\napqns=04.six\n").unwrap();
    world.assert_refused(&["undeclared_stores", "APQN \"04.six\" of KMS plug-in"]);
    for other in ["kms=KMIP\napqns=07.0001\n", "kms=LOCAL\napqns=04.0006\n"] {
        std::fs::write(&kms, other).unwrap();
        assert!(world.planned().len() > 1, "{other}");
    }
    std::fs::write(&kms, "kms=KMIP\napqns=04.0006\n").unwrap();
    let group = std::fs::read_to_string(world.root.join("group.yaml")).unwrap();
    std::fs::write(
        world.root.join("group.yaml"),
        format!(
            "{group}  - application: {{name: zkey-kms, check: [sh, -c, 'echo active: {}'], stage: [zkey, kms, reencipher, --to-new, --staged], complete: [zkey, kms, reencipher, --complete]}}\n",
            &OLD[..32]
        ),
    )
    .unwrap();
    let planned = world.planned();
    assert!(
        planned.iter().any(|s| s == "stage_reencipher:zkey-kms"),
        "{planned:?}"
    );
    world.assert_no_incidents();
}
