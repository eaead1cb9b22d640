//! A refused plan for a pull request: the reviewers see why nothing was planned, in the same
//! place the plan would have gone. Per refused service instance: the pre-check by name, what
//! failed (each witness's word on the key storage, when evidence was the matter), the crypto
//! units with their values, and the fix. Kept under `MARKDOWN_LEN_MAX` like the plan.

use std::fmt::Write;

use super::markdown::MARKDOWN_LEN_MAX;
use super::plural;
use crate::plan::{PlanRefused, Refusal};

/// Room kept for the closing note about refusals left out.
const CLOSING_RESERVE: usize = 400;

pub fn refusal_markdown(refused: &PlanRefused, source: &str) -> String {
    let mut out = String::new();
    let instances = refused
        .refusals
        .iter()
        .map(|r| r.instance.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let _ = writeln!(
        out,
        "### mkplan plan: refused for safety, {}\n",
        plural(instances, "service instance", "service instances")
    );
    let _ = writeln!(out, "`{}`\n", inline_code(source));
    let _ = writeln!(
        out,
        "Nothing was planned and nothing was touched: {}. Fix what each one says, then plan again.\n",
        plural(
            refused.refusals.len(),
            "pre-check failed",
            "pre-checks failed"
        )
    );
    let mut shown = 0;
    for refusal in &refused.refusals {
        let section = section(refusal);
        if out.len() + section.len() + CLOSING_RESERVE > MARKDOWN_LEN_MAX {
            break;
        }
        out.push_str(&section);
        shown += 1;
    }
    let left_out = refused.refusals.len() - shown;
    if left_out > 0 {
        let _ = writeln!(
            out,
            "> {} not shown to stay under {MARKDOWN_LEN_MAX} characters: see them all with `mkplan plan DESIRED.yaml --json`.",
            plural(left_out, "refusal", "refusals")
        );
    }
    out
}

fn section(refusal: &Refusal) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "#### ⛔ Service instance `{}`: pre-check “{}” (`{}`) failed\n",
        inline_code(&refusal.instance),
        refusal.check.title(),
        refusal.check.id()
    );
    // The detail is a sentence, then (for evidence) one `- witness: …` line per witness.
    let mut in_list = false;
    for line in refusal.detail.lines() {
        let item = line.strip_prefix("- ");
        if item.is_some() && !in_list {
            out.push('\n');
        }
        in_list = item.is_some();
        match item {
            Some(item) => {
                let _ = writeln!(out, "- {}", escape(item));
            }
            None => {
                let _ = writeln!(out, "{}", escape(line));
            }
        }
    }
    out.push('\n');
    if !refusal.units.is_empty() {
        let _ = writeln!(out, "| crypto unit | type | value |\n|---|---|---|");
        for unit in &refusal.units {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                inline_code(&unit.hsm_id),
                escape(&unit.unit_type),
                escape(&unit.value)
            );
        }
        out.push('\n');
    }
    if !refusal.fix.is_empty() {
        let _ = writeln!(out, "**Fix:** {}\n", escape(&refusal.fix));
    }
    out
}

/// Text from the live state, safe in a Markdown paragraph or table cell: no HTML, no cell break.
fn escape(text: &str) -> String {
    text.replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
}

/// Text inside backticks: a backtick would end the code span early.
fn inline_code(text: &str) -> String {
    text.replace('`', "'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Check, UnitValue};

    fn refused() -> PlanRefused {
        let unit = UnitValue {
            hsm_id: "a0000000-0000-4000-8000-000000000002".into(),
            unit_type: "operational".into(),
            value: "mode imprint | <b>".into(),
        };
        PlanRefused {
            refusals: vec![
                Refusal::new(
                    "5b2e",
                    Check::RewrapEvidence,
                    "cannot tell whether the rewrap ran:\n- service: does not report its rotation status\n- journal: none",
                )
                .units(vec![unit])
                .fix("attest what you know"),
            ],
        }
    }

    #[test]
    fn names_the_check_the_witnesses_the_units_and_the_fix() {
        let text = refusal_markdown(&refused(), "desired.yaml against sim:fleet.yaml");
        assert!(
            text.starts_with("### mkplan plan: refused for safety, 1 service instance\n"),
            "{text}"
        );
        assert!(text.contains("(`rewrap_evidence`) failed"), "{text}");
        assert!(
            text.contains(
                "cannot tell whether the rewrap ran:\n\n- service: does not report its rotation status\n- journal: none\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| `a0000000-0000-4000-8000-000000000002` | operational | mode imprint \\| &lt;b&gt; |"
            ),
            "{text}"
        );
        assert!(text.contains("**Fix:** attest what you know"), "{text}");
    }

    #[test]
    fn stays_under_the_length_limit() {
        let one = refused().refusals.remove(0);
        let many = PlanRefused {
            refusals: vec![one; 2_000],
        };
        let text = refusal_markdown(&many, "x");
        assert!(text.len() <= MARKDOWN_LEN_MAX, "{}", text.len());
        assert!(text.contains("not shown to stay under"), "{text}");
    }
}
