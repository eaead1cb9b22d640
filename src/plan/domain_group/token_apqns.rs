//! `token_apqns_in_group`: an openCryptoki token the change moves that also uses an APQN
//! outside the group. `pkcshsm_mk_change` re-enciphers a token only in an operation that
//! names every APQN the token uses, and mkplan names the group's: without this check the
//! apply loads, commits and stages every other store, then stops at the tokens on every run.
//!
//! Which APQNs count is openCryptoki's rule, checked when the operation is created and again
//! at its finalize and cancel:
//!
//! - EP11 (`usr/lib/ep11_stdll/ep11_mkchange.c`, `mk_change_apqn_check_handler`, 335-360:
//!   "Slot %lu: APQN %02X.%04X must be included into this operation.", called through
//!   `handle_all_ep11_cards`, `ep11_specific.c` 17857-17875): with an `APQN_ALLOWLIST` every
//!   APQN of the list, "even if it is offline" (or not on the machine at all); with
//!   `APQN_ANY` (or no list) every APQN of every EP11 card that is online, configured and not
//!   check-stopped (`scan_for_ep11_cards`, `is_card_ep11_and_online`, `scan_for_card_domains`:
//!   the card's state, not the queue's).
//! - CCA (`usr/lib/cca_stdll/cca_mkchange.c`, `cca_mk_change_apqn_check_cb`, 1006-1015, the
//!   same message, called through `cca_iterate_adapters`, `cca_specific.c` 1808-1860): the
//!   APQNs the CCA library selects, one adapter and domain by default, every CCA adapter with
//!   `CSU_DEFAULT_ADAPTER=DEV-ANY` and every usage domain with `CSU_DEFAULT_DOMAIN=DOM-ANY`.
//!   The CCA library numbers the adapters itself (`CRP01`…), which mkplan cannot see, so a
//!   CCA token counts on every APQN of every usable CCA card, as the inventory counts it.

use super::precheck::GroupRefusal;
use crate::model::domain_group::{Apqn, GroupMode, LiveGroup};
use crate::model::domain_group_desired::DesiredGroup;
use crate::model::domain_group_inventory::FoundToken;
use crate::model::ock_tokens::{GroupTokens, token_changing, token_words};

fn joined(apqns: &[Apqn]) -> String {
    apqns
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `card domain` pairs as an `APQN_ALLOWLIST` writes them (decimal, as openCryptoki reads).
fn allow_list(apqns: &[Apqn]) -> String {
    let pairs: Vec<String> = apqns
        .iter()
        .map(|a| format!("{} {}", a.card, a.domain))
        .collect();
    format!("APQN_ALLOWLIST {} END", pairs.join("  "))
}

/// The APQNs outside the group that `token` uses, by openCryptoki's rule (above).
fn outside(token: &FoundToken, desired: &DesiredGroup, live: &LiveGroup) -> Vec<Apqn> {
    let uses: Vec<Apqn> = match &token.apqns {
        Some(listed) => listed.clone(),
        None => live
            .inventory
            .machine_apqns
            .iter()
            .filter(|(_, mode)| *mode == token.mode)
            .map(|(a, _)| *a)
            .collect(),
    };
    let mut outside: Vec<Apqn> = uses
        .into_iter()
        .filter(|a| !desired.apqns.contains(a))
        .collect();
    outside.sort();
    outside.dedup();
    outside
}

/// `began`: the journal shows this change under way, so the group's APQNs cannot change
/// (`apqns_unchanged`) and only the token's side can.
pub(super) fn check(
    desired: &DesiredGroup,
    live: &LiveGroup,
    began: bool,
) -> Result<(), GroupRefusal> {
    if token_changing(desired.mode, desired.master_keys.keys().copied()).is_empty() {
        return Ok(());
    }
    let group = GroupTokens::of(
        &live.inventory.tokens,
        &live.inventory.operations,
        &desired.apqns,
        desired.mode,
    );
    let online = |a: &Apqn| {
        live.inventory
            .machine_apqns
            .iter()
            .any(|(m, mode)| m == a && *mode == desired.mode)
    };
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    let mut all = desired.apqns.clone();
    for token in &group.tokens {
        let outside = outside(token, desired, live);
        if outside.is_empty() {
            continue;
        }
        all.extend(outside.iter().copied());
        let words = token_words(token);
        let slot = token
            .slot
            .map_or_else(|| "the slot".to_string(), |s| format!("slot {s}"));
        let absent: Vec<Apqn> = outside.iter().copied().filter(|a| !online(a)).collect();
        match (token.mode, &token.apqns) {
            (GroupMode::Ep11, Some(listed)) => {
                problems.push(format!(
                    "{words} uses {} outside the group: its APQN_ALLOWLIST names {}{}",
                    joined(&outside),
                    joined(listed),
                    if absent.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({} not online on this machine, which openCryptoki counts all the same)",
                            joined(&absent)
                        )
                    }
                ));
                fixes.push(format!(
                    "{words}'s list narrowed to the group's APQNs (`{}`), then pkcsslotd and the applications using {slot} restarted so that they read it",
                    allow_list(&desired.apqns)
                ));
            }
            (GroupMode::Ep11, None) => {
                problems.push(format!(
                    "{words} has APQN_ANY (or no APQN_ALLOWLIST), so it uses every APQN of every online EP11 card, {} outside the group too",
                    joined(&outside)
                ));
                fixes.push(format!(
                    "{words} given an allow list of the group's APQNs (`{}` in place of APQN_ANY), then pkcsslotd and the applications using {slot} restarted so that they read it; or the other EP11 cards offline (`chzcrypt -d CARD`) until the change is done",
                    allow_list(&desired.apqns)
                ));
            }
            (GroupMode::Cca, _) => {
                problems.push(format!(
                    "{words} is a CCA token, whose APQNs the CCA library picks (CSU_DEFAULT_ADAPTER, CSU_DEFAULT_DOMAIN; mkplan cannot see which), so it counts on every CCA APQN of the machine, {} outside the group too",
                    joined(&outside)
                ));
                fixes.push(format!(
                    "the CCA cards of {} offline (`chzcrypt -d CARD`) until the change is done (a CCA token has no allow list)",
                    joined(&outside)
                ));
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    all.sort();
    all.dedup();
    let group_side = if began {
        format!(
            "This change is under way on {} (the journal's first step), and a change ends on the APQNs it began on (`apqns_unchanged`), so the tokens' side must move: ",
            joined(&desired.apqns)
        )
    } else {
        format!(
            "either the group on every APQN the tokens use (apqns: [{}]; an APQN that is offline or not on this machine cannot join a group), or ",
            joined(&all)
        )
    };
    Err(GroupRefusal {
        check: "token_apqns_in_group",
        message: format!(
            "openCryptoki tokens on the group's APQNs also use APQNs outside it: {}. pkcshsm_mk_change re-enciphers a token only in an operation that names every APQN the token uses (openCryptoki: \"Slot N: APQN {} must be included into this operation.\"), and mkplan names the group's: the apply would load, commit and stage the other stores, then stop at the tokens",
            problems.join("; "),
            outside_first(&all, &desired.apqns)
        ),
        settle: Some(format!(
            "{group_side}{}. The APQNs left out keep their key: a token whose list is narrowed can use them again once they hold the new key too",
            fixes.join("; ")
        )),
    })
}

fn outside_first(all: &[Apqn], group: &[Apqn]) -> String {
    all.iter()
        .find(|a| !group.contains(a))
        .map_or_else(String::new, ToString::to_string)
}
