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

// ---------------------------------------------------------------------------------------------
// Counting allocator: current and peak heap bytes of the whole process.

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    CURRENT.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` came from this allocator, which got it from `System`.
        unsafe { System.dealloc(pointer, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn heap_now() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Starts a new peak window at the current heap size.
fn reset_peak() {
    PEAK.store(heap_now(), Ordering::Relaxed);
}

fn heap_peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

const MIB: f64 = 1024.0 * 1024.0;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / MIB
}

// ---------------------------------------------------------------------------------------------
// Parameters.

const SIZES: [usize; 5] = [10, 100, 300, 1_000, 3_000];
/// The size the goals are stated for.
const GOAL_N: usize = 1_000;
const GOAL_MS: f64 = 150.0;
const GOAL_MIB: f64 = 64.0;
const REPS: usize = 7;
const UNITS: usize = 3;

const VP_A: &str = "c2ad0a997751e04066912fa490a9976d6135d221c0df197dfb8c8a7a00000000";
const VP_B: &str = "57c060b114f5a20a4347cd12e326ebd6b98c5bf07b48e7f0fbeb4c1900000000";
const VP_C: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b400000000";
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
const KEY_PART_FILES: [&str; 2] = ["keyparts/custodian-1.json", "keyparts/custodian-2.json"];

// ---------------------------------------------------------------------------------------------
// Fleet and desired state generation.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Fresh,
    Mixed,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::Mixed => "mixed",
        }
    }
}

#[derive(Clone, Copy)]
enum Stage {
    Fresh,
    PartStaged,
    Committed,
    AfterRewrap,
    Converged,
}

const MIXED_STAGES: [Stage; 5] = [
    Stage::Fresh,
    Stage::PartStaged,
    Stage::Committed,
    Stage::AfterRewrap,
    Stage::Converged,
];

fn vp(hex: &str) -> VerificationPattern {
    VerificationPattern::parse(hex).expect("a valid VP constant")
}

/// Spreads an index over 32 bits (a bijection), so that generated ids differ in their first
/// characters as random GUIDs do, and string comparisons stop as early as on a real fleet.
fn scramble(index: usize) -> u32 {
    (index as u32).wrapping_mul(0x9e37_79b1)
}

fn instance_id(index: usize) -> String {
    format!("{:08x}-0c1d-4e8f-9a3b-{index:012x}", scramble(index))
}

fn hsm_id(index: usize, unit: usize) -> String {
    format!(
        "{:08x}-{:04x}-4000-8000-{index:012x}",
        scramble(index ^ 0x5555_5555),
        unit + 1
    )
}

fn unit_registers(stage: Stage, unit: usize) -> (NewRegister, CurrentRegister) {
    let (a, b, c) = (vp(VP_A), vp(VP_B), vp(VP_C));
    match (stage, unit) {
        (Stage::Fresh, _) => (NewRegister::Empty, CurrentRegister::Valid(a)),
        (Stage::PartStaged, 0) => (NewRegister::FullUncommitted(b), CurrentRegister::Valid(a)),
        (Stage::PartStaged, 1) => (NewRegister::FullUncommitted(c), CurrentRegister::Valid(a)),
        (Stage::PartStaged, _) => (NewRegister::Empty, CurrentRegister::Valid(a)),
        (Stage::Committed, _) => (NewRegister::FullCommitted(b), CurrentRegister::Valid(a)),
        (Stage::AfterRewrap, 0) => (NewRegister::Empty, CurrentRegister::Valid(b)),
        (Stage::AfterRewrap, _) => (NewRegister::FullCommitted(b), CurrentRegister::Valid(a)),
        (Stage::Converged, _) => (NewRegister::Empty, CurrentRegister::Valid(b)),
    }
}

fn build_fleet(n: usize, variant: Variant) -> Fleet {
    let administrators: Vec<Administrator> = ADMINS
        .iter()
        .map(|(name, ski)| Administrator {
            name: (*name).into(),
            ski: Ski::parse(ski).expect("a valid SKI constant"),
            public_key: None,
        })
        .collect();
    let instances = (0..n)
        .map(|index| {
            let stage = match variant {
                Variant::Fresh => Stage::Fresh,
                Variant::Mixed => MIXED_STAGES[index % MIXED_STAGES.len()],
            };
            let storage = match stage {
                Stage::AfterRewrap | Stage::Converged => vp(VP_B),
                _ => vp(VP_A),
            };
            let crypto_units = (0..UNITS)
                .map(|unit| {
                    let (new_register, current_register) = unit_registers(stage, unit);
                    CryptoUnit {
                        hsm_id: hsm_id(index, unit),
                        unit_type: UnitType::Operational,
                        location: format!(
                            "[us-south].[AZ{0}-CS{0}].[{1:02}].[{2:02}]",
                            unit + 1,
                            index % 100,
                            unit + 1
                        ),
                        mode: Mode::Admin,
                        signature_threshold: 2,
                        revocation_threshold: 2,
                        administrators: administrators.clone(),
                        new_register,
                        current_register,
                    }
                })
                .collect();
            SimInstance {
                id: instance_id(index),
                region: "us-south".into(),
                key_storage: KeyStorage {
                    verification_pattern: storage,
                    keys: 3000,
                    rewrap_ms_per_key: 0,
                    unusable: false,
                    // As the simulator records it between the rewrap and the last set immediate.
                    rewrapped_from: matches!(stage, Stage::AfterRewrap).then(|| vp(VP_A)),
                    rewrap_in_progress: None,
                },
                reports_rotation_status: true,
                crypto_units,
            }
        })
        .collect();
    Fleet {
        instances,
        incidents: Vec::new(),
    }
}

/// The desired file's text: every instance to B, from two key part files.
fn desired_yaml(n: usize, fleet_file: &str) -> String {
    let mut text = format!("version: 1\nbackend: sim:{fleet_file}\ninstances:\n");
    for index in 0..n {
        let _ = write!(
            text,
            "  - id: {}\n    crypto_units: all\n    signature_threshold: 2\n    revocation_threshold: 2\n    administrators: [alice, bob]\n    master_key:\n      verification_pattern: \"{VP_B}\"\n      key_parts:\n        - file: {}\n          password_env: MKPLAN_PART1_PASSWORD\n        - file: {}\n          password_env: MKPLAN_PART2_PASSWORD\n",
            instance_id(index),
            KEY_PART_FILES[0],
            KEY_PART_FILES[1],
        );
    }
    text
}

/// A key part file that `plan` accepts (format, algorithms, KDF cost, lengths) but that no
/// password opens: the ciphertext is not a sealed key.
fn dummy_key_part(seed: u8) -> String {
    let file = KeyPartFile {
        format: keypart::FILE_FORMAT.into(),
        version: keypart::FILE_VERSION,
        verification_pattern: VerificationPattern::from_bytes(&[seed; 32]),
        kdf: Kdf {
            algorithm: "argon2id".into(),
            memory_kib: keypart::KDF_MEMORY_KIB,
            iterations: keypart::KDF_ITERATIONS,
            parallelism: keypart::KDF_PARALLELISM,
            salt: hex::encode([seed; keypart::SALT_LEN]),
        },
        cipher: Cipher {
            algorithm: "xchacha20poly1305".into(),
            nonce: hex::encode([seed; keypart::NONCE_LEN]),
        },
        ciphertext: hex::encode([seed; keypart::KEY_LEN + 16]),
    };
    serde_json::to_string_pretty(&file).expect("a key part file serializes")
}

/// One fleet size and variant, written to its own folder: `fleet.yaml`, `desired.yaml` and
/// the two key part files.
struct Case {
    n: usize,
    folder: PathBuf,
    desired_path: PathBuf,
    fleet_path: PathBuf,
    fleet_bytes: usize,
    desired_bytes: usize,
}

fn write_case(root: &Path, n: usize, variant: Variant) -> Case {
    let folder = root.join(format!("{}-{n}", variant.name()));
    fs::create_dir_all(folder.join("keyparts")).expect("create the case folder");
    for (seed, file) in KEY_PART_FILES.iter().enumerate() {
        fs::write(folder.join(file), dummy_key_part(seed as u8 + 1))
            .expect("write a key part file");
    }
    let fleet_text = build_fleet(n, variant).to_yaml();
    let desired_text = desired_yaml(n, "fleet.yaml");
    let fleet_path = folder.join("fleet.yaml");
    let desired_path = folder.join("desired.yaml");
    fs::write(&fleet_path, &fleet_text).expect("write the fleet file");
    fs::write(&desired_path, &desired_text).expect("write the desired file");
    Case {
        n,
        folder,
        desired_path,
        fleet_path,
        fleet_bytes: fleet_text.len(),
        desired_bytes: desired_text.len(),
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics and tables.

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        })
}

#[derive(Clone)]
struct Row {
    n: usize,
    steps: usize,
    times_ms: Vec<f64>,
    /// Highest heap size seen while the measured code ran, inputs the process already held
    /// included.
    peak_bytes: usize,
    /// Heap held before the measured code started: its inputs, for the pure planner.
    base_bytes: Option<usize>,
}

impl Row {
    fn median_ms(&self) -> f64 {
        median(&self.times_ms)
    }
}

fn print_table(title: &str, rows: &[Row]) {
    println!("\n{title}");
    println!(
        "  {:>5} {:>6} {:>6}  {:>9} {:>17}  {:>8}  {:>12} {:>6}  {:>8} {:>10}",
        "N",
        "units",
        "steps",
        "median ms",
        "min–max ms",
        "ms/inst",
        "t(N)/t(N/10)",
        "slope",
        "peak MiB",
        "inputs MiB"
    );
    for (index, row) in rows.iter().enumerate() {
        let t = row.median_ms();
        let (lo, hi) = min_max(&row.times_ms);
        let tenth = rows
            .iter()
            .find(|r| r.n * 10 == row.n)
            .map_or("—".to_string(), |r| format!("{:.1}", t / r.median_ms()));
        // log(t ratio) / log(N ratio) against the previous row: 1 = linear, 2 = quadratic.
        let slope = index.checked_sub(1).map_or("—".to_string(), |p| {
            let prev = &rows[p];
            format!(
                "{:.2}",
                (t / prev.median_ms()).ln() / (row.n as f64 / prev.n as f64).ln()
            )
        });
        println!(
            "  {:>5} {:>6} {:>6}  {:>9.2} {:>17}  {:>8.4}  {:>12} {:>6}  {:>8.2} {:>10}",
            row.n,
            row.n * UNITS,
            row.steps,
            t,
            format!("{lo:.2}–{hi:.2}"),
            t / row.n as f64,
            tenth,
            slope,
            mib(row.peak_bytes),
            row.base_bytes
                .map_or("—".to_string(), |b| format!("{:.2}", mib(b))),
        );
    }
}

fn action_counts(plan: &Plan) -> String {
    Action::ALL
        .iter()
        .map(|a| format!("{} {}", plan.count(*a), a.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// (a) the pure planner.

fn measure_pure(n: usize, variant: Variant) -> (Row, String) {
    let fleet = build_fleet(n, variant);
    let text = desired_yaml(n, "fleet.yaml");
    let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    let base_before = heap_now();
    let live = LiveFleet {
        instances: fleet.instances.iter().map(SimInstance::live).collect(),
    };
    let desired: DesiredState = parse_desired("desired.yaml", &text, Path::new("/nonexistent"))
        .expect("the desired text parses");
    let base_bytes = heap_now().saturating_sub(base_before);
    let KeyPartSource::File { file, .. } = &desired.instances[0].master_key.key_parts[0] else {
        unreachable!("the benchmark's key parts are files");
    };
    assert!(file.ends_with(KEY_PART_FILES[0]));
    drop(fleet);
    drop(text);
    let journal = JournalEvidence::none();

    let run =
        || mkplan::plan::plan(&desired, &sha256, &live, &journal).expect("the plan is not refused");
    let first = run(); // warm-up, and the plan to check
    let steps = first.steps.len();
    let counts = action_counts(&first);
    if variant == Variant::Fresh {
        assert_eq!(
            steps,
            n * 10,
            "fresh: 3 loads, 3 commits, 1 rewrap, 3 set immediates per instance"
        );
    }
    drop(first);
    let mut times_ms = Vec::with_capacity(REPS);
    let mut peak_bytes = 0;
    for _ in 0..REPS {
        reset_peak();
        let entry = heap_now();
        let started = Instant::now();
        let plan = black_box(run());
        times_ms.push(ms(started.elapsed()));
        drop(plan);
        peak_bytes = peak_bytes.max(heap_peak() - entry + base_bytes);
    }
    (
        Row {
            n,
            steps,
            times_ms,
            peak_bytes,
            base_bytes: Some(base_bytes),
        },
        counts,
    )
}

// ---------------------------------------------------------------------------------------------
// (b) the whole `plan` path in process.

const STAGES: [&str; 9] = [
    "read+parse desired",
    "check key part files",
    "sha256 desired",
    "Simulator::open",
    "Simulator::live",
    "plan::plan",
    "render::text",
    "render::json",
    "render::markdown",
];

type StageTimes = [Duration; STAGES.len()];

/// One run of the path: the time of each stage in `STAGES` order, the plan's step count and
/// the sizes of the three views. An input the CLI would refuse is an `Err` naming the stage.
fn whole_path_once(case: &Case) -> Result<(StageTimes, usize, [usize; 3]), String> {
    let mut times = [Duration::ZERO; STAGES.len()];
    let mut clock = Instant::now();
    let mut lap = |slot: usize| {
        let now = Instant::now();
        times[slot] = now - clock;
        clock = now;
    };

    // As `cli::context::read_desired` does it.
    let shown = case.desired_path.display().to_string();
    let bytes = fs::read(&case.desired_path).expect("read the desired file");
    let text = String::from_utf8(bytes.clone()).expect("UTF-8");
    let folder = case.desired_path.parent().unwrap_or(Path::new(""));
    let desired = parse_desired(&shown, &text, folder).expect("the desired file parses");
    lap(0);
    for instance in &desired.instances {
        for part in &instance.master_key.key_parts {
            let KeyPartSource::File { file, .. } = part else {
                unreachable!("the benchmark's key parts are files");
            };
            let content = fs::read_to_string(file).expect("read a key part file");
            keypart::parse_file(&file.display().to_string(), &content)
                .expect("a well-formed key part file");
        }
    }
    lap(1);
    let sha256 = hex::encode(Sha256::digest(&bytes));
    lap(2);

    // As `AnyBackend::open` and `refresh` do it for `sim:`.
    let simulator = Simulator::open(&case.fleet_path, Faults::default()).map_err(|e| {
        format!(
            "Simulator::open refused the fleet file: {}",
            one_line(&e.to_string())
        )
    })?;
    lap(3);
    let ids: Vec<String> = desired.instances.iter().map(|i| i.id.clone()).collect();
    let live = simulator
        .live(&ids)
        .map_err(|e| format!("Simulator::live failed: {}", one_line(&e.to_string())))?;
    lap(4);

    let plan = mkplan::plan::plan(&desired, &sha256, &live, &JournalEvidence::none())
        .expect("the plan is not refused");
    lap(5);
    let source = format!(
        "{} against sim:{}",
        case.desired_path.display(),
        case.fleet_path.display()
    );
    let text_out = black_box(render::text(&plan, &source));
    lap(6);
    let json_out = black_box(render::json(&plan));
    lap(7);
    let markdown_out = black_box(render::markdown(&plan, &source));
    lap(8);
    let sizes = [text_out.len(), json_out.len(), markdown_out.len()];
    Ok((times, plan.steps.len(), sizes))
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

struct WholePath {
    row: Row,
    /// Per stage, the median over the repetitions, in ms.
    stage_ms: [f64; STAGES.len()],
    output_bytes: [usize; 3],
}

fn measure_whole(case: &Case) -> Result<WholePath, String> {
    let (_, steps, output_bytes) = whole_path_once(case)?; // warm-up (and page cache)
    let mut per_stage: Vec<Vec<f64>> = vec![Vec::with_capacity(REPS); STAGES.len()];
    let mut times_ms = Vec::with_capacity(REPS);
    let mut peak_bytes = 0;
    let base = heap_now();
    for _ in 0..REPS {
        reset_peak();
        let (times, _, _) = whole_path_once(case)?;
        peak_bytes = peak_bytes.max(heap_peak() - base);
        times_ms.push(times.iter().map(|t| ms(*t)).sum());
        for (slot, t) in times.iter().enumerate() {
            per_stage[slot].push(ms(*t));
        }
    }
    let mut stage_ms = [0.0; STAGES.len()];
    for (slot, values) in per_stage.iter().enumerate() {
        stage_ms[slot] = median(values);
    }
    Ok(WholePath {
        row: Row {
            n: case.n,
            steps,
            times_ms,
            peak_bytes,
            base_bytes: None,
        },
        stage_ms,
        output_bytes,
    })
}

fn print_stages(title: &str, cases: &[(&Case, &WholePath)]) {
    println!("\n{title}");
    let mut header = format!("  {:<22}", "stage (median ms)");
    for (case, _) in cases {
        let _ = write!(header, " {:>9}", format!("N={}", case.n));
    }
    let _ = write!(
        header,
        " {:>12}",
        format!("share@{}", cases.last().map_or(0, |(c, _)| c.n))
    );
    println!("{header}");
    for (slot, name) in STAGES.iter().enumerate() {
        let mut line = format!("  {name:<22}");
        for (_, whole) in cases {
            let _ = write!(line, " {:>9.2}", whole.stage_ms[slot]);
        }
        if let Some((_, last)) = cases.last() {
            let total: f64 = last.stage_ms.iter().sum();
            let _ = write!(line, " {:>11.1}%", 100.0 * last.stage_ms[slot] / total);
        }
        println!("{line}");
    }
}

// ---------------------------------------------------------------------------------------------
// (c) the real binary.

fn binary_path() -> PathBuf {
    std::env::var_os("MKPLAN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/mkplan"))
}

fn plan_command(program: &Path, case: &Case) -> Command {
    let mut command = Command::new(program);
    command
        .arg("plan")
        .arg(&case.desired_path)
        .arg("--json")
        .current_dir(&case.folder)
        .env("MKPLAN_STATE_DIR", case.folder.join(".mkplan"))
        .env("MKPLAN_JOURNAL_KEY", case.folder.join("journal.key"))
        .env_remove("MKPLAN_BACKEND")
        .env_remove("MKPLAN_SIM_FAULTS");
    command
}

struct BinaryRow {
    n: usize,
    times_ms: Vec<f64>,
    rss_kib: Vec<u64>,
    json_bytes: usize,
}

/// Peak RSS in KiB of one run of `command` under `/usr/bin/time -f %M -o FILE`.
fn peak_rss_kib(time: &Path, binary: &Path, case: &Case, out: &Path) -> Option<u64> {
    let inner = plan_command(binary, case);
    let mut command = Command::new(time);
    command
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(out)
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(&case.folder)
        .env("MKPLAN_STATE_DIR", case.folder.join(".mkplan"))
        .env("MKPLAN_JOURNAL_KEY", case.folder.join("journal.key"))
        .env_remove("MKPLAN_BACKEND")
        .env_remove("MKPLAN_SIM_FAULTS")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = command.status().ok()?;
    if !status.success() {
        return None;
    }
    fs::read_to_string(out)
        .ok()?
        .trim()
        .lines()
        .last()?
        .trim()
        .parse()
        .ok()
}

fn measure_binary(binary: &Path, time: Option<&Path>, case: &Case) -> Result<BinaryRow, String> {
    // Warm-up, and a check that the binary plans this case.
    let output = plan_command(binary, case)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if !output.status.success() {
        return Err(format!(
            "mkplan exited with {}: {}",
            output.status,
            one_line(&String::from_utf8_lossy(&output.stderr))
        ));
    }
    let plan: Plan = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("plan --json is not a plan: {e}"))?;
    drop(plan);
    let json_bytes = output.stdout.len();
    let mut times_ms = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let mut command = plan_command(binary, case);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let started = Instant::now();
        let status = command.status().map_err(|e| e.to_string())?;
        times_ms.push(ms(started.elapsed()));
        if !status.success() {
            return Err(format!("a timed run exited with {status}"));
        }
    }
    let mut rss_kib = Vec::new();
    if let Some(time) = time {
        let out = case.folder.join("time.out");
        for _ in 0..3 {
            if let Some(kib) = peak_rss_kib(time, binary, case, &out) {
                rss_kib.push(kib);
            }
        }
    }
    Ok(BinaryRow {
        n: case.n,
        times_ms,
        rss_kib,
        json_bytes,
    })
}

/// Process start-up alone: `mkplan --version`.
fn startup_ms(binary: &Path) -> Option<f64> {
    let mut times = Vec::new();
    for _ in 0..=REPS {
        let started = Instant::now();
        let status = Command::new(binary)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        times.push(ms(started.elapsed()));
        if !status.success() {
            return None;
        }
    }
    Some(median(&times[1..]))
}

// ---------------------------------------------------------------------------------------------
// Input size limits met on the way.

/// Whether `Fleet::parse` (what `Simulator::open` and `live` run) reads a fresh fleet of `n`.
fn fleet_reads(n: usize) -> Result<(), String> {
    Fleet::parse("fleet.yaml", &build_fleet(n, Variant::Fresh).to_yaml())
        .map(drop)
        .map_err(|e| one_line(&e.to_string()))
}

fn desired_reads(n: usize) -> Result<(), String> {
    parse_desired(
        "desired.yaml",
        &desired_yaml(n, "fleet.yaml"),
        Path::new("."),
    )
    .map(drop)
    .map_err(|e| one_line(&e.to_string()))
}

/// The largest size in `good..bad` that `reads`, given that `good` reads and `bad` does not.
fn largest(mut good: usize, mut bad: usize, reads: impl Fn(usize) -> bool) -> usize {
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

fn print_limits(largest_size: usize) {
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
fn profile(n: usize) {
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

fn budget(value: f64, goal: f64, unit: &str) -> String {
    format!(
        "{value:.1} {unit} = {:.2} of the {goal:.0} {unit} budget",
        value / goal
    )
}

fn main() {
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
