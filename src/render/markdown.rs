//! The plan for a pull request: counts per action above the fold, a Mermaid picture of the
//! step graph (`mermaid`), then one collapsible
//! section per service instance. GitHub refuses comments over 65,536 characters, so the
//! output stops adding instance sections before `MARKDOWN_LEN_MAX` and says what it left out.

use std::fmt::Write;

use super::{counts, plural};
use crate::plan::{InstancePlan, Plan, Step, by_instance};

pub const MARKDOWN_LEN_MAX: usize = 65_000;
/// Room kept for the closing note about instances left out.
const CLOSING_RESERVE: usize = 400;

pub fn markdown(plan: &Plan, source: &str) -> String {
    let mut out = header(plan, source);
    let mut shown = 0;
    let grouped = by_instance(&plan.steps);
    for instance in &plan.instances {
        let steps = grouped
            .get(instance.id.as_str())
            .cloned()
            .unwrap_or_default();
        let section = instance_section(instance, &steps);
        if out.len() + section.len() + CLOSING_RESERVE > MARKDOWN_LEN_MAX {
            break;
        }
        out.push_str(&section);
        shown += 1;
    }
    let left_out = plan.instances.len() - shown;
    if left_out > 0 {
        let _ = writeln!(
            out,
            "\n> {} not shown to stay under {MARKDOWN_LEN_MAX} characters: see the full plan with `mkplan show PLANFILE` or `--json`.",
            plural(left_out, "service instance", "service instances")
        );
    }
    out
}

fn header(plan: &Plan, source: &str) -> String {
    let units: usize = plan.instances.iter().map(|i| i.units.len()).sum();
    let mut out = String::new();
    let verdict = if plan.changes {
        "changes"
    } else {
        "no changes"
    };
    let _ = writeln!(
        out,
        "### mkplan plan: {}, {}: {verdict}\n",
        plural(
            plan.instances.len(),
            "service instance",
            "service instances"
        ),
        plural(units, "crypto unit", "crypto units")
    );
    let _ = writeln!(out, "`{source}`\n");
    if !plan.left_out.is_empty() {
        let _ = writeln!(out, "> {}\n", super::left_out_markdown(&plan.left_out));
    }
    let _ = writeln!(out, "| action | steps |\n|---|---:|");
    for (action, count) in counts(plan) {
        let _ = writeln!(
            out,
            "| `{}` {} | {count} |",
            action.symbol(),
            action.as_str()
        );
    }
    let _ = writeln!(out, "| **total** | **{}** |\n", plan.steps.len());
    let rewraps: Vec<&Step> = plan.steps.iter().filter(|s| s.point_of_no_return).collect();
    let irreversible = plan.steps.iter().filter(|s| !s.reversible).count();
    let _ = writeln!(
        out,
        "**Points of no return:** {} (rewraps). **Irreversible steps:** {irreversible}. **Signatures needed:** {}.\n",
        rewraps.len(),
        plan.signatures()
    );
    let _ = writeln!(
        out,
        "Desired file SHA-256 `{}`; live state fingerprint `{}`.\n",
        plan.desired_sha256, plan.live_fingerprint
    );
    let chart = super::mermaid::flowchart(plan);
    if !chart.is_empty() {
        let summarized = plan.instances.len() > super::mermaid::INSTANCES_DRAWN_MAX;
        let _ = writeln!(
            out,
            "**Step graph**{}: red steps are irreversible; the dark red hexagon is the point of no return (the rewrap), and from it the thick arrows lead only forward.\n",
            if summarized {
                ", one box per shape of steps (the instances that share it are named)"
            } else {
                ", one box per service instance"
            }
        );
        out.push_str(&chart);
        out.push('\n');
    }
    out
}

fn instance_section(instance: &InstancePlan, steps: &[&Step]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<details><summary>Service instance <code>{}</code> ({}): {} ({})</summary>\n",
        instance.id,
        instance.region,
        instance.phase(steps),
        plural(steps.len(), "step", "steps")
    );
    let _ = writeln!(
        out,
        "- desired master key: `{}`",
        instance.target_verification_pattern
    );
    let _ = writeln!(out, "- key storage under: `{}`", instance.key_storage_under);
    if let Some(ceremony) = &instance.ceremony {
        let _ = writeln!(out, "  - {}", crate::render::ceremony_line(ceremony));
    }
    for evidence in &instance.evidence {
        let _ = writeln!(out, "  - evidence, {evidence}");
    }
    let _ = writeln!(
        out,
        "\n| crypto unit | type | location | new register | current register |\n|---|---|---|---|---|"
    );
    for unit in &instance.units {
        let _ = writeln!(
            out,
            "| `{}` | {} | `{}` | {} | {} |",
            unit.hsm_id,
            unit.unit_type,
            unit.location,
            change(
                &unit.before.new_register.to_string(),
                &unit.after.new_register.to_string()
            ),
            change(
                &unit.before.current_register.to_string(),
                &unit.after.current_register.to_string()
            ),
        );
    }
    if !steps.is_empty() {
        let _ = writeln!(
            out,
            "\n| step | action | crypto unit | signatures | reversible | after | what it does |\n|---|---|---|---:|---|---|---|"
        );
        for step in steps {
            let _ = writeln!(
                out,
                "| {} | `{}` {} | {} | {} | {} | {} | {} |",
                step.id,
                step.action.symbol(),
                step.action.as_str(),
                step.unit
                    .as_deref()
                    .map(|u| format!("`{u}`"))
                    .unwrap_or_else(|| "—".into()),
                step.signatures,
                if step.reversible { "yes" } else { "**no**" },
                if step.depends_on.is_empty() {
                    "—".into()
                } else {
                    step.depends_on.join(", ")
                },
                if step.point_of_no_return {
                    format!("⚠️ **point of no return** — {}", step.description)
                } else {
                    step.description.clone()
                }
            );
        }
    }
    out.push_str("\n</details>\n\n");
    out
}

fn change(before: &str, after: &str) -> String {
    if before == after {
        before.to_string()
    } else {
        format!("{before} → **{after}**")
    }
}
