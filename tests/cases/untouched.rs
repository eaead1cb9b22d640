//! `plan`, `status` and `validate` only read: the simulator's fleet file keeps its bytes (and
//! its modification time), and no lock or temporary file appears beside it.

use std::fs;

use crate::support::*;

fn assert_untouched(fleet: &Fleet, commands: &[&[&str]]) {
    let workspace = rotate_to_b(fleet);
    let bytes = workspace.bytes(FLEET);
    let modified = fs::metadata(workspace.path(FLEET))
        .unwrap()
        .modified()
        .unwrap();
    let listing = workspace.listing();
    for args in commands {
        let run = workspace.mkplan(args);
        assert!(
            [0, 2, 3].contains(&run.code),
            "mkplan {args:?}: exit {}\n{}",
            run.code,
            run.stderr
        );
        assert_eq!(
            workspace.bytes(FLEET),
            bytes,
            "mkplan {args:?} changed the fleet file"
        );
        assert_eq!(
            fs::metadata(workspace.path(FLEET))
                .unwrap()
                .modified()
                .unwrap(),
            modified,
            "mkplan {args:?} rewrote the fleet file"
        );
        let created: Vec<_> = workspace.listing().difference(&listing).cloned().collect();
        assert!(
            created.iter().all(|f| f == "p.json"),
            "mkplan {args:?} created {created:?}"
        );
    }
}

const READERS: &[&[&str]] = &[
    &["plan", DESIRED],
    &["plan", DESIRED, "--json", "--detailed-exitcode"],
    &["plan", DESIRED, "--markdown", "--out", "p.json"],
    &["status", DESIRED],
    &["status", DESIRED, "--json"],
    &["validate", DESIRED],
];

#[test]
fn plan_and_status_never_touch_a_fresh_fleet() {
    assert_untouched(
        &Fleet::instance().key_storage(A).units(3, empty(), valid(A)),
        READERS,
    );
}

#[test]
fn plan_and_status_never_touch_a_fleet_after_the_rewrap() {
    assert_untouched(
        &Fleet::instance()
            .key_storage(B)
            .unit(empty(), valid(B))
            .units(2, committed(B), valid(A)),
        READERS,
    );
}

#[test]
fn a_refused_plan_never_touches_the_fleet() {
    let readers: &[&[&str]] = &[
        &["plan", DESIRED],
        &["plan", DESIRED, "--json"],
        &["status", DESIRED, "--json"],
    ];
    assert_untouched(
        &Fleet::instance()
            .key_storage(A)
            .reports_rotation_status(false)
            .units(3, committed(B), valid(A)),
        readers,
    );
}
