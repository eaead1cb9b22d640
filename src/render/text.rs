//! The plan for a terminal, Terraform-like: a legend of symbols, per instance where it
//! stands and why (the key storage evidence), a before → after register table, the steps in
//! apply order with the point of no return marked, a diff of register states, and a summary.

use std::fmt::Write;

use similar::{ChangeTag, TextDiff};

use super::paint::{BOLD_RED, GREEN, RED, action_style, paint};
use super::table::table;
use super::{counts, plural};
use crate::plan::{Action, InstancePlan, Plan, Registers, Step, StepGraph, by_instance};

pub fn text(plan: &Plan, source: &str) -> String {
    styled(plan, source, false)
}

/// The same with ANSI colour, for a terminal: each action's symbol in its colour, IRREVERSIBLE
/// and the point of no return in red, the register diff's lines red and green.
pub fn text_in_colour(plan: &Plan, source: &str) -> String {
    styled(plan, source, true)
}

fn styled(plan: &Plan, source: &str, colour: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "mkplan plan: {source}\n");
    if !plan.left_out.is_empty() {
        let _ = writeln!(out, "{}\n", super::left_out_line(&plan.left_out));
    }
    if plan.changes {
        let legend: Vec<String> = Action::ALL
            .iter()
            .map(|a| format!("{} {}", symbol(*a, colour), a.label()))
            .collect();
        let _ = writeln!(
            out,
            "Symbols: {}\n         {}\n",
            legend[..3].join("   "),
            legend[3..].join("   ")
        );
    }
    let mut by_instance = by_instance(&plan.steps);
    for instance in &plan.instances {
        let steps = by_instance.remove(instance.id.as_str()).unwrap_or_default();
        instance_section(&mut out, instance, &steps, colour);
    }
    out.push_str(&summary(plan));
    out
}

fn symbol(action: Action, colour: bool) -> String {
    if colour {
        paint(action_style(action), &action.symbol().to_string())
    } else {
        action.symbol().to_string()
    }
}

fn instance_section(out: &mut String, instance: &InstancePlan, steps: &[&Step], colour: bool) {
    let _ = writeln!(
        out,
        "Service instance {} ({})",
        instance.id, instance.region
    );
    let _ = writeln!(out, "  {}", instance.phase(steps));
    let target = &instance.target_verification_pattern;
    let _ = writeln!(out, "  desired master key:  {target}");
    let storage = &instance.key_storage_under;
    let whose = if storage == target {
        "the desired master key"
    } else {
        "the current master key"
    };
    let _ = writeln!(out, "  key storage under:   {storage} ({whose})");
    if let Some(ceremony) = &instance.ceremony {
        let _ = writeln!(out, "    {}", crate::render::ceremony_line(ceremony));
    }
    for evidence in &instance.evidence {
        let _ = writeln!(out, "    evidence, {evidence}");
    }
    out.push('\n');
    let _ = writeln!(out, "  Registers, before → after:");
    let mut rows = vec![vec![
        "crypto unit".into(),
        "type".into(),
        "location".into(),
        "new register".into(),
        "current register".into(),
    ]];
    for unit in &instance.units {
        rows.push(vec![
            unit.hsm_id.clone(),
            unit.unit_type.to_string(),
            unit.location.clone(),
            arrow(
                &unit.before.new_register.to_string(),
                &unit.after.new_register.to_string(),
            ),
            arrow(
                &unit.before.current_register.to_string(),
                &unit.after.current_register.to_string(),
            ),
        ]);
    }
    out.push_str(&table(&rows, "    "));
    out.push('\n');
    if steps.is_empty() {
        let _ = writeln!(
            out,
            "  No steps: every current register holds the desired master key and every new register is Empty.\n"
        );
        return;
    }
    let _ = writeln!(out, "  Steps, in the order apply runs them:");
    out.push_str(&step_table(steps, colour));
    out.push('\n');
    let _ = writeln!(out, "  Register diff (live → after apply):");
    out.push_str(&register_diff(instance, colour));
    out.push('\n');
}

/// The step table's indent; its rows start with the action's symbol.
const INDENT: &str = "    ";

fn arrow(before: &str, after: &str) -> String {
    if before == after {
        before.to_string()
    } else {
        format!("{before} → {after}")
    }
}

fn step_table(steps: &[&Step], colour: bool) -> String {
    let mut rows = vec![vec![
        " ".into(),
        "step".into(),
        "action".into(),
        "crypto unit".into(),
        "signatures".into(),
        "undo".into(),
        "after".into(),
    ]];
    let mut out = String::new();
    for step in steps {
        rows.push(vec![
            step.action.symbol().to_string(),
            step.id.clone(),
            step.action.as_str().into(),
            step.unit
                .clone()
                .unwrap_or_else(|| "(whole service instance)".into()),
            step.signatures.to_string(),
            if step.reversible {
                "reversible".into()
            } else {
                "IRREVERSIBLE".into()
            },
            if step.depends_on.is_empty() {
                "-".into()
            } else {
                step.depends_on.join(", ")
            },
        ]);
    }
    let rendered = table(&rows, INDENT);
    // The point of no return goes right under the rewrap's row.
    let mut lines = rendered.lines();
    if let Some(header) = lines.next() {
        out.push_str(header);
        out.push('\n');
    }
    for (line, step) in lines.zip(steps) {
        if colour {
            // The row starts with the indent and the symbol; the words come after the layout.
            let (indent, rest) = line.split_at(INDENT.len() + 1);
            let painted = rest.replacen("IRREVERSIBLE", &paint(RED, "IRREVERSIBLE"), 1);
            let _ = writeln!(
                out,
                "{}{}{painted}",
                &indent[..INDENT.len()],
                symbol(step.action, true)
            );
        } else {
            out.push_str(line);
            out.push('\n');
        }
        if step.point_of_no_return {
            let line = "══ point of no return: after the rewrap, never rewrap again and never clear a new register holding the new key; the only way forward is set immediate ══";
            if colour {
                let _ = writeln!(out, "{INDENT}{}", paint(BOLD_RED, line));
            } else {
                let _ = writeln!(out, "{INDENT}{line}");
            }
        }
    }
    out
}

fn register_lines(hsm_id: &str, registers: &Registers) -> String {
    format!(
        "{hsm_id} new register:     {:#}\n{hsm_id} current register: {:#}\n",
        registers.new_register, registers.current_register
    )
}

/// One diff per crypto unit, so that each unit's removed and added lines stand together.
fn register_diff(instance: &InstancePlan, colour: bool) -> String {
    let mut out = String::new();
    for unit in &instance.units {
        let before = register_lines(&unit.hsm_id, &unit.before);
        let after = register_lines(&unit.hsm_id, &unit.after);
        for change in TextDiff::from_lines(&before, &after).iter_all_changes() {
            let sign = match change.tag() {
                ChangeTag::Delete => '-',
                ChangeTag::Insert => '+',
                ChangeTag::Equal => continue,
            };
            let line = format!("{sign} {}", change.value().trim_end_matches('\n'));
            if colour {
                let style = if sign == '-' { RED } else { GREEN };
                let _ = writeln!(out, "    {}", paint(style, &line));
            } else {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    out
}

fn summary(plan: &Plan) -> String {
    if !plan.changes {
        return "No changes. The live state matches the desired state.\n".into();
    }
    let parts: Vec<String> = counts(plan)
        .into_iter()
        .map(|(action, count)| format!("{count} {}", action.as_str()))
        .collect();
    let irreversible = plan.steps.iter().filter(|s| !s.reversible).count();
    let critical = StepGraph::new(&plan.steps)
        .map(|g| g.critical_path())
        .unwrap_or(0);
    format!(
        "Plan: {}.\n      {}, {} irreversible, {} needed; the longest chain of dependent steps is {}.\n",
        parts.join(", "),
        plural(plan.steps.len(), "step", "steps"),
        irreversible,
        plural(plan.signatures() as usize, "signature", "signatures"),
        plural(critical, "step", "steps"),
    )
}
