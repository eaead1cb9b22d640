//! The journal of a domain group's changes: one JSON record a line in the state folder, in
//! a file named after the backend's identity (canonical sysfs root, zkey repository, group),
//! each record naming that identity too. Intent is fsynced before a step, its outcome after.
//! It records the cards' serial numbers at the first step of a change, which the planner
//! compares to catch a card swapped behind an APQN. No secret is ever written here: tool
//! calls carry paths, never passphrases or PINs.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes of a group journal read at most.
const GROUP_JOURNAL_BYTES_MAX: u64 = 64 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum GroupRecord {
    /// A change begins: the target per type, and every card's serial number.
    Begin {
        identity: String,
        at: String,
        targets: BTreeMap<String, String>,
        serials: BTreeMap<String, String>,
    },
    Intent {
        identity: String,
        at: String,
        step: String,
        action: String,
        what: String,
    },
    Outcome {
        identity: String,
        at: String,
        step: String,
        result: String,
        detail: String,
    },
    /// The group converged: the change is closed.
    Done { identity: String, at: String },
}

impl GroupRecord {
    fn identity(&self) -> &str {
        match self {
            Self::Begin { identity, .. }
            | Self::Intent { identity, .. }
            | Self::Outcome { identity, .. }
            | Self::Done { identity, .. } => identity,
        }
    }
}

pub struct GroupJournal {
    path: PathBuf,
    identity: String,
    records: Vec<GroupRecord>,
}

impl GroupJournal {
    pub fn path_for(state_dir: &Path, identity: &str) -> PathBuf {
        let digest = hex::encode(Sha256::digest(identity.as_bytes()));
        state_dir.join(format!("zcrypt-{}.jsonl", &digest[..16]))
    }

    /// Reads the journal (none yet is an empty one). A record for another identity, or one
    /// that does not parse, is damage: refused, never skipped.
    pub fn open(state_dir: &Path, identity: &str) -> Result<Self, String> {
        let path = Self::path_for(state_dir, identity);
        let text = match crate::bounded_read::read_to_string(&path, GROUP_JOURNAL_BYTES_MAX) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("{}: {e}", crate::quote::path(&path))),
        };
        if !text.is_empty() && !text.ends_with('\n') {
            // Cut by a crash mid-write: drop the partial line so the next record starts clean.
            let keep = text.rfind('\n').map_or(0, |i| i + 1);
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", crate::quote::path(&path)))?;
            file.set_len(keep as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("{}: {e}", crate::quote::path(&path)))?;
        }
        let mut records = Vec::new();
        for (index, line) in text.lines().enumerate() {
            // A last line cut by a crash mid-write is the only damage tolerated: its step's
            // outcome is settled by reading the stores again.
            let last = index + 1 == text.lines().count() && !text.ends_with('\n');
            match serde_json::from_str::<GroupRecord>(line) {
                Ok(record) if record.identity() == identity => records.push(record),
                Ok(_) => {
                    return Err(format!(
                        "{} line {}: a record for another backend or group",
                        crate::quote::path(&path),
                        index + 1
                    ));
                }
                Err(_) if last => {}
                Err(e) => {
                    return Err(format!(
                        "{} line {}: {e}",
                        crate::quote::path(&path),
                        index + 1
                    ));
                }
            }
        }
        Ok(Self {
            path,
            identity: identity.into(),
            records,
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn records(&self) -> &[GroupRecord] {
        &self.records
    }

    /// The serial numbers recorded when the open change began, if one is open.
    pub fn open_change_serials(&self) -> Option<BTreeMap<u8, String>> {
        match self
            .records
            .iter()
            .rev()
            .find(|r| matches!(r, GroupRecord::Begin { .. } | GroupRecord::Done { .. }))?
        {
            GroupRecord::Begin { serials, .. } => Some(
                serials
                    .iter()
                    .filter_map(|(card, serial)| {
                        Some((u8::from_str_radix(card, 16).ok()?, serial.clone()))
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Steps whose intent has no outcome: a run stopped in them.
    pub fn unsettled(&self) -> Vec<(String, String)> {
        let mut open: Vec<(String, String)> = Vec::new();
        for record in &self.records {
            match record {
                GroupRecord::Intent { step, what, .. } => open.push((step.clone(), what.clone())),
                GroupRecord::Outcome { step, .. } => open.retain(|(s, _)| s != step),
                _ => {}
            }
        }
        open
    }

    /// Appends and fsyncs one record.
    pub fn append(&mut self, record: GroupRecord) -> Result<(), String> {
        let mut line = serde_json::to_string(&record).map_err(|e| e.to_string())?;
        line.push('\n');
        let mut file: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("{}: {e}", crate::quote::path(&self.path)))?;
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| {
                format!(
                    "{}: cannot write the journal: {e}",
                    crate::quote::path(&self.path)
                )
            })?;
        self.records.push(record);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reopen_and_a_cut_last_line_is_settled_later() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = GroupJournal::open(dir.path(), "zcrypt:/x").unwrap();
        journal
            .append(GroupRecord::Begin {
                identity: "zcrypt:/x".into(),
                at: "t".into(),
                targets: BTreeMap::new(),
                serials: BTreeMap::from([("03".into(), "S3".into())]),
            })
            .unwrap();
        journal
            .append(GroupRecord::Intent {
                identity: "zcrypt:/x".into(),
                at: "t".into(),
                step: "z1".into(),
                action: "stage_reencipher".into(),
                what: "zkey …".into(),
            })
            .unwrap();
        let path = GroupJournal::path_for(dir.path(), "zcrypt:/x");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"record\":\"outc")
            .unwrap();
        let again = GroupJournal::open(dir.path(), "zcrypt:/x").unwrap();
        assert_eq!(again.open_change_serials().unwrap()[&3], "S3");
        assert_eq!(again.unsettled().len(), 1);
        // Another identity never reads this file's records as its own.
        assert_ne!(GroupJournal::path_for(dir.path(), "zcrypt:/y"), path);
    }
}
