//! The drill's backend: a copy of the fleet in memory, the simulator's own rules
//! (`sim::hsm`), and the faults of the current attempt. After every operation it checks the
//! key-safety invariant (some register of the instance holds the key storage's MK) and keeps
//! every operation in a log, so a run's verdict rests on the simulator, not on mkplan.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use super::schedule::{AttemptFaults, Schedule};
use crate::apply::executor::PARALLELISM_MAX;
use crate::backend::http::HttpBackend;
use crate::backend::sim::server::InProcess;
use crate::backend::sim::{Faults, Fleet, Incident, hsm, live_of};
use crate::backend::{Backend, BackendError, Operation, to_sim};
use crate::model::LiveFleet;

/// One operation as the simulator received it.
#[derive(Clone, Debug, Serialize)]
pub struct Performed {
    /// The apply attempt (from 1) and the operation's number in it (from 1).
    pub attempt: usize,
    pub number: u64,
    pub operation: String,
    /// `done`, `refused: …`, `failed (injected)`, `lost response (injected)`,
    /// `crashed after it (injected)`, `token expired (injected)`.
    pub result: String,
}

struct Current {
    attempt: usize,
    faults: AttemptFaults,
    crashed: Arc<Notify>,
}

/// Where the fleet lives in a run: in memory, or behind an in-process `sim serve` reached
/// over loopback HTTP (the fleet file is then the ground truth).
enum Store {
    Memory(Mutex<Fleet>),
    Http(Arc<HttpStore>),
}

struct HttpStore {
    path: PathBuf,
    address: SocketAddr,
    client: HttpBackend,
    server: Mutex<Option<InProcess>>,
    /// Watches the current server's crash signal, to restart it.
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    incidents_seen: AtomicUsize,
    restarts: Mutex<Vec<String>>,
}

impl HttpStore {
    fn read(&self) -> Fleet {
        let text = std::fs::read_to_string(&self.path).expect("the drill's fleet file reads");
        Fleet::parse("drill fleet", &text).expect("the server writes a valid fleet")
    }

    /// Kills the running server (if any) and starts one on the same file and port, with
    /// `faults`; a crash fault restarts it again, without faults.
    fn restart(self: &Arc<Self>, faults: Faults) {
        if let Some(server) = lock(&self.server).take() {
            server.kill();
        }
        if let Some(watcher) = lock(&self.watcher).take() {
            watcher.abort();
        }
        let crashed = Arc::new(Notify::new());
        let server = InProcess::start(&self.path, self.address, &faults, crashed.clone())
            .expect("the drill's server starts again on its port");
        *lock(&self.server) = Some(server);
        let store = self.clone();
        *lock(&self.watcher) = Some(tokio::spawn(async move {
            crashed.notified().await;
            lock(&store.restarts)
                .push("the server died after an operation and was restarted (injected)".into());
            store.restart(Faults::default());
        }));
    }
}

pub struct DrillBackend {
    store: Store,
    schedule: Schedule,
    current: Mutex<Current>,
    operations: AtomicU64,
    token_expired: AtomicBool,
    log: Mutex<Vec<Performed>>,
    /// Incidents and invariant violations, in the order they happened.
    violations: Mutex<Vec<String>>,
}

impl DrillBackend {
    pub fn new(fleet: Fleet, schedule: Schedule) -> Self {
        Self::with_store(Store::Memory(Mutex::new(fleet)), schedule)
    }

    /// The fleet written to `folder` and served by an in-process `sim serve` on loopback;
    /// mkplan reaches it with the HTTP backend.
    pub fn over_http(fleet: &Fleet, schedule: Schedule, folder: &Path) -> Result<Self, String> {
        let path = folder.join("fleet.yaml");
        std::fs::write(&path, fleet.to_yaml()).map_err(|e| e.to_string())?;
        let crashed = Arc::new(Notify::new());
        let server = InProcess::start(
            &path,
            "127.0.0.1:0".parse().expect("an address"),
            &Faults::default(),
            crashed,
        )?;
        let address = server.address;
        let client = HttpBackend::new(&format!("http://{address}"), None, PARALLELISM_MAX)
            .map_err(|e| e.to_string())?;
        let store = Arc::new(HttpStore {
            path,
            address,
            client,
            server: Mutex::new(Some(server)),
            watcher: Mutex::new(None),
            incidents_seen: AtomicUsize::new(fleet.incidents.len()),
            restarts: Mutex::new(Vec::new()),
        });
        Ok(Self::with_store(Store::Http(store), schedule))
    }

    fn with_store(store: Store, schedule: Schedule) -> Self {
        Self {
            store,
            schedule,
            current: Mutex::new(Current {
                attempt: 0,
                faults: AttemptFaults::default(),
                crashed: Arc::new(Notify::new()),
            }),
            operations: AtomicU64::new(0),
            token_expired: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
        }
    }

    /// Starts attempt `attempt` (from 1): its faults, a fresh operation count and token, and
    /// the signal its crash fault raises.
    pub fn start_attempt(&self, attempt: usize) -> Arc<Notify> {
        let crashed = Arc::new(Notify::new());
        *lock(&self.current) = Current {
            attempt,
            faults: self.schedule.attempt(attempt - 1),
            crashed: crashed.clone(),
        };
        self.operations.store(0, Ordering::SeqCst);
        self.token_expired.store(false, Ordering::SeqCst);
        if let Store::Http(store) = &self.store {
            // A fresh server for each attempt, so the server counts this attempt's
            // operations from 1, as the schedule does.
            let faults = Faults {
                crash_after_op: self
                    .schedule
                    .attempt(attempt - 1)
                    .restart_server_after_op
                    .into_iter()
                    .collect(),
                ..Faults::default()
            };
            store.restart(faults);
        }
        crashed
    }

    /// Stops the server of an HTTP run; its fleet file stays.
    pub fn stop(&self) {
        if let Store::Http(store) = &self.store {
            if let Some(watcher) = lock(&store.watcher).take() {
                watcher.abort();
            }
            if let Some(server) = lock(&store.server).take() {
                server.kill();
            }
        }
    }

    /// Server restarts that happened (HTTP runs).
    pub fn restarts(&self) -> Vec<String> {
        match &self.store {
            Store::Http(store) => lock(&store.restarts).clone(),
            Store::Memory(_) => Vec::new(),
        }
    }

    pub fn fleet(&self) -> Fleet {
        match &self.store {
            Store::Memory(fleet) => lock(fleet).clone(),
            Store::Http(store) => store.read(),
        }
    }

    pub fn log(&self) -> Vec<Performed> {
        lock(&self.log).clone()
    }

    pub fn violations(&self) -> Vec<String> {
        lock(&self.violations).clone()
    }

    fn note(&self, attempt: usize, number: u64, operation: &str, result: impl Into<String>) {
        lock(&self.log).push(Performed {
            attempt,
            number,
            operation: operation.into(),
            result: result.into(),
        });
    }

    /// Performs the operation on the fleet (in memory, or through the server) and checks the
    /// invariant after it on the ground truth.
    async fn apply(
        &self,
        original: &Operation<'_>,
        operation: &crate::backend::sim::SimOperation,
    ) -> Result<(), BackendError> {
        match &self.store {
            Store::Memory(fleet) => {
                let mut fleet = lock(fleet);
                let before = fleet.incidents.len();
                let result = hsm::perform(&mut fleet, operation);
                self.check(&fleet, before, operation.name());
                result.map_err(|refused| BackendError::Refused {
                    operation: operation.name().into(),
                    reason: refused.0,
                })
            }
            Store::Http(store) => {
                let result = store.client.perform(original).await;
                let fleet = store.read();
                let before = store
                    .incidents_seen
                    .swap(fleet.incidents.len(), Ordering::SeqCst);
                self.check(&fleet, before.min(fleet.incidents.len()), operation.name());
                result
            }
        }
    }

    /// Records the incidents after the first `before`, and any instance whose key storage's
    /// MK no register holds.
    fn check(&self, fleet: &Fleet, before: usize, operation: &str) {
        let mut violations = lock(&self.violations);
        for incident in &fleet.incidents[before..] {
            violations.push(describe(incident));
        }
        for instance in &fleet.instances {
            if !instance.key_storage_held() && !instance.key_storage.unusable {
                violations.push(format!(
                    "after {operation} no register of instance {} holds the key storage's MK {}",
                    instance.id,
                    instance.key_storage.verification_pattern.short()
                ));
            }
        }
    }
}

fn describe(incident: &Incident) -> String {
    format!(
        "incident: {} on {}{}: {}",
        incident.operation,
        incident.instance,
        incident
            .unit
            .as_deref()
            .map(|u| format!(" unit {u}"))
            .unwrap_or_default(),
        incident.description
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn expired() -> BackendError {
    BackendError::Unauthorized("the token has expired (injected)".into())
}

impl Backend for DrillBackend {
    fn describe(&self) -> String {
        match &self.store {
            Store::Memory(_) => "drill (in-memory simulator)".into(),
            Store::Http(store) => format!("drill (sim serve on http://{})", store.address),
        }
    }

    async fn refresh(&self, instances: &[String]) -> Result<LiveFleet, BackendError> {
        if self.token_expired.load(Ordering::SeqCst) {
            return Err(expired());
        }
        match &self.store {
            Store::Memory(fleet) => live_of(&lock(fleet), instances),
            Store::Http(store) => store.client.refresh(instances).await,
        }
    }

    async fn perform(&self, original: &Operation<'_>) -> Result<(), BackendError> {
        let operation = to_sim(original)?;
        let name = operation.name();
        let number = self.operations.fetch_add(1, Ordering::SeqCst) + 1;
        let (attempt, faults, crashed) = {
            let current = lock(&self.current);
            (
                current.attempt,
                current.faults.clone(),
                current.crashed.clone(),
            )
        };
        if faults.token_expires_at_op.is_some_and(|at| number >= at) {
            self.token_expired.store(true, Ordering::SeqCst);
        }
        if self.token_expired.load(Ordering::SeqCst) {
            self.note(attempt, number, name, "token expired (injected)");
            return Err(expired());
        }
        let latency = self.schedule.latency_ms(attempt, number);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        if faults.fail_op.contains(&number) {
            self.note(attempt, number, name, "failed (injected)");
            return Err(BackendError::Transient(format!(
                "injected fault fail_op={number}"
            )));
        }
        let result = self.apply(original, &operation).await;
        let shown = match &result {
            Ok(()) => "done".to_string(),
            Err(BackendError::Refused { reason, .. }) => format!("refused: {reason}"),
            Err(other) => format!("failed: {other}"),
        };
        if faults.crash_after_op == Some(number) {
            self.note(
                attempt,
                number,
                name,
                format!("{shown}; crashed after it (injected)"),
            );
            crashed.notify_one();
            // The process is gone: nothing after this point runs.
            return std::future::pending().await;
        }
        if faults.lose_response_op.contains(&number) {
            self.note(
                attempt,
                number,
                name,
                format!("{shown}; lost response (injected)"),
            );
            return Err(BackendError::Transient(format!(
                "injected fault lose_response_op={number}"
            )));
        }
        self.note(attempt, number, name, shown);
        result
    }
}
