//! The fake Crypto Express platform (`mkplan sim zcrypt`), driven as an operator or the
//! `zcrypt:` backend would: the world created from plans/zcrypt-world.yaml, the fake tools
//! run through the `DIR/bin` scripts with `SYSFS_ROOT` and `ZKEY_REPOSITORY` pointing into
//! the world, the ceremony steps through `mkplan sim zcrypt tke`. Each procedure of
//! zcrypt.md §5 done right ends with zero incidents; each harmful sequence of §6 records one.
//!
//! `ZWorld` is for other tests too: `ZWorld::example()`, `.tool(…)`, `.tke(…)`,
//! `.assert_no_incidents()`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Run, repo_file};

pub const A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
pub const B: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
pub const C: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
pub const EP11_APQNS: &str = "03.0006,04.0006";

/// A world folder in a temporary folder.
pub struct ZWorld {
    temp: tempfile::TempDir,
    pub dir: PathBuf,
}

fn run(mut command: Command) -> Run {
    let output = command.output().expect("run a command");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn mkplan() -> Command {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("mkplan"));
    command
        .env_remove("MKPLAN_ZCRYPT_FAULT")
        .env_remove("MKPLAN_ZCRYPT_LATENCY_MS")
        .env("NO_COLOR", "1");
    command
}

impl ZWorld {
    /// `mkplan sim zcrypt init` on a world file's text.
    pub fn new(yaml: &str) -> Self {
        let temp = tempfile::Builder::new()
            .prefix("mkplan-zcrypt-")
            .tempdir()
            .unwrap();
        std::fs::write(temp.path().join("world.yaml"), yaml).unwrap();
        // The example world's LUKS2 volume names its passphrase's file beside it.
        std::fs::create_dir_all(temp.path().join("keys")).unwrap();
        for file in ["dasdb1.key", "slot3.pin"] {
            std::fs::copy(
                repo_file(&format!("plans/keys/{file}")),
                temp.path().join("keys").join(file),
            )
            .unwrap();
        }
        let dir = temp.path().join("world");
        let mut command = mkplan();
        command
            .args(["sim", "zcrypt", "init"])
            .arg(&dir)
            .arg("--world")
            .arg(temp.path().join("world.yaml"));
        run(command).expect_code(0);
        Self { temp, dir }
    }

    /// The world of plans/zcrypt-world.yaml.
    pub fn example() -> Self {
        Self::new(&std::fs::read_to_string(repo_file("plans/zcrypt-world.yaml")).unwrap())
    }

    /// `DIR/bin/TOOL ARGS` with the environment pointing into the world.
    fn tool_command(&self, tool: &str, args: &[&str]) -> Command {
        let mut command = Command::new(self.dir.join("bin").join(tool));
        command
            .args(args)
            .env("SYSFS_ROOT", self.dir.join("sys"))
            .env("ZKEY_REPOSITORY", self.dir.join("zkey"))
            .env_remove("MKPLAN_ZCRYPT_FAULT");
        command
    }

    /// `DIR/bin/TOOL ARGS` with the environment pointing into the world, plus `env`.
    /// `pkcshsm_mk_change` reads the example token's USER PIN on its stdin.
    pub fn tool_with_env(&self, tool: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = self.tool_command(tool, args);
        command.envs(env.iter().copied());
        if tool == "pkcshsm_mk_change" {
            let pin = self.temp.path().join("keys/slot3.pin");
            command.stdin(std::fs::File::open(pin).unwrap());
        }
        run(command)
    }

    /// `DIR/bin/TOOL ARGS`, `stdin` on its stdin.
    pub fn tool_with_stdin(&self, tool: &str, args: &[&str], stdin: &str) -> Run {
        let file = self.temp.path().join("stdin");
        std::fs::write(&file, stdin).unwrap();
        let mut command = self.tool_command(tool, args);
        command.stdin(std::fs::File::open(file).unwrap());
        run(command)
    }

    pub fn tool(&self, tool: &str, args: &[&str]) -> Run {
        self.tool_with_env(tool, args, &[])
    }

    /// `mkplan sim zcrypt tke --world-dir DIR ARGS`.
    pub fn tke(&self, args: &[&str]) -> Run {
        let mut command = mkplan();
        command
            .args(["sim", "zcrypt", "tke", "--world-dir"])
            .arg(&self.dir)
            .args(args);
        run(command)
    }

    /// Load and commit (EP11) `vp` on both EP11 APQNs.
    pub fn load_and_commit_ep11(&self, vp: &str) {
        self.tke(&["load", "--apqns", EP11_APQNS, "--type", "EP11", "--vp", vp])
            .expect_code(0);
        self.tke(&["commit", "--apqns", EP11_APQNS, "--type", "EP11"])
            .expect_code(0);
    }

    pub fn incidents(&self) -> Run {
        let mut command = mkplan();
        command
            .args(["sim", "zcrypt", "incidents", "--world-dir"])
            .arg(&self.dir);
        run(command)
    }

    pub fn assert_no_incidents(&self) {
        self.incidents().expect_code(0);
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// The passphrase file of the example world's LUKS2 volume.
    pub fn key_file(&self) -> String {
        self.temp
            .path()
            .join("keys/dasdb1.key")
            .display()
            .to_string()
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative)).unwrap()
    }
}

/// Removes the `EXPECTED_WKVP` pin from the token config at `path` (which has one).
pub(crate) fn unpin_config(path: &std::path::Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with("EXPECTED_WKVP"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(kept, text, "the token pins its WK");
    std::fs::write(path, kept).unwrap();
}

fn edit_expected_wkvp(world: &ZWorld, vp: &str) {
    let path = world.path("opencryptoki/ep11tok3.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("EXPECTED_WKVP") {
                format!("EXPECTED_WKVP \"0x{}\"\n", &vp[..32])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

fn summary(run: &Run) -> &str {
    run.stdout.lines().last().unwrap_or("")
}

#[test]
fn ep11_reencipher_then_set_by_hand_loses_nothing() {
    let world = ZWorld::example();
    world.load_and_commit_ep11(B);
    let staged = world.tool(
        "zkey",
        &["reencipher", "--to-new", "--staged", "--apqns", EP11_APQNS],
    );
    staged.expect_code(0);
    assert_eq!(
        summary(&staged),
        "2 keys re-enciphered, 0 keys skipped, 0 keys failed to re-encipher"
    );
    assert!(world.path("zkey/disk-root.renc").exists());
    assert!(
        staged
            .stdout
            .contains("zkey-cryptsetup reencipher /dev/dasdb1"),
        "{}",
        staged.stdout
    );
    world
        .tool(
            "zkey-cryptsetup",
            &[
                "reencipher",
                "/dev/dasdb1",
                "--staged",
                "--key-file",
                &world.key_file(),
            ],
        )
        .expect_code(0);
    let created = world.tool(
        "pkcshsm_mk_change",
        &["reencipher", "--apqns", EP11_APQNS, "--ep11-wkvp", &B[..32]],
    );
    created.expect_code(0);
    let id = created
        .stdout
        .split("Master key change operation '")
        .nth(1)
        .unwrap()[..6]
        .to_string();
    let listed = world.tool("pkcshsm_mk_change", &["list", "--id", &id]);
    assert!(
        listed.stdout.contains(
            "    State:       Key objects have been re-enciphered,\n                 new master key(s) can now be set/activated\n"
        ),
        "{}",
        listed.stdout
    );

    world
        .tke(&["set", "--apqns", EP11_APQNS, "--type", "EP11"])
        .expect_code(0);
    let between = world.tool("zkey", &["validate", "--name", "disk-root"]);
    between.expect_code(0);
    assert!(
        between.stdout.contains("(re-enciphering pending)"),
        "{}",
        between.stdout
    );
    assert_eq!(
        summary(&between),
        "0 keys are valid, 1 keys are invalid, 0 warnings"
    );

    let completed = world.tool("zkey", &["reencipher", "--complete", "--apqns", EP11_APQNS]);
    assert_eq!(
        summary(&completed),
        "2 keys re-enciphered, 0 keys skipped, 0 keys failed to re-encipher"
    );
    world
        .tool(
            "zkey-cryptsetup",
            &[
                "reencipher",
                "/dev/dasdb1",
                "--complete",
                "--key-file",
                &world.key_file(),
            ],
        )
        .expect_code(0);
    let early = world.tool("pkcshsm_mk_change", &["finalize", "--id", &id]);
    early.expect_code(1);
    assert!(early.stderr.contains("EXPECTED_"), "{}", early.stderr);
    edit_expected_wkvp(&world, B);
    world
        .tool("pkcshsm_mk_change", &["finalize", "--id", &id])
        .expect_code(0);
    assert_eq!(world.tool("pkcshsm_mk_change", &["list"]).stdout, "");

    let after = world.tool("zkey", &["validate", "--apqns", EP11_APQNS]);
    assert!(
        after
            .stdout
            .contains(&format!("CURRENT master key (MKVP: {})", &B[..32])),
        "{}",
        after.stdout
    );
    assert_eq!(
        summary(&after),
        "2 keys are valid, 0 keys are invalid, 0 warnings"
    );
    assert!(!world.path("zkey/disk-root.renc").exists());
    world.assert_no_incidents();
}

#[test]
fn ep11_set_before_staging_records_the_lost_keys() {
    let world = ZWorld::example();
    world.load_and_commit_ep11(B);
    world
        .tool("zkey", &["reencipher", "--to-new", "--name", "backup"])
        .expect_code(0);
    world
        .tke(&["set", "--apqns", EP11_APQNS, "--type", "EP11"])
        .expect_code(0);
    let incidents = world.incidents();
    incidents.expect_code(1);
    for lost in [
        "zkey disk-root",
        "luks2 /dev/dasdb1",
        "opencryptoki slot 3 WK",
    ] {
        assert!(
            incidents.stdout.contains(&format!("INCIDENT {lost}:")),
            "{lost}: {}",
            incidents.stdout
        );
    }
    assert!(
        !incidents.stdout.contains("zkey backup"),
        "{}",
        incidents.stdout
    );
    assert!(
        incidents
            .stdout
            .contains("after `tke set WK on 03.0006,04.0006`"),
        "{}",
        incidents.stdout
    );
}

#[test]
fn a_second_ep11_change_with_a_renc_left_records_the_loss() {
    let world = ZWorld::new(&ep11_only_world());
    world.load_and_commit_ep11(B);
    world
        .tool("zkey", &["reencipher", "--to-new", "--staged"])
        .expect_code(0);
    world
        .tke(&["set", "--apqns", EP11_APQNS, "--type", "EP11"])
        .expect_code(0);
    world.assert_no_incidents();
    // Never completed; the next change begins.
    world.load_and_commit_ep11(C);
    let rerun = world.tool("zkey", &["reencipher", "--to-new", "--staged"]);
    assert!(
        rerun
            .stdout
            .contains("Key 'k1' is not valid, it is not re-enciphered"),
        "{}",
        rerun.stdout
    );
    assert_eq!(
        summary(&rerun),
        "0 keys re-enciphered, 1 keys skipped, 0 keys failed to re-encipher"
    );
    world
        .tke(&["set", "--apqns", EP11_APQNS, "--type", "EP11"])
        .expect_code(0);
    let incidents = world.incidents();
    incidents.expect_code(1);
    assert!(
        incidents.stdout.contains("INCIDENT zkey k1:"),
        "{}",
        incidents.stdout
    );
}

pub(crate) fn ep11_only_world() -> String {
    format!(
        "cards:\n  - card: \"03\"\n    type: CEX8P\n    domains:\n      - domain: \"0006\"\n        WK: {{current: \"{A}\"}}\n  - card: \"04\"\n    type: CEX8P\n    domains:\n      - domain: \"0006\"\n        WK: {{current: \"{A}\"}}\nzkey:\n  - {{name: k1, key_type: EP11-AES, apqns: [\"03.0006\", \"04.0006\"], mkvp: \"{}\"}}\n",
        &A[..32]
    )
}

#[test]
fn cca_set_then_reencipher_from_old_loses_nothing() {
    let world = ZWorld::example();
    world
        .tke(&[
            "load", "--apqns", "05.0006", "--type", "AES", "--part", "first",
        ])
        .expect_code(0);
    world
        .tke(&[
            "load",
            "--apqns",
            "05.0006",
            "--type",
            "AES",
            "--part",
            "last",
            "--vp",
            "c2c2c2c2c2c2c2c2",
        ])
        .expect_code(0);
    assert!(
        world
            .read("sys/devices/ap/card05/05.0006/mkvps")
            .starts_with("AES NEW: full 0xc2c2c2c2c2c2c2c2\n")
    );
    world
        .tke(&["set", "--apqns", "05.0006", "--type", "AES"])
        .expect_code(0);
    let old = world.tool("zkey", &["validate", "--name", "db-data"]);
    assert!(
        old.stdout
            .contains("OLD master key (MKVP: c1c1c1c1c1c1c1c1)"),
        "{}",
        old.stdout
    );
    assert!(
        old.stdout
            .contains("WARNING: The secure key is currently enciphered with the OLD master key")
    );
    assert_eq!(
        summary(&old),
        "1 keys are valid, 0 keys are invalid, 1 warnings"
    );
    world
        .tool("zkey", &["reencipher", "--from-old", "--name", "db-data"])
        .expect_code(0);
    let current = world.tool("zkey", &["validate", "--name", "db-data"]);
    assert!(
        current
            .stdout
            .contains("CURRENT master key (MKVP: c2c2c2c2c2c2c2c2)"),
        "{}",
        current.stdout
    );
    world.assert_no_incidents();
}

#[test]
fn zkey_validate_exits_0_with_invalid_keys_and_reencipher_1_on_a_failure() {
    let world = ZWorld::new(&ep11_only_world().replace(
        &format!("mkvp: \"{}\"", &A[..32]),
        &format!("mkvp: \"{}\"", &C[..32]),
    ));
    let validated = world.tool("zkey", &["validate"]);
    validated.expect_code(0);
    assert!(
        validated.stdout.contains(&format!(
            "        Enciphered with      : (unknown, MKVP: {})",
            &C[..32]
        )),
        "{}",
        validated.stdout
    );
    assert_eq!(
        summary(&validated),
        "0 keys are valid, 1 keys are invalid, 0 warnings"
    );
    // A valid key with no NEW loaded fails to re-encipher.
    let good = ZWorld::new(&ep11_only_world());
    let failed = good.tool("zkey", &["reencipher", "--to-new"]);
    failed.expect_code(1);
    assert!(failed.stderr.contains("No APQN found that is suitable for re-enciphering this secure AES key and has the NEW master key loaded"), "{}", failed.stderr);
    assert_eq!(
        summary(&failed),
        "0 keys re-enciphered, 0 keys skipped, 1 keys failed to re-encipher"
    );
    // --complete with nothing staged: skipped.
    let nothing = good.tool("zkey", &["reencipher", "--complete"]);
    nothing.expect_code(0);
    assert!(
        nothing
            .stdout
            .contains("Staged re-enciphering is not pending for key 'k1', skipping")
    );
}

#[test]
fn the_tools_serve_only_their_worlds_repository_and_sysfs() {
    let world = ZWorld::example();
    let mut command = Command::new(world.path("bin/zkey"));
    command
        .arg("validate")
        .env_remove("ZKEY_REPOSITORY")
        .env("SYSFS_ROOT", world.path("sys"));
    let run = run(command);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("ZKEY_REPOSITORY is unset, so zkey would read /etc/zkey/repository"),
        "{}",
        run.stderr
    );
    let elsewhere = world.tool_with_env("zkey", &["list"], &[("SYSFS_ROOT", "/sys")]);
    elsewhere.expect_code(1);
    assert!(
        elsewhere.stderr.contains("set SYSFS_ROOT="),
        "{}",
        elsewhere.stderr
    );
}

#[test]
fn the_example_world_and_the_bin_scripts_name_the_binary_and_the_world() {
    let world = ZWorld::example();
    let script = world.read("bin/zkey");
    assert!(
        script.contains("sim zcrypt tool zkey --world-dir"),
        "{script}"
    );
    assert!(script.contains(&world.dir.display().to_string()));
    assert!(Path::new(&world.dir).join("world.json").exists());
}

#[test]
fn clearing_new_after_an_in_place_reencipher_loses_the_key() {
    let world = ZWorld::new(&ep11_only_world());
    world.load_and_commit_ep11(B);
    world
        .tool("zkey", &["reencipher", "--to-new", "--in-place"])
        .expect_code(0);
    assert!(!world.path("zkey/k1.renc").exists());
    // Until the set the key is invalid: an outage, not a loss.
    let validated = world.tool("zkey", &["validate"]);
    assert!(
        validated
            .stdout
            .contains("INFO: A new master key has been loaded but not yet been set (made active)"),
        "{}",
        validated.stdout
    );
    assert_eq!(
        summary(&validated),
        "0 keys are valid, 1 keys are invalid, 0 warnings"
    );
    world.assert_no_incidents();
    world
        .tke(&["clear", "--apqns", EP11_APQNS, "--type", "EP11"])
        .expect_code(0);
    let incidents = world.incidents();
    incidents.expect_code(1);
    assert!(
        incidents.stdout.contains("INCIDENT zkey k1:")
            && incidents
                .stdout
                .contains("after `tke clear WK on 03.0006,04.0006`"),
        "{}",
        incidents.stdout
    );
}

#[test]
fn a_partial_set_lets_complete_succeed_and_warns_of_the_mixed_group() {
    let world = ZWorld::new(&ep11_only_world());
    world.load_and_commit_ep11(B);
    world
        .tool("zkey", &["reencipher", "--to-new"])
        .expect_code(0);
    world
        .tke(&["set", "--apqns", "03.0006", "--type", "EP11"])
        .expect_code(0);
    world
        .tool("zkey", &["reencipher", "--complete"])
        .expect_code(0);
    let incidents = world.incidents();
    incidents.expect_code(0);
    assert!(
        incidents.stdout.contains(
            "warning zkey key k1: the APQNs 03.0006,04.0006 hold different CURRENT WK master keys"
        ),
        "{}",
        incidents.stdout
    );
    world
        .tke(&["set", "--apqns", "04.0006", "--type", "EP11"])
        .expect_code(0);
    world.assert_no_incidents();
}
