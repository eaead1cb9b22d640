//! The write-ahead journal (`.mkplan/journal.jsonl`), which anyone who can write the state
//! folder can change. Two readings of each input:
//!
//! 1. As the file: `journal::parse` with a fixed journal key, as `Journal::open` reads it.
//!    The fuzzer cannot forge a seal: what it changes is read as `Unauthenticated`, or
//!    refused as damage.
//! 2. As a team's database's rows: each line with the checksum it names, as
//!    `journal::shared_record` reads a row (a database's owner can change rows).
//! 3. As records: each line a record (or a journal line, whose record is taken), sealed by
//!    mkplan's own writer, read back (all authenticated, unchanged: write → read is stable),
//!    then taken as evidence by the planner against the example fleet, as `plan` does; and
//!    written as a database's rows (`shared_lines`), which read back the same.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mkplan::apply::evidence::{journal_evidence_at, unsettled};
use mkplan::apply::journal::{JournalError, Record, shared_lines, shared_record};
use mkplan::backend::sim::Fleet;
use mkplan::fuzzing::{journal_key, read_journal, write_journal};
use mkplan::model::{DesiredState, LiveFleet, parse_desired};
use mkplan_fuzz::assert_inert_line;

/// The time now for attestations' age: fixed, so that a run replays.
const NOW_UNIX: u64 = 1_800_000_000;

static EXAMPLE: LazyLock<(DesiredState, LiveFleet)> = LazyLock::new(|| {
    let desired = include_str!("../../plans/three-units.yaml");
    let fleet = include_str!("../../examples/fleets/three-units.yaml");
    let desired =
        parse_desired("three-units.yaml", desired, std::path::Path::new("plans")).unwrap();
    let fleet = Fleet::parse("three-units.yaml", fleet).unwrap();
    let live = LiveFleet {
        instances: fleet.instances.iter().map(|i| i.live()).collect(),
    };
    (desired, live)
});

fuzz_target!(|data: &[u8]| {
    let key = journal_key();
    match read_journal(data, Some(&key)) {
        Ok((_, intact)) => assert!(intact <= data.len()),
        Err(error @ JournalError::Corrupt { line, lines, .. }) => {
            assert!(line >= 1 && line < lines, "{error}");
            assert_inert_line("journal", &error.to_string());
        }
        Err(error) => panic!("reading bytes is no I/O: {error}"),
    }

    for line in data.split(|b| *b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let named = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("sha256")?.as_str().map(str::to_string))
            .unwrap_or_default();
        if let Err(why) = shared_record(line, &named) {
            assert_inert_line("journal row", &why);
        }
    }

    let records: Vec<Record> = data
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            serde_json::from_slice::<Record>(line).ok().or_else(|| {
                let value: serde_json::Value = serde_json::from_slice(line).ok()?;
                serde_json::from_value(value.get("record")?.clone()).ok()
            })
        })
        .collect();
    let written = write_journal(&key, &records);
    let (read, intact) = read_journal(written.as_bytes(), Some(&key))
        .unwrap_or_else(|e| panic!("mkplan's own journal does not read back: {e}\n{written}"));
    assert_eq!(intact, written.len());
    assert_eq!(
        read, records,
        "records changed through the journal:\n{written}"
    );
    for (row, record) in shared_lines(&records).iter().zip(&records) {
        let again = shared_record(&row.line, &row.sha256)
            .unwrap_or_else(|e| panic!("a row as written does not read back: {e}\n{}", row.line));
        assert_eq!(&again, record);
    }

    let backend = records
        .iter()
        .find_map(|r| match r {
            Record::ApplyStarted { backend, .. } => backend.clone(),
            _ => None,
        })
        .unwrap_or_default();
    let evidence = journal_evidence_at(&records, &backend, "the journal", Some(NOW_UNIX));
    let _ = unsettled(&records);
    let (desired, live) = &*EXAMPLE;
    if let Err(refused) = mkplan::plan::plan(desired, "0", live, &evidence) {
        let _ = refused.to_string();
    }
});
