//! The `zcrypt:` backend interrupted at every step, through the binary, on the fake Crypto
//! Express platform: the operator stopping or the apply killed at each ceremony step, and at
//! every step of a tool (zkey, zkey-cryptsetup) the tool killed after its effect, the apply
//! killed after it or as it starts, or the tool failing. Each rerun plans from what the
//! machine shows, and the change converges with zero incidents after every apply.

use crate::cases::zcrypt::{
    LUKS2_STORE, LUKS2_VOLUME, NEW, Operator, World, ep11_group, world_yaml,
};
use crate::cases::zcrypt_scenarios::{ep11, ep11_world};

/// The harness's world with the LUKS2 volume, its group declaring it, and a fault armed for
/// the next `times` runs of `tool`.
fn luks2_world_with_fault(kind: &str, tool: &str, times: u32) -> World {
    World::with(
        &format!(
            "{}{LUKS2_VOLUME}faults:\n  - {{ kind: {kind}, tool: {tool}, times: {times} }}\n",
            world_yaml(true)
        ),
        &format!("{}{LUKS2_STORE}", ep11_group()),
        "EP11",
        NEW,
    )
}

/// Every ceremony step twice: first the operator stops without performing it, then the
/// operator performs it and the apply is killed while it waits for `done`. Each rerun plans
/// from what `mkvps` and the stores show and the change converges.
#[test]
fn zcrypt_a_stop_or_a_kill_at_every_ceremony_step_is_followed_by_a_rerun_that_converges() {
    let ceremony = [
        "load_new_mk@03.0006",
        "commit_new_mk@03.0006",
        "load_new_mk@04.0006",
        "commit_new_mk@04.0006",
        "set_immediate@03.0006",
        "set_immediate@04.0006",
    ];
    assert_stop_then_kill_at_each_ceremony_step(&ep11_world(), &ceremony);
}

/// Applies `world`'s change, the operator stopping then the apply killed at each ceremony
/// step in turn: the steps met are `ceremony`, and the last apply converges with nothing left.
pub(crate) fn assert_stop_then_kill_at_each_ceremony_step(world: &World, ceremony: &[&str]) {
    let mut stopped = Vec::new();
    let mut killed = Vec::new();
    for attempt in 0..20 {
        let mut shown = None;
        let (code, stderr) = world.apply_as(|action, apqn| {
            shown = Some(format!("{action}@{apqn}"));
            if attempt % 2 == 0 {
                Operator::Stops
            } else {
                Operator::PerformsThenApplyKilled
            }
        });
        world.assert_no_incidents();
        match shown {
            None => {
                assert_eq!(code, Some(0), "attempt {attempt}: {stderr}");
                break;
            }
            Some(step) if attempt % 2 == 0 => {
                assert_eq!(code, Some(1), "attempt {attempt}: {stderr}");
                assert!(stderr.contains("the operator stopped"), "{stderr}");
                stopped.push(step);
            }
            Some(step) => {
                assert_eq!(code, None, "attempt {attempt} was not killed: {stderr}");
                killed.push(step);
            }
        }
    }
    assert_eq!(stopped, ceremony);
    assert_eq!(killed, ceremony);
    world.assert_converged();
    world.assert_nothing_left();
}

/// The harness's world with a fault armed for the next `times` runs of `zkey reencipher`.
fn with_reencipher_fault(kind: &str, times: u32) -> World {
    ep11(&format!(
        "{}faults:\n  - {{ kind: {kind}, tool: zkey reencipher, times: {times} }}\n",
        world_yaml(true)
    ))
}

pub(crate) struct Crashes {
    pub(crate) name: &'static str,
    pub(crate) world: fn() -> World,
    /// Applies killed before one converges (each rerun meets the fault at the next step).
    pub(crate) killed: usize,
    /// Applies that stop with exit 1 before one converges.
    pub(crate) failed: usize,
    /// Tool runs reported killed by a signal in the apply that converges.
    pub(crate) signalled: usize,
}

/// At every step of a tool: the tool killed after its effect (the outcome is lost and
/// settled by reading), the apply killed right after the tool's effect (its rerun settles
/// the interrupted step by reading) or as the tool starts (nothing done; the rerun runs the
/// step), or the tool failing before any effect (the apply stops; the rerun converges).
/// Zero incidents after every apply.
#[test]
fn zcrypt_tools_killed_after_their_effect_or_failing_are_settled_and_the_change_converges() {
    let rows = [
        Crashes {
            name: "zkey reencipher killed after its effect, every step",
            world: || with_reencipher_fault("crash_after_effect", 4),
            killed: 0,
            failed: 0,
            signalled: 4,
        },
        Crashes {
            name: "zkey reencipher fails once",
            world: || with_reencipher_fault("fail_before_effect", 1),
            killed: 0,
            failed: 1,
            signalled: 0,
        },
        Crashes {
            name: "zkey-cryptsetup killed after its effect, at the stage and the complete",
            world: || luks2_world_with_fault("crash_after_effect", "zkey-cryptsetup reencipher", 2),
            killed: 0,
            failed: 0,
            signalled: 2,
        },
        Crashes {
            name: "apply killed after zkey-cryptsetup's effect, at the stage and the complete",
            world: || {
                luks2_world_with_fault("kill_caller_after_effect", "zkey-cryptsetup reencipher", 2)
            },
            killed: 2,
            failed: 0,
            signalled: 0,
        },
        Crashes {
            name: "apply killed as zkey-cryptsetup starts, at the stage and the complete",
            world: || {
                luks2_world_with_fault("kill_caller_before_effect", "zkey-cryptsetup reencipher", 2)
            },
            killed: 2,
            failed: 0,
            signalled: 0,
        },
        Crashes {
            name: "zkey-cryptsetup fails once",
            world: || luks2_world_with_fault("fail_before_effect", "zkey-cryptsetup reencipher", 1),
            killed: 0,
            failed: 1,
            signalled: 0,
        },
    ];
    assert_each_crash_settled(rows);
}

/// Each row: the applies killed or failing as the row says, zero incidents after each, then
/// one that converges with nothing left, the interrupted step settled by reading.
/// The rows run side by side, each on a world of its own.
pub(crate) fn assert_each_crash_settled(rows: impl IntoIterator<Item = Crashes>) {
    crate::cases::parallel::each(3, rows, |row| {
        let world = (row.world)();
        for attempt in 0..row.killed + row.failed {
            let (code, stderr) = world.apply();
            world.assert_no_incidents();
            if attempt < row.killed {
                assert_eq!(code, None, "row {:?} attempt {attempt}: {stderr}", row.name);
            } else {
                assert_eq!(code, Some(1), "row {:?}: {stderr}", row.name);
                assert!(
                    stderr.contains("Nothing more was run"),
                    "row {:?}: {stderr}",
                    row.name
                );
            }
        }
        let (code, stderr) = world.apply();
        assert_eq!(code, Some(0), "row {:?}: {stderr}", row.name);
        assert_eq!(
            stderr
                .matches("reported a failure (exit by a signal")
                .count(),
            row.signalled,
            "row {:?}: {stderr}",
            row.name
        );
        if row.killed > 0 {
            assert!(
                stderr.contains("was interrupted: settled by reading the stores again"),
                "row {:?}: {stderr}",
                row.name
            );
        }
        world.assert_converged();
        world.assert_nothing_left();
    });
}
