//! The embedded simulator (`sim:`): every change on disk before it returns, the four faults,
//! and the slow rewrap on the wall clock and on a paused one.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::clock::TokioClock;
use super::*;

pub(super) fn simulator_on(folder: &Path, fleet: &Fleet, faults: &str) -> Simulator {
    let path = folder.join("fleet.yaml");
    std::fs::write(&path, fleet.to_yaml()).unwrap();
    Simulator::open(&path, Faults::parse(faults).unwrap()).unwrap()
}

/// The fleet as any other process reads it: the file, with the operation log replayed.
pub(super) fn on_disk(simulator: &Simulator) -> Fleet {
    oplog::read(simulator.path()).unwrap()
}

#[test]
fn the_embedded_simulator_returns_from_a_rewrap_once_it_has_completed() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator_on(folder.path(), &committed_slow(3, 100), "");
    let started = Instant::now();
    block_on(simulator.perform(&rewrap())).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    let storage = on_disk(&simulator).instances[0].key_storage.clone();
    assert_eq!(
        storage.verification_pattern,
        key(0xB),
        "written at completion"
    );
    assert_eq!(storage.rewrap_in_progress, None);
}

/// On tokio's paused clock, so that the times compared are exact on a loaded machine: the
/// lost answer comes back before any time passes, and the rewrap completes 400 ms later.
#[tokio::test(start_paused = true)]
async fn a_lost_rewrap_response_returns_at_once_while_the_rewrap_runs_on() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator_on(folder.path(), &committed_slow(4, 100), "lose_response_op=1")
        .with_clock(Arc::new(TokioClock::starting_at(0)));
    let started = tokio::time::Instant::now();
    let lost = simulator.perform(&rewrap()).await.unwrap_err();
    assert!(matches!(lost, BackendError::Transient(_)), "{lost}");
    assert!(started.elapsed() < Duration::from_millis(400));
    let ids = [INSTANCE.to_string()];
    let live = simulator.live(&ids).unwrap();
    assert_eq!(live.instances[0].rewrap_status, RewrapStatus::InProgress);
    let busy = simulator.perform(&set_immediate(1)).await.unwrap_err();
    assert!(
        matches!(busy, BackendError::RewrapRunning(_)),
        "busy: {busy}"
    );
    assert!(busy.to_string().contains("in progress"), "{busy}");
    tokio::time::sleep(Duration::from_millis(450).saturating_sub(started.elapsed())).await;
    // Whoever reads next sees it complete; the next operation writes it.
    let live = simulator.live(&ids).unwrap();
    assert_eq!(live.instances[0].rewrap_status, RewrapStatus::Rewrapped);
    assert!(
        on_disk(&simulator).instances[0]
            .key_storage
            .rewrap_in_progress
            .is_some()
    );
    simulator.perform(&set_immediate(1)).await.unwrap();
    let written = on_disk(&simulator);
    assert_eq!(
        written.instances[0].key_storage.rewrapped_from,
        Some(key(0xA))
    );
    assert!(written.incidents.is_empty(), "{:?}", written.incidents);
}

/// The clock seam: on tokio's paused clock a minute-long rewrap costs no real time.
#[tokio::test(start_paused = true)]
async fn a_minute_long_rewrap_on_a_paused_clock_takes_no_time() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator_on(folder.path(), &committed_slow(3000, 20), "")
        .with_clock(Arc::new(TokioClock::starting_at(0)));
    let started = Instant::now();
    simulator.perform(&rewrap()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        on_disk(&simulator).instances[0]
            .key_storage
            .verification_pattern,
        key(0xB)
    );
}

#[test]
fn every_operation_is_persisted_before_it_returns() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator_on(folder.path(), &committed(), "");
    block_on(simulator.perform(&rewrap())).unwrap();
    let reread = on_disk(&simulator);
    assert_eq!(
        reread.instances[0].key_storage.verification_pattern,
        key(0xB)
    );
    assert_eq!(
        reread.instances[0].key_storage.rewrapped_from,
        Some(key(0xA))
    );
    // The fleet round-trips through YAML exactly.
    assert_eq!(Fleet::parse("f", &reread.to_yaml()).unwrap(), reread);
}

#[test]
fn fail_op_has_no_effect_and_lose_response_op_has_its_effect() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator_on(folder.path(), &committed(), "fail_op=1,lose_response_op=2");
    let failed = block_on(simulator.perform(&rewrap())).unwrap_err();
    assert!(matches!(failed, BackendError::Transient(_)), "{failed}");
    assert_eq!(
        simulator.read().unwrap().instances[0]
            .key_storage
            .verification_pattern,
        key(0xA)
    );
    let lost = block_on(simulator.perform(&rewrap())).unwrap_err();
    assert!(matches!(lost, BackendError::Transient(_)), "{lost}");
    assert_eq!(
        simulator.read().unwrap().instances[0]
            .key_storage
            .verification_pattern,
        key(0xB)
    );
    // Operation 3 has no fault.
    block_on(simulator.perform(&set_immediate(1))).unwrap();
}

#[test]
fn latency_ms_delays_every_operation() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator_on(folder.path(), &committed(), "latency_ms=30");
    let started = Instant::now();
    block_on(simulator.perform(&rewrap())).unwrap();
    block_on(simulator.perform(&set_immediate(1))).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(60));
}

/// The crash fault aborts the process, so it runs in a child: this same test binary,
/// re-entered with an environment variable that makes the test below act as the child.
#[test]
fn crash_after_op_persists_the_operation_then_aborts() {
    if let Ok(folder) = std::env::var("MKPLAN_TEST_CRASH_CHILD") {
        let simulator = Simulator::open(
            &Path::new(&folder).join("fleet.yaml"),
            Faults::parse("crash_after_op=2").unwrap(),
        )
        .unwrap();
        block_on(simulator.perform(&rewrap())).unwrap();
        let _ = block_on(simulator.perform(&set_immediate(1)));
        unreachable!("crash_after_op=2 must abort during the second operation");
    }
    let folder = tempfile::tempdir().unwrap();
    simulator_on(folder.path(), &committed(), "");
    crash_child(
        "backend::sim::tests::simulator::crash_after_op_persists_the_operation_then_aborts",
        "MKPLAN_TEST_CRASH_CHILD",
        folder.path(),
    );
    let fleet = oplog::read(&folder.path().join("fleet.yaml")).unwrap();
    assert_eq!(
        fleet.instances[0].crypto_units[0].current_register,
        CurrentRegister::Valid(key(0xB)),
        "operation 2 took effect"
    );
    assert_eq!(
        fleet.instances[0].crypto_units[1].new_register,
        NewRegister::FullCommitted(key(0xB)),
        "nothing after it"
    );
    assert!(fleet.incidents.is_empty());
}

/// A crash right after the service accepted a rewrap leaves it running; it completes on its
/// own time, for whoever reads the fleet next.
#[test]
fn a_crash_right_after_a_rewrap_leaves_it_running_until_its_end() {
    if let Ok(folder) = std::env::var("MKPLAN_TEST_CRASH_REWRAP_CHILD") {
        let simulator = Simulator::open(
            &Path::new(&folder).join("fleet.yaml"),
            Faults::parse("crash_after_op=1").unwrap(),
        )
        .unwrap();
        let _ = block_on(simulator.perform(&rewrap()));
        unreachable!("crash_after_op=1 must abort during the rewrap");
    }
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator_on(folder.path(), &committed_slow(2, 300), "");
    let started = Instant::now();
    crash_child(
        "backend::sim::tests::simulator::a_crash_right_after_a_rewrap_leaves_it_running_until_its_end",
        "MKPLAN_TEST_CRASH_REWRAP_CHILD",
        folder.path(),
    );
    let running = on_disk(&simulator).instances[0].key_storage.clone();
    let Some(running) = running.rewrap_in_progress else {
        panic!("the rewrap must be on disk, running: {running:?}");
    };
    assert_eq!((running.from, running.to), (key(0xA), key(0xB)));
    std::thread::sleep(Duration::from_millis(700).saturating_sub(started.elapsed()));
    let now = simulator.read().unwrap();
    assert_eq!(now.instances[0].key_storage.verification_pattern, key(0xB));
    assert_eq!(now.instances[0].rewrap_status(), RewrapStatus::Rewrapped);
}

/// Runs the test named `test` of this binary as a child (told by `variable`) that must abort.
pub(super) fn crash_child(test: &str, variable: &str, folder: &Path) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture"])
        .env(variable, folder)
        .status()
        .unwrap();
    #[cfg(unix)]
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(6),
        "{status:?}"
    );
}

pub(super) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
        .block_on(future)
}
