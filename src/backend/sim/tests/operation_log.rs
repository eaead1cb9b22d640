//! The embedded simulator's operation log: an operation appends one line and leaves the fleet
//! file alone; every process sees every other's lines; the process that wrote the log
//! compacts it when it ends cleanly; a kill leaves it for the next reader and writer, and a
//! line torn by a kill in the middle of its append is ignored, as `sim serve`'s log is.

use std::path::Path;

use super::simulator::{block_on, crash_child, on_disk, simulator_on};
use super::*;

fn log_of(simulator: &Simulator) -> String {
    std::fs::read_to_string(oplog::log_path(simulator.path())).unwrap_or_default()
}

#[test]
fn an_operation_appends_one_line_and_a_clean_end_compacts_it() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator_on(folder.path(), &committed(), "");
    let before = std::fs::read(simulator.path()).unwrap();
    block_on(simulator.perform(&rewrap())).unwrap();
    block_on(simulator.perform(&set_immediate(1))).unwrap();
    assert_eq!(
        std::fs::read(simulator.path()).unwrap(),
        before,
        "the file is untouched"
    );
    assert_eq!(
        log_of(&simulator).lines().count(),
        3,
        "a header and two changes"
    );
    let path = simulator.path().to_path_buf();
    let expected = on_disk(&simulator);
    drop(simulator);
    assert!(!oplog::log_path(&path).exists(), "compacted when it ended");
    let compacted = Fleet::parse("f", &std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(compacted, expected);
    assert_eq!(
        compacted.instances[0].key_storage.verification_pattern,
        key(0xB)
    );
}

#[test]
fn two_processes_on_one_fleet_see_each_others_lines() {
    let folder = tempfile::tempdir().unwrap();
    let first = simulator_on(folder.path(), &committed(), "");
    let second = Simulator::open(first.path(), Faults::default()).unwrap();
    block_on(first.perform(&rewrap())).unwrap();
    // The second catches up with the first's line before it operates, and appends after it.
    block_on(second.perform(&set_immediate(1))).unwrap();
    block_on(first.perform(&set_immediate(2))).unwrap();
    for simulator in [&first, &second] {
        let units = &simulator.read().unwrap().instances[0].crypto_units;
        assert_eq!(units[0].current_register, CurrentRegister::Valid(key(0xB)));
        assert_eq!(units[1].current_register, CurrentRegister::Valid(key(0xB)));
    }
    assert_eq!(log_of(&first).lines().count(), 4, "one log, three changes");
    // The first compacts what both wrote; the second then reads the new file.
    drop(first);
    block_on(second.perform(&set_immediate(3))).unwrap();
    let fleet = on_disk(&second);
    assert!(
        fleet.instances[0]
            .crypto_units
            .iter()
            .all(|u| u.current_register == CurrentRegister::Valid(key(0xB)))
    );
    assert!(fleet.incidents.is_empty(), "{:?}", fleet.incidents);
}

#[test]
fn compact_retires_a_log_a_killed_process_left() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator_on(folder.path(), &committed(), "");
    block_on(simulator.perform(&rewrap())).unwrap();
    let path = simulator.path().to_path_buf();
    std::mem::forget(simulator); // as a kill: no clean end
    let reader = Simulator::open(&path, Faults::default()).unwrap();
    assert_eq!(reader.compact().unwrap(), Some(1));
    assert!(!oplog::log_path(&path).exists());
    assert_eq!(reader.compact().unwrap(), None, "nothing left to compact");
    let fleet = Fleet::parse("f", &std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        fleet.instances[0].key_storage.verification_pattern,
        key(0xB)
    );
}

/// A kill in the middle of an append leaves part of a line without its newline. That line was
/// never acknowledged (its operation had not returned): readers ignore it, and the next writer
/// cuts it off before it appends, so that the log stays whole.
#[test]
fn a_line_torn_by_a_kill_during_its_append_is_ignored_and_cut_off() {
    if let Ok(folder) = std::env::var("MKPLAN_TEST_TORN_CHILD") {
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
    let path = folder.path().join("fleet.yaml");
    simulator_on(folder.path(), &committed(), "");
    crash_child(
        "backend::sim::tests::operation_log::a_line_torn_by_a_kill_during_its_append_is_ignored_and_cut_off",
        "MKPLAN_TEST_TORN_CHILD",
        folder.path(),
    );
    // The third operation's line, as a kill halfway through its write leaves it.
    let log_file = oplog::log_path(&path);
    let whole = std::fs::read_to_string(&log_file).unwrap();
    assert_eq!(whole.lines().count(), 3, "the killed process's two changes");
    let mut fleet = oplog::read(&path).unwrap();
    let next = {
        let mut after = fleet.clone();
        hsm::perform_at(&mut after, &set_immediate(2), 0).unwrap();
        oplog::Entry::change(&after, &[0], after.incidents.len()).line(3)
    };
    let torn = &next[..next.len() / 2];
    std::fs::write(&log_file, format!("{whole}{torn}")).unwrap();
    assert_eq!(
        oplog::read(&path).unwrap(),
        fleet,
        "a reader ignores the torn line"
    );
    // The next writer cuts it off and appends whole lines after the killed process's.
    let simulator = Simulator::open(&path, Faults::default()).unwrap();
    assert_eq!(simulator.read().unwrap(), fleet);
    block_on(simulator.perform(&set_immediate(3))).unwrap();
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        log.starts_with(&whole) && !log.contains(torn),
        "torn line cut off:\n{log}"
    );
    assert_eq!(log.lines().count(), 4);
    hsm::perform_at(&mut fleet, &set_immediate(3), 0).unwrap();
    assert_eq!(on_disk(&simulator).instances, fleet.instances);
    assert!(on_disk(&simulator).incidents.is_empty());
}

/// A damaged line with whole lines after it is damage to acknowledged changes: refused, with
/// the fleet file and the log left as they are.
#[test]
fn a_damaged_line_before_whole_ones_is_refused_and_nothing_is_written() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator_on(folder.path(), &committed(), "");
    block_on(simulator.perform(&rewrap())).unwrap();
    block_on(simulator.perform(&set_immediate(1))).unwrap();
    let path = simulator.path().to_path_buf();
    std::mem::forget(simulator);
    let log_file = oplog::log_path(&path);
    let damaged = std::fs::read_to_string(&log_file)
        .unwrap()
        .replacen("\"Valid\"", "\"Valud\"", 1);
    std::fs::write(&log_file, &damaged).unwrap();
    let fleet_bytes = std::fs::read(&path).unwrap();
    let simulator = Simulator::open(&path, Faults::default()).unwrap();
    let error = simulator.read().unwrap_err().to_string();
    assert!(error.contains("cannot be replayed"), "{error}");
    assert!(block_on(simulator.perform(&set_immediate(2))).is_err());
    drop(simulator);
    assert_eq!(std::fs::read(&path).unwrap(), fleet_bytes);
    assert_eq!(std::fs::read_to_string(&log_file).unwrap(), damaged);
}
