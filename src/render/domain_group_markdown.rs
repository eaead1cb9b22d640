//! A domain group's plan, or its refusal, for a pull request: the counts per action and who
//! performs them above the fold, then the registers and stores as read, then the steps in
//! order with their dependencies. Everything the machine or the group file names is shown
//! inert (`cell`): a store name cannot break the table or inject markup. Pure.

use std::fmt::Write;

use super::domain_group::{held_words, new_words};
use crate::model::domain_group::{LiveGroup, StoreState};
use crate::plan::domain_group::{GroupAction, GroupPlan, GroupRefusal};

/// Every action, in the order a change runs them; zeros are shown too so that reviewers read
/// every plan's table the same way.
const ACTIONS: [GroupAction; 7] = [
    GroupAction::ClearNewMk,
    GroupAction::LoadNewMk,
    GroupAction::CommitNewMk,
    GroupAction::StageReencipher,
    GroupAction::SetImmediate,
    GroupAction::CompleteReencipher,
    GroupAction::ReencipherFromOld,
];

/// What a pull request needs to find the plan again: where it came from and the two hashes
/// a saved plan is checked against before it is applied.
pub struct GroupSource<'a> {
    /// "FILE against BACKEND".
    pub what: &'a str,
    pub desired_sha256: &'a str,
    pub live_fingerprint: &'a str,
}

/// `live`: the machine as read for this plan; a saved plan (`show`) has none.
pub fn group_plan_markdown(
    plan: &GroupPlan,
    live: Option<&LiveGroup>,
    source: &GroupSource,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### mkplan plan: domain group {} ({}, {}): {}\n",
        code(&plan.domain_group),
        plan.mode,
        plan.procedure_words(),
        if plan.has_changes() {
            "changes"
        } else {
            "no changes"
        }
    );
    let _ = writeln!(out, "{}\n", code(source.what));
    let _ = writeln!(out, "{}\n", plan.apqns_words());
    if plan.has_changes() {
        out.push_str("| action | performed by | steps |\n|---|---|---:|\n");
        for action in ACTIONS {
            let count = plan.steps.iter().filter(|s| s.action == action).count();
            let _ = writeln!(
                out,
                "| {} | {} | {count} |",
                code(action.as_str()),
                by(action)
            );
        }
        let ceremonies = plan.steps.iter().filter(|s| s.ceremony).count();
        let _ = writeln!(
            out,
            "| **total** | {ceremonies} by the operator, {} by mkplan | **{}** |\n",
            plan.steps.len() - ceremonies,
            plan.steps.len()
        );
        let sets = plan
            .steps
            .iter()
            .filter(|s| s.action == GroupAction::SetImmediate)
            .count();
        if sets > 0 {
            let _ = writeln!(
                out,
                "**Irreversible steps:** {sets} (`set_immediate`: the key each one replaces leaves CURRENT{}). The plan was played over the registers and stores below and checked after every step: no store is ever left without a register of the group holding its master key.\n",
                if plan.mode == crate::model::domain_group::GroupMode::Cca {
                    " for OLD, and is gone at the next set"
                } else {
                    " and is gone"
                }
            );
        }
    } else {
        out.push_str(
            "No changes: every APQN holds the desired master keys and every store is under them.\n\n",
        );
    }
    let _ = writeln!(
        out,
        "Group file SHA-256 {}; live state fingerprint {}.\n",
        code(source.desired_sha256),
        code(source.live_fingerprint)
    );
    match live {
        Some(live) => {
            registers(&mut out, live);
            stores(&mut out, live);
        }
        None => out.push_str(
            "The registers and stores are not in a saved plan: `mkplan status GROUP.yaml` shows them now, and `mkplan apply PLANFILE` runs only while the fingerprint above still matches.\n\n",
        ),
    }
    if plan.has_changes() {
        steps(&mut out, plan);
    }
    out
}

/// A refused plan: the pre-check by name, what it found, and the evidence that would settle
/// it, in the place the plan would have gone.
pub fn group_refusal_markdown(group: &str, refusal: &GroupRefusal, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### mkplan plan: refused for safety, domain group {}\n",
        code(group)
    );
    let _ = writeln!(out, "{}\n", code(source));
    out.push_str("Nothing was planned and nothing was touched.\n\n");
    let _ = writeln!(
        out,
        "- **pre-check** {}: {}",
        code(refusal.check),
        cell(&refusal.message)
    );
    if let Some(settle) = &refusal.settle {
        let _ = writeln!(out, "- **evidence that would settle it:** {}", cell(settle));
    }
    out
}

fn by(action: GroupAction) -> &'static str {
    if action.is_ceremony() {
        "operator (TKE or panel.exe), verified in `mkvps`"
    } else {
        "mkplan, verified by reading the store again"
    }
}

fn registers(out: &mut String, live: &LiveGroup) {
    out.push_str("#### Registers now\n\n| APQN | type | NEW | CURRENT | OLD | card serial |\n|---|---|---|---|---|---|\n");
    for apqn in &live.apqns {
        let serial = apqn.card_serial.as_deref().unwrap_or("-");
        let Some(registers) = &apqn.registers else {
            let why = if apqn.usable {
                "no mkvps"
            } else {
                "offline or absent"
            };
            let _ = writeln!(out, "| {} | - | {why} | | | {} |", apqn.apqn, cell(serial));
            continue;
        };
        for (mk_type, r) in registers {
            let old = r.old.as_ref().map_or(String::new(), held_words);
            let offline = if apqn.usable { "" } else { " (offline)" };
            let _ = writeln!(
                out,
                "| {} | {mk_type} | {} | {} | {} | {}{offline} |",
                apqn.apqn,
                cell(&new_words(&r.new)),
                cell(&held_words(&r.current)),
                cell(&old),
                cell(serial)
            );
        }
    }
    out.push('\n');
}

fn stores(out: &mut String, live: &LiveGroup) {
    if live.stores.is_empty() {
        return;
    }
    out.push_str("#### Stores now\n\n| store | type | enciphered under | staged under |\n|---|---|---|---|\n");
    for store in &live.stores {
        match &store.state {
            StoreState::Known(copies) => {
                for (mk_type, copy) in copies {
                    let staged = copy.staged.as_ref().map_or("-", |vp| vp.as_str());
                    let _ = writeln!(
                        out,
                        "| {} | {mk_type} | {} | {} |",
                        cell(&store.id.to_string()),
                        copy.active.as_str(),
                        staged
                    );
                }
            }
            StoreState::Unknown { why, .. } => {
                let _ = writeln!(
                    out,
                    "| {} | ? | unknown: {} | |",
                    cell(&store.id.to_string()),
                    cell(why)
                );
            }
        }
    }
    out.push('\n');
}

fn steps(out: &mut String, plan: &GroupPlan) {
    out.push_str("#### Steps\n\n| step | action | by | after | what |\n|---|---|---|---|---|\n");
    for step in &plan.steps {
        let after = if step.depends_on.is_empty() {
            "-".to_string()
        } else {
            step.depends_on.join(", ")
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            step.id,
            code(step.action.as_str()),
            if step.ceremony { "operator" } else { "mkplan" },
            after,
            cell(&step.description)
        );
    }
}

/// Text from the group file or the machine, inert in a table cell: no pipe, no line break,
/// no HTML.
fn cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\n', '\r'], " ")
}

/// Inline code that a backtick in the text cannot close early (GitHub's tables honour `\|`
/// inside code too).
fn code(text: &str) -> String {
    let inert = text
        .replace('`', "'")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ");
    format!("`{inert}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_machine_cannot_break_the_table_or_the_markup() {
        let cell = cell("a|b\n<script>`x`");
        assert_eq!(cell, "a\\|b &lt;script&gt;`x`");
        assert_eq!(code("k`|<"), "`k'\\|<`");
    }

    #[test]
    fn a_refusal_names_its_check_and_what_would_settle_it() {
        let refusal = GroupRefusal {
            check: "same_current_mk",
            message: "03.0006 has WK a1 | 04.0006 has WK c3".into(),
            settle: Some("load the same key".into()),
        };
        let text = group_refusal_markdown("payroll", &refusal, "g.yaml against zcrypt:/");
        assert!(
            text.contains("refused for safety, domain group `payroll`"),
            "{text}"
        );
        assert!(
            text.contains("**pre-check** `same_current_mk`: 03.0006 has WK a1 \\| 04.0006"),
            "{text}"
        );
        assert!(
            text.contains("**evidence that would settle it:** load the same key"),
            "{text}"
        );
    }
}
