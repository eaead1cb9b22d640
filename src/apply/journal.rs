//! The write-ahead journal: append-only JSON lines in the state directory, one record each,
//! each carrying the SHA-256 of its own body and fsynced before `append` returns. Apply writes
//! an intent before every operation and an outcome after it; an intent without an outcome is
//! *unknown* and is settled by re-reading live state, never by repeating the operation.
//!
//! Reading tolerates exactly one kind of damage, the one a crash makes: a torn last line
//! (no newline, or a checksum that fails on the last line only). That record never
//! completed, so it is dropped and overwritten by the next append. Damage anywhere else is
//! refused: a journal that lies in the middle cannot be trusted to settle anything.

use std::fs::{File, OpenOptions};
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
    /// name their step as `r{run}.{step id}`, unique across runs. `backend` is the identity of
    /// the backend the run acts on: every intent of the run is bound to it.
    ApplyStarted {
        run: u32,
        plan_sha256: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backend: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// An instance's rotation begins under this journal: its key storage is under `from`. The
    /// record is bound to the backend's identity and to the crypto units (hsm_ids, sorted) and
    /// their registers (`registers`: the live instance's fingerprint) at its start: it is
    /// evidence for that backend and those units only.
    RotationStarted {
        instance: String,
        from: VerificationPattern,
        to: VerificationPattern,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backend: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        units: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        registers: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// About to send an operation, or (`by_hand`) to show the operator a ceremony step.
    Intent {
        step: String,
        action: Action,
        instance: String,
        unit: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        by_hand: bool,
    },
    /// What came of the intent with the same `step`.
    Outcome {
        step: String,
        outcome: Outcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// The operator's word about the rewrap of one rotation (`mkplan attest rewrap`), bound
    /// like a rotation record. `ran`: the rewrap completed (true) or did not run (false).
    Attested {
        instance: String,
        backend: String,
        units: Vec<String>,
        from: VerificationPattern,
        to: VerificationPattern,
        ran: bool,
        /// What the operator attests, in words, as it was put to them.
        statement: String,
        /// With `--service-evidence`: what the service showed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service_evidence: Option<String>,
        at: String,
        /// `at` in seconds since the Unix epoch: an attestation expires.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_unix: Option<u64>,
    },
    /// `mkplan journal close`: the live state showed this instance's rotation finished; the
    /// records before this one say nothing more about it.
    RotationClosed {
        instance: String,
        backend: String,
        why: String,
        at: String,
    },
}

impl Record {
    /// The outcome record of `step`, stamped with the time.
    pub fn outcome(step: String, outcome: Outcome) -> Self {
        Self::Outcome {
            step,
            outcome,
            at: Some(utc_now()),
        }
    }
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

impl Outcome {
    pub fn took_effect(&self) -> bool {
        matches!(self, Self::Done | Self::SettledDone { .. })
    }
}

/// Seconds since the Unix epoch, from the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 UTC from the system clock (days-from-civil, without a date crate): the time
/// stamps of journal records, shown to the operator as "witnessed the commits at T".
pub fn utc_now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
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
        super::state_dir::prepare(state_dir).map_err(|why| JournalError::Io {
            path: path.display().to_string(),
            why,
        })?;
        let mut file = super::state_dir::open(&path, OpenOptions::new().read(true).append(true))
            .map_err(io)?;
        let bytes = super::state_dir::read(&path)
            .map_err(io)?
            .unwrap_or_default();
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
        let io = |why: String| JournalError::Io {
            path: path.display().to_string(),
            why,
        };
        if !state_dir.exists() {
            return Ok(Vec::new());
        }
        super::state_dir::check(state_dir).map_err(io)?;
        match super::state_dir::read(&path) {
            Ok(Some(bytes)) => parse(&path, &bytes).map(|(records, _)| records),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(io(e.to_string())),
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
            .map(|record| {
                if self.sync {
                    record
                } else {
                    without_time(record)
                }
            })
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

/// A drill's scratch journal runs on a simulated clock: its records carry no wall-clock time,
/// so that a seed replays to the same words.
fn without_time(mut record: Record) -> Record {
    match &mut record {
        Record::ApplyStarted { at, .. }
        | Record::RotationStarted { at, .. }
        | Record::Outcome { at, .. } => *at = None,
        Record::Attested { at, at_unix, .. } => {
            *at = "(drill time)".into();
            *at_unix = None;
        }
        Record::RotationClosed { at, .. } => *at = "(drill time)".into(),
        Record::Intent { .. } => {}
    }
    record
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
    use std::fs;

    use super::*;

    fn intent(step: &str) -> Record {
        Record::Intent {
            step: step.into(),
            action: Action::RewrapKeyStorage,
            instance: "i".into(),
            unit: None,
            by_hand: false,
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
                at: None,
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
