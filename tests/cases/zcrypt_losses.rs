//! Regression tests for key-loss findings against the `zcrypt:` backend (an adversarial
//! tester's reproductions, /work/adv/repro): each builds a fake world, plans or applies as an
//! operator would, and asserts that mkplan refuses with exit 3, names the check and the
//! stores, runs nothing (the world is unchanged) and the world records no incident.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::repo_file;

const A1: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const B2: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
const C3: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

/// The binary under test; `MKPLAN_LOSSES_BIN` runs these tests against another build (how
/// each was checked to fail before its fix).
fn binary() -> PathBuf {
    std::env::var_os("MKPLAN_LOSSES_BIN")
        .map_or_else(|| assert_cmd::cargo::cargo_bin("mkplan"), PathBuf::from)
}

struct Lab {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Lab {
    /// A lab whose folder also holds the example's LUKS2 key files (`keys/`), which the
    /// example world and group name relative to themselves.
    fn new_with_keys(world: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        for file in ["dasdb1.key", "slot3.pin"] {
            std::fs::copy(repo_file(&format!("plans/keys/{file}")), keys.join(file)).unwrap();
        }
        Self::in_dir(dir, world)
    }

    fn new(world: &str) -> Self {
        Self::in_dir(tempfile::tempdir().unwrap(), world)
    }

    fn in_dir(dir: tempfile::TempDir, world: &str) -> Self {
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("world.yaml"), world).unwrap();
        let lab = Self { _dir: dir, root };
        lab.ok(&["sim", "zcrypt", "init", "w", "--world", "world.yaml"]);
        lab
    }

    fn group(&self, text: &str) {
        std::fs::write(self.root.join("group.yaml"), text).unwrap();
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let path = format!(
            "{}:{}:{}",
            self.root.join("bin").display(),
            self.root.join("w/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new(binary());
        command
            .current_dir(&self.root)
            .env("PATH", path)
            .env("SYSFS_ROOT", self.root.join("w/sys"))
            .env("ZKEY_REPOSITORY", self.root.join("w/zkey"))
            .env("MKPLAN_STATE_DIR", self.root.join("state"))
            .env("MKPLAN_JOURNAL_KEY", self.root.join("keys/journal.key"))
            .env("XDG_STATE_HOME", self.root.join("keys/state"))
            .env_remove("MKPLAN_BACKEND")
            .env_remove("MKPLAN_STATE")
            .env("NO_COLOR", "1")
            .args(args)
            .stdin(Stdio::null());
        command
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        out
    }

    /// `run`, its stdin a USER PIN line for each slot `pkcshsm_mk_change` logs in to (the
    /// tokens of these worlds name no PIN, so any PIN that is not empty logs in).
    fn ok_with_pins(&self, args: &[&str]) -> Output {
        let pins = self.root.join("user.pins");
        std::fs::write(&pins, "1234\n".repeat(8)).unwrap();
        let out = self
            .command(args)
            .stdin(std::fs::File::open(&pins).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        out
    }

    fn tke(&self, action: &str, apqns: &str, mk_type: &str, vp: Option<&str>) {
        let mut args = vec![
            "sim",
            "zcrypt",
            "tke",
            "--world-dir",
            "w",
            action,
            "--apqns",
            apqns,
            "--type",
            mk_type,
        ];
        args.extend(vp.iter().flat_map(|vp| ["--vp", vp]));
        self.ok(&args);
    }

    /// Every file of the world: the truth, sysfs, the repository, the token configs (not the
    /// lock files, which the tools' reads take).
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, into: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() && !path.is_symlink() {
                    walk(&path, into);
                } else if path.is_file() && path.extension().is_none_or(|e| e != "lock") {
                    into.insert(path.clone(), std::fs::read(&path).unwrap());
                }
            }
        }
        let mut files = BTreeMap::new();
        walk(&self.root.join("w"), &mut files);
        files
    }

    /// `plan` and `apply` both refuse with exit 3 naming `check` and every word of `names`;
    /// apply shows no ceremony step and runs no tool; the world is unchanged, no incident.
    fn assert_refused(&self, check: &str, names: &[&str]) -> String {
        let before = self.snapshot();
        let plan = self.run(&["plan", "group.yaml"]);
        let said = text(&plan);
        assert_eq!(plan.status.code(), Some(3), "{said}");
        assert!(said.contains(&format!("`{check}`")), "{said}");
        for name in names {
            assert!(said.contains(name), "{name} not named: {said}");
        }
        let apply = self.run(&["apply", "group.yaml", "--auto-approve"]);
        let applied = text(&apply);
        assert_eq!(apply.status.code(), Some(3), "{applied}");
        assert!(applied.contains(&format!("`{check}`")), "{applied}");
        assert!(
            !applied.contains("Ceremony step")
                && !applied.lines().any(|l| l.starts_with('z')
                    && l[1..].starts_with(|c: char| c.is_ascii_digit())),
            "{applied}"
        );
        let after = self.snapshot();
        let changed: Vec<&PathBuf> = after
            .iter()
            .filter(|(path, bytes)| before.get(*path) != Some(*bytes))
            .map(|(path, _)| path)
            .chain(before.keys().filter(|path| !after.contains_key(*path)))
            .collect();
        assert!(
            changed.is_empty(),
            "the world changed: {changed:?}: {applied}"
        );
        self.assert_no_incidents();
        said
    }

    /// Loads and commits B2 on both APQNs and opens a `pkcshsm_mk_change` operation to it:
    /// the tokens' objects get copies under B2. Returns the operation's id.
    fn open_ock_operation(&self) -> String {
        self.tke("load", "03.0006,04.0006", "EP11", Some(B2));
        self.tke("commit", "03.0006,04.0006", "EP11", None);
        let created = text(&self.ok_with_pins(&[
            "sim",
            "zcrypt",
            "tool",
            "pkcshsm_mk_change",
            "--world-dir",
            "w",
            "--",
            "reencipher",
            "--apqns",
            "03.0006,04.0006",
            "--ep11-wkvp",
            &B2[..32],
        ]));
        created
            .split('\'')
            .nth(1)
            .expect("an operation id")
            .to_string()
    }

    fn assert_no_incidents(&self) {
        let out = self.run(&["sim", "zcrypt", "incidents", "--world-dir", "w"]);
        assert!(out.status.success(), "incidents: {}", text(&out));
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ep11_cards() -> String {
    format!(
        "latency_ms: 0
cards:
  - {{card: \"03\", type: CEX8P, serialnr: \"S3\", domains: [{{domain: \"0006\", WK: {{current: \"{A1}\"}}}}]}}
  - {{card: \"04\", type: CEX8P, serialnr: \"S4\", domains: [{{domain: \"0006\", WK: {{current: \"{A1}\"}}}}]}}
"
    )
}

fn ep11_key(name: &str, apqns: &str) -> String {
    format!(
        "  - {{name: {name}, key_type: EP11-AES, apqns: [{apqns}], mkvp: \"{}\"}}\n",
        &A1[..32]
    )
}

fn ep11_group(apqns: &str, vp: &str, stores: &str) -> String {
    format!(
        "domain_group: payroll
version: 1
backend: zcrypt:w/sys
apqns: [{apqns}]
master_keys:
  - {{type: WK, verification_pattern: \"{vp}\"}}
zkey_repository: w/zkey
opencryptoki_config: w/opencryptoki
stores:{stores}
"
    )
}

fn ep11_token() -> String {
    format!(
        "opencryptoki:\n  - {{slot: 3, type: ep11, apqns: [{BOTH}], expected: {{WK: \"{}\"}}}}\n",
        &A1[..32]
    )
}

/// Two EP11 APQNs, a key and a token on them, and an open operation staging the token to B2.
fn token_lab_with_open_operation() -> (Lab, String) {
    let world = format!(
        "{}zkey:\n{}{}",
        ep11_cards(),
        ep11_key("backup", BOTH),
        ep11_token()
    );
    let lab = Lab::new(&world);
    let id = lab.open_ock_operation();
    (lab, id)
}

const BOTH: &str = "\"03.0006\", \"04.0006\"";

fn cca_world(apqns: &[&str], pinned_aes: &str, old: &str) -> String {
    let mut world = String::from("latency_ms: 0\ncards:\n");
    for apqn in apqns {
        let card = &apqn[..2];
        world.push_str(&format!(
            "  - {{card: \"{card}\", type: CEX7C, serialnr: \"93AAC0{card}\", domains: [{{domain: \"0006\", AES: {{current: \"c1c1c1c1c1c1c1c1\"{old}}}, APKA: {{current: \"d1d1d1d1d1d1d1d1\"}}, SYM: {{current: \"5151515151515151\"}}}}]}}\n"
        ));
    }
    let listed: Vec<String> = apqns.iter().map(|a| format!("\"{a}\"")).collect();
    world.push_str(&format!(
        "opencryptoki:\n  - {{slot: 5, type: cca, apqns: [{}], expected: {{SYM: \"5151515151515151\", AES: \"{pinned_aes}\", APKA: \"d1d1d1d1d1d1d1d1\"}}}}\n",
        listed.join(", ")
    ));
    world
}

fn cca_group(apqns: &str) -> String {
    format!(
        "domain_group: db-cca
version: 1
backend: zcrypt:w/sys
apqns: [{apqns}]
procedure: set_then_from_old
master_keys:
  - {{type: AES, verification_pattern: \"e5e5e5e5e5e5e5e5\"}}
zkey_repository: w/zkey
opencryptoki_config: w/opencryptoki
stores:
  - opencryptoki: tokens
"
    )
}

/// f11, f9, f10: mkplan inferred a CCA token's key from CURRENT, planned a from-OLD step no
/// tool performs, reported the token under the new key, and a second change lost it.
#[test]
fn zcrypt_losses_opencryptoki_tokens_under_set_then_from_old_are_refused() {
    for (apqns, group, pinned, old) in [
        (vec!["05.0006"], "05.0006", "c1c1c1c1c1c1c1c1", ""),
        (
            vec!["05.0006", "06.0006"],
            "05.0006, 06.0006",
            "c1c1c1c1c1c1c1c1",
            "",
        ),
        // f10: the token's objects are still under OLD c0 from an earlier change.
        (
            vec!["05.0006"],
            "05.0006",
            "c0c0c0c0c0c0c0c0",
            ", old: \"c0c0c0c0c0c0c0c0\"",
        ),
    ] {
        let lab = Lab::new(&cca_world(&apqns, pinned, old));
        lab.group(&cca_group(group));
        lab.assert_refused(
            "opencryptoki_from_old",
            &["openCryptoki", "reencipher_then_set"],
        );
        let status = text(&lab.ok(&["status", "group.yaml"]));
        assert!(
            !status.contains("c1c1c1c1c1c1c1c1 (openCryptoki"),
            "{status}"
        );
        assert!(status.contains("set_then_from_old"), "{status}");
    }
}

/// f2: keys on the group's APQNs that the group file does not declare were left under the old
/// wrapping key, which the set destroyed; apply exited 0.
#[test]
fn zcrypt_losses_undeclared_zkey_keys_on_the_groups_apqns_are_refused_by_name() {
    let world = format!(
        "{}zkey:\n{}{}{}",
        ep11_cards(),
        ep11_key("backup", BOTH),
        ep11_key("archive", BOTH),
        ep11_token()
    );
    let lab = Lab::new(&world);
    lab.group(&ep11_group("03.0006, 04.0006", B2, " []"));
    lab.assert_refused(
        "undeclared_stores",
        &[
            "\"backup\"",
            "\"archive\"",
            "zkey_key: archive",
            "ep11tok3.conf",
            "opencryptoki: tokens",
        ],
    );
    lab.group(&ep11_group(
        "03.0006, 04.0006",
        B2,
        "\n  - zkey_key: backup\n  - opencryptoki: tokens",
    ));
    let said = lab.assert_refused("undeclared_stores", &["\"archive\""]);
    assert!(
        !said.contains("\"backup\"") && !said.contains("ep11tok3"),
        "{said}"
    );
}

/// The world of `plans/WORLD` and the shipped example group, pointed at it.
fn example_group_on(world: &str) -> Lab {
    shipped_group_on(world, "zcrypt-ep11-group.yaml")
}

/// The world of `plans/WORLD` and the shipped group `plans/GROUP`, pointed at it.
fn shipped_group_on(world: &str, group: &str) -> Lab {
    let lab =
        Lab::new_with_keys(&std::fs::read_to_string(repo_file(&format!("plans/{world}"))).unwrap());
    let shipped = std::fs::read_to_string(repo_file(&format!("plans/{group}"))).unwrap();
    let group = shipped
        .replace("backend: zcrypt:/\n", "backend: zcrypt:w/sys\n")
        .replace(
            "zkey_repository: /etc/zkey/repository",
            "zkey_repository: w/zkey",
        )
        .replace(
            "opencryptoki_config: /etc/opencryptoki",
            "opencryptoki_config: w/opencryptoki",
        );
    let pointed = shipped.matches("backend: zcrypt:/\n").count()
        + shipped
            .matches("zkey_repository: /etc/zkey/repository")
            .count()
        + shipped
            .matches("opencryptoki_config: /etc/opencryptoki")
            .count();
    assert_eq!(group.matches("w/").count(), pointed, "{group}");
    assert!(pointed >= 2, "{group}");
    lab.group(&group);
    lab
}

/// f1: the shipped example group on the shipped example world lost the LUKS2 header's copy
/// of disk-root's key (mkplan re-enciphered the key, not the header). A group that leaves
/// the volume out is refused, naming the key and the device.
#[test]
fn zcrypt_losses_a_luks2_volume_the_group_leaves_out_is_refused_naming_key_and_volume() {
    let lab = example_group_on("zcrypt-world.yaml");
    let group = std::fs::read_to_string(lab.root.join("group.yaml")).unwrap();
    lab.group(&group.replace(
        "  - luks2_volume: {device: /dev/dasdb1, key_file: keys/dasdb1.key}\n",
        "",
    ));
    lab.tke("load", "03.0006,04.0006", "EP11", Some(B2));
    lab.tke("commit", "03.0006,04.0006", "EP11", None);
    lab.assert_refused(
        "luks2_volumes",
        &["\"disk-root\"", "/dev/dasdb1", "luks2_volume:"],
    );
}

/// f4: NEW was to be cleared while an openCryptoki operation on the group's APQNs held the
/// tokens' re-enciphered objects under it, because the file did not declare the tokens.
#[test]
fn zcrypt_losses_an_open_opencryptoki_operation_on_undeclared_tokens_is_refused() {
    let (lab, id) = token_lab_with_open_operation();
    lab.group(&ep11_group(
        "03.0006, 04.0006",
        C3,
        "\n  - zkey_keys: associated",
    ));
    lab.assert_refused("undeclared_stores", &[&id, "opencryptoki: tokens"]);
}

/// f7 (2e): a key with no associated APQNs is checked and re-enciphered by zkey with every
/// online APQN of its type, so it depends on the group; `zkey_keys: associated` missed it.
#[test]
fn zcrypt_losses_a_key_with_no_associated_apqns_is_refused() {
    let world = format!(
        "{}zkey:\n{}{}",
        ep11_cards(),
        ep11_key("k", BOTH),
        ep11_key("noapqn", "")
    );
    let lab = Lab::new(&world);
    lab.group(&ep11_group(
        "03.0006, 04.0006",
        B2,
        "\n  - zkey_keys: associated",
    ));
    lab.assert_refused("key_apqns_in_group", &["\"noapqn\"", "no associated APQNs"]);
}

/// f12: a group naming some of a key's APQNs re-enciphered it, which then worked on part of
/// them only.
#[test]
fn zcrypt_losses_a_key_associated_with_apqns_outside_the_group_is_refused() {
    let world = format!("{}zkey:\n{}", ep11_cards(), ep11_key("backup", BOTH));
    let lab = Lab::new(&world);
    lab.group(&ep11_group("04.0006", C3, "\n  - zkey_keys: associated"));
    lab.assert_refused("key_apqns_in_group", &["\"backup\"", "03.0006"]);
}

/// f1, fixed: the shipped example group on the shipped example world, its LUKS2 volume
/// declared, runs to the end: the tool steps (the volume's staged and completed with
/// zkey-cryptsetup and its key file), the set the operator performs, and no incident.
#[test]
fn zcrypt_losses_the_shipped_example_group_runs_on_its_world_without_incidents() {
    let lab = example_group_on("zcrypt-world.yaml");
    lab.tke("load", "03.0006,04.0006", "EP11", Some(B2));
    lab.tke("commit", "03.0006,04.0006", "EP11", None);
    // stdin is closed: apply runs the staging and stops at the first ceremony step (the set).
    let first = lab.run(&["apply", "group.yaml", "--auto-approve"]);
    let said = text(&first);
    assert!(said.contains("set_immediate"), "{said}");
    assert!(
        said.contains("zkey-cryptsetup reencipher /dev/dasdb1 --to-new --staged --key-file ")
            && !said.contains("fake passphrase"),
        "{said}"
    );
    lab.tke("set", "03.0006,04.0006", "EP11", None);
    lab.assert_no_incidents();
    let edited = std::fs::read_to_string(lab.root.join("w/opencryptoki/ep11tok3.conf"))
        .unwrap()
        .replace(&format!("0x{}", &A1[..32]), &format!("0x{}", &B2[..32]));
    std::fs::write(lab.root.join("w/opencryptoki/ep11tok3.conf"), edited).unwrap();
    let second = lab.ok(&["apply", "group.yaml", "--auto-approve"]);
    assert!(
        text(&second).contains("zkey-cryptsetup reencipher /dev/dasdb1 --complete --key-file "),
        "{}",
        text(&second)
    );
    let done = lab.run(&["plan", "group.yaml", "--detailed-exitcode"]);
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    lab.assert_no_incidents();
}

/// The shipped example groups drill on their world, every run converging with zero
/// incidents: the EP11 group (its LUKS2 volume and token declared) and the CCA group (set,
/// then re-encipher from OLD, with a LUKS2 volume).
#[test]
fn zcrypt_losses_the_shipped_example_groups_drill_on_their_world_without_incidents() {
    for (group, steps) in [
        ("zcrypt-ep11-group.yaml", "14 steps per change"),
        ("zcrypt-cca-group.yaml", "4 steps per change"),
    ] {
        let lab = shipped_group_on("zcrypt-world.yaml", group);
        let out = lab.run(&["drill", "group.yaml", "--runs", "2", "--seed", "2"]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(0), "{group}: {said}");
        assert!(said.contains(steps), "{group}: {said}");
        assert!(
            said.contains("2 converged, 0 refused safely, 0 failed; 0 incidents."),
            "{group}: {said}"
        );
        lab.assert_no_incidents();
    }
}

/// f5: an application check printing two contradictory `active:` lines was read as the last
/// one (the new key), the plan set without staging, and the application key was lost.
#[test]
fn zcrypt_losses_an_application_check_with_contradictory_lines_is_refused() {
    let world = format!(
        "{}applications:\n  - {{name: payments, type: WK, apqns: [{BOTH}], mkvp: \"{}\"}}\n",
        ep11_cards(),
        &A1[..32]
    );
    let lab = Lab::new(&world);
    let bin = lab.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, second) in [("vault-active", "active"), ("vault-staged", "staged")] {
        let script = format!(
            "#!/bin/sh\necho \"active: {a}\"\necho \"{second}: {b}\"\n[ {second} = staged ] && echo \"staged: {a}\"\nexit 0\n",
            a = &A1[..32],
            b = &B2[..32]
        );
        let path = bin.join(name);
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    lab.tke("load", "03.0006,04.0006", "EP11", Some(B2));
    lab.tke("commit", "03.0006,04.0006", "EP11", None);
    for (check, label) in [("vault-active", "active"), ("vault-staged", "staged")] {
        lab.group(&ep11_group(
            "03.0006, 04.0006",
            B2,
            &format!(
                "\n  - application: {{name: vault, check: [{check}], stage: [appkey, reencipher, payments, --to-new], complete: [appkey, reencipher, payments, --complete]}}"
            ),
        ));
        lab.assert_refused(
            "stores_observable",
            &[
                "application key \"vault\"",
                &format!("2 `{label}:` lines"),
                &format!("{label}: {}", &B2[..32]),
            ],
        );
    }
}

/// u1: with a change finished but for `zkey reencipher --complete`, the `.renc` is the key's
/// only usable copy; the refusal advised removing it "after checking". For an openCryptoki
/// operation it named zkey commands.
#[test]
fn zcrypt_losses_an_earlier_staged_copy_gets_advice_that_cannot_lose_it() {
    let world = format!(
        "latency_ms: 0
cards:
  - {{card: \"03\", type: CEX8P, serialnr: \"S3\", domains: [{{domain: \"0006\", WK: {{current: \"{B2}\"}}}}]}}
  - {{card: \"04\", type: CEX8P, serialnr: \"S4\", domains: [{{domain: \"0006\", WK: {{current: \"{B2}\"}}}}]}}
zkey:
  - {{name: k, key_type: EP11-AES, apqns: [{BOTH}], mkvp: \"{}\", renc_mkvp: \"{B2}\"}}
",
        &A1[..32]
    );
    let lab = Lab::new(&world);
    lab.group(&ep11_group(
        "03.0006, 04.0006",
        C3,
        "\n  - zkey_keys: associated",
    ));
    let said = lab.assert_refused(
        "no_earlier_staged_stores",
        &["\"k\"", "--complete --name k"],
    );
    assert!(!said.contains("remove NAME.renc"), "{said}");

    let (lab, id) = token_lab_with_open_operation();
    lab.group(&ep11_group(
        "03.0006, 04.0006",
        C3,
        "\n  - zkey_keys: associated\n  - opencryptoki: tokens",
    ));
    let said = lab.assert_refused(
        "no_earlier_staged_stores",
        &[&format!("pkcshsm_mk_change cancel --id {id}")],
    );
    assert!(
        !said.contains("zkey reencipher") && !said.contains(".renc"),
        "{said}"
    );
}
