//! The planner for a domain group (zcrypt.md §5): from the desired master keys and what the
//! machine shows (registers per APQN and type, each store's copies), the steps that remain.
//!
//! - Ceremony steps, which Linux cannot do (EP11 load/commit/finalize through the TKE; CCA
//!   through the TKE or `panel.exe`, one card at a time): `load_new_mk`, `commit_new_mk`,
//!   `clear_new_mk`, `set_immediate`, one per APQN and type. mkplan shows them, waits, and
//!   verifies them in `mkvps`.
//! - Tool steps, which mkplan runs: `stage_reencipher` (every store's copy under NEW),
//!   `complete_reencipher` (after the set), `reencipher_from_old` (CCA, after the set).
//!
//! Re-encipher-then-set: load → stage every store → set every APQN → complete every store.
//! Set-then-from-old (CCA): load → set every APQN → every store from OLD. Each store's state
//! is observable, so a plan from any mid state is the remainder: nothing is assumed done.
//! Before a plan is returned it is played over the live state ([`effect`]) and checked
//! against the loss rule after every step.

mod advice;
mod early_set;
pub mod effect;
mod inventory;
mod precheck;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_reachable;
mod token_apqns;
pub mod tokens_closed;

use std::collections::BTreeMap;
use std::fmt;

use crate::model::domain_group::{Apqn, GroupMode, LiveGroup, StoreId, StoreState};
use crate::model::domain_group_desired::{DesiredGroup, Procedure};
use crate::model::domain_group_selector::ApqnSelection;
use crate::model::registers::{MkType, Mkvp, NewMk};
use crate::plan::rotation;

pub use precheck::{GroupRefusal, apqn_changes};

/// What a step does, in the words the plan shows (`as_str`), JSON and text alike.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum GroupAction {
    ClearNewMk,
    LoadNewMk,
    CommitNewMk,
    StageReencipher,
    SetImmediate,
    CompleteReencipher,
    ReencipherFromOld,
}

impl GroupAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClearNewMk => "clear_new_mk",
            Self::LoadNewMk => "load_new_mk",
            Self::CommitNewMk => "commit_new_mk",
            Self::StageReencipher => "stage_reencipher",
            Self::SetImmediate => "set_immediate",
            Self::CompleteReencipher => "complete_reencipher",
            Self::ReencipherFromOld => "reencipher_from_old",
        }
    }

    /// Performed by the operator (TKE, `panel.exe`), verified in `mkvps`.
    pub fn is_ceremony(self) -> bool {
        matches!(
            self,
            Self::ClearNewMk | Self::LoadNewMk | Self::CommitNewMk | Self::SetImmediate
        )
    }
}

impl fmt::Display for GroupAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a domain group's plan.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupStep {
    pub id: String,
    pub action: GroupAction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apqn: Option<Apqn>,
    /// The types a register step touches (one), or a store step moves (those it uses).
    pub mk_types: Vec<MkType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreId>,
    /// The verification pattern the step ends at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_pattern: Option<Mkvp>,
    pub depends_on: Vec<String>,
    pub ceremony: bool,
    pub description: String,
}

/// A domain group's plan: the steps in an order that respects `depends_on`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupPlan {
    pub domain_group: String,
    pub mode: GroupMode,
    pub procedure: Procedure,
    /// The group's APQNs, as listed or as the selector resolved them.
    #[serde(default)]
    pub apqns: Vec<Apqn>,
    /// What the selector resolved to, when the group file selects its APQNs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apqn_selection: Option<ApqnSelection>,
    pub steps: Vec<GroupStep>,
}

impl GroupPlan {
    pub fn procedure_words(&self) -> &'static str {
        match self.procedure {
            Procedure::ReencipherThenSet => "re-encipher, then set",
            Procedure::SetThenFromOld => "set, then re-encipher from OLD",
        }
    }

    /// The group's APQNs for people, with how a selector chose them: `APQNs: 03.0006,
    /// 04.0006 (selected by …; passed over: …)`.
    pub fn apqns_words(&self) -> String {
        let listed: Vec<String> = self.apqns.iter().map(ToString::to_string).collect();
        let mut text = format!("APQNs: {}", listed.join(", "));
        if let Some(selection) = &self.apqn_selection {
            text.push_str(&format!(" ({})", selection.describe(self.mode)));
        }
        text
    }

    pub fn has_changes(&self) -> bool {
        !self.steps.is_empty()
    }

    /// The steps whose dependencies are all outside the plan: what can run now.
    pub fn ready(&self) -> impl Iterator<Item = &GroupStep> {
        self.steps.iter().filter(|s| s.depends_on.is_empty())
    }
}

impl serde::Serialize for Apqn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What the planner needs besides the desired state and the live group, from the journal of
/// the open change: the serial numbers recorded at its first step, card by card, its APQNs and
/// master keys, and whether it relied on an openCryptoki operation.
#[derive(Clone, Debug, Default)]
pub struct GroupEvidence {
    pub recorded_serials: Option<BTreeMap<u8, String>>,
    /// The group's APQNs recorded when the open change began (`None`: no change open, or
    /// one begun by an mkplan that did not record them).
    pub recorded_apqns: Option<std::collections::BTreeSet<Apqn>>,
    /// The master keys the open change began with (`None`: no change open).
    pub recorded_targets: Option<BTreeMap<MkType, Mkvp>>,
    /// The open change relied on an openCryptoki operation that the journal does not show
    /// closed by mkplan's finalize or by the operator's word (`tokens_closed`).
    pub tokens_operation: Option<tokens_closed::ReliedOperation>,
}

/// Plans the remaining steps, or refuses naming the check.
pub fn plan_group(
    desired: &DesiredGroup,
    live: &LiveGroup,
    evidence: &GroupEvidence,
) -> Result<GroupPlan, GroupRefusal> {
    let mut settled = live.clone();
    tokens_closed::settle_closed_operation(&mut settled, desired, evidence);
    let live = &settled;
    let checked = precheck::check(desired, live, evidence)?;
    let mut builder = Builder::default();
    for (&mk_type, target) in &desired.master_keys {
        builder.registers_before_set(desired, &checked, mk_type, target);
    }
    match desired.procedure {
        Procedure::ReencipherThenSet => {
            builder.stage_stores(desired, live, &checked);
            builder.set_all(desired, &checked, &[GroupAction::StageReencipher]);
            builder.complete_stores(desired, live);
        }
        Procedure::SetThenFromOld => {
            builder.set_all(desired, &checked, &[]);
            builder.complete_stores(desired, live);
        }
    }
    let plan = GroupPlan {
        domain_group: desired.name.clone(),
        mode: desired.mode,
        procedure: desired.procedure,
        apqns: desired.apqns.clone(),
        apqn_selection: desired.selection.clone(),
        steps: builder.steps,
    };
    precheck::check_loss_rule(desired, live, &plan)?;
    Ok(plan)
}

#[derive(Default)]
struct Builder {
    steps: Vec<GroupStep>,
}

impl Builder {
    fn push(&mut self, mut step: GroupStep) -> String {
        let id = format!("z{}", self.steps.len() + 1);
        step.id = id.clone();
        step.ceremony = step.action.is_ceremony();
        self.steps.push(step);
        id
    }

    fn ids(&self, wanted: impl Fn(&GroupStep) -> bool) -> Vec<String> {
        self.steps
            .iter()
            .filter(|s| wanted(s))
            .map(|s| s.id.clone())
            .collect()
    }

    fn register_step(
        &mut self,
        action: GroupAction,
        apqn: Apqn,
        mk_type: MkType,
        vp: Option<&Mkvp>,
        depends_on: Vec<String>,
        description: String,
    ) -> String {
        self.push(GroupStep {
            id: String::new(),
            action,
            apqn: Some(apqn),
            mk_types: vec![mk_type],
            store: None,
            verification_pattern: vp.cloned(),
            depends_on,
            ceremony: true,
            description,
        })
    }

    /// Clear, load and commit on every APQN not yet set to `target`.
    fn registers_before_set(
        &mut self,
        desired: &DesiredGroup,
        checked: &precheck::Checked,
        mk_type: MkType,
        target: &Mkvp,
    ) {
        let ep11 = desired.mode == GroupMode::Ep11;
        let rules = register_rules(desired.mode);
        for (&apqn, registers) in &checked.registers {
            let Some(registers) = registers.get(&mk_type) else {
                continue;
            };
            let work = rotation::register_steps(registers, target, rules);
            let new = &registers.new;
            let mut after: Vec<String> = Vec::new();
            if work.clear {
                after = vec![self.register_step(
                    GroupAction::ClearNewMk,
                    apqn,
                    mk_type,
                    None,
                    vec![],
                    format!("clear {apqn}'s {mk_type} NEW register, which holds {}, not the desired key", new.vp().expect("a foreign key")),
                )];
            }
            if work.load {
                let how = if ep11 {
                    "import the key parts with the TKE"
                } else if *new == NewMk::Partial {
                    "load the remaining key parts (MIDDLE/LAST) with the TKE or panel.exe on this card"
                } else {
                    "load the key parts (FIRST … LAST) with the TKE or panel.exe on this card"
                };
                after = vec![self.register_step(
                    GroupAction::LoadNewMk,
                    apqn,
                    mk_type,
                    Some(target),
                    after,
                    format!("load {target} into {apqn}'s {mk_type} NEW register: {how}"),
                )];
            }
            if work.commit {
                self.register_step(
                    GroupAction::CommitNewMk,
                    apqn,
                    mk_type,
                    Some(target),
                    after,
                    format!("commit {apqn}'s WK NEW register ({target}) with the TKE"),
                );
            }
        }
    }

    /// A staged copy under NEW for every store not yet under the target nor staged under it.
    /// A store under a key that is no APQN's CURRENT any more (CCA: only OLD holds it) is not
    /// staged: zkey finds no APQN to re-encipher it with; it moves from OLD after the set.
    fn stage_stores(
        &mut self,
        desired: &DesiredGroup,
        live: &LiveGroup,
        checked: &precheck::Checked,
    ) {
        for store in &live.stores {
            let StoreState::Known(copies) = &store.state else {
                continue;
            };
            let moving: Vec<MkType> = copies
                .iter()
                .filter(|(t, c)| {
                    desired.master_keys.get(t).is_some_and(|target| {
                        rotation::moves_before_set(
                            c,
                            target,
                            checked.is_some_current(**t, &c.active),
                        )
                    })
                })
                .map(|(t, _)| *t)
                .collect();
            if moving.is_empty() {
                continue;
            }
            let depends_on =
                self.ids(|s| s.apqn.is_some() && s.mk_types.iter().any(|t| moving.contains(t)));
            let description = format!("re-encipher {} under the NEW master key, staged", store.id);
            self.push(GroupStep {
                id: String::new(),
                action: GroupAction::StageReencipher,
                apqn: None,
                verification_pattern: single_target(desired, &moving),
                mk_types: moving,
                store: Some(store.id.clone()),
                depends_on,
                ceremony: false,
                description,
            });
        }
    }

    /// Set on every APQN whose CURRENT is not the target, after its own load and commit and
    /// after every step of `after_all` of that type.
    fn set_all(
        &mut self,
        desired: &DesiredGroup,
        checked: &precheck::Checked,
        after_all: &[GroupAction],
    ) {
        for (&mk_type, target) in &desired.master_keys {
            let before_any =
                self.ids(|s| after_all.contains(&s.action) && s.mk_types.contains(&mk_type));
            for (&apqn, registers) in &checked.registers {
                let Some(registers) = registers.get(&mk_type) else {
                    continue;
                };
                if !rotation::register_steps(registers, target, register_rules(desired.mode)).set {
                    continue;
                }
                let mut depends_on = self.ids(|s| s.apqn == Some(apqn) && s.mk_types == [mk_type]);
                depends_on.extend(before_any.iter().cloned());
                let what = match desired.mode {
                    GroupMode::Ep11 => {
                        "finalize the WK with the TKE: CURRENT = NEW, the old WK is gone"
                    }
                    GroupMode::Cca => {
                        "SET with the TKE or panel.exe on this card: CURRENT moves to OLD, NEW becomes CURRENT"
                    }
                };
                self.register_step(
                    GroupAction::SetImmediate,
                    apqn,
                    mk_type,
                    Some(target),
                    depends_on,
                    format!("set {target} as {apqn}'s CURRENT {mk_type} master key: {what}"),
                );
            }
        }
    }

    /// After every set of its types: complete a staged copy, or re-encipher from OLD.
    fn complete_stores(&mut self, desired: &DesiredGroup, live: &LiveGroup) {
        for store in &live.stores {
            let StoreState::Known(copies) = &store.state else {
                continue;
            };
            let staging = self.steps.iter().any(|s| {
                s.action == GroupAction::StageReencipher && s.store.as_ref() == Some(&store.id)
            });
            let types: Vec<MkType> = copies
                .iter()
                .filter(|(t, c)| {
                    desired
                        .master_keys
                        .get(t)
                        .is_some_and(|target| rotation::moves_after_set(c, target, staging))
                })
                .map(|(t, _)| *t)
                .collect();
            if types.is_empty() {
                continue;
            }
            let has_staged = staging || copies.values().any(|c| c.staged.is_some());
            let action = if has_staged {
                GroupAction::CompleteReencipher
            } else {
                GroupAction::ReencipherFromOld
            };
            let mut depends_on = self.ids(|s| {
                s.action == GroupAction::SetImmediate
                    && s.mk_types.iter().any(|t| types.contains(t))
            });
            depends_on.extend(self.ids(|s| {
                s.action == GroupAction::StageReencipher && s.store.as_ref() == Some(&store.id)
            }));
            let description = match action {
                GroupAction::CompleteReencipher
                    if store.id.kind == crate::model::domain_group::StoreKind::OpenCryptoki =>
                {
                    format!(
                        "finalize the re-encipherment of {} (pkcshsm_mk_change finalize): first set EXPECTED_WKVP / EXPECTED_MKVPS in the token configs to the new key",
                        store.id
                    )
                }
                GroupAction::CompleteReencipher => {
                    format!("complete the staged re-encipherment of {}", store.id)
                }
                _ => format!(
                    "re-encipher {} from the OLD to the CURRENT master key",
                    store.id
                ),
            };
            self.push(GroupStep {
                id: String::new(),
                action,
                apqn: None,
                verification_pattern: single_target(desired, &types),
                mk_types: types,
                store: Some(store.id.clone()),
                depends_on,
                ceremony: false,
                description,
            });
        }
    }
}

/// EP11 commits a loaded NEW register before the set, CCA does not; neither asks for NEW to be
/// empty once CURRENT holds the target.
fn register_rules(mode: GroupMode) -> rotation::RegisterRules {
    rotation::RegisterRules {
        commit: mode == GroupMode::Ep11,
        done_with_new_empty: false,
    }
}

fn single_target(desired: &DesiredGroup, types: &[MkType]) -> Option<Mkvp> {
    match types {
        [one] => desired.master_keys.get(one).cloned(),
        _ => None,
    }
}
