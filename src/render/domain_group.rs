//! A domain group's plan and registers, for people (text) and scripts (JSON). Pure.

use crate::model::domain_group::{LiveGroup, StoreState};
use crate::model::registers::{HeldMk, NewMk};
use crate::plan::domain_group::GroupPlan;

/// The plan as text: one line a step, ceremony steps marked, dependencies shown.
pub fn group_plan_text(plan: &GroupPlan, backend: &str) -> String {
    let mut text = format!(
        "Domain group {} ({}, {}) on {backend}\n",
        plan.domain_group,
        plan.mode,
        plan.procedure_words()
    );
    if plan.steps.is_empty() {
        text.push_str(
            "No changes: every APQN holds the desired master keys and every store is under them.\n",
        );
        return text;
    }
    let ceremonies = plan.steps.iter().filter(|s| s.ceremony).count();
    text.push_str(&format!(
        "Plan: {} steps ({ceremonies} ceremony steps the operator performs, {} tool steps mkplan runs)\n\n",
        plan.steps.len(),
        plan.steps.len() - ceremonies
    ));
    for step in &plan.steps {
        let who = if step.ceremony { "ceremony" } else { "mkplan" };
        let after = if step.depends_on.is_empty() {
            String::new()
        } else {
            format!("  (after {})", step.depends_on.join(", "))
        };
        text.push_str(&format!(
            "  {:>4}  {:<20} [{who}] {}{after}\n",
            step.id,
            step.action.as_str(),
            step.description
        ));
    }
    text
}

/// The plan as JSON (`format_version` 1, `kind` `domain_group`).
pub fn group_plan_json(plan: &GroupPlan, backend: &str) -> String {
    serde_json::json!({
        "format_version": "1",
        "kind": "domain_group",
        "backend": backend,
        "domain_group": plan.domain_group,
        "mode": plan.mode,
        "procedure": plan.procedure,
        "changes": plan.has_changes(),
        "steps": plan.steps,
    })
    .to_string()
}

/// zkey's MK table (`CARD.DOMAIN  NEW MK  CURRENT MK  OLD MK  TYPE`), then the stores.
pub fn group_status_text(live: &LiveGroup, backend: &str) -> String {
    let mut text = format!(
        "APQNs on {backend}\n{:<12} {:<6} {:<36} {:<36} {:<20} {}\n",
        "CARD.DOMAIN", "TYPE", "NEW MK", "CURRENT MK", "OLD MK", "CARD SERIAL"
    );
    for apqn in &live.apqns {
        let serial = apqn.card_serial.as_deref().unwrap_or("-");
        let Some(registers) = &apqn.registers else {
            text.push_str(&format!(
                "{:<12} {:<6} {}\n",
                apqn.apqn.to_string(),
                "-",
                if apqn.usable {
                    "no mkvps"
                } else {
                    "offline or absent"
                }
            ));
            continue;
        };
        for (mk_type, r) in registers {
            let new = match &r.new {
                NewMk::Empty => "-".to_string(),
                NewMk::Partial => "partially loaded".into(),
                NewMk::Uncommitted(vp) => format!("{vp} uncommitted"),
                NewMk::Ready(vp) => vp.to_string(),
                NewMk::Unknown => "?".into(),
            };
            let held = |h: &HeldMk| match h {
                HeldMk::Valid(vp) => vp.to_string(),
                HeldMk::Invalid => "-".into(),
                HeldMk::Unknown => "?".into(),
            };
            let old = r.old.as_ref().map_or("".into(), held);
            let online = if apqn.usable { "" } else { " (offline)" };
            text.push_str(&format!(
                "{:<12} {:<6} {:<36} {:<36} {:<20} {serial}{online}\n",
                apqn.apqn.to_string(),
                mk_type.as_str(),
                new,
                held(&r.current),
                old
            ));
        }
    }
    text.push_str("\nStores\n");
    for store in &live.stores {
        match &store.state {
            StoreState::Known(copies) => {
                for (mk_type, copy) in copies {
                    let staged = copy
                        .staged
                        .as_ref()
                        .map_or(String::new(), |vp| format!(", staged under {vp}"));
                    text.push_str(&format!(
                        "  {}: {mk_type} under {}{staged}\n",
                        store.id, copy.active
                    ));
                }
            }
            StoreState::Unknown { why, .. } => {
                text.push_str(&format!("  {}: unknown ({why})\n", store.id))
            }
            StoreState::StagedUnseen { active } => {
                for (mk_type, vp) in active {
                    text.push_str(&format!(
                        "  {}: {mk_type} under {vp}, staged under a key the tool does not show\n",
                        store.id
                    ));
                }
            }
        }
    }
    text
}
