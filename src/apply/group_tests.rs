//! Applying a domain group with every tool scripted through the `ToolRunner` seam: a sysfs
//! tree in a temporary folder, a scripted `zkey` over an in-memory repository, and an
//! operator who performs each ceremony step by rewriting `mkvps`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Answer, GroupApply, GroupApplyError, GroupOperator, ock_mkvp_args};
use crate::apply::group_journal::{GroupJournal, GroupRecord};
use crate::apply::journal_key::JournalKey;
use crate::backend::zcrypt::group::ZcryptBackend;
use crate::backend::zcrypt::tools::{ScriptedRunner, ToolCall, ToolOutput};
use crate::model::domain_group_desired::parse_domain_group;
use crate::model::registers::{MkType, Mkvp};

const OLD: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const NEW: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
const APQNS: [&str; 2] = ["03.0006", "04.0006"];

fn mkvps_path(root: &Path, apqn: &str) -> PathBuf {
    root.join(format!("devices/ap/card{}/{apqn}/mkvps", &apqn[..2]))
}

fn sysfs(root: &Path) {
    for apqn in APQNS {
        let card = root.join(format!("devices/ap/card{}", &apqn[..2]));
        std::fs::create_dir_all(card.join(apqn)).unwrap();
        std::fs::write(card.join("type"), "CEX8P\n").unwrap();
        std::fs::write(card.join("online"), "1\n").unwrap();
        std::fs::write(card.join("serialnr"), format!("SERIAL{}\n", &apqn[..2])).unwrap();
        std::fs::write(card.join(apqn).join("online"), "1\n").unwrap();
        std::fs::write(
            mkvps_path(root, apqn),
            format!("WK CUR: valid 0x{OLD}\nWK NEW: empty -\n"),
        )
        .unwrap();
    }
}

/// The registers of an APQN as (CURRENT, NEW state, NEW VP).
fn registers(root: &Path, apqn: &str) -> (String, String, String) {
    let text = std::fs::read_to_string(mkvps_path(root, apqn)).unwrap();
    let words: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let hex = |w: &str| w.trim_start_matches("0x").to_string();
    (hex(words[0][3]), words[1][2].to_string(), hex(words[1][3]))
}

struct Tke(PathBuf);

impl GroupOperator for Tke {
    fn perform(&self, instruction: &str) -> Answer {
        let action = instruction.split(['(', ')']).nth(1).unwrap();
        let apqn = instruction
            .split("on APQN ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        let (current, _, new) = registers(&self.0, apqn);
        let text = match action {
            "load_new_mk" => format!("WK CUR: valid 0x{current}\nWK NEW: uncommitted 0x{NEW}\n"),
            "commit_new_mk" => format!("WK CUR: valid 0x{current}\nWK NEW: committed 0x{new}\n"),
            "set_immediate" => format!("WK CUR: valid 0x{new}\nWK NEW: empty -\n"),
            other => panic!("unexpected ceremony {other}"),
        };
        std::fs::write(mkvps_path(&self.0, apqn), text).unwrap();
        Answer::Done
    }
}

/// A scripted zkey: keys as (active MKVP, staged MKVP), `.renc` written as a real EP11 token.
struct Zkey {
    root: PathBuf,
    repository: PathBuf,
    keys: Mutex<BTreeMap<String, (String, Option<String>)>>,
    calls: Mutex<Vec<ToolCall>>,
    /// Reencipher runs that fail with no effect, by key name (once each).
    failing: Mutex<Vec<String>>,
}

impl Zkey {
    fn answer(&self, call: &ToolCall) -> ToolOutput {
        self.calls.lock().unwrap().push(call.clone());
        let mut keys = self.keys.lock().unwrap();
        let arg = |flag: &str| {
            call.args
                .iter()
                .position(|a| a == flag)
                .map(|i| call.args[i + 1].clone())
        };
        let ok = |stdout: String| ToolOutput {
            code: Some(0),
            stdout,
            stderr: String::new(),
        };
        if call.args[0] == "validate" {
            let mut out = String::new();
            for (name, (active, staged)) in keys.iter() {
                let pending = if staged.is_some() {
                    " (re-enciphering pending)"
                } else {
                    ""
                };
                out += &format!(
                    "Key                  : {name}\nStatus               : Valid\nKey type             : EP11-AES\nEnciphered with      : CURRENT master key (MKVP: {active})\nRe-enciphered        : (never){pending}\n\n"
                );
            }
            return ok(out + "2 keys are valid, 0 keys are invalid, 0 warnings\n");
        }
        if call.args[0] == "list" {
            // No key of this repository has a volume.
            let mut out = String::new();
            for name in keys.keys() {
                let one = |v: &str| vec![v.to_string()];
                out += &crate::backend::zcrypt::fake::zkey_list::record(
                    name,
                    &[
                        ("Key type", one("EP11-AES")),
                        ("Volumes", one("(none)")),
                        ("APQNs", one("03.0006")),
                        ("Volume type", one("luks2")),
                    ],
                );
            }
            return ok(out);
        }
        let name = arg("--name").unwrap();
        let mut failing = self.failing.lock().unwrap();
        if let Some(index) = failing.iter().position(|n| n == &name) {
            failing.remove(index);
            return ToolOutput {
                code: Some(1),
                stdout: String::new(),
                stderr: "zkey: the EP11 host library is not available\n".into(),
            };
        }
        let renc = self.repository.join(format!("{name}.renc"));
        let key = keys.get_mut(&name).unwrap();
        if call.args.contains(&"--staged".to_string()) {
            let (_, state, new) = registers(&self.root, "03.0006");
            assert_eq!(state, "committed");
            let token = crate::backend::zcrypt::fake::render::token(
                crate::backend::zcrypt::fake::world::KeyType::Ep11Aes,
                &new,
                &name,
                true,
            );
            std::fs::write(&renc, token).unwrap();
            key.1 = Some(new[..32].to_string());
        } else if call.args.contains(&"--complete".to_string()) {
            key.0 = key.1.take().unwrap();
            std::fs::remove_file(&renc).unwrap();
        }
        ok(format!(
            "Re-enciphering key '{name}'\n1 keys re-enciphered, 0 keys skipped, 0 keys failed to re-encipher\n"
        ))
    }
}

fn setup(
    failing: &[&str],
) -> (
    tempfile::TempDir,
    Arc<Zkey>,
    ZcryptBackend,
    crate::model::domain_group_desired::DesiredGroup,
) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sys");
    sysfs(&root);
    let repository = dir.path().join("zkey");
    std::fs::create_dir_all(&repository).unwrap();
    let zkey = Arc::new(Zkey {
        root: root.clone(),
        repository: repository.clone(),
        keys: Mutex::new(
            ["k1", "k2"]
                .iter()
                .map(|n| (n.to_string(), (OLD[..32].to_string(), None)))
                .collect(),
        ),
        calls: Mutex::new(Vec::new()),
        failing: Mutex::new(failing.iter().map(ToString::to_string).collect()),
    });
    let scripted = Arc::clone(&zkey);
    let backend = ZcryptBackend::open(
        &root,
        Arc::new(ScriptedRunner(move |call: &ToolCall| {
            Ok(scripted.answer(call))
        })),
    )
    .unwrap();
    let text = format!(
        "domain_group: g\nversion: 1\napqns: [03.0006, 04.0006]\nmaster_keys:\n  - {{ type: WK, verification_pattern: \"{NEW}\" }}\nzkey_repository: {}\nstores:\n  - zkey_keys: associated\n",
        repository.display()
    );
    let desired = parse_domain_group("g.yaml", &text, dir.path()).unwrap();
    (dir, zkey, backend, desired)
}

fn journal_key() -> &'static JournalKey {
    static KEY: std::sync::OnceLock<JournalKey> = std::sync::OnceLock::new();
    KEY.get_or_init(JournalKey::ephemeral)
}

fn apply(
    dir: &Path,
    backend: &ZcryptBackend,
    desired: &crate::model::domain_group_desired::DesiredGroup,
) -> Result<usize, GroupApplyError> {
    let mut journal = GroupJournal::open(dir, &backend.identity(desired), journal_key()).unwrap();
    GroupApply {
        backend,
        desired,
        journal: &mut journal,
        operator: &Tke(dir.join("sys")),
        verify_timeout: Duration::from_secs(2),
        progress: &|_| {},
        user_pins: Some(Default::default()),
    }
    .run()
}

#[test]
fn a_scripted_ep11_change_runs_every_tool_with_the_groups_apqns_and_journals_each_step() {
    let (dir, zkey, backend, desired) = setup(&[]);
    assert_eq!(apply(dir.path(), &backend, &desired).unwrap(), 10);
    for apqn in APQNS {
        assert_eq!(registers(&dir.path().join("sys"), apqn).0, NEW);
    }
    assert!(
        zkey.keys
            .lock()
            .unwrap()
            .values()
            .all(|(active, staged)| active == &NEW[..32] && staged.is_none())
    );
    let calls = zkey.calls.lock().unwrap();
    let reencipher: Vec<&ToolCall> = calls.iter().filter(|c| c.args[0] == "reencipher").collect();
    assert_eq!(reencipher.len(), 4);
    for call in calls.iter() {
        assert!(call.env.iter().any(|(k, _)| k == "SYSFS_ROOT"), "{call:?}");
        assert!(
            call.env.iter().any(|(k, _)| k == "ZKEY_REPOSITORY"),
            "{call:?}"
        );
        // The inventory lists the whole repository (read only), to find keys on the group's
        // APQNs that the file does not declare; every other call names the APQNs.
        assert!(
            call.args == ["list"]
                || call
                    .args
                    .windows(2)
                    .any(|w| w == ["--apqns", "03.0006,04.0006"]),
            "{call:?}"
        );
    }
    let journal =
        GroupJournal::open(dir.path(), &backend.identity(&desired), journal_key()).unwrap();
    let intents = journal
        .records()
        .iter()
        .filter(|r| matches!(r, GroupRecord::Intent { .. }))
        .count();
    let outcomes = journal
        .records()
        .iter()
        .filter(|r| matches!(r, GroupRecord::Outcome { .. }))
        .count();
    assert_eq!((intents, outcomes), (10, 10));
    assert!(matches!(
        journal.records().last(),
        Some(GroupRecord::Done { .. })
    ));
    drop(calls);
    // Converged: a rerun runs nothing.
    assert_eq!(apply(dir.path(), &backend, &desired).unwrap(), 0);
}

#[test]
fn a_failed_stage_stops_before_any_set_and_the_rerun_continues_from_the_stores() {
    let (dir, zkey, backend, desired) = setup(&["k2"]);
    let error = apply(dir.path(), &backend, &desired)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("stage_reencipher") && error.contains("EP11 host library"),
        "{error}"
    );
    // k1 staged, k2 not, and no APQN set: the old key is still CURRENT everywhere.
    assert!(zkey.keys.lock().unwrap()["k1"].1.is_some());
    for apqn in APQNS {
        assert_eq!(registers(&dir.path().join("sys"), apqn).0, OLD);
    }
    assert_eq!(apply(dir.path(), &backend, &desired).unwrap(), 5);
    assert!(
        zkey.keys
            .lock()
            .unwrap()
            .values()
            .all(|(active, _)| active == &NEW[..32])
    );
}

#[test]
fn a_card_swapped_mid_change_is_refused_by_its_serial_number() {
    let (dir, _zkey, backend, desired) = setup(&["k1"]);
    assert!(apply(dir.path(), &backend, &desired).is_err());
    std::fs::write(dir.path().join("sys/devices/ap/card04/serialnr"), "OTHER\n").unwrap();
    let Err(GroupApplyError::Refused(refusal)) = apply(dir.path(), &backend, &desired) else {
        panic!("not refused");
    };
    assert_eq!(refusal.check, "card_serial_numbers");
    assert!(
        refusal
            .message
            .contains("card 04 was serial SERIAL04, now OTHER"),
        "{refusal}"
    );
}

#[test]
fn pkcshsm_mk_change_gets_each_new_key_as_long_as_it_reads_it() {
    let vp = |t: MkType, hex: &str| Mkvp::parse(t, hex).unwrap();
    // EP11: 16 bytes, even from a whole 32-byte pattern; CCA: 8 bytes.
    let wk = ock_mkvp_args(MkType::Wk, &vp(MkType::Wk, &"b2".repeat(32))).unwrap();
    assert_eq!(wk, ["--ep11-wkvp".to_string(), "b2".repeat(16)]);
    for (t, flag) in [
        (MkType::Sym, "--cca-sym-mkvp"),
        (MkType::Aes, "--cca-aes-mkvp"),
        (MkType::Apka, "--cca-apka-mkvp"),
    ] {
        let args = ock_mkvp_args(t, &vp(t, &"e5".repeat(8))).unwrap();
        assert_eq!(args, [flag.to_string(), "e5".repeat(8)]);
    }
    // The CCA token never uses ASYM: no --cca-asym-mkvp, whose 8 bytes are not the
    // 16 the kernel shows.
    assert!(ock_mkvp_args(MkType::Asym, &vp(MkType::Asym, &"a9".repeat(16))).is_err());
}
