//! The openCryptoki tokens of a domain group, slot by slot (zcrypt.md §4.3). One
//! `pkcshsm_mk_change` operation re-enciphers every token on the APQNs it is given, and the
//! tool allows one operation per APQN, so the tokens move together, as one store of the group.
//! What each token's objects are under is told slot by slot, from the token configs and the
//! open operation:
//!
//! - With an operation open on the group's APQNs, a slot among its `Affected slots:` has, for
//!   each type among its `New … MKVP` lines, its objects under the key the operation moves
//!   from and a copy under the new key. A token on the group's APQNs that it did not affect,
//!   or a type the group changes that it does not name, has no copy, and mkplan cannot make
//!   one while the operation is open: [`uncovered`]. That is a refusal, never a store left
//!   out.
//! - With none open, a token's objects are under the key its config pins (`EXPECTED_WKVP`,
//!   `EXPECTED_MKVPS`): the token refuses APQNs with another key. A token with no pin for a
//!   type uses the APQNs' CURRENT. The types are those the tokens use ([`token_types`]: a CCA
//!   token never uses ASYM); with no token on the APQNs and no operation open, there is
//!   nothing to move. A pin that is not the APQNs'
//!   CURRENT contradicts them (a pin changed ahead of a finalize, or objects left under OLD),
//!   and which key the objects are under is then not known.
//!
//! No I/O: the backend reads the configs and the operations.

use std::collections::{BTreeMap, BTreeSet};

use super::domain_group::{Apqn, GroupMode, KeyCopies};
use super::domain_group_inventory::{FoundOperation, FoundToken};
use super::registers::{MkType, Mkvp};

/// The master key types the tokens of `mode` use, so the only ones a `pkcshsm_mk_change`
/// operation moves them under (openCryptoki `ep11tok_mk_change_is_affected`: EP11's WK;
/// `cca_mk_change_is_affected`: SYM, AES and APKA). The CCA token never uses ASYM: it keeps
/// RSA, EC and QSA private keys under APKA (`cca_mk_type_from_key_type`).
pub fn token_types(mode: GroupMode) -> &'static [MkType] {
    match mode {
        GroupMode::Ep11 => &[MkType::Wk],
        GroupMode::Cca => &[MkType::Sym, MkType::Aes, MkType::Apka],
    }
}

/// Of the types a group of `mode` changes, those its tokens use.
pub fn token_changing(mode: GroupMode, changing: impl IntoIterator<Item = MkType>) -> Vec<MkType> {
    changing
        .into_iter()
        .filter(|t| token_types(mode).contains(t))
        .collect()
}

/// The tokens whose configs put them on the group's APQNs, and the open operations there.
pub struct GroupTokens<'a> {
    pub tokens: Vec<&'a FoundToken>,
    pub operations: Vec<&'a FoundOperation>,
}

/// Why the tokens' state is not known, and what would settle it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotShown {
    pub why: String,
    pub settle: String,
}

impl<'a> GroupTokens<'a> {
    pub fn of(
        tokens: &'a [FoundToken],
        operations: &'a [FoundOperation],
        apqns: &[Apqn],
        mode: GroupMode,
    ) -> Self {
        Self {
            tokens: tokens
                .iter()
                .filter(|t| t.depends_on(apqns, mode))
                .collect(),
            operations: operations.iter().filter(|op| op.uses_any(apqns)).collect(),
        }
    }

    /// The tokens' copies of each type in `changing`, and the open operation's id; or why
    /// they are not known. `currents`: the distinct CURRENT keys of the group's APQNs, by type.
    pub fn copies(
        &self,
        changing: &[MkType],
        currents: &BTreeMap<MkType, BTreeSet<Mkvp>>,
        from_old: bool,
    ) -> Result<(BTreeMap<MkType, KeyCopies>, Option<String>), NotShown> {
        match self.operations.as_slice() {
            // No token uses the APQNs: openCryptoki has nothing to re-encipher ("No token is
            // affected by this master key change").
            [] if self.tokens.is_empty() => Ok((BTreeMap::new(), None)),
            [] => self.pinned(changing, currents, from_old).map(|c| (c, None)),
            [op] => self.staged(op, changing, currents).map(|c| (c, Some(op.id.clone()))),
            several => Err(NotShown {
                why: format!(
                    "{} open pkcshsm_mk_change operations use the group's APQNs ({})",
                    several.len(),
                    several.iter().map(|op| op.id.as_str()).collect::<Vec<_>>().join(", ")
                ),
                settle: "one operation at most on the group's APQNs: finish or cancel the others (pkcshsm_mk_change finalize or cancel --id ID)".into(),
            }),
        }
    }

    /// With `op` open: every token must be among its slots, and every type among its keys.
    fn staged(
        &self,
        op: &FoundOperation,
        changing: &[MkType],
        currents: &BTreeMap<MkType, BTreeSet<Mkvp>>,
    ) -> Result<BTreeMap<MkType, KeyCopies>, NotShown> {
        let all_set = changing.iter().all(|t| {
            op.new.get(t).is_some_and(|new| {
                currents
                    .get(t)
                    .is_some_and(|c| c.len() == 1 && c.contains(new))
            })
        });
        if let Some(refusal) = uncovered(op, &self.tokens, changing, all_set) {
            return Err(refusal);
        }
        let mut copies = BTreeMap::new();
        for &mk_type in changing {
            let Some(new) = op.new.get(&mk_type) else {
                return Err(NotShown {
                    why: format!(
                        "open pkcshsm_mk_change operation {} on the group's APQNs does not re-encipher {mk_type} (it names {}), and no token config on them shows which tokens it affected",
                        op.id,
                        types_of(op)
                    ),
                    settle: operation_closed(op),
                });
            };
            // The objects are under the key the operation moves from: a CURRENT not yet
            // replaced, or none left (then only the staged copy).
            let before = currents
                .get(&mk_type)
                .and_then(|c| c.iter().find(|c| *c != new))
                .cloned();
            let gone =
                Mkvp::parse(mk_type, &"0".repeat(mk_type.compared_hex_len())).expect("zeros");
            copies.insert(
                mk_type,
                KeyCopies {
                    active: before.unwrap_or(gone),
                    staged: op.reenciphered.then(|| new.clone()),
                },
            );
        }
        Ok(copies)
    }

    /// With no operation open: the objects are under the one CURRENT, which every pin must name.
    fn pinned(
        &self,
        changing: &[MkType],
        currents: &BTreeMap<MkType, BTreeSet<Mkvp>>,
        from_old: bool,
    ) -> Result<BTreeMap<MkType, KeyCopies>, NotShown> {
        // Never "the CURRENT registers agreeing": with the stores not staged, the way there
        // is a set that loses them (the planner's early-set advice says what to do then).
        let settle = "each token config's EXPECTED_WKVP / EXPECTED_MKVPS naming the key its objects are under, with no pkcshsm_mk_change operation open (`pkcshsm_mk_change list`)";
        let not_shown = |why: String| NotShown {
            why,
            settle: settle.into(),
        };
        if from_old {
            // After a SET the objects may be under OLD or CURRENT: CURRENT is no evidence.
            return Err(NotShown {
                why: "no pkcshsm_mk_change operation is open, and under set_then_from_old the APQNs' CURRENT registers do not show which key the tokens' objects are under".into(),
                settle: "procedure: reencipher_then_set, whose pkcshsm_mk_change operation shows where the tokens' objects are at every step".into(),
            });
        }
        let mut copies = BTreeMap::new();
        for &mk_type in changing {
            let current = match currents.get(&mk_type).map(|c| c.iter().collect::<Vec<_>>()) {
                Some(one) if one.len() == 1 => one[0].clone(),
                _ => return Err(NotShown {
                    why: "no operation is open and the APQNs' CURRENT registers differ, so which key the tokens use is not shown".into(),
                    settle: "the tokens staged through the APQNs whose CURRENT still holds the key they are under before those APQNs are set (a set before the staging loses them)".into(),
                }),
            };
            for token in &self.tokens {
                let Some(pin) = token.pins.get(&mk_type) else {
                    continue;
                };
                let shown = Mkvp::parse(mk_type, pin).map_err(|e| {
                    not_shown(format!(
                        "{} pins {mk_type} as {}: {e}",
                        token_words(token),
                        crate::quote::quote(pin)
                    ))
                })?;
                if shown != current {
                    return Err(not_shown(format!(
                        "{} pins {mk_type} {shown}, but the group's APQNs have {current} as CURRENT and no pkcshsm_mk_change operation is open: its objects may be under either key (a pin set ahead of a finalize, or objects left under OLD)",
                        token_words(token)
                    )));
                }
            }
            copies.insert(
                mk_type,
                KeyCopies {
                    active: current,
                    staged: None,
                },
            );
        }
        Ok(copies)
    }
}

/// The refusal when the open operation `op` leaves out a token of `tokens` or a type of
/// `changing`: it has no copy of those objects under the new key, and mkplan cannot make one
/// while `op` is open. `None` when `op` covers every token and type.
pub fn uncovered(
    op: &FoundOperation,
    tokens: &[&FoundToken],
    changing: &[MkType],
    all_set: bool,
) -> Option<NotShown> {
    let missing_types: Vec<String> = changing
        .iter()
        .filter(|t| !op.new.contains_key(t))
        .map(ToString::to_string)
        .collect();
    let mut left_out = Vec::new();
    let mut came = Vec::new();
    for token in tokens {
        let words = token_words(token);
        if let (Some(slot), Some(slots)) = (token.slot, &op.slots)
            && !slots.contains(&slot)
        {
            came.push(slot);
        }
        match (token.slot, &op.slots) {
            (_, None) => left_out.push(format!(
                "{words}: the operation lists no affected slots, so whether it re-enciphered this token is not shown"
            )),
            (None, Some(_)) => left_out.push(format!(
                "{words}: no opencryptoki.conf names its slot, so whether the operation affected it is not shown"
            )),
            (Some(slot), Some(slots)) if !slots.contains(&slot) => left_out.push(format!(
                "{words} is not among the operation's affected slots"
            )),
            (Some(_), Some(_)) if !missing_types.is_empty() => left_out.push(format!(
                "{words} is affected, but the operation does not re-encipher its {} objects",
                missing_types.join(", ")
            )),
            _ => {}
        }
    }
    if left_out.is_empty() {
        return slots_gone(op, tokens, all_set);
    }
    Some(NotShown {
        why: format!(
            "open pkcshsm_mk_change operation {} (APQNs {}; new {}; affected slots {}) does not cover every token this change moves: {}. A set would leave those objects with no copy under the new key, and mkplan cannot stage them: pkcshsm_mk_change allows one operation per APQN",
            op.id,
            op.apqns
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            types_of(op),
            op.slots.as_ref().map_or("not shown".into(), |s| {
                s.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
            left_out.join("; ")
        ),
        settle: match (came.is_empty(), all_set) {
            (true, _) => operation_closed(op),
            (false, false) => slots_came(op, &came),
            (false, true) => slots_came_after_the_set(op, &came),
        },
    })
}

/// The refusal when `op` affects slots that no token on its APQNs is configured in now (a
/// token taken out of opencryptoki.conf, or whose allow list left the APQNs): openCryptoki
/// finalizes or cancels it only while the slots its tokens count are the ones it began with
/// (`perform_finalize_cancel`), so mkplan's finalize would fail every time. `None` when every
/// slot it affects is configured.
fn slots_gone(op: &FoundOperation, tokens: &[&FoundToken], all_set: bool) -> Option<NotShown> {
    let configured: BTreeSet<u64> = tokens.iter().filter_map(|t| t.slot).collect();
    let gone: Vec<u64> = op
        .slots
        .iter()
        .flatten()
        .filter(|s| !configured.contains(s))
        .copied()
        .collect();
    if gone.is_empty() {
        return None;
    }
    let gone = slot_words(&gone);
    Some(NotShown {
        why: format!(
            "open pkcshsm_mk_change operation {} affects {gone}, which opencryptoki.conf no longer configures on the group's APQNs: openCryptoki finalizes or cancels an operation only while the tokens it affects are the ones it began with (\"The list of slots affected by this master key change has changed\")",
            op.id
        ),
        settle: format!(
            "{gone} back in opencryptoki.conf with its token config, and pkcsslotd restarted; then apply again ({}), and take {gone} out again once the operation is closed",
            if all_set {
                "mkplan finalizes the operation"
            } else {
                "mkplan sets every APQN and finalizes the operation; or, while no APQN is set, `pkcshsm_mk_change cancel` works too"
            }
        ),
    })
}

/// What settles an operation whose APQNs tokens of `came` use too, once every APQN has its
/// new key: no cancel then (openCryptoki refuses it), and no finalize while those slots are
/// configured. Objects those tokens made since the set are under the new key already.
fn slots_came_after_the_set(op: &FoundOperation, came: &[u64]) -> String {
    let slots = slot_words(came);
    format!(
        "operation {id} finalized with {slots} out of pkcsslotd's view: every APQN has the operation's new key, so openCryptoki refuses a cancel, and finalizes only while the tokens on its APQNs are the ones it began with. Take {slots} out of opencryptoki.conf and restart pkcsslotd, apply again (mkplan finalizes the operation), then put {slots} back and restart pkcsslotd. Objects {slots} made after the set are under the new key already; any made before it are under the old key (CCA: move them from OLD offline, pkcscca -m keys; EP11: only the old WK, loaded again from its key parts, makes them usable)",
        id = op.id
    )
}

/// `slot 3, slot 7`.
fn slot_words(slots: &[u64]) -> String {
    slots
        .iter()
        .map(|s| format!("slot {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What settles an operation whose APQNs tokens of `came` now use too. openCryptoki cancels
/// or finalizes an operation only while the slots its tokens count are the ones it began
/// with (`perform_finalize_cancel`: "The list of slots affected by this master key change
/// has changed"), so those slots go out of pkcsslotd's view for the cancel.
fn slots_came(op: &FoundOperation, came: &[u64]) -> String {
    let slots = slot_words(came);
    format!(
        "operation {id} canceled, then plan again (mkplan then stages every token of the group in one operation). pkcshsm_mk_change cancels or finalizes it only while the tokens on its APQNs are the ones it began with, so while no APQN has its new key set: take {slots} out of opencryptoki.conf and restart pkcsslotd, run `pkcshsm_mk_change cancel --id {id}`, then put {slots} back and restart pkcsslotd. Once an APQN is set, the objects of {slots} can be moved only offline (pkcsep11_migrate, pkcscca -m keys)",
        id = op.id
    )
}

/// What settles an operation that stands in the way: finished or canceled first.
fn operation_closed(op: &FoundOperation) -> String {
    format!(
        "operation {id} finished or canceled first, then plan again (mkplan then stages every token of the group in one operation): while no APQN has its new key set, `pkcshsm_mk_change cancel --id {id}`; if it is another change's, that change finished (its keys set, EXPECTED_WKVP / EXPECTED_MKVPS updated, `pkcshsm_mk_change finalize --id {id}`). Once an APQN is set, objects it left out can be moved only offline (pkcsep11_migrate, pkcscca -m keys)",
        id = op.id
    )
}

fn types_of(op: &FoundOperation) -> String {
    op.new
        .iter()
        .map(|(t, vp)| format!("{t} {vp}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "slot 7's token (CONFIG)", or the config alone when no slot names it.
pub fn token_words(token: &FoundToken) -> String {
    match token.slot {
        Some(slot) => format!("slot {slot}'s token ({})", token.config),
        None => format!("the token of {}", token.config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp(c: &str) -> Mkvp {
        Mkvp::parse(MkType::Wk, &c.repeat(16)).unwrap()
    }

    fn token(slot: u64, pin: Option<&str>) -> FoundToken {
        FoundToken {
            config: format!("ep11tok{slot}.conf"),
            mode: GroupMode::Ep11,
            slot: Some(slot),
            apqns: None,
            pins: pin
                .map(|p| (MkType::Wk, p.repeat(16)))
                .into_iter()
                .collect(),
        }
    }

    fn operation(slots: &[u64]) -> FoundOperation {
        FoundOperation {
            stuck: None,
            id: "6d591c".into(),
            apqns: vec!["03.0006".parse().unwrap()],
            new: BTreeMap::from([(MkType::Wk, vp("b2"))]),
            slots: Some(slots.to_vec()),
            reenciphered: true,
        }
    }

    fn currents(c: &[&str]) -> BTreeMap<MkType, BTreeSet<Mkvp>> {
        BTreeMap::from([(MkType::Wk, c.iter().map(|c| vp(c)).collect())])
    }

    #[test]
    fn an_operation_counts_only_for_the_slots_it_affected() {
        let tokens = [token(3, None), token(7, None)];
        let ops = [operation(&[3])];
        let apqns = ["03.0006".parse().unwrap()];
        let group = GroupTokens::of(&tokens, &ops, &apqns, GroupMode::Ep11);
        let why = group
            .copies(&[MkType::Wk], &currents(&["a1"]), false)
            .unwrap_err();
        assert!(
            why.why
                .contains("slot 7's token (ep11tok7.conf) is not among"),
            "{why:?}"
        );
        assert!(
            why.settle.contains("pkcshsm_mk_change cancel --id 6d591c"),
            "{why:?}"
        );
        let ops = [operation(&[3, 7])];
        let group = GroupTokens::of(&tokens, &ops, &apqns, GroupMode::Ep11);
        let (copies, id) = group
            .copies(&[MkType::Wk], &currents(&["a1"]), false)
            .unwrap();
        assert_eq!(copies[&MkType::Wk].staged, Some(vp("b2")));
        assert_eq!(id.as_deref(), Some("6d591c"));
    }

    #[test]
    fn with_no_operation_a_pin_must_name_the_current_key() {
        let apqns = ["03.0006".parse().unwrap()];
        let tokens = [token(3, Some("a1")), token(5, None)];
        let group = GroupTokens::of(&tokens, &[], &apqns, GroupMode::Ep11);
        let (copies, _) = group
            .copies(&[MkType::Wk], &currents(&["a1"]), false)
            .unwrap();
        assert_eq!(copies[&MkType::Wk].active, vp("a1"));
        let tokens = [token(3, Some("b2"))];
        let group = GroupTokens::of(&tokens, &[], &apqns, GroupMode::Ep11);
        let why = group
            .copies(&[MkType::Wk], &currents(&["a1"]), false)
            .unwrap_err();
        assert!(why.why.contains("pins WK b2"), "{why:?}");
    }
}
