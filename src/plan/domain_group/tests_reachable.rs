//! The property that no plan from a reachable state ever breaks the loss rule: random
//! register and store operations, harmful ones included, then a plan from where they leave
//! the group, played to the end.

use proptest::prelude::*;

use super::effect::World;
use super::tests::*;
use super::*;
use crate::model::domain_group::{KeyCopies, LiveStore, StoreKind};

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

/// A LUKS2 volume's staged key slot, whose key `cryptsetup luksDump --unbound` shows: under
/// another key than the change's it is refused, whoever staged it, before any set or after
/// the first (round 10z K1: staged again by hand through an APQN that still held the active
/// key); under the change's key the sets are planned, then the complete.
#[test]
fn a_luks2_staging_is_taken_from_its_key_slot_never_from_the_journal() {
    let d = desired(EP11, 2, STAGED);
    let id = StoreId {
        kind: StoreKind::Luks2Volume,
        name: "/dev/dasdb1".into(),
    };
    let volume = |staged: char| LiveStore {
        id: id.clone(),
        state: StoreState::Known(BTreeMap::from([(
            MkType::Wk,
            KeyCopies {
                active: vp(MkType::Wk, 'a'),
                staged: Some(vp(MkType::Wk, staged)),
            },
        )])),
        handle: None,
    };
    let mut l = live(&d, |_| registers(EP11, 'a', ready(EP11, 'b'), None), &[]);
    l.stores.push(volume('c'));
    for first_set in [false, true] {
        if first_set {
            l.apqns[0].registers = Some(registers(EP11, 'b', NewMk::Empty, None));
        }
        let r = refusal(&d, &l, &GroupEvidence::default());
        assert_eq!(
            r.check, "no_earlier_staged_stores",
            "first set: {first_set}"
        );
        assert!(
            r.message.contains("/dev/dasdb1")
                && r.message.contains(vp(MkType::Wk, 'c').as_str())
                && r.message.contains("cryptsetup luksKillSlot"),
            "{}",
            r.message
        );
    }
    l.stores[0] = volume('b');
    let plan = plan_group(&d, &l, &GroupEvidence::default()).unwrap();
    assert_eq!(
        actions(&plan),
        ["set_immediate 04.0006", "complete_reencipher /dev/dasdb1"]
    );
}
