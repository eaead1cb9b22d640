//! openCryptoki's tokens found through `opencryptoki.conf` (`slot N { stdll = …; confname =
//! … }`), through the binary on the fake platform: a token config named otherwise than
//! `ep11tok*.conf` is found and refused while undeclared, and moved when declared (an apply
//! with no incident); a `confname` naming no file, a slot with no `confname` and no
//! `ep11tok.conf`, and an `opencryptoki.conf` pkcsslotd could not read are refusals naming the
//! file and line, not "no tokens". With `OCK_EP11_TOKEN_DIR` set in mkplan's environment, an
//! EP11 token's config is read where the token reads it (its `confname`'s file name in that
//! folder, else `ep11tok.conf` there), the plan says which file it read, and a config missing
//! there or a folder that is not one is refused naming the path. The fake
//! `pkcshsm_mk_change` reads an EP11 token's config there too, as the real token does.

use super::zcrypt::{NEW, OLD, Operator, World, ep11_group, world_yaml};

const CONFNAME: &str = "payroll-wk.conf";

/// Two EP11 APQNs with two zkey keys, and an EP11 token on them whose config is
/// `payroll-wk.conf`; the group reads openCryptoki's folder of the world, and declares the
/// tokens when `declared`.
fn token_world(declared: bool) -> World {
    let world = format!(
        "{}opencryptoki:\n  - {{ slot: 3, type: ep11, apqns: [\"03.0006\", \"04.0006\"], expected: {{ WK: \"{}\" }}, confname: {CONFNAME} }}\n",
        world_yaml(true),
        &OLD[..32]
    );
    let mut group = ep11_group();
    if declared {
        group.push_str(
            "  - opencryptoki: tokens\nopencryptoki_user_pins:\n  - { slot: 3, env: MKPLAN_TEST_SLOT3_PIN }\n",
        );
    }
    let mut world = World::with(&world, &group, "EP11", NEW);
    // The fake's token names no PIN of its own: any that is not empty logs in.
    world.env.push(("MKPLAN_TEST_SLOT3_PIN", "12345678".into()));
    world
}

fn slots_file(world: &World) -> std::path::PathBuf {
    world.root.join("w/opencryptoki/opencryptoki.conf")
}

#[test]
fn zcrypt_ock_conf_a_token_config_named_otherwise_is_found_and_refused_while_undeclared() {
    let world = token_world(false);
    assert!(!world.root.join("w/opencryptoki/ep11tok3.conf").exists());
    let slots = std::fs::read_to_string(slots_file(&world)).unwrap();
    assert!(
        slots.contains(&format!("confname = \"{CONFNAME}\"")),
        "{slots}"
    );
    world.assert_refused(&["`undeclared_stores`", CONFNAME, "opencryptoki: tokens"]);
}

#[test]
fn zcrypt_ock_conf_a_declared_token_with_its_config_named_otherwise_moves_without_incidents() {
    let world = token_world(true);
    let config = world.root.join("w/opencryptoki").join(CONFNAME);
    // `pkcshsm_mk_change finalize` needs the config to pin the new key: the operator edits
    // it at the set, as the procedure asks.
    let (code, stderr) = world.apply_as(|action, _| {
        if action == "set_immediate" {
            let text = std::fs::read_to_string(&config).unwrap();
            let pinned = text.replace(&OLD[..32], &NEW[..32]);
            std::fs::write(&config, pinned).unwrap();
        }
        Operator::Performs
    });
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("pkcshsm_mk_change finalize"), "{stderr}");
    world.assert_no_incidents();
    world.assert_converged();
}

#[test]
fn zcrypt_ock_conf_a_confname_naming_no_file_is_refused_naming_the_line() {
    let world = token_world(true);
    let slots = std::fs::read_to_string(slots_file(&world)).unwrap();
    let line = slots.lines().position(|l| l.contains("confname")).unwrap() + 1;
    std::fs::write(
        slots_file(&world),
        slots.replace(CONFNAME, "payroll-wk.conf.rpmsave"),
    )
    .unwrap();
    world.assert_refused(&[
        "`undeclared_stores`",
        &format!(
            "opencryptoki/opencryptoki.conf:{line}: slot 3 (EP11 token) names its token's config"
        ),
        "payroll-wk.conf.rpmsave, which cannot be read",
    ]);
    // With no confname, the EP11 token reads ep11tok.conf, which is not there either.
    let none: String = slots
        .lines()
        .filter(|l| !l.contains("confname"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(slots_file(&world), none).unwrap();
    world.assert_refused(&[
        "has no confname, so its token reads the default",
        "ep11tok.conf, which cannot be read",
    ]);
}

#[test]
fn zcrypt_ock_conf_an_opencryptoki_conf_pkcsslotd_cannot_read_is_refused_naming_the_line() {
    let world = token_world(true);
    let slots = std::fs::read_to_string(slots_file(&world)).unwrap();
    let cut = slots.trim_end().strip_suffix('}').unwrap();
    let lines = cut.lines().count();
    std::fs::write(slots_file(&world), cut).unwrap();
    world.assert_refused(&[
        &format!("opencryptoki/opencryptoki.conf:{lines}: the file ends where `}}` belongs"),
        "pkcsslotd cannot read it either",
    ]);
    std::fs::write(slots_file(&world), slots.replace("stdll = ", "stdll = \"")).unwrap();
    world.assert_refused(&["a string `\"` is never closed"]);
    // Adversarial round 11z, F1: a key pkcsslotd does not take (upper case, misspelled) made
    // the slot "no token": the change set both APQNs and lost the token's objects.
    for (from, to) in [("stdll = ", "STDLL = "), ("stdll = ", "sdtll = ")] {
        std::fs::write(slots_file(&world), slots.replace(from, to)).unwrap();
        world.assert_refused(&[
            "`undeclared_stores`",
            &format!(
                "key \"{}\" that pkcsslotd does not take",
                to.trim_end_matches(" = ")
            ),
        ]);
    }
}

/// A folder for `OCK_EP11_TOKEN_DIR`, set (absolute) for every mkplan the world runs.
fn token_dir(world: &mut World) -> std::path::PathBuf {
    let dir = world.root.join("ep11-token-dir");
    std::fs::create_dir_all(&dir).unwrap();
    world
        .env
        .push(("OCK_EP11_TOKEN_DIR", dir.display().to_string()));
    dir
}

/// The world's token config with its allow list moved to APQNs outside the group.
fn config_off_the_group(world: &World) -> String {
    let config = std::fs::read_to_string(world.root.join("w/opencryptoki").join(CONFNAME)).unwrap();
    assert!(config.contains("  3 6\n  4 6\n"), "{config}");
    config.replace("  3 6\n  4 6\n", "  7 7\n  8 7\n")
}

#[test]
fn zcrypt_ock_conf_ock_ep11_token_dir_moves_where_an_ep11_tokens_config_is_read() {
    // Undeclared: the token in openCryptoki's folder is on the group (refused, above); the
    // config the token reads in OCK_EP11_TOKEN_DIR is not, and the plan says which it read.
    let mut world = token_world(false);
    let dir = token_dir(&mut world);
    std::fs::write(dir.join(CONFNAME), config_off_the_group(&world)).unwrap();
    let plan = world.run(&["plan", "group.yaml"]);
    let stderr = String::from_utf8_lossy(&plan.stderr);
    assert_eq!(plan.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "openCryptoki: OCK_EP11_TOKEN_DIR is {}, so the EP11 tokens read their configs there; read: slot 3: {}.",
            dir.display(),
            dir.join(CONFNAME).display()
        )),
        "{stderr}"
    );
    // Its confname not there: the token reads ep11tok.conf in that folder, as openCryptoki's
    // EP11 token does; that one is on the group.
    std::fs::remove_file(dir.join(CONFNAME)).unwrap();
    std::fs::copy(
        world.root.join("w/opencryptoki").join(CONFNAME),
        dir.join("ep11tok.conf"),
    )
    .unwrap();
    let ep11tok = dir.join("ep11tok.conf").display().to_string();
    world.assert_refused(&[
        "`undeclared_stores`",
        &format!("the openCryptoki token of {ep11tok}"),
    ]);
}

#[test]
fn zcrypt_ock_conf_a_config_missing_from_ock_ep11_token_dir_or_a_bad_one_is_refused_naming_it() {
    let mut world = token_world(true);
    let dir = token_dir(&mut world);
    world.assert_refused(&[
        "`undeclared_stores`",
        &format!(
            "slot 3 (EP11 token) names its token's config \"{CONFNAME}\": with OCK_EP11_TOKEN_DIR={} the token reads {}, else {}, and neither can be read",
            dir.display(),
            dir.join(CONFNAME).display(),
            dir.join("ep11tok.conf").display()
        ),
    ]);
    world.env.retain(|(name, _)| *name != "OCK_EP11_TOKEN_DIR");
    world
        .env
        .push(("OCK_EP11_TOKEN_DIR", "no-such-folder".into()));
    world.assert_refused(&[&format!(
        "OCK_EP11_TOKEN_DIR names {}, which cannot be read",
        world.root.join("no-such-folder").display()
    )]);
    world.env.retain(|(name, _)| *name != "OCK_EP11_TOKEN_DIR");
    world.env.push(("OCK_EP11_TOKEN_DIR", String::new()));
    world.assert_refused(&["OCK_EP11_TOKEN_DIR is set but empty"]);
}

#[test]
fn zcrypt_ock_conf_a_declared_token_read_from_ock_ep11_token_dir_moves_without_incidents() {
    let mut world = token_world(true);
    let dir = token_dir(&mut world);
    let configs = [
        world.root.join("w/opencryptoki").join(CONFNAME),
        dir.join(CONFNAME),
    ];
    std::fs::copy(&configs[0], &configs[1]).unwrap();
    // The operator pins the new key in the token's configs at the set (the tool reads the
    // variable's, as the token does; the world's copy is openCryptoki's folder's).
    let (code, stderr) = world.apply_as(|action, _| {
        if action == "set_immediate" {
            for config in &configs {
                let text = std::fs::read_to_string(config).unwrap();
                std::fs::write(config, text.replace(&OLD[..32], &NEW[..32])).unwrap();
            }
        }
        Operator::Performs
    });
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("read: slot 3: {}.", configs[1].display()))
            && stderr.contains("pkcshsm_mk_change finalize"),
        "{stderr}"
    );
    world.assert_no_incidents();
    world.assert_converged();
}

/// The token's config lives only in `OCK_EP11_TOKEN_DIR` (moved out of openCryptoki's
/// folder): `pkcshsm_mk_change finalize` reads its `EXPECTED_WKVP` there, as the real EP11
/// token does. While it pins the old key, finalize fails naming that file; pinned there, the
/// rerun converges with no incident.
#[test]
fn zcrypt_ock_conf_pkcshsm_mk_change_reads_the_config_in_ock_ep11_token_dir() {
    let mut world = token_world(true);
    let dir = token_dir(&mut world);
    let config = dir.join(CONFNAME);
    std::fs::rename(world.root.join("w/opencryptoki").join(CONFNAME), &config).unwrap();
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(1), "{stderr}");
    let unpinned = format!(
        "{} does not yet name the new WK master key verification pattern",
        config.display()
    );
    assert!(stderr.contains(&unpinned), "{unpinned:?} not in: {stderr}");
    world.assert_no_incidents();

    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(&OLD[..32], &NEW[..32])).unwrap();
    let stderr = world.assert_apply_converges();
    assert!(stderr.contains("pkcshsm_mk_change finalize"), "{stderr}");
    world.assert_no_incidents();
    world.assert_converged();
}
