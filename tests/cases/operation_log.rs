//! The embedded simulator's operation log through the binary: an apply killed halfway leaves
//! its changes in `fleet.yaml.oplog`, which `plan` and the next apply replay; a line torn by a
//! kill in the middle of its append is ignored; `mkplan sim compact` folds the log into the
//! fleet file; a clean apply leaves no log.

use crate::cases::apply::{PASSWORDS, assert_converged, sim, three_units};
use crate::support::*;

const LOG: &str = "fleet.yaml.oplog";

fn apply(ws: &Workspace, env: &[(&str, &str)]) -> Run {
    let mut env = env.to_vec();
    env.extend(PASSWORDS);
    ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &env)
}

#[test]
fn a_killed_apply_leaves_its_log_which_every_reader_replays_a_torn_line_ignored() {
    let ws = rotate_to_b(&three_units(true));
    let fleet_before = ws.bytes(FLEET);
    let killed = apply(&ws, &[("MKPLAN_SIM_FAULTS", "crash_after_op=5")]);
    assert_eq!(killed.code, -1, "the apply dies: {}", killed.stderr);
    assert_eq!(
        ws.bytes(FLEET),
        fleet_before,
        "the changes are in the log only"
    );
    let log = ws.read(LOG);
    // A header and at least five changes (others in flight beside the fifth may be there).
    let changes = log.lines().count() - 1;
    assert!(changes >= 5, "{log}");
    // One more change, as a kill halfway through its append leaves it: no newline.
    let last = log.lines().last().unwrap();
    let next = last.replacen(&format!("{changes} "), &format!("{} ", changes + 1), 1);
    std::fs::write(ws.path(LOG), format!("{log}{}", &next[..next.len() / 2])).unwrap();
    let replayed = sim(&ws);
    let loaded = replayed.instances[0]
        .crypto_units
        .iter()
        .filter(|u| u.new_register.status() != "Empty")
        .count();
    assert_eq!(loaded, 3, "the changes are there: {replayed:?}");
    // plan reads them: it plans no load again.
    let plan = ws.mkplan(&["plan", DESIRED, "--json"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan.stdout.contains("set_immediate"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("load_new_mk"), "{}", plan.stdout);
    // The next apply replays the log, cuts the torn line off, appends, and compacts at its end.
    let resumed = apply(&ws, &[]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(!ws.path(LOG).exists(), "compacted at the end of the apply");
    assert_converged(&ws, "after a kill and a torn line");
}

#[test]
fn sim_compact_folds_a_left_log_into_the_fleet_file() {
    let ws = rotate_to_b(&three_units(true));
    let killed = apply(&ws, &[("MKPLAN_SIM_FAULTS", "crash_after_op=3")]);
    assert_eq!(killed.code, -1, "{}", killed.stderr);
    let replayed = sim(&ws);
    let compact = ws.mkplan(&["sim", "compact", "--fleet", FLEET]);
    assert_eq!(compact.code, 0, "{}", compact.stderr);
    // The third change and any others in flight beside it when the apply died (CI saw 5).
    let compacted: usize = compact
        .stderr
        .split("Compacted ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", compact.stderr));
    assert!(compacted >= 3, "{}", compact.stderr);
    assert!(!ws.path(LOG).exists());
    let file = mkplan::backend::sim::Fleet::parse(FLEET, &ws.read(FLEET)).unwrap();
    assert_eq!(file, replayed, "the fleet file holds what the log held");
    let again = ws.mkplan(&["sim", "compact", "--fleet", FLEET]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("nothing to compact"),
        "{}",
        again.stderr
    );
    let resumed = apply(&ws, &[]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(!ws.path(LOG).exists());
    assert_converged(&ws, "after sim compact");
}
