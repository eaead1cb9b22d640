//! (c) the real binary.

use super::*;

pub(crate) fn binary_path() -> PathBuf {
    std::env::var_os("MKPLAN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/mkplan"))
}

pub(crate) fn plan_command(program: &Path, case: &Case) -> Command {
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

pub(crate) struct BinaryRow {
    pub(crate) n: usize,
    pub(crate) times_ms: Vec<f64>,
    pub(crate) rss_kib: Vec<u64>,
    pub(crate) json_bytes: usize,
}

/// Peak RSS in KiB of one run of `command` under `/usr/bin/time -f %M -o FILE`.
pub(crate) fn peak_rss_kib(time: &Path, binary: &Path, case: &Case, out: &Path) -> Option<u64> {
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

pub(crate) fn measure_binary(
    binary: &Path,
    time: Option<&Path>,
    case: &Case,
) -> Result<BinaryRow, String> {
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
pub(crate) fn startup_ms(binary: &Path) -> Option<f64> {
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
