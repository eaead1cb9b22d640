//! The change window's runbook: every step of a plan as a checklist item, with what to do (TKE
//! CLI or TKE application), who must be present, the state expected afterwards and how mkplan
//! checks it. Plain text for a printout, Markdown for a change record.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::plan::ceremony::{ADMINISTRATORS, Instruction};
use crate::plan::{Action, Plan};

/// Who must attend the whole window, and how many PIN entries it takes. Signing
/// administrators are counted by the most signatures one step needs.
fn attendance(plan: &Plan, instructions: &[Instruction]) -> (BTreeSet<String>, u32) {
    let mut people: BTreeSet<String> = instructions
        .iter()
        .flat_map(|i| i.present.iter())
        .filter(|p| !p.starts_with(ADMINISTRATORS))
        .cloned()
        .collect();
    if let Some(most) = plan
        .steps
        .iter()
        .map(|s| s.signatures)
        .max()
        .filter(|m| *m > 0)
    {
        people.insert(format!(
            "{ADMINISTRATORS} with their signature keys, enough for {most} signatures in one step"
        ));
    }
    let pins = instructions.iter().map(|i| i.pin_entries).sum();
    (people, pins)
}

/// `s1 + load new master key on UNIT` (or `on service instance ID`), ids quoted with `quote`.
fn title(instruction: &Instruction, quote: &str) -> String {
    let on = match &instruction.unit {
        Some(unit) => format!("{quote}{unit}{quote}"),
        None => format!("service instance {quote}{}{quote}", instruction.instance),
    };
    format!(
        "{} {} {} on {on}",
        instruction.step,
        instruction.action.symbol(),
        instruction.action.label()
    )
}

fn depends(plan: &Plan, step: &str) -> String {
    plan.steps
        .iter()
        .find(|s| s.id == step)
        .map(|s| {
            if s.depends_on.is_empty() {
                "none".to_string()
            } else {
                s.depends_on.join(", ")
            }
        })
        .unwrap_or_default()
}

/// `by_hand` are the steps a person always performs (smart-card loads and commits); the rest
/// mkplan sends, unless it runs with `--manual` or on a backend that cannot send commands.
pub fn runbook(
    plan: &Plan,
    instructions: &[Instruction],
    by_hand: &std::collections::HashSet<String>,
    markdown: bool,
) -> String {
    let who = |step: &str| {
        if by_hand.contains(step) {
            "by hand"
        } else {
            "mkplan sends it; by hand with --manual"
        }
    };
    let mut out = String::new();
    let (people, pins) = attendance(plan, instructions);
    let pins_by_hand: u32 = instructions
        .iter()
        .filter(|i| by_hand.contains(&i.step))
        .map(|i| i.pin_entries)
        .sum();
    let rewraps = instructions
        .iter()
        .filter(|i| i.action == Action::RewrapKeyStorage)
        .count();
    if markdown {
        let _ = writeln!(out, "# Runbook: master key rotation\n");
        let _ = writeln!(
            out,
            "Desired file `{}`, desired SHA-256 `{}`, live state fingerprint `{}`.\n",
            plan.desired_file.as_deref().unwrap_or("?"),
            plan.desired_sha256,
            plan.live_fingerprint
        );
        let _ = writeln!(
            out,
            "**{} steps**, {} by hand; PIN entries (smart cards): {pins_by_hand} for the steps by hand, at most {pins} if every step is done by hand; {} rewrap(s). Present during the window:\n",
            instructions.len(),
            by_hand.len(),
            rewraps
        );
        for person in &people {
            let _ = writeln!(out, "- {person}");
        }
        let _ = writeln!(
            out,
            "\nRun it with `mkplan apply {}{}`: mkplan sends what it can and stops at each step by hand; `--manual` makes every step a step by hand. For each, mkplan shows it, waits, and checks the live state before it ticks the step off in its journal. Never start a step before the steps it depends on are ticked.\n",
            plan.desired_file.as_deref().unwrap_or("DESIRED.yaml"),
            plan.targeted
                .iter()
                .map(|id| format!(" --instance {id}"))
                .collect::<String>()
        );
        if !plan.left_out.is_empty() {
            let _ = writeln!(out, "> {}\n", super::left_out_markdown(&plan.left_out));
        }
        for instruction in instructions {
            let irreversible = !instruction.action.reversible();
            let _ = writeln!(
                out,
                "## {}\n\n- [ ] done, and mkplan's check passed\n",
                title(instruction, "`")
            );
            if instruction.action == Action::RewrapKeyStorage {
                let _ = writeln!(
                    out,
                    "> **Point of no return.** After this step, never rewrap again and never clear a new register holding the new key: the only way forward is set immediate.\n"
                );
            } else if irreversible {
                let _ = writeln!(out, "> Irreversible.\n");
            }
            let _ = writeln!(out, "| | |\n|---|---|");
            let _ = writeln!(out, "| who | {} |", who(&instruction.step));
            let _ = writeln!(out, "| after | {} |", depends(plan, &instruction.step));
            if let Some(location) = &instruction.location {
                let _ = writeln!(out, "| location | `{location}` |");
            }
            let _ = writeln!(out, "| TKE CLI | `{}` |", instruction.tke_cli);
            let _ = writeln!(out, "| TKE application | {} |", instruction.tke_application);
            let _ = writeln!(out, "| present | {} |", instruction.present.join("; "));
            let _ = writeln!(out, "| PIN entries | {} |", instruction.pin_entries);
            let _ = writeln!(out, "| afterwards | {} |", instruction.expected);
            let _ = writeln!(out, "| mkplan checks | {} |\n", instruction.verified_by);
        }
        return out;
    }
    let _ = writeln!(
        out,
        "RUNBOOK: master key rotation, {} steps ({} by hand), PIN entries: {pins_by_hand} (at most {pins} with every step by hand)",
        instructions.len(),
        by_hand.len()
    );
    let _ = writeln!(
        out,
        "desired {} (sha256 {})",
        plan.desired_file.as_deref().unwrap_or("?"),
        plan.desired_sha256
    );
    if !plan.left_out.is_empty() {
        let _ = writeln!(out, "{}", super::left_out_line(&plan.left_out));
    }
    let _ = writeln!(
        out,
        "present: {}",
        people.into_iter().collect::<Vec<_>>().join("; ")
    );
    for instruction in instructions {
        let _ = writeln!(
            out,
            "\n[ ] {}   (after: {}; {})",
            title(instruction, ""),
            depends(plan, &instruction.step),
            who(&instruction.step)
        );
        if instruction.action == Action::RewrapKeyStorage {
            let _ = writeln!(
                out,
                "    POINT OF NO RETURN: afterwards only set immediate goes forward"
            );
        }
        let _ = writeln!(out, "    TKE CLI:          {}", instruction.tke_cli);
        let _ = writeln!(out, "    TKE application:  {}", instruction.tke_application);
        let _ = writeln!(
            out,
            "    present:          {}",
            instruction.present.join("; ")
        );
        let _ = writeln!(out, "    afterwards:       {}", instruction.expected);
        let _ = writeln!(out, "    mkplan checks:    {}", instruction.verified_by);
    }
    out
}
