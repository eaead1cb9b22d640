//! Regressions from the tenth adversarial review, Crypto Express side (repro10z F2, F1): how
//! mkplan reads what the real s390-tools `zkey` writes. `zkey list` prints each key in
//! libutil's long record layout (fields indented by eight spaces, one APQN or volume a line),
//! which mkplan could not read: every group with a zkey key was refused. An EP11-AES key
//! without the 16-byte header (zkey before s390-tools 2.30.0, or its PKEY_TYPE_EP11 fallback)
//! keeps its wkvp at offset 32, not 48: after its own staging mkplan read the wrong bytes and
//! refused the change forever. The fake now prints and writes both as zkey does.

use crate::cases::zcrypt::{NEW, OLD, World, ep11_group, world_yaml};

/// `zkey list ARGS` run by hand in the world, its stdout.
fn zkey_list(world: &World, args: &[&str]) -> String {
    world.tool("zkey", &[&["list"], args].concat())
}

/// F2. The fake's `zkey list` is byte for byte what s390-tools prints (zkey/keystore.c
/// `_keystore_print_record`, libutil/util_rec.c `rec_print_long`), and mkplan reads it
/// through a whole change.
#[test]
fn adversary10z_f2_zkey_list_prints_the_real_layout_and_a_change_reads_it() {
    let world = World::new(true);
    let listed = zkey_list(&world, &["--name", "backup"]);
    let skey = world.root.join("w/zkey/backup.skey");
    let pattern = listed
        .lines()
        .find(|l| l.starts_with("        Verification pattern : "))
        .map(|l| l[31..].to_string())
        .unwrap_or_default();
    let more = " ".repeat(31);
    let expected = format!(
        "Key{} : backup{}
{}
        Description          : 
        Secure key size      : 336 bytes
        Clear key size       : 256 bits
        XTS type key         : No
        Key type             : EP11-AES
        Volumes              : (none)
        APQNs                : 03.0006
{more}04.0006
        Key file name        : {}
        Sector size          : (system default)
        Volume type          : luks2
        Verification pattern : {pattern}
{more}{}
        KMS                  : (local)
        KMS key label        : (local)
        Dummy passphrase     : (none)
        Created              : 2026-01-01 00:00:00
        Changed              : (never)
        Re-enciphered        : (never) 

",
        " ".repeat(25),
        " ".repeat(48),
        "-".repeat(85),
        skey.display(),
        listed
            .lines()
            .nth(14)
            .map(|l| l.trim_start().to_string())
            .unwrap_or_default(),
    );
    assert_eq!(listed, expected);
    assert_eq!(pattern.len(), 32, "{listed}");
    world.assert_applies_and_converges();
}

/// F2, the half fix the review warned of: an APQN outside the group on a key's second
/// `APQNs` line is read, and the key refused before anything runs.
#[test]
fn adversary10z_f2_an_apqn_outside_the_group_on_a_further_line_is_read() {
    let outside = format!(
        "  - card: \"05\"
    type: CEX8P
    serialnr: \"93AABC0500000005\"
    domains:
      - domain: \"0006\"
        WK: {{ current: \"{OLD}\" }}
"
    );
    let yaml = world_yaml(true).replacen("zkey:\n", &format!("{outside}zkey:\n"), 1)
        + &format!(
            "  - name: loose
    key_type: EP11-AES
    apqns: [\"03.0006\", \"05.0006\"]
    mkvp: \"{}\"
",
            &OLD[..32]
        );
    let world = World::with(&yaml, &ep11_group(), "EP11", NEW);
    let listed = zkey_list(&world, &["--name", "loose"]);
    assert!(
        listed.contains(&format!(
            "        APQNs                : 03.0006\n{}05.0006\n",
            " ".repeat(31)
        )),
        "{listed}"
    );
    world.assert_refused(&[
        "key_apqns_in_group",
        "zkey key \"loose\" is associated with APQN(s) 05.0006 outside the group",
    ]);
}

/// F1. An EP11-AES key made without the 16-byte header (320-byte token, version 0x03, wkvp
/// at 32) goes through a whole change: its staged copy's key is read where zkey reads it.
#[test]
fn adversary10z_f1_an_ep11_key_without_its_header_goes_through_a_whole_change() {
    let yaml = world_yaml(true).replacen(
        "  - name: backup\n",
        "  - name: backup\n    ep11_header: false\n    xts: true\n",
        1,
    );
    let world = World::with(&yaml, &ep11_group(), "EP11", NEW);
    let skey = std::fs::read(world.root.join("w/zkey/backup.skey")).unwrap();
    assert_eq!(skey.len(), 2 * 320);
    assert_eq!(skey[4], 0x03);
    assert_eq!(hex::encode(&skey[32..48]), OLD[..32]);
    assert_eq!(skey[64..66], [0x12, 0x34]);
    let listed = zkey_list(&world, &["--name", "backup"]);
    assert!(
        listed.contains("Secure key size      : 640 bytes"),
        "{listed}"
    );
    world.apply_until_the_first_set();
    let renc = std::fs::read(world.root.join("w/zkey/backup.renc")).unwrap();
    assert_eq!((renc.len(), renc[4]), (640, 0x03));
    assert_eq!(hex::encode(&renc[32..48]), NEW[..32]);
    world.assert_apply_converges();
    let skey = std::fs::read(world.root.join("w/zkey/backup.skey")).unwrap();
    assert_eq!((skey.len(), skey[4]), (640, 0x03));
    assert_eq!(hex::encode(&skey[32..48]), NEW[..32]);
}

/// F1, the fake's world file: only an EP11-AES key has a header to leave out.
#[test]
fn adversary10z_f1_ep11_header_is_refused_on_a_cca_key() {
    let said = crate::cases::zcrypt::init_refused(
        &(world_yaml(true)
            + "  - name: data\n    key_type: CCA-AESDATA\n    ep11_header: false\n    mkvp: \"c1c1c1c1c1c1c1c1\"\n"),
    );
    assert!(
        said.contains("zkey key data ep11_header: only an EP11-AES key"),
        "{said}"
    );
}
