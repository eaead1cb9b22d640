//! Classes 8–10: "rewrapped" candidates come from every register, a stale journal never
//! blocks forever, the safe recovery after the rewrap.

use mkplan::model::NewRegister;

use super::*;
use crate::cases::apply::{assert_converged, assert_no_incidents, three_units};
use crate::support::*;

// ---------------------------------------------------------------------------------------------
// 8. "Rewrapped" candidates come from every register

/// Class 8, "rewrapped" candidates come from every register. The service reports "rewrap
/// successful, waiting on set immediate" (from A); the storage is under C, whose only copy is
/// u1's new register (Full Uncommitted C): u2 and u3 were restaged with B by hand after a
/// rewrap A → C. Today only committed new registers are candidates, so B is taken as the
/// storage's key and the plan clears u1's C (the key storage lost). It must refuse (exit 3)
/// and plan no clear_new_mk.
#[test]
fn an_uncommitted_register_is_a_rewrap_candidate_too() {
    let fleet = Fleet::instance()
        .key_storage(C)
        .reports_rotation_status(true)
        .unit(uncommitted(C), valid(A))
        .unit(committed(B), valid(A))
        .unit(committed(B), valid(A));
    let ws = rotate_to_b(&fleet);
    ws.write(FLEET, &rewrapped_from(&fleet, A));
    let before = ws.bytes(FLEET);
    let run = ws.plan();
    if run.code == 2 {
        let plan = run.json();
        panic!(
            "planned instead of refusing (clears: {:?}): {:?}",
            find(&plan, "clear_new_mk", None)
                .iter()
                .map(|s| s["unit"].clone())
                .collect::<Vec<_>>(),
            pairs(&plan, None)
        );
    }
    assert_refused_untouched(&ws, &run, &before, "storage under an uncommitted key");
}

// ---------------------------------------------------------------------------------------------
// 9. A stale journal never blocks forever

/// Class 9, a stale journal never blocks forever. No status; this folder's apply died after
/// the loads; someone else finished the rotation (every current B, every new Empty). Today the
/// journal's "rotation started from A, no rewrap sent" contradicts the registers and `plan`
/// refuses (exit 3) forever. A finished rotation must plan nothing (exit 0); `journal close`
/// closes the record (exit 0) and the next plan still has no changes.
#[test]
fn a_rotation_finished_elsewhere_plans_nothing_and_its_record_closes() {
    let ws = rotate_to_b(&three_units(false));
    crash_after(&ws, 3);
    let finished = Fleet::instance()
        .key_storage(B)
        .reports_rotation_status(false)
        .units(3, empty(), valid(B));
    ws.write(FLEET, &finished.to_yaml());
    let plan = ws.plan();
    let plan = plan.planned(0);
    assert_steps(&plan, vec![]);
    let close = ws.mkplan(&["journal", "close", DESIRED]);
    assert_eq!(close.code, 0, "journal close: {}", said(&close));
    ws.plan().planned(0);
    assert_no_incidents(&ws, "finished elsewhere");
}

/// Class 9: `journal close` refuses (exit 3, with the reason) for an instance whose rotation
/// is not finished, and closes nothing. Today there is no `journal` command (a usage error).
#[test]
fn journal_close_refuses_an_unfinished_rotation() {
    let ws = rotate_to_b(&three_units(false));
    crash_after(&ws, 3);
    let journaled = journal(&ws);
    let close = ws.mkplan(&["journal", "close", DESIRED]);
    assert_eq!(close.code, 3, "journal close, unfinished: {}", said(&close));
    assert!(
        said(&close).contains(INSTANCE),
        "the refusal names the instance:\n{}",
        said(&close)
    );
    assert_eq!(
        journal(&ws),
        journaled,
        "the refused close changed the journal"
    );
    assert_no_incidents(&ws, "journal close refused");
}

// ---------------------------------------------------------------------------------------------
// 10. After the rewrap, the safe recovery

/// The plan of class 10 (a): u1 leaves the selection; u2 and u3 are reloaded, committed and
/// promoted; never a rewrap, never a clear.
fn reload_after_the_rewrap() -> Vec<Pair> {
    [
        vec![on("remove_unit", u(1))],
        each("load_new_mk", 2..=3),
        each("commit_new_mk", 2..=3),
        each("set_immediate", 2..=3),
    ]
    .concat()
}

/// Class 10 (a), after the rewrap, the safe recovery. Status reported; this folder's apply
/// rewrapped A → B (journaled as done), promoted u1 and died; then u2 and u3 lost their
/// staged copy (current A, new Empty: the fleet file is edited, as a replaced card would
/// leave them). Today the status is matched only against committed new registers, "fits 0
/// master keys", and the plan is refused before the journal is heard. The journal's
/// completed rewrap A → B and the status agree: plan remove_unit u1 and load, commit, set
/// immediate on u2 and u3, never a rewrap (exit 2), and converge with zero incidents.
#[test]
fn after_the_rewrap_units_that_lost_their_copy_are_reloaded() {
    let ws = rotate_to_b(&three_units(true));
    crash_after(&ws, 8);
    // u2 and u3 lose their staged copy (a card replaced, say): an edit of the fleet, not an
    // operation, since clearing it would be a harmful operation of its own.
    let mut fleet = sim_file(&ws, FLEET);
    for unit in &mut fleet.instances[0].crypto_units[1..] {
        unit.new_register = NewRegister::Empty;
    }
    ws.write(FLEET, &fleet.to_yaml());
    assert_no_incidents(&ws, "u2 and u3 lost their staged copy");
    let units = &fleet.instances[0].crypto_units;
    assert_eq!(
        units[0]
            .current_register
            .verification_pattern()
            .map(|v| v.as_str()),
        Some(B),
        "the crashed apply promoted u1 first: {units:?}"
    );
    let plan = ws.plan().planned(2);
    assert_steps(&plan, reload_after_the_rewrap());
    let run = apply(&ws, "", &[]);
    assert_eq!(run.code, 0, "{}", said(&run));
    assert_converged(&ws, "reloaded after the rewrap");
}

/// Class 10 (a) without a journal: the same registers, hand-written (status reported,
/// `rewrapped_from: A`, storage under B). They fit two histories the planner cannot tell
/// apart: a rewrap A → B, u1 promoted, u2 and u3 lost their staged B (the reload is safe); or
/// a rewrap B → A, u2 and u3 promoted, u1 lost its staged A (setting B on u2 and u3 loses the
/// storage). The status says neither key, so the plan refuses (exit 3), names both keys, and
/// asks for the evidence that settles it; the operator's `--completed` attestation does, and
/// the reload then converges.
#[test]
fn after_the_rewrap_lost_copies_without_a_journal_need_the_operators_word() {
    let fleet = Fleet::instance()
        .key_storage(B)
        .reports_rotation_status(true)
        .unit(empty(), valid(B))
        .unit(empty(), valid(A))
        .unit(empty(), valid(A));
    let ws = rotate_to_b(&fleet);
    ws.write(FLEET, &rewrapped_from(&fleet, A));
    let refused = ws.plan();
    refused.expect_code(3);
    assert!(
        said(&refused).contains("may be under any of"),
        "{}",
        said(&refused)
    );
    assert!(
        said(&refused).contains("mkplan attest rewrap"),
        "{}",
        said(&refused)
    );
    let instance = fleet.ids()[0].clone();
    attest(&ws, &instance, &["--completed"]).expect_code(0);
    let plan = ws.plan().planned(2);
    assert_steps(&plan, reload_after_the_rewrap());
    let run = apply(&ws, "", &[]);
    assert_eq!(run.code, 0, "{}", said(&run));
    assert_converged(&ws, "reloaded after the rewrap");
}

/// Class 10 (b): as (a), but u2 and u3 were reloaded and not committed (new Full Uncommitted
/// B). Today: refused ("fit 0 master keys"). Must plan remove_unit u1, commit then set
/// immediate on u2 and u3, no rewrap (exit 2), and converge with zero incidents.
#[test]
fn after_the_rewrap_reloaded_units_are_committed_then_promoted() {
    let fleet = Fleet::instance()
        .key_storage(B)
        .reports_rotation_status(true)
        .unit(empty(), valid(B))
        .unit(uncommitted(B), valid(A))
        .unit(uncommitted(B), valid(A));
    let ws = rotate_to_b(&fleet);
    ws.write(FLEET, &rewrapped_from(&fleet, A));
    let plan = ws.plan().planned(2);
    assert_steps(
        &plan,
        [
            vec![on("remove_unit", u(1))],
            each("commit_new_mk", 2..=3),
            each("set_immediate", 2..=3),
        ]
        .concat(),
    );
    let run = apply(&ws, "", &[]);
    assert_eq!(run.code, 0, "{}", said(&run));
    assert_converged(&ws, "committed after the rewrap");
}

/// Class 10 (c): as (a), but u2 was zeroized (imprint mode): refuse (exit 3) naming u2's
/// hsm_id and "imprint". (Passes today: the pre-check comes first; it guards the recovery
/// path against skipping the pre-checks.)
#[test]
fn after_the_rewrap_a_unit_in_imprint_mode_is_refused() {
    let fleet = Fleet::instance()
        .key_storage(B)
        .reports_rotation_status(true)
        .unit(empty(), valid(B))
        .unit(empty(), Current::Empty)
        .imprint()
        .unit(empty(), valid(A));
    let ws = rotate_to_b(&fleet);
    ws.write(FLEET, &rewrapped_from(&fleet, A));
    let run = ws.plan();
    run.expect_code(3);
    let text = said(&run);
    assert!(text.contains(&u(2)), "{text}");
    assert!(text.contains("imprint"), "{text}");
}
