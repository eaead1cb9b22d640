//! An HPCS service instance in the general shape of `registers` and `domain_group`, so that
//! the loss rule (`loss`) is one rule for both backends. Each crypto unit is an APQN with one
//! master key type, `WK` (a crypto unit is an EP11 domain), and no OLD register; its new
//! register's `Full Uncommitted` is `Uncommitted`, `Full Committed` is `Ready`, and an
//! `Empty` current register holds nothing. The key storage is one store with one copy, under
//! the MK the planner found or the simulator knows, and never a staged one: the service moves
//! the whole key storage when its rewrap completes, and until then it is under the old MK.
//!
//! Verification patterns keep HPCS's comparison, the first 56 hex digits that
//! `VerificationPattern` compares, not the 16 bytes EP11's tools compare on Linux.
//!
//! A view only: HPCS keeps its own register types (`register`, `unit`), which say what the
//! service shows, and its planner and simulator keep the service's own rules (a second
//! rewrap, a set immediate before the rewrap). Pure.

use std::collections::BTreeMap;

use super::domain_group::{KeyCopies, LiveStore, StoreId, StoreKind, StoreState};
use super::loss::{Loss, losses};
use super::registers::{ApqnRegisters, HeldMk, MkType, Mkvp, NewMk, TypeRegisters};
use super::{CryptoUnit, CurrentRegister, NewRegister, VerificationPattern};

/// The master key type of an HPCS crypto unit.
pub const MK_TYPE: MkType = MkType::Wk;

/// A verification pattern in the general shape, equal to another exactly when the two
/// `VerificationPattern`s are.
pub fn mkvp(vp: &VerificationPattern) -> Mkvp {
    Mkvp::exact(vp.significant()).expect("a verification pattern is hex")
}

/// A crypto unit's registers in the general shape.
pub fn unit_registers(unit: &CryptoUnit) -> ApqnRegisters {
    let new = match &unit.new_register {
        NewRegister::Empty => NewMk::Empty,
        NewRegister::FullUncommitted(vp) => NewMk::Uncommitted(mkvp(vp)),
        NewRegister::FullCommitted(vp) => NewMk::Ready(mkvp(vp)),
    };
    let current = match &unit.current_register {
        CurrentRegister::Empty => HeldMk::Invalid,
        CurrentRegister::Valid(vp) => HeldMk::Valid(mkvp(vp)),
    };
    let mut registers = BTreeMap::new();
    let old = None;
    registers.insert(MK_TYPE, TypeRegisters { new, current, old });
    registers
}

/// The key storage of service instance `instance`, under the MK whose pattern is `under`.
pub fn key_storage(instance: &str, under: &VerificationPattern) -> LiveStore {
    LiveStore {
        id: StoreId {
            kind: StoreKind::KeyStorage,
            name: instance.into(),
        },
        state: StoreState::Known(BTreeMap::from([(
            MK_TYPE,
            KeyCopies {
                active: mkvp(under),
                staged: None,
            },
        )])),
        handle: None,
    }
}

/// The loss rule on one service instance: `Some` when no register of its crypto units holds
/// the MK that the key storage is under.
pub fn key_storage_loss<'a>(
    instance: &str,
    units: impl IntoIterator<Item = &'a CryptoUnit>,
    under: &VerificationPattern,
) -> Option<Loss> {
    let registers: Vec<ApqnRegisters> = units.into_iter().map(unit_registers).collect();
    losses(&registers, &[key_storage(instance, under)]).pop()
}

#[cfg(test)]
#[path = "hpcs_view_tests.rs"]
mod tests;
