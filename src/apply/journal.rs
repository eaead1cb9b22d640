//! The write-ahead journal: append-only JSON lines in the state directory, one record each,
//! each carrying the SHA-256 of its own body and fsynced before `append` returns. Apply writes
//! an intent before every operation and an outcome after it; an intent without an outcome is
//! *unknown* and is settled by re-reading live state, never by repeating the operation.
//!
//! Reading tolerates exactly one kind of damage, the one a crash makes: a torn last line
//! (no newline, or a checksum that fails on the last line only). That record never
//! completed, so it is dropped and overwritten by the next append. Damage anywhere else is
//! refused: a journal that lies in the middle cannot be trusted to settle anything.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::VerificationPattern;
use crate::plan::Action;

/// Records one journal may hold before apply refuses to add more (a runaway loop guard).
pub const JOURNAL_RECORDS_MAX: usize = 1_000_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// An apply run begins; `run` counts runs in this journal from 1. Intents and outcomes
    /// name their step as `r{run}.{step id}`, unique across runs.
    ApplyStarted { run: u32, plan_sha256: String },
    /// An instance's rotation begins under this journal: its key storage is under `from`.
    RotationStarted {
        instance: String,
        from: VerificationPattern,
        to: VerificationPattern,
    },
    /// About to send an operation.
    Intent {
        step: String,
        action: Action,
        instance: String,
        unit: Option<String>,
    },
    /// What came of the intent with the same `step`.
    Outcome { step: String, outcome: Outcome },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The operation took effect (for a rewrap: mkplan's own "KMS CRK rewrap successful").
    Done,
    /// The service refused it, or it failed with no effect.
    NotDone {
        reason: String,
    },
    /// A lost response settled later by reading the live state.
    SettledDone {
        evidence: String,
    },
    SettledNotDone {
        evidence: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    sha256: String,
    record: Record,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "the journal {path} is damaged at line {line} of {lines}: {why}. It cannot be trusted to settle what happened; keep it for investigation, compare the live state (`mkplan status`) with the audit trail, and ask for help before acting"
    )]
    Corrupt {
        path: String,
        line: usize,
        lines: usize,
        why: String,
    },
    #[error("cannot use the journal {path}: {why}")]
    Io { path: String, why: String },
}

pub struct Journal {
    path: PathBuf,
    file: File,
    records: Vec<Record>,
    /// False only for a drill's scratch journal, which simulates crashes by cancelling the
    /// apply (every record is written before that point) and never a power cut.
    sync: bool,
}

impl Journal {
    /// Opens (creating) `journal.jsonl` in `state_dir`, reads every record, and cuts off a
    /// torn last record so the next append starts on a clean line.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        let path = state_dir.join("journal.jsonl");
        let io = |why: std::io::Error| JournalError::Io {
            path: path.display().to_string(),
            why: why.to_string(),
        };
        fs::create_dir_all(state_dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let bytes = fs::read(&path).map_err(io)?;
        let (records, good_len) = parse(&path, &bytes)?;
        if good_len < bytes.len() {
            file.set_len(good_len as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
        }
        Ok(Self {
            path,
            file,
            records,
            sync: true,
        })
    }

    /// A journal whose appends are written but not fsynced: for a drill's scratch state
    /// directory only.
    pub fn open_scratch(state_dir: &Path) -> Result<Self, JournalError> {
        let mut journal = Self::open(state_dir)?;
        journal.sync = false;
        Ok(journal)
    }

    /// Reads the records without creating or repairing anything (for `plan`, which must not
    /// write). A missing journal has no records.
    pub fn read(state_dir: &Path) -> Result<Vec<Record>, JournalError> {
        let path = state_dir.join("journal.jsonl");
        match fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes).map(|(records, _)| records),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(JournalError::Io {
                path: path.display().to_string(),
                why: e.to_string(),
            }),
        }
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The number the next apply run takes.
    pub fn next_run(&self) -> u32 {
        let runs = self
            .records
            .iter()
            .filter(|r| matches!(r, Record::ApplyStarted { .. }))
            .count();
        u32::try_from(runs).unwrap_or(u32::MAX - 1) + 1
    }

    /// Appends one record and fsyncs it: when this returns, the record survives a crash.
    pub fn append(&mut self, record: Record) -> Result<(), JournalError> {
        self.append_all(vec![record])
    }

    /// Appends several records with one fsync (a group commit): the executor journals the
    /// intents of the steps it starts together, and the outcomes that arrive together.
    pub fn append_all(&mut self, records: Vec<Record>) -> Result<(), JournalError> {
        if records.is_empty() {
            return Ok(());
        }
        let io = |why: std::io::Error| JournalError::Io {
            path: self.path.display().to_string(),
            why: why.to_string(),
        };
        if self.records.len() + records.len() > JOURNAL_RECORDS_MAX {
            return Err(JournalError::Io {
                path: self.path.display().to_string(),
                why: format!("over {JOURNAL_RECORDS_MAX} records"),
            });
        }
        let mut text = String::new();
        let lines: Vec<Line> = records
            .into_iter()
            .map(|record| Line {
                sha256: checksum(&record),
                record,
            })
            .collect();
        for line in &lines {
            text += &serde_json::to_string(line).expect("records serialize");
            text.push('\n');
        }
        self.file.write_all(text.as_bytes()).map_err(io)?;
        if self.sync {
            self.file.sync_data().map_err(io)?;
        }
        self.records.extend(lines.into_iter().map(|l| l.record));
        Ok(())
    }
}

fn checksum(record: &Record) -> String {
    hex::encode(Sha256::digest(
        serde_json::to_vec(record).expect("records serialize"),
    ))
}

/// Returns the records and the length of the intact prefix of `bytes`.
fn parse(path: &Path, bytes: &[u8]) -> Result<(Vec<Record>, usize), JournalError> {
    let mut records = Vec::new();
    let mut offset = 0;
    let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
    for (index, raw) in lines.iter().enumerate() {
        let last = index + 1 == lines.len();
        let complete = raw.ends_with(b"\n");
        let decoded = complete
            .then(|| serde_json::from_slice::<Line>(&raw[..raw.len() - 1]).ok())
            .flatten()
            .filter(|line| checksum(&line.record) == line.sha256);
        match decoded {
            Some(line) => records.push(line.record),
            // A crash can only tear the record it was writing: the last one.
            None if last => return Ok((records, offset)),
            None => {
                return Err(JournalError::Corrupt {
                    path: path.display().to_string(),
                    line: index + 1,
                    lines: lines.len(),
                    why: "the record does not match its checksum".into(),
                });
            }
        }
        offset += raw.len();
    }
    Ok((records, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(step: &str) -> Record {
        Record::Intent {
            step: step.into(),
            action: Action::RewrapKeyStorage,
            instance: "i".into(),
            unit: None,
        }
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.append(intent("s1")).unwrap();
        journal
            .append(Record::Outcome {
                step: "s1".into(),
                outcome: Outcome::Done,
            })
            .unwrap();
        drop(journal);
        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.records().len(), 2);
        assert_eq!(journal.records()[0], intent("s1"));
    }

    #[test]
    fn a_torn_tail_is_dropped_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.append(intent("s1")).unwrap();
        drop(journal);
        let path = dir.path().join("journal.jsonl");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"sha256\":\"00\",\"record\":{\"kind\":\"inte")
            .unwrap();
        drop(file);
        let mut journal = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.records().len(), 1);
        journal.append(intent("s2")).unwrap();
        drop(journal);
        assert_eq!(Journal::open(dir.path()).unwrap().records().len(), 2);
    }

    #[test]
    fn a_flipped_bit_in_the_middle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.append(intent("s1")).unwrap();
        journal.append(intent("s2")).unwrap();
        drop(journal);
        let path = dir.path().join("journal.jsonl");
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.iter().position(|b| *b == b'1').unwrap();
        bytes[at] ^= 0x02;
        fs::write(&path, &bytes).unwrap();
        let error = Journal::open(dir.path())
            .err()
            .expect("corrupt journal refused");
        assert!(error.to_string().contains("line 1 of 2"), "{error}");
    }
}
