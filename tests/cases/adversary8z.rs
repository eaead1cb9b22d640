//! Regressions from the eighth adversarial review, Crypto Express side (repro8z): K1, an
//! EP11 token whose slot names its library `PKCS11_EP11.so` (the name openCryptoki installs
//! beside `libpkcs11_ep11.so` for older configs) was no token to mkplan, and its objects
//! were lost at the set with every command ending exit 0; W1, the advice for a token created
//! mid-change named a cancel that openCryptoki refuses while the new slot is configured.
//! Each test runs the binary on the fake platform and ends with no incident.

use crate::cases::adversary6::{
    apply_pinning_at_the_set, assert_wk_objects_under, ep11_world_with_tokens, pin_ep11_configs,
};
use crate::cases::zcrypt::{NEW, World};

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
