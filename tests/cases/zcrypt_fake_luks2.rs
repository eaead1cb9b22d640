//! The fake `zkey-cryptsetup` and the LUKS2 header it keeps (docs/zcrypt-sim.md), driven
//! through the world's `bin` scripts as an operator or mkplan would: the passphrase file is
//! checked before anything, `validate` shows the active keyslot's key and whether a staging
//! is pending (not the staged keyslot's key, as the real tool), `--complete` fails before
//! the set, and a set before the header's copy is staged loses it, recorded as an incident.

use crate::cases::zcrypt_fake::{A, B, EP11_APQNS, ZWorld};

/// The example world without its openCryptoki token (which these tests do not move).
fn world() -> ZWorld {
    let text =
        std::fs::read_to_string(crate::support::repo_file("plans/zcrypt-world.yaml")).unwrap();
    let without_token = &text[..text.find("opencryptoki:").unwrap()];
    ZWorld::new(without_token)
}

fn cryptsetup(world: &ZWorld, args: &[&str]) -> crate::support::Run {
    let key_file = world.key_file();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--key-file", &key_file]);
    world.tool("zkey-cryptsetup", &all)
}

#[test]
fn zcrypt_fake_luks2_a_wrong_or_missing_key_file_opens_no_keyslot_and_changes_nothing() {
    let world = world();
    let before = world.read("world.json");
    let wrong = world.path("wrong.key");
    std::fs::write(&wrong, "not the passphrase\n").unwrap();
    let wrong = wrong.display().to_string();
    for args in [
        vec!["validate", "/dev/dasdb1", "--key-file", &wrong],
        vec![
            "reencipher",
            "/dev/dasdb1",
            "--staged",
            "--key-file",
            &wrong,
        ],
        vec!["reencipher", "/dev/dasdb1", "--staged"],
    ] {
        let run = world.tool("zkey-cryptsetup", &args);
        run.expect_code(1);
        assert!(
            run.stderr.contains("No key available with this passphrase")
                && !run.stderr.contains("not the passphrase"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(world.read("world.json"), before);
    let ok = cryptsetup(&world, &["validate", "/dev/dasdb1"]);
    ok.expect_code(0);
    assert!(
        ok.stdout.contains(&format!(
            "Enciphered with:       CURRENT master key (MKVP: {})",
            &A[..32]
        )),
        "{}",
        ok.stdout
    );
}

/// `run` exited `code`, and its stdout or stderr says each of `says`.
fn expect(run: &crate::support::Run, code: i32, says: &[&str]) {
    run.expect_code(code);
    for words in says {
        assert!(
            run.stdout.contains(words) || run.stderr.contains(words),
            "{words:?} not said: {}{}",
            run.stdout,
            run.stderr
        );
    }
}

/// NEW `B` loaded and committed, then every zkey key staged.
fn loaded_and_keys_staged(world: &ZWorld) {
    world.load_and_commit_ep11(B);
    let args = ["reencipher", "--to-new", "--staged", "--apqns", EP11_APQNS];
    world.tool("zkey", &args).expect_code(0);
}

fn set(world: &ZWorld) {
    world
        .tke(&["set", "--apqns", EP11_APQNS, "--type", "EP11"])
        .expect_code(0);
}

#[test]
fn zcrypt_fake_luks2_staged_then_set_then_completed_loses_nothing_and_complete_waits_for_the_set() {
    let world = world();
    loaded_and_keys_staged(&world);
    let stage = ["reencipher", "/dev/dasdb1", "--to-new", "--staged"];
    expect(
        &cryptsetup(&world, &stage),
        0,
        &["Staged re-enciphering is initiated"],
    );
    let staged = cryptsetup(&world, &["validate", "/dev/dasdb1"]);
    expect(
        &staged,
        0,
        &["Volume key re-enciphering is pending", &A[..32]],
    );
    assert!(
        !staged.stdout.contains(&B[..32]),
        "validate shows the active keyslot only"
    );
    let complete = ["reencipher", "/dev/dasdb1", "--complete"];
    expect(
        &cryptsetup(&world, &complete),
        1,
        &["might yet have to be set"],
    );
    expect(&cryptsetup(&world, &stage), 1, &["is left unchanged"]);
    set(&world);
    world.assert_no_incidents();
    let between = cryptsetup(&world, &["validate", "/dev/dasdb1"]);
    expect(
        &between,
        1,
        &["ATTENTION: The secure volume key is not valid."],
    );
    expect(
        &cryptsetup(&world, &complete),
        0,
        &["completed successfully"],
    );
    let done = cryptsetup(&world, &["validate", "/dev/dasdb1"]);
    expect(
        &done,
        0,
        &[&format!("CURRENT master key (MKVP: {})", &B[..32])],
    );
    assert!(!done.stdout.contains("pending"), "{}", done.stdout);
    world.assert_no_incidents();
}

#[test]
fn zcrypt_fake_luks2_a_set_before_the_header_is_staged_loses_its_copy() {
    let world = world();
    loaded_and_keys_staged(&world);
    set(&world);
    let incidents = world.incidents();
    expect(&incidents, 1, &["INCIDENT luks2 /dev/dasdb1:"]);
    assert!(
        !incidents.stdout.contains("INCIDENT zkey"),
        "{}",
        incidents.stdout
    );
}
