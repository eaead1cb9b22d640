//! Tests of the journal: reopening, torn tails, damage, seals, forged and removed lines.

use std::fs;

use super::*;
use crate::plan::Action;

fn key() -> &'static JournalKey {
    static KEY: std::sync::OnceLock<JournalKey> = std::sync::OnceLock::new();
    KEY.get_or_init(JournalKey::ephemeral)
}

fn intent(step: &str) -> Record {
    Record::Intent {
        step: step.into(),
        action: Action::RewrapKeyStorage,
        instance: "i".into(),
        unit: None,
        by_hand: false,
        send_within_ms: None,
        at: None,
    }
}

#[test]
fn records_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), key()).unwrap();
    journal.append(intent("s1")).unwrap();
    journal
        .append(Record::Outcome {
            step: "s1".into(),
            outcome: Outcome::Done,
            at: None,
        })
        .unwrap();
    drop(journal);
    let journal = Journal::open(dir.path(), key()).unwrap();
    assert_eq!(journal.records().len(), 2);
    assert_eq!(journal.records()[0], intent("s1"));
}

#[test]
fn a_torn_tail_is_dropped_and_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), key()).unwrap();
    journal.append(intent("s1")).unwrap();
    drop(journal);
    let path = dir.path().join("journal.jsonl");
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(b"{\"sha256\":\"00\",\"record\":{\"kind\":\"inte")
        .unwrap();
    drop(file);
    let mut journal = Journal::open(dir.path(), key()).unwrap();
    assert_eq!(journal.records().len(), 1);
    journal.append(intent("s2")).unwrap();
    drop(journal);
    assert_eq!(Journal::open(dir.path(), key()).unwrap().records().len(), 2);
}

#[test]
fn a_flipped_bit_in_the_middle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), key()).unwrap();
    journal.append(intent("s1")).unwrap();
    journal.append(intent("s2")).unwrap();
    drop(journal);
    let path = dir.path().join("journal.jsonl");
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.iter().position(|b| *b == b'1').unwrap();
    bytes[at] ^= 0x02;
    fs::write(&path, &bytes).unwrap();
    let error = Journal::open(dir.path(), key())
        .err()
        .expect("corrupt journal refused");
    assert!(error.to_string().contains("line 1 of 2"), "{error}");
}

/// A line written by someone without the key (its checksum recomputed) is read, but as
/// unauthenticated; the genuine lines stay evidence; a line removed voids every line
/// after it; a reader without the key authenticates nothing.
#[test]
fn a_forged_line_is_read_as_unauthenticated_and_a_removed_one_voids_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path(), key()).unwrap();
    for step in ["s1", "s2", "s3"] {
        journal.append(intent(step)).unwrap();
    }
    drop(journal);
    let path = dir.path().join("journal.jsonl");
    let text = fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let forged = intent("forged");
    let forged = serde_json::to_string(&Line {
        sha256: checksum(&forged),
        seal: Some(format!("{}:{}", key().id(), "ab".repeat(32))),
        record: forged,
    })
    .unwrap();
    lines.insert(1, forged);
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    let records = Journal::read(dir.path(), Some(key())).unwrap();
    let authentic: Vec<bool> = records
        .iter()
        .map(|r| !matches!(r, Record::Unauthenticated { .. }))
        .collect();
    assert_eq!(authentic, [true, false, true, true]);
    assert!(matches!(
        &records[1],
        Record::Unauthenticated {
            line: 2,
            why: SealFault::Mismatch,
            ..
        }
    ));
    let unkeyed = Journal::read(dir.path(), None).unwrap();
    assert!(unkeyed.iter().all(|r| matches!(
        r,
        Record::Unauthenticated {
            why: SealFault::NoKey,
            ..
        }
    )));
    // Appending after the forgery chains to the last line that verified.
    let mut journal = Journal::open(dir.path(), key()).unwrap();
    journal.append(intent("s4")).unwrap();
    let records = Journal::read(dir.path(), Some(key())).unwrap();
    assert!(!matches!(records[4], Record::Unauthenticated { .. }));
    // Removing a genuine line (s2) voids every line after it.
    let text = fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| !l.contains("\"s2\"")).collect();
    fs::write(&path, kept.join("\n") + "\n").unwrap();
    let authentic: Vec<bool> = Journal::read(dir.path(), Some(key()))
        .unwrap()
        .iter()
        .map(|r| !matches!(r, Record::Unauthenticated { .. }))
        .collect();
    assert_eq!(authentic, [true, false, false, false]);
}

/// Found by fuzzing (`fuzz/fuzz_targets/journal_lines.rs`): the parser's words about a
/// database row that is no journal record quoted its key raw, a newline or an escape
/// included, at any length, into the "damaged" message.
#[test]
fn a_row_that_is_no_record_is_reported_cut_and_inert() {
    let key = format!("ru\\n8d53\\u001b[2Jforged line {}", "x".repeat(100_000));
    let why = shared_record(&format!("{{\"{key}\": 1}}"), "").unwrap_err();
    assert!(
        why.starts_with("it is not a journal record (unknown field `ru"),
        "{why}"
    );
    assert!(why.contains("forged line"), "{why}");
    assert!(why.len() < 1_000, "{} bytes", why.len());
    assert!(!why.chars().any(crate::quote::is_control_like), "{why}");
}
