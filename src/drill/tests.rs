//! The drill on the example fleet: the real planner passes, a deliberately defective one is
//! caught with a seed that replays its failure, and the same seed gives the same verdicts.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use super::*;
use crate::keypart;
use crate::model::parse_desired;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn desired() -> (DesiredState, String) {
    let text = std::fs::read_to_string(format!("{ROOT}/plans/three-units.yaml")).unwrap();
    let state = parse_desired("three-units.yaml", &text, &Path::new(ROOT).join("plans")).unwrap();
    (state, "sha".into())
}

fn fleet(reports_status: bool) -> Fleet {
    let text = std::fs::read_to_string(format!("{ROOT}/examples/fleets/three-units.yaml")).unwrap();
    let mut fleet = Fleet::parse("three-units.yaml", &text).unwrap();
    fleet.instances[0].reports_rotation_status = reports_status;
    fleet
}

/// The demo key parts, decrypted once for all tests (Argon2id is slow by design).
pub(super) fn key_parts() -> &'static HashMap<String, Vec<Secret32>> {
    static PARTS: OnceLock<HashMap<String, Vec<Secret32>>> = OnceLock::new();
    PARTS.get_or_init(|| {
        let (state, _) = desired();
        let parts = (1..=2)
            .map(|n| {
                let path = format!("{ROOT}/plans/keyparts/custodian-{n}.json");
                let file =
                    keypart::parse_file(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
                keypart::open(
                    &file,
                    &keypart::Password::new(format!("demo-custodian-{n}")),
                )
                .unwrap()
            })
            .collect();
        HashMap::from([(state.instances[0].id.clone(), parts)])
    })
}

fn drill_runs(planner: Planner, reports_status: bool, seed: u64, runs: u64) -> Vec<RunResult> {
    let (state, sha) = desired();
    let fleet = fleet(reports_status);
    let drill = Drill {
        desired: &state,
        desired_sha256: &sha,
        fleet: &fleet,
        key_parts: key_parts(),
        planner,
    };
    let scratch = tempfile::tempdir().unwrap();
    let runtime = runtime(false).unwrap();
    (0..runs)
        .map(|i| {
            runtime
                .block_on(run_one(&drill, i, run_seed(seed, i), 10, scratch.path()))
                .unwrap()
        })
        .collect()
}

#[test]
fn the_planner_survives_every_schedule_and_the_same_seed_gives_the_same_verdicts() {
    for reports_status in [true, false] {
        let results = drill_runs(crate::plan::plan, reports_status, 20261127, 150);
        for result in &results {
            assert!(
                !result.failed(),
                "run {} (seed {}) failed: {:?}\nschedule {}\nendings {:#?}\nlog {:#?}",
                result.run,
                result.schedule.seed,
                result.verdict,
                result.schedule.describe(),
                result.attempt_endings,
                result.log
            );
        }
        let converged = results
            .iter()
            .filter(|r| r.verdict == Verdict::Converged)
            .count();
        assert!(converged > 100, "{converged} of 150 converged");
        let again = drill_runs(crate::plan::plan, reports_status, 20261127, 150);
        let verdicts = |rs: &[RunResult]| {
            rs.iter()
                .map(|r| (r.verdict.clone(), r.attempts, r.operations))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            verdicts(&results),
            verdicts(&again),
            "same seed, same verdicts"
        );
    }
}

#[test]
fn without_a_status_only_an_unsettled_rewrap_is_refused() {
    let results = drill_runs(crate::plan::plan, false, 7, 300);
    let refused: Vec<_> = results
        .iter()
        .filter_map(|r| match &r.verdict {
            Verdict::Refused { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(
        !refused.is_empty(),
        "some schedule leaves the rewrap unsettled"
    );
    for reason in refused {
        assert!(reason.contains("rewrap_evidence"), "{reason}");
    }
}

/// A planner that forgets the journal and believes every rewrap has run: after a crash
/// between the commits and the rewrap, it plans set immediate before the rewrap. (One that
/// plans a second rewrap is stopped by the executor's re-read just before the rewrap.)
fn forgetful(
    desired: &DesiredState,
    sha: &str,
    live: &LiveFleet,
    _: &JournalEvidence,
) -> Result<Plan, PlanRefused> {
    let mut live = live.clone();
    for instance in &mut live.instances {
        // Only where a rewrap could have run (a key committed): a service "waiting on set
        // immediate" with nothing staged is refused as a contradiction by the real planner.
        let staged = instance
            .crypto_units
            .iter()
            .any(|u| matches!(u.new_register, crate::model::NewRegister::FullCommitted(_)));
        if instance.rewrap_status == RewrapStatus::NotRewrapped && staged {
            instance.rewrap_status = RewrapStatus::Rewrapped;
        }
    }
    crate::plan::plan(desired, sha, &live, &JournalEvidence::none())
}

#[test]
fn a_defective_planner_is_caught_with_a_seed_that_replays_it() {
    let results = drill_runs(forgetful, true, 1, 200);
    let failed: Vec<&RunResult> = results.iter().filter(|r| r.failed()).collect();
    assert!(
        !failed.is_empty(),
        "the drill must catch the repeated rewrap"
    );
    let first = failed[0];
    let Verdict::Failed { why } = &first.verdict else {
        unreachable!()
    };
    assert!(why.contains("incident"), "{why}");
    assert!(!first.violations.is_empty());
    // Its seed alone replays it: run 0 of a drill seeded with it.
    let replay = drill_runs(forgetful, true, first.schedule.seed, 1);
    assert_eq!(replay[0].verdict, first.verdict);
    assert_eq!(replay[0].schedule, first.schedule);
    // The result counts the incidents, and the report names the run and how to replay it.
    let (state, sha) = desired();
    let live = LiveFleet {
        instances: vec![fleet(true).instances[0].live()],
    };
    let plan = crate::plan::plan(&state, &sha, &live, &JournalEvidence::none()).unwrap();
    let failures = results.iter().filter(|r| r.failed()).count() as u64;
    let result = DrillResult::new(200, 1, &plan, live.fingerprint(), results.clone(), 0);
    assert_eq!(result.failed, failures);
    assert!(result.incidents >= failures);
    let text = report::markdown(
        &result,
        "test",
        "mkplan drill d.yaml --runs 1 --seed {seed}",
    );
    assert!(text.contains("**FAILED**"));
    assert!(text.contains(&format!(
        "Replay: `mkplan drill d.yaml --runs 1 --seed {}`",
        first.schedule.seed
    )));
}

#[test]
fn a_snapshot_of_the_live_state_infers_the_key_storage_from_the_evidence() {
    let (state, sha) = desired();
    let mut truth_fleet = fleet(true);
    // After the rewrap, unit 1 promoted: the storage is under the staged key.
    let text = std::fs::read_to_string(format!(
        "{ROOT}/examples/fleets/interrupted-after-rewrap.yaml"
    ))
    .unwrap();
    let interrupted = Fleet::parse("f", &text).unwrap();
    truth_fleet.instances[0] = interrupted.instances[0].clone();
    let live = LiveFleet {
        instances: vec![truth_fleet.instances[0].live()],
    };
    let taken = snapshot(&state, &sha, &live, &JournalEvidence::none()).unwrap();
    let got = &taken.instances[0];
    let truth = &truth_fleet.instances[0];
    assert_eq!(
        got.key_storage.verification_pattern,
        truth.key_storage.verification_pattern
    );
    assert_eq!(got.rewrap_status(), truth.rewrap_status());
    assert_eq!(got.crypto_units, truth.crypto_units);
    // All committed, no status, no journal: the evidence settles nothing, so no snapshot.
    let target = state.instances[0].master_key.verification_pattern.clone();
    let mut silent = fleet(false).instances[0].live();
    for unit in &mut silent.crypto_units {
        unit.new_register = NewRegister::FullCommitted(target.clone());
    }
    let live = LiveFleet {
        instances: vec![silent],
    };
    let refused = snapshot(&state, &sha, &live, &JournalEvidence::none()).unwrap_err();
    assert!(refused.to_string().contains("rewrap"), "{refused}");
}
