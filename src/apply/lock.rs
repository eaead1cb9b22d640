//! One apply per state directory: an OS file lock, which dies with its process, so a crashed
//! apply never blocks its rerun. The lock file names its holder for the refusal message.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Holder {
    pub lock_id: String,
    pub host: String,
    pub pid: u32,
    pub started: String,
}

pub struct StateLock {
    _file: File,
}

pub fn acquire(state_dir: &Path, holder: &Holder) -> Result<StateLock, String> {
    super::state_dir::prepare(state_dir)?;
    let path = state_dir.join("lock");
    let mut file = super::state_dir::open(&path, OpenOptions::new().read(true).write(true))
        .map_err(|e| format!("cannot open the lock {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let held = fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<Holder>(&t).ok());
            return Err(match held {
                Some(h) => format!(
                    "another apply holds the lock on {}: lock {} by process {} on {} since {}; wait for it to finish",
                    state_dir.display(),
                    h.lock_id,
                    h.pid,
                    h.host,
                    h.started
                ),
                None => format!(
                    "another apply holds the lock on {}; wait for it to finish",
                    state_dir.display()
                ),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(format!("cannot lock {}: {e}", path.display()));
        }
    }
    file.set_len(0).map_err(|e| e.to_string())?;
    file.write_all(
        serde_json::to_string(holder)
            .expect("holder serializes")
            .as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    Ok(StateLock { _file: file })
}

/// Releases a lock left by a process that is gone, given its exact id. A lock that a live
/// process holds is never broken: it is released when that process ends.
pub fn release(state_dir: &Path, lock_id: &str) -> Result<(), String> {
    super::state_dir::check(state_dir)?;
    let path = state_dir.join("lock");
    if !path.exists() {
        return Err(format!("no lock at {}", path.display()));
    }
    let file = super::state_dir::open(&path, OpenOptions::new().read(true).write(true))
        .map_err(|e| format!("no lock at {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(format!(
                "the lock on {} is held by a running process; mkplan never breaks a live lock (it ends with its process)",
                state_dir.display()
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e.to_string()),
    }
    let held = fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Holder>(&t).ok());
    match held {
        Some(h) if h.lock_id == lock_id => {
            file.set_len(0).map_err(|e| e.to_string())?;
            file.sync_all().map_err(|e| e.to_string())
        }
        Some(h) => Err(format!(
            "the lock on {} has id {}, not {lock_id}; give its exact id",
            state_dir.display(),
            h.lock_id
        )),
        None => Err(format!("no lock is recorded on {}", state_dir.display())),
    }
}

/// The holder of the state folder's lock, if a running process holds it.
pub fn holder_of(state_dir: &Path) -> Option<Holder> {
    let path = state_dir.join("lock");
    // A command that only reads creates nothing.
    if !path.exists() {
        return None;
    }
    let file = super::state_dir::open(&path, OpenOptions::new().read(true)).ok()?;
    match file.try_lock() {
        Ok(()) => None,
        Err(_) => fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Holder>(&t).ok()),
    }
}
