//! The server's state and its durability: the fleet lives in memory under a mutex, and every
//! change is on disk before any response shows it. Changes apply to the in-memory fleet, then
//! wait for a *group commit* that writes the whole fleet atomically (temporary file, fsync,
//! rename, fsync of the folder) for every change applied so far. Reads wait for the same
//! commit, so no client ever sees a state that a crash could take back.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, watch};

use super::super::{Clock, Faults, Fleet, hsm};
use super::{Limits, Protocol, Tokens};

/// What `crash_after_op` does: abort the process (`sim serve`), or, for a server inside a
/// drill, raise this signal and never answer, so that the drill kills and restarts it.
#[derive(Clone, Default)]
pub enum Crash {
    #[default]
    Abort,
    Signal(Arc<Notify>),
}

pub(super) struct Shared {
    pub(super) protocol: Protocol,
    pub(super) path: PathBuf,
    pub(super) faults: Faults,
    pub(super) tokens: Tokens,
    pub(super) limits: Limits,
    pub(super) clock: Arc<dyn Clock>,
    /// Mutating requests received, counted from 1, for fault injection.
    pub(super) operations: AtomicU64,
    pub(super) state: Mutex<Durable>,
    /// The number of the last change written to disk.
    pub(super) committed: watch::Sender<u64>,
    pub(super) commit_wanted: Notify,
    /// Crypto units (and instances, for the rewrap) with a command in progress: a real unit
    /// takes one command at a time (each carries the unit's transaction counter + 1).
    pub(super) busy: Mutex<std::collections::HashSet<String>>,
    /// Held for the server's lifetime.
    pub(super) _lock: File,
    pub(super) crash: Crash,
}

pub(super) struct Durable {
    pub(super) fleet: Fleet,
    /// Changes applied to `fleet` so far: operations, and rewraps that completed.
    pub(super) applied: u64,
}

impl Shared {
    /// The fleet as it is now: the rewraps that are due complete here, whichever request
    /// comes first after their end, and are written with the next group commit.
    pub(super) fn state(&self) -> MutexGuard<'_, Durable> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if hsm::complete_rewraps(&mut state.fleet, self.clock.now_ms()) {
            state.applied += 1;
            self.commit_wanted.notify_one();
        }
        state
    }

    /// Waits until the changes applied so far (`applied`) are on disk.
    pub(super) async fn durable(&self, applied: u64) {
        let mut committed = self.committed.subscribe();
        let _ = committed.wait_for(|c| *c >= applied).await;
    }

    /// The crash fault: the process dies, or the drill that runs this server is told and
    /// the request never gets an answer.
    pub(super) async fn crash(&self) {
        match &self.crash {
            Crash::Abort => std::process::abort(),
            Crash::Signal(signal) => {
                signal.notify_one();
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Writes the fleet whenever changes are applied that are not on disk yet: one write for
/// every change that arrived while the previous write was running.
pub(super) async fn group_commits(shared: Arc<Shared>) {
    loop {
        shared.commit_wanted.notified().await;
        // A copy under the lock (fast); serializing and writing without it, so that
        // operations keep applying while the disk works.
        let (fleet, applied) = {
            let state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.applied <= *shared.committed.borrow() {
                continue;
            }
            (state.fleet.clone(), state.applied)
        };
        // The write holds the server (and so the fleet file's lock) until it is done: a
        // server started again on the file after a kill reads it only then.
        let writer = shared.clone();
        let written = tokio::task::spawn_blocking(move || {
            super::super::write_atomically(&writer.path, fleet.to_yaml().as_bytes())
        })
        .await;
        let failed = match written {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            // The server is being killed (a drill's restart): nothing more to do.
            Err(e) if e.is_cancelled() => return,
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = failed {
            // Memory and disk now disagree and no response may claim durability: stop as a
            // crash would. The operations waiting get no response; their clients settle them
            // by reading the state after a restart.
            eprintln!(
                "mkplan sim serve: cannot write the fleet file {}: {e}; stopping",
                shared.path.display()
            );
            shared.crash().await;
        }
        shared.committed.send_replace(applied);
    }
}
