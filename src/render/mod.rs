//! Views: pure functions from a plan (or a live state, or a refusal) to what a person or a
//! program reads. Only the command layer prints; these only build strings.

mod documents;
mod dot;
mod markdown;
mod refusal;
mod runbook;
mod status;
mod table;
mod text;

pub use documents::{
    CARDS_FORMAT_VERSION, DRILL_FORMAT_VERSION, PLAN_FORMAT_VERSION, REFUSAL_FORMAT_VERSION,
    STATUS_FORMAT_VERSION, refusal_json, status_json, versioned_json,
};
pub use dot::dot;
pub use markdown::{MARKDOWN_LEN_MAX, markdown};
pub use refusal::refusal_markdown;
pub use runbook::runbook;
pub use status::status;
pub use text::text;

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
