//! The drill's backend: a copy of the fleet in memory, the simulator's own rules
//! (`sim::hsm`), and the faults of the current attempt. After every operation it checks the
//! key-safety invariant (some register of the instance holds the key storage's MK) and keeps
//! every operation in a log, so a run's verdict rests on the simulator, not on mkplan.
//!
//! A rewrap is slow, as on the service. In memory it runs on tokio's clock, which the drill's
//! paused runtime advances only when every task waits: the faults act right after the
//! rewrap's acceptance, then the operation waits for its completion at no real cost. Over
//! HTTP the in-process servers read a wall clock running `HTTP_CLOCK_SPEED` times faster.

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
use crate::backend::sim::clock::{self, Clock, FastClock, TokioClock};
use crate::backend::sim::server::InProcess;
use crate::backend::sim::{Accepted, Faults, Fleet, Incident, hsm, live_of, refused_error};
use crate::backend::{Backend, BackendError, Operation, SendBy, to_sim};
use crate::model::LiveFleet;

/// Where the in-memory drill's clock starts (Unix ms): fixed, so that a seed replays exactly.
/// A rewrap the source fleet shows in progress completes as the drill starts if it was due
/// by then.
pub const CLOCK_START_MS: u64 = 1_800_000_000_000;
/// How much faster than the wall clock the servers of a drill over HTTP see time pass: a
/// rewrap of 3,000 keys at 20 ms each takes 0.6 s instead of a minute.
pub const HTTP_CLOCK_SPEED: u64 = 100;

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
    /// The operator waits for the service's running rewraps before this attempt's first
    /// request (`Schedule::rerun_at_once`).
    pause: bool,
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
    /// The servers' clock, the same across restarts.
    clock: Arc<dyn Clock>,
    /// The client of the current attempt: each attempt is a new mkplan process, with no
    /// connection left from the one before (a connection to a server since restarted would
    /// fail its first request and cost a read's back-off).
    client: Mutex<Arc<HttpBackend>>,
    server: Mutex<Option<InProcess>>,
    /// Watches the current server's crash signal, to restart it.
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    incidents_seen: AtomicUsize,
    restarts: Mutex<Vec<String>>,
}

/// mkplan's HTTP backend for the in-process server at `address`.
fn http_client(address: SocketAddr) -> Result<HttpBackend, String> {
    HttpBackend::new(&format!("http://{address}"), None, PARALLELISM_MAX, &[])
        .map_err(|e| e.to_string())
}

impl HttpStore {
    fn client(&self) -> Arc<HttpBackend> {
        lock(&self.client).clone()
    }

    /// The fleet file with the server's operation log replayed, and the rewraps that are due
    /// completed.
    fn read(&self) -> Fleet {
        let mut fleet = crate::backend::sim::oplog::read(&self.path)
            .expect("the server writes a valid fleet and operation log");
        hsm::complete_rewraps(&mut fleet, self.clock.now_ms());
        fleet
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
        let server = InProcess::start(
            &self.path,
            self.address,
            &faults,
            crashed.clone(),
            self.clock.clone(),
        )
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
    /// The in-memory fleet's clock (over HTTP, the servers keep theirs).
    clock: Arc<dyn Clock>,
    schedule: Schedule,
    current: Mutex<Current>,
    operations: AtomicU64,
    token_expired: AtomicBool,
    log: Mutex<Vec<Performed>>,
    /// Incidents and invariant violations, in the order they happened.
    violations: Mutex<Vec<String>>,
}

impl DrillBackend {
    /// Call it inside the drill's runtime: the clock is tokio's.
    pub fn new(fleet: Fleet, schedule: Schedule) -> Self {
        let clock = Arc::new(TokioClock::starting_at(CLOCK_START_MS));
        Self::with_store(Store::Memory(Mutex::new(fleet)), schedule, clock)
    }

    /// The fleet written to `folder` and served by an in-process `sim serve` on loopback;
    /// mkplan reaches it with the HTTP backend.
    pub fn over_http(fleet: &Fleet, schedule: Schedule, folder: &Path) -> Result<Self, String> {
        let path = folder.join("fleet.yaml");
        std::fs::write(&path, fleet.to_yaml()).map_err(|e| e.to_string())?;
        let crashed = Arc::new(Notify::new());
        let clock: Arc<dyn Clock> = Arc::new(FastClock::new(HTTP_CLOCK_SPEED));
        let server = InProcess::start(
            &path,
            "127.0.0.1:0".parse().expect("an address"),
            &Faults::default(),
            crashed,
            clock.clone(),
        )?;
        let address = server.address;
        let store = Arc::new(HttpStore {
            path,
            address,
            clock: clock.clone(),
            client: Mutex::new(Arc::new(http_client(address)?)),
            server: Mutex::new(Some(server)),
            watcher: Mutex::new(None),
            incidents_seen: AtomicUsize::new(fleet.incidents.len()),
            restarts: Mutex::new(Vec::new()),
        });
        Ok(Self::with_store(Store::Http(store), schedule, clock))
    }

    fn with_store(store: Store, schedule: Schedule, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            schedule,
            current: Mutex::new(Current {
                attempt: 0,
                faults: AttemptFaults::default(),
                crashed: Arc::new(Notify::new()),
                pause: false,
            }),
            operations: AtomicU64::new(0),
            token_expired: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
        }
    }

    /// Starts attempt `attempt` (from 1) of the schedule: its faults, a fresh operation count
    /// and token, and the signal its crash fault raises. A rerun starts once the rewraps the
    /// service is running have completed, unless the schedule says the operator reran at once.
    pub fn start_attempt(&self, attempt: usize) -> Arc<Notify> {
        let pause = attempt >= 2 && !self.schedule.rerun_at_once(attempt);
        self.begin(attempt, self.schedule.attempt(attempt - 1), pause)
    }

    /// Starts attempt `attempt` with `faults` instead of the schedule's, at once.
    pub fn start_attempt_with(&self, attempt: usize, faults: AttemptFaults) -> Arc<Notify> {
        self.begin(attempt, faults, false)
    }

    fn begin(&self, attempt: usize, faults: AttemptFaults, pause: bool) -> Arc<Notify> {
        let crashed = Arc::new(Notify::new());
        let restart_server_after_op = faults.restart_server_after_op;
        *lock(&self.current) = Current {
            attempt,
            faults,
            crashed: crashed.clone(),
            pause,
        };
        self.operations.store(0, Ordering::SeqCst);
        self.token_expired.store(false, Ordering::SeqCst);
        if let Store::Http(store) = &self.store {
            // A fresh server for each attempt, so the server counts this attempt's
            // operations from 1, as the schedule does.
            let faults = Faults {
                crash_after_op: restart_server_after_op.into_iter().collect(),
                ..Faults::default()
            };
            store.restart(faults);
            if let Ok(client) = http_client(store.address) {
                *lock(&store.client) = Arc::new(client);
            }
        }
        crashed
    }

    /// Lets the drill's clock run until `at_ms` (Unix ms, as the fleet records times).
    pub async fn wait_until(&self, at_ms: u64) {
        clock::sleep_until(self.clock.as_ref(), at_ms).await;
    }

    /// Lets the drill's clock run until every rewrap the service is running has completed.
    pub async fn wait_for_running_rewraps(&self) {
        let until = self
            .fleet()
            .instances
            .iter()
            .filter_map(|i| i.key_storage.rewrap_in_progress.as_ref())
            .map(|r| r.completes_at_ms)
            .max();
        if let Some(until) = until {
            self.wait_until(until).await;
        }
    }

    /// The operator's pause before the first request of a rerun, if the attempt has one.
    async fn operator_pause(&self) {
        let pause = std::mem::take(&mut lock(&self.current).pause);
        if pause {
            self.wait_for_running_rewraps().await;
        }
    }

    /// Another operator's command with the TKE CLI, straight to the in-memory service: no
    /// fault, no mkplan, checked like mkplan's. What happened, for the run's endings.
    pub fn operator_perform(&self, operation: &crate::backend::sim::SimOperation) -> String {
        let Store::Memory(fleet) = &self.store else {
            return "not done: the TKE CLI operator acts on in-memory drills only".into();
        };
        let mut fleet = lock(fleet);
        let before = fleet.incidents.len();
        let result = hsm::perform_at(&mut fleet, operation, self.clock.now_ms());
        self.check(&fleet, before, operation.name());
        match result {
            Ok(Accepted::Done) => "done".into(),
            Ok(Accepted::RewrapRunning { .. }) => "accepted, running".into(),
            Err(refused) => format!("refused: {refused}"),
        }
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

    /// The fleet as it is now, the rewraps that are due completed.
    pub fn fleet(&self) -> Fleet {
        match &self.store {
            Store::Memory(fleet) => self.memory_now(fleet).clone(),
            Store::Http(store) => store.read(),
        }
    }

    /// The in-memory fleet, its rewraps that are due completed.
    fn memory_now<'a>(&self, fleet: &'a Mutex<Fleet>) -> std::sync::MutexGuard<'a, Fleet> {
        let mut fleet = lock(fleet);
        hsm::complete_rewraps(&mut fleet, self.clock.now_ms());
        fleet
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
    /// invariant after it on the ground truth. In memory a rewrap returns once accepted, still
    /// running; over HTTP the server answers when it has completed.
    async fn apply(
        &self,
        original: &Operation<'_>,
        operation: &crate::backend::sim::SimOperation,
        send_by: SendBy,
    ) -> Result<Accepted, BackendError> {
        match &self.store {
            Store::Memory(fleet) => {
                let mut fleet = lock(fleet);
                let before = fleet.incidents.len();
                let result = hsm::perform_at(&mut fleet, operation, self.clock.now_ms());
                self.check(&fleet, before, operation.name());
                result.map_err(|refused| refused_error(operation, refused))
            }
            Store::Http(store) => {
                let result = store.client().perform(original, send_by).await;
                let fleet = store.read();
                let before = store
                    .incidents_seen
                    .swap(fleet.incidents.len(), Ordering::SeqCst);
                self.check(&fleet, before.min(fleet.incidents.len()), operation.name());
                result.map(|()| Accepted::Done)
            }
        }
    }

    /// Waits on the drill's clock for a rewrap in memory to complete.
    async fn complete(&self, completes_at_ms: u64, operation: &str) {
        clock::sleep_until(self.clock.as_ref(), completes_at_ms).await;
        if let Store::Memory(fleet) = &self.store {
            let fleet = self.memory_now(fleet);
            self.check(&fleet, fleet.incidents.len(), operation);
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
    BackendError::Unauthorized {
        problem: "the token has expired (injected)".into(),
        renew: "Log in again and set MKPLAN_TOKEN to a fresh token".into(),
    }
}

impl Backend for DrillBackend {
    fn describe(&self) -> String {
        match &self.store {
            Store::Memory(_) => "drill (in-memory simulator)".into(),
            Store::Http(store) => format!("drill (sim serve on http://{})", store.address),
        }
    }

    async fn refresh(&self, instances: &[String]) -> Result<LiveFleet, BackendError> {
        self.operator_pause().await;
        if self.token_expired.load(Ordering::SeqCst) {
            return Err(expired());
        }
        match &self.store {
            Store::Memory(fleet) => live_of(&self.memory_now(fleet), instances),
            Store::Http(store) => store.client().refresh(instances).await,
        }
    }

    async fn perform(&self, original: &Operation<'_>, send_by: SendBy) -> Result<(), BackendError> {
        self.operator_pause().await;
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
        if let Err(late) = send_by.check(name) {
            self.note(attempt, number, name, format!("{late}"));
            return Err(late);
        }
        let result = self.apply(original, &operation, send_by).await;
        let shown = match &result {
            Ok(Accepted::Done) => "done".to_string(),
            Ok(Accepted::RewrapRunning { .. }) => "accepted, running".to_string(),
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
        if let Accepted::RewrapRunning { completes_at_ms } = result? {
            self.complete(completes_at_ms, name).await;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
