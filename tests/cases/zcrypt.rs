//! The `zcrypt:` backend end to end, through the binary, on the fake Crypto Express platform
//! (`mkplan sim zcrypt`, docs/zcrypt.md): a scripted operator performs each ceremony step
//! with the fake TKE, mkplan runs the fake zkey, and the world must record no incident.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub(crate) const OLD: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
pub(crate) const NEW: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
/// The passphrase of every test world's LUKS2 volume, in `keys/dasdb1.key` beside the world
/// and group files (a fake's, so no secret).
pub(crate) const LUKS2_PASSPHRASE: &str = "passphrase of the test volume\n";
/// The `volume:` of a zkey key in a world file, and the store line a group declares it with.
pub(crate) const LUKS2_VOLUME: &str = "    volume: { device: /dev/dasdb1, dm_name: enc-root, volume_type: luks2, key_file: keys/dasdb1.key }\n";
pub(crate) const LUKS2_STORE: &str =
    "  - luks2_volume: { device: /dev/dasdb1, key_file: keys/dasdb1.key }\n";

pub(crate) fn world_yaml(card_04_online: bool) -> String {
    format!(
        "latency_ms: 0
cards:
  - card: \"03\"
    type: CEX8P
    serialnr: \"93AABC0300000001\"
    domains:
      - domain: \"0006\"
        WK: {{ current: \"{OLD}\", new: empty }}
  - card: \"04\"
    type: CEX8P
    serialnr: \"93AABC0400000002\"
    online: {card_04_online}
    domains:
      - domain: \"0006\"
        WK: {{ current: \"{OLD}\" }}
zkey:
  - name: backup
    key_type: EP11-AES
    apqns: [\"03.0006\", \"04.0006\"]
    mkvp: \"{}\"
  - name: archive
    key_type: EP11-AES
    apqns: [\"03.0006\", \"04.0006\"]
    mkvp: \"{}\"
",
        &OLD[..32],
        &OLD[..32]
    )
}

pub(crate) struct World {
    _dir: tempfile::TempDir,
    pub(crate) root: PathBuf,
    tke_type: &'static str,
    vp: &'static str,
    /// Variables set for every mkplan this world runs (besides the harness's).
    pub(crate) env: Vec<(&'static str, String)>,
}

impl World {
    pub(crate) fn new(card_04_online: bool) -> Self {
        Self::with(&world_yaml(card_04_online), &ep11_group(), "EP11", NEW)
    }

    pub(crate) fn with(world: &str, group: &str, tke_type: &'static str, vp: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("world.yaml"), world).unwrap();
        std::fs::create_dir_all(root.join("keys")).unwrap();
        std::fs::write(root.join("keys/dasdb1.key"), LUKS2_PASSPHRASE).unwrap();
        let out = mkplan(
            &root,
            &["sim", "zcrypt", "init", "w", "--world", "world.yaml"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(root.join("group.yaml"), group).unwrap();
        Self {
            _dir: dir,
            root,
            tke_type,
            vp,
            env: Vec::new(),
        }
    }
}

pub(crate) fn ep11_group() -> String {
    format!(
        "domain_group: payroll
version: 1
backend: zcrypt:w/sys
apqns: [03.0006, 04.0006]
master_keys:
  - type: WK
    verification_pattern: \"{NEW}\"
zkey_repository: w/zkey
opencryptoki_config: w/opencryptoki
stores:
  - zkey_keys: associated
"
    )
}

impl World {
    fn path(&self) -> String {
        let wrap = self.root.join("wrap");
        format!(
            "{}:{}:{}",
            wrap.display(),
            self.root.join("w/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin("mkplan"));
        command
            .current_dir(&self.root)
            .env("PATH", self.path())
            .env("MKPLAN_STATE_DIR", self.root.join("state"))
            .env("MKPLAN_JOURNAL_KEY", self.journal_key())
            .env("XDG_STATE_HOME", self.root.join("keys/state"))
            .env_remove("MKPLAN_BACKEND")
            .env_remove("MKPLAN_STATE")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args);
        command
    }

    /// The world's journal key, outside its state folder (its heads in `keys/state`, the
    /// world's `XDG_STATE_HOME`).
    pub(crate) fn journal_key(&self) -> PathBuf {
        self.root.join("keys/journal.key")
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub(crate) fn tke(&self, action: &str, apqn: &str) {
        self.tke_with(action, apqn, (action != "clear").then_some(self.vp));
    }

    /// The fake TKE's `action` on `apqns` (comma-separated), loading `vp` where it names one.
    pub(crate) fn tke_with(&self, action: &str, apqns: &str, vp: Option<&str>) {
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
            self.tke_type,
        ];
        args.extend(vp.iter().flat_map(|vp| ["--vp", vp]));
        let out = mkplan(&self.root, &args);
        assert!(
            out.status.success(),
            "tke {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An apply whose operator performs every ceremony step until the first set, and stops
    /// there (exit 1): loads, commits and stages have run.
    pub(crate) fn apply_until_the_first_set(&self) {
        let (code, stderr) = self.apply_as(|action, _| {
            if action == "set_immediate" {
                Operator::Stops
            } else {
                Operator::Performs
            }
        });
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("the operator stopped"), "{stderr}");
    }

    /// `apply --auto-approve` with an operator who performs every ceremony step it is shown
    /// with the fake TKE, then answers `done`. Returns the exit code and stderr.
    pub(crate) fn apply(&self) -> (Option<i32>, String) {
        self.apply_as(|_, _| Operator::Performs)
    }

    /// `apply --auto-approve` with an operator who, shown ceremony step `action` on `apqn`,
    /// does what `operator` says.
    pub(crate) fn apply_as(
        &self,
        operator: impl FnMut(&str, &str) -> Operator,
    ) -> (Option<i32>, String) {
        self.apply_with(
            &[
                "apply",
                "group.yaml",
                "--auto-approve",
                "--verify-timeout-s",
                "20",
            ],
            operator,
        )
    }

    /// The command `args` (an apply), with `operator` answering its ceremony steps.
    pub(crate) fn apply_with(
        &self,
        args: &[&str],
        mut operator: impl FnMut(&str, &str) -> Operator,
    ) -> (Option<i32>, String) {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut seen = String::new();
        let mut pending: Option<(String, String)> = None;
        for line in BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.strip_prefix("Ceremony step ") {
                // "z1 (load_new_mk) on APQN 03.0006 of domain group payroll:"
                let action = rest.split(['(', ')']).nth(1).unwrap().to_string();
                let apqn = rest
                    .split("on APQN ")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_string();
                pending = Some((action, apqn));
            }
            if line.starts_with("Type 'done'") {
                let (action, apqn) = pending.take().expect("an instruction before the prompt");
                let verb = match action.as_str() {
                    "load_new_mk" => "load",
                    "commit_new_mk" => "commit",
                    "set_immediate" => "set",
                    _ => "clear",
                };
                match operator(&action, &apqn) {
                    Operator::Performs => {
                        self.tke(verb, &apqn);
                        let _ = stdin.write_all(b"done\n");
                    }
                    Operator::Stops => {
                        let _ = stdin.write_all(b"stop\n");
                    }
                    Operator::PerformsThenApplyKilled => {
                        self.tke(verb, &apqn);
                        let _ = child.kill();
                    }
                }
            }
        }
        let status = child.wait().unwrap();
        (status.code(), seen)
    }

    /// The plan's steps, as `action@APQN` for ceremony steps and `action:store` for tools.
    pub(crate) fn planned(&self) -> Vec<String> {
        let out = self.run(&["plan", "group.yaml", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| match s["apqn"].as_str() {
                Some(apqn) => format!("{}@{apqn}", s["action"].as_str().unwrap()),
                None => format!(
                    "{}:{}",
                    s["action"].as_str().unwrap(),
                    s["store"]["name"].as_str().unwrap()
                ),
            })
            .collect()
    }

    /// An apply with an operator who performs every step converges, having staged the
    /// world's keys on both APQNs, with no incident.
    pub(crate) fn assert_applies_and_converges(&self) {
        let stderr = self.assert_apply_converges();
        assert!(
            stderr.contains(
                "zkey reencipher --name archive --apqns 03.0006,04.0006 --to-new --staged"
            ),
            "{stderr}"
        );
    }

    /// An apply with an operator who performs every step converges with no incident.
    /// Returns its stderr.
    pub(crate) fn assert_apply_converges(&self) -> String {
        let (code, stderr) = self.apply();
        assert_eq!(code, Some(0), "{stderr}");
        self.assert_no_incidents();
        self.assert_converged();
        stderr
    }

    /// `plan` and `apply` are refused (exit 3), `plan` saying each of `needles`, with no
    /// ceremony step shown and no incident. Returns what `plan` said.
    pub(crate) fn assert_refused(&self, needles: &[&str]) -> String {
        let out = self.run(&["plan", "group.yaml"]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(3), "{said}");
        for needle in needles {
            assert!(said.contains(needle), "{needle:?} not in: {said}");
        }
        let (code, stderr) = self.apply();
        assert_eq!(code, Some(3), "{stderr}");
        assert!(!stderr.contains("Ceremony step"), "{stderr}");
        self.assert_no_incidents();
        said
    }

    /// The group file with `from` replaced by `to`, which it must hold.
    pub(crate) fn edit_group(&self, from: &str, to: &str) {
        let path = self.root.join("group.yaml");
        let group = std::fs::read_to_string(&path).unwrap();
        assert!(group.contains(from), "{from:?} not in {group}");
        std::fs::write(&path, group.replace(from, to)).unwrap();
    }

    pub(crate) fn assert_no_incidents(&self) {
        let out = mkplan(
            &self.root,
            &["sim", "zcrypt", "incidents", "--world-dir", "w"],
        );
        assert!(
            out.status.success(),
            "incidents: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `plan` shows nothing left to do.
    pub(crate) fn assert_plan_empty(&self) {
        let out = self.run(&["plan", "group.yaml", "--detailed-exitcode"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Nothing left to do, and the last APQN of the world shows the change's key as CURRENT.
    pub(crate) fn assert_converged(&self) {
        self.assert_plan_empty();
        let (apqn, mk_type) = match self.tke_type {
            "EP11" => ("card04/04.0006", "WK"),
            other => ("card06/06.0006", other),
        };
        let mkvps =
            std::fs::read_to_string(self.root.join(format!("w/sys/devices/ap/{apqn}/mkvps")))
                .unwrap();
        assert!(
            mkvps.contains(&format!("{mk_type} CUR: valid 0x{}", self.vp)),
            "{mkvps}"
        );
        assert!(!self.root.join("w/zkey/backup.renc").exists());
    }

    /// A `zkey` first on PATH that, at its `n`-th reencipher, runs the fake zkey and then
    /// kills mkplan at once (power lost right after the tool's effect).
    pub(crate) fn crash_mkplan_after_reencipher(&self, n: usize) {
        let wrap = self.root.join("wrap");
        std::fs::create_dir_all(&wrap).unwrap();
        let script = format!(
            "#!/bin/sh\ncase \"$*\" in *reencipher*)\n  n=$(( $(cat '{counter}' 2>/dev/null || echo 0) + 1 )); echo $n > '{counter}'\n  if [ $n -eq {n} ]; then '{real}' \"$@\"; kill -9 $PPID; exit 1; fi;;\nesac\nexec '{real}' \"$@\"\n",
            counter = wrap.join("count").display(),
            real = self.root.join("w/bin/zkey").display(),
        );
        let path = wrap.join("zkey");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A `tool` first on PATH that, run with `verb`, runs the fake tool and then kills mkplan
    /// at once (power lost right after the tool's effect, before its outcome is written).
    pub(crate) fn kill_mkplan_after(&self, tool: &str, verb: &str) {
        let wrap = self.root.join("wrap");
        std::fs::create_dir_all(&wrap).unwrap();
        let script = format!(
            "#!/bin/sh\ncase \"$1\" in {verb})\n  '{real}' \"$@\"; kill -9 $PPID; exit 1;;\nesac\nexec '{real}' \"$@\"\n",
            real = self.root.join("w/bin").join(tool).display(),
        );
        let path = wrap.join(tool);
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub(crate) fn remove_wrapper(&self) {
        for tool in ["zkey", "zkey-cryptsetup", "pkcshsm_mk_change"] {
            let _ = std::fs::remove_file(self.root.join("wrap").join(tool));
        }
    }
}

/// What the scripted operator does when shown a ceremony step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operator {
    /// Performs it with the fake TKE and answers `done`.
    Performs,
    /// Answers `stop` without performing it (the operator walks away).
    Stops,
    /// Performs it, then the apply is killed (SIGKILL) while it waits for `done`.
    PerformsThenApplyKilled,
}

/// `mkplan sim zcrypt init` of world file text `world`, which must be refused: what it said.
pub(crate) fn init_refused(world: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("world.yaml"), world).unwrap();
    let out = mkplan(
        dir.path(),
        &["sim", "zcrypt", "init", "w", "--world", "world.yaml"],
    );
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{said}");
    said
}

pub(crate) fn mkplan(cwd: &Path, args: &[&str]) -> Output {
    Command::new(assert_cmd::cargo::cargo_bin("mkplan"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn zcrypt_fresh_ep11_change_with_a_scripted_operator_converges_without_incidents() {
    let world = World::new(true);
    let planned = world.planned();
    let actions: Vec<&str> = planned
        .iter()
        .map(|s| s.split(['@', ':']).next().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "load_new_mk",
            "commit_new_mk",
            "load_new_mk",
            "commit_new_mk",
            "stage_reencipher",
            "stage_reencipher",
            "set_immediate",
            "set_immediate",
            "complete_reencipher",
            "complete_reencipher"
        ]
    );
    world.assert_applies_and_converges();
}

#[test]
fn zcrypt_a_crash_right_after_each_tool_step_is_settled_by_reading_and_the_rerun_converges() {
    for n in 1..=4 {
        let world = World::new(true);
        world.crash_mkplan_after_reencipher(n);
        let (code, stderr) = world.apply();
        assert_ne!(code, Some(0), "crash {n} did not stop the apply: {stderr}");
        world.remove_wrapper();
        let (code, stderr) = world.apply();
        assert_eq!(code, Some(0), "rerun after crash {n}: {stderr}");
        assert!(
            stderr.contains("was interrupted: settled by reading the stores again"),
            "{stderr}"
        );
        world.assert_no_incidents();
        world.assert_converged();
    }
}

#[test]
fn zcrypt_an_offline_apqn_is_refused_naming_the_check_and_the_apqn_with_nothing_run() {
    let world = World::new(false);
    let out = world.run(&["plan", "group.yaml"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("apqns_online") && stderr.contains("04.0006"),
        "{stderr}"
    );
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(!stderr.contains("Ceremony step"), "{stderr}");
    world.assert_no_incidents();
}

const CCA_OLD: &str = "c1c1c1c1c1c1c1c1";
const CCA_NEW: &str = "e5e5e5e5e5e5e5e5";

#[test]
fn zcrypt_a_cca_change_sets_first_then_moves_the_key_from_old_without_incidents() {
    let world = World::with(
        &format!(
            "latency_ms: 0
cards:
  - card: \"05\"
    type: CEX7C
    serialnr: \"93AAC005\"
    domains:
      - domain: \"0006\"
        AES: {{ current: \"{CCA_OLD}\", old: \"c0c0c0c0c0c0c0c0\" }}
zkey:
  - name: db-data
    key_type: CCA-AESDATA
    apqns: [\"05.0006\"]
    mkvp: \"{CCA_OLD}\"
"
        ),
        &format!(
            "domain_group: ledger
version: 1
backend: zcrypt:w/sys
apqns: [05.0006]
procedure: set_then_from_old
master_keys:
  - {{ type: AES, verification_pattern: \"{CCA_NEW}\" }}
zkey_repository: w/zkey
opencryptoki_config: w/opencryptoki
stores:
  - zkey_key: db-data
"
        ),
        "AES",
        CCA_NEW,
    );
    let plan = world.run(&["plan", "group.yaml"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("reencipher_from_old") && !text.contains("commit_new_mk"),
        "{text}"
    );
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("zkey reencipher --name db-data --apqns 05.0006 --from-old"),
        "{stderr}"
    );
    world.assert_no_incidents();
    let again = world.run(&["plan", "group.yaml", "--detailed-exitcode"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    let mkvps =
        std::fs::read_to_string(world.root.join("w/sys/devices/ap/card05/05.0006/mkvps")).unwrap();
    assert!(
        mkvps.contains(&format!("AES CUR: valid 0x{CCA_NEW}"))
            && mkvps.contains(&format!("AES OLD: valid 0x{CCA_OLD}")),
        "{mkvps}"
    );
}

/// Regression (adversary u2): an APQN's `mkvps` showing `WK CUR` twice with different keys
/// was refused with exit 1, as if unreadable. The evidence contradicts itself: exit 3, naming
/// the APQN, the file, both lines and what would settle it, with nothing run. Text no kernel
/// prints (a pattern of the wrong length) stays an error: exit 1.
#[test]
fn zcrypt_a_contradictory_mkvps_is_a_refusal_naming_the_apqn_file_and_lines() {
    let world = World::new(true);
    let path = world.root.join("w/sys/devices/ap/card03/03.0006/mkvps");
    let other = "b2".repeat(32);
    std::fs::write(
        &path,
        format!("WK CUR: valid 0x{OLD}\nWK NEW: empty -\nWK CUR: valid 0x{other}\n"),
    )
    .unwrap();
    let out = world.run(&["plan", "group.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    for needle in [
        "`mkvps_consistent`",
        "APQN 03.0006",
        "card03/03.0006/mkvps",
        "WK CUR is shown twice with different values",
        &format!("line 1 \"WK CUR: valid 0x{OLD}\""),
        &format!("line 3 \"WK CUR: valid 0x{other}\""),
        "Evidence that would settle it",
        "lszcrypt -c 03.0006",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("`mkvps_consistent`") && !stderr.contains("Ceremony step"),
        "{stderr}"
    );
    world.assert_no_incidents();

    std::fs::write(&path, "WK CUR: valid 0xabc\nWK NEW: empty -\n").unwrap();
    let out = world.run(&["plan", "group.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("0x and 64 hex digits"), "{stderr}");
}
