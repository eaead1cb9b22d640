//! The multi-actor property: from random reachable starting states, on services with and
//! without a rotation status and with fast and slow rewraps, mkplan from two state folders
//! and an operator with the TKE CLI take turns under faults; the simulator records zero
//! incidents in every run, and every run ends converged or refused with the evidence it
//! needs. A failure prints its seed; `actors_case(seed)` replays it.

use std::path::Path;
use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::actors::{next_cli_step, run_cast};
use super::tests::key_parts;
use super::*;
use crate::backend::sim::hsm;
use crate::model::parse_desired;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Runs of the property in `cargo test`.
const RUNS: u64 = 2_000;

fn desired() -> &'static DesiredState {
    static STATE: OnceLock<DesiredState> = OnceLock::new();
    STATE.get_or_init(|| {
        let text = std::fs::read_to_string(format!("{ROOT}/plans/three-units.yaml")).unwrap();
        parse_desired("three-units.yaml", &text, &Path::new(ROOT).join("plans")).unwrap()
    })
}

/// A reachable starting state drawn from `seed`: the example instance with 2 to 4 crypto
/// units, with or without a rotation status, a fast or a slow rewrap (a slow one outlasts
/// mkplan's wait), and some steps of the TKE CLI's sequence already taken.
fn starting_fleet(seed: u64) -> Fleet {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5747_0001);
    let text = std::fs::read_to_string(format!("{ROOT}/examples/fleets/three-units.yaml")).unwrap();
    let mut fleet = Fleet::parse("three-units.yaml", &text).unwrap();
    let instance = &mut fleet.instances[0];
    instance.reports_rotation_status = rng.random_bool(0.5);
    instance.key_storage.rewrap_ms_per_key = [0, 20, 250][rng.random_range(0..3)];
    let units = rng.random_range(2..=4);
    while instance.crypto_units.len() < units {
        let mut extra = instance.crypto_units[0].clone();
        extra.hsm_id = format!(
            "0a1b2c3d-0000-4000-8000-{:012}",
            instance.crypto_units.len() + 1
        );
        instance.crypto_units.push(extra);
    }
    instance.crypto_units.truncate(units);
    let target = &desired().instances[0].master_key.verification_pattern;
    let signers = vec!["alice".to_string(), "bob".to_string()];
    let id = instance.id.clone();
    for _ in 0..rng.random_range(0..=(2 * units)) {
        let Some(step) = next_cli_step(&fleet, &id, target, &signers) else {
            break;
        };
        hsm::perform(&mut fleet, &step).expect("the TKE CLI's sequence is accepted");
    }
    assert!(fleet.incidents.is_empty());
    fleet
}

/// One run of the property: its result and the fleet it started from.
fn actors_case(seed: u64, scratch: &Path) -> RunResult {
    let fleet = starting_fleet(seed);
    let drill = Drill {
        desired: desired(),
        desired_sha256: "sha",
        fleet: &fleet,
        key_parts: key_parts(),
        planner: crate::plan::plan,
    };
    let operations = 3 * fleet.instances[0].crypto_units.len() as u64 + 1;
    runtime(false)
        .unwrap()
        .block_on(run_cast(&drill, seed, seed, operations, scratch, None))
        .unwrap()
}

/// The property's runs are split in `SHARDS` tests of consecutive runs, so that the test
/// threads share them (the same seeds as one test of `RUNS` runs).
const SHARDS: u64 = 4;

#[test]
fn several_actors_never_lose_a_key_1() {
    several_actors_never_lose_a_key(0);
}

#[test]
fn several_actors_never_lose_a_key_2() {
    several_actors_never_lose_a_key(1);
}

#[test]
fn several_actors_never_lose_a_key_3() {
    several_actors_never_lose_a_key(2);
}

#[test]
fn several_actors_never_lose_a_key_4() {
    several_actors_never_lose_a_key(3);
}

fn several_actors_never_lose_a_key(shard: u64) {
    let scratch = tempfile::tempdir().unwrap();
    let seed = std::env::var("MKPLAN_ACTORS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_130u64);
    let (mut converged, mut refused) = (0, 0);
    // How often the dangerous paths were taken: the operator's word, a rewrap by the TKE
    // CLI, both folders acting in one run.
    let (mut attested, mut cli_rewraps, mut both_folders) = (0, 0, 0);
    let runs = RUNS / SHARDS;
    for index in shard * runs..(shard + 1) * runs {
        let run_seed = run_seed(seed, index);
        let result = actors_case(run_seed, scratch.path());
        match &result.verdict {
            Verdict::Converged => converged += 1,
            Verdict::Refused { reason } => {
                refused += 1;
                assert!(
                    reason.contains("rewrap_evidence") || reason.contains("evidence_consistent"),
                    "seed {run_seed}: refused without naming the evidence: {reason}\nturns: {}\nendings: {:#?}",
                    result.schedule.describe(),
                    result.attempt_endings
                );
            }
            Verdict::Failed { why } => panic!(
                "seed {run_seed} failed (replay: MKPLAN_ACTORS_SEED={run_seed} cargo test --lib several_actors_never_lose_a_key_1; it runs first): {why}\nturns: {}\nendings: {:#?}\nlog: {:#?}",
                result.schedule.describe(),
                result.attempt_endings,
                result.log
            ),
        }
        assert!(
            result.violations.is_empty(),
            "seed {run_seed}: {:?}",
            result.violations
        );
        let said = |what: &str| result.attempt_endings.iter().any(|e| e.contains(what));
        attested += u32::from(said("operator attested"));
        cli_rewraps += u32::from(said("(TKE CLI): rewrap_key_storage"));
        both_folders += u32::from(said("X: ") && said("Y: "));
    }
    eprintln!(
        "{runs} multi-actor runs: {converged} converged, {refused} refused, 0 incidents; {attested} with attestations, {cli_rewraps} with a rewrap by the TKE CLI, {both_folders} with both state folders"
    );
    assert!(attested > 0 && cli_rewraps > 0 && both_folders > 0);
    assert!(converged > runs / 2, "{converged} of {runs} converged");
}
