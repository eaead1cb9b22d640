//! The operation log of `mkplan sim serve`: `FLEET.yaml.oplog` beside the fleet file. The
//! server appends one line per change and fsyncs it before any response shows the change, so
//! a commit costs a few hundred bytes instead of the whole fleet. The fleet file is rewritten
//! (atomically) only to *compact*: when the server starts on a log a crash left, when it
//! stops cleanly, and when the log grows past `LOG_BYTES_MAX`.
//!
//! The format (docs/fleet.md):
//!
//! ```text
//! mkplan-sim-oplog 1 base_sha256=<SHA-256 of the fleet file the log extends>
//! <seq> <check> <JSON change>          seq counts from 1; check: 16 hex of SHA-256("<seq> <JSON>")
//! <seq> <check> {"compacted":{"fleet_sha256":"…"}}   written before the fleet file is replaced
//! ```
//!
//! A change carries the whole state of each instance it touched and the incidents it added,
//! so replaying is assignment, never arithmetic. Exactly once: a log applies only to the fleet
//! file whose SHA-256 it names (`base_sha256`); once compaction has replaced the fleet file,
//! the `compacted` line names the new file and the log is obsolete. A crash between the two
//! leaves one or the other true, never both.
//!
//! A torn last line (no newline, or a check that fails, with nothing valid after it) was never
//! acknowledged: the server fsyncs a line before it answers. It is discarded. A bad line with
//! valid lines after it is damage to acknowledged changes: refused, with what to do.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Fleet, Incident, SimInstance, write_atomically};

/// The log is compacted into the fleet file once it is this large.
pub const LOG_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// The largest log `read` accepts: a log is compacted long before this.
pub const LOG_FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;

pub(super) const HEADER: &str = "mkplan-sim-oplog 1 base_sha256=";

/// `FLEET.yaml.oplog` beside `FLEET.yaml`.
pub fn log_path(fleet: &Path) -> PathBuf {
    let mut name = fleet.file_name().unwrap_or_default().to_os_string();
    name.push(".oplog");
    fleet.with_file_name(name)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One line of the log after the header.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Entry {
    /// The whole state of the instances a change touched, and the incidents it added.
    Change {
        instances: Vec<SimInstance>,
        incidents_from: usize,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        incidents: Vec<Incident>,
    },
    /// The fleet file is about to be replaced by one with this SHA-256, which holds every
    /// change above.
    Compacted { fleet_sha256: String },
}

impl Entry {
    /// The change that brings `fleet`'s instances at `touched` (indices) into the log, with
    /// the incidents from `incidents_from` on.
    pub fn change(fleet: &Fleet, touched: &[usize], incidents_from: usize) -> Self {
        Entry::Change {
            instances: touched
                .iter()
                .map(|&i| fleet.instances[i].clone())
                .collect(),
            incidents_from,
            incidents: fleet.incidents[incidents_from.min(fleet.incidents.len())..].to_vec(),
        }
    }

    /// The line for this entry as number `seq`, newline included.
    pub fn line(&self, seq: u64) -> String {
        let json = serde_json::to_string(self).expect("a log entry serializes");
        format!("{seq} {} {json}\n", check(seq, &json))
    }
}

fn check(seq: u64, json: &str) -> String {
    sha256_hex(format!("{seq} {json}").as_bytes())[..16].to_string()
}

/// What a log on disk says.
#[derive(Debug)]
pub struct Log {
    pub base_sha256: String,
    /// The entries that verify, numbered 1, 2, … in order.
    pub entries: Vec<Entry>,
    /// Bytes from the start that hold the header and the entries.
    pub good_bytes: usize,
    /// Bytes at the end that were never acknowledged (a torn write), discarded.
    pub torn_bytes: usize,
}

/// Parses a log's text. `Err` for damage to acknowledged lines (or not a log at all).
pub fn parse(text: &[u8]) -> Result<Log, String> {
    let header_end = text
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("it has no header line")?;
    let header = std::str::from_utf8(&text[..header_end]).map_err(|_| "its header is not text")?;
    let base_sha256 = header
        .strip_prefix(HEADER)
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("its header is not `mkplan-sim-oplog 1 base_sha256=…`")?
        .to_string();
    let mut entries = Vec::new();
    let mut at = header_end + 1;
    while at < text.len() {
        let Some(length) = text[at..].iter().position(|&b| b == b'\n') else {
            break; // no newline: torn
        };
        match parse_line(&text[at..at + length], entries.len() as u64 + 1) {
            Some(entry) => entries.push(entry),
            None => break,
        }
        at += length + 1;
    }
    // Whatever follows the last good line was never acknowledged, unless a good line follows.
    let rest = &text[at..];
    if !torn_only(rest) {
        return Err(format!(
            "line {} is damaged but later lines are whole: acknowledged changes were lost or altered",
            entries.len() + 2
        ));
    }
    Ok(Log {
        base_sha256,
        entries,
        good_bytes: at,
        torn_bytes: rest.len(),
    })
}

/// Whether the bytes after the last good line are a torn tail (nothing valid follows), which
/// the next writer may cut off; `false` is damage to acknowledged lines.
pub(super) fn torn_only(rest: &[u8]) -> bool {
    !rest.split(|&b| b == b'\n').skip(1).any(verifies)
}

/// Whether a line is a whole log line with a check that verifies (whatever its number).
fn verifies(line: &[u8]) -> bool {
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    let mut fields = line.splitn(3, ' ');
    let (Some(seq), Some(sum), Some(json)) = (fields.next(), fields.next(), fields.next()) else {
        return false;
    };
    seq.parse::<u64>().is_ok_and(|seq| check(seq, json) == sum)
}

/// Line number `seq` (without its newline), if it is whole and its check verifies.
pub(super) fn parse_line(line: &[u8], seq: u64) -> Option<Entry> {
    let line = std::str::from_utf8(line).ok()?;
    let mut fields = line.splitn(3, ' ');
    let (number, sum, json) = (fields.next()?, fields.next()?, fields.next()?);
    if number.parse::<u64>().ok()? != seq || check(seq, json) != sum {
        return None;
    }
    serde_json::from_str(json).ok()
}

/// Applies the log's changes to `fleet` (read from the file the log names). `Err` names the
/// first change that does not fit: the log is not this fleet's.
pub fn replay(fleet: &mut Fleet, entries: &[Entry]) -> Result<(), String> {
    replay_indexed(fleet, &fleet.index(), entries, 1)
}

/// `replay` with the fleet's index (`Fleet::index`), for entries numbered from `first_seq`.
pub(super) fn replay_indexed(
    fleet: &mut Fleet,
    index: &std::collections::HashMap<String, usize>,
    entries: &[Entry],
    first_seq: usize,
) -> Result<(), String> {
    for (offset, entry) in entries.iter().enumerate() {
        let Entry::Change {
            instances,
            incidents_from,
            incidents,
        } = entry
        else {
            continue;
        };
        let seq = first_seq + offset;
        if *incidents_from != fleet.incidents.len() {
            return Err(format!(
                "change {seq} follows incident {incidents_from}, but the fleet has {}",
                fleet.incidents.len()
            ));
        }
        for instance in instances {
            let Some(slot) = index
                .get(&instance.id.to_ascii_lowercase())
                .map(|&i| &mut fleet.instances[i])
            else {
                return Err(format!(
                    "change {seq} is to instance {}, which the fleet does not have",
                    instance.id
                ));
            };
            *slot = instance.clone();
        }
        fleet.incidents.extend(incidents.iter().cloned());
    }
    Ok(())
}

/// The fleet at `path` with its log replayed, and the log if there was one (which then wants
/// compacting). `text` is the fleet file's text.
pub fn recover(path: &Path, text: &str) -> Result<(Fleet, Option<Log>), String> {
    let log = read_log(path)?;
    recover_with(path, text, log)
}

fn read_log(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let log_file = log_path(path);
    match crate::bounded_read::read(&log_file, LOG_FILE_BYTES_MAX) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!(
            "cannot read the operation log {}: {e}",
            log_file.display()
        )),
    }
}

fn recover_with(
    path: &Path,
    text: &str,
    bytes: Option<Vec<u8>>,
) -> Result<(Fleet, Option<Log>), String> {
    let shown = path.display().to_string();
    let mut fleet = Fleet::parse(&shown, text).map_err(|e| e.to_string())?;
    let Some(bytes) = bytes else {
        return Ok((fleet, None));
    };
    let (log, _) = replay_log(path, text, &mut fleet, &bytes)?;
    Ok((fleet, Some(log)))
}

/// Replays the log `bytes` into `fleet` (the fleet file at `path`, whose text is `text`):
/// the log and the text's SHA-256. A log that a compaction made obsolete comes back with no
/// entries (and a `base_sha256` that is not the text's).
pub(super) fn replay_log(
    path: &Path,
    text: &str,
    fleet: &mut Fleet,
    bytes: &[u8],
) -> Result<(Log, String), String> {
    let shown = path.display().to_string();
    let log_file = log_path(path);
    let damaged = |why: String| {
        format!(
            "the operation log {} beside the fleet file cannot be replayed: {why}. It holds changes `mkplan sim serve` acknowledged: keep it, and restore the fleet file it extends (or, to give those changes up, move the log away)",
            log_file.display()
        )
    };
    let log = parse(bytes).map_err(damaged)?;
    let sha = sha256_hex(text.as_bytes());
    let compacted_into = log.entries.iter().find_map(|e| match e {
        Entry::Compacted { fleet_sha256 } => Some(fleet_sha256.as_str()),
        Entry::Change { .. } => None,
    });
    if compacted_into == Some(sha.as_str()) {
        // Compaction replaced the fleet file and stopped before removing the log.
        return Ok((
            Log {
                entries: Vec::new(),
                ..log
            },
            sha,
        ));
    }
    if log.base_sha256 != sha {
        return Err(damaged(format!(
            "it extends a fleet file with SHA-256 {}, and {shown} is not that file (was it edited or restored while the log was there?)",
            log.base_sha256
        )));
    }
    replay(fleet, &log.entries).map_err(damaged)?;
    Ok((log, sha))
}

/// Reads the fleet at `path` as a server on it would show it: the fleet file with its
/// operation log replayed. For readers that do not hold the fleet's lock (tests, drills,
/// benchmarks): the log is read before the fleet file, so that a compaction between the two
/// reads shows as a mismatch, and is read again, never as the old file without its log.
pub fn read(path: &Path) -> Result<Fleet, String> {
    let mut attempt = 0;
    loop {
        let log = read_log(path)?;
        let text = Fleet::read_text(path).map_err(|e| format!("{}: {e}", path.display()))?;
        match recover_with(path, &text, log) {
            Err(_) if attempt < 3 => attempt += 1,
            result => return result.map(|(fleet, _)| fleet),
        }
    }
}

/// Replaces the fleet file with `fleet` and retires its log, if any, so that neither is
/// applied twice: the `compacted` line first (fsynced), then the atomic replacement, then the
/// log's removal. A torn tail is cut off first, so that the `compacted` line is whole.
/// Returns the new file's SHA-256.
pub fn compact(path: &Path, fleet: &Fleet) -> std::io::Result<String> {
    let bytes = fleet.to_yaml();
    let sha = sha256_hex(bytes.as_bytes());
    let log_file = log_path(path);
    if log_file.exists() {
        let text = crate::bounded_read::read(&log_file, LOG_FILE_BYTES_MAX)?;
        let log = parse(&text).map_err(std::io::Error::other)?;
        let mut file = File::options().write(true).open(&log_file)?;
        file.set_len(log.good_bytes as u64)?;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))?;
        let line = Entry::Compacted {
            fleet_sha256: sha.clone(),
        }
        .line(log.entries.len() as u64 + 1);
        file.write_all(line.as_bytes())?;
        file.sync_data()?;
    }
    write_atomically(path, bytes.as_bytes())?;
    match fs::remove_file(&log_file) {
        Ok(()) => sync_folder(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(sha)
}

pub(super) fn sync_folder(path: &Path) -> std::io::Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    File::open(folder)?.sync_all()
}

/// The server's end of the log: appends lines and makes them durable.
pub struct Writer {
    path: PathBuf,
    /// The fleet file's SHA-256 a new log extends.
    base_sha256: String,
    file: Option<File>,
    /// Bytes in the log so far.
    pub bytes: u64,
    /// Lines written to this log so far (the next is `lines + 1`).
    pub lines: u64,
}

impl Writer {
    /// For the fleet file at `fleet`, whose content has SHA-256 `base_sha256`, with no log.
    pub fn new(fleet: &Path, base_sha256: String) -> Self {
        Self {
            path: fleet.to_path_buf(),
            base_sha256,
            file: None,
            bytes: 0,
            lines: 0,
        }
    }

    /// Appends `entries` (numbered on from the lines already written) and fsyncs them. The
    /// first append creates the log (only its owner may read or write it) and fsyncs the
    /// folder, so that the log's name is as durable as its lines.
    pub fn append(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        if self.file.is_none() {
            text = format!("{HEADER}{}\n", self.base_sha256);
        }
        for entry in entries {
            self.lines += 1;
            text += &entry.line(self.lines);
        }
        let created = self.file.is_none();
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(create_new(&log_path(&self.path))?),
        };
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        if created {
            sync_folder(&self.path)?;
        }
        self.bytes += text.len() as u64;
        Ok(())
    }

    /// Compacts into the fleet file (`fleet`: the state after every line written) and starts
    /// afresh on the new file.
    pub fn compact(&mut self, fleet: &Fleet) -> std::io::Result<()> {
        self.file = None;
        self.base_sha256 = compact(&self.path, fleet)?;
        self.bytes = 0;
        self.lines = 0;
        Ok(())
    }
}

pub(super) fn create_new(path: &Path) -> std::io::Result<File> {
    let mut options = File::options();
    options.create_new(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
#[path = "oplog_tests.rs"]
mod tests;
