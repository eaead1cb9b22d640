//! The domain group scenario table (EP11 and CCA, fresh and every mid state, every refusal).
//! `tests_reachable` holds the property that no plan from a reachable state ever breaks the
//! loss rule.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::model::domain_group::{KeyCopies, LiveApqn, LiveStore, StoreKind};
use crate::model::domain_group_desired::DesiredStore;
use crate::model::registers::{HeldMk, TypeRegisters};

pub(crate) fn vp(mk_type: MkType, c: char) -> Mkvp {
    Mkvp::parse(mk_type, &c.to_string().repeat(mk_type.compared_hex_len())).unwrap()
}

pub(crate) fn desired(mode: GroupMode, apqns: usize, procedure: Procedure) -> DesiredGroup {
    let types: &[MkType] = match mode {
        GroupMode::Ep11 => &[MkType::Wk],
        GroupMode::Cca => &[MkType::Aes],
    };
    DesiredGroup {
        name: "g".into(),
        backend: None,
        backend_at: None,
        apqns: (0..apqns)
            .map(|i| Apqn {
                card: 3 + i as u8,
                domain: 6,
            })
            .collect(),
        selector: None,
        selection: None,
        mode,
        procedure,
        master_keys: types.iter().map(|t| (*t, vp(*t, 'b'))).collect(),
        zkey_repository: PathBuf::from("/r"),
        opencryptoki_config: "/etc/opencryptoki".into(),
        stores: vec![DesiredStore::ZkeyAssociated],
        user_pins: Default::default(),
        cca_token_asym_keys_none: false,
    }
}

pub(super) fn registers(
    mode: GroupMode,
    current: char,
    new: NewMk,
    old: Option<char>,
) -> ApqnRegisters {
    let mk_type = if mode == GroupMode::Ep11 {
        MkType::Wk
    } else {
        MkType::Aes
    };
    let held = |c: Option<char>| c.map_or(HeldMk::Invalid, |c| HeldMk::Valid(vp(mk_type, c)));
    BTreeMap::from([(
        mk_type,
        TypeRegisters {
            new,
            current: held(Some(current)),
            old: (mode == GroupMode::Cca).then(|| held(old)),
        },
    )])
}

use crate::model::registers::ApqnRegisters;

pub(super) fn live(
    desired: &DesiredGroup,
    each: impl Fn(usize) -> ApqnRegisters,
    stores: &[(char, Option<char>)],
) -> LiveGroup {
    let mk_type = *desired.master_keys.keys().next().unwrap();
    LiveGroup {
        apqns: desired
            .apqns
            .iter()
            .enumerate()
            .map(|(i, apqn)| LiveApqn {
                apqn: *apqn,
                usable: true,
                mode: Some(desired.mode),
                card_serial: Some(format!("SERIAL{i}")),
                registers: Some(each(i)),
            })
            .collect(),
        stores: stores
            .iter()
            .enumerate()
            .map(|(i, (active, staged))| LiveStore {
                id: StoreId {
                    kind: StoreKind::ZkeyKey,
                    name: format!("key{i}"),
                },
                state: StoreState::Known(BTreeMap::from([(
                    mk_type,
                    KeyCopies {
                        active: vp(mk_type, *active),
                        staged: staged.map(|c| vp(mk_type, c)),
                    },
                )])),
                handle: None,
            })
            .collect(),
        inventory: Default::default(),
    }
}

pub(super) fn actions(plan: &GroupPlan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| match (&s.apqn, &s.store) {
            (Some(a), _) => format!("{} {a}", s.action),
            (None, Some(store)) => format!("{} {}", s.action, store.name),
            _ => s.action.to_string(),
        })
        .collect()
}

pub(super) fn ready(mode: GroupMode, c: char) -> NewMk {
    let t = if mode == GroupMode::Ep11 {
        MkType::Wk
    } else {
        MkType::Aes
    };
    NewMk::Ready(vp(t, c))
}

pub(super) const EP11: GroupMode = GroupMode::Ep11;
pub(super) const CCA: GroupMode = GroupMode::Cca;
pub(super) const STAGED: Procedure = Procedure::ReencipherThenSet;
pub(super) const FROM_OLD: Procedure = Procedure::SetThenFromOld;

#[test]
fn fresh_ep11_loads_commits_stages_sets_then_completes() {
    let d = desired(EP11, 2, STAGED);
    let l = live(
        &d,
        |_| registers(EP11, 'a', NewMk::Empty, None),
        &[('a', None), ('a', None)],
    );
    let plan = plan_group(&d, &l, &GroupEvidence::default()).unwrap();
    assert_eq!(
        actions(&plan),
        [
            "load_new_mk 03.0006",
            "commit_new_mk 03.0006",
            "load_new_mk 04.0006",
            "commit_new_mk 04.0006",
            "stage_reencipher key0",
            "stage_reencipher key1",
            "set_immediate 03.0006",
            "set_immediate 04.0006",
            "complete_reencipher key0",
            "complete_reencipher key1",
        ]
    );
    let set = &plan.steps[6];
    assert_eq!(set.depends_on, ["z1", "z2", "z5", "z6"]);
    assert!(set.ceremony && !plan.steps[4].ceremony);
    assert_eq!(plan.steps[8].depends_on, ["z7", "z8", "z5"]);
}

#[test]
fn fresh_cca_staged_has_no_commit_and_from_old_sets_first() {
    let d = desired(CCA, 2, STAGED);
    let l = live(
        &d,
        |_| registers(CCA, 'a', NewMk::Empty, None),
        &[('a', None)],
    );
    let plan = plan_group(&d, &l, &GroupEvidence::default()).unwrap();
    assert_eq!(
        actions(&plan),
        [
            "load_new_mk 03.0006",
            "load_new_mk 04.0006",
            "stage_reencipher key0",
            "set_immediate 03.0006",
            "set_immediate 04.0006",
            "complete_reencipher key0"
        ]
    );
    let d = desired(CCA, 2, FROM_OLD);
    let plan = plan_group(&d, &l, &GroupEvidence::default()).unwrap();
    assert_eq!(
        actions(&plan),
        [
            "load_new_mk 03.0006",
            "load_new_mk 04.0006",
            "set_immediate 03.0006",
            "set_immediate 04.0006",
            "reencipher_from_old key0"
        ]
    );
}

#[test]
fn mid_states_plan_only_what_remains() {
    let d = desired(EP11, 3, STAGED);
    // Some stores staged, some not; one APQN uncommitted, one empty.
    let l = live(
        &d,
        |i| match i {
            0 => registers(EP11, 'a', ready(EP11, 'b'), None),
            1 => registers(EP11, 'a', NewMk::Uncommitted(vp(MkType::Wk, 'b')), None),
            _ => registers(EP11, 'a', NewMk::Empty, None),
        },
        &[('a', Some('b')), ('a', None)],
    );
    let plan = plan_group(&d, &l, &GroupEvidence::default()).unwrap();
    assert_eq!(
        actions(&plan),
        [
            "commit_new_mk 04.0006",
            "load_new_mk 05.0006",
            "commit_new_mk 05.0006",
            "stage_reencipher key1",
            "set_immediate 03.0006",
            "set_immediate 04.0006",
            "set_immediate 05.0006",
            "complete_reencipher key0",
            "complete_reencipher key1",
        ]
    );
    // NEW set on some APQNs only, every store staged: the remaining sets, then completes.
    let l = live(
        &d,
        |i| {
            if i == 0 {
                registers(EP11, 'b', NewMk::Empty, None)
            } else {
                registers(EP11, 'a', ready(EP11, 'b'), None)
            }
        },
        &[('a', Some('b')), ('b', None)],
    );
    let plan = plan_group(&d, &l, &GroupEvidence::default()).unwrap();
    assert_eq!(
        actions(&plan),
        [
            "set_immediate 04.0006",
            "set_immediate 05.0006",
            "complete_reencipher key0"
        ]
    );
    // Done.
    let l = live(
        &d,
        |_| registers(EP11, 'b', NewMk::Empty, None),
        &[('b', None)],
    );
    assert!(
        !plan_group(&d, &l, &GroupEvidence::default())
            .unwrap()
            .has_changes()
    );
}

#[test]
fn cca_from_old_mid_state_moves_the_stores_after_the_last_set() {
    let d = desired(CCA, 2, FROM_OLD);
    let l = live(
        &d,
        |i| {
            if i == 0 {
                registers(CCA, 'b', NewMk::Empty, Some('a'))
            } else {
                registers(CCA, 'a', ready(CCA, 'b'), Some('d'))
            }
        },
        &[('a', None), ('b', None)],
    );
    let plan = plan_group(&d, &l, &GroupEvidence::default()).unwrap();
    assert_eq!(
        actions(&plan),
        ["set_immediate 04.0006", "reencipher_from_old key0"]
    );
    // A staged group where every APQN is set but one store never staged: from OLD instead.
    let d = desired(CCA, 2, STAGED);
    let l = live(
        &d,
        |_| registers(CCA, 'b', NewMk::Empty, Some('a')),
        &[('a', None), ('a', Some('b'))],
    );
    let plan = plan_group(&d, &l, &GroupEvidence::default()).unwrap();
    assert_eq!(
        actions(&plan),
        ["reencipher_from_old key0", "complete_reencipher key1"]
    );
}

pub(super) fn refusal(d: &DesiredGroup, l: &LiveGroup, evidence: &GroupEvidence) -> GroupRefusal {
    plan_group(d, l, evidence).expect_err("refused")
}

#[test]
fn every_refusal_names_its_check_and_what_it_saw() {
    let d = desired(EP11, 2, STAGED);
    let fresh = live(
        &d,
        |_| registers(EP11, 'a', NewMk::Empty, None),
        &[('a', None)],
    );
    let none = GroupEvidence::default();

    let mut offline = fresh.clone();
    offline.apqns[1].usable = false;
    let r = refusal(&d, &offline, &none);
    assert_eq!(
        (r.check, r.message.contains("04.0006")),
        ("apqns_online", true),
        "{r}"
    );

    let mut missing = fresh.clone();
    missing.apqns.pop();
    assert_eq!(refusal(&d, &missing, &none).check, "apqns_present");

    let mut cca = fresh.clone();
    cca.apqns[0].mode = Some(CCA);
    assert_eq!(refusal(&d, &cca, &none).check, "same_mode");

    let swapped = GroupEvidence {
        recorded_serials: Some(BTreeMap::from([(3, "SERIAL0".into()), (4, "OTHER".into())])),
        ..GroupEvidence::default()
    };
    let r = refusal(&d, &fresh, &swapped);
    assert_eq!(r.check, "card_serial_numbers");
    assert!(
        r.message.contains("card 04 was serial OTHER, now SERIAL1"),
        "{r}"
    );
    assert!(r.settle.is_some());

    // The open change began on 03.0006 and 05.0006: 04.0006 came, 05.0006 went.
    let moved = GroupEvidence {
        recorded_apqns: Some(
            ["03.0006", "05.0006"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect(),
        ),
        ..GroupEvidence::default()
    };
    let r = refusal(&d, &fresh, &moved);
    assert_eq!(r.check, "apqns_unchanged", "{r}");
    assert!(
        r.message.contains("04.0006 came, 05.0006 went") && r.settle.is_some(),
        "{r}"
    );
    let mut unselected = d.clone();
    unselected.apqns.clear();
    assert_eq!(refusal(&unselected, &fresh, &none).check, "apqn_selector");

    let mixed = live(
        &d,
        |i| registers(EP11, if i == 0 { 'a' } else { 'c' }, NewMk::Empty, None),
        &[('a', None)],
    );
    let r = refusal(&d, &mixed, &none);
    assert_eq!(r.check, "one_current_mk");
    assert!(
        r.message.contains("03.0006 CURRENT aaaa") && r.message.contains("04.0006 CURRENT cccc"),
        "{r}"
    );

    let two_new = live(
        &d,
        |i| registers(EP11, 'a', ready(EP11, if i == 0 { 'b' } else { 'c' }), None),
        &[('a', None)],
    );
    let plan = plan_group(&d, &two_new, &none).unwrap();
    assert_eq!(
        actions(&plan)[..3],
        [
            "clear_new_mk 04.0006",
            "load_new_mk 04.0006",
            "commit_new_mk 04.0006"
        ]
    );

    let stale = live(
        &d,
        |_| registers(EP11, 'a', NewMk::Empty, None),
        &[('a', Some('c'))],
    );
    assert_eq!(refusal(&d, &stale, &none).check, "no_earlier_staged_stores");

    let lost = live(
        &d,
        |_| registers(EP11, 'a', NewMk::Empty, None),
        &[('c', None)],
    );
    assert_eq!(refusal(&d, &lost, &none).check, "keys_recoverable");

    let mut unknown = fresh.clone();
    unknown.stores[0].state = StoreState::Unknown {
        why: "zkey failed".into(),
        settle: "zkey validate".into(),
    };
    let r = refusal(&d, &unknown, &none);
    assert_eq!(
        (r.check, r.settle.as_deref()),
        ("stores_observable", Some("zkey validate"))
    );

    let mut unread = fresh.clone();
    unread.apqns[0]
        .registers
        .as_mut()
        .unwrap()
        .get_mut(&MkType::Wk)
        .unwrap()
        .current = HeldMk::Unknown;
    assert_eq!(refusal(&d, &unread, &none).check, "registers_readable");

    let cca_d = desired(CCA, 2, STAGED);
    let under_old = live(
        &cca_d,
        |_| registers(CCA, 'a', NewMk::Empty, Some('d')),
        &[('d', None)],
    );
    assert_eq!(refusal(&cca_d, &under_old, &none).check, "keys_under_old");

    let mut no_old = live(
        &desired(CCA, 2, FROM_OLD),
        |i| {
            if i == 0 {
                registers(CCA, 'b', NewMk::Empty, None)
            } else {
                registers(CCA, 'a', ready(CCA, 'b'), None)
            }
        },
        &[('b', None)],
    );
    no_old.stores.clear();
    assert_eq!(
        refusal(&desired(CCA, 2, FROM_OLD), &no_old, &none).check,
        "old_mk_kept"
    );
}

#[test]
fn a_foreign_new_key_is_cleared_only_when_no_store_needs_it() {
    let d = desired(EP11, 1, STAGED);
    let l = live(
        &d,
        |_| registers(EP11, 'a', ready(EP11, 'c'), None),
        &[('a', None)],
    );
    let plan = plan_group(&d, &l, &GroupEvidence::default()).unwrap();
    assert_eq!(
        actions(&plan)[..3],
        [
            "clear_new_mk 03.0006",
            "load_new_mk 03.0006",
            "commit_new_mk 03.0006"
        ]
    );
    // A key re-enciphered in place under that NEW key: clearing it loses the key.
    let l = live(
        &d,
        |_| registers(EP11, 'a', ready(EP11, 'c'), None),
        &[('c', None)],
    );
    let r = refusal(&d, &l, &GroupEvidence::default());
    assert_eq!(r.check, "loss_rule", "{r}");
}
