//! (a) the pure planner.

use super::*;

pub(crate) fn measure_pure(n: usize, variant: Variant) -> (Row, String) {
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
