//! Adversarial round 12z, through the binary on the fake platform. Each lost a key (exit 0,
//! "converged", an incident) or refused wrongly:
//! - F1: an EP11 token config with a second `APQN_ALLOWLIST` block. openCryptoki adds every
//!   block's APQNs to the token's list; mkplan read the first only, so the token looked to be
//!   off the group's APQNs and the set lost its objects. Now every block counts, and a list
//!   beside `APQN_ANY` is refused as openCryptoki refuses it.
//! - F2: a key `zkey list` does not show (its `.info` fails zkey's integrity check, or is a
//!   symbolic link: zkey skips it, with a warning or without one, and exits 0). Now a warning
//!   on stderr, or a key file of the repository that no listed key owns, is a refusal.
//! - F3: no openCryptoki config folder where the group says, with openCryptoki installed
//!   (its folder is elsewhere): "no tokens". Now a refusal naming the folder.
//! - F5: `ZKEY_REPOSITORY` in the operator's environment naming another repository than the
//!   group's: zkey keeps the keys there, where mkplan did not look. Now a refusal; and a group
//!   declaring `zkey_keys: associated` whose repository shows no key says so.
//! - F4: a Secure Execution secret (`PVSECRET-AES`) in the repository refused every group; it
//!   is under no Crypto Express master key.

use super::zcrypt::{OLD, World, ep11_group, world_yaml};

/// Two EP11 APQNs with two zkey keys and an EP11 token (slot 3, `ep11tok3.conf`) on both; the
/// group reads the world's openCryptoki folder and does not declare the token.
fn token_world() -> World {
    let world = format!(
        "{}opencryptoki:\n  - {{ slot: 3, type: ep11, apqns: [\"03.0006\", \"04.0006\"], expected: {{ WK: \"{}\" }} }}\n",
        world_yaml(true),
        &OLD[..32]
    );
    let group = ep11_group();
    World::with(&world, &group, "EP11", super::zcrypt::NEW)
}

/// A `zkey` first on the PATH that runs the world's, and for `list` passes its output through
/// `filter` (a shell pipeline).
fn wrap_zkey(world: &World, filter: &str) {
    let wrap = world.root.join("wrap");
    std::fs::create_dir_all(&wrap).unwrap();
    let real = world.root.join("w/bin/zkey");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = list ]; then '{}' \"$@\" | {filter}; exit 0; fi\nexec '{}' \"$@\"\n",
        real.display(),
        real.display()
    );
    let path = wrap.join("zkey");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `zkey list` without the record of key `name` (its lines up to the blank line after it).
fn without_key(name: &str) -> String {
    format!(
        "awk '/^Key +: / {{ skip = ($3 == \"{name}\") }} !skip {{ print }} skip && /^$/ {{ skip = 0 }}'"
    )
}

#[test]
fn adversary12z_f1_a_second_allow_list_block_is_the_tokens_too() {
    let world = token_world();
    let config = world.root.join("w/opencryptoki/ep11tok3.conf");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("APQN_ALLOWLIST"), "{text}");
    std::fs::write(&config, format!("APQN_ALLOWLIST\n  2 6\nEND\n{text}")).unwrap();
    world.assert_refused(&[
        "`undeclared_stores`",
        "ep11tok3.conf",
        "opencryptoki: tokens",
    ]);
}

#[test]
fn adversary12z_f1_an_allow_list_beside_apqn_any_is_refused_as_opencryptoki_refuses_it() {
    let world = token_world();
    let config = world.root.join("w/opencryptoki/ep11tok3.conf");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("APQN_ANY\n{text}")).unwrap();
    world.assert_refused(&["ep11tok3.conf", "Only one APQN mode"]);
}

#[test]
fn adversary12z_f2_a_key_zkey_list_skips_with_a_warning_is_refused() {
    let world = World::new(true);
    wrap_zkey(
        &world,
        &format!(
            "{}; echo \"zkey: Key 'backup' does not exist or is invalid\" >&2",
            without_key("backup")
        ),
    );
    world.assert_refused(&[
        "`undeclared_stores`",
        "Key 'backup' does not exist or is invalid",
    ]);
}

#[test]
fn adversary12z_f2_a_key_zkey_list_skips_without_a_word_is_refused_by_its_files() {
    let world = World::new(true);
    wrap_zkey(&world, &without_key("backup"));
    world.assert_refused(&["`undeclared_stores`", "\"backup.info\"", "\"backup.skey\""]);
}

#[test]
fn adversary12z_f3_no_opencryptoki_folder_with_opencryptoki_installed_is_refused() {
    let world = token_world();
    world.edit_group(
        "opencryptoki_config: w/opencryptoki",
        "opencryptoki_config: w/elsewhere",
    );
    world.assert_refused(&[
        "openCryptoki is installed here",
        "pkcshsm_mk_change",
        "w/elsewhere",
    ]);
}

#[test]
fn adversary12z_f5_zkey_repository_in_the_environment_naming_another_is_refused() {
    let mut world = World::new(true);
    // The operator's zkey (and crypttab's, and the applications') keep their keys where
    // ZKEY_REPOSITORY says; the group names the world's repository.
    let other = world.root.join("other-repository");
    std::fs::create_dir_all(&other).unwrap();
    world
        .env
        .push(("ZKEY_REPOSITORY", other.display().to_string()));
    world.assert_refused(&[
        "`undeclared_stores`",
        "ZKEY_REPOSITORY",
        "other-repository",
        "zkey_repository:",
    ]);
    // The same repository, however it is spelled, is no disagreement.
    world.env.pop();
    world.env.push((
        "ZKEY_REPOSITORY",
        world.root.join("w/../w/zkey").display().to_string(),
    ));
    world.assert_applies_and_converges();
}

#[test]
fn adversary12z_f4_a_secure_execution_secret_does_not_block_the_group() {
    let world = World::new(true);
    let record = "Key                          : luks-pvsecret\\n-------------------------------------------------------------------------------------\\n        Description          : \\n        Secure key size      : 64 bytes\\n        Clear key size       : 256 bits\\n        XTS type key         : No\\n        Key type             : PVSECRET-AES\\n        Volumes              : (none)\\n        APQNs                : (none)\\n        Key file name        : /etc/zkey/repository/luks-pvsecret.skey\\n        Sector size          : (system default)\\n        Volume type          : luks2\\n        Verification pattern : (none)\\n        KMS                  : (local)\\n\\n";
    wrap_zkey(&world, &format!("cat; printf '{record}'"));
    let planned = world.planned();
    assert!(!planned.is_empty(), "{planned:?}");
    assert!(
        !planned.iter().any(|s| s.contains("pvsecret")),
        "{planned:?}"
    );
    world.assert_applies_and_converges();
}
