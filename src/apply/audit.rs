//! The audit trail: a hash-chained JSON-lines log of every apply in the state directory
//! (`audit.jsonl`). Each entry carries the SHA-256 of the previous entry's line, so editing,
//! removing or reordering any entry breaks the chain at that point; `mkplan audit verify`
//! finds the first broken link. Entries hold register states and VPs, never a secret.
//!
//! A chain alone cannot show that its last entries were removed. The journal anchors it: each
//! run's start and end record the trail's head in a sealed journal record, and
//! `verify_anchored` checks the trail still holds every anchored entry.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::journal::{AuditHead, Record};

/// The hash the first entry links to.
pub const CHAIN_START: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    seq: u64,
    /// SHA-256 of the previous line (without its newline), or `CHAIN_START`.
    prev: String,
    /// Seconds since the Unix epoch, UTC.
    time: u64,
    event: Value,
}

pub struct Audit {
    sink: Sink,
    seq: u64,
    prev: String,
}

enum Sink {
    /// `audit.jsonl` in a state folder.
    File {
        path: PathBuf,
        file: File,
        /// False only for a drill's scratch trail (see `Journal::open_scratch`).
        sync: bool,
    },
    /// A store shared by a team, which chains the entries of all its writers.
    Shared(Box<dyn SharedAudit>),
}

/// An audit trail kept by a shared store: it builds each entry's line itself (the entry
/// before may be another writer's) and returns the trail's head after the batch.
pub trait SharedAudit: Send {
    fn describe(&self) -> String;
    /// Queues one entry per event (each the event's JSON text), stamped `time`: they go out
    /// with the journal's next write, saving a round trip, or at `flush`.
    fn defer(&mut self, events: Vec<String>, time: u64);
    /// Writes what is queued; returns the trail's head if anything was written since the last
    /// flush, with the journal or now.
    fn flush(&mut self) -> Result<Option<AuditHead>, String>;
    fn head(&mut self) -> Result<AuditHead, String>;
}

#[derive(Debug, thiserror::Error)]
#[error("audit trail {path}: {why}")]
pub struct AuditError {
    pub path: String,
    pub why: String,
}

impl Audit {
    /// Opens the trail for appending, checking its chain first: a broken trail is not
    /// extended (the break would be hidden under new entries).
    pub fn open(state_dir: &Path) -> Result<Self, AuditError> {
        let path = state_dir.join("audit.jsonl");
        let error = |why: String| AuditError {
            path: path.display().to_string(),
            why,
        };
        super::state_dir::prepare(state_dir).map_err(error)?;
        let (seq, prev) = match verify(&path) {
            Ok(Verified {
                entries, last_hash, ..
            }) => (entries, last_hash),
            Err(broken) => {
                return Err(error(format!(
                    "{broken}; run `mkplan audit verify` and keep the file for investigation"
                )));
            }
        };
        let file = super::state_dir::open(&path, OpenOptions::new().append(true))
            .map_err(|e| error(e.to_string()))?;
        Ok(Self {
            sink: Sink::File {
                path,
                file,
                sync: true,
            },
            seq,
            prev,
        })
    }

    /// A trail whose entries are written but not fsynced: for a drill's scratch state
    /// directory only.
    pub fn open_scratch(state_dir: &Path) -> Result<Self, AuditError> {
        let mut audit = Self::open(state_dir)?;
        if let Sink::File { sync, .. } = &mut audit.sink {
            *sync = false;
        }
        Ok(audit)
    }

    /// A trail kept by a shared store (whose chain the caller has checked).
    pub fn shared(mut store: Box<dyn SharedAudit>) -> Result<Self, AuditError> {
        let head = store.head().map_err(|why| AuditError {
            path: store.describe(),
            why,
        })?;
        Ok(Self {
            sink: Sink::Shared(store),
            seq: head.entries,
            prev: head.head,
        })
    }

    /// The trail's head, for a journal record to anchor.
    pub fn head(&self) -> AuditHead {
        AuditHead {
            entries: self.seq,
            head: self.prev.clone(),
        }
    }

    pub fn record(&mut self, event: Value) -> Result<(), AuditError> {
        self.record_all(vec![event])
    }

    /// Appends several entries with one fsync.
    pub fn record_all(&mut self, events: Vec<Value>) -> Result<(), AuditError> {
        self.write_all(events)?;
        self.sync()
    }

    /// Forces the entries written so far to disk.
    pub fn sync(&mut self) -> Result<(), AuditError> {
        match &mut self.sink {
            Sink::File {
                path,
                file,
                sync: true,
            } => file.sync_data().map_err(|e| AuditError {
                path: path.display().to_string(),
                why: e.to_string(),
            }),
            // A shared store: what the journal has not carried yet goes now.
            Sink::Shared(store) => {
                let head = store.flush().map_err(|why| AuditError {
                    path: store.describe(),
                    why,
                })?;
                if let Some(head) = head {
                    self.seq = head.entries;
                    self.prev = head.head;
                }
                Ok(())
            }
            Sink::File { .. } => Ok(()),
        }
    }

    /// Appends entries without waiting for the disk (or, on a shared store, for a round trip
    /// of their own: they go with the journal's next write): the executor's step entries,
    /// synced when the run ends. The journal, not the audit trail, is what a rerun relies on, and it is
    /// synced before every operation; an entry lost to a power cut leaves the chain intact,
    /// only shorter.
    pub fn write_all(&mut self, events: Vec<Value>) -> Result<(), AuditError> {
        if events.is_empty() {
            return Ok(());
        }
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (path, file) = match &mut self.sink {
            Sink::File { path, file, .. } => (path, file),
            Sink::Shared(store) => {
                // The head is known again after `sync`.
                store.defer(events.iter().map(Value::to_string).collect(), time);
                return Ok(());
            }
        };
        let (text, seq, prev) = chained_lines(self.seq, &self.prev, time, events);
        let error = |e: std::io::Error| AuditError {
            path: path.display().to_string(),
            why: e.to_string(),
        };
        file.write_all(text.as_bytes()).map_err(error)?;
        self.seq = seq;
        self.prev = prev;
        Ok(())
    }
}

/// The lines that extend a trail of `seq` entries whose last line hashes to `prev` with
/// `events`, stamped `time`; and the trail's new entry count and head.
pub(crate) fn chained_lines(
    mut seq: u64,
    prev: &str,
    time: u64,
    events: Vec<Value>,
) -> (String, u64, String) {
    let mut prev = prev.to_string();
    let mut text = String::new();
    for event in events {
        let entry = Entry {
            seq: seq + 1,
            prev,
            time,
            event,
        };
        let line = serde_json::to_string(&entry).expect("audit entries serialize");
        seq += 1;
        prev = hex::encode(Sha256::digest(line.as_bytes()));
        text += &line;
        text.push('\n');
    }
    (text, seq, prev)
}

#[derive(Debug)]
pub struct Verified {
    pub entries: u64,
    pub last_hash: String,
    /// The hash of each entry's line, in order.
    hashes: Vec<String>,
}

/// What the journal's anchors say of an intact trail.
#[derive(Debug, PartialEq, Eq)]
pub struct Anchored {
    /// The most entries a sealed journal record saw the trail hold.
    pub entries: u64,
    /// Anchors in records that are not authenticated: not checked.
    pub unauthenticated: usize,
}

/// Walks the chain, then checks it against the audit heads that the journal's authenticated
/// `records` anchored: the trail must still hold each anchored entry, unchanged.
pub fn verify_anchored(path: &Path, records: &[Record]) -> Result<(Verified, Anchored), String> {
    verify_text_anchored(&read(path)?, records)
}

/// `verify_anchored` over a trail's text, from any store.
pub fn verify_text_anchored(
    text: &str,
    records: &[Record],
) -> Result<(Verified, Anchored), String> {
    let verified = verify_text(text)?;
    let mut anchored = Anchored {
        entries: 0,
        unauthenticated: 0,
    };
    for record in records {
        let head = match record {
            Record::ApplyStarted {
                audit: Some(head), ..
            }
            | Record::AuditAnchored { audit: head, .. } => head,
            Record::Unauthenticated { record, .. }
                if matches!(
                    **record,
                    Record::ApplyStarted { audit: Some(_), .. } | Record::AuditAnchored { .. }
                ) =>
            {
                anchored.unauthenticated += 1;
                continue;
            }
            _ => continue,
        };
        let held = match head.entries {
            0 => Some(CHAIN_START),
            n => usize::try_from(n - 1)
                .ok()
                .and_then(|i| verified.hashes.get(i))
                .map(String::as_str),
        };
        match held {
            None => {
                return Err(format!(
                    "it holds {} entries, but the journal (a sealed record) saw it hold {}: its last entries were removed",
                    verified.entries, head.entries
                ));
            }
            Some(hash) if hash != head.head => {
                return Err(format!(
                    "its entry {} is not the one the journal (a sealed record) anchored: entries up to it were replaced",
                    head.entries
                ));
            }
            Some(_) => anchored.entries = anchored.entries.max(head.entries),
        }
    }
    Ok((verified, anchored))
}

/// Walks the chain. A missing file is an empty, valid trail.
pub fn verify(path: &Path) -> Result<Verified, String> {
    verify_text(&read(path)?)
}

fn read(path: &Path) -> Result<String, String> {
    match super::state_dir::read(path) {
        Ok(Some(bytes)) => String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string()),
        Ok(None) => Ok(String::new()),
        Err(e) => Err(format!("cannot read it: {e}")),
    }
}

/// Walks the chain of a trail's text, one entry per line.
pub fn verify_text(text: &str) -> Result<Verified, String> {
    let mut prev = CHAIN_START.to_string();
    let mut count = 0u64;
    let mut hashes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        // The parser's words quote the line (`unknown field …`): cut and made inert, so that
        // a line of the file cannot flood the message or forge a line of its own.
        let entry: Entry = serde_json::from_str(line).map_err(|e| {
            format!(
                "line {number} is not an audit entry ({})",
                crate::quote::message(&e.to_string())
            )
        })?;
        if entry.seq != count + 1 {
            return Err(format!(
                "first broken link at line {number}: sequence number {} where {} was expected (an entry was removed or reordered)",
                entry.seq,
                count + 1
            ));
        }
        if entry.prev != prev {
            return Err(format!(
                "first broken link at line {number}: it does not link to the entry before it (that entry, or this one, was altered)"
            ));
        }
        prev = hex::encode(Sha256::digest(line.as_bytes()));
        hashes.push(prev.clone());
        count += 1;
    }
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(format!("the last line ({count}) is incomplete"));
    }
    Ok(Verified {
        entries: count,
        last_hash: prev,
        hashes,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use serde_json::json;

    #[test]
    fn a_chain_verifies_and_any_edit_breaks_it_where_it_was_made() {
        let dir = tempfile::tempdir().unwrap();
        let mut audit = Audit::open(dir.path()).unwrap();
        for n in 0..4 {
            audit.record(json!({"kind": "step", "n": n})).unwrap();
        }
        drop(audit);
        let path = dir.path().join("audit.jsonl");
        assert_eq!(verify(&path).unwrap().entries, 4);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replacen("\"n\":2", "\"n\":7", 1)).unwrap();
        let broken = verify(&path).unwrap_err();
        assert!(broken.contains("line 4"), "{broken}");
        assert!(
            Audit::open(dir.path()).is_err(),
            "a broken trail is not extended"
        );
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(1);
        fs::write(&path, lines.join("\n") + "\n").unwrap();
        assert!(verify(&path).unwrap_err().contains("line 2"));
    }

    /// Found by fuzzing (`fuzz/fuzz_targets/audit_lines.rs`): the parser's words about a line
    /// that is no entry quoted its key raw, a newline or an escape included, at any length.
    #[test]
    fn a_line_that_is_no_entry_is_reported_cut_and_inert() {
        let key = format!("s\\u001b[2J\\nforged line {}", "x".repeat(100_000));
        let broken = verify_text(&format!("{{\"{key}\": 1}}\n")).unwrap_err();
        assert!(
            broken.starts_with("line 1 is not an audit entry (unknown field `s"),
            "{broken}"
        );
        assert!(broken.len() < 1_000, "{} bytes", broken.len());
        assert!(
            !broken.chars().any(crate::quote::is_control_like),
            "{broken}"
        );
    }
}
