//! Advice for a set made too early: some of the group's APQNs have the change's key as
//! CURRENT while stores are still under the key the others hold, with no copy staged under
//! the new one. The APQNs that still hold the old key are then its only holders (EP11 has no
//! OLD register; CCA keeps it in the early-set APQN's OLD as well). Making the CURRENT
//! registers agree by setting them would lose (EP11) or strand under OLD (CCA) every such
//! store, so the advice names the stores, the holders, and the two ways that keep them.

use std::collections::BTreeMap;

use crate::model::domain_group::{Apqn, GroupMode, LiveGroup, StoreKind, StoreState};
use crate::model::domain_group_desired::DesiredGroup;
use crate::model::ock_tokens::token_words;
use crate::model::registers::{ApqnRegisters, HeldMk, MkType, Mkvp};

fn joined(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().collect::<Vec<_>>().join(", ")
}

/// The advice, when the group's CURRENT `mk_type` registers are the change's `target` on some
/// APQNs and one other key on the rest, and some store is still under that other key (or
/// cannot be shown) with no copy staged under `target`. `None` otherwise.
pub(super) fn advice(
    desired: &DesiredGroup,
    live: &LiveGroup,
    registers: &BTreeMap<Apqn, ApqnRegisters>,
    mk_type: MkType,
    target: &Mkvp,
) -> Option<String> {
    let current = |a: &Apqn| registers[a].get(&mk_type).and_then(|r| r.current.vp());
    let set: Vec<Apqn> = registers
        .keys()
        .copied()
        .filter(|a| current(a) == Some(target))
        .collect();
    let others: Vec<&Mkvp> = registers
        .keys()
        .filter_map(current)
        .filter(|vp| *vp != target)
        .collect();
    let old = (*others.first()?).clone();
    if set.is_empty() || others.iter().any(|vp| **vp != old) {
        return None;
    }
    let holders: Vec<Apqn> = registers
        .keys()
        .copied()
        .filter(|a| current(a) == Some(&old))
        .collect();
    let at_risk = stores_under(desired, live, mk_type, &old, target);
    if at_risk.is_empty() {
        return None;
    }
    // "04.0006 holds" / "04.0006, 05.0006 hold"; "through it" / "through them".
    let (hold, them) = if holders.len() == 1 {
        ("holds", "it")
    } else {
        ("hold", "them")
    };
    let set_words = joined(set.iter().map(ToString::to_string));
    let holder_words = joined(holders.iter().map(ToString::to_string));
    let stores = joined(at_risk);
    let tokens_too = live
        .stores
        .iter()
        .any(|s| s.id.kind == StoreKind::OpenCryptoki);
    let stranded = joined(only_through(live, registers, mk_type, target, &set));
    Some(match desired.mode {
        GroupMode::Ep11 if !stranded.is_empty() => {
            // Way (2) would set the old key over the new one where these alone can use it
            // (adversarial round 13z, F3: a key completed by hand through the early-set APQN).
            let tokens = ep11_tokens(tokens_too, &holder_words, false);
            format!(
                "{set_words} was set to {target} before the stores were staged, and these are still under {old} with no copy staged: {stores}. {holder_words} now {hold} {old} alone (EP11 keeps no OLD key), the only way left to stage them. Do NOT set {holder_words} until those stores are staged through {them}: that set destroys {old}, and every one of them is lost. And these are already under {target} and may be usable only through {set_words}: {stranded}; loading {old} back into {set_words} and setting it there destroys {target} on what may be their only APQNs, so do not. The safe way: {holder_words}'s NEW loaded and committed with {target}, then each store under {old} staged through {them} (zkey and zkey-cryptsetup pick an APQN whose CURRENT holds the store's key and whose NEW is ready; mkplan plans it when no openCryptoki token is left to move);{tokens} then {holder_words} set; then plan again"
            )
        }
        GroupMode::Ep11 => {
            let tokens = ep11_tokens(tokens_too, &holder_words, true);
            format!(
                "{set_words} was set to {target} before the stores were staged, and these are still under {old} with no copy staged: {stores}. {holder_words} now {hold} {old} alone (EP11 keeps no OLD key), the only way left to stage them. Do NOT set {holder_words} until those stores are staged through {them}: that set destroys {old}, and every one of them is lost. Two safe ways: (1) {holder_words}'s NEW loaded and committed with {target}, then each store staged through {them} (zkey and zkey-cryptsetup pick an APQN whose CURRENT holds the store's key and whose NEW is ready; mkplan plans it when no openCryptoki token is left to move);{tokens} then {holder_words} set; or (2) {old} loaded back into {set_words} from its key parts, committed and set there, so that every APQN holds {old} again; then plan again, and mkplan stages before any set"
            )
        }
        GroupMode::Cca => {
            let kept = joined(
                set.iter()
                    .filter(|a| {
                        registers[*a]
                            .get(&mk_type)
                            .and_then(|r| r.old.as_ref().and_then(HeldMk::vp))
                            == Some(&old)
                    })
                    .map(ToString::to_string),
            );
            let kept = if kept.is_empty() {
                String::new()
            } else {
                format!(
                    " and {kept} as OLD (do not SET {mk_type} on {kept} again: that drops its OLD)"
                )
            };
            format!(
                "{set_words} was SET to {target} before the stores were staged, and these are still under {old} with no copy staged: {stores}. {holder_words} {hold} {old} as CURRENT{kept}. Do not SET {holder_words} until those stores are staged through {them}: that SET leaves {old} in OLD registers only, from which only `zkey reencipher --from-old`, `zkey-cryptsetup reencipher --from-old` and, offline, `pkcscca -m keys` move them, and the next SET of {mk_type} anywhere in the group loses what is left there. Two safe ways: (1) {holder_words}'s NEW loaded with {target}, then each store staged through {them} (zkey and zkey-cryptsetup pick an APQN whose CURRENT holds the store's key and whose NEW holds the new one; mkplan plans it when no openCryptoki token is left to move: pkcshsm_mk_change wants the old key as CURRENT on every APQN a token uses), then {holder_words} SET; or (2) {old} loaded back into {set_words}'s NEW from its key parts and SET there, so that every APQN holds {old} as CURRENT again; then plan again, and mkplan stages before any SET"
            )
        }
    })
}

/// What an EP11 early set leaves the openCryptoki tokens (`tokens_too`), staged through
/// `holders` by hand; `simpler`: way (2), the old key set back, is open and simpler.
fn ep11_tokens(tokens_too: bool, holders: &str, simpler: bool) -> String {
    if !tokens_too {
        return String::new();
    }
    format!(
        " openCryptoki tokens cannot be staged with pkcshsm_mk_change now (it wants the old key as CURRENT on every APQN a token uses): stop the applications using them, back up each token's TOK_OBJ and move them offline with `pkcsep11_migrate` through {holders} and pin the new key in their configs (EXPECTED_WKVP), the other stores staged by hand with zkey and zkey-cryptsetup, since mkplan cannot tell where tokens are while the CURRENT registers differ;{}",
        if simpler {
            " with tokens, way (2) is the simpler one;"
        } else {
            ""
        }
    )
}

/// The stores already under `target` alone (completed, nothing staged) that may be usable
/// only through `set`: a zkey key none of whose associated APQNs outside `set` holds
/// `target` in any register (round 15z, F3: one also associated with an APQN whose NEW was
/// never loaded), and any other store, whose APQNs mkplan cannot know (a LUKS2 volume, which
/// the card converts through any APQN; an application key: round 14z, F2 and F3). Setting
/// another key on `set` loses them.
fn only_through(
    live: &LiveGroup,
    registers: &BTreeMap<Apqn, ApqnRegisters>,
    mk_type: MkType,
    target: &Mkvp,
    set: &[Apqn],
) -> Vec<String> {
    let usable = super::effect::usable_apqns(live);
    let holds_target = |apqn: &Apqn| {
        registers
            .get(apqn)
            .and_then(|r| r.get(&mk_type))
            .is_some_and(|r| r.holds(target))
    };
    live.stores
        .iter()
        .filter(|store| {
            let StoreState::Known(copies) = &store.state else {
                return false;
            };
            copies
                .get(&mk_type)
                .is_some_and(|copy| copy.active == *target && copy.staged.is_none())
                && usable
                    .get(&store.id)
                    .is_none_or(|apqns| !apqns.iter().any(|a| !set.contains(a) && holds_target(a)))
        })
        .map(|store| store.id.to_string())
        .collect()
}

/// The stores of `mk_type` still under `old` with no copy staged under `target`, and those
/// tokens whose key is not shown (with the key their token configs pin, where they pin one).
fn stores_under(
    desired: &DesiredGroup,
    live: &LiveGroup,
    mk_type: MkType,
    old: &Mkvp,
    target: &Mkvp,
) -> Vec<String> {
    let mut found = Vec::new();
    for store in &live.stores {
        match &store.state {
            StoreState::Known(copies) => {
                if let Some(copy) = copies.get(&mk_type)
                    && copy.active == *old
                    && copy.staged.as_ref() != Some(target)
                {
                    found.push(store.id.to_string());
                }
            }
            StoreState::Unknown { .. } if store.id.kind == StoreKind::OpenCryptoki => {
                let pins: Vec<String> = live
                    .inventory
                    .tokens
                    .iter()
                    .filter(|t| t.depends_on(&desired.apqns, desired.mode))
                    .map(|t| match t.pins.get(&mk_type) {
                        Some(pin) => format!("{} pins {pin}", token_words(t)),
                        None => format!("{} pins no {mk_type} key", token_words(t)),
                    })
                    .collect();
                found.push(format!("{} ({})", store.id, joined(pins)));
            }
            StoreState::Unknown { .. } => {
                found.push(format!("{} (which key it is under is not shown)", store.id));
            }
        }
    }
    found
}
