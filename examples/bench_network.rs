//! Apply and plan over HTTP against `mkplan sim serve`, as ratios to what the step graph
//! allows, measured in one run (the machine is shared and noisy: compare within a run).
//!
//! `cargo build --release && cargo run --release --example bench_network`
//!
//! - apply, 1 instance × 3 units, `latency_ms=200`: wall ÷ (4 × 200 ms), the critical path
//!   (load → commit → rewrap → set immediate); goal ≤ 1.15;
//! - apply, 100 × 3, `latency_ms=50`, `--parallelism 64`: wall ÷ max(4 × 50 ms, operations ×
//!   50 ms ÷ 64); goal ≤ 1.25;
//! - apply, 1,000 × 3, `latency_ms=50`, `--parallelism 256`: wall ÷ (operations × 50 ms ÷
//!   256); reported against the same goal, ≤ 1.25;
//! - with `BENCH_SERIAL=1`, 100 × 3 with `--parallelism 1` (what a one-command-at-a-time tool
//!   gets; 50 s); with `BENCH_PLAN=1`, plan (refresh included) of 1,000 × 3 over HTTP, against
//!   the embedded simulator.
//!
//! `MKPLAN_BIN=PATH` measures another build (an older one, for a before/after).
//! Each apply ends by stopping the server cleanly (SIGTERM) and reading the fleet file it
//! leaves: no incidents.
//!
//! Each apply is timed twice: the whole command (process start, refresh, plan, the key part
//! decryption, the steps, the final check) and the executor alone (first intent to last
//! outcome, which `apply` prints). The key part decryption (Argon2id, 64 MiB, slow by
//! design) is also timed on its own with `keypart vp`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const PASSWORDS: [(&str, &str); 2] = [
    ("MKPLAN_PART1_PASSWORD", "demo-custodian-1"),
    ("MKPLAN_PART2_PASSWORD", "demo-custodian-2"),
];
/// Steps on the critical path of a rotation: load, commit, rewrap, set immediate.
const CRITICAL_PATH: f64 = 4.0;
/// Mutating operations per 3-unit instance: 3 loads, 3 commits, 1 rewrap, 3 set immediate.
const OPERATIONS_PER_INSTANCE: f64 = 10.0;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> PathBuf {
    std::env::var_os("MKPLAN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/mkplan"))
}

/// A folder with `fleet.yaml` (`n` fresh 3-unit instances), `desired.yaml` and the demo key
/// parts.
fn workspace(n: usize) -> tempfile::TempDir {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let fleet = std::fs::read_to_string(root().join("examples/fleets/three-units.yaml")).unwrap();
    let desired = std::fs::read_to_string(root().join("plans/three-units.yaml")).unwrap();
    let block = |text: &str| {
        let start = text.find("  - id:").expect("an instance");
        let end = text[start..]
            .find("\nincidents:")
            .map_or(text.len(), |e| start + e + 1);
        text[start..end].to_string()
    };
    // The network is what is measured here: the simulated rewrap takes no time.
    let fleet = fleet.replace("rewrap_ms_per_key: 1", "rewrap_ms_per_key: 0");
    let (fleet_block, desired_block) = (block(&fleet), block(&desired));
    let mut fleet_text = String::from("instances:\n");
    let mut desired_text = String::from("version: 1\ninstances:\n");
    for index in 0..n {
        let id = format!("5b2e6f7a-0c1d-4e8f-9a3b-{index:012x}");
        fleet_text += &fleet_block
            .replace("5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b", &id)
            .replace("0a1b2c3d-0000-", &format!("0a1b2c3d-{index:04x}-"));
        desired_text += &desired_block.replace("5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b", &id);
    }
    fleet_text += "incidents: []\n";
    std::fs::write(folder.path().join("fleet.yaml"), fleet_text).unwrap();
    std::fs::write(folder.path().join("desired.yaml"), desired_text).unwrap();
    std::fs::create_dir(folder.path().join("keyparts")).unwrap();
    for n in 1..=2 {
        let name = format!("keyparts/custodian-{n}.json");
        std::fs::copy(root().join("plans").join(&name), folder.path().join(&name)).unwrap();
    }
    folder
}

struct Server(Child, String);

impl Server {
    fn start(fleet: &Path, faults: &str) -> Server {
        let mut child = Command::new(binary())
            .args([
                "sim",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--faults",
                faults,
                "--fleet",
            ])
            .arg(fleet)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mkplan sim serve");
        let mut url = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut url)
            .unwrap();
        Server(child, url.trim().to_string())
    }
}

impl Server {
    /// Stops the server as an operator would (SIGTERM): it finishes its last commit and
    /// leaves the whole state in the fleet file.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs mkplan in `folder`; (wall seconds, stderr).
fn mkplan(folder: &Path, args: &[&str], backend: &str) -> (f64, String) {
    let started = Instant::now();
    let output = Command::new(binary())
        .current_dir(folder)
        .args(args)
        .env("MKPLAN_BACKEND", backend)
        .env("MKPLAN_STATE_DIR", folder.join(".mkplan"))
        .env("MKPLAN_JOURNAL_KEY", folder.join("journal.key"))
        .envs(PASSWORDS)
        .output()
        .expect("run mkplan");
    let wall = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.code().is_some_and(|c| c == 0 || c == 2),
        "mkplan {args:?} failed:\n{stderr}"
    );
    (wall, stderr)
}

/// "Apply complete: N steps in X s" → X.
fn executor_seconds(stderr: &str) -> f64 {
    let after = stderr
        .split("steps in ")
        .nth(1)
        .expect("apply prints its step time");
    after.split(" s").next().unwrap().parse().unwrap()
}

/// Applies a fresh fleet of `n` instances; (whole command, executor) in seconds.
fn apply(n: usize, latency_ms: u64, parallelism: usize) -> (f64, f64) {
    let folder = workspace(n);
    let server = Server::start(
        &folder.path().join("fleet.yaml"),
        &format!("latency_ms={latency_ms}"),
    );
    let parallelism = parallelism.to_string();
    let (wall, stderr) = mkplan(
        folder.path(),
        &[
            "apply",
            "desired.yaml",
            "--auto-approve",
            "--parallelism",
            &parallelism,
        ],
        &server.1,
    );
    server.stop();
    let text = std::fs::read_to_string(folder.path().join("fleet.yaml")).unwrap();
    let fleet = mkplan::backend::sim::Fleet::parse("fleet.yaml", &text).expect("the fleet reads");
    assert!(
        fleet.incidents.is_empty(),
        "the apply caused incidents: {:?}",
        fleet.incidents
    );
    let oplog = folder.path().join("fleet.yaml.oplog");
    assert!(!oplog.exists(), "a clean stop leaves no operation log");
    (wall, executor_seconds(&stderr))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Prints one case. `decrypt_s`, the key part decryption timed alone, is what the whole
/// command cannot hide: the first step is a load, which needs the key.
fn report(name: &str, bound_s: f64, goal: f64, decrypt_s: f64, runs: &[(f64, f64)]) {
    let wall = median(runs.iter().map(|r| r.0).collect());
    let executor = median(runs.iter().map(|r| r.1).collect());
    println!(
        "{name}\n    bound {bound_s:.3} s; steps {executor:.3} s = {:.2} × bound; whole command {wall:.3} s = {:.2} × bound (goal ≤ {goal}), {:.2} × bound without the key part decryption; median of {}",
        executor / bound_s,
        wall / bound_s,
        (wall - decrypt_s) / bound_s,
        runs.len()
    );
}

fn main() {
    if !binary().exists() {
        eprintln!("build the release binary first: cargo build --release");
        std::process::exit(1);
    }
    let folder = workspace(1);
    let decrypt = median(
        (0..3)
            .map(|_| {
                mkplan(
                    folder.path(),
                    &[
                        "keypart",
                        "vp",
                        "keyparts/custodian-1.json",
                        "keyparts/custodian-2.json",
                        "--password-env",
                        "MKPLAN_PART1_PASSWORD",
                        "--password-env",
                        "MKPLAN_PART2_PASSWORD",
                    ],
                    "",
                )
                .0
            })
            .collect(),
    );
    println!("key part decryption (2 parts, Argon2id 64 MiB, in parallel): {decrypt:.3} s\n");

    let runs: Vec<_> = (0..3).map(|_| apply(1, 200, 10)).collect();
    report(
        "apply 1 × 3 units, latency_ms=200, --parallelism 10",
        CRITICAL_PATH * 0.2,
        1.15,
        decrypt,
        &runs,
    );

    let operations = 100.0 * OPERATIONS_PER_INSTANCE;
    let bound = |parallelism: f64| (CRITICAL_PATH * 0.05).max(operations * 0.05 / parallelism);
    let runs: Vec<_> = (0..3).map(|_| apply(100, 50, 64)).collect();
    report(
        "apply 100 × 3 units, latency_ms=50, --parallelism 64",
        bound(64.0),
        1.25,
        decrypt,
        &runs,
    );
    let operations_1000 = 1000.0 * OPERATIONS_PER_INSTANCE;
    let bound_1000 = (CRITICAL_PATH * 0.05).max(operations_1000 * 0.05 / 256.0);
    let big = apply(1000, 50, 256);
    report(
        "apply 1,000 × 3 units, latency_ms=50, --parallelism 256",
        bound_1000,
        1.25,
        decrypt,
        &[big],
    );
    if std::env::var_os("BENCH_SERIAL").is_some() {
        let fast = median(runs.iter().map(|r| r.0).collect());
        let serial = apply(100, 50, 1);
        report(
            "apply 100 × 3 units, latency_ms=50, --parallelism 1",
            bound(1.0),
            1.25,
            decrypt,
            &[serial],
        );
        println!(
            "    --parallelism 64 is {:.1} × faster than --parallelism 1 (whole command)",
            serial.0 / fast
        );
    }
    if std::env::var_os("BENCH_PLAN").is_some() {
        plan_over_http();
    }
}

fn plan_over_http() {
    let folder = workspace(1000);
    let fleet = folder.path().join("fleet.yaml");
    let embedded = median(
        (0..3)
            .map(|_| {
                mkplan(
                    folder.path(),
                    &["plan", "desired.yaml", "--json"],
                    &format!("sim:{}", fleet.display()),
                )
                .0
            })
            .collect(),
    );
    let server = Server::start(&fleet, "");
    let over_http: Vec<f64> = [10, 64]
        .iter()
        .map(|p| {
            median(
                (0..3)
                    .map(|_| {
                        mkplan(
                            folder.path(),
                            &[
                                "plan",
                                "desired.yaml",
                                "--json",
                                "--parallelism",
                                &p.to_string(),
                            ],
                            &server.1,
                        )
                        .0
                    })
                    .collect(),
            )
        })
        .collect();
    println!(
        "\nplan 1,000 × 3 units (refresh included): embedded simulator {embedded:.3} s; over HTTP {:.3} s with --parallelism 10 ({:.2} × embedded), {:.3} s with 64 ({:.2} ×); 5,000 requests",
        over_http[0],
        over_http[0] / embedded,
        over_http[1],
        over_http[1] / embedded
    );
}
