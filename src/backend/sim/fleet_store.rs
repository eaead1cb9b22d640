//! The embedded simulator's fleet on disk: the fleet file and its operation log
//! (`FLEET.yaml.oplog`, the format `sim serve` writes: `oplog`), with the fleet held in memory
//! between operations. An operation costs one appended line, not a rewrite of the whole file,
//! so an apply to N instances does work in proportion to N, not N².
//!
//! Other processes may write the same fleet (a second apply, a drill), each under the fleet's
//! lock for one operation; so before each operation, and each read, the store looks at the
//! disk: a fleet file that is not the one it read (another process compacted, or someone
//! edited it) is read again whole; a log that grew is read from where it was, its new lines
//! replayed. Reading without the lock is safe: a line being appended has no newline yet and
//! reads as a torn tail, which is ignored until it is whole.
//!
//! The log is compacted into the fleet file when the process that wrote it ends cleanly
//! (`Simulator`'s drop), when it grows past twice the fleet file (or `LOG_BYTES_MAX`), by
//! `mkplan sim compact`, or when a `sim serve` starts on it. A log a
//! killed process left is replayed by every reader, and the next writer appends to it, after
//! cutting off a torn last line (a line that never reached its newline was never
//! acknowledged).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::oplog::{self, Entry, LOG_FILE_BYTES_MAX};
use super::{BackendError, Fleet};

/// What identifies a file's content without reading it: a replaced file (rename over it)
/// or a file written in place changes at least one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    device: u64,
    inode: u64,
    bytes: u64,
    modified_ns: i128,
    changed_ns: i128,
}

impl Stamp {
    fn of(metadata: &fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Self {
                device: metadata.dev(),
                inode: metadata.ino(),
                bytes: metadata.len(),
                modified_ns: i128::from(metadata.mtime()) * 1_000_000_000
                    + i128::from(metadata.mtime_nsec()),
                changed_ns: i128::from(metadata.ctime()) * 1_000_000_000
                    + i128::from(metadata.ctime_nsec()),
            }
        }
        #[cfg(not(unix))]
        {
            let modified_ns = metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            Self {
                device: 0,
                inode: 0,
                bytes: metadata.len(),
                modified_ns,
                changed_ns: 0,
            }
        }
    }

    /// The same file (not necessarily the same length): for a log, which only grows.
    fn same_file(&self, other: &Stamp) -> bool {
        (self.device, self.inode) == (other.device, other.inode)
    }
}

/// The log as this process knows it.
struct LogTail {
    stamp: Stamp,
    /// Bytes from the start that hold the header and the whole lines replayed.
    good_bytes: u64,
    /// Lines replayed (the next is `lines + 1`).
    lines: u64,
    /// A compaction wrote this log's last line: it applies to an older fleet file.
    obsolete: bool,
    /// Open for appending, once this process has appended.
    file: Option<Arc<File>>,
}

/// The fleet as the disk says, and what it was read from.
struct Loaded {
    fleet: Fleet,
    /// Each instance's position (`Fleet::index`): instances are never added or removed.
    index: HashMap<String, usize>,
    fleet_stamp: Stamp,
    /// The fleet file's SHA-256 (which a new log names), once known.
    fleet_sha256: Option<String>,
    log: Option<LogTail>,
}

pub(super) struct FleetStore {
    path: PathBuf,
    loaded: Option<Loaded>,
    /// Lines this process has appended, over every log it wrote.
    pub(super) written: u64,
    /// Whether this process appended to a log (which it then compacts when it ends).
    pub(super) wrote: bool,
}

/// A line appended but perhaps not yet on disk: `sync` makes it so.
pub(super) struct Appended {
    pub(super) number: u64,
}

impl FleetStore {
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            loaded: None,
            written: 0,
            wrote: false,
        }
    }

    /// The fleet, brought up to date with the disk (`refresh` first).
    pub(super) fn fleet(&mut self) -> &mut Fleet {
        &mut self.loaded.as_mut().expect("refreshed before use").fleet
    }

    /// The position of instance `id` (any case), if the fleet has it.
    pub(super) fn position(&self, id: &str) -> Option<usize> {
        let loaded = self.loaded.as_ref().expect("refreshed before use");
        loaded.index.get(&id.to_ascii_lowercase()).copied()
    }

    /// Brings the fleet in memory up to date with the fleet file and its log.
    pub(super) fn refresh(&mut self) -> Result<(), BackendError> {
        if let Some(loaded) = &mut self.loaded
            && stamp(&self.path).as_ref() == Some(&loaded.fleet_stamp)
            && loaded.catch_up(&self.path)
        {
            return Ok(());
        }
        self.loaded = None;
        self.loaded = Some(load(&self.path)?);
        Ok(())
    }

    /// Appends `entry` to the log, creating it if there is none. Hold the fleet's lock, and
    /// `refresh` under it first: the line is numbered after the lines read.
    pub(super) fn append(&mut self, entry: &Entry) -> std::io::Result<Appended> {
        let path = self.path.clone();
        let loaded = self.loaded.as_mut().expect("refreshed before use");
        let tail = match &mut loaded.log {
            Some(tail) if !tail.obsolete => tail,
            _ => loaded.start_log(&path)?,
        };
        let file = match &tail.file {
            Some(file) => file.clone(),
            None => tail.open(&path)?,
        };
        let line = entry.line(tail.lines + 1);
        (&*file).write_all(line.as_bytes())?;
        tail.lines += 1;
        tail.good_bytes += line.len() as u64;
        tail.stamp = Stamp::of(&file.metadata()?);
        self.written += 1;
        self.wrote = true;
        Ok(Appended {
            number: self.written,
        })
    }

    /// Whether the log has grown enough to compact it: past `LOG_BYTES_MAX`, or (for a large
    /// fleet) past twice the fleet file, so that a compaction, which rewrites the whole file,
    /// comes once per about as many changes as the fleet has instances, and an apply stays
    /// linear. Well below what a reader accepts (`LOG_FILE_BYTES_MAX`).
    pub(super) fn wants_compaction(&self) -> bool {
        let Some(loaded) = &self.loaded else {
            return false;
        };
        let Some(tail) = &loaded.log else {
            return false;
        };
        let threshold =
            (2 * loaded.fleet_stamp.bytes).clamp(oplog::LOG_BYTES_MAX, LOG_FILE_BYTES_MAX / 2);
        tail.good_bytes > threshold
    }

    /// The log file lines are appended to now, if any, and the lines written so far.
    pub(super) fn appending(&self) -> (Option<Arc<File>>, u64) {
        let file = self
            .loaded
            .as_ref()
            .and_then(|l| l.log.as_ref())
            .and_then(|t| t.file.clone());
        (file, self.written)
    }

    /// Compacts the log, if there is one, into the fleet file. Hold the fleet's lock. The
    /// number of changes the log held, or `None` without a log.
    pub(super) fn compact(&mut self) -> Result<Option<u64>, BackendError> {
        self.refresh()?;
        let loaded = self.loaded.as_mut().expect("refreshed");
        let Some(tail) = &loaded.log else {
            return Ok(None);
        };
        let changes = if tail.obsolete { 0 } else { tail.lines };
        let sha = oplog::compact(&self.path, &loaded.fleet).map_err(|e| {
            BackendError::Unreachable(format!(
                "cannot compact the operation log {} into the fleet file {}: {e}",
                oplog::log_path(&self.path).display(),
                self.path.display()
            ))
        })?;
        loaded.log = None;
        loaded.fleet_sha256 = Some(sha);
        match stamp(&self.path) {
            Some(new) => loaded.fleet_stamp = new,
            None => self.loaded = None,
        }
        Ok(Some(changes))
    }
}

impl Loaded {
    /// Reads what was appended to the log since it was last read. `false` when that is not
    /// possible (another log, a compaction, damage): then the whole fleet is read again.
    fn catch_up(&mut self, path: &Path) -> bool {
        let log_file = oplog::log_path(path);
        let metadata = match fs::metadata(&log_file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.log.is_none(),
            Err(_) => return false,
            Ok(metadata) => metadata,
        };
        let now = Stamp::of(&metadata);
        let Some(tail) = &mut self.log else {
            return false; // another process started a log: read it whole
        };
        if !tail.stamp.same_file(&now) || now.bytes < tail.good_bytes {
            return false;
        }
        if now.bytes == tail.good_bytes || tail.obsolete {
            return !tail.obsolete || now.bytes == tail.good_bytes;
        }
        let Ok(bytes) = read_from(&log_file, tail.good_bytes) else {
            return false;
        };
        let mut at = 0;
        let mut entries = Vec::new();
        while let Some(length) = bytes[at..].iter().position(|&b| b == b'\n') {
            let seq = tail.lines + entries.len() as u64 + 1;
            match oplog::parse_line(&bytes[at..at + length], seq) {
                Some(Entry::Compacted { .. }) => return false,
                Some(entry) => entries.push(entry),
                None => break,
            }
            at += length + 1;
        }
        let first_seq = tail.lines as usize + 1;
        if oplog::replay_indexed(&mut self.fleet, &self.index, &entries, first_seq).is_err() {
            return false;
        }
        tail.lines += entries.len() as u64;
        tail.good_bytes += at as u64;
        tail.stamp = now;
        true
    }

    /// Starts a new log on the fleet file (removing an obsolete one first), fsynced with its
    /// folder so that its name is as durable as its lines.
    fn start_log(&mut self, path: &Path) -> std::io::Result<&mut LogTail> {
        let log_file = oplog::log_path(path);
        if self.log.take().is_some() {
            fs::remove_file(&log_file)?;
        }
        let sha = match &self.fleet_sha256 {
            Some(sha) => sha.clone(),
            None => {
                let text = Fleet::read_text(path)?;
                if stamp(path) != Some(self.fleet_stamp) {
                    return Err(std::io::Error::other(
                        "the fleet file changed while the fleet's lock was held",
                    ));
                }
                oplog::sha256_hex(text.as_bytes())
            }
        };
        self.fleet_sha256 = Some(sha.clone());
        let mut file = oplog::create_new(&log_file)?;
        let header = format!("{}{sha}\n", oplog::HEADER);
        file.write_all(header.as_bytes())?;
        file.sync_data()?;
        oplog::sync_folder(path)?;
        let stamp = Stamp::of(&file.metadata()?);
        Ok(self.log.insert(LogTail {
            stamp,
            good_bytes: header.len() as u64,
            lines: 0,
            obsolete: false,
            file: Some(Arc::new(file)),
        }))
    }
}

impl LogTail {
    /// Opens a log another process left, for appending, after cutting off its torn tail.
    fn open(&mut self, path: &Path) -> std::io::Result<Arc<File>> {
        let log_file = oplog::log_path(path);
        // Appending: another process's lines (under the lock) move the end between ours.
        let mut file = File::options().read(true).append(true).open(&log_file)?;
        let metadata = file.metadata()?;
        if !Stamp::of(&metadata).same_file(&self.stamp) {
            return Err(std::io::Error::other(
                "the operation log was replaced while the fleet's lock was held",
            ));
        }
        if metadata.len() > self.good_bytes {
            let mut rest = Vec::new();
            file.seek(SeekFrom::Start(self.good_bytes))?;
            file.read_to_end(&mut rest)?;
            if !oplog::torn_only(&rest) {
                return Err(std::io::Error::other(format!(
                    "line {} of the operation log is damaged but later lines are whole",
                    self.lines + 2
                )));
            }
            file.set_len(self.good_bytes)?;
        }
        let file = Arc::new(file);
        self.file = Some(file.clone());
        Ok(file)
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    fs::metadata(path).ok().map(|m| Stamp::of(&m))
}

/// The log's bytes from `offset` on.
fn read_from(log_file: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(log_file)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.take(LOG_FILE_BYTES_MAX).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The log's bytes and what they were read from, if there is a log.
fn read_log(log_file: &Path) -> Result<Option<(Vec<u8>, Stamp)>, BackendError> {
    let cannot = |e: std::io::Error| {
        BackendError::Unreachable(format!(
            "cannot read the operation log {}: {e}",
            log_file.display()
        ))
    };
    let file = match File::open(log_file) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(cannot(e)),
    };
    let metadata = file.metadata().map_err(cannot)?;
    if !metadata.is_file() || metadata.len() > LOG_FILE_BYTES_MAX {
        return Err(cannot(std::io::Error::other(format!(
            "not a regular file of at most {LOG_FILE_BYTES_MAX} bytes"
        ))));
    }
    let mut bytes = Vec::new();
    file.take(LOG_FILE_BYTES_MAX)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    Ok(Some((bytes, Stamp::of(&metadata))))
}

/// Reads the fleet file and replays its log. The log is read first, so that a compaction
/// between the two reads shows as a log that does not fit (then both are read again), never as
/// the old fleet file without its log.
fn load(path: &Path) -> Result<Loaded, BackendError> {
    let shown = path.display().to_string();
    let log_file = oplog::log_path(path);
    let mut attempt = 0;
    loop {
        let log = read_log(&log_file)?;
        let (text, fleet_stamp) = read_fleet(path)?;
        let mut fleet = Fleet::parse(&shown, &text).map_err(BackendError::Input)?;
        let Some((bytes, log_stamp)) = log else {
            let index = fleet.index();
            return Ok(Loaded {
                fleet,
                index,
                fleet_stamp,
                fleet_sha256: None,
                log: None,
            });
        };
        match oplog::replay_log(path, &text, &mut fleet, &bytes) {
            Err(_) if attempt < 3 => attempt += 1,
            Err(damaged) => return Err(BackendError::Unreachable(damaged)),
            Ok((log, sha)) => {
                let index = fleet.index();
                let obsolete = log.base_sha256 != sha;
                return Ok(Loaded {
                    fleet,
                    index,
                    fleet_stamp,
                    fleet_sha256: Some(sha),
                    log: Some(LogTail {
                        stamp: log_stamp,
                        good_bytes: log.good_bytes as u64,
                        lines: log.entries.len() as u64,
                        obsolete,
                        file: None,
                    }),
                });
            }
        }
    }
}

/// The fleet file's text and its stamp, taken so that they belong together.
fn read_fleet(path: &Path) -> Result<(String, Stamp), BackendError> {
    let cannot = |e: std::io::Error| {
        BackendError::Unreachable(format!(
            "cannot read the simulator's fleet file {}: {e}",
            crate::quote::path(path)
        ))
    };
    let mut attempt = 0;
    loop {
        let before = fs::metadata(path).map_err(cannot)?;
        let text = Fleet::read_text(path).map_err(cannot)?;
        let after = Stamp::of(&fs::metadata(path).map_err(cannot)?);
        // The stamp from before the read: if the file changed during it, the next refresh
        // sees that and reads it again.
        if Stamp::of(&before) == after || attempt == 3 {
            return Ok((text, Stamp::of(&before)));
        }
        attempt += 1;
    }
}
