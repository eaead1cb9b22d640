//! The audit trail (`.mkplan/audit.jsonl`, or a team's database's trail as text), walked by
//! `audit verify` and before every apply: `audit::verify_text`. A trail that verifies,
//! extended by mkplan's own writer, still verifies, with the entries and head the writer says,
//! and the journal's anchors at those heads hold (`verify_text_anchored`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkplan::apply::audit::{verify_text, verify_text_anchored};
use mkplan::apply::journal::{AuditHead, Record};
use mkplan::fuzzing::extend_audit;
use mkplan_fuzz::assert_inert_line;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let verified = match verify_text(text) {
        Ok(verified) => verified,
        Err(broken) => return assert_inert_line("audit trail", &broken),
    };
    assert_eq!(verified.entries, text.lines().count() as u64);
    let events = vec![
        serde_json::json!({"event": "fuzz", "n": 1}),
        serde_json::Value::Null,
    ];
    let extended = format!("{text}{}", extend_audit(&verified, 1_800_000_000, events));
    let again = verify_text(&extended)
        .unwrap_or_else(|e| panic!("a trail extended by mkplan does not verify: {e}\n{extended}"));
    assert_eq!(again.entries, verified.entries + 2);
    let anchors = [
        Record::AuditAnchored {
            audit: AuditHead {
                entries: verified.entries,
                head: verified.last_hash.clone(),
            },
            at: None,
        },
        Record::AuditAnchored {
            audit: AuditHead {
                entries: again.entries,
                head: again.last_hash.clone(),
            },
            at: None,
        },
    ];
    let (_, anchored) = verify_text_anchored(&extended, &anchors)
        .unwrap_or_else(|e| panic!("the trail's own heads are not held: {e}"));
    assert_eq!(anchored.entries, verified.entries + 2);
});
