//! Views: pure functions from a plan (or a live state, or a refusal) to what a person or a
//! program reads. Only the command layer prints; these only build strings.

mod documents;
pub mod domain_group;
pub mod domain_group_markdown;
mod dot;
mod markdown;
mod mermaid;
pub mod paint;
mod refusal;
mod runbook;
mod status;
mod table;
mod text;

pub use documents::{
    CARDS_FORMAT_VERSION, DRILL_FORMAT_VERSION, PLAN_FORMAT_VERSION, REFUSAL_FORMAT_VERSION,
    STATUS_FORMAT_VERSION, refusal_json, status_json, status_json_with_state, versioned_json,
};
pub use dot::dot;
pub use markdown::{MARKDOWN_LEN_MAX, markdown};
pub use refusal::refusal_markdown;
pub use runbook::runbook;
pub use status::{status, status_fitted};
pub use text::{text, text_in_colour};

use crate::plan::{Action, Plan};

/// The plan JSON of contract.md, pretty-printed. Its bytes are also what the journal's
/// plan hash covers (`apply::session::plan_sha256`).
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).expect("a plan serializes")
}

/// "3 load_new_mk, 1 rewrap_key_storage, …": the counts of a plan, one per action, in
/// runbook order, the zeros included so reviewers can read every line the same way.
pub(crate) fn counts(plan: &Plan) -> Vec<(Action, usize)> {
    Action::ALL.iter().map(|a| (*a, plan.count(*a))).collect()
}

pub(crate) fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// Service instances a "left out" line names at most; the plan JSON has them all.
pub const LEFT_OUT_SHOWN_MAX: usize = 20;

/// "Left out by --instance: A, B (not refreshed, not planned, not applied)": the desired
/// file's service instances that a plan limited by `--instance` does not cover.
pub fn left_out_line(ids: &[String]) -> String {
    left_out_because(ids, PLAN_LEFT_OUT)
}

/// The same for another command: `why` says what it did not do with them.
pub fn left_out_because(ids: &[String], why: &str) -> String {
    left_out(ids, "Left out by --instance", why, |id| id.to_string())
}

const PLAN_LEFT_OUT: &str = "not refreshed, not planned, not applied";

/// The same, for Markdown.
pub(crate) fn left_out_markdown(ids: &[String]) -> String {
    left_out(ids, "**Left out by `--instance`**", PLAN_LEFT_OUT, |id| {
        format!("`{id}`")
    })
}

fn left_out(ids: &[String], lead: &str, why: &str, quote: fn(&str) -> String) -> String {
    let mut shown: Vec<String> = ids
        .iter()
        .take(LEFT_OUT_SHOWN_MAX)
        .map(|id| quote(id))
        .collect();
    if ids.len() > LEFT_OUT_SHOWN_MAX {
        shown.push(format!("and {} more", ids.len() - LEFT_OUT_SHOWN_MAX));
    }
    format!("{lead}: {} ({why}).", shown.join(", "))
}

/// The smart-card ceremony an instance needs, in one line.
pub fn ceremony_line(ceremony: &crate::plan::CeremonyNeeds) -> String {
    format!(
        "ceremony with smart cards: key part cards of {} in readers matching {}; administrators {} (up to {} signatures in one step, signature cards in the signature reader); {} PIN entries",
        ceremony.key_part_holders.join(", "),
        ceremony
            .key_part_readers
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        ceremony.administrators.join(", "),
        ceremony.signatures_max,
        ceremony.pin_entries
    )
}
