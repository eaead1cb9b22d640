//! What the write-ahead journal costs per step, against the step's own latency.
//!
//! `cargo build --release && cargo run --release --example bench_journal`
//!
//! (a) In process: per step, an intent and an outcome in the journal and one entry in the audit
//!     trail, written two ways: each durable on its own ("each", the most a step could cost),
//!     and as `apply` writes them ("as apply": one durable batch per step holding the previous
//!     step's outcome and this step's intent; the audit entry unsynced, or on a database sent
//!     with the next batch). Timed over many steps in a folder on the same file system as the
//!     state directory; the median and the 90th percentile are compared with a step latency of
//!     50 ms (the goal: at most 5 %).
//! (b) End to end: `mkplan apply` with `MKPLAN_SIM_FAULTS=latency_ms=50` on a 3-unit
//!     instance (10 operations), wall time against 10 × 50 ms, with the key part decryption
//!     (Argon2id, by design slow) measured on its own and shown apart.
//! (c) With `MKPLAN_TEST_POSTGRES` set (a database URL): (a) on the PostgreSQL store, each
//!     record a committed row that checks the writer's lease. For figures a real server would
//!     give, run it under a cluster that keeps PostgreSQL's own fsync:
//!     `DURABLE=1 scripts/with-postgres cargo run --release --example bench_journal`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mkplan::apply::audit::Audit;
use mkplan::apply::journal::{Journal, Outcome, Record};
use mkplan::plan::Action;
use mkplan::store::Store;
use serde_json::json;

const STEP_LATENCY_MS: f64 = 50.0;
const STEPS: usize = 300;

/// How the records of a step are written.
#[derive(Clone, Copy)]
enum Writes {
    /// An intent, an outcome and an audit entry, each durable before the next: the most a
    /// step could cost.
    Each,
    /// As `apply` writes them: one durable batch per step (the previous step's outcome and
    /// this step's intent), and the step's audit entry unsynced in a folder, carried with the
    /// next batch on a database.
    AsApply,
}

fn main() {
    println!(
        "mkplan journal cost: {STEPS} steps, against a {STEP_LATENCY_MS} ms step (goal ≤ 5 %)"
    );
    println!("  each:     intent, outcome and audit entry each durable on its own");
    println!("  as apply: one durable batch per step (outcome + next intent), audit entry with it");
    let folder = tempfile::tempdir_in(".").expect("a folder beside the working directory");
    let mut file_medians = Vec::new();
    for writes in [Writes::Each, Writes::AsApply] {
        let per_step = in_process(&folder.path().join(label(writes)), writes);
        file_medians.push(report("(a) folder", writes, &per_step, None));
    }
    match std::env::var("MKPLAN_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => {
            let store = Store::parse(&url).expect("a PostgreSQL URL");
            println!("(c) PostgreSQL: {}", store.shown());
            for (writes, file_median) in [Writes::Each, Writes::AsApply]
                .into_iter()
                .zip(file_medians)
            {
                let scope = format!("bench:{}:{}", std::process::id(), label(writes));
                let mut writer = store
                    .writer(&scope, &["i".to_string()], "bench")
                    .expect("a lease");
                let audit = writer.audit().expect("the audit trail");
                let per_step = steps(&mut writer.journal, audit, writes);
                report("(c) database", writes, &per_step, Some(file_median));
            }
        }
        _ => println!(
            "(c) PostgreSQL skipped: set MKPLAN_TEST_POSTGRES (scripts/with-postgres does)"
        ),
    }
    end_to_end();
}

fn label(writes: Writes) -> &'static str {
    match writes {
        Writes::Each => "each",
        Writes::AsApply => "as-apply",
    }
}

/// Prints one line of figures; returns the median.
fn report(store: &str, writes: Writes, per_step: &[f64], file_median: Option<f64>) -> f64 {
    let (median, p90) = (percentile(per_step, 0.5), percentile(per_step, 0.9));
    println!(
        "{store}, {:<8} per step median {median:.3} ms, p90 {p90:.3} ms = {:.2} % / {:.2} % of a step{}",
        label(writes),
        100.0 * median / STEP_LATENCY_MS,
        100.0 * p90 / STEP_LATENCY_MS,
        file_median
            .map(|f| format!("; {:.1} × the folder's median", median / f))
            .unwrap_or_default()
    );
    median
}

fn in_process(state_dir: &Path, writes: Writes) -> Vec<f64> {
    std::fs::create_dir_all(state_dir).expect("a state folder");
    let key = mkplan::apply::journal_key::JournalKey::ephemeral();
    let mut journal = Journal::open(state_dir, &key).expect("journal");
    let audit = Audit::open(state_dir).expect("audit");
    steps(&mut journal, audit, writes)
}

fn steps(journal: &mut Journal, mut audit: Audit, writes: Writes) -> Vec<f64> {
    let mut times = Vec::with_capacity(STEPS);
    let mut previous: Option<String> = None;
    for n in 0..STEPS {
        let step = format!("r1.s{n}");
        let started = Instant::now();
        let intent = Record::Intent {
            step: step.clone(),
            action: Action::CommitNewMk,
            instance: "i".into(),
            unit: Some("u".into()),
            by_hand: false,
            send_within_ms: journal.send_window().map(|w| w.as_millis() as u64),
            at: None,
        };
        let event = json!({"kind": "step", "step": n, "outcome": "done"});
        match writes {
            Writes::Each => {
                journal.append(intent).unwrap();
                journal
                    .append(Record::outcome(step, Outcome::Done))
                    .unwrap();
                audit.record(event).unwrap();
            }
            Writes::AsApply => {
                let mut batch: Vec<Record> = previous
                    .take()
                    .map(|p| Record::outcome(p, Outcome::Done))
                    .into_iter()
                    .collect();
                batch.push(intent);
                journal.append_all(batch).unwrap();
                audit.write_all(vec![event]).unwrap();
                previous = Some(step);
            }
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    if let Some(last) = previous {
        journal
            .append(Record::outcome(last, Outcome::Done))
            .unwrap();
    }
    audit.sync().unwrap();
    times
}

fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn end_to_end() {
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/mkplan");
    if !binary.exists() {
        println!("(b) skipped: build the release binary first (cargo build --release)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let passwords = [
        ("MKPLAN_PART1_PASSWORD", "demo-custodian-1"),
        ("MKPLAN_PART2_PASSWORD", "demo-custodian-2"),
    ];
    let mut walls = Vec::new();
    let mut decrypts = Vec::new();
    for _ in 0..5 {
        let work = tempfile::tempdir().unwrap();
        for folder in ["plans/keyparts", "examples/fleets"] {
            std::fs::create_dir_all(work.path().join(folder)).unwrap();
        }
        for file in [
            "plans/three-units.yaml",
            "plans/keyparts/custodian-1.json",
            "plans/keyparts/custodian-2.json",
            "examples/fleets/three-units.yaml",
        ] {
            std::fs::copy(root.join(file), work.path().join(file)).unwrap();
        }
        let started = Instant::now();
        let status = Command::new(&binary)
            .current_dir(work.path())
            .args([
                "keypart",
                "vp",
                "plans/keyparts/custodian-1.json",
                "plans/keyparts/custodian-2.json",
                "--password-env",
                "MKPLAN_PART1_PASSWORD",
                "--password-env",
                "MKPLAN_PART2_PASSWORD",
            ])
            .envs(passwords)
            .output()
            .unwrap();
        assert!(status.status.success());
        decrypts.push(started.elapsed());
        let started = Instant::now();
        let output = Command::new(&binary)
            .current_dir(work.path())
            .args(["apply", "plans/three-units.yaml", "--auto-approve"])
            .env("MKPLAN_SIM_FAULTS", "latency_ms=50")
            .env("MKPLAN_STATE_DIR", work.path().join(".mkplan"))
            .env("MKPLAN_JOURNAL_KEY", work.path().join("journal.key"))
            .envs(passwords)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        walls.push(started.elapsed());
    }
    let ms = |d: &[Duration]| {
        percentile(
            &d.iter()
                .map(|d| d.as_secs_f64() * 1000.0)
                .collect::<Vec<_>>(),
            0.5,
        )
    };
    let (wall, decrypt) = (ms(&walls), ms(&decrypts));
    let floor = 10.0 * STEP_LATENCY_MS;
    println!("(b) apply, 3 units, latency_ms=50 (10 operations), median of 5:");
    println!(
        "    wall {wall:.0} ms = {:.2} × the {floor:.0} ms the operations take",
        wall / floor
    );
    println!(
        "    of which key part decryption (Argon2id, 2 parts) {decrypt:.0} ms; without it {:.2} ×",
        (wall - decrypt) / floor
    );
}
