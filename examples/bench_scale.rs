//! The scale curve (issue 14, point 3): the real binary's `plan` and `apply` on the embedded
//! simulator at 10, 100, 1,000 and 10,000 service instances × 3 operational crypto units,
//! each figure as a ratio to linear growth, and the largest fleet that plans in under 1 s.
//!
//! ```text
//! cargo build --release
//! cargo run --release --example bench_scale [-- [--apply-max N] [--apply-only]]
//! ```
//!
//! - plan: `mkplan plan desired.yaml --json` (stdout to a file), the median of `REPS` runs
//!   after a warm-up; the whole command, process start included.
//! - apply: `mkplan apply desired.yaml --auto-approve --parallelism 16` on a fresh copy of
//!   the fleet, once per size, with the embedded simulator's default faults (no latency) and
//!   no rewrap time (`rewrap_ms_per_key: 0`), so the figure is mkplan's own work. The
//!   embedded simulator appends each of the 10 operations per instance to its operation log
//!   (fsynced, a group commit for the operations that land together) and compacts the log
//!   into the fleet file at the end, so an apply grows linearly. `--apply-max N` stops the
//!   applies above N instances; `--apply-only` skips the plans.
//! - peak memory: the child's own peak RSS, from `wait4(2)`'s `ru_maxrss`.
//!
//! "× linear" is (time per instance at N) ÷ (time per instance at the smallest N): 1.0 is
//! linear growth, above 1 grows faster. At 10 instances the process start dominates, so the
//! ratio at larger N falls below 1 until the per-instance work takes over. The machine is
//! small and shared: compare figures within one run.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use mkplan::backend::sim::Fleet;

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
const REPS: usize = 5;
const APPLY_MAX_DEFAULT: usize = 10_000;
const PARALLELISM: &str = "16";
const PASSWORDS: [(&str, &str); 2] = [
    ("MKPLAN_PART1_PASSWORD", "demo-custodian-1"),
    ("MKPLAN_PART2_PASSWORD", "demo-custodian-2"),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> PathBuf {
    std::env::var_os("MKPLAN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/mkplan"))
}

/// `folder/fleet.yaml` (n fresh 3-unit instances, as the simulator writes it), and
/// `desired.yaml` with the demo key parts (which their passwords open).
fn write_case(folder: &Path, n: usize) {
    fs::create_dir_all(folder.join("keyparts")).unwrap();
    for part in 1..=2 {
        let name = format!("keyparts/custodian-{part}.json");
        fs::copy(root().join("plans").join(&name), folder.join(&name)).unwrap();
    }
    let fleet = fs::read_to_string(root().join("examples/fleets/three-units.yaml")).unwrap();
    let desired = fs::read_to_string(root().join("plans/three-units.yaml")).unwrap();
    let fleet = fleet.replace("rewrap_ms_per_key: 1", "rewrap_ms_per_key: 0");
    let block = |text: &str| {
        let start = text.find("  - id:").expect("an instance");
        let end = text[start..]
            .find("\nincidents:")
            .map_or(text.len(), |e| start + e + 1);
        text[start..end].to_string()
    };
    let (fleet_block, desired_block) = (block(&fleet), block(&desired));
    let mut fleet_text = String::from("instances:\n");
    let mut desired_text = String::from("version: 1\ninstances:\n");
    for index in 0..n {
        let id = format!("{:08x}-0c1d-4e8f-9a3b-{index:012x}", scramble(index));
        fleet_text += &fleet_block
            .replace("5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b", &id)
            .replace("0a1b2c3d-0000-", &format!("{:08x}-0000-", scramble(!index)));
        desired_text += &desired_block.replace("5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b", &id);
    }
    fleet_text += "incidents: []\n";
    // Written back as the simulator writes it, which is what it reads after an operation. A
    // fleet mkplan cannot read is written as generated: the command's refusal is reported.
    let text = match Fleet::parse("fleet.yaml", &fleet_text) {
        Ok(fleet) => fleet.to_yaml(),
        Err(_) => fleet_text,
    };
    fs::write(folder.join("fleet.yaml"), text).unwrap();
    fs::write(folder.join("desired.yaml"), desired_text).unwrap();
}

/// Spreads an index over 32 bits, so that ids differ in their first characters.
fn scramble(index: usize) -> u32 {
    (index as u32).wrapping_mul(0x9e37_79b1)
}

struct Run {
    seconds: f64,
    peak_rss_kib: i64,
    ok: bool,
    stderr: String,
}

/// Runs the binary in `folder` with `args`; its wall time and its own peak RSS.
// The child is reaped by `wait4` (for its own rusage), which clippy does not see.
#[allow(clippy::zombie_processes)]
fn run(folder: &Path, args: &[&str]) -> Run {
    let stdout = File::create(folder.join("stdout")).unwrap();
    let stderr = File::create(folder.join("stderr")).unwrap();
    let started = Instant::now();
    let child = Command::new(binary())
        .current_dir(folder)
        .args(args)
        .env("MKPLAN_BACKEND", "sim:fleet.yaml")
        .env("MKPLAN_STATE_DIR", folder.join(".mkplan"))
        .env("MKPLAN_JOURNAL_KEY", folder.join("journal.key"))
        .env_remove("MKPLAN_SIM_FAULTS")
        .envs(PASSWORDS)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("run mkplan");
    let mut status = 0;
    // SAFETY: `rusage` is plain data that `wait4` fills in; the pid is our own child's.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 on mkplan");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Run {
        seconds,
        peak_rss_kib: usage.ru_maxrss,
        ok: matches!(code, Some(0 | 2)),
        stderr: fs::read_to_string(folder.join("stderr")).unwrap_or_default(),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct Point {
    n: usize,
    seconds: f64,
    mib: f64,
}

fn first_line(text: &str) -> &str {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

fn measure_plan(folder: &Path, n: usize) -> Result<Point, String> {
    let warm = run(folder, &["plan", "desired.yaml", "--json"]);
    if !warm.ok {
        return Err(first_line(&warm.stderr).to_string());
    }
    let runs: Vec<Run> = (0..REPS)
        .map(|_| run(folder, &["plan", "desired.yaml", "--json"]))
        .collect();
    Ok(Point {
        n,
        seconds: median(runs.iter().map(|r| r.seconds).collect()),
        mib: median(
            runs.iter()
                .map(|r| r.peak_rss_kib as f64 / 1024.0)
                .collect(),
        ),
    })
}

fn measure_apply(folder: &Path, n: usize) -> Result<Point, String> {
    let applied = run(
        folder,
        &[
            "apply",
            "desired.yaml",
            "--auto-approve",
            "--parallelism",
            PARALLELISM,
        ],
    );
    if !applied.ok {
        return Err(first_line(&applied.stderr).to_string());
    }
    let fleet = fs::read_to_string(folder.join("fleet.yaml")).unwrap();
    assert!(
        fleet.contains("incidents: []"),
        "the apply at N = {n} caused incidents"
    );
    assert!(
        !folder.join("fleet.yaml.oplog").exists(),
        "the apply at N = {n} ended without compacting its operation log"
    );
    Ok(Point {
        n,
        seconds: applied.seconds,
        mib: applied.peak_rss_kib as f64 / 1024.0,
    })
}

fn print_curve(title: &str, points: &[(usize, Result<Point, String>)]) {
    println!("\n{title}");
    println!(
        "  {:>6}  {:>10}  {:>12}  {:>9}  {:>13}  {:>9}",
        "N", "time s", "ms/instance", "× linear", "peak RSS MiB", "× linear"
    );
    let base = points.iter().find_map(|(_, p)| p.as_ref().ok());
    for (n, point) in points {
        match (point, base) {
            (Ok(p), Some(b)) => {
                let per = |value: f64, n: usize| value / n as f64;
                println!(
                    "  {:>6}  {:>10.3}  {:>12.3}  {:>9.2}  {:>13.1}  {:>9.3}",
                    p.n,
                    p.seconds,
                    1000.0 * per(p.seconds, p.n),
                    per(p.seconds, p.n) / per(b.seconds, b.n),
                    p.mib,
                    per(p.mib, p.n) / per(b.mib, b.n)
                );
            }
            (Err(e), _) => println!("  {n:>6}  not measured: {e}"),
            _ => {}
        }
    }
}

/// The largest N that plans in under 1 s: a measured one, or between two measured sizes
/// on the straight line through them in log–log.
fn under_one_second(points: &[(usize, Result<Point, String>)]) -> String {
    let measured: Vec<&Point> = points.iter().filter_map(|(_, p)| p.as_ref().ok()).collect();
    let Some(last_fast) = measured.iter().rev().find(|p| p.seconds < 1.0) else {
        return "no measured fleet plans in under 1 s".into();
    };
    match measured.iter().find(|p| p.n > last_fast.n) {
        Some(slow) => {
            let slope =
                (slow.seconds / last_fast.seconds).ln() / (slow.n as f64 / last_fast.n as f64).ln();
            let n = last_fast.n as f64 * (1.0 / last_fast.seconds).powf(1.0 / slope);
            format!(
                "{} instances × 3 units plan in {:.3} s, {} take {:.3} s; on the line between them, about {:.0} instances plan in 1 s",
                last_fast.n, last_fast.seconds, slow.n, slow.seconds, n
            )
        }
        None => {
            let refused = points
                .iter()
                .find(|(n, p)| *n > last_fast.n && p.is_err())
                .map(|(n, _)| format!("; {n} was not measured (above)"))
                .unwrap_or_default();
            format!(
                "{} instances × 3 units plan in {:.3} s, the largest size measured{refused}",
                last_fast.n, last_fast.seconds
            )
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let apply_max = args
        .iter()
        .position(|a| a == "--apply-max")
        .map_or(APPLY_MAX_DEFAULT, |i| {
            args.get(i + 1)
                .and_then(|n| n.parse().ok())
                .expect("--apply-max N")
        });
    let apply_only = args.iter().any(|a| a == "--apply-only");
    if !binary().exists() {
        eprintln!(
            "{} does not exist: run `cargo build --release` first",
            binary().display()
        );
        std::process::exit(1);
    }
    let started = Instant::now();
    println!(
        "mkplan scale curve: {} on sim:fleet.yaml, N instances × 3 operational units",
        binary().display()
    );
    println!(
        "plan: median of {REPS} runs after a warm-up; apply: once, --parallelism {PARALLELISM}, embedded simulator's default faults (no latency), rewrap_ms_per_key: 0, up to N = {apply_max}"
    );
    println!(
        "peak RSS: the child's own (wait4 ru_maxrss); × linear: per instance ÷ per instance at the smallest N"
    );
    let scratch = tempfile::Builder::new()
        .prefix("mkplan-scale-")
        .tempdir()
        .expect("a temporary folder");
    let mut plans = Vec::new();
    let mut applies = Vec::new();
    for n in SIZES {
        let folder = scratch.path().join(n.to_string());
        write_case(&folder, n);
        let bytes = fs::metadata(folder.join("fleet.yaml")).map_or(0, |m| m.len());
        println!(
            "  N = {n}: fleet file {:.2} MiB",
            bytes as f64 / (1024.0 * 1024.0)
        );
        if !apply_only {
            plans.push((n, measure_plan(&folder, n)));
        }
        if n <= apply_max {
            applies.push((n, measure_apply(&folder, n)));
        } else {
            applies.push((n, Err(format!("above --apply-max {apply_max}"))));
        }
    }
    if !apply_only {
        print_curve("plan (whole command)", &plans);
    }
    print_curve("apply (whole command)", &applies);
    if !apply_only {
        println!(
            "\nLargest fleet that plans in under 1 s: {}",
            under_one_second(&plans)
        );
    }
    println!(
        "\nTotal benchmark time: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
