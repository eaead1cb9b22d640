//! The HPCS view and the general loss rule decide exactly as HPCS's own check did ("some
//! crypto unit's current or new register holds the key storage's MK"), over every register
//! state of up to three crypto units, and over random ones of up to five.

use proptest::prelude::*;

use super::*;
use crate::model::{Mode, UnitType};

const INSTANCE: &str = "5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b";
const A: &str = "c2ad0a997751e04066912fa490a9976d6135d221c0df197dfb8c8a7a00000000";

/// `A` with the hex digit at `index` changed.
fn changed_at(index: usize) -> VerificationPattern {
    let mut hex = A.to_string();
    let digit = if &hex[index..=index] == "f" { "0" } else { "f" };
    hex.replace_range(index..=index, digit);
    VerificationPattern::parse(&hex).unwrap()
}

/// `A`; `A` with another last 4 bytes (the same key to HPCS); a key that differs from `A`
/// only in byte 20, after the 16 bytes EP11's Linux tools compare.
fn keys() -> [VerificationPattern; 3] {
    [
        VerificationPattern::parse(A).unwrap(),
        changed_at(60),
        changed_at(40),
    ]
}

fn unit(index: usize, (new_register, current_register): Registers) -> CryptoUnit {
    CryptoUnit {
        hsm_id: format!("0a1b2c3d-0000-4000-8000-{index:012}"),
        unit_type: UnitType::Operational,
        location: format!("[us-south].[AZ1-CS1].[01].[{index:02}]"),
        mode: Mode::Admin,
        signature_threshold: 1,
        revocation_threshold: 1,
        administrators: Vec::new(),
        new_register,
        current_register,
    }
}

type Registers = (NewRegister, CurrentRegister);

/// Every state of one crypto unit's registers over `keys`.
fn every_state(keys: &[VerificationPattern]) -> Vec<Registers> {
    let news = std::iter::once(NewRegister::Empty).chain(keys.iter().flat_map(|k| {
        [
            NewRegister::FullUncommitted(k.clone()),
            NewRegister::FullCommitted(k.clone()),
        ]
    }));
    let currents: Vec<CurrentRegister> = std::iter::once(CurrentRegister::Empty)
        .chain(keys.iter().cloned().map(CurrentRegister::Valid))
        .collect();
    news.flat_map(|new| currents.iter().map(move |c| (new.clone(), c.clone())))
        .collect()
}

/// HPCS's check before the general rule, as the replay and the simulator wrote it.
fn held_as_before(units: &[CryptoUnit], under: &VerificationPattern) -> bool {
    units
        .iter()
        .any(|u| u.current_register.holds(under) || u.new_register.holds(under))
}

fn agrees(units: &[CryptoUnit], under: &VerificationPattern) -> Result<(), String> {
    let loss = key_storage_loss(INSTANCE, units, under);
    if loss.is_none() != held_as_before(units, under) {
        return Err(format!("{loss:?} under {under} with {units:?}"));
    }
    match loss {
        Some(loss) if loss.store != key_storage(INSTANCE, under).id || loss.mk_type != MK_TYPE => {
            Err(format!("{loss:?} names another store"))
        }
        _ => Ok(()),
    }
}

#[test]
fn hpcs_patterns_compare_as_verification_patterns_do_not_on_sixteen_bytes() {
    let [a, a_other_tail, late] = keys();
    assert_eq!(a, a_other_tail);
    assert_eq!(mkvp(&a), mkvp(&a_other_tail));
    assert_ne!(a, late);
    assert_ne!(
        mkvp(&a),
        mkvp(&late),
        "differ only after byte 16, yet equal"
    );
    // What cutting to EP11's 16 bytes would have done:
    let cut = |vp: &VerificationPattern| Mkvp::parse(MkType::Wk, vp.as_str()).unwrap();
    assert_eq!(cut(&a), cut(&late));
}

#[test]
fn a_unit_shows_as_one_wk_type_without_old() {
    let [a, _, late] = keys();
    let registers = unit_registers(&unit(
        0,
        (
            NewRegister::FullCommitted(late.clone()),
            CurrentRegister::Valid(a.clone()),
        ),
    ));
    let wk = &registers[&MkType::Wk];
    assert_eq!(registers.len(), 1);
    assert_eq!(wk.new, NewMk::Ready(mkvp(&late)));
    assert_eq!(wk.current, HeldMk::Valid(mkvp(&a)));
    assert_eq!(wk.old, None);
    // Set immediate in the general shape is HPCS's: new → current, nothing kept.
    let set = wk.after_set();
    assert!(set.holds(&mkvp(&late)) && !set.holds(&mkvp(&a)));
    let empty = unit_registers(&unit(1, (NewRegister::Empty, CurrentRegister::Empty)));
    assert_eq!(empty[&MkType::Wk].new, NewMk::Empty);
    assert_eq!(empty[&MkType::Wk].current, HeldMk::Invalid);
}

#[test]
fn the_general_rule_agrees_with_hpcs_on_every_state_of_up_to_three_units() {
    let keys = keys();
    let states = every_state(&keys);
    let mut checked = 0;
    for count in 0..=3u32 {
        let mut units: Vec<CryptoUnit> = (0..count as usize)
            .map(|i| unit(i, states[0].clone()))
            .collect();
        for mut rest in 0..states.len().pow(count) {
            for unit in &mut units {
                (unit.new_register, unit.current_register) = states[rest % states.len()].clone();
                rest /= states.len();
            }
            for under in &keys {
                agrees(&units, under).unwrap();
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3 * (1 + 28 + 28 * 28 + 28 * 28 * 28));
}

fn key_strategy() -> impl Strategy<Value = VerificationPattern> {
    (0..64usize).prop_map(changed_at)
}

fn registers_strategy() -> impl Strategy<Value = Registers> {
    let new = prop_oneof![
        Just(NewRegister::Empty),
        key_strategy().prop_map(NewRegister::FullUncommitted),
        key_strategy().prop_map(NewRegister::FullCommitted),
    ];
    let current = prop_oneof![
        Just(CurrentRegister::Empty),
        key_strategy().prop_map(CurrentRegister::Valid),
    ];
    (new, current)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20_261_201),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Keys that differ from one another in one hex digit anywhere, in the 56 compared or in
    /// the 8 a card may zero.
    #[test]
    fn the_general_rule_agrees_with_hpcs_on_keys_that_differ_anywhere(
        registers in prop::collection::vec(registers_strategy(), 0..=5),
        under in key_strategy(),
    ) {
        let units: Vec<CryptoUnit> =
            registers.into_iter().enumerate().map(|(i, r)| unit(i, r)).collect();
        prop_assert!(agrees(&units, &under).is_ok(), "{:?}", agrees(&units, &under));
    }
}
