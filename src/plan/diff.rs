//! The diff: for one service instance, from the live registers, the desired MK and the
//! finding about the key storage, the steps that reach the desired state. Steps are drafted
//! here with instance-local dependencies; `plan::plan` numbers them and builds the graph.

use super::evidence::{StorageFinding, common_current, currents_differ};
use super::refusal::{Check, Refusal, UnitValue};
use super::rotation;
use super::step::Action;
use crate::model::domain_group::KeyCopies;
use crate::model::registers::Mkvp;
use crate::model::{
    CryptoUnit, CurrentRegister, DesiredInstance, LiveInstance, NewRegister, VerificationPattern,
    hpcs_view,
};

/// A step before it has an id: `unit` indexes the instance's crypto units and `depends_on`
/// indexes earlier drafts of the same instance.
#[derive(Clone, Debug)]
pub(crate) struct Draft {
    pub action: Action,
    pub unit: Option<usize>,
    pub depends_on: Vec<usize>,
}

/// What one crypto unit needs, in the order the steps must run.
#[derive(Clone, Copy, Debug, Default)]
struct UnitWork {
    clear: bool,
    load: bool,
    commit: bool,
    set_immediate: bool,
    /// Already promoted while a set immediate is still running on other units.
    remove: bool,
}

pub(crate) fn draft_steps(
    desired: &DesiredInstance,
    live: &LiveInstance,
    storage: &StorageFinding,
) -> Result<Vec<Draft>, Refusal> {
    let target = &desired.master_key.verification_pattern;
    let under = &storage.key_storage_under;
    let general_target = hpcs_view::mkvp(target);
    let key_storage = KeyCopies {
        active: hpcs_view::mkvp(under),
        staged: None,
    };
    // The key storage moves whole before the set (the rewrap), and only from the key every
    // current register holds: `current_holds_storage_key` refuses any other case.
    let rewrap = rotation::moves_before_set(&key_storage, &general_target, true);
    if rewrap {
        current_holds_storage_key(live, target, under)?;
    }
    let work = unit_work(live, &general_target);
    let loads: Vec<&CryptoUnit> = live
        .crypto_units
        .iter()
        .zip(&work)
        .filter(|(_, w)| w.load)
        .map(|(u, _)| u)
        .collect();
    if !loads.is_empty() && desired.master_key.key_parts.is_empty() {
        return Err(Refusal::new(
            &live.id,
            Check::KeyPartsAvailable,
            format!(
                "{} crypto unit(s) need the new master key {}… loaded, but the desired file names no key_parts for this instance",
                loads.len(),
                target.short()
            ),
        )
        .units(
            loads
                .iter()
                .map(|u| UnitValue::new(u, format!("new register {:#}", u.new_register)))
                .collect(),
        )
        .fix("add the key part files under master_key.key_parts in the desired file"));
    }
    Ok(assemble(&work, rewrap))
}

/// HPCS's crypto units are registers of one type (`WK`) that commit, and a unit is done only
/// once its new register is empty again.
const RULES: rotation::RegisterRules = rotation::RegisterRules {
    commit: true,
    done_with_new_empty: true,
};

/// What each crypto unit needs, by the rotation rule. While some units still wait for set
/// immediate, the promoted ones leave the selection (the service's own rule).
fn unit_work(live: &LiveInstance, target: &Mkvp) -> Vec<UnitWork> {
    let mut work: Vec<UnitWork> = live
        .crypto_units
        .iter()
        .map(|unit| {
            let registers = hpcs_view::unit_registers(unit);
            let steps = rotation::register_steps(&registers[&hpcs_view::MK_TYPE], target, RULES);
            UnitWork {
                clear: steps.clear,
                load: steps.load,
                commit: steps.commit,
                set_immediate: steps.set,
                remove: false,
            }
        })
        .collect();
    let promoted = |unit: &CryptoUnit| {
        unit.current_register
            .verification_pattern()
            .is_some_and(|vp| hpcs_view::mkvp(vp) == *target)
    };
    if !live.crypto_units.iter().all(promoted) {
        for (unit, w) in live.crypto_units.iter().zip(work.iter_mut()) {
            w.remove = !w.set_immediate && promoted(unit);
        }
    }
    work
}

/// Before the rewrap, every current register must hold `under`, the MK the key storage is
/// under: otherwise another rotation has passed its point of no return, or the units differ.
fn current_holds_storage_key(
    live: &LiveInstance,
    target: &VerificationPattern,
    under: &VerificationPattern,
) -> Result<(), Refusal> {
    match common_current(live) {
        Some(current) if current == *under => {}
        Some(_) => {
            return Err(Refusal::new(
                &live.id,
                Check::NoOtherRotationInFlight,
                format!(
                    "the key storage is under {}…, which is neither the desired master key nor the one in the current registers: another rotation has passed its point of no return",
                    under.short()
                ),
            )
            .units(
                live.crypto_units
                    .iter()
                    .map(|u| UnitValue::new(u, format!("new {:#}, current {:#}", u.new_register, u.current_register)))
                    .collect(),
            )
            .fix(format!(
                "finish that rotation first (set immediate: desired verification_pattern {under}), then rotate to {target}"
            )));
        }
        None => {
            return Err(currents_differ(
                live,
                "before the rewrap, every current register must hold the key storage's master key",
            ));
        }
    }
    Ok(())
}

/// Lays the work out phase by phase (clear, load, commit, rewrap, remove, set immediate), so
/// that draft order is a topological order and reads like the runbook.
fn assemble(work: &[UnitWork], rewrap: bool) -> Vec<Draft> {
    let mut drafts: Vec<Draft> = Vec::new();
    let mut last: Vec<Option<usize>> = vec![None; work.len()];
    let push = |drafts: &mut Vec<Draft>, action, unit: Option<usize>, depends_on: Vec<usize>| {
        drafts.push(Draft {
            action,
            unit,
            depends_on,
        });
        drafts.len() - 1
    };
    for (action, wanted) in [
        (
            Action::ClearNewMk,
            (|w: &UnitWork| w.clear) as fn(&UnitWork) -> bool,
        ),
        (Action::LoadNewMk, |w| w.load),
        (Action::CommitNewMk, |w| w.commit),
    ] {
        for (index, w) in work.iter().enumerate() {
            if wanted(w) {
                let deps = last[index].into_iter().collect();
                last[index] = Some(push(&mut drafts, action, Some(index), deps));
            }
        }
    }
    let mut barrier: Vec<usize> = Vec::new();
    if rewrap {
        let commits = drafts
            .iter()
            .enumerate()
            .filter(|(_, d)| d.action == Action::CommitNewMk);
        let deps = commits.map(|(i, _)| i).collect();
        barrier.push(push(&mut drafts, Action::RewrapKeyStorage, None, deps));
    }
    let removes: Vec<usize> = work
        .iter()
        .enumerate()
        .filter(|(_, w)| w.remove)
        .map(|(index, _)| {
            push(
                &mut drafts,
                Action::RemoveUnit,
                Some(index),
                barrier.clone(),
            )
        })
        .collect();
    barrier.extend(removes);
    for (index, w) in work.iter().enumerate() {
        if w.set_immediate {
            let mut deps = barrier.clone();
            deps.extend(last[index]);
            deps.sort_unstable();
            deps.dedup();
            push(&mut drafts, Action::SetImmediate, Some(index), deps);
        }
    }
    drafts
}

/// The registers of a unit once the plan has run.
pub(crate) fn after_state(
    unit: &CryptoUnit,
    drafts: &[Draft],
    index: usize,
    target: &VerificationPattern,
) -> (NewRegister, CurrentRegister) {
    let mut new = unit.new_register.clone();
    let mut current = unit.current_register.clone();
    for draft in drafts.iter().filter(|d| d.unit == Some(index)) {
        super::step::effect(draft.action, &mut new, &mut current, target);
    }
    (new, current)
}
