//! A small builder so that each test reads like a scenario: a simulated fleet, a desired file
//! that points at it (`backend: sim:fleet.yaml`), both written into a fresh temporary folder,
//! and helpers to run the real `mkplan` binary there and read its answer.

#![allow(dead_code)]

pub mod postgres;
pub mod schemas;
pub mod signserv;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fs;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

/// The old master key: every current register holds it before the rotation.
pub const A: &str = "c2ad0a997751e04066912fa490a9976d6135d221c0df197dfb8c8a7a00000000";
/// The new master key: what plans/keyparts/custodian-1.json and custodian-2.json combine into
/// (and their test form, tests/fixtures/keyparts).
pub const B: &str = "57c060b114f5a20a4347cd12e326ebd6b98c5bf07b48e7f0fbeb4c1900000000";
/// A third key: a wrong key, or the key of another rotation.
pub const C: &str = "5c1b924542fecd099a9568826bce5018476b3c2a29944c9c7ff6e47f00000000";

/// The first instance's GUID.
pub const INSTANCE: &str = "5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b";

pub const DEMO_PASSWORDS: [&str; 2] = ["demo-custodian-1", "demo-custodian-2"];

const ADMINS: [(&str, &str); 3] = [
    (
        "alice",
        "3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a",
    ),
    (
        "bob",
        "7c217c217c217c217c217c217c217c217c217c217c217c217c217c217c217c21",
    ),
    (
        "carol",
        "9e5d9e5d9e5d9e5d9e5d9e5d9e5d9e5d9e5d9e5d9e5d9e5d9e5d9e5d9e5d9e5d",
    ),
];

// ---------------------------------------------------------------------------------------------
// Registers

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum New {
    Empty,
    FullUncommitted(&'static str),
    FullCommitted(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Current {
    Empty,
    Valid(&'static str),
}

/// New register `Empty`.
pub fn empty() -> New {
    New::Empty
}
/// New register `Full Uncommitted` with `vp`.
pub fn uncommitted(vp: &'static str) -> New {
    New::FullUncommitted(vp)
}
/// New register `Full Committed` with `vp`.
pub fn committed(vp: &'static str) -> New {
    New::FullCommitted(vp)
}
/// Current register `Valid` with `vp`.
pub fn valid(vp: &'static str) -> Current {
    Current::Valid(vp)
}

impl New {
    pub fn status(self) -> &'static str {
        match self {
            New::Empty => "Empty",
            New::FullUncommitted(_) => "Full Uncommitted",
            New::FullCommitted(_) => "Full Committed",
        }
    }
    pub fn vp(self) -> Option<&'static str> {
        match self {
            New::Empty => None,
            New::FullUncommitted(vp) | New::FullCommitted(vp) => Some(vp),
        }
    }
}

impl Current {
    pub fn status(self) -> &'static str {
        match self {
            Current::Empty => "Empty",
            Current::Valid(_) => "Valid",
        }
    }
    pub fn vp(self) -> Option<&'static str> {
        match self {
            Current::Empty => None,
            Current::Valid(vp) => Some(vp),
        }
    }
}

fn register_yaml(status: &str, vp: Option<&str>) -> String {
    match vp {
        None => format!("{{ status: {status} }}"),
        Some(vp) => format!("{{ status: {status}, verification_pattern: \"{vp}\" }}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Ids

/// The GUID of the `index`-th instance of a fleet (0-based).
pub fn instance_id(index: usize) -> String {
    if index == 0 {
        INSTANCE.to_string()
    } else {
        format!("11111111-2222-4333-8444-{index:012x}")
    }
}

/// The hsm_id of unit `n` (1-based, as in u1..u3) of the `instance`-th instance.
pub fn hsm(instance: usize, n: usize) -> String {
    format!(
        "{:08x}-0000-4000-8000-{n:012x}",
        0xa000_0000usize + instance
    )
}

/// The hsm_id of unit `n` of the first instance.
pub fn u(n: usize) -> String {
    hsm(0, n)
}

// ---------------------------------------------------------------------------------------------
// The fleet

#[derive(Clone, Debug)]
pub struct Unit {
    pub hsm_id: String,
    pub kind: &'static str,
    pub mode: &'static str,
    pub signature_threshold: u8,
    pub revocation_threshold: u8,
    pub admins: Vec<(&'static str, &'static str)>,
    pub new: New,
    pub current: Current,
}

#[derive(Clone, Debug)]
pub struct Instance {
    pub id: String,
    pub key_storage: &'static str,
    pub reports_rotation_status: bool,
    pub units: Vec<Unit>,
}

/// The simulator's whole state, built instance by instance, unit by unit. Unit modifiers
/// (`kind`, `imprint`, `signature_threshold`, `without_admin`) apply to the last unit added;
/// instance modifiers (`key_storage`, `reports_rotation_status`) to the last instance.
#[derive(Clone, Debug)]
pub struct Fleet {
    pub instances: Vec<Instance>,
}

impl Fleet {
    /// A fleet with one instance (id `INSTANCE`), key storage under `A`, reporting its
    /// rotation status, and no units yet.
    pub fn instance() -> Self {
        Fleet {
            instances: Vec::new(),
        }
        .and_instance()
    }

    /// Adds another instance (same defaults as `instance`).
    pub fn and_instance(mut self) -> Self {
        let index = self.instances.len();
        self.instances.push(Instance {
            id: instance_id(index),
            key_storage: A,
            reports_rotation_status: true,
            units: Vec::new(),
        });
        self
    }

    fn last_instance(&mut self) -> &mut Instance {
        self.instances.last_mut().expect("add an instance first")
    }

    fn last_unit(&mut self) -> &mut Unit {
        self.last_instance()
            .units
            .last_mut()
            .expect("add a unit first")
    }

    /// The MK the key storage is encrypted under (the simulator's ground truth).
    pub fn key_storage(mut self, vp: &'static str) -> Self {
        self.last_instance().key_storage = vp;
        self
    }

    pub fn reports_rotation_status(mut self, reports: bool) -> Self {
        self.last_instance().reports_rotation_status = reports;
        self
    }

    /// Adds an operational unit in admin mode, thresholds 2/2, admins alice, bob and carol.
    pub fn unit(mut self, new: New, current: Current) -> Self {
        let instance_index = self.instances.len() - 1;
        let instance = self.last_instance();
        let n = instance.units.len() + 1;
        instance.units.push(Unit {
            hsm_id: hsm(instance_index, n),
            kind: "operational",
            mode: "admin",
            signature_threshold: 2,
            revocation_threshold: 2,
            admins: ADMINS.to_vec(),
            new,
            current,
        });
        self
    }

    /// Adds `count` identical units.
    pub fn units(mut self, count: usize, new: New, current: Current) -> Self {
        for _ in 0..count {
            self = self.unit(new, current);
        }
        self
    }

    /// `operational`, `recovery` or `failover`.
    pub fn kind(mut self, kind: &'static str) -> Self {
        self.last_unit().kind = kind;
        self
    }

    /// Imprint mode: thresholds 0, no administrators.
    pub fn imprint(mut self) -> Self {
        let unit = self.last_unit();
        unit.mode = "imprint";
        unit.signature_threshold = 0;
        unit.revocation_threshold = 0;
        unit.admins.clear();
        self
    }

    pub fn signature_threshold(mut self, threshold: u8) -> Self {
        self.last_unit().signature_threshold = threshold;
        self
    }

    pub fn without_admin(mut self, name: &str) -> Self {
        self.last_unit().admins.retain(|(n, _)| *n != name);
        self
    }

    pub fn ids(&self) -> Vec<String> {
        self.instances.iter().map(|i| i.id.clone()).collect()
    }

    pub fn to_yaml(&self) -> String {
        let mut out = String::from("# generated by mkplan's integration tests\ninstances:\n");
        for (index, instance) in self.instances.iter().enumerate() {
            out += &format!("  - id: {}\n", instance.id);
            out += "    region: us-south\n";
            out += "    key_storage:\n";
            out += &format!("      verification_pattern: \"{}\"\n", instance.key_storage);
            out += "      keys: 3000\n";
            // The service takes a minute per 3,000 keys; the tests that want it slow say so.
            out += "      rewrap_ms_per_key: 0\n";
            out += &format!(
                "    reports_rotation_status: {}\n",
                instance.reports_rotation_status
            );
            out += "    crypto_units:\n";
            for (n, unit) in instance.units.iter().enumerate() {
                out += &format!("      - hsm_id: {}\n", unit.hsm_id);
                out += &format!("        type: {}\n", unit.kind);
                out += &format!(
                    "        location: \"[us-south].[AZ{}-CS{}].[{:02}].[{:02}]\"\n",
                    n % 3 + 1,
                    index + 1,
                    n + 1,
                    index % 100
                );
                out += &format!("        mode: {}\n", unit.mode);
                out += &format!(
                    "        signature_threshold: {}\n",
                    unit.signature_threshold
                );
                out += &format!(
                    "        revocation_threshold: {}\n",
                    unit.revocation_threshold
                );
                if unit.admins.is_empty() {
                    out += "        administrators: []\n";
                } else {
                    out += "        administrators:\n";
                    for (name, ski) in &unit.admins {
                        out += &format!("          - {{ name: {name}, ski: \"{ski}\" }}\n");
                    }
                }
                out += &format!(
                    "        new_register: {}\n",
                    register_yaml(unit.new.status(), unit.new.vp())
                );
                out += &format!(
                    "        current_register: {}\n",
                    register_yaml(unit.current.status(), unit.current.vp())
                );
            }
        }
        out += "incidents: []\n";
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The desired file

/// The desired key state for every instance of a fleet: one target MK, thresholds,
/// administrators, and (unless left out) the two demo key part files.
#[derive(Clone, Debug)]
pub struct Desired {
    pub target: &'static str,
    pub signature_threshold: u8,
    pub revocation_threshold: u8,
    pub administrators: Vec<&'static str>,
    pub key_parts: bool,
}

impl Desired {
    /// Rotate to `target` with thresholds 2/2, administrators alice and bob, and the demo key
    /// parts (which combine into `B`).
    pub fn rotate_to(target: &'static str) -> Self {
        Desired {
            target,
            signature_threshold: 2,
            revocation_threshold: 2,
            administrators: vec!["alice", "bob"],
            key_parts: true,
        }
    }

    pub fn without_key_parts(mut self) -> Self {
        self.key_parts = false;
        self
    }

    pub fn thresholds(mut self, signature: u8, revocation: u8) -> Self {
        self.signature_threshold = signature;
        self.revocation_threshold = revocation;
        self
    }

    pub fn administrators(mut self, names: &[&'static str]) -> Self {
        self.administrators = names.to_vec();
        self
    }

    pub fn to_yaml(&self, instance_ids: &[String]) -> String {
        let mut out = String::from("version: 1\nbackend: sim:fleet.yaml\ninstances:\n");
        for id in instance_ids {
            out += &format!("  - id: {id}\n");
            out += "    crypto_units: all\n";
            out += &format!("    signature_threshold: {}\n", self.signature_threshold);
            out += &format!("    revocation_threshold: {}\n", self.revocation_threshold);
            out += &format!("    administrators: [{}]\n", self.administrators.join(", "));
            out += "    master_key:\n";
            out += &format!("      verification_pattern: \"{}\"\n", self.target);
            if self.key_parts {
                out += "      key_parts:\n";
                out += "        - file: keyparts/custodian-1.json\n";
                out += "          password_env: MKPLAN_PART1_PASSWORD\n";
                out += "        - file: keyparts/custodian-2.json\n";
                out += "          password_env: MKPLAN_PART2_PASSWORD\n";
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The workspace: a temporary folder with fleet.yaml, desired.yaml and keyparts/

pub const FLEET: &str = "fleet.yaml";
pub const DESIRED: &str = "desired.yaml";

pub struct Workspace {
    pub dir: TempDir,
    /// The backend every `mkplan` run of this workspace uses.
    pub via: Via,
    /// With `Via::Http`: the `mkplan sim serve` on this workspace's fleet, started on demand.
    server: RefCell<Option<Server>>,
    /// The address its first server listened on; later ones listen there too.
    address: RefCell<Option<String>>,
    /// The PostgreSQL database that keeps this workspace's state (`MKPLAN_STATE`), if any;
    /// else its `.mkplan` folder.
    pub store: Option<String>,
    /// The folders of this workspace's journal keys, its operator's and the other operator's
    /// (`journal_key`), outside the workspace.
    keys: (TempDir, TempDir),
}

/// The outcome of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as JSON; panics with both streams when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e})\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code {} instead of {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// A plan that exited with `code`: its JSON, checked to be well formed.
    pub fn planned(&self, code: i32) -> Value {
        self.expect_code(code);
        let plan = self.json();
        assert_well_formed(&plan);
        plan
    }
}

pub fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

impl Workspace {
    pub fn new(fleet: &Fleet, desired: &Desired) -> Self {
        let workspace = Workspace::empty();
        workspace.write(FLEET, &fleet.to_yaml());
        workspace.write(DESIRED, &desired.to_yaml(&fleet.ids()));
        workspace
    }

    /// A temporary folder holding only copies of the two demo key part files, in their test
    /// form (tests/fixtures/keyparts: the same key parts and passwords at the lowest KDF cost
    /// mkplan accepts, so that the hundreds of runs that open them cost seconds, not minutes;
    /// the docs' and README's tests open the full-cost files under plans/).
    pub fn empty() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mkplan-test-")
            .tempdir()
            .expect("temporary folder");
        fs::create_dir(dir.path().join("keyparts")).expect("keyparts folder");
        for n in 1..=2 {
            let name = format!("keyparts/custodian-{n}.json");
            fs::copy(
                repo_file(&format!("tests/fixtures/{name}")),
                dir.path().join(&name),
            )
            .expect("copy a demo key part file");
        }
        Workspace {
            dir,
            via: via(),
            store: postgres::store(),
            server: RefCell::new(None),
            address: RefCell::new(None),
            keys: (
                tempfile::tempdir().expect("a folder for the journal key"),
                tempfile::tempdir().expect("a folder for the other journal key"),
            ),
        }
    }

    /// The journal key every mkplan this workspace runs seals its journals with, as one user
    /// on one machine would: kept outside the workspace, made by the first run that needs it.
    /// Each workspace has its own, as each has its own service instances' ids: the state
    /// folders beside one key are asked about each other's rewraps (`store::files`), and
    /// workspaces that shared one would refuse each other's.
    pub fn journal_key(&self) -> PathBuf {
        self.keys.0.path().join("journal.key")
    }

    /// The journal key of a second operator (another user, another machine).
    pub fn other_journal_key(&self) -> PathBuf {
        self.keys.1.path().join("journal.key")
    }

    /// The user's state home (`XDG_STATE_HOME`), where mkplan keeps the journal heads of each
    /// key, in `mkplan/heads/<key id>/`: outside the workspace and out of the real home.
    pub fn state_home(&self) -> PathBuf {
        self.keys.0.path().join("state")
    }

    /// The folder of the journal heads of the workspace's journal key (made by the first run
    /// that keeps a head).
    pub fn heads(&self) -> PathBuf {
        let heads = self.state_home().join("mkplan/heads");
        let mut keys: Vec<_> = fs::read_dir(&heads)
            .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert_eq!(
            keys.len(),
            1,
            "one journal key's heads in {}",
            heads.display()
        );
        keys.remove(0)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) {
        if name == FLEET {
            // The server holds the fleet in memory: the next run starts one on the new file.
            // Its operation log (if it was killed) belongs to the old file: it goes too.
            self.server.borrow_mut().take();
            let _ = fs::remove_file(mkplan::backend::sim::oplog::log_path(&self.path(name)));
        }
        fs::write(self.path(name), text).expect("write a test file");
    }

    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).expect("read a test file")
    }

    pub fn bytes(&self, name: &str) -> Vec<u8> {
        fs::read(self.path(name)).expect("read a test file")
    }

    /// Every file name in the folder (recursively), for "nothing else was created" checks.
    pub fn listing(&self) -> BTreeSet<String> {
        fn walk(root: &Path, folder: &Path, out: &mut BTreeSet<String>) {
            for entry in fs::read_dir(folder).expect("list the folder") {
                let path = entry.expect("folder entry").path();
                out.insert(path.strip_prefix(root).unwrap().display().to_string());
                if path.is_dir() {
                    walk(root, &path, out);
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out
    }

    /// Runs `mkplan ARGS` in the folder, with a clean environment for mkplan's own variables.
    pub fn mkplan(&self, args: &[&str]) -> Run {
        self.mkplan_with_env(args, &[])
    }

    pub fn mkplan_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        self.mkplan_in(self.dir.path(), args, env)
    }

    /// `mkplan ARGS` in the folder, not yet started, with a clean environment for mkplan's own
    /// variables: the state folder and journal key of the workspace's other runs, no backend,
    /// faults or passwords (a test adds what it needs).
    pub fn process(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("mkplan"));
        command
            .current_dir(self.dir.path())
            .env_remove("MKPLAN_BACKEND")
            .env_remove("MKPLAN_SIM_FAULTS")
            .env_remove("MKPLAN_PART1_PASSWORD")
            .env_remove("MKPLAN_PART2_PASSWORD")
            .env_remove(TKE_TEST_OA_ROOT.0)
            .env("MKPLAN_STATE_DIR", self.path(".mkplan"))
            .env("MKPLAN_JOURNAL_KEY", self.journal_key())
            .env("XDG_STATE_HOME", self.state_home())
            .env("NO_COLOR", "1")
            .args(args);
        match &self.store {
            Some(url) => command.env("MKPLAN_STATE", url),
            None => command.env_remove("MKPLAN_STATE"),
        };
        command
    }

    /// `mkplan ARGS` as another operator: from a folder of their own inside the workspace
    /// (`other-operator/`, so the desired file is `../desired.yaml`), with their own journal
    /// key. On a shared database they see what this workspace's operator journaled.
    pub fn mkplan_as_other(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let folder = self.path("other-operator");
        fs::create_dir_all(&folder).expect("the other operator's folder");
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == DESIRED { "../desired.yaml" } else { a })
            .collect();
        let key = self.other_journal_key().display().to_string();
        let home = self.keys.1.path().join("state").display().to_string();
        let mut env = env.to_vec();
        env.push(("MKPLAN_JOURNAL_KEY", &key));
        env.push(("XDG_STATE_HOME", &home));
        self.mkplan_in(&folder, &args, &env)
    }

    /// The audit trail's lines, from the workspace's store.
    pub fn audit_text(&self) -> String {
        match &self.store {
            Some(url) => {
                // The database may serve other workspaces' fleets too: this one's scopes name
                // its folder (`sim:/tmp/…/fleet.yaml`, or the served fleet's path).
                let folder = self.dir.path().display().to_string().replace('\'', "''");
                let mut text = postgres::column(
                    url,
                    &format!(
                        "SELECT line FROM mkplan_audit WHERE strpos(scope, '{folder}') > 0 ORDER BY scope, seq"
                    ),
                )
                .join("\n");
                text.push('\n');
                text
            }
            None => fs::read_to_string(self.path(".mkplan/audit.jsonl")).unwrap_or_default(),
        }
    }

    /// Runs `mkplan ARGS` with `cwd` as the working folder (the state directory, the journal
    /// key and the backend stay this workspace's).
    pub fn mkplan_in(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
        let faults = env
            .iter()
            .find(|(k, _)| *k == "MKPLAN_SIM_FAULTS")
            .map_or("", |(_, v)| *v);
        let backend = match self.via {
            Via::Sim => None,
            Via::Http => Some(self.server_for(faults)),
        };
        let mut process = self.process(args);
        process.current_dir(cwd);
        let mut command = Command::from_std(process);
        command.timeout(Duration::from_secs(60));
        for (key, value) in env {
            if backend.is_none() || *key != "MKPLAN_SIM_FAULTS" {
                command.env(key, value);
            }
        }
        if let Some(url) = &backend {
            command.env("MKPLAN_BACKEND", url);
        }
        let output = command.output().expect("run mkplan");
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        schemas::check_output(args, run.code, &run.stdout, &run.stderr);
        run
    }

    /// The URL of a server on this workspace's fleet, with `faults`. A run with faults gets a
    /// fresh server, so that operations count from 1 for that run, as the embedded simulator
    /// counts them per process; a server that died (crash_after_op) is started again.
    fn server_for(&self, faults: &str) -> String {
        let mut server = self.server.borrow_mut();
        let reusable = match server.as_mut() {
            Some(running) => faults.is_empty() && running.faults.is_empty() && running.alive(),
            None => false,
        };
        if !reusable {
            server.take();
            // The same address every time: the service keeps its endpoint across restarts,
            // and the journal binds its records to that endpoint.
            let listen = self
                .address
                .borrow()
                .clone()
                .unwrap_or_else(|| "127.0.0.1:0".into());
            let started = Server::start_on(&self.path(FLEET), faults, &[], &listen);
            let address = started.url.trim_start_matches("http://").to_string();
            *self.address.borrow_mut() = Some(address);
            *server = Some(started);
        }
        server.as_ref().expect("started").url.clone()
    }

    /// `mkplan plan desired.yaml --json --detailed-exitcode`.
    pub fn plan(&self) -> Run {
        self.mkplan(&["plan", DESIRED, "--json", "--detailed-exitcode"])
    }
}

/// A workspace for `fleet`, rotating every instance to `B` with the demo key parts.
pub fn rotate_to_b(fleet: &Fleet) -> Workspace {
    Workspace::new(fleet, &Desired::rotate_to(B))
}

// ---------------------------------------------------------------------------------------------
// Reading plans

/// (action, hsm_id) — the hsm_id is "" for an instance-wide step.
pub type Pair = (String, String);

pub fn on(action: &str, unit: String) -> Pair {
    (action.to_string(), unit)
}

/// An instance-wide step (the rewrap).
pub fn wide(action: &str) -> Pair {
    (action.to_string(), String::new())
}

/// `action` on units `ns` of the first instance.
pub fn each(action: &str, ns: impl IntoIterator<Item = usize>) -> Vec<Pair> {
    each_of(0, action, ns)
}

/// `action` on units `ns` of the `instance`-th instance.
pub fn each_of(instance: usize, action: &str, ns: impl IntoIterator<Item = usize>) -> Vec<Pair> {
    ns.into_iter()
        .map(|n| on(action, hsm(instance, n)))
        .collect()
}

pub fn steps(plan: &Value) -> &Vec<Value> {
    plan["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps array in {plan:#}"))
}

fn pair(step: &Value) -> Pair {
    (
        step["action"].as_str().expect("action").to_string(),
        step.get("unit")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    )
}

/// The sorted multiset of (action, unit) of the steps of one instance (or of all).
pub fn pairs(plan: &Value, instance: Option<&str>) -> Vec<Pair> {
    let mut out: Vec<Pair> = steps(plan)
        .iter()
        .filter(|s| instance.is_none_or(|id| s["instance"] == id))
        .map(pair)
        .collect();
    out.sort();
    out
}

/// Asserts the exact multiset of (action, unit) pairs of the plan.
#[track_caller]
pub fn assert_steps(plan: &Value, expected: Vec<Pair>) {
    assert_steps_of(plan, None, expected);
}

#[track_caller]
pub fn assert_steps_of(plan: &Value, instance: Option<&str>, mut expected: Vec<Pair>) {
    expected.sort();
    let actual = pairs(plan, instance);
    assert_eq!(
        actual,
        expected,
        "steps of {} differ\n--- plan steps\n{}",
        instance.unwrap_or("the plan"),
        steps(plan)
            .iter()
            .map(|s| format!(
                "{} {} {:?} deps {}",
                s["id"],
                s["action"],
                s.get("unit"),
                s["depends_on"]
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Structural checks every plan must pass: step ids unique, each dependency names an earlier
/// step of the same instance (steps are in apply order), `changes` iff there are steps.
#[track_caller]
pub fn assert_well_formed(plan: &Value) {
    assert_eq!(plan["format_version"], "1", "{plan:#}");
    let steps = steps(plan);
    assert_eq!(
        plan["changes"].as_bool(),
        Some(!steps.is_empty()),
        "changes flag"
    );
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for step in steps {
        let id = step["id"].as_str().expect("step id");
        let instance = step["instance"].as_str().expect("step instance");
        assert!(
            seen.iter().all(|(s, _)| *s != id),
            "step id {id} appears twice"
        );
        for dependency in step["depends_on"].as_array().expect("depends_on") {
            let dependency = dependency.as_str().expect("dependency id");
            let earlier = seen.iter().find(|(s, _)| *s == dependency);
            assert!(
                earlier.is_some(),
                "step {id} depends on {dependency}, which is not an earlier step"
            );
            assert_eq!(
                earlier.unwrap().1,
                instance,
                "step {id} depends on a step of another instance"
            );
        }
        seen.push((id, instance));
    }
}

/// The steps with this action (and unit, if given).
pub fn find<'a>(plan: &'a Value, action: &str, unit: Option<&str>) -> Vec<&'a Value> {
    steps(plan)
        .iter()
        .filter(|s| s["action"] == action && unit.is_none_or(|u| s["unit"] == u))
        .collect()
}

pub fn depends_on(step: &Value) -> BTreeSet<String> {
    step["depends_on"]
        .as_array()
        .expect("depends_on")
        .iter()
        .map(|d| d.as_str().expect("id").to_string())
        .collect()
}

pub fn id(step: &Value) -> String {
    step["id"].as_str().expect("id").to_string()
}

// ---------------------------------------------------------------------------------------------
// Reading refusals

/// The refusal with this check id in `{"refusals": [...]}`; panics listing the checks found.
#[track_caller]
pub fn refusal<'a>(refused: &'a Value, check: &str) -> &'a Value {
    let refusals = refused["refusals"]
        .as_array()
        .unwrap_or_else(|| panic!("no refusals in {refused:#}"));
    for r in refusals {
        for field in ["instance", "detail", "fix"] {
            assert!(
                r[field].as_str().is_some_and(|v| !v.trim().is_empty()),
                "refusal without {field}: {r:#}"
            );
        }
    }
    refusals
        .iter()
        .find(|r| r["check"] == check)
        .unwrap_or_else(|| {
            panic!(
                "no refusal with check {check}; found {:?}",
                refusals
                    .iter()
                    .map(|r| r["check"].clone())
                    .collect::<Vec<_>>()
            )
        })
}

/// The hsm_ids a refusal names.
pub fn refused_units(refusal: &Value) -> BTreeSet<String> {
    refusal["units"]
        .as_array()
        .expect("units")
        .iter()
        .map(|u| u["hsm_id"].as_str().expect("hsm_id").to_string())
        .collect()
}

/// The value a refusal gives for one unit.
#[track_caller]
pub fn refused_value(refusal: &Value, hsm_id: &str) -> String {
    refusal["units"]
        .as_array()
        .expect("units")
        .iter()
        .find(|u| u["hsm_id"] == hsm_id)
        .unwrap_or_else(|| panic!("the refusal does not name unit {hsm_id}: {refusal:#}"))["value"]
        .as_str()
        .expect("value")
        .to_string()
}

pub fn set(items: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    items.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// Backends: every scenario runs on the embedded simulator and over HTTP

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `backend: sim:fleet.yaml` from the desired file.
    Sim,
    /// `MKPLAN_BACKEND=http://…` of a `mkplan sim serve` on the workspace's fleet.
    Http,
}

thread_local! {
    static VIA: Cell<Via> = const { Cell::new(Via::Sim) };
}

/// The backend of workspaces created on this thread from now on.
pub fn via() -> Via {
    VIA.with(Cell::get)
}

/// Runs `scenario` with workspaces on `backend`.
pub fn run_on(backend: Via, scenario: fn()) {
    VIA.with(|v| v.set(backend));
    scenario();
    VIA.with(|v| v.set(Via::Sim));
}

/// `on_both_backends! { /// doc \n fn name() { … } }` makes a module `name` with three tests,
/// `name::sim` and `name::http`, that run the same body on each backend, and
/// `name::postgres`, on the simulator with the state in a PostgreSQL database of its own.
#[macro_export]
macro_rules! on_both_backends {
    ($($(#[$meta:meta])* fn $name:ident() $body:block)*) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn scenario() $body

                #[test]
                fn sim() {
                    $crate::support::run_on($crate::support::Via::Sim, scenario);
                }

                #[test]
                fn http() {
                    $crate::support::run_on($crate::support::Via::Http, scenario);
                }

                /// On the embedded simulator, with the state in PostgreSQL.
                #[test]
                fn postgres() {
                    $crate::support::postgres::run_on_postgres(scenario);
                }
            }
        )*
    };
}

/// Waits until `done` (polled every 20 ms), failing the test after 30 s naming `what`.
#[track_caller]
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    // Long enough for a debug mkplan to start, derive its keys and reach the database on a
    // loaded 2-core machine; it only matters when the condition never comes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A `mkplan sim serve` child process; killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    pub faults: String,
}

impl Server {
    /// Starts a server on `fleet` (port chosen by the system) and waits for its URL.
    pub fn start(fleet: &Path, faults: &str, extra: &[&str]) -> Server {
        Self::start_on(fleet, faults, extra, "127.0.0.1:0")
    }

    /// Starts a server on `fleet` listening on `listen` and waits for its URL.
    pub fn start_on(fleet: &Path, faults: &str, extra: &[&str], listen: &str) -> Server {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("mkplan"))
            .args(["sim", "serve", "--listen", listen, "--fleet"])
            .arg(fleet)
            .args(["--faults", faults])
            .args(extra)
            .env_remove("MKPLAN_SIM_TOKENS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mkplan sim serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("read the server's URL");
        assert!(
            line.starts_with("http://"),
            "mkplan sim serve did not start (printed {line:?}; is the fleet file locked?)"
        );
        Server {
            child,
            url: line.trim().to_string(),
            faults: faults.to_string(),
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the server as an operator would (SIGTERM): it writes its last changes into the
    /// fleet file and exits; its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait()
    }

    /// Waits for the server to exit (after a crash fault); its exit status.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for the server")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Trusts mkplan's test OA root: what a run against `mkplan sim serve --protocol tke` needs,
/// since the simulator signs its replies with test material (never set by default).
pub const TKE_TEST_OA_ROOT: (&str, &str) = ("MKPLAN_TKE_TEST_OA_ROOT", "1");

/// `env` and the test OA root, for a run against `sim serve --protocol tke`.
pub fn with_test_oa_root<'a>(env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    [env, &[TKE_TEST_OA_ROOT]].concat()
}

/// A child's stderr, line by line, read on a thread of its own so that a caller can wait with
/// a timeout (`recv_timeout`) while it writes to the child's stdin.
pub fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    lines
}
