//! The drill's backend: the slow rewrap on the drill's clock, a lost rewrap response, and a
//! rerun that waits (or not) for the running rewrap.

use std::collections::BTreeSet;

use super::*;
use crate::model::{NewRegister, RewrapStatus, VerificationPattern};

const INSTANCE: &str = "5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b";

/// examples/fleets/three-units.yaml, every new register Full Committed: a rewrap of
/// 3,000 keys at 20 ms each, a minute on the service.
fn staged() -> Fleet {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/fleets/three-units.yaml"
    );
    let mut fleet = Fleet::parse(path, &std::fs::read_to_string(path).unwrap()).unwrap();
    let instance = &mut fleet.instances[0];
    instance.key_storage.rewrap_ms_per_key = 20;
    let new = VerificationPattern::parse(&"b".repeat(64)).unwrap();
    for unit in &mut instance.crypto_units {
        unit.new_register = NewRegister::FullCommitted(new.clone());
    }
    fleet
}

fn schedule(attempts: Vec<AttemptFaults>) -> Schedule {
    Schedule {
        seed: 1,
        parallelism: 1,
        latency_ms: 0,
        attempts,
        actors: Vec::new(),
    }
}

async fn status(backend: &DrillBackend) -> RewrapStatus {
    let ids = [INSTANCE.to_string()];
    backend.refresh(&ids).await.unwrap().instances[0].rewrap_status
}

const REWRAP: Operation<'static> = Operation::RewrapKeyStorage { instance: INSTANCE };

#[tokio::test(start_paused = true)]
async fn a_rewrap_returns_once_completed_on_the_drills_clock() {
    let backend = DrillBackend::new(staged(), schedule(Vec::new()));
    backend.start_attempt(1);
    let (real, simulated) = (std::time::Instant::now(), tokio::time::Instant::now());
    backend.perform(&REWRAP, SendBy::ANY_TIME).await.unwrap();
    assert!(simulated.elapsed() >= Duration::from_secs(60));
    assert!(real.elapsed() < Duration::from_secs(5), "no real time");
    assert_eq!(status(&backend).await, RewrapStatus::Rewrapped);
}

#[tokio::test(start_paused = true)]
async fn a_lost_rewrap_response_comes_at_acceptance_and_the_rewrap_runs_on() {
    let lost = AttemptFaults {
        lose_response_op: BTreeSet::from([1]),
        ..AttemptFaults::default()
    };
    let backend = DrillBackend::new(staged(), schedule(vec![lost]));
    backend.start_attempt(1);
    let simulated = tokio::time::Instant::now();
    let error = backend
        .perform(&REWRAP, SendBy::ANY_TIME)
        .await
        .unwrap_err();
    assert!(matches!(error, BackendError::Transient(_)), "{error}");
    assert!(simulated.elapsed() < Duration::from_secs(1));
    assert_eq!(status(&backend).await, RewrapStatus::InProgress);
    // A rerun at once: its rewrap finds the instance busy, and nothing is lost.
    backend.start_attempt_with(2, AttemptFaults::default());
    let busy = backend
        .perform(&REWRAP, SendBy::ANY_TIME)
        .await
        .unwrap_err();
    assert!(busy.to_string().contains("in progress"), "{busy}");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(status(&backend).await, RewrapStatus::Rewrapped);
    assert!(
        backend.violations().is_empty(),
        "{:?}",
        backend.violations()
    );
    assert!(backend.fleet().incidents.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_rerun_starts_at_once_or_after_the_running_rewrap_as_the_schedule_says() {
    let lost = AttemptFaults {
        lose_response_op: BTreeSet::from([1]),
        ..AttemptFaults::default()
    };
    let drawn = |at_once: bool| {
        (0..)
            .map(|seed| Schedule {
                seed,
                ..schedule(vec![lost.clone()])
            })
            .find(|s| s.rerun_at_once(2) == at_once)
            .unwrap()
    };
    for at_once in [true, false] {
        let backend = DrillBackend::new(staged(), drawn(at_once));
        backend.start_attempt(1);
        let _ = backend.perform(&REWRAP, SendBy::ANY_TIME).await;
        backend.start_attempt(2);
        let expected = if at_once {
            RewrapStatus::InProgress
        } else {
            RewrapStatus::Rewrapped
        };
        assert_eq!(status(&backend).await, expected, "at once: {at_once}");
    }
}
