//! What the write-ahead journal costs per step, against the step's own latency.
//!
//! `cargo build --release && cargo run --release --example bench_journal`
//!
//! (a) In process: per step, apply writes an intent and an outcome to the journal and one
//!     entry to the audit trail, each fsynced. Timed over many steps in a folder on the same
//!     file system as the state directory; the median and the 90th percentile are compared
//!     with a step latency of 50 ms (the goal: at most 5 %).
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

fn main() {
    let folder = tempfile::tempdir_in(".").expect("a folder beside the working directory");
    let per_step = in_process(folder.path());
    let median = percentile(&per_step, 0.5);
    let p90 = percentile(&per_step, 0.9);
    println!(
        "mkplan journal cost: {STEPS} steps, 2 journal records + 1 audit entry each, every one fsynced"
    );
    println!("(a) per step: median {median:.3} ms, p90 {p90:.3} ms");
    println!(
        "    against a {STEP_LATENCY_MS} ms step: median {:.2} %, p90 {:.2} % (goal ≤ 5 %)",
        100.0 * median / STEP_LATENCY_MS,
        100.0 * p90 / STEP_LATENCY_MS
    );
    match std::env::var("MKPLAN_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => {
            let store = Store::parse(&url).expect("a PostgreSQL URL");
            let scope = format!("bench:{}", std::process::id());
            let mut writer = store
                .writer(&scope, &["i".to_string()], "bench")
                .expect("a lease");
            let audit = writer.audit().expect("the audit trail");
            let per_step = steps(&mut writer.journal, audit);
            let (pg_median, pg_p90) = (percentile(&per_step, 0.5), percentile(&per_step, 0.9));
            println!(
                "(c) PostgreSQL ({}): per step median {pg_median:.3} ms, p90 {pg_p90:.3} ms",
                store.shown()
            );
            println!(
                "    against a {STEP_LATENCY_MS} ms step: median {:.2} %, p90 {:.2} % (goal ≤ 5 %); {:.1} × the file store's median",
                100.0 * pg_median / STEP_LATENCY_MS,
                100.0 * pg_p90 / STEP_LATENCY_MS,
                pg_median / median
            );
        }
        _ => println!(
            "(c) PostgreSQL skipped: set MKPLAN_TEST_POSTGRES (scripts/with-postgres does)"
        ),
    }
    end_to_end();
}

fn in_process(state_dir: &Path) -> Vec<f64> {
    let key = mkplan::apply::journal_key::JournalKey::ephemeral();
    let mut journal = Journal::open(state_dir, &key).expect("journal");
    let audit = Audit::open(state_dir).expect("audit");
    steps(&mut journal, audit)
}

/// Per step: an intent, an outcome and an audit entry, each durable before the next.
fn steps(journal: &mut Journal, mut audit: Audit) -> Vec<f64> {
    let mut times = Vec::with_capacity(STEPS);
    for n in 0..STEPS {
        let step = format!("r1.s{n}");
        let started = Instant::now();
        journal
            .append(Record::Intent {
                step: step.clone(),
                action: Action::CommitNewMk,
                instance: "i".into(),
                unit: Some("u".into()),
                by_hand: false,
                send_within_ms: journal.send_window().map(|w| w.as_millis() as u64),
            })
            .unwrap();
        journal
            .append(Record::outcome(step, Outcome::Done))
            .unwrap();
        audit
            .record(json!({"kind": "step", "step": n, "outcome": "done"}))
            .unwrap();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
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
