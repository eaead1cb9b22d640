//! The server's state and its durability: the fleet lives in memory under a mutex, and every
//! change is on disk before any response shows it. Changes apply to the in-memory fleet and
//! queue a line for the operation log (`oplog`), then wait for a *group commit* that appends
//! and fsyncs every line queued so far. Reads wait for the same commit, so no client ever sees
//! a state that a crash could take back. The fleet file itself is rewritten only to compact
//! the log: when it grows past `oplog::LOG_BYTES_MAX`, and when the server stops.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, watch};

use super::super::oplog::{self, Entry};
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
    /// The operation log; held while a group commit or a compaction writes.
    pub(super) log: Mutex<oplog::Writer>,
    /// The number of the last change written to disk.
    pub(super) committed: watch::Sender<u64>,
    pub(super) commit_wanted: Notify,
    /// Crypto units (and instances, for the rewrap) with a command in progress: a real unit
    /// takes one command at a time (each carries the unit's transaction counter + 1).
    pub(super) busy: Mutex<std::collections::HashSet<String>>,
    /// `--protocol tke`: each domain's transaction counter and importer key.
    pub(super) cards: Mutex<super::tke_card::Cards>,
    /// Held for the server's lifetime.
    pub(super) _lock: File,
    pub(super) crash: Crash,
}

pub(super) struct Durable {
    pub(super) fleet: Fleet,
    /// Changes applied to `fleet` so far: operations, and rewraps that completed.
    pub(super) applied: u64,
    /// The log lines of the changes not yet handed to a group commit, in order.
    pub(super) pending: Vec<Entry>,
}

impl Durable {
    pub(super) fn new(fleet: Fleet) -> Self {
        Self {
            fleet,
            applied: 0,
            pending: Vec::new(),
        }
    }

    /// Counts a change to the instances at `touched` (indices) that added the incidents from
    /// `incidents_from` on, and queues its log line.
    pub(super) fn record(&mut self, touched: &[usize], incidents_from: usize) {
        self.pending
            .push(Entry::change(&self.fleet, touched, incidents_from));
        self.applied += 1;
    }

    /// The instances (indices) whose rewrap completes by `now_ms`.
    pub(super) fn rewraps_due(&self, now_ms: u64) -> Vec<usize> {
        self.fleet
            .instances
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                i.key_storage
                    .rewrap_in_progress
                    .as_ref()
                    .is_some_and(|r| r.completes_at_ms <= now_ms)
            })
            .map(|(index, _)| index)
            .collect()
    }

    /// Performs `operation` at `now_ms`, and records what it changed: its instance if it was
    /// accepted, and the rewraps that completed first.
    pub(super) fn perform(
        &mut self,
        operation: &hsm::SimOperation,
        now_ms: u64,
    ) -> Result<hsm::Accepted, hsm::Refused> {
        let mut touched = self.rewraps_due(now_ms);
        let incidents_from = self.fleet.incidents.len();
        let result = hsm::perform_at(&mut self.fleet, operation, now_ms);
        if result.is_ok()
            && let Some(index) = self.fleet.position(operation.instance())
            && !touched.contains(&index)
        {
            touched.push(index);
        }
        if !touched.is_empty() {
            self.record(&touched, incidents_from);
        }
        result
    }
}

impl Shared {
    /// The fleet as it is now: the rewraps that are due complete here, whichever request
    /// comes first after their end, and are written with the next group commit.
    pub(super) fn state(&self) -> MutexGuard<'_, Durable> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now_ms = self.clock.now_ms();
        let due = state.rewraps_due(now_ms);
        if !due.is_empty() {
            let incidents_from = state.fleet.incidents.len();
            hsm::complete_rewraps(&mut state.fleet, now_ms);
            state.record(&due, incidents_from);
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

/// Appends the queued log lines whenever there are some: one append and one fsync for every
/// change that arrived while the previous one was running.
pub(super) async fn group_commits(shared: Arc<Shared>) {
    loop {
        shared.commit_wanted.notified().await;
        commit(&shared, false).await;
    }
}

/// Writes every change applied so far to the log, and compacts the log into the fleet file
/// when it has grown large or when `compact` says so (the server is stopping). Then tells the
/// waiting requests.
pub(super) async fn commit(shared: &Arc<Shared>, compact: bool) {
    // The write holds the server (and so the fleet file's lock) until it is done: a server
    // started again on the file after a kill reads it only then.
    let writer = shared.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut log = writer.log.lock().unwrap_or_else(|e| e.into_inner());
        let compact = compact || log.bytes > oplog::LOG_BYTES_MAX;
        // The lines and (to compact) the fleet they lead to, taken together under the lock
        // (fast); written without it, so that operations keep applying while the disk works.
        let (entries, fleet, applied) = {
            let mut state = writer.state.lock().unwrap_or_else(|e| e.into_inner());
            let fleet = compact.then(|| state.fleet.clone());
            (std::mem::take(&mut state.pending), fleet, state.applied)
        };
        log.append(&entries)?;
        if let Some(fleet) = fleet {
            log.compact(&fleet)?;
        }
        Ok::<u64, std::io::Error>(applied)
    })
    .await;
    let failed = match written {
        Ok(Ok(applied)) => {
            shared.committed.send_if_modified(|c| {
                let newer = applied > *c;
                *c = (*c).max(applied);
                newer
            });
            return;
        }
        Ok(Err(e)) => e.to_string(),
        // The server is being killed (a drill's restart): nothing more to do.
        Err(e) if e.is_cancelled() => return,
        Err(e) => e.to_string(),
    };
    // Memory and disk now disagree and no response may claim durability: stop as a crash
    // would. The operations waiting get no response; their clients settle them by reading the
    // state after a restart, which replays the log's whole lines.
    eprintln!(
        "mkplan sim serve: cannot write the operation log {} or the fleet file {}: {failed}; stopping",
        oplog::log_path(&shared.path).display(),
        shared.path.display()
    );
    shared.crash().await;
}
