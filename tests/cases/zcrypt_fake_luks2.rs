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

const CCA_APQN: &str = "05.0006";
const CCA_CURRENT: &str = "c1c1c1c1c1c1c1c1";
const CCA_NEW: &str = "e5e5e5e5e5e5e5e5";

/// The example world without its token: key `db-data` (CCA, on 05.0006, AES CURRENT
/// `CCA_CURRENT`) has LUKS2 volume /dev/dasdc1; NEW `CCA_NEW` loaded on 05.0006.
fn cca_world_loaded() -> ZWorld {
    let world = world();
    cca_tke(&world, &["load", "--vp", CCA_NEW]);
    world
}

fn cca_tke(world: &ZWorld, args: &[&str]) {
    let mut all = vec![args[0], "--apqns", CCA_APQN, "--type", "AES"];
    all.extend(&args[1..]);
    world.tke(&all).expect_code(0);
}

/// `zkey-cryptsetup validate /dev/dasdc1` exits `code` and says each of `says`.
fn validated(world: &ZWorld, code: i32, says: &[&str]) -> crate::support::Run {
    let run = cryptsetup(world, &["validate", "/dev/dasdc1"]);
    expect(&run, code, says);
    run
}

/// `zkey-cryptsetup reencipher /dev/dasdc1 FLAGS --key-file …`.
fn cca_reencipher(world: &ZWorld, flags: &[&str]) -> crate::support::Run {
    let mut args = vec!["reencipher", "/dev/dasdc1"];
    args.extend(flags);
    cryptsetup(world, &args)
}

/// Set, then `--from-old --in-place` as mkplan runs it: the header moves from OLD to
/// CURRENT; run again, it finds no APQN whose OLD holds the key and changes nothing.
#[test]
fn zcrypt_fake_luks2_from_old_moves_the_header_once_and_a_rerun_changes_nothing() {
    let world = cca_world_loaded();
    cca_tke(&world, &["set"]);
    let old = format!("OLD master key (MKVP: {CCA_CURRENT})");
    validated(&world, 0, &[&old, "WARNING"]);
    let from_old = ["--from-old", "--in-place"];
    let done = "Re-enciphering has completed successfully for device '/dev/dasdc1'";
    expect(&cca_reencipher(&world, &from_old), 0, &[done]);
    validated(
        &world,
        0,
        &[&format!("CURRENT master key (MKVP: {CCA_NEW})")],
    );
    let before = world.read("world.json");
    expect(
        &cca_reencipher(&world, &from_old),
        1,
        &[
            "No APQN found that is suitable for re-enciphering the secure encryption key from the OLD to the CURRENT master key",
        ],
    );
    assert_eq!(
        world.read("world.json"),
        before,
        "a rerun changed the world"
    );
    world.assert_no_incidents();
}

#[test]
fn zcrypt_fake_luks2_a_second_set_before_the_header_left_old_loses_it() {
    let world = cca_world_loaded();
    cca_tke(&world, &["set"]);
    world
        .tool("zkey", &["reencipher", "--from-old", "--name", "db-data"])
        .expect_code(0);
    cca_tke(&world, &["load", "--vp", "f6f6f6f6f6f6f6f6"]);
    cca_tke(&world, &["set"]);
    let incidents = world.incidents();
    expect(&incidents, 1, &["INCIDENT luks2 /dev/dasdc1:", CCA_CURRENT]);
    assert!(!incidents.stdout.contains("INCIDENT zkey db-data"));
}

/// With a staging pending, `reencipher --from-old` completes it as the real tool does (and
/// fails before the set); with `--in-place` it asks to cancel the staging and, with no
/// `--batch-mode`, leaves the device unchanged.
#[test]
fn zcrypt_fake_luks2_from_old_with_a_staging_pending_completes_it_unless_in_place() {
    let world = cca_world_loaded();
    expect(
        &cca_reencipher(&world, &["--to-new", "--staged"]),
        0,
        &["Staged re-enciphering is initiated"],
    );
    expect(
        &cca_reencipher(&world, &["--from-old"]),
        1,
        &["might yet have to be set"],
    );
    cca_tke(&world, &["set"]);
    let before = world.read("world.json");
    expect(
        &cca_reencipher(&world, &["--from-old", "--in-place"]),
        1,
        &["is left unchanged"],
    );
    assert_eq!(world.read("world.json"), before);
    expect(
        &cca_reencipher(&world, &["--from-old"]),
        0,
        &["Re-enciphering has completed successfully"],
    );
    let done = validated(
        &world,
        0,
        &[&format!("CURRENT master key (MKVP: {CCA_NEW})")],
    );
    assert!(!done.stdout.contains("pending"), "{}", done.stdout);
    world.assert_no_incidents();
}

/// The MKs of the old copies of `/dev/dasdb1`'s volume key still in its header (unbound key
/// slots), as the world keeps them.
pub(crate) fn unbound_copies(world_json: &str) -> Vec<String> {
    let world: serde_json::Value = serde_json::from_str(world_json).unwrap();
    let header = world["luks2"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["device"] == "/dev/dasdb1")
        .expect("the volume's header")
        .clone();
    serde_json::from_value(header["unbound"].clone()).unwrap_or_default()
}

/// `--complete` activates the staged key slot and asks whether to remove the old key's key
/// slots, now unbound (zkey-cryptsetup.c `activate_unbound_keyslot`): with no answer (stdin
/// gives none) the header keeps the volume key under the old MK; `--batch-mode` answers yes
/// and removes them.
#[test]
fn zcrypt_fake_luks2_complete_removes_the_old_key_slots_only_when_answered_yes() {
    for batch_mode in [false, true] {
        let world = world();
        loaded_and_keys_staged(&world);
        let stage = ["reencipher", "/dev/dasdb1", "--to-new", "--staged"];
        cryptsetup(&world, &stage).expect_code(0);
        set(&world);
        let mut complete = vec!["reencipher", "/dev/dasdb1", "--complete"];
        if batch_mode {
            complete.push("--batch-mode");
        }
        let question = "All key slots containing the old volume key are now in unbound state. Do you want to remove these key slots [y/N]?";
        expect(&cryptsetup(&world, &complete), 0, &[question]);
        let unbound = unbound_copies(&world.read("world.json"));
        match batch_mode {
            false => assert_eq!(unbound, [&A[..32]], "kept under the old MK"),
            true => assert!(unbound.is_empty(), "{unbound:?}"),
        }
        world.assert_no_incidents();
    }
}

/// zkey-cryptsetup chooses among every online APQN of the key's type on the machine, not
/// the key's associated ones (repro8z F1): with card 05's NEW empty and card 02's ready, a
/// staging goes through 02.0007 and is under its NEW key.
#[test]
fn zcrypt_fake_luks2_stages_through_any_apqn_of_the_machine_as_the_real_tool() {
    let world = ZWorld::new(
        "latency_ms: 0
cards:
  - card: \"02\"
    type: CEX7C
    domains:
      - domain: \"0007\"
        AES: {current: \"c1c1c1c1c1c1c1c1\", new: {full: \"9999999999999999\"}}
  - card: \"05\"
    type: CEX7C
    domains:
      - domain: \"0006\"
        AES: {current: \"c1c1c1c1c1c1c1c1\"}
zkey:
  - name: db-data
    key_type: CCA-AESDATA
    apqns: [\"05.0006\"]
    mkvp: \"c1c1c1c1c1c1c1c1\"
    volume: {device: /dev/dasdc1, dm_name: enc-db, volume_type: luks2, key_file: keys/dasdb1.key}
",
    );
    let key_file = world.key_file();
    let staged = world.tool(
        "zkey-cryptsetup",
        &[
            "reencipher",
            "/dev/dasdc1",
            "--staged",
            "--key-file",
            &key_file,
        ],
    );
    staged.expect_code(0);
    let truth: serde_json::Value = serde_json::from_str(&world.read("world.json")).unwrap();
    let header = &truth["luks2"][0];
    assert!(
        header["staged"]
            .as_str()
            .is_some_and(|s| s.starts_with("9999999999999999")),
        "{header}"
    );
    world.assert_no_incidents();
}
