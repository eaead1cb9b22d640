//! The planner: desired state + live state + journal evidence → a checked step graph.
//!
//! Pure: no I/O, no clock. For each service instance it runs the pre-checks
//! (`precheck`), finds which MK the key storage is under (`evidence`), drafts the steps
//! (`diff`), numbers them into one graph (`graph`), and replays them on a copy of the live
//! state (`replay`) before returning the plan (`artifact`). Any refusal anywhere refuses the
//! whole plan: an operator acts on all instances of a change window or on none.

mod artifact;
pub mod ceremony;
mod diff;
pub mod domain_group;
mod evidence;
mod graph;
pub mod other_stores;
mod precheck;
mod refusal;
mod replay;
pub mod rotation;
mod step;

pub use artifact::{
    CeremonyNeeds, InstancePlan, PLAN_FILE_BYTES_MAX, PLAN_FORMAT_VERSION, Plan, Registers,
    UnitChange,
};
pub use evidence::{StorageFinding, common_current, registers_fit, rewrap_ruled_out};
pub use graph::StepGraph;
pub use refusal::{Check, PlanRefused, Refusal, UnitValue};
pub use step::{Action, Step, by_instance, effect};

use std::collections::HashMap;

use diff::Draft;

use crate::model::{
    CryptoUnit, DesiredInstance, DesiredState, JournalEvidence, LiveFleet, LiveInstance,
};

pub fn plan(
    desired: &DesiredState,
    desired_sha256: &str,
    live: &LiveFleet,
    journal: &JournalEvidence,
) -> Result<Plan, PlanRefused> {
    let mut refusals = Vec::new();
    let mut steps = Vec::new();
    let mut instances = Vec::new();
    let live_by_id: HashMap<&str, &LiveInstance> =
        live.instances.iter().map(|i| (i.id.as_str(), i)).collect();
    for wanted in &desired.instances {
        let Some(found) = live_by_id.get(wanted.id.as_str()).copied() else {
            refusals.push(
                Refusal::new(
                    &wanted.id,
                    Check::Selection,
                    "the backend did not report this service instance",
                )
                .fix("check the instance id in the desired file and the backend"),
            );
            continue;
        };
        match plan_instance(wanted, found, journal, steps.len()) {
            Ok((instance, instance_steps)) => {
                instances.push(instance);
                steps.extend(instance_steps);
            }
            Err(mut refused) => refusals.append(&mut refused),
        }
    }
    if !refusals.is_empty() {
        return Err(PlanRefused { refusals });
    }
    let graph = StepGraph::new(&steps).expect("the planner builds an acyclic graph of known ids");
    // Each step moves once into its place in the order (10,000 of them at 1,000 instances).
    let mut numbered: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    let ordered: Vec<Step> = graph
        .order()
        .into_iter()
        .map(|i| numbered[i].take().expect("the order names each step once"))
        .collect();
    let mut by_instance = step::by_instance(&ordered);
    for instance in &instances {
        let of_instance = by_instance.remove(instance.id.as_str()).unwrap_or_default();
        let found = live_by_id[instance.id.as_str()];
        if let Err(why) = replay::replay(
            found,
            &instance.key_storage_under,
            &instance.target_verification_pattern,
            &of_instance,
        ) {
            refusals.push(
                Refusal::new(&instance.id, Check::PlanReplay, format!("mkplan's replay of its own plan failed: {why}"))
                    .fix("this is a bug in mkplan: nothing was touched; please report it with the output of `mkplan status --json`"),
            );
        }
    }
    if !refusals.is_empty() {
        return Err(PlanRefused { refusals });
    }
    Ok(Plan {
        format_version: PLAN_FORMAT_VERSION.into(),
        desired_sha256: desired_sha256.into(),
        live_fingerprint: live.fingerprint(),
        desired_file: None,
        backend: None,
        backend_identity: None,
        targeted: Vec::new(),
        left_out: Vec::new(),
        changes: !ordered.is_empty(),
        steps: ordered,
        instances,
    })
}

fn plan_instance(
    desired: &DesiredInstance,
    live: &LiveInstance,
    journal: &JournalEvidence,
    numbered_before: usize,
) -> Result<(InstancePlan, Vec<Step>), Vec<Refusal>> {
    let refusals = precheck::pre_checks(desired, live);
    if !refusals.is_empty() {
        return Err(refusals);
    }
    let target = &desired.master_key.verification_pattern;
    let finding = evidence::find_key_storage_mk(live, target, journal).map_err(|r| vec![r])?;
    let drafts = diff::draft_steps(desired, live, &finding).map_err(|r| vec![r])?;
    let ids: Vec<String> = (0..drafts.len())
        .map(|i| format!("s{}", numbered_before + i + 1))
        .collect();
    let steps = drafts
        .iter()
        .zip(&ids)
        .map(|(draft, id)| number(draft, id, &ids, desired, live))
        .collect::<Vec<Step>>();
    let ceremony = ceremony_needs(desired, &steps);
    let units = live
        .crypto_units
        .iter()
        .enumerate()
        .map(|(index, unit)| {
            let (new_register, current_register) = diff::after_state(unit, &drafts, index, target);
            UnitChange {
                hsm_id: unit.hsm_id.clone(),
                unit_type: unit.unit_type,
                location: unit.location.clone(),
                before: Registers {
                    new_register: unit.new_register.clone(),
                    current_register: unit.current_register.clone(),
                },
                after: Registers {
                    new_register,
                    current_register,
                },
            }
        })
        .collect();
    let instance = InstancePlan {
        id: live.id.clone(),
        region: live.region.clone(),
        target_verification_pattern: target.clone(),
        key_storage_under: finding.key_storage_under,
        rewrap_status: live.rewrap_status,
        evidence: finding.evidence,
        administrators: desired.administrators.clone(),
        units,
        ceremony,
    };
    Ok((instance, steps))
}

/// With key parts on smart cards, the loads and commits are ceremonies in the TKE
/// application: which readers, which people, how many PIN entries.
fn ceremony_needs(desired: &DesiredInstance, steps: &[Step]) -> Option<CeremonyNeeds> {
    let cards: Vec<(&str, &str)> = desired
        .master_key
        .key_parts
        .iter()
        .filter_map(|part| match part {
            crate::model::KeyPartSource::SmartCard { holder, reader, .. } => {
                Some((holder.as_str(), reader.as_str()))
            }
            crate::model::KeyPartSource::File { .. } => None,
        })
        .collect();
    let by_hand: Vec<&Step> = steps
        .iter()
        .filter(|s| matches!(s.action, Action::LoadNewMk | Action::CommitNewMk))
        .collect();
    if cards.is_empty() || by_hand.is_empty() {
        return None;
    }
    let mut readers: Vec<String> = cards.iter().map(|(_, r)| r.to_string()).collect();
    readers.dedup();
    let pin_entries = by_hand
        .iter()
        .map(|s| {
            let key_part_cards = if s.action == Action::LoadNewMk {
                cards.len()
            } else {
                0
            };
            key_part_cards as u32 + s.signatures.saturating_sub(key_part_cards as u32)
        })
        .sum();
    Some(CeremonyNeeds {
        key_part_readers: readers,
        key_part_holders: cards.iter().map(|(h, _)| h.to_string()).collect(),
        administrators: desired.administrators.clone(),
        signatures_max: by_hand
            .iter()
            .map(|s| s.signatures)
            .max()
            .unwrap_or(0)
            .min(u32::from(u8::MAX)) as u8,
        pin_entries,
    })
}

fn number(
    draft: &Draft,
    id: &str,
    ids: &[String],
    desired: &DesiredInstance,
    live: &LiveInstance,
) -> Step {
    let unit = draft.unit.map(|i| &live.crypto_units[i]);
    let threshold = live
        .crypto_units
        .first()
        .map_or(0, |u| u32::from(u.signature_threshold));
    let key_parts = desired.master_key.key_parts.len() as u32;
    let signatures = match draft.action {
        Action::LoadNewMk => key_parts + 1,
        Action::CommitNewMk | Action::SetImmediate => threshold,
        Action::ClearNewMk => 1,
        Action::RewrapKeyStorage | Action::RemoveUnit => 0,
    };
    Step {
        id: id.to_string(),
        action: draft.action,
        instance: live.id.clone(),
        unit: unit.map(|u| u.hsm_id.clone()),
        depends_on: draft.depends_on.iter().map(|&i| ids[i].clone()).collect(),
        reversible: draft.action.reversible(),
        signatures,
        description: describe(draft.action, unit, desired, live),
        point_of_no_return: draft.action == Action::RewrapKeyStorage,
    }
}

/// "crypto unit ID (TYPE, LOCATION)", written straight into a step's description.
struct OnUnit<'a>(&'a CryptoUnit);

impl std::fmt::Display for OnUnit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = self.0;
        write!(
            f,
            "crypto unit {} ({}, {})",
            unit.hsm_id, unit.unit_type, unit.location
        )
    }
}

fn describe(
    action: Action,
    unit: Option<&CryptoUnit>,
    desired: &DesiredInstance,
    live: &LiveInstance,
) -> String {
    let target = desired.master_key.verification_pattern.short();
    let on = |u| OnUnit(u);
    match (action, unit) {
        (Action::ClearNewMk, Some(u)) => format!(
            "clear the new master key register of {} (now {:#})",
            on(u),
            u.new_register
        ),
        (Action::LoadNewMk, Some(u)) => format!(
            "load the new master key {target}… from {} key parts into the new register of {}",
            desired.master_key.key_parts.len(),
            on(u)
        ),
        (Action::CommitNewMk, Some(u)) => {
            format!("commit the new master key {target}… on {}", on(u))
        }
        (Action::RemoveUnit, Some(u)) => format!(
            "remove {} from the selection: it already holds {target}… in its current register",
            on(u)
        ),
        (Action::SetImmediate, Some(u)) => format!(
            "set immediate on {}: the current register becomes {target}…, the old current value is gone",
            on(u)
        ),
        (Action::RewrapKeyStorage, _) => format!(
            "rewrap the key storage of service instance {} ({}) under the new master key {target}…: the point of no return",
            live.id, live.region
        ),
        (_, None) => unreachable!("unit steps always name a unit"),
    }
}
