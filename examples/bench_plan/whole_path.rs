//! (b) the whole `plan` path in process.

use super::*;

pub(crate) const STAGES: [&str; 9] = [
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

pub(crate) type StageTimes = [Duration; STAGES.len()];

/// One run of the path: the time of each stage in `STAGES` order, the plan's step count and
/// the sizes of the three views. An input the CLI would refuse is an `Err` naming the stage.
pub(crate) fn whole_path_once(case: &Case) -> Result<(StageTimes, usize, [usize; 3]), String> {
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

pub(crate) fn one_line(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

pub(crate) struct WholePath {
    pub(crate) row: Row,
    /// Per stage, the median over the repetitions, in ms.
    pub(crate) stage_ms: [f64; STAGES.len()],
    pub(crate) output_bytes: [usize; 3],
}

pub(crate) fn measure_whole(case: &Case) -> Result<WholePath, String> {
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

pub(crate) fn print_stages(title: &str, cases: &[(&Case, &WholePath)]) {
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
