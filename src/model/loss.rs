//! The loss rule (zcrypt.md §6), the same for every backend: a key is recoverable only while
//! some register of the APQNs it depends on (NEW, CURRENT, or for CCA OLD) holds the master
//! key that the key, or its staged copy, is enciphered under. The zcrypt planner's safety
//! check and its tests, the HPCS plan's replay and the HPCS simulator's incidents all ask
//! [`losses`]; HPCS asks through [`super::hpcs_view`], which shows a service instance in the
//! general shape. No I/O.

use std::borrow::Borrow;
use std::fmt;

use std::collections::BTreeMap;

use super::domain_group::{Apqn, LiveStore, StoreId, StoreState};
use super::registers::{ApqnRegisters, MkType, Mkvp};

/// A store whose copies of one type no register holds any more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    pub store: StoreId,
    pub mk_type: MkType,
    /// The VPs of its copies (active, then staged).
    pub under: Vec<Mkvp>,
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let under: Vec<&str> = self.under.iter().map(Mkvp::as_str).collect();
        write!(
            f,
            "{}: no {} register of the group holds {}",
            self.store,
            self.mk_type,
            under.join(" or ")
        )
    }
}

/// The loss rule: every copy type of every known store must be under a key that some register
/// (NEW, CURRENT, OLD) of some APQN of the group holds. Registers the cards did not show
/// hold nothing here, so an unknown register never makes a plan look safe.
pub fn losses<R: Borrow<ApqnRegisters>>(apqns: &[R], stores: &[LiveStore]) -> Vec<Loss> {
    let mut found = Vec::new();
    for store in stores {
        let StoreState::Known(copies) = &store.state else {
            continue;
        };
        for (mk_type, copy) in copies {
            let held = |vp: &Mkvp| {
                apqns
                    .iter()
                    .filter_map(|registers| registers.borrow().get(mk_type))
                    .any(|registers| registers.holds(vp))
            };
            if !mk_type.visible_in_sysfs() {
                continue;
            }
            if !held(&copy.active) && !copy.staged.as_ref().is_some_and(held) {
                found.push(Loss {
                    store: store.id.clone(),
                    mk_type: *mk_type,
                    under: std::iter::once(copy.active.clone())
                        .chain(copy.staged.clone())
                        .collect(),
                });
            }
        }
    }
    found
}

/// `losses` over a domain group's registers, each store counting only the APQNs that can
/// use it: a zkey key's associated APQNs (`usable`), since zkey re-enciphers and the card
/// converts a key only through them. A store not in `usable` counts every APQN given
/// (adversarial round 13z, F1 and F3: another APQN's OLD or NEW held a key's master key, so a
/// SET that dropped it from the key's only APQN looked safe).
pub fn losses_where(
    registers: &BTreeMap<Apqn, ApqnRegisters>,
    stores: &[LiveStore],
    usable: &BTreeMap<StoreId, Vec<Apqn>>,
) -> Vec<Loss> {
    stores
        .iter()
        .flat_map(|store| {
            let apqns = usable.get(&store.id);
            let held: Vec<&ApqnRegisters> = registers
                .iter()
                .filter(|(apqn, _)| apqns.is_none_or(|usable| usable.contains(apqn)))
                .map(|(_, registers)| registers)
                .collect();
            losses(&held, std::slice::from_ref(store))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::domain_group::{KeyCopies, StoreKind};
    use super::super::registers::{HeldMk, NewMk, TypeRegisters};
    use super::*;

    fn vp(c: char) -> Mkvp {
        Mkvp::parse(MkType::Wk, &c.to_string().repeat(32)).unwrap()
    }

    fn store(active: Mkvp, staged: Option<Mkvp>) -> LiveStore {
        LiveStore {
            id: StoreId {
                kind: StoreKind::ZkeyKey,
                name: "k".into(),
            },
            state: StoreState::Known(BTreeMap::from([(MkType::Wk, KeyCopies { active, staged })])),
            handle: None,
        }
    }

    #[test]
    fn an_ep11_set_before_staging_loses_the_key_and_after_staging_does_not() {
        let before = BTreeMap::from([(
            MkType::Wk,
            TypeRegisters {
                new: NewMk::Ready(vp('b')),
                current: HeldMk::Valid(vp('a')),
                old: None,
            },
        )]);
        let after: ApqnRegisters = before.iter().map(|(t, r)| (*t, r.after_set())).collect();
        assert!(losses(&[&before], &[store(vp('a'), None)]).is_empty());
        let lost = losses(&[&after], &[store(vp('a'), None)]);
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert!(lost[0].to_string().contains("no WK register"));
        assert!(losses(&[&after], &[store(vp('a'), Some(vp('b')))]).is_empty());
    }

    #[test]
    fn a_key_counts_only_the_registers_of_its_own_apqns() {
        let holding = |c: char| {
            BTreeMap::from([(
                MkType::Wk,
                TypeRegisters {
                    new: NewMk::Empty,
                    current: HeldMk::Valid(vp(c)),
                    old: None,
                },
            )])
        };
        let (one, two): (Apqn, Apqn) = ("3.6".parse().unwrap(), "4.6".parse().unwrap());
        let registers = BTreeMap::from([(one, holding('a')), (two, holding('b'))]);
        let key = store(vp('a'), None);
        let none = BTreeMap::new();
        assert!(losses_where(&registers, std::slice::from_ref(&key), &none).is_empty());
        let on_two = BTreeMap::from([(key.id.clone(), vec![two])]);
        let lost = losses_where(&registers, std::slice::from_ref(&key), &on_two);
        assert_eq!(lost.len(), 1, "{lost:?}");
        let on_one = BTreeMap::from([(key.id.clone(), vec![one])]);
        assert!(losses_where(&registers, std::slice::from_ref(&key), &on_one).is_empty());
    }
}
