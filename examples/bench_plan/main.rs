//! A benchmark (not a timed test) of `mkplan plan` on simulated fleets of N service instances
//! × 3 operational crypto units: wall time, peak memory, and how both grow with the fleet.
//!
//! ```text
//! cargo build --release                          # the binary that part (c) runs
//! cargo run --release --example bench_plan
//! ```
//!
//! Three measurements, each the median of `REPS` repetitions after one warm-up:
//!
//! - (a) the pure planner, `mkplan::plan::plan`, on inputs already in memory;
//! - (b) the whole `plan` path in process, as the CLI runs it: read and check the desired file
//!   and its key part files, `Simulator::open` + `live(ids)` on the fleet file, plan, and render
//!   text, JSON and Markdown (the CLI renders only one of the three per run);
//! - (c) the real binary, `target/release/mkplan plan DESIRED --json`, wall clock per run and the
//!   child's peak RSS from `/usr/bin/time -f %M` (when that program is present).
//!
//! Heap figures for (a) and (b) come from a counting `#[global_allocator]` around
//! `std::alloc::System` that tracks current and peak bytes. The machine is small and noisy, so
//! the figures to trust are the ratios measured in one run: growth t(N)/t(N/10) (≈10 when
//! linear, ≈100 when quadratic), the slope log(t ratio)/log(N ratio) between neighbouring rows
//! (1 = linear, 2 = quadratic), and the 1,000 × 3 figures as fractions of the goals.
//!
//! Fleets are generated in two variants: `fresh` (every unit: current Valid A, new Empty; the
//! service reports its rotation status; rotate to B) and `mixed`, where instances cycle through
//! five stages so that every branch of the planner runs: fresh; part-staged (one unit holds B
//! uncommitted, one a stale key C, one Empty: clear, load and commit); committed (B committed
//! everywhere, before the rewrap); interrupted after the rewrap (one unit promoted, two waiting
//! on set immediate: remove_unit and set_immediate only); and converged (no steps).
//!
//! The key part files are well formed but are dummies that no password opens: `plan` only
//! checks that they exist and parse, it never decrypts them.
//!
//! `--write N FOLDER` only writes a fresh case of N instances under FOLDER (for `perf`,
//! `valgrind --tool=callgrind` or `/usr/bin/time -v` on the real binary) and prints the
//! desired file's path.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mkplan::backend::sim::{Faults, Fleet, KeyStorage, SimInstance, Simulator};
use mkplan::keypart::{self, Cipher, Kdf, KeyPartFile};
use mkplan::model::{
    Administrator, CryptoUnit, CurrentRegister, DesiredState, JournalEvidence, KeyPartSource,
    LiveFleet, Mode, NewRegister, Ski, UnitType, VerificationPattern, parse_desired,
};
use mkplan::plan::{Action, Plan};
use mkplan::render;
use sha2::{Digest, Sha256};

mod binary;
mod fleets;
mod heap;
mod pure;
mod stats;
mod whole_path;

use binary::*;
use fleets::*;
use heap::*;
use pure::*;
use stats::*;
use whole_path::*;

// ---------------------------------------------------------------------------------------------
// Parameters.

pub(crate) const SIZES: [usize; 5] = [10, 100, 300, 1_000, 3_000];
/// The size the goals are stated for.
pub(crate) const GOAL_N: usize = 1_000;
pub(crate) const GOAL_MS: f64 = 150.0;
pub(crate) const GOAL_MIB: f64 = 64.0;
pub(crate) const REPS: usize = 7;
pub(crate) const UNITS: usize = 3;

pub(crate) const VP_A: &str = "c2ad0a997751e04066912fa490a9976d6135d221c0df197dfb8c8a7a00000000";
pub(crate) const VP_B: &str = "57c060b114f5a20a4347cd12e326ebd6b98c5bf07b48e7f0fbeb4c1900000000";
pub(crate) const VP_C: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b400000000";
pub(crate) const ADMINS: [(&str, &str); 3] = [
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
pub(crate) const KEY_PART_FILES: [&str; 2] =
    ["keyparts/custodian-1.json", "keyparts/custodian-2.json"];

// ---------------------------------------------------------------------------------------------
// Input size limits met on the way.

/// Whether `Fleet::parse` (what `Simulator::open` and `live` run) reads a fresh fleet of `n`.
pub(crate) fn fleet_reads(n: usize) -> Result<(), String> {
    Fleet::parse("fleet.yaml", &build_fleet(n, Variant::Fresh).to_yaml())
        .map(drop)
        .map_err(|e| one_line(&e.to_string()))
}

pub(crate) fn desired_reads(n: usize) -> Result<(), String> {
    parse_desired(
        "desired.yaml",
        &desired_yaml(n, "fleet.yaml"),
        Path::new("."),
    )
    .map(drop)
    .map_err(|e| one_line(&e.to_string()))
}

/// The largest size in `good..bad` that `reads`, given that `good` reads and `bad` does not.
pub(crate) fn largest(mut good: usize, mut bad: usize, reads: impl Fn(usize) -> bool) -> usize {
    while bad - good > 1 {
        let middle = good + (bad - good) / 2;
        if reads(middle) {
            good = middle;
        } else {
            bad = middle;
        }
    }
    good
}

pub(crate) fn print_limits(largest_size: usize) {
    println!(
        "
Input limits (not timed)"
    );
    match fleet_reads(largest_size) {
        Ok(()) => println!("  a fleet file of {largest_size} × {UNITS} units reads"),
        Err(e) => {
            let limit = largest(GOAL_N, largest_size, |n| fleet_reads(n).is_ok());
            println!(
                "  the simulator cannot read a fleet file of {largest_size} × {UNITS} units ({e}); the largest that reads has {limit} instances"
            );
        }
    }
    let most = mkplan::model::desired::INSTANCES_MAX;
    match desired_reads(most) {
        Ok(()) => println!("  a desired file naming INSTANCES_MAX = {most} instances reads"),
        Err(e) => {
            let limit = largest(GOAL_N, most, |n| desired_reads(n).is_ok());
            println!(
                "  a desired file naming INSTANCES_MAX = {most} instances does not read ({e}); the largest that reads names {limit}"
            );
        }
    }
}

/// `--profile N`: only the pure planner on a fresh fleet of N, in a loop, for `perf record`.
pub(crate) fn profile(n: usize) {
    let fleet = build_fleet(n, Variant::Fresh);
    let live = LiveFleet {
        instances: fleet.instances.iter().map(SimInstance::live).collect(),
    };
    let desired = parse_desired(
        "desired.yaml",
        &desired_yaml(n, "fleet.yaml"),
        Path::new("."),
    )
    .expect("the desired text parses");
    let mut times = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let plan =
            mkplan::plan::plan(&desired, "0", &live, &JournalEvidence::none()).expect("a plan");
        times.push(ms(started.elapsed()));
        black_box(plan);
    }
    println!(
        "pure planner, fresh N = {n}: median {:.2} ms over 20 runs",
        median(&times)
    );
}

// ---------------------------------------------------------------------------------------------

pub(crate) fn budget(value: f64, goal: f64, unit: &str) -> String {
    format!(
        "{value:.1} {unit} = {:.2} of the {goal:.0} {unit} budget",
        value / goal
    )
}

pub(crate) fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, n] = args.as_slice()
        && flag == "--profile"
    {
        profile(n.parse().expect("--profile N: N is a number of instances"));
        return;
    }
    if let [flag, n, folder] = args.as_slice()
        && flag == "--write"
    {
        let n = n
            .parse()
            .expect("--write N FOLDER: N is a number of instances");
        let case = write_case(Path::new(folder), n, Variant::Fresh);
        println!("{}", case.desired_path.display());
        return;
    }
    let started = Instant::now();
    println!(
        "mkplan plan benchmark: N service instances × {UNITS} operational crypto units; median of {REPS} runs after 1 warm-up"
    );
    println!(
        "cores: {}; goal at N = {GOAL_N}: ≤ {GOAL_MS:.0} ms and ≤ {GOAL_MIB:.0} MiB",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("slope = log(t ratio)/log(N ratio) against the row above: 1 linear, 2 quadratic");

    // (a)
    let mut pure: Vec<(Variant, Vec<Row>)> = Vec::new();
    let mut mixed_counts = String::new();
    for variant in [Variant::Fresh, Variant::Mixed] {
        let mut rows = Vec::new();
        for &n in &SIZES {
            let (row, counts) = measure_pure(n, variant);
            if variant == Variant::Mixed && n == GOAL_N {
                mixed_counts = counts;
            }
            rows.push(row);
        }
        pure.push((variant, rows));
    }
    for (variant, rows) in &pure {
        print_table(
            &format!(
                "(a) pure planner, mkplan::plan::plan, {} fleet (peak MiB: heap in use at the peak, the inputs included; inputs: live + desired state)",
                variant.name()
            ),
            rows,
        );
    }
    println!("  mixed, N = {GOAL_N}: {mixed_counts}");

    // (b)
    let root = tempfile::Builder::new()
        .prefix("mkplan-bench-")
        .tempdir()
        .expect("create a temporary folder");
    let mut whole: Vec<(Variant, Vec<(Case, WholePath)>)> = Vec::new();
    let mut binary_cases: Vec<Case> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for variant in [Variant::Fresh, Variant::Mixed] {
        let mut results = Vec::new();
        for &n in &SIZES {
            let case = write_case(root.path(), n, variant);
            match measure_whole(&case) {
                Ok(measured) => results.push((case, measured)),
                Err(e) => {
                    failures.push(format!("{} N = {n}: {e}", variant.name()));
                    if variant == Variant::Fresh {
                        binary_cases.push(case);
                    }
                }
            }
        }
        whole.push((variant, results));
    }
    for (variant, results) in &whole {
        let rows: Vec<Row> = results.iter().map(|(_, w)| w.row.clone()).collect();
        print_table(
            &format!(
                "(b) whole plan path in process, {} fleet: read desired + key parts, Simulator::open + live, plan, render text + JSON + Markdown (peak MiB: heap above what the bench holds)",
                variant.name()
            ),
            &rows,
        );
        let stage_cases: Vec<(&Case, &WholePath)> = results.iter().map(|(c, w)| (c, w)).collect();
        print_stages(
            &format!("(b) stages, {} fleet", variant.name()),
            &stage_cases,
        );
        if let Some((case, w)) = results.iter().find(|(c, _)| c.n == GOAL_N) {
            println!(
                "  N = {GOAL_N}: fleet file {:.1} MiB, desired file {:.2} MiB; output text {:.1} MiB, JSON {:.1} MiB, Markdown {:.1} KiB",
                mib(case.fleet_bytes),
                mib(case.desired_bytes),
                mib(w.output_bytes[0]),
                mib(w.output_bytes[1]),
                w.output_bytes[2] as f64 / 1024.0
            );
        }
    }
    for failure in &failures {
        println!("  not measured: {failure}");
    }
    print_limits(SIZES[SIZES.len() - 1]);

    // (c)
    let binary = binary_path();
    let time = Path::new("/usr/bin/time");
    let time = time.exists().then_some(time);
    let mut binary_rows: Vec<BinaryRow> = Vec::new();
    let mut startup = None;
    println!(
        "\n(c) real binary: {} plan DESIRED --json (stdout to /dev/null), fresh fleet",
        binary.display()
    );
    if !binary.exists() {
        println!(
            "  skipped: {} does not exist; build it first with `cargo build --release`",
            binary.display()
        );
    } else {
        if time.is_none() {
            println!(
                "  /usr/bin/time is not present: no peak RSS for the child; see the heap figures of (b) instead"
            );
        }
        startup = startup_ms(&binary);
        if let Some(startup) = startup {
            println!("  process start-up alone (`mkplan --version`): {startup:.2} ms");
        }
        let cases = whole[0].1.iter().map(|(c, _)| c).chain(&binary_cases);
        for case in cases.filter(|c| c.n >= 100) {
            match measure_binary(&binary, time, case) {
                Ok(row) => binary_rows.push(row),
                Err(e) => println!("  N = {}: failed: {e}", case.n),
            }
        }
        println!(
            "  {:>5}  {:>9} {:>17}  {:>8}  {:>9}  {:>14}  {:>9}",
            "N", "median ms", "min–max ms", "ms/inst", "slope", "peak RSS MiB", "JSON MiB"
        );
        for (index, row) in binary_rows.iter().enumerate() {
            let t = median(&row.times_ms);
            let (lo, hi) = min_max(&row.times_ms);
            let slope = index.checked_sub(1).map_or("—".to_string(), |p| {
                let prev = &binary_rows[p];
                format!(
                    "{:.2}",
                    (t / median(&prev.times_ms)).ln() / (row.n as f64 / prev.n as f64).ln()
                )
            });
            let rss = if row.rss_kib.is_empty() {
                "—".to_string()
            } else {
                let kib: Vec<f64> = row.rss_kib.iter().map(|k| *k as f64).collect();
                format!("{:.1}", median(&kib) / 1024.0)
            };
            println!(
                "  {:>5}  {:>9.2} {:>17}  {:>8.4}  {:>9}  {:>14}  {:>9.1}",
                row.n,
                t,
                format!("{lo:.2}–{hi:.2}"),
                t / row.n as f64,
                slope,
                rss,
                mib(row.json_bytes)
            );
        }
    }

    // Against the goals, N = 1,000 × 3.
    println!("\nAgainst the goals at N = {GOAL_N} × {UNITS} (ratios from this run):");
    for (variant, rows) in &pure {
        if let Some(row) = rows.iter().find(|r| r.n == GOAL_N) {
            println!(
                "  (a) pure planner, {}: {}; peak heap {}",
                variant.name(),
                budget(row.median_ms(), GOAL_MS, "ms"),
                budget(mib(row.peak_bytes), GOAL_MIB, "MiB")
            );
        }
    }
    for (variant, results) in &whole {
        if let Some((_, w)) = results.iter().find(|(c, _)| c.n == GOAL_N) {
            let total = w.row.median_ms();
            let cli_like = total - w.stage_ms[6] - w.stage_ms[8];
            println!(
                "  (b) whole path in process, {}: {} (with JSON as the only view, as `--json` does: {:.1} ms = {:.2}); peak heap {}",
                variant.name(),
                budget(total, GOAL_MS, "ms"),
                cli_like,
                cli_like / GOAL_MS,
                budget(mib(w.row.peak_bytes), GOAL_MIB, "MiB")
            );
            let planner = w.stage_ms[5];
            println!(
                "      plan::plan is {:.2} of the path; the fleet file read twice (open + live) is {:.2}",
                planner / total,
                (w.stage_ms[3] + w.stage_ms[4]) / total
            );
        }
    }
    if let Some(row) = binary_rows.iter().find(|r| r.n == GOAL_N) {
        let t = median(&row.times_ms);
        let rss = (!row.rss_kib.is_empty()).then(|| {
            let kib: Vec<f64> = row.rss_kib.iter().map(|k| *k as f64).collect();
            median(&kib) / 1024.0
        });
        println!(
            "  (c) real binary, fresh: {}{}; peak RSS {}",
            budget(t, GOAL_MS, "ms"),
            startup.map_or(String::new(), |s| format!(" (start-up alone {s:.1} ms)")),
            rss.map_or("not measured (no /usr/bin/time)".to_string(), |r| budget(
                r, GOAL_MIB, "MiB"
            ))
        );
    }
    println!(
        "\nTotal benchmark time: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
