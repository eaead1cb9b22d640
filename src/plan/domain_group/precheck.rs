//! The checks an operator expects before a master key change of a domain group (zcrypt.md
//! §7), each with a name the refusal shows, the APQNs or stores it concerns and their values;
//! and the safety check that plays a plan over the live state under the loss rule.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{GroupEvidence, GroupPlan, effect};
use crate::model::domain_group::{Apqn, LiveGroup, StoreState, losses_where};
use crate::model::domain_group_desired::{DesiredGroup, GROUP_APQNS_MAX, Procedure};
use crate::model::registers::{ApqnRegisters, HeldMk, MkType, Mkvp, NewMk};

/// A refused plan: the check that failed, what it saw, and for missing or contradictory
/// evidence, what would settle it. Always exit 3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRefusal {
    pub check: &'static str,
    pub message: String,
    pub settle: Option<String>,
}

impl fmt::Display for GroupRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused by pre-check `{}`: {}", self.check, self.message)?;
        if let Some(settle) = &self.settle {
            write!(f, "\nEvidence that would settle it: {settle}")?;
        }
        Ok(())
    }
}

fn refuse(check: &'static str, message: String) -> GroupRefusal {
    GroupRefusal {
        check,
        message,
        settle: None,
    }
}

/// What the checks established: every APQN's registers, read and usable.
pub(super) struct Checked {
    pub registers: BTreeMap<Apqn, ApqnRegisters>,
}

impl Checked {
    pub fn is_some_current(&self, mk_type: MkType, vp: &Mkvp) -> bool {
        self.registers
            .values()
            .filter_map(|r| r.get(&mk_type))
            .any(|r| r.current.vp() == Some(vp))
    }
}

fn listed(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().collect::<Vec<_>>().join(", ")
}

pub(super) fn check(
    desired: &DesiredGroup,
    live: &LiveGroup,
    evidence: &GroupEvidence,
) -> Result<Checked, GroupRefusal> {
    check_apqn_set(desired, evidence)?;
    check_targets_unchanged(desired, live, evidence)?;
    let found: BTreeMap<Apqn, _> = live.apqns.iter().map(|a| (a.apqn, a)).collect();
    let missing: Vec<String> = desired
        .apqns
        .iter()
        .filter(|a| found.get(a).is_none_or(|l| l.mode.is_none()))
        .map(ToString::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(refuse(
            "apqns_present",
            format!(
                "APQN(s) {} of the group are not on this machine as an EP11 or CCA coprocessor domain (lszcrypt shows what is)",
                listed(missing)
            ),
        ));
    }
    let offline: Vec<String> = desired
        .apqns
        .iter()
        .filter(|a| !found[a].usable || found[a].registers.is_none())
        .map(ToString::to_string)
        .collect();
    if !offline.is_empty() {
        return Err(refuse(
            "apqns_online",
            format!(
                "APQN(s) {} are offline, not configured, check-stopped or show no mkvps: every APQN of the group must take part in a change; bring them online (chzcrypt -e) and rerun",
                listed(offline)
            ),
        ));
    }
    let wrong_mode: Vec<String> = desired
        .apqns
        .iter()
        .filter(|a| found[a].mode != Some(desired.mode))
        .map(|a| {
            format!(
                "{a} ({})",
                found[a].mode.map_or("?".into(), |m| m.to_string())
            )
        })
        .collect();
    if !wrong_mode.is_empty() {
        return Err(refuse(
            "same_mode",
            format!(
                "the group is {} but APQN(s) {} run another mode",
                desired.mode,
                listed(wrong_mode)
            ),
        ));
    }
    if let Some(recorded) = &evidence.recorded_serials {
        let swapped: Vec<String> = desired
            .apqns
            .iter()
            .filter_map(|a| {
                let was = recorded.get(&a.card)?;
                let now = found[a].card_serial.as_deref().unwrap_or("(none)");
                (now != was).then(|| format!("card {:02x} was serial {was}, now {now}", a.card))
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !swapped.is_empty() {
            return Err(GroupRefusal {
                check: "card_serial_numbers",
                message: format!(
                    "a card was swapped since this change began ({}): its registers are not the ones the change loaded",
                    listed(swapped)
                ),
                settle: Some("the serial numbers recorded in the journal at the first step; if the swap was intended, load and commit the new card's NEW register and finish the change from another state folder after checking every store".into()),
            });
        }
    }
    let registers: BTreeMap<Apqn, ApqnRegisters> = desired
        .apqns
        .iter()
        .map(|a| (*a, found[a].registers.clone().expect("checked above")))
        .collect();
    for (&mk_type, target) in &desired.master_keys {
        check_type(desired, &registers, mk_type, target).map_err(|mut refusal| {
            if refusal.check == "one_current_mk" {
                refusal.settle =
                    super::early_set::advice(desired, live, &registers, mk_type, target);
            }
            refusal
        })?;
    }
    let checked = Checked { registers };
    super::inventory::check(desired, live)?;
    super::token_apqns::check(desired, live, evidence.recorded_apqns.is_some())?;
    check_stores(desired, live, &checked)?;
    Ok(checked)
}

/// The group is some APQNs, and the same ones the open change began on: a card that left
/// the group mid-change may still hold keys under the old master key when the others are
/// set, and one that came has taken no part in the change's loads.
fn check_apqn_set(desired: &DesiredGroup, evidence: &GroupEvidence) -> Result<(), GroupRefusal> {
    let selector = || {
        desired
            .selector
            .as_ref()
            .map_or_else(String::new, |s| format!(" (`apqns: {s}`)"))
    };
    if desired.apqns.is_empty() || desired.apqns.len() > GROUP_APQNS_MAX {
        let passed: Vec<String> = desired
            .selection
            .iter()
            .flat_map(|s| &s.passed_over)
            .map(|p| format!("{} ({})", p.apqn, p.why))
            .collect();
        let passed = if passed.is_empty() {
            String::new()
        } else {
            format!("; passed over: {}", listed(passed))
        };
        return Err(GroupRefusal {
            check: "apqn_selector",
            message: format!(
                "the group's selector{} selects {} APQNs on this machine; a group is 1 to {GROUP_APQNS_MAX}{}",
                selector(),
                desired.apqns.len(),
                passed
            ),
            settle: Some("`lszcrypt` showing the group's cards with the domain; or list the APQNs: apqns: [03.0006, 04.0006]".into()),
        });
    }
    let Some(recorded) = &evidence.recorded_apqns else {
        return Ok(());
    };
    let now: BTreeSet<Apqn> = desired.apqns.iter().copied().collect();
    if &now == recorded {
        return Ok(());
    }
    let changes = apqn_changes(&now, recorded);
    Err(GroupRefusal {
        check: "apqns_unchanged",
        message: format!(
            "the group's APQNs{} are {} now, but this change began on {} (the journal's first step): {}. A change ends on the APQNs it began on: a card that went may still hold keys under the old master key once the others are set, and one that came took no part in the loads",
            selector(),
            listed(now.iter().map(ToString::to_string)),
            listed(recorded.iter().map(ToString::to_string)),
            changes
        ),
        settle: Some(format!(
            "the group back on {}: bring back a card that went (`lszcrypt` must show it with the domain; an offline card is still selected and then refused until it is online), or leave out a card that came (`cards:` in the selector, or list the APQNs: apqns: [{}]) until the change is done. If the change must end on other APQNs, check every store and finish it from another state folder, as for a swapped card",
            listed(recorded.iter().map(ToString::to_string)),
            listed(recorded.iter().map(ToString::to_string)),
        )),
    })
}

/// What changed from `before` to `now`, for people: `05.0006 came, 04.0006 went`.
pub fn apqn_changes(now: &BTreeSet<Apqn>, before: &BTreeSet<Apqn>) -> String {
    let came: Vec<String> = now.difference(before).map(ToString::to_string).collect();
    let went: Vec<String> = before.difference(now).map(ToString::to_string).collect();
    let mut changes = Vec::new();
    if !came.is_empty() {
        changes.push(format!("{} came", listed(came)));
    }
    if !went.is_empty() {
        changes.push(format!("{} went", listed(went)));
    }
    changes.join(", ")
}

/// The group's master keys are those the open change began with: a type added or
/// retargeted mid-change has stores (an openCryptoki operation's types, a staged copy) that
/// the change did not prepare for it, and a type dropped would be left half set.
fn check_targets_unchanged(
    desired: &DesiredGroup,
    live: &LiveGroup,
    evidence: &GroupEvidence,
) -> Result<(), GroupRefusal> {
    let Some(began) = &evidence.recorded_targets else {
        return Ok(());
    };
    if began == &desired.master_keys {
        return Ok(());
    }
    let words = |targets: &BTreeMap<MkType, Mkvp>| {
        listed(targets.iter().map(|(t, vp)| format!("{t} {vp}")))
    };
    let mut changes = Vec::new();
    for (mk_type, vp) in &desired.master_keys {
        match began.get(mk_type) {
            None => changes.push(format!("{mk_type} added")),
            Some(was) if was != vp => changes.push(format!("{mk_type} retargeted from {was}")),
            Some(_) => {}
        }
    }
    changes.extend(
        began
            .keys()
            .filter(|t| !desired.master_keys.contains_key(t))
            .map(|t| format!("{t} removed")),
    );
    let operations: Vec<String> = live
        .inventory
        .operations
        .iter()
        .filter(|op| op.uses_any(&desired.apqns))
        .map(|op| format!("pkcshsm_mk_change cancel --id {}", op.id))
        .collect();
    let cancel = if operations.is_empty() {
        "pkcshsm_mk_change cancel --id ID".to_string()
    } else {
        listed(operations)
    };
    Err(GroupRefusal {
        check: "targets_unchanged",
        message: format!(
            "the group file's master keys are {} now, but this change began with {} (the journal's first step): {}. A change ends with the keys it began with: its stagings (a pkcshsm_mk_change operation's types, zkey's and the volumes' copies) were made for those",
            words(&desired.master_keys),
            words(began),
            listed(changes)
        ),
        settle: Some(format!(
            "the group file's master_keys back to {} until this change is done (`plan` then says no changes), then the edit as a change of its own; if the open change must be abandoned instead, cancel what it staged ({cancel}, while no APQN is set) and check every store before starting again from another state folder",
            words(began)
        )),
    })
}

fn check_type(
    desired: &DesiredGroup,
    registers: &BTreeMap<Apqn, ApqnRegisters>,
    mk_type: MkType,
    target: &Mkvp,
) -> Result<(), GroupRefusal> {
    let of_type = |a: &Apqn| registers[a].get(&mk_type);
    let unread: Vec<String> = registers
        .keys()
        .filter(|a| of_type(a).is_none_or(|r| r.is_unknown()))
        .map(ToString::to_string)
        .collect();
    if !unread.is_empty() {
        return Err(GroupRefusal {
            check: "registers_readable",
            message: format!(
                "the {mk_type} registers of APQN(s) {} are not shown (the card did not answer, or the kernel does not print {mk_type})",
                listed(unread)
            ),
            settle: Some(format!(
                "their mkvps showing every {mk_type} register (`lszcrypt -c APQN`): rerun when the card answers"
            )),
        });
    }
    let row = |a: &Apqn| {
        let r = of_type(a).expect("read");
        format!("{a} CURRENT {} NEW {}", held(&r.current), new_word(&r.new))
    };
    let no_current: Vec<String> = registers
        .keys()
        .filter(|a| of_type(a).expect("read").current.vp().is_none())
        .map(row)
        .collect();
    if !no_current.is_empty() {
        return Err(refuse(
            "current_mk_set",
            format!("no {mk_type} master key is set on {}", listed(no_current)),
        ));
    }
    let currents: BTreeSet<&Mkvp> = registers
        .keys()
        .filter_map(|a| of_type(a).expect("read").current.vp())
        .collect();
    // Mid-set: the APQNs not yet set hold the target as a ready NEW; with OLD, those set hold
    // the others' CURRENT as OLD.
    let mid_set = currents.len() == 2
        && currents.contains(target)
        && registers.keys().all(|a| {
            let r = of_type(a).expect("read");
            r.current.vp() == Some(target) || r.new == NewMk::Ready(target.clone())
        });
    if currents.len() > 1 && !mid_set {
        return Err(refuse(
            "one_current_mk",
            format!(
                "not all APQNs have the same CURRENT {mk_type} master key: {}",
                listed(registers.keys().map(row))
            ),
        ));
    }
    // NEW registers holding another key than the target are cleared by the plan, when no
    // store has a copy under that key (the loss rule decides); staging waits for every load.
    if desired.procedure == Procedure::SetThenFromOld && mid_set {
        // The APQNs set so far keep the old key in OLD: a second SET would drop it.
        let lost_old: Vec<String> = registers
            .keys()
            .filter(|a| {
                let r = of_type(a).expect("read");
                r.current.vp() == Some(target) && r.old.as_ref().and_then(HeldMk::vp).is_none()
            })
            .map(row)
            .collect();
        if !lost_old.is_empty() {
            return Err(refuse(
                "old_mk_kept",
                format!(
                    "APQN(s) set to {target} show no OLD {mk_type} key: {}",
                    listed(lost_old)
                ),
            ));
        }
    }
    Ok(())
}

fn held(register: &HeldMk) -> String {
    match register {
        HeldMk::Valid(vp) => vp.to_string(),
        HeldMk::Invalid => "invalid".into(),
        HeldMk::Unknown => "unknown".into(),
    }
}

fn new_word(register: &NewMk) -> String {
    match register {
        NewMk::Empty => "empty".into(),
        NewMk::Partial => "partially loaded".into(),
        NewMk::Uncommitted(vp) => format!("uncommitted {vp}"),
        NewMk::Ready(vp) => format!("ready {vp}"),
        NewMk::Unknown => "unknown".into(),
    }
}

fn check_stores(
    desired: &DesiredGroup,
    live: &LiveGroup,
    checked: &Checked,
) -> Result<(), GroupRefusal> {
    let usable = super::effect::usable_apqns(live);
    for store in &live.stores {
        let copies = match &store.state {
            StoreState::Known(copies) => copies,
            StoreState::Unknown { why, settle } => {
                // A set made before the stores were staged: the advice says which APQNs must
                // not be set, where "CURRENT registers agreeing" would mean setting them.
                let early = desired.master_keys.iter().find_map(|(&mk_type, target)| {
                    super::early_set::advice(desired, live, &checked.registers, mk_type, target)
                });
                return Err(GroupRefusal {
                    check: "stores_observable",
                    message: format!("cannot tell which master key {} is under: {why}", store.id),
                    settle: Some(early.unwrap_or_else(|| settle.clone())),
                });
            }
        };
        for (mk_type, copy) in copies {
            let Some(target) = desired.master_keys.get(mk_type) else {
                continue;
            };
            let of_type = || checked.registers.values().filter_map(|r| r.get(mk_type));
            // The registers of the APQNs this store can be used through (a zkey key's
            // associated APQNs): a key under OLD is judged by its own APQNs only.
            let its_own = || {
                checked
                    .registers
                    .iter()
                    .filter(|(apqn, _)| usable.get(&store.id).is_none_or(|a| a.contains(apqn)))
                    .filter_map(|(_, r)| r.get(mk_type))
            };
            if let Some(staged) = &copy.staged
                && staged != target
            {
                let staged_is_current = of_type().any(|r| r.current.vp() == Some(staged));
                return Err(refuse(
                    "no_earlier_staged_stores",
                    format!(
                        "{} has a copy staged under {staged}, not under this change's {target} (left by an earlier change, or staged outside this one): {}",
                        store.id,
                        super::advice::earlier_staged(store, staged_is_current)
                    ),
                ));
            }
            // A CCA key under OLD while CURRENT is not this change's key: an earlier change
            // is unfinished, and this one's SET would drop OLD.
            let in_old = |r: &crate::model::registers::TypeRegisters| {
                r.old.as_ref().and_then(HeldMk::vp) == Some(&copy.active)
            };
            let under_old_only =
                !its_own().any(|r| r.current.vp() == Some(&copy.active)) && its_own().any(in_old);
            // This change's own OLD only where every APQN whose OLD holds the store's key
            // has this change's key as CURRENT: one set to another key (by hand, by another
            // team) drops it at its next SET (round 14z, F1: an application key, whose APQNs
            // mkplan cannot know, counted 05's OLD while 06 was set to another key).
            let ours = its_own()
                .filter(|r| in_old(r))
                .all(|r| r.current.vp() == Some(target));
            if under_old_only && !ours {
                return Err(refuse(
                    "keys_under_old",
                    format!(
                        "{} is still under the OLD {mk_type} master key {} from an earlier change: re-encipher it from OLD ({}) before a second change",
                        store.id,
                        copy.active,
                        from_old_command(&store.id)
                    ),
                ));
            }
        }
    }
    let lost = losses_where(&checked.registers, &live.stores, &usable);
    if !lost.is_empty() {
        return Err(refuse(
            "keys_recoverable",
            format!(
                "no register of the group holds the master key of: {}; mkplan will not plan around lost keys",
                listed(lost.iter().map(ToString::to_string))
            ),
        ));
    }
    Ok(())
}

/// The command that moves `store` from OLD to CURRENT (round 13z, F2: `zkey reencipher`
/// was named for every kind of store, and it never touches a LUKS2 header).
fn from_old_command(store: &crate::model::domain_group::StoreId) -> String {
    use crate::model::domain_group::StoreKind;
    if let Some(tool) = from_old_tool(store) {
        return format!("`{tool}`");
    }
    match store.kind {
        StoreKind::OpenCryptoki => "offline, `pkcscca -m keys`".into(),
        _ => "with the application's own re-encipher command".into(),
    }
}

/// The zkey command that moves a zkey key or a LUKS2 volume from OLD, for the others none.
fn from_old_tool(store: &crate::model::domain_group::StoreId) -> Option<String> {
    use crate::model::domain_group::StoreKind;
    match store.kind {
        StoreKind::ZkeyKey => Some(format!("zkey reencipher --from-old --name {}", store.name)),
        StoreKind::Luks2Volume => Some(format!(
            "zkey-cryptsetup reencipher {} --from-old --key-file KEY-FILE",
            store.name
        )),
        _ => None,
    }
}

/// Plays the plan over the live state, step by step, and refuses if any step would leave a
/// store under a key no register holds.
pub(super) fn check_loss_rule(
    desired: &DesiredGroup,
    live: &LiveGroup,
    plan: &GroupPlan,
) -> Result<(), GroupRefusal> {
    let mut world = effect::World::from_live(desired, live);
    for step in &plan.steps {
        world.perform(step, desired);
        let lost = world.losses();
        if !lost.is_empty() {
            let fixes: Vec<String> = lost
                .iter()
                .filter_map(|loss| from_old_fix(live, &desired.apqns, step, loss))
                .collect();
            return Err(GroupRefusal {
                check: "loss_rule",
                message: format!(
                    "step {} ({}) would lose keys: {}",
                    step.id,
                    step.action,
                    listed(lost.iter().map(ToString::to_string))
                ),
                settle: (!fixes.is_empty()).then(|| fixes.join("; ")),
            });
        }
    }
    Ok(())
}

/// The way out of a loss the plan's step would cause, when there is one: a CCA zkey key or
/// LUKS2 volume still under a key some APQN of the group holds as OLD moves from OLD to
/// that APQN's CURRENT with zkey's own command, which picks that APQN (repro10z M1).
fn from_old_fix(
    live: &LiveGroup,
    group: &[Apqn],
    step: &super::GroupStep,
    loss: &crate::model::loss::Loss,
) -> Option<String> {
    let active = loss.under.first()?;
    let through: Vec<String> = live
        .apqns
        .iter()
        .filter(|a| group.contains(&a.apqn))
        .filter(|a| {
            a.registers
                .as_ref()
                .and_then(|r| r.get(&loss.mk_type))
                .is_some_and(|r| {
                    r.old.as_ref().and_then(HeldMk::vp) == Some(active) && r.current.vp().is_some()
                })
        })
        .map(|a| a.apqn.to_string())
        .collect();
    if through.is_empty() {
        return None;
    }
    let command = from_old_tool(&loss.store)?;
    Some(format!(
        "{} moved from OLD before step {}: `{command}` (zkey moves it through {}, whose OLD still holds {active})",
        loss.store,
        step.id,
        listed(through)
    ))
}
