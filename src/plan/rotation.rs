//! The rotation rule, one for every backend. A rotation is a set of (master key type,
//! verification pattern) changes. For each, this module decides what every register needs
//! (an APQN's registers of that type; an HPCS crypto unit is such an APQN, shown in the general
//! shape by `model::hpcs_view`) and what every store needs (a zkey key, a LUKS2 volume, the
//! tokens of openCryptoki, an application key; HPCS's key storage). Pure.
//!
//! Each backend's planner asks it, then lays the steps out in its own order and words
//! (`plan::diff` for HPCS, `plan::domain_group` for Crypto Express), and plays the result over
//! the live state against the one loss rule (`model::loss`) before it returns a plan. What stays
//! a backend's own is only what its platform imposes: where the evidence about a store comes
//! from (HPCS shows no store, so the journal and the service's status settle it), and HPCS's
//! selection of crypto units for a set immediate.

use crate::model::domain_group::KeyCopies;
use crate::model::registers::{Mkvp, NewMk, TypeRegisters};

/// What a backend's registers are like, besides the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterRules {
    /// A loaded NEW register must be committed before it can be set (EP11, HPCS); CCA's is
    /// ready once its last part is in.
    pub commit: bool,
    /// A register is done only when its NEW is empty again (HPCS: a `Full Committed` new
    /// register on a promoted crypto unit is a rotation still open). A copy of the target left
    /// in NEW is promoted once more, which empties it; another key is cleared.
    pub done_with_new_empty: bool,
}

/// The ceremony steps one register type of one APQN needs, in the order they run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegisterSteps {
    pub clear: bool,
    pub load: bool,
    pub commit: bool,
    pub set: bool,
}

impl RegisterSteps {
    pub fn any(self) -> bool {
        self.clear || self.load || self.commit || self.set
    }
}

/// The steps that bring `registers` to hold `target` in CURRENT. A NEW register holding another
/// key is cleared, an empty or partly loaded one is loaded, a loaded one is committed where the
/// backend commits, and the set follows. A register whose CURRENT already holds the target
/// needs nothing, unless the backend wants its NEW empty.
pub fn register_steps(
    registers: &TypeRegisters,
    target: &Mkvp,
    rules: RegisterRules,
) -> RegisterSteps {
    let new = &registers.new;
    let holds_target = new.vp() == Some(target);
    let uncommitted_target = matches!(new, NewMk::Uncommitted(vp) if vp == target);
    if registers.current.vp() == Some(target) {
        return if !rules.done_with_new_empty || new.vp().is_none() {
            RegisterSteps::default()
        } else if holds_target {
            RegisterSteps {
                commit: rules.commit && uncommitted_target,
                set: true,
                ..RegisterSteps::default()
            }
        } else {
            RegisterSteps {
                clear: true,
                ..RegisterSteps::default()
            }
        };
    }
    let foreign = new.vp().is_some() && !holds_target;
    let load = foreign || matches!(new, NewMk::Empty | NewMk::Partial);
    RegisterSteps {
        clear: foreign,
        load,
        commit: rules.commit && (load || uncommitted_target),
        set: true,
    }
}

/// Whether a store's copy of one type must move before the set: it is not under the target,
/// has no staged copy under it, and its key is still some APQN's CURRENT (`in_current`), so
/// a re-encipher can reach it. A copy whose key only OLD holds (CCA) moves after the set,
/// from OLD; HPCS's key storage moves whole before the set (the rewrap), the others stage.
pub fn moves_before_set(copy: &KeyCopies, target: &Mkvp, in_current: bool) -> bool {
    &copy.active != target && copy.staged.as_ref() != Some(target) && in_current
}

/// Whether a store's copy of one type still needs a step after the set: a staged copy to make
/// active (`staging`: one is planned before the set), or an active copy not under the target,
/// which moves from OLD. A store moved whole (HPCS) never does.
pub fn moves_after_set(copy: &KeyCopies, target: &Mkvp, staging: bool) -> bool {
    staging || copy.staged.as_ref() == Some(target) || &copy.active != target
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::registers::{HeldMk, MkType};

    fn vp(c: char) -> Mkvp {
        Mkvp::parse(MkType::Wk, &c.to_string().repeat(32)).unwrap()
    }

    const EP11: RegisterRules = RegisterRules {
        commit: true,
        done_with_new_empty: false,
    };
    const CCA: RegisterRules = RegisterRules {
        commit: false,
        done_with_new_empty: false,
    };
    const HPCS: RegisterRules = RegisterRules {
        commit: true,
        done_with_new_empty: true,
    };

    fn regs(new: NewMk, current: char) -> TypeRegisters {
        TypeRegisters {
            new,
            current: HeldMk::Valid(vp(current)),
            old: None,
        }
    }

    fn steps(clear: bool, load: bool, commit: bool, set: bool) -> RegisterSteps {
        RegisterSteps {
            clear,
            load,
            commit,
            set,
        }
    }

    #[test]
    fn a_register_not_yet_at_the_target_is_staged_then_set() {
        let b = vp('b');
        for (rules, commit) in [(EP11, true), (CCA, false), (HPCS, true)] {
            let got = |new| register_steps(&regs(new, 'a'), &b, rules);
            assert_eq!(got(NewMk::Empty), steps(false, true, commit, true));
            assert_eq!(got(NewMk::Partial), steps(false, true, commit, true));
            assert_eq!(
                got(NewMk::Uncommitted(b.clone())),
                steps(false, false, commit, true)
            );
            assert_eq!(
                got(NewMk::Ready(b.clone())),
                steps(false, false, false, true)
            );
            assert_eq!(got(NewMk::Ready(vp('c'))), steps(true, true, commit, true));
            assert_eq!(
                got(NewMk::Uncommitted(vp('c'))),
                steps(true, true, commit, true)
            );
        }
    }

    #[test]
    fn a_register_at_the_target_is_done_or_has_its_new_emptied() {
        let b = vp('b');
        for new in [NewMk::Empty, NewMk::Ready(b.clone()), NewMk::Ready(vp('c'))] {
            assert!(!register_steps(&regs(new.clone(), 'b'), &b, EP11).any());
            assert!(!register_steps(&regs(new, 'b'), &b, CCA).any());
        }
        let got = |new| register_steps(&regs(new, 'b'), &b, HPCS);
        assert_eq!(got(NewMk::Empty), RegisterSteps::default());
        assert_eq!(
            got(NewMk::Ready(b.clone())),
            steps(false, false, false, true)
        );
        assert_eq!(
            got(NewMk::Uncommitted(b.clone())),
            steps(false, false, true, true)
        );
        assert_eq!(got(NewMk::Ready(vp('c'))), steps(true, false, false, false));
    }

    #[test]
    fn a_copy_moves_before_the_set_only_while_current_holds_its_key() {
        let (a, b) = (vp('a'), vp('b'));
        let copy = |active: &Mkvp, staged: Option<&Mkvp>| KeyCopies {
            active: active.clone(),
            staged: staged.cloned(),
        };
        assert!(moves_before_set(&copy(&a, None), &b, true));
        assert!(
            !moves_before_set(&copy(&a, None), &b, false),
            "only OLD holds a: from OLD"
        );
        assert!(
            !moves_before_set(&copy(&a, Some(&b)), &b, true),
            "already staged"
        );
        assert!(
            !moves_before_set(&copy(&b, None), &b, true),
            "already there"
        );
        assert!(moves_after_set(&copy(&a, Some(&b)), &b, false));
        assert!(moves_after_set(&copy(&a, None), &b, false), "from OLD");
        assert!(
            moves_after_set(&copy(&b, None), &b, true),
            "staged in this plan"
        );
        assert!(!moves_after_set(&copy(&b, None), &b, false));
    }
}
