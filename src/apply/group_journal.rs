//! The journal of a domain group's changes: one JSON record a line in the state folder, in
//! a file named after the backend's identity (canonical sysfs root, zkey repository, group),
//! each record naming that identity too. Intent is fsynced before a step, its outcome after.
//! It records the cards' serial numbers at the first step of a change, which the planner
//! compares to catch a card swapped behind an APQN. No secret is ever written here: tool
//! calls carry paths, never passphrases or PINs.
//!
//! Its lines are sealed and chained with the journal key, and its head kept among the journal
//! key's heads, exactly as the HPCS journal's (`journal`, `journal_key`): one head per journal
//! file. A journal that loses the Begin record loses the serial numbers, and with them the only sign
//! of a swapped card, so any record that does not verify, and a journal that does not extend
//! its head (deleted, emptied, cut back, replaced), is refused, never read past. A last line
//! cut by a crash mid-write is the one damage tolerated.
//!
//! A team's database keeps it instead (`store::postgres::group`): the records are the same,
//! and where they go is a [`GroupSink`], so the apply does not care which store it writes to.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::group_archive::not_pushed;
use super::journal::{self, JournalError};
use super::journal_key::{self, Head, JournalKey};
use crate::model::domain_group::Apqn;
use crate::model::registers::{MkType, Mkvp};

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
        /// The group's APQNs (as listed, or as its selector resolved them): the change must
        /// end on these. Absent in records of an mkplan before selectors.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        apqns: Vec<String>,
    },
    Intent {
        identity: String,
        at: String,
        step: String,
        action: String,
        what: String,
        /// On a shared journal, the tool runs within this long of the intent's commit, or
        /// never (`GroupSink::send_window`). Absent on a folder's journal, and for ceremonies.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        send_within_ms: Option<u64>,
    },
    Outcome {
        identity: String,
        at: String,
        step: String,
        result: String,
        detail: String,
    },
    /// The operator's word about a store, where no tool shows what happened to it
    /// (`mkplan attest finalized`): `store` names it, `statement` is what they saw.
    Attested {
        identity: String,
        at: String,
        store: String,
        statement: String,
    },
    /// The group converged: the change is closed.
    Done { identity: String, at: String },
    /// `state push` moved the journal into a database (`to`): this file is an archive.
    Pushed {
        identity: String,
        at: String,
        to: String,
    },
    /// `state pull` copied the journal out of a database (`from`), where it goes on: this
    /// file is an archive (`group_archive`).
    Pulled {
        identity: String,
        at: String,
        from: String,
    },
}

impl GroupRecord {
    /// What the record is, in a word, for messages.
    fn kind(&self) -> &'static str {
        match self {
            Self::Begin { .. } => "begin",
            Self::Intent { .. } => "intent",
            Self::Outcome { .. } => "outcome",
            Self::Attested { .. } => "attested",
            Self::Done { .. } => "done",
            Self::Pushed { .. } => "pushed",
            Self::Pulled { .. } => "pulled",
        }
    }

    pub fn identity(&self) -> &str {
        match self {
            Self::Begin { identity, .. }
            | Self::Intent { identity, .. }
            | Self::Outcome { identity, .. }
            | Self::Attested { identity, .. }
            | Self::Done { identity, .. }
            | Self::Pushed { identity, .. }
            | Self::Pulled { identity, .. } => identity,
        }
    }
}

/// A Begin record's `targets` read back: those that do not parse are left out.
pub fn begin_targets(targets: &BTreeMap<String, String>) -> BTreeMap<MkType, Mkvp> {
    targets
        .iter()
        .filter_map(|(t, vp)| {
            let mk_type = MkType::parse(t)?;
            Some((mk_type, Mkvp::parse(mk_type, vp).ok()?))
        })
        .collect()
}

/// Where a group journal's records go: a file in the state folder (sealed with the journal
/// key, its head among its heads) or a team's database. `append` returns once the record is
/// durable (fsynced, or committed under this writer's lease), never before.
pub trait GroupSink: Send {
    /// Appends `record`, the journal's `count`-th.
    fn append(&mut self, record: &GroupRecord, count: usize) -> Result<(), String>;
    /// How long after its intent is committed a tool may still be run: another writer can
    /// take a shared journal over from a writer that stopped (paused), and waits this long
    /// before it settles what that writer left open. None: no other writer can (a folder's
    /// journal, under its lock).
    fn send_window(&self) -> Option<std::time::Duration> {
        None
    }
}

pub struct GroupJournal {
    /// Where it is, for messages.
    named: String,
    identity: String,
    records: Vec<GroupRecord>,
    /// How many records were there when it was opened: those after are this run's.
    opened_with: usize,
    /// Present when opened to append.
    sink: Option<Box<dyn GroupSink>>,
}

/// The state folder's journal file, sealed.
struct FileSink {
    path: PathBuf,
    key: JournalKey,
    /// The seal of the last record, which the next one chains to.
    last_seal: String,
    /// Where the journal's head is kept (`None` for a key in memory only).
    head: Option<PathBuf>,
}

/// What was read: the records, the intact prefix's length, the last seal, and the head.
pub(super) struct Read {
    pub(super) records: Vec<GroupRecord>,
    good_len: usize,
    last_seal: String,
    head: Option<PathBuf>,
}

impl GroupJournal {
    pub fn path_for(state_dir: &Path, identity: &str) -> PathBuf {
        state_dir.join(Self::file_name(identity))
    }

    pub(super) fn file_name(identity: &str) -> String {
        let digest = hex::encode(Sha256::digest(identity.as_bytes()));
        format!("zcrypt-{}.jsonl", &digest[..16])
    }

    /// Reads the journal without writing anything (for `plan`), checking every record's seal
    /// with `key` (with none, a journal that holds records is refused). None yet is an empty
    /// one, unless its head says mkplan wrote it.
    pub fn read(
        state_dir: &Path,
        identity: &str,
        key: Option<&JournalKey>,
    ) -> Result<Self, String> {
        if state_dir.exists() {
            super::state_dir::check(state_dir)?;
        }
        let path = Self::path_for(state_dir, identity);
        let read = Self::load(state_dir, &path, identity, key)?;
        not_pushed(&crate::quote::path(&path), &read.records)?;
        Ok(Self::from_records(
            crate::quote::path(&path),
            identity,
            read.records,
            None,
        ))
    }

    /// Reads the journal as `read` does, for `state push`: None when it was pushed already
    /// (its last record, sealed, says so).
    pub fn read_to_push(
        state_dir: &Path,
        identity: &str,
        key: Option<&JournalKey>,
    ) -> Result<Option<Self>, String> {
        super::state_dir::check(state_dir)?;
        let path = Self::path_for(state_dir, identity);
        let read = Self::load(state_dir, &path, identity, key)?;
        if let Some(GroupRecord::Pushed { .. }) = read.records.last() {
            return Ok(None);
        }
        not_pushed(&crate::quote::path(&path), &read.records)?;
        Ok(Some(Self::from_records(
            crate::quote::path(&path),
            identity,
            read.records,
            None,
        )))
    }

    /// A journal read from elsewhere (a database), appended to through `sink` if any. Its
    /// records were checked against their store's checksums and chain; here, that each is
    /// about `identity` and that the journal was not moved on.
    pub fn shared(
        named: String,
        identity: &str,
        records: Vec<GroupRecord>,
        sink: Option<Box<dyn GroupSink>>,
    ) -> Result<Self, String> {
        check_identity(&named, identity, &records)?;
        not_pushed(&named, &records)?;
        Ok(Self::from_records(named, identity, records, sink))
    }

    fn from_records(
        named: String,
        identity: &str,
        records: Vec<GroupRecord>,
        sink: Option<Box<dyn GroupSink>>,
    ) -> Self {
        Self {
            named,
            identity: identity.into(),
            opened_with: records.len(),
            records,
            sink,
        }
    }

    /// Opens the journal to append, sealed with `key`: reads and checks it as `read` does,
    /// and cuts off a last line left partial by a crash so the next record starts clean.
    pub fn open(state_dir: &Path, identity: &str, key: &JournalKey) -> Result<Self, String> {
        super::state_dir::prepare(state_dir)?;
        let path = Self::path_for(state_dir, identity);
        let read = Self::load(state_dir, &path, identity, Some(key))?;
        not_pushed(&crate::quote::path(&path), &read.records)?;
        let file_len = std::fs::symlink_metadata(&path).map_or(0, |m| m.len());
        if (read.good_len as u64) < file_len {
            let file = super::state_dir::open(&path, OpenOptions::new().write(true))
                .map_err(|e| format!("{}: {e}", crate::quote::path(&path)))?;
            file.set_len(read.good_len as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("{}: {e}", crate::quote::path(&path)))?;
        }
        let sink = FileSink {
            path: path.clone(),
            key: key.clone(),
            last_seal: read.last_seal,
            head: read.head,
        };
        Ok(Self::from_records(
            crate::quote::path(&path),
            identity,
            read.records,
            Some(Box::new(sink)),
        ))
    }

    /// Reads and checks the journal of `identity` in `state_dir` whole: every seal with `key`,
    /// the chain, and that it extends its head. Whatever its last record says.
    pub(super) fn load(
        state_dir: &Path,
        path: &Path,
        identity: &str,
        key: Option<&JournalKey>,
    ) -> Result<Read, String> {
        let head_path = key.and_then(|k| k.head_path_of(state_dir, &Self::file_name(identity)));
        // Where the head is now (an older mkplan's, beside the key, until a newer one is kept).
        let head_file = key.zip(head_path.as_deref()).map(|(k, p)| k.head_file(p));
        let distrust = |what: String| distrusted(path, head_file.as_deref(), &what);
        let head = match (key, &head_path) {
            (Some(key), Some(head_path)) => key
                .read_head(head_path)
                .map_err(|why| distrust(format!("its head cannot be read: {why}")))?,
            _ => None,
        };
        let bytes = match crate::bounded_read::read(path, GROUP_JOURNAL_BYTES_MAX) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", crate::quote::path(path))),
        };
        let mut faults = Vec::new();
        let parsed = journal::parse_sealed(
            path,
            bytes.as_deref().unwrap_or_default(),
            key,
            &head.iter().collect::<Vec<_>>(),
            |line, why, record: GroupRecord| {
                faults.push((line, why, record.kind()));
                record
            },
        )
        .map_err(|e| match e {
            JournalError::Corrupt { line, why, .. } => distrust(format!(
                "line {line} is not a record mkplan wrote ({why}): it was edited"
            )),
            other => other.to_string(),
        })?;
        if let Some((line, why, kind)) = faults.first() {
            return Err(distrust(format!(
                "its record at line {line} ({kind}) is not authenticated: {}",
                why.describe()
            )));
        }
        if let Some(head) = &head
            && !head.extended_by(parsed.records.len(), parsed.seals_at[0].as_deref())
        {
            let shown = head_file
                .as_deref()
                .map(crate::quote::path)
                .unwrap_or_default();
            return Err(distrust(match bytes {
                None => format!(
                    "the file is gone, but mkplan last left it with {} records (its head {shown}, among your journal heads): it was deleted",
                    head.records
                ),
                Some(_) => format!(
                    "it holds {} records, but mkplan last left it with {} and it must extend them (its head {shown}, among your journal heads): it was emptied, cut back, or replaced by another copy",
                    parsed.records.len(),
                    head.records
                ),
            }));
        }
        check_identity(&crate::quote::path(path), identity, &parsed.records)?;
        Ok(Read {
            records: parsed.records,
            good_len: parsed.good_len,
            last_seal: parsed.last_seal,
            head: head_path,
        })
    }

    /// The identities of the group journals in `state_dir` (`state push`), read from each
    /// file's first record; a file not named after the identity it records is refused. Each is
    /// checked whole when read.
    pub fn identities_in(state_dir: &Path) -> Result<Vec<String>, String> {
        let mut identities = Vec::new();
        let entries = std::fs::read_dir(state_dir)
            .map_err(|e| format!("{}: {e}", crate::quote::path(state_dir)))?;
        for entry in entries {
            let path = entry
                .map_err(|e| format!("{}: {e}", crate::quote::path(state_dir)))?
                .path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if !(name.starts_with("zcrypt-") && name.ends_with(".jsonl")) {
                continue;
            }
            let bytes = crate::bounded_read::read(&path, GROUP_JOURNAL_BYTES_MAX)
                .map_err(|e| format!("{}: {e}", crate::quote::path(&path)))?;
            #[derive(Deserialize)]
            struct First {
                record: GroupRecord,
            }
            let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
            let Ok(First { record }) = serde_json::from_slice::<First>(first) else {
                if bytes.contains(&b'\n') {
                    return Err(format!(
                        "{}: its first line is not a domain group record",
                        crate::quote::path(&path)
                    ));
                }
                continue; // empty, or one line cut by a crash: no record
            };
            let identity = record.identity().to_string();
            if Self::path_for(state_dir, &identity) != path {
                return Err(format!(
                    "{}: it records {}, whose journal has another name: it was renamed or copied",
                    crate::quote::path(&path),
                    crate::quote::bare(&identity)
                ));
            }
            identities.push(identity);
        }
        identities.sort();
        Ok(identities)
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn records(&self) -> &[GroupRecord] {
        &self.records
    }

    /// The send window each tool step's intent promises (`GroupSink::send_window`).
    pub fn send_window(&self) -> Option<std::time::Duration> {
        self.sink.as_ref().and_then(|sink| sink.send_window())
    }

    /// The records written before this process opened the journal (earlier runs').
    pub fn earlier_records(&self) -> usize {
        self.opened_with
    }

    /// The Begin record of the open change, if one is open.
    fn open_change(&self) -> Option<&GroupRecord> {
        self.records
            .iter()
            .rev()
            .find(|r| matches!(r, GroupRecord::Begin { .. } | GroupRecord::Done { .. }))
            .filter(|r| matches!(r, GroupRecord::Begin { .. }))
    }

    /// The group's APQNs recorded when the open change began, if one is open and its record
    /// names them.
    pub fn open_change_apqns(&self) -> Option<BTreeSet<Apqn>> {
        match self.open_change()? {
            GroupRecord::Begin { apqns, .. } if !apqns.is_empty() => {
                apqns.iter().map(|a| a.parse().ok()).collect()
            }
            _ => None,
        }
    }

    /// The master keys the open change began with (its Begin record's `targets`), if one is
    /// open; a target that does not read back is left out, so the set differs from any
    /// desired one and the planner refuses.
    pub fn open_change_targets(&self) -> Option<BTreeMap<MkType, Mkvp>> {
        let GroupRecord::Begin { targets, .. } = self.open_change()? else {
            return None;
        };
        Some(begin_targets(targets))
    }

    /// The serial numbers recorded when the open change began, if one is open.
    pub fn open_change_serials(&self) -> Option<BTreeMap<u8, String>> {
        match self.open_change()? {
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
        open_intents(&self.records)
            .into_iter()
            .filter_map(|record| match record {
                GroupRecord::Intent { step, what, .. } => Some((step.clone(), what.clone())),
                _ => None,
            })
            .collect()
    }

    /// Appends one record: durable (fsynced, or committed) when this returns.
    pub fn append(&mut self, record: GroupRecord) -> Result<(), String> {
        let Some(sink) = &mut self.sink else {
            return Err(format!(
                "{}: opened to read, not to append (a bug: please report it)",
                self.named
            ));
        };
        sink.append(&record, self.records.len() + 1)?;
        self.records.push(record);
        Ok(())
    }
}

impl GroupSink for FileSink {
    /// Seals and chains the record, fsyncs it, then moves the journal's head.
    fn append(&mut self, record: &GroupRecord, count: usize) -> Result<(), String> {
        let (text, last_seal) =
            journal::sealed_lines(&self.key, &self.last_seal, std::slice::from_ref(record));
        let cannot = |e: std::io::Error| {
            format!(
                "{}: cannot write the journal: {e}",
                crate::quote::path(&self.path)
            )
        };
        let mut file: File =
            super::state_dir::open(&self.path, OpenOptions::new().append(true)).map_err(cannot)?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(cannot)?;
        self.last_seal = last_seal;
        if let Some(head) = &self.head {
            let state_dir = self.path.parent().unwrap_or(Path::new("."));
            journal_key::store_head(
                head,
                &Head {
                    state_dir: state_dir.display().to_string(),
                    records: count as u64,
                    seal: self.last_seal.clone(),
                    rewraps: None,
                },
            )
            .map_err(|e| {
                format!(
                    "{}: cannot record the journal's head: {e}",
                    crate::quote::path(head)
                )
            })?;
        }
        Ok(())
    }
}

/// The intents of `records` that have no outcome, in order.
pub fn open_intents(records: &[GroupRecord]) -> Vec<&GroupRecord> {
    let mut open: Vec<&GroupRecord> = Vec::new();
    for record in records {
        match record {
            GroupRecord::Intent { .. } => open.push(record),
            GroupRecord::Outcome { step, .. } => open.retain(
                |intent| !matches!(intent, GroupRecord::Intent { step: s, .. } if s == step),
            ),
            _ => {}
        }
    }
    open
}

/// Every record is about `identity`.
fn check_identity(named: &str, identity: &str, records: &[GroupRecord]) -> Result<(), String> {
    match records.iter().position(|r| r.identity() != identity) {
        Some(index) => Err(format!(
            "{named} record {}: a record for another backend or group",
            index + 1
        )),
        None => Ok(()),
    }
}

/// The refusal for a journal that cannot be trusted: what is wrong, why it matters, and the
/// evidence that would settle it (the same ways out as a rolled-back HPCS journal: a copy
/// that extends the head, or the operator's word, given by moving journal and head away).
fn distrusted(path: &Path, head: Option<&Path>, what: &str) -> String {
    let shown = crate::quote::path(path);
    let mut moves = Vec::new();
    if path.exists() {
        moves.push(format!("mv {shown} {shown}.damaged"));
    }
    if let Some(head) = head.filter(|h| h.exists()) {
        let head = crate::quote::path(head);
        moves.push(format!("mv {head} {head}.moved"));
    }
    distrusted_journal(
        &shown,
        what,
        "restore the journal from a backup that extends what mkplan last wrote",
        &format!(
            "start a new journal by moving the journal and its head away: `{}`",
            moves.join("; ")
        ),
    )
}

/// The refusal for a group journal `named` that cannot be trusted (`what`), and the two ways
/// to settle it: the evidence (`restore`), or the operator's word (`word`).
pub(crate) fn distrusted_journal(named: &str, what: &str, restore: &str, word: &str) -> String {
    format!(
        "the domain group journal {named} cannot be trusted: {what}. It holds the cards' serial numbers from the first step of the group's change, the only evidence that no card was swapped behind an APQN since; mkplan does not plan or apply without it. To settle it, {restore}; or, only if you are sure that no change of this group is under way and that no card behind its APQNs was swapped (compare the serial numbers `mkplan status` shows for the group file with your hardware records), {word}. Never edit the journal by hand"
    )
}

#[cfg(test)]
#[path = "group_journal_tests.rs"]
mod tests;
