//! The plan checks itself before anyone sees it: its steps are replayed, in the order apply
//! will run them, on a copy of the live registers together with the finding about the key
//! storage. Every step must be one the HSM accepts, no step may be one of the harmful ones
//! (a rewrap after the rewrap, a set immediate before it, clearing a new register that holds
//! the storage's MK), the storage's MK must stay in some register after every step, and the
//! end state must be the desired one. A failure here is a bug in the planner.
//!
//! "Stays in some register" is the loss rule every backend shares (`model::loss`, on the
//! units as `model::hpcs_view` shows them); the other checks are the HPCS service's own rules.

use std::collections::BTreeSet;

use super::step::{Action, Step};
use crate::model::loss::losses;
use crate::model::registers::ApqnRegisters;
use crate::model::{
    CurrentRegister, LiveInstance, Mode, NewRegister, VerificationPattern, hpcs_view,
};

pub(crate) fn replay(
    live: &LiveInstance,
    key_storage_under: &VerificationPattern,
    target: &VerificationPattern,
    steps: &[&Step],
) -> Result<(), String> {
    let mut units = live.crypto_units.clone();
    let mut under = key_storage_under.clone();
    // The units and the key storage in the general shape, for the loss rule: each kept in
    // step with what a step changes (a plan of a large fleet replays many steps).
    let mut registers: Vec<ApqnRegisters> = units.iter().map(hpcs_view::unit_registers).collect();
    let mut key_storage = hpcs_view::key_storage(&live.id, &under);
    let mut removed = BTreeSet::new();
    let mut rewrapped = false;
    for step in steps {
        let fail = |why: String| format!("step {} ({}): {why}", step.id, step.action);
        match step.action {
            Action::RewrapKeyStorage => {
                if rewrapped || under == *target {
                    return Err(fail("a second rewrap would re-encrypt the key storage under a key it is not under".into()));
                }
                let staged: BTreeSet<_> =
                    units.iter().map(|u| u.new_register.committed()).collect();
                let currents: BTreeSet<_> = units
                    .iter()
                    .map(|u| u.current_register.verification_pattern())
                    .collect();
                if staged.len() != 1 || staged.contains(&None) {
                    return Err(fail(
                        "not every new register is Full Committed with the same key".into(),
                    ));
                }
                if currents.len() != 1 || !currents.contains(&Some(&under)) {
                    return Err(fail(
                        "not every current register holds the key storage's master key".into(),
                    ));
                }
                if units.iter().any(|u| u.mode != Mode::Admin) {
                    return Err(fail("a crypto unit is in imprint mode".into()));
                }
                under = staged
                    .into_iter()
                    .flatten()
                    .next()
                    .cloned()
                    .expect("one staged key");
                key_storage = hpcs_view::key_storage(&live.id, &under);
                rewrapped = true;
            }
            action => {
                let every_current_holds = units.iter().all(|u| u.current_register.holds(&under));
                let hsm_id = step
                    .unit
                    .as_deref()
                    .ok_or_else(|| fail("no crypto unit".into()))?;
                let index = units
                    .iter()
                    .position(|u| u.hsm_id == hsm_id)
                    .ok_or_else(|| fail(format!("unknown crypto unit {hsm_id}")))?;
                let unit = &mut units[index];
                if unit.mode != Mode::Admin && action != Action::RemoveUnit {
                    return Err(fail(format!("crypto unit {hsm_id} is in imprint mode")));
                }
                match action {
                    Action::ClearNewMk => {
                        // A new register may hold the storage's MK only before the rewrap, as
                        // a copy of the current registers' key; after the rewrap it is the
                        // key the rotation must promote, and must never be cleared.
                        if unit.new_register.holds(&under)
                            && (rewrapped || under == *target || !every_current_holds)
                        {
                            return Err(fail(format!(
                                "clears the key storage's master key from crypto unit {hsm_id}"
                            )));
                        }
                        unit.new_register = NewRegister::Empty;
                    }
                    Action::LoadNewMk => {
                        if unit.new_register != NewRegister::Empty {
                            return Err(fail(format!("the new register of {hsm_id} is not Empty")));
                        }
                        unit.new_register = NewRegister::FullUncommitted(target.clone());
                    }
                    Action::CommitNewMk => match &unit.new_register {
                        NewRegister::FullUncommitted(vp) if vp == target => {
                            unit.new_register = NewRegister::FullCommitted(target.clone());
                        }
                        other => {
                            return Err(fail(format!("commit of a new register that is {other}")));
                        }
                    },
                    Action::RemoveUnit => {
                        if !unit.current_register.holds(target)
                            || unit.new_register != NewRegister::Empty
                        {
                            return Err(fail(format!("removes {hsm_id}, which is not promoted")));
                        }
                        removed.insert(hsm_id.to_string());
                    }
                    Action::SetImmediate => {
                        if removed.contains(hsm_id) {
                            return Err(fail(format!(
                                "set immediate on {hsm_id}, which left the selection"
                            )));
                        }
                        let Some(staged) = unit.new_register.committed().cloned() else {
                            return Err(fail(format!(
                                "set immediate on {hsm_id}, whose new register is not Full Committed"
                            )));
                        };
                        if staged != under {
                            return Err(fail(format!(
                                "set immediate on {hsm_id} before the key storage was rewrapped to {}…",
                                staged.short()
                            )));
                        }
                        unit.current_register = CurrentRegister::Valid(staged);
                        unit.new_register = NewRegister::Empty;
                    }
                    Action::RewrapKeyStorage => unreachable!("handled above"),
                }
                registers[index] = hpcs_view::unit_registers(unit);
            }
        }
        if !losses(&registers, std::slice::from_ref(&key_storage)).is_empty() {
            return Err(fail(format!(
                "afterwards no register holds the key storage's master key {}…",
                under.short()
            )));
        }
    }
    if under != *target {
        return Err(format!(
            "after the plan the key storage is still under {}…",
            under.short()
        ));
    }
    for unit in &units {
        if !unit.current_register.holds(target) || unit.new_register != NewRegister::Empty {
            return Err(format!(
                "after the plan crypto unit {} holds new {}, current {}, not the desired state",
                unit.hsm_id, unit.new_register, unit.current_register
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CryptoUnit, RewrapStatus, UnitType};

    fn vp(digit: char) -> VerificationPattern {
        VerificationPattern::parse(&digit.to_string().repeat(64)).unwrap()
    }

    /// One crypto unit, current `Valid A`, new `Empty`.
    fn live() -> LiveInstance {
        LiveInstance {
            id: "i".into(),
            region: "us-south".into(),
            rewrap_status: RewrapStatus::NotRewrapped,
            crypto_units: vec![CryptoUnit {
                hsm_id: "u1".into(),
                unit_type: UnitType::Operational,
                location: String::new(),
                mode: Mode::Admin,
                signature_threshold: 1,
                revocation_threshold: 1,
                administrators: Vec::new(),
                new_register: NewRegister::Empty,
                current_register: CurrentRegister::Valid(vp('a')),
            }],
        }
    }

    fn load() -> Step {
        Step {
            id: "s1".into(),
            action: Action::LoadNewMk,
            instance: "i".into(),
            unit: Some("u1".into()),
            depends_on: Vec::new(),
            reversible: true,
            signatures: 0,
            description: String::new(),
            point_of_no_return: false,
        }
    }

    #[test]
    fn a_step_after_which_no_register_holds_the_key_storages_key_fails_the_replay() {
        let lost = replay(&live(), &vp('c'), &vp('b'), &[&load()]).unwrap_err();
        assert!(
            lost.contains("step s1 (load_new_mk): afterwards no register holds the key storage's master key cccccccccccc…"),
            "{lost}"
        );
        // Under A, also written with other last 4 bytes, the load keeps it: the plan only
        // stops short of the target.
        let a_other_tail = VerificationPattern::parse(&format!("{}12345678", "a".repeat(56)));
        for under in [vp('a'), a_other_tail.unwrap()] {
            let short = replay(&live(), &under, &vp('b'), &[&load()]).unwrap_err();
            assert!(
                short.starts_with("after the plan the key storage is still under"),
                "{short}"
            );
        }
    }
}
