//! The embedded simulator (`--backend sim:PATH`): a fleet file that behaves like the real
//! service, harmful operations included. Every operation that changes the fleet is on disk
//! before it returns: one line appended to the fleet's operation log and fsynced (several
//! operations that land together share one fsync), so a crash right after an operation leaves
//! exactly what a real service would have. The log is replayed by every reader and compacted
//! into the fleet file when the process ends cleanly (`fleet_store`, docs/fleet.md).
//!
//! Each operation takes a lock file beside the fleet and catches up with what other processes
//! (an apply and a `status`, two test runs) wrote, so they all see one consistent fleet.
//!
//! A rewrap is slow, as on the service: its acceptance is written at once, the operation
//! then waits (outside the lock) until the clock passes its end, completes it and returns.
//! Whoever reads or operates on the fleet after that moment completes it too, so a rewrap
//! finishes even when the process that sent it died.

pub mod clock;
mod consistency;
pub mod faults;
pub mod fleet;
mod fleet_store;
pub mod hsm;
pub mod oplog;
mod rewrap;
pub mod server;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use clock::{Clock, SystemClock};
pub use faults::Faults;
pub use fleet::{Fleet, Incident, KeyStorage, RewrapInProgress, SimInstance};
pub use hsm::{Accepted, Refused, SimOperation};

use super::{BackendError, SendBy};
use crate::model::LiveFleet;
use fleet_store::FleetStore;

pub struct Simulator {
    path: PathBuf,
    faults: Faults,
    clock: Arc<dyn Clock>,
    /// Mutating operations received by this process, for fault injection.
    operations: AtomicU64,
    /// The fleet in memory; held for the whole of an operation.
    store: Arc<Mutex<FleetStore>>,
    /// The lines of this process's that are on disk (`FleetStore::written` counts them all).
    synced: Arc<Mutex<u64>>,
}

impl Simulator {
    /// Opens a fleet file. It is read at the first read or operation, and each later one
    /// catches up with what other processes wrote; opening only checks that the file is there.
    pub fn open(path: &Path, faults: Faults) -> Result<Self, BackendError> {
        fs::metadata(path).map_err(|e| {
            BackendError::Unreachable(format!(
                "cannot read the simulator's fleet file {}: {e}",
                crate::quote::path(path)
            ))
        })?;
        // The file itself, not a symlink to it: an atomic write renames over the path it is
        // given, and must replace the fleet, not the link.
        let path = fs::canonicalize(path).map_err(|e| {
            BackendError::Unreachable(format!(
                "cannot resolve the simulator's fleet file {}: {e}",
                crate::quote::path(path)
            ))
        })?;
        Ok(Self {
            faults,
            clock: Arc::new(SystemClock),
            operations: AtomicU64::new(0),
            store: Arc::new(Mutex::new(FleetStore::new(&path))),
            synced: Arc::new(Mutex::new(0)),
            path,
        })
    }

    /// Reads the time from `clock` instead of the wall clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fleet as it is now: the file and its log, with the rewraps that are due completed
    /// (in memory; the next operation writes them).
    pub fn read(&self) -> Result<Fleet, BackendError> {
        let mut fleet = {
            let mut store = self.store();
            store.refresh()?;
            store.fleet().clone()
        };
        hsm::complete_rewraps(&mut fleet, self.clock.now_ms());
        Ok(fleet)
    }

    fn store(&self) -> std::sync::MutexGuard<'_, FleetStore> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the service reports about the named instances, with their due rewraps completed
    /// (in memory). Only their live views are made from the fleet, and only an instance with
    /// a due rewrap is copied first: an apply reads one instance after each of its rewraps,
    /// and a copy of a whole 10,000-instance fleet per read made the apply grow as the square
    /// of the fleet.
    pub fn live(&self, instances: &[String]) -> Result<LiveFleet, BackendError> {
        let now_ms = self.clock.now_ms();
        let mut store = self.store();
        store.refresh()?;
        let mut live = Vec::with_capacity(instances.len());
        for id in instances {
            let Some(index) = store.position(id) else {
                return Err(BackendError::UnknownInstance {
                    instance: id.clone(),
                    known: store
                        .fleet()
                        .instances
                        .iter()
                        .map(|i| i.id.clone())
                        .collect(),
                });
            };
            let instance = &store.fleet().instances[index];
            // Only an instance whose rewrap is due is copied, to complete it as a read sees it.
            let due = instance
                .key_storage
                .rewrap_in_progress
                .as_ref()
                .is_some_and(|running| running.completes_at_ms <= now_ms);
            if due {
                let mut alone = Fleet {
                    instances: vec![instance.clone()],
                    incidents: Vec::new(),
                };
                hsm::complete_rewraps(&mut alone, now_ms);
                live.push(alone.instances[0].live());
            } else {
                live.push(instance.live());
            }
        }
        Ok(LiveFleet { instances: live })
    }

    /// Performs one mutating operation, with the faults injected for its number. A rewrap
    /// returns when it has completed; its faults act right after its acceptance (a crash
    /// leaves it running, a lost response returns at once while it runs on).
    pub async fn perform(&self, operation: &SimOperation) -> Result<(), BackendError> {
        self.perform_by(operation, SendBy::ANY_TIME).await
    }

    /// `perform` for a client that promised to send by `send_by`: the embedded simulator is
    /// both the client and the service, and its latency is the way there, so the request
    /// "leaves" when the latency has passed, and the deadline is checked then.
    pub async fn perform_by(
        &self,
        operation: &SimOperation,
        send_by: SendBy,
    ) -> Result<(), BackendError> {
        let number = self.operations.fetch_add(1, Ordering::SeqCst) + 1;
        if self.faults.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.faults.latency_ms)).await;
        }
        send_by.check(operation.name())?;
        if self.faults.fail_op.contains(&number) {
            return Err(BackendError::Transient(format!(
                "injected fault fail_op={number}: {} failed with a transient error and had no effect",
                operation.name()
            )));
        }
        let result = self.perform_durably(operation).await;
        if self.faults.crash_after_op.contains(&number) {
            // As if the operator's machine lost power: no unwinding, no cleanup.
            std::process::abort();
        }
        if self.faults.lose_response_op.contains(&number) {
            return Err(BackendError::Transient(format!(
                "injected fault lose_response_op={number}: the response to {} was lost",
                operation.name()
            )));
        }
        if let Accepted::RewrapRunning { completes_at_ms } = result? {
            clock::sleep_until(self.clock.as_ref(), completes_at_ms).await;
            self.complete_durably().await?;
        }
        Ok(())
    }

    async fn perform_durably(&self, operation: &SimOperation) -> Result<Accepted, BackendError> {
        let (result, appended) = {
            let mut store = self.store();
            let _across_processes = self.lock_file()?;
            store.refresh()?;
            let now_ms = self.clock.now_ms();
            let index = store.position(operation.instance());
            let fleet = store.fleet();
            // Only the operation's instance is touched: the others' rewraps complete when
            // something reads or operates on them.
            let (result, changed) = match index {
                Some(index) => perform_on(fleet, index, operation, now_ms),
                None => (hsm::perform_at(fleet, operation, now_ms), None),
            };
            let appended = match changed {
                Some(entry) => Some(store.append(&entry).map_err(|e| self.cannot_write(e))?),
                None => None,
            };
            if store.wants_compaction() {
                store.compact()?;
            }
            (result, appended)
        };
        if let Some(appended) = appended {
            self.sync(appended).await?;
        }
        result.map_err(|refused| refused_error(operation, refused))
    }

    /// Writes the rewraps that have completed.
    async fn complete_durably(&self) -> Result<(), BackendError> {
        let appended = {
            let mut store = self.store();
            let _across_processes = self.lock_file()?;
            store.refresh()?;
            let now_ms = self.clock.now_ms();
            let fleet = store.fleet();
            let due: Vec<usize> = (0..fleet.instances.len())
                .filter(|&i| {
                    fleet.instances[i]
                        .key_storage
                        .rewrap_in_progress
                        .as_ref()
                        .is_some_and(|r| r.completes_at_ms <= now_ms)
                })
                .collect();
            if due.is_empty() {
                return Ok(());
            }
            let incidents_from = fleet.incidents.len();
            hsm::complete_rewraps(fleet, now_ms);
            let entry = oplog::Entry::change(fleet, &due, incidents_from);
            let appended = store.append(&entry).map_err(|e| self.cannot_write(e))?;
            if store.wants_compaction() {
                store.compact()?;
            }
            appended
        };
        self.sync(appended).await
    }

    /// Waits until line `appended` is on disk: one fsync for every line written before it
    /// started (a group commit), unless an fsync that started after the line did so already.
    /// The fsync runs off the async workers, so that other operations keep appending.
    async fn sync(&self, appended: fleet_store::Appended) -> Result<(), BackendError> {
        let (store, synced) = (self.store.clone(), self.synced.clone());
        let synced = tokio::task::spawn_blocking(move || {
            let mut synced = synced.lock().unwrap_or_else(|e| e.into_inner());
            if *synced >= appended.number {
                return Ok(());
            }
            let (file, written) = store.lock().unwrap_or_else(|e| e.into_inner()).appending();
            // No file: a compaction since put every line into the fleet file, fsynced.
            if let Some(file) = file {
                file.sync_data()?;
            }
            *synced = written;
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        synced.map_err(|e| self.cannot_write(e))
    }

    fn cannot_write(&self, e: std::io::Error) -> BackendError {
        BackendError::Unreachable(format!(
            "cannot write the simulator's operation log {}: {e}",
            oplog::log_path(&self.path).display()
        ))
    }

    /// Compacts the operation log into the fleet file, if there is a log: the number of
    /// changes it held, or `None`.
    pub fn compact(&self) -> Result<Option<u64>, BackendError> {
        let mut store = self.store();
        let _across_processes = self.lock_file()?;
        store.compact()
    }

    /// The fleet's lock, waited for a bounded time: a `sim serve` holds it for its lifetime,
    /// another apply only for one operation.
    fn lock_file(&self) -> Result<File, BackendError> {
        let lock_path = lock_path(&self.path);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                BackendError::Unreachable(format!("cannot open {}: {e}", lock_path.display()))
            })?;
        let deadline = std::time::Instant::now() + Duration::from_millis(LOCK_WAIT_MS_MAX);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(BackendError::Unreachable(format!(
                        "the fleet file {} stayed locked for {} s: another process holds it (a `mkplan sim serve` on it? use --backend http://… to reach that server instead)",
                        self.path.display(),
                        LOCK_WAIT_MS_MAX / 1000
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(BackendError::Unreachable(format!(
                        "cannot lock {}: {e}",
                        lock_path.display()
                    )));
                }
            }
        }
    }
}

/// When the process that wrote the log ends cleanly (whatever its command's outcome), the log
/// is compacted into the fleet file. A crash leaves it for the next process to replay.
impl Drop for Simulator {
    fn drop(&mut self) {
        if !self.store().wrote {
            return;
        }
        if let Err(e) = self.compact() {
            eprintln!(
                "warning: {e}; the operation log stays beside it, and every reader replays it (`mkplan sim compact --fleet {}` compacts it)",
                self.path.display()
            );
        }
    }
}

/// Performs `operation` on the instance at `index` alone (its due rewrap completes first), so
/// that an operation costs the same on a fleet of 10 and of 10,000. The log entry of what
/// changed, if anything did.
fn perform_on(
    fleet: &mut Fleet,
    index: usize,
    operation: &SimOperation,
    now_ms: u64,
) -> (Result<Accepted, Refused>, Option<oplog::Entry>) {
    let before = fleet.instances[index].clone();
    let mut alone = Fleet {
        instances: vec![before.clone()],
        incidents: Vec::new(),
    };
    let result = hsm::perform_at(&mut alone, operation, now_ms);
    let instance = alone.instances.pop().expect("one instance");
    if instance == before && alone.incidents.is_empty() {
        return (result, None);
    }
    fleet.instances[index] = instance;
    let incidents_from = fleet.incidents.len();
    fleet.incidents.append(&mut alone.incidents);
    let entry = oplog::Entry::change(fleet, &[index], incidents_from);
    (result, Some(entry))
}

/// The error a refusal is for the executor: a broken rule is final; a busy instance had no
/// effect and may take the command later, as the HTTP API's 409 says.
pub fn refused_error(operation: &SimOperation, refused: Refused) -> BackendError {
    match refused {
        Refused::Rule(reason) => BackendError::Refused {
            operation: operation.name().into(),
            reason,
        },
        Refused::Busy(reason) => {
            BackendError::RewrapRunning(format!("{} had no effect: {reason}", operation.name()))
        }
        // A stale command (the register holds another key than it names): final, as the
        // HTTP API's 409 new_register_changed is.
        Refused::Changed(reason) => BackendError::Refused {
            operation: operation.name().into(),
            reason,
        },
    }
}

/// What the service reports about the named instances of a fleet (complete the rewraps that
/// are due first).
pub fn live_of(fleet: &Fleet, instances: &[String]) -> Result<LiveFleet, BackendError> {
    let mut live = LiveFleet::default();
    let index = fleet.index();
    for id in instances {
        let instance = index
            .get(&id.to_ascii_lowercase())
            .map(|&i| &fleet.instances[i])
            .ok_or_else(|| BackendError::UnknownInstance {
                instance: id.clone(),
                known: fleet.instances.iter().map(|i| i.id.clone()).collect(),
            })?;
        live.instances.push(instance.live());
    }
    Ok(live)
}

/// How long an operation waits for the fleet file's lock.
pub const LOCK_WAIT_MS_MAX: u64 = 10_000;

/// `.NAME.lock` beside the fleet file.
pub fn lock_path(fleet: &Path) -> PathBuf {
    let name = fleet
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    fleet.with_file_name(format!(".{name}.lock"))
}

/// Atomic replace: write a temporary file in the same folder, fsync it, rename it over
/// `path`, fsync the folder so the rename itself is durable.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temporary = tempfile::NamedTempFile::new_in(&folder)?;
    temporary.write_all(bytes)?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|e| e.error)?;
    File::open(&folder)?.sync_all()
}

#[cfg(test)]
mod tests;
