//! The embedded simulator (`--backend sim:PATH`): a fleet file that behaves like the real
//! service, harmful operations included. Every operation that changes the fleet is written
//! back atomically (temporary file, fsync, rename, fsync of the folder) before it returns, so
//! a crash right after an operation leaves exactly what a real service would have.
//!
//! Each operation re-reads the fleet under a lock file beside it, so several processes
//! (an apply and a `status`, two test runs) see one consistent fleet.
//!
//! A rewrap is slow, as on the service: its acceptance is written at once, the operation
//! then waits (outside the lock) until the clock passes its end, completes it and returns.
//! Whoever reads or operates on the fleet after that moment completes it too, so a rewrap
//! finishes even when the process that sent it died.

pub mod clock;
mod consistency;
pub mod faults;
pub mod fleet;
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

pub struct Simulator {
    path: PathBuf,
    faults: Faults,
    clock: Arc<dyn Clock>,
    /// Mutating operations received by this process, for fault injection.
    operations: AtomicU64,
    in_process: Mutex<()>,
}

impl Simulator {
    /// Opens a fleet file. It is parsed on every read, so that each read sees what other
    /// processes wrote; opening only checks that the file is there.
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
            path,
            faults,
            clock: Arc::new(SystemClock),
            operations: AtomicU64::new(0),
            in_process: Mutex::new(()),
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

    /// The fleet as it is now: the file, with the rewraps that are due completed (in memory;
    /// the next operation writes them).
    pub fn read(&self) -> Result<Fleet, BackendError> {
        let mut fleet = self.read_file()?;
        hsm::complete_rewraps(&mut fleet, self.clock.now_ms());
        Ok(fleet)
    }

    /// The fleet as the file says.
    fn read_file(&self) -> Result<Fleet, BackendError> {
        let shown = self.path.display().to_string();
        let text = Fleet::read_text(&self.path).map_err(|e| {
            BackendError::Unreachable(format!(
                "cannot read the simulator's fleet file {}: {e}",
                crate::quote::name(&shown)
            ))
        })?;
        let fleet = Fleet::parse(&shown, &text).map_err(BackendError::Input)?;
        // A `sim serve` that stopped without compacting left its acknowledged changes there.
        if !oplog::log_path(&self.path).exists() {
            return Ok(fleet);
        }
        oplog::recover(&self.path, &text)
            .map(|(fleet, _)| fleet)
            .map_err(BackendError::Unreachable)
    }

    pub fn live(&self, instances: &[String]) -> Result<LiveFleet, BackendError> {
        live_of(&self.read()?, instances)
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
        let result = self.perform_durably(operation);
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
            self.complete_durably()?;
        }
        Ok(())
    }

    fn perform_durably(&self, operation: &SimOperation) -> Result<Accepted, BackendError> {
        let _in_process = self.in_process.lock().unwrap_or_else(|e| e.into_inner());
        let _across_processes = self.lock_file()?;
        let mut fleet = self.read()?;
        let accepted = hsm::perform_at(&mut fleet, operation, self.clock.now_ms())
            .map_err(|refused| refused_error(operation, refused))?;
        self.write(&fleet)?;
        Ok(accepted)
    }

    /// Writes the rewraps that have completed.
    fn complete_durably(&self) -> Result<(), BackendError> {
        let _in_process = self.in_process.lock().unwrap_or_else(|e| e.into_inner());
        let _across_processes = self.lock_file()?;
        let mut fleet = self.read_file()?;
        if hsm::complete_rewraps(&mut fleet, self.clock.now_ms()) {
            self.write(&fleet)?;
        }
        Ok(())
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

    /// Writes the fleet; an operation log a `sim serve` left is retired with it (its changes
    /// were replayed into `fleet` when it was read).
    pub fn write(&self, fleet: &Fleet) -> Result<(), BackendError> {
        let written = if oplog::log_path(&self.path).exists() {
            oplog::compact(&self.path, fleet).map(|_| ())
        } else {
            write_atomically(&self.path, fleet.to_yaml().as_bytes())
        };
        written.map_err(|e| {
            BackendError::Unreachable(format!(
                "cannot write the simulator's fleet file {}: {e}",
                self.path.display()
            ))
        })
    }
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
            BackendError::Transient(format!("{} had no effect: {reason}", operation.name()))
        }
    }
}

/// What the service reports about the named instances of a fleet (complete the rewraps that
/// are due first).
pub fn live_of(fleet: &Fleet, instances: &[String]) -> Result<LiveFleet, BackendError> {
    let mut live = LiveFleet::default();
    for id in instances {
        let instance = fleet
            .instance(id)
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
