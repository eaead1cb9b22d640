//! The property that no plan from a reachable state ever breaks the loss rule: random
//! register and store operations, harmful ones included, then a plan from where they leave
//! the group, played to the end.

use proptest::prelude::*;

use super::effect::World;
use super::tests::*;
use super::*;
use crate::model::domain_group::{LiveStore, StoreKind};

/// Random operations a person or a tool might run, harmful ones included.
#[derive(Clone, Debug)]
enum Poke {
    Register(GroupAction, usize, char),
    Store(GroupAction, usize),
}

fn poke() -> impl Strategy<Value = Poke> {
    let register = prop_oneof![
        Just(GroupAction::ClearNewMk),
        Just(GroupAction::LoadNewMk),
        Just(GroupAction::CommitNewMk),
        Just(GroupAction::SetImmediate)
    ];
    let store = prop_oneof![
        Just(GroupAction::StageReencipher),
        Just(GroupAction::CompleteReencipher),
        Just(GroupAction::ReencipherFromOld)
    ];
    prop_oneof![
        (register, 0..3usize, prop_oneof![Just('b'), Just('c')])
            .prop_map(|(a, i, c)| Poke::Register(a, i, c)),
        (store, 0..3usize).prop_map(|(a, i)| Poke::Store(a, i)),
    ]
}

fn mk_type_of(mode: GroupMode) -> MkType {
    if mode == EP11 {
        MkType::Wk
    } else {
        MkType::Aes
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// From any state reachable by any operations that lost nothing, every plan keeps every
    /// key recoverable after each of its steps and ends converged; and a plan cut short at
    /// any step, then planned again, converges too.
    #[test]
    fn no_plan_from_a_reachable_state_loses_a_key(
        cca in any::<bool>(),
        from_old in any::<bool>(),
        pokes in prop::collection::vec(poke(), 0..12),
        cut in 0..12usize,
    ) {
        let mode = if cca { CCA } else { EP11 };
        let procedure = if cca && from_old { FROM_OLD } else { STAGED };
        let d = desired(mode, 3, procedure);
        let mk_type = mk_type_of(mode);
        let start = live(&d, |_| registers(mode, 'a', NewMk::Empty, None), &[('a', None), ('a', None), ('a', None)]);
        let mut world = World::from_live(&d, &start);
        for poke in &pokes {
            let before = world.clone();
            match *poke {
                Poke::Register(action, i, c) => {
                    world.register_step(action, d.apqns[i], mk_type, Some(&vp(mk_type, c)));
                }
                Poke::Store(action, i) => {
                    world.store_step(action, i, &[mk_type]);
                }
            }
            if !world.losses().is_empty() {
                world = before;
            }
        }
        let serial = |a: Apqn| Some(format!("S{}", a.card));
        // Refusals are checked by the scenario table; about 6 in 100 random states refuse.
        let Ok(plan) = plan_group(&d, &world.to_live(serial), &GroupEvidence::default()) else {
            return Ok(());
        };
        let mut played = world.clone();
        for (index, step) in plan.steps.iter().enumerate() {
            if index == cut {
                // Interrupted here: plan again from what the machine shows.
                let again = plan_group(&d, &played.to_live(serial), &GroupEvidence::default());
                prop_assert!(again.is_ok(), "replan after {cut} steps refused: {:?}", again.err());
            }
            prop_assert!(played.perform(step, &d), "step {} had no effect: {plan:?}", step.id);
            prop_assert!(played.losses().is_empty(), "{:?} after {}", played.losses(), step.id);
        }
        let done = plan_group(&d, &played.to_live(serial), &GroupEvidence::default()).unwrap();
        prop_assert!(!done.has_changes(), "not converged: {:?}", done.steps);
    }
}

/// A LUKS2 volume whose staged keyslot no tool shows: refused unless this change's journal
/// shows mkplan staged it, then settled under the change's key and the set is planned.
#[test]
fn a_luks2_staging_the_tool_does_not_show_is_settled_only_by_this_changes_journal() {
    let d = desired(EP11, 2, STAGED);
    let mut l = live(&d, |_| registers(EP11, 'a', ready(EP11, 'b'), None), &[]);
    let id = StoreId {
        kind: StoreKind::Luks2Volume,
        name: "/dev/dasdb1".into(),
    };
    l.stores.push(LiveStore {
        id: id.clone(),
        state: StoreState::StagedUnseen {
            active: BTreeMap::from([(MkType::Wk, vp(MkType::Wk, 'a'))]),
        },
        handle: None,
    });
    let r = refusal(&d, &l, &GroupEvidence::default());
    assert_eq!(r.check, "no_earlier_staged_stores");
    assert!(
        r.message.contains("/dev/dasdb1") && r.settle.unwrap().contains("--state"),
        "{}",
        r.message
    );
    let other = GroupEvidence {
        staged_in_change: BTreeMap::from([(
            id.clone(),
            BTreeMap::from([(MkType::Wk, vp(MkType::Wk, 'c'))]),
        )]),
        ..GroupEvidence::default()
    };
    let r = refusal(&d, &l, &other);
    assert_eq!(r.check, "no_earlier_staged_stores");
    assert!(
        r.message.contains("zkey-cryptsetup validate /dev/dasdb1") && !r.message.contains(".renc"),
        "{}",
        r.message
    );
    let ours = GroupEvidence {
        staged_in_change: BTreeMap::from([(
            id.clone(),
            BTreeMap::from([(MkType::Wk, vp(MkType::Wk, 'b'))]),
        )]),
        ..GroupEvidence::default()
    };
    let plan = plan_group(&d, &l, &ours).unwrap();
    assert_eq!(
        actions(&plan),
        [
            "set_immediate 03.0006",
            "set_immediate 04.0006",
            "complete_reencipher /dev/dasdb1"
        ]
    );
    // Staged by an earlier run, and no set has begun: anyone may have staged it again since,
    // under another key; this run stages it again, and so witnesses the key.
    let earlier = GroupEvidence {
        staged_earlier: [id.clone()].into(),
        ..ours.clone()
    };
    let plan = plan_group(&d, &l, &earlier).unwrap();
    assert_eq!(
        actions(&plan),
        [
            "stage_reencipher /dev/dasdb1",
            "set_immediate 03.0006",
            "set_immediate 04.0006",
            "complete_reencipher /dev/dasdb1"
        ]
    );
    assert!(
        plan.steps[0].description.contains("staged again"),
        "{:?}",
        plan.steps[0]
    );
    // Once a set has begun, the active copy's key has left CURRENT there and the volume can
    // no longer be staged again: the journal's word is all there is.
    l.apqns[0].registers = Some(registers(EP11, 'b', NewMk::Empty, None));
    let plan = plan_group(&d, &l, &earlier).unwrap();
    assert_eq!(
        actions(&plan),
        ["set_immediate 04.0006", "complete_reencipher /dev/dasdb1"]
    );
}
