//! The JSON documents mkplan prints, each with a top-level `format_version` so that a script
//! can tell which shape it reads. The versions are listed here, in one place; the shapes are
//! described for users in docs/json.md and checked against docs/schemas/*.schema.json.
//!
//! The policy (docs/json.md): a change that only adds (a new field, a new value of an open
//! enumeration) keeps the version; any other change bumps it. Versions are whole numbers
//! written as JSON strings (`"1"`), as the plan file has always carried them.

use serde::Serialize;

use crate::model::LiveFleet;
use crate::plan::PlanRefused;

/// `plan --json`, `show --json`, and the plan files of `plan --out` (`crate::plan::Plan`
/// carries it as a field, since `apply` and `show` read plan files back).
pub use crate::plan::PLAN_FORMAT_VERSION;
/// `plan --json` when the plan is refused: `{ "refusals": [...] }`.
pub const REFUSAL_FORMAT_VERSION: &str = "1";
/// `status --json`: the live state.
pub const STATUS_FORMAT_VERSION: &str = "1";
/// `drill --json`: the drill's result.
pub const DRILL_FORMAT_VERSION: &str = "1";
/// `cards --json`: the smart card readers.
pub const CARDS_FORMAT_VERSION: &str = "1";

/// A document's fields after its `format_version`.
#[derive(Serialize)]
struct Versioned<'a, T: Serialize> {
    format_version: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

/// `body` (a struct or a JSON object) with `format_version` first, pretty-printed.
pub fn versioned_json<T: Serialize>(format_version: &str, body: &T) -> String {
    serde_json::to_string_pretty(&Versioned {
        format_version,
        body,
    })
    .expect("mkplan's documents serialize")
}

/// The refusal of a plan: every refused instance with its pre-check, crypto units and fix.
pub fn refusal_json(refused: &PlanRefused) -> String {
    versioned_json(REFUSAL_FORMAT_VERSION, refused)
}

/// The live state, as `status --json` prints it. Its fingerprint (`LiveFleet::fingerprint`)
/// is over the live state alone, without the version.
pub fn status_json(live: &LiveFleet) -> String {
    versioned_json(STATUS_FORMAT_VERSION, live)
}

/// `status_json` with the store's part: who holds the lock, which rotations are open
/// (`cli::state::status_state`).
pub fn status_json_with_state(live: &LiveFleet, state: &serde_json::Value) -> String {
    #[derive(Serialize)]
    struct WithState<'a> {
        #[serde(flatten)]
        live: &'a LiveFleet,
        state: &'a serde_json::Value,
    }
    versioned_json(STATUS_FORMAT_VERSION, &WithState { live, state })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Check, Refusal};

    #[test]
    fn the_version_comes_first_and_the_body_follows_unchanged() {
        let refused = PlanRefused {
            refusals: vec![Refusal::new("i", Check::AdminMode, "u2 in imprint mode").fix("f")],
        };
        let text = refusal_json(&refused);
        assert!(
            text.starts_with("{\n  \"format_version\": \"1\",\n  \"refusals\""),
            "{text}"
        );
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value.as_object_mut().unwrap().remove("format_version");
        assert_eq!(value, serde_json::to_value(&refused).unwrap());
    }

    #[test]
    fn the_status_document_does_not_change_the_fingerprint() {
        let live = LiveFleet::default();
        let before = live.fingerprint();
        let text = status_json(&live);
        assert!(text.contains("\"format_version\": \"1\""), "{text}");
        assert_eq!(live.fingerprint(), before);
    }
}
