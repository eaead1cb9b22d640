//! What each step does to the registers and the stores, as the tools and cards behave
//! (zcrypt.md §3, §4): the planner's safety check plays a plan over this, and the tests
//! use it as the machine. A step whose precondition fails has no effect, as the tool would
//! fail. Pure.

use std::collections::BTreeMap;

use super::{GroupAction, GroupStep};
use crate::model::domain_group::{
    Apqn, GroupMode, LiveGroup, LiveStore, Loss, StoreId, StoreKind, StoreState, losses_where,
};
use crate::model::domain_group_desired::DesiredGroup;
use crate::model::registers::{ApqnRegisters, HeldMk, MkType, Mkvp, NewMk};

/// The group's registers and stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct World {
    pub mode: GroupMode,
    pub registers: BTreeMap<Apqn, ApqnRegisters>,
    pub stores: Vec<LiveStore>,
    /// The APQNs each zkey key can be used through (`usable_apqns`).
    pub usable: BTreeMap<StoreId, Vec<Apqn>>,
}

/// Each zkey key's associated APQNs, by its store: only their registers keep it usable
/// (`loss::losses_where`). A key with none (zkey then uses every APQN of its type) is left
/// out, and counts every APQN of the group.
pub fn usable_apqns(live: &LiveGroup) -> BTreeMap<StoreId, Vec<Apqn>> {
    live.inventory
        .zkey_keys
        .iter()
        .filter(|key| !key.apqns.is_empty())
        .map(|key| {
            let id = StoreId {
                kind: StoreKind::ZkeyKey,
                name: key.name.clone(),
            };
            (id, key.apqns.clone())
        })
        .collect()
}

impl World {
    pub fn from_live(desired: &DesiredGroup, live: &LiveGroup) -> Self {
        Self {
            mode: desired.mode,
            registers: live
                .apqns
                .iter()
                .filter(|a| desired.apqns.contains(&a.apqn))
                .filter_map(|a| Some((a.apqn, a.registers.clone()?)))
                .collect(),
            stores: live.stores.clone(),
            usable: usable_apqns(live),
        }
    }

    pub fn losses(&self) -> Vec<Loss> {
        losses_where(&self.registers, &self.stores, &self.usable)
    }

    /// Performs one step; whether it took effect.
    pub fn perform(&mut self, step: &GroupStep, desired: &DesiredGroup) -> bool {
        match (step.action, step.apqn, &step.store) {
            (action, Some(apqn), _) => {
                let mk_type = step.mk_types[0];
                let target = desired.master_keys.get(&mk_type);
                self.register_step(action, apqn, mk_type, target)
            }
            (action, None, Some(id)) => {
                let Some(index) = self.stores.iter().position(|s| &s.id == id) else {
                    return false;
                };
                self.store_step(action, index, &step.mk_types)
            }
            _ => false,
        }
    }

    pub fn register_step(
        &mut self,
        action: GroupAction,
        apqn: Apqn,
        mk_type: MkType,
        target: Option<&Mkvp>,
    ) -> bool {
        let ep11 = self.mode == GroupMode::Ep11;
        let Some(registers) = self
            .registers
            .get_mut(&apqn)
            .and_then(|r| r.get_mut(&mk_type))
        else {
            return false;
        };
        match action {
            GroupAction::ClearNewMk => registers.new = NewMk::Empty,
            GroupAction::LoadNewMk => {
                let Some(target) = target else { return false };
                if !matches!(registers.new, NewMk::Empty | NewMk::Partial) {
                    return false;
                }
                registers.new = if ep11 {
                    NewMk::Uncommitted(target.clone())
                } else {
                    NewMk::Ready(target.clone())
                };
            }
            GroupAction::CommitNewMk => {
                let NewMk::Uncommitted(vp) = &registers.new else {
                    return false;
                };
                registers.new = NewMk::Ready(vp.clone());
            }
            GroupAction::SetImmediate => {
                if !matches!(registers.new, NewMk::Ready(_)) {
                    return false;
                }
                *registers = registers.after_set();
            }
            _ => return false,
        }
        true
    }

    /// zkey's rules: stage with the first APQN whose CURRENT holds the key and whose NEW is
    /// ready; complete once any APQN holds the staged key as CURRENT (or OLD); from OLD with
    /// the first APQN whose OLD holds the key.
    pub fn store_step(&mut self, action: GroupAction, index: usize, types: &[MkType]) -> bool {
        let registers = &self.registers;
        let StoreState::Known(copies) = &mut self.stores[index].state else {
            return false;
        };
        let of = |t: &MkType| {
            let t = *t;
            registers.values().filter_map(move |r| r.get(&t))
        };
        let mut moved = BTreeMap::new();
        for mk_type in types {
            let Some(copy) = copies.get(mk_type) else {
                return false;
            };
            let next = match action {
                GroupAction::StageReencipher => of(mk_type)
                    .find(|r| {
                        r.current.vp() == Some(&copy.active) && matches!(r.new, NewMk::Ready(_))
                    })
                    .and_then(|r| r.new.vp().cloned())
                    .map(|vp| (copy.active.clone(), Some(vp))),
                GroupAction::CompleteReencipher => copy.staged.as_ref().and_then(|staged| {
                    of(mk_type)
                        .any(|r| {
                            r.current.vp() == Some(staged)
                                || r.old.as_ref().and_then(HeldMk::vp) == Some(staged)
                        })
                        .then(|| (staged.clone(), None))
                }),
                GroupAction::ReencipherFromOld => of(mk_type)
                    .find(|r| r.old.as_ref().and_then(HeldMk::vp) == Some(&copy.active))
                    .and_then(|r| r.current.vp().cloned())
                    .map(|vp| (vp, copy.staged.clone())),
                _ => None,
            };
            let Some(next) = next else { return false };
            moved.insert(*mk_type, next);
        }
        for (mk_type, (active, staged)) in moved {
            let copy = copies.get_mut(&mk_type).expect("checked");
            copy.active = active;
            copy.staged = staged;
        }
        true
    }

    /// Back to a live group, for planning again from where this world is.
    pub fn to_live(&self, serial: impl Fn(Apqn) -> Option<String>) -> LiveGroup {
        LiveGroup {
            apqns: self
                .registers
                .iter()
                .map(|(apqn, registers)| crate::model::domain_group::LiveApqn {
                    apqn: *apqn,
                    usable: true,
                    mode: Some(self.mode),
                    card_serial: serial(*apqn),
                    registers: Some(registers.clone()),
                })
                .collect(),
            stores: self.stores.clone(),
            inventory: Default::default(),
        }
    }
}
