//! A domain group's plan and registers, for people (text) and scripts (JSON). Pure.

use crate::model::domain_group::{LiveGroup, StoreState};
use crate::model::registers::{HeldMk, NewMk};
use crate::plan::domain_group::{GroupAction, GroupPlan, GroupRefusal};
use sha2::{Digest, Sha256};

/// The plan as text: one line a step, ceremony steps marked, dependencies shown.
pub fn group_plan_text(plan: &GroupPlan, backend: &str) -> String {
    let mut text = format!(
        "Domain group {} ({}, {}) on {backend}\n",
        plan.domain_group,
        plan.mode,
        plan.procedure_words()
    );
    text.push_str(&format!("{}\n", plan.apqns_words()));
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

/// A domain group's plan with what binds it: the group file by SHA-256, the machine by its
/// fingerprint, the backend and its journal identity; and, in a saved plan, the group file's
/// path from the plan file's folder.
#[derive(Clone, Copy)]
pub struct GroupPlanDocument<'a> {
    pub plan: &'a GroupPlan,
    pub backend: &'a str,
    pub backend_identity: &'a str,
    pub desired_sha256: &'a str,
    pub live_fingerprint: &'a str,
    pub desired_file: Option<&'a str>,
}

/// The plan as JSON (`format_version` 1, `kind` `domain_group`; docs/json.md). A saved
/// plan (`plan --out`) is this document too.
pub fn group_plan_json(document: &GroupPlanDocument) -> String {
    let plan = document.plan;
    let mut value = serde_json::json!({
        "format_version": "1",
        "kind": "domain_group",
        "desired_sha256": document.desired_sha256,
        "live_fingerprint": document.live_fingerprint,
        "backend": document.backend,
        "backend_identity": document.backend_identity,
        "domain_group": plan.domain_group,
        "mode": plan.mode,
        "procedure": plan.procedure,
        "apqns": plan.apqns,
        "changes": plan.has_changes(),
        "steps": plan.steps,
    });
    if let Some(file) = document.desired_file {
        value["desired_file"] = file.into();
    }
    if let Some(selection) = &plan.apqn_selection {
        value["apqn_selection"] = serde_json::json!(selection);
    }
    value.to_string()
}

/// The step graph in Graphviz DOT: ceremony steps as boxes the operator performs, tool
/// steps as ellipses, the sets (irreversible) in red.
pub fn group_plan_dot(plan: &GroupPlan) -> String {
    let mut text =
        String::from("digraph plan {\n  rankdir=LR;\n  node [fontname=\"monospace\"];\n");
    for step in &plan.steps {
        let shape = if step.ceremony { "box" } else { "ellipse" };
        let colour = if step.action == GroupAction::SetImmediate {
            ", color=red"
        } else {
            ""
        };
        let what = step
            .apqn
            .map(|a| a.to_string())
            .or_else(|| step.store.as_ref().map(|s| s.to_string()))
            .unwrap_or_default();
        text.push_str(&format!(
            "  {} [shape={shape}{colour}, label={}];\n",
            dot_id(&step.id),
            dot_id(&format!("{} {}\n{what}", step.id, step.action))
        ));
        for before in &step.depends_on {
            text.push_str(&format!("  {} -> {};\n", dot_id(before), dot_id(&step.id)));
        }
    }
    text.push_str("}\n");
    text
}

/// A DOT quoted id: quotes and backslashes escaped, so a name cannot end it.
fn dot_id(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

/// A refused plan as JSON: the pre-check, what it found, and what would settle it.
pub fn group_refusal_json(group: &str, refusal: &GroupRefusal) -> String {
    serde_json::json!({
        "format_version": "1",
        "kind": "domain_group",
        "domain_group": group,
        "refusals": [{
            "check": refusal.check,
            "message": refusal.message,
            "settle": refusal.settle,
        }],
    })
    .to_string()
}

/// The SHA-256 of everything `status` shows of the machine (every APQN's registers, state
/// and card serial; every store's copies) and of the open operations later steps name: a
/// saved plan applies only while this is unchanged.
pub fn group_live_fingerprint(live: &LiveGroup) -> String {
    let mut hasher = Sha256::new();
    hasher.update(group_status_text(live, "").as_bytes());
    for store in &live.stores {
        hasher.update(format!("\n{}\t{:?}", store.id, store.handle).as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// A NEW register as the status table shows it.
pub(super) fn new_words(new: &NewMk) -> String {
    match new {
        NewMk::Empty => "-".to_string(),
        NewMk::Partial => "partially loaded".into(),
        NewMk::Uncommitted(vp) => format!("{vp} uncommitted"),
        NewMk::Ready(vp) => vp.to_string(),
        NewMk::Unknown => "?".into(),
    }
}

/// A CURRENT or OLD register as the status table shows it.
pub(super) fn held_words(held: &HeldMk) -> String {
    match held {
        HeldMk::Valid(vp) => vp.to_string(),
        HeldMk::Invalid => "-".into(),
        HeldMk::Unknown => "?".into(),
    }
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
            let new = new_words(&r.new);
            let held = held_words;
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
        }
    }
    text
}
