//! The write-ahead journal: append-only JSON lines in the state directory, one record each,
//! each carrying the SHA-256 of its own body and a seal (`journal_key`: an HMAC under a key
//! kept outside the state folder, chained to the seal of the line before), fsynced before
//! `append` returns. Apply writes
//! an intent before every operation and an outcome after it; an intent without an outcome is
//! *unknown* and is settled by re-reading live state, never by repeating the operation.
//!
//! Reading tolerates exactly one kind of damage, the one a crash makes: a torn last line
//! (no newline, or a checksum that fails on the last line only). That record never
//! completed, so it is dropped and overwritten by the next append. Damage anywhere else is
//! refused: a journal that lies in the middle cannot be trusted to settle anything.
//!
//! A record whose seal does not verify (forged, moved, sealed with another key, or from an
//! mkplan before seals) is read as `Record::Unauthenticated`: it is kept, so that messages
//! can name it, but it is no evidence of anything (`evidence`).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::journal_key::{self, Head, JournalKey, SealFault};
use super::open_rewraps::OpenRewraps;

/// Records one journal may hold before apply refuses to add more (a runaway loop guard).
pub const JOURNAL_RECORDS_MAX: usize = 1_000_000;

pub use super::record::{AuditHead, Outcome, Record, unix_now, utc_now};

/// One line of a journal file: this journal's `Record`s, or a domain group's
/// (`group_journal`), which are sealed and read the same way.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<R = Record> {
    sha256: String,
    /// `journal_key::JournalKey::seal` of this record after the line before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seal: Option<String>,
    record: R,
}

/// A sealed `Line` as written, borrowing its parts (the same JSON).
#[derive(Serialize)]
struct LineRef<'a, R> {
    sha256: &'a str,
    seal: &'a str,
    record: &'a R,
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
    records: Vec<Record>,
    sink: Sink,
}

/// Where a journal's appends go.
enum Sink {
    /// `journal.jsonl` in a state folder, each line sealed with this user's journal key.
    File(Box<FileSink>),
    /// A store shared by a team (PostgreSQL): its database authenticates the writer, keeps
    /// the records append-only and chains them.
    Shared(Box<dyn SharedJournal>),
}

struct FileSink {
    path: PathBuf,
    file: File,
    key: JournalKey,
    /// The seal of the last line that verified, which the next one chains to.
    last_seal: String,
    /// The seal of the first line, if it verified: it names the chain's head (`Heads`).
    first_seal: Option<String>,
    /// The state folder, which names the folder's head.
    state_dir: PathBuf,
    /// False only for a drill's scratch journal, which simulates crashes by cancelling the
    /// apply (every record is written before that point) and never a power cut.
    sync: bool,
    /// What its head says it may hold (`Head::rewraps`).
    rewraps: OpenRewraps,
    /// Worked out at the first head written (`store_head`): the folder's name as its head
    /// gives it, and where its head and its chain's go, their folders made.
    head_places: Option<HeadPlaces>,
}

/// Where a journal's heads go, worked out once for the journal's life.
struct HeadPlaces {
    state_dir: String,
    folder: Option<PathBuf>,
    /// The chain's head, and the first seal it was worked out from.
    chain: Option<(String, PathBuf)>,
}

/// One record on its way to a shared store: the line as the file store writes it (without a
/// seal), its checksum, and the service instance it speaks of (`None`: a run's own record).
pub struct SharedLine {
    pub line: String,
    pub sha256: String,
    pub instance: Option<String>,
}

/// A journal kept by a shared store. `append` returns once the records are committed, never
/// before; it fails when this writer no longer holds its lease (another took over).
pub trait SharedJournal: Send {
    /// The store, for messages (never with a password).
    fn describe(&self) -> String;
    fn append(&mut self, lines: Vec<SharedLine>) -> Result<(), String>;
    /// A run number no other writer of this store's scope holds.
    fn next_run(&mut self) -> Result<u32, String>;
    /// How long after its intent is committed an operation may still be sent: another writer
    /// can take this journal over from a writer that stopped (paused, cut off), and waits this
    /// long before it settles what that writer left open. None: no send window.
    fn send_window(&self) -> Option<std::time::Duration> {
        None
    }
}

impl Journal {
    /// Opens (creating) `journal.jsonl` in `state_dir`, reads every record (checking its seal
    /// with `key`, which seals every record appended), and cuts off a torn last record so the
    /// next append starts on a clean line.
    pub fn open(state_dir: &Path, key: &JournalKey) -> Result<Self, JournalError> {
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
        let heads = Heads::load(key, state_dir, &bytes, &path)?;
        let Parsed {
            records,
            good_len,
            last_seal,
            seals_at,
            first_seal,
        } = parse(&path, &bytes, Some(key), &heads.found())?;
        if good_len < bytes.len() {
            file.set_len(good_len as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
        }
        let rolled_back = heads.rolled_back(state_dir, records.len(), &seals_at);
        let mut rewraps = OpenRewraps::default();
        for record in &records {
            let _ = rewraps.note(record);
        }
        let mut journal = Self {
            records,
            sink: Sink::File(Box::new(FileSink {
                path,
                file,
                key: key.clone(),
                last_seal,
                first_seal,
                state_dir: state_dir.to_path_buf(),
                sync: true,
                rewraps,
                head_places: None,
            })),
        };
        if let Some(record) = rolled_back {
            journal.append(record)?;
        }
        Ok(journal)
    }

    /// A journal whose appends are written but not fsynced, sealed with a key this process
    /// holds in memory: for a drill's scratch state directory only.
    pub fn open_scratch(state_dir: &Path) -> Result<Self, JournalError> {
        static SCRATCH: std::sync::OnceLock<JournalKey> = std::sync::OnceLock::new();
        let mut journal = Self::open(state_dir, SCRATCH.get_or_init(JournalKey::ephemeral))?;
        if let Sink::File(file) = &mut journal.sink {
            file.sync = false;
        }
        Ok(journal)
    }

    /// A journal kept by a shared store, holding `records` as read from it.
    pub fn shared(records: Vec<Record>, store: Box<dyn SharedJournal>) -> Self {
        Self {
            records,
            sink: Sink::Shared(store),
        }
    }

    /// Reads the records without creating or repairing anything (for `plan`, which must not
    /// write), checking their seals with `key` (with none, no record is authenticated). A
    /// missing journal has no records.
    pub fn read(state_dir: &Path, key: Option<&JournalKey>) -> Result<Vec<Record>, JournalError> {
        let path = state_dir.join("journal.jsonl");
        let io = |why: String| JournalError::Io {
            path: path.display().to_string(),
            why,
        };
        if state_dir.exists() {
            super::state_dir::check(state_dir).map_err(io)?;
        }
        let bytes = match super::state_dir::read(&path) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(e) => return Err(io(e.to_string())),
        };
        let heads = match key {
            Some(key) => Heads::load(key, state_dir, &bytes, &path)?,
            None => Heads::default(),
        };
        let parsed = parse(&path, &bytes, key, &heads.found())?;
        let mut records = parsed.records;
        if let Some(record) = heads.rolled_back(state_dir, records.len(), &parsed.seals_at) {
            records.push(record);
        }
        Ok(records)
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The send window each intent promises (`SharedJournal::send_window`); None on a
    /// folder's journal, which no other writer takes over while its lock is held.
    pub fn send_window(&self) -> Option<std::time::Duration> {
        match &self.sink {
            Sink::File(_) => None,
            Sink::Shared(shared) => shared.send_window(),
        }
    }

    /// The number the next apply run takes (runs whose record is not authenticated count
    /// too: their step names stay theirs). A shared store hands it out, so that two applies
    /// on different instances never take the same one.
    pub fn next_run(&mut self) -> Result<u32, JournalError> {
        match &mut self.sink {
            Sink::File(_) => {
                let runs = self
                    .records
                    .iter()
                    .filter(|r| matches!(r.written(), Record::ApplyStarted { .. }))
                    .count();
                Ok(u32::try_from(runs).unwrap_or(u32::MAX - 1) + 1)
            }
            Sink::Shared(store) => store.next_run().map_err(|why| JournalError::Io {
                path: store.describe(),
                why,
            }),
        }
    }

    /// Where the journal is, for messages.
    pub fn describe(&self) -> String {
        match &self.sink {
            Sink::File(file) => file.path.display().to_string(),
            Sink::Shared(store) => store.describe(),
        }
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
        if self.records.len() + records.len() > JOURNAL_RECORDS_MAX {
            return Err(JournalError::Io {
                path: self.describe(),
                why: format!("over {JOURNAL_RECORDS_MAX} records"),
            });
        }
        let records = match &mut self.sink {
            Sink::File(file) => {
                // The head names a rewrap before its intent is written: a folder that
                // cannot be read later is asked about it even after a crash in between.
                let mut grew = false;
                for record in &records {
                    grew |= file.rewraps.note(record);
                }
                if grew {
                    file.store_head(self.records.len())?;
                }
                let written = file.append(records)?;
                file.store_head(self.records.len() + written.len())?;
                written
            }
            Sink::Shared(store) => {
                let mut lines = shared_lines(&records);
                // An outcome's instance is its intent's, which may be in an earlier batch.
                for (line, record) in lines.iter_mut().zip(&records) {
                    if line.instance.is_none() {
                        line.instance = instance_of(&self.records, record);
                    }
                }
                store.append(lines).map_err(|why| JournalError::Io {
                    path: store.describe(),
                    why,
                })?;
                records
            }
        };
        self.records.extend(records);
        Ok(())
    }
}

impl FileSink {
    /// Writes and syncs `records`; returns them as written.
    fn append(&mut self, records: Vec<Record>) -> Result<Vec<Record>, JournalError> {
        let io = |why: std::io::Error| JournalError::Io {
            path: self.path.display().to_string(),
            why: why.to_string(),
        };
        let written = if self.sync {
            records
        } else {
            records.into_iter().map(without_time).collect()
        };
        let (text, last_seal) = sealed_lines(&self.key, &self.last_seal, &written);
        self.file.write_all(text.as_bytes()).map_err(io)?;
        if self.sync {
            self.file.sync_data().map_err(io)?;
        }
        if self.last_seal.is_empty() && self.first_seal.is_none() {
            // The first line of a new chain (an empty journal, or one no line of which
            // verified): its seal names the chain's head from now on.
            self.first_seal = written
                .first()
                .map(|record| self.key.seal("", &checksum(record)));
        }
        self.last_seal = last_seal;
        Ok(written)
    }

    /// Records where this user's mkplan left the journal, `records` long: in the folder's
    /// head and in the chain's (`Heads`).
    fn store_head(&mut self, records: usize) -> Result<(), JournalError> {
        let failed = |place: &Path, why: std::io::Error| JournalError::Io {
            path: place.display().to_string(),
            why: format!("cannot record the journal's head: {why}"),
        };
        if self.head_places.is_none() {
            let folder = self.key.head_path(&self.state_dir);
            if let Some(place) = &folder {
                journal_key::make_heads_folder(place).map_err(|why| failed(place, why))?;
            }
            self.head_places = Some(HeadPlaces {
                state_dir: canonical(&self.state_dir).display().to_string(),
                folder,
                chain: None,
            });
        }
        let places = self.head_places.as_mut().expect("worked out above");
        let chain_moved = places.chain.as_ref().map(|(seal, _)| seal) != self.first_seal.as_ref();
        if chain_moved {
            places.chain = match self.first_seal.as_deref() {
                Some(seal) => match self.key.chain_head_path(seal) {
                    Some(place) => {
                        journal_key::make_heads_folder(&place)
                            .map_err(|why| failed(&place, why))?;
                        Some((seal.to_string(), place))
                    }
                    None => None,
                },
                None => None,
            };
        }
        let head = Head {
            state_dir: places.state_dir.clone(),
            records: records as u64,
            seal: self.last_seal.clone(),
            rewraps: Some(self.rewraps.instances()),
        };
        let text = serde_json::to_vec(&head).expect("heads serialize");
        let chain = places.chain.as_ref().map(|(_, place)| place);
        for place in places.folder.iter().chain(chain) {
            let stored = match journal_key::store_head_text(place, &text) {
                // Its folder removed while the journal was open: made again.
                Err(why) if why.kind() == std::io::ErrorKind::NotFound => {
                    journal_key::make_heads_folder(place)
                        .and_then(|()| journal_key::store_head_text(place, &text))
                }
                stored => stored,
            };
            stored.map_err(|why| failed(place, why))?;
        }
        Ok(())
    }
}

/// Reads one line of a shared store: its record, if the line holds `sha256` and the record
/// matches it.
pub fn shared_record(line: &str, sha256: &str) -> Result<Record, String> {
    unsealed_record(line, sha256)
}

/// `shared_record` for any journal's records (a domain group's too).
pub(crate) fn unsealed_record<R: Serialize + serde::de::DeserializeOwned>(
    line: &str,
    sha256: &str,
) -> Result<R, String> {
    // The parser's words quote the row (`unknown field …`): cut and made inert, so that a
    // row cannot flood the message or forge a line of its own.
    let line: Line<R> = serde_json::from_str(line).map_err(|e| {
        format!(
            "it is not a journal record ({})",
            crate::quote::message(&e.to_string())
        )
    })?;
    if line.sha256 != sha256 || checksum(&line.record) != sha256 {
        return Err("the record does not match its checksum".into());
    }
    Ok(line.record)
}

/// `records` as a shared store keeps them (`state push`): each as the file store writes it,
/// without a seal.
pub fn shared_lines(records: &[Record]) -> Vec<SharedLine> {
    records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let (line, sha256) = unsealed_line(record);
            SharedLine {
                line,
                sha256,
                instance: instance_of(&records[..index], record),
            }
        })
        .collect()
}

/// One record as a shared store keeps it, and its checksum: the line the file store writes,
/// without a seal (the database authenticates its writers and chains the rows).
pub(crate) fn unsealed_line<R: Serialize>(record: &R) -> (String, String) {
    #[derive(Serialize)]
    struct Unsealed<'a, R> {
        sha256: &'a str,
        record: &'a R,
    }
    let sha256 = checksum(record);
    let line = serde_json::to_string(&Unsealed {
        sha256: &sha256,
        record,
    })
    .expect("records serialize");
    (line, sha256)
}

/// The service instance a record speaks of, lower case (an outcome: its intent's); `None`
/// for a run's own records. A shared store keys its rows by it.
fn instance_of(earlier: &[Record], record: &Record) -> Option<String> {
    let instance = match record {
        Record::RotationStarted { instance, .. }
        | Record::Intent { instance, .. }
        | Record::Attested { instance, .. }
        | Record::RotationClosed { instance, .. }
        | Record::ForeignRewrapSeen { instance, .. } => Some(instance.as_str()),
        Record::Outcome { step, .. } => earlier.iter().rev().find_map(|r| match r.written() {
            Record::Intent {
                step: s, instance, ..
            } if s == step => Some(instance.as_str()),
            _ => None,
        }),
        _ => None,
    };
    instance.map(str::to_lowercase)
}

/// The lines that append `records` to a journal whose last seal is `last_seal`, one JSON
/// object and a newline each, and the seal of the last of them.
pub(crate) fn sealed_lines<R: Serialize>(
    key: &JournalKey,
    last_seal: &str,
    records: &[R],
) -> (String, String) {
    let mut text = String::new();
    let mut last_seal = last_seal.to_string();
    for record in records {
        let sha256 = checksum(record);
        let seal = key.seal(&last_seal, &sha256);
        let line = LineRef {
            sha256: &sha256,
            seal: &seal,
            record,
        };
        text += &serde_json::to_string(&line).expect("records serialize");
        text.push('\n');
        last_seal = seal;
    }
    (text, last_seal)
}

/// A drill's scratch journal runs on a simulated clock: its records carry no wall-clock time,
/// so that a seed replays to the same words.
fn without_time(mut record: Record) -> Record {
    match &mut record {
        Record::ApplyStarted { at, .. }
        | Record::AuditAnchored { at, .. }
        | Record::RolledBack { at, .. }
        | Record::RotationStarted { at, .. }
        | Record::Outcome { at, .. } => *at = None,
        Record::Attested { at, at_unix, .. } => {
            *at = "(drill time)".into();
            *at_unix = None;
        }
        Record::RotationClosed { at, .. }
        | Record::Pushed { at, .. }
        | Record::ForeignRewrapSeen { at, .. } => *at = "(drill time)".into(),
        Record::Intent { .. } | Record::Unauthenticated { .. } => {}
    }
    record
}

fn checksum<R: Serialize>(record: &R) -> String {
    hex::encode(Sha256::digest(
        serde_json::to_vec(record).expect("records serialize"),
    ))
}

/// The heads a journal must extend, kept among the journal key's heads (`journal_key::Head`): the
/// folder's (by its path: the journal cut back or replaced there) and the chain's (by its
/// first seal: a copy of the folder elsewhere went further).
#[derive(Default)]
struct Heads {
    folder: Option<Head>,
    chain: Option<Head>,
}

impl Heads {
    fn load(
        key: &JournalKey,
        state_dir: &Path,
        bytes: &[u8],
        journal: &Path,
    ) -> Result<Self, JournalError> {
        let chain = first_verified_seal(bytes, key).and_then(|seal| key.chain_head_path(&seal));
        Ok(Self {
            folder: load_head(key, key.head_path(state_dir).as_deref(), journal)?,
            chain: load_head(key, chain.as_deref(), journal)?,
        })
    }

    /// The heads found, in the order `parse` reports the seals at their places.
    fn found(&self) -> Vec<&Head> {
        self.folder.iter().chain(self.chain.iter()).collect()
    }

    /// The record that says the journal does not extend one of its heads.
    fn rolled_back(
        &self,
        state_dir: &Path,
        found: usize,
        seals_at: &[Option<String>],
    ) -> Option<Record> {
        // Only the chain's head can have been left by another folder: the folder's head is
        // this folder's by its name (and an older mkplan wrote its path uncanonicalized).
        let of_chain = self
            .folder
            .iter()
            .map(|_| false)
            .chain(self.chain.iter().map(|_| true));
        self.found()
            .into_iter()
            .zip(of_chain)
            .zip(seals_at)
            .find_map(|((head, of_chain), seal_at)| {
                let mut record = rolled_back(Some(head), found, seal_at.as_deref())?;
                let elsewhere = of_chain && Path::new(&head.state_dir) != canonical(state_dir);
                if let (Record::RolledBack { why, .. }, true) = (&mut record, elsewhere) {
                    *why = Some(format!(
                        "a copy of this journal in {} went on to {} records, and this one holds {found}: two folders of one journal would each miss what the other saw",
                        crate::quote::bare(&head.state_dir),
                        head.records
                    ));
                }
                Some(record)
            })
    }
}

/// The folder as the heads name it: its real path where it has one.
fn canonical(state_dir: &Path) -> PathBuf {
    std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf())
}

/// The seal of the journal's first line, if it verifies with `key`.
fn first_verified_seal(bytes: &[u8], key: &JournalKey) -> Option<String> {
    let end = bytes.iter().position(|b| *b == b'\n')?;
    let line: Line = serde_json::from_slice(&bytes[..end]).ok()?;
    let seal = line.seal?;
    (checksum(&line.record) == line.sha256 && key.verify("", &line.sha256, &seal).is_ok())
        .then_some(seal)
}

/// The head recorded at `head`, if any; one that cannot be read is an error.
fn load_head(
    key: &JournalKey,
    head: Option<&Path>,
    journal: &Path,
) -> Result<Option<Head>, JournalError> {
    let Some(head) = head else {
        return Ok(None);
    };
    key.read_head(head).map_err(|why| JournalError::Io {
        path: journal.display().to_string(),
        why: format!("its head, kept with your journal heads, cannot be trusted: {why}. Keep both for investigation"),
    })
}

/// The record that says the journal does not extend `head`: it holds fewer records, or its
/// record at the head's place is not the one mkplan wrote there.
fn rolled_back(head: Option<&Head>, found: usize, seal_at: Option<&str>) -> Option<Record> {
    let head = head?;
    (!head.extended_by(found, seal_at)).then(|| Record::RolledBack {
        expected: head.records,
        found: found as u64,
        at: Some(utc_now()),
        why: None,
    })
}

pub(crate) struct Parsed<R = Record> {
    /// For each head asked about, the seal of the record at its place (its `records`-th), if
    /// the journal has one.
    pub(crate) seals_at: Vec<Option<String>>,
    /// The seal of the first line, if it verified.
    pub(crate) first_seal: Option<String>,
    pub(crate) records: Vec<R>,
    /// The length of the intact prefix of the bytes.
    pub(crate) good_len: usize,
    /// The seal of the last line that verified: the next one chains to it.
    pub(crate) last_seal: String,
}

/// Reads the intact records of `bytes`, each checked against its seal with `key`; a record
/// whose seal does not verify is kept as `Record::Unauthenticated`.
pub(crate) fn parse(
    path: &Path,
    bytes: &[u8],
    key: Option<&JournalKey>,
    heads: &[&Head],
) -> Result<Parsed, JournalError> {
    parse_sealed(path, bytes, key, heads, |line, why, record| {
        Record::Unauthenticated {
            line,
            why,
            record: Box::new(record),
        }
    })
}

/// Reads the intact records of `bytes`, each checked against its seal with `key`; a record
/// whose seal does not verify is passed to `unauthenticated` with its line (from 1) and the
/// reason, and what it returns is kept in its place. For each of `heads`, the seal at its
/// place is reported (`Parsed::seals_at`).
pub(crate) fn parse_sealed<R: Serialize + serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    key: Option<&JournalKey>,
    heads: &[&Head],
    mut unauthenticated: impl FnMut(usize, SealFault, R) -> R,
) -> Result<Parsed<R>, JournalError> {
    let at: Vec<Option<usize>> = heads
        .iter()
        .map(|h| usize::try_from(h.records).ok())
        .collect();
    let mut seals_at = vec![None; heads.len()];
    let mut first_seal = None;
    let mut records = Vec::new();
    let mut offset = 0;
    let mut last_seal = String::new();
    let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
    for (index, raw) in lines.iter().enumerate() {
        let last = index + 1 == lines.len();
        let complete = raw.ends_with(b"\n");
        let decoded = complete
            .then(|| serde_json::from_slice::<Line<R>>(&raw[..raw.len() - 1]).ok())
            .flatten()
            .filter(|line| checksum(&line.record) == line.sha256);
        match decoded {
            Some(line) => {
                let seal = line.seal.as_deref().unwrap_or_default();
                // Each seal chains to the last one that verified: a line removed voids every
                // line after it, and no unauthenticated line can bring the chain back in step.
                let verified = match (key, &line.seal) {
                    (_, None) => Err(SealFault::Missing),
                    (None, Some(_)) => Err(SealFault::NoKey),
                    (Some(key), Some(seal)) => key.verify(&last_seal, &line.sha256, seal),
                };
                if verified.is_ok() {
                    if index == 0 {
                        first_seal = Some(seal.to_string());
                    }
                    last_seal = seal.to_string();
                }
                for (place, seal_at) in at.iter().zip(seals_at.iter_mut()) {
                    if *place == Some(records.len() + 1) {
                        *seal_at = Some(seal.to_string());
                    }
                }
                records.push(match verified {
                    Ok(()) => line.record,
                    Err(why) => unauthenticated(index + 1, why, line.record),
                });
            }
            // A crash can only tear the record it was writing: the last one.
            None if last => {
                return Ok(Parsed {
                    seals_at,
                    first_seal,
                    records,
                    good_len: offset,
                    last_seal,
                });
            }
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
    Ok(Parsed {
        seals_at,
        first_seal,
        records,
        good_len: offset,
        last_seal,
    })
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
