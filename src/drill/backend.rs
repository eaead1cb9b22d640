//! The drill's backend: a copy of the fleet in memory, the simulator's own rules
//! (`sim::hsm`), and the faults of the current attempt. After every operation it checks the
//! key-safety invariant (some register of the instance holds the key storage's MK) and keeps
//! every operation in a log, so a run's verdict rests on the simulator, not on mkplan.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use super::schedule::{AttemptFaults, Schedule};
use crate::backend::sim::{Fleet, Incident, hsm, live_of};
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

pub struct DrillBackend {
    fleet: Mutex<Fleet>,
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
        Self {
            fleet: Mutex::new(fleet),
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
        crashed
    }

    pub fn fleet(&self) -> Fleet {
        lock(&self.fleet).clone()
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

    /// Applies the operation to the fleet and checks the invariant after it.
    fn apply(&self, operation: &crate::backend::sim::SimOperation) -> Result<(), hsm::Refused> {
        let mut fleet = lock(&self.fleet);
        let before = fleet.incidents.len();
        let result = hsm::perform(&mut fleet, operation);
        let mut violations = lock(&self.violations);
        for incident in &fleet.incidents[before..] {
            violations.push(describe(incident));
        }
        for instance in &fleet.instances {
            if !instance.key_storage_held() && !instance.key_storage.unusable {
                violations.push(format!(
                    "after {} no register of instance {} holds the key storage's MK {}",
                    operation.name(),
                    instance.id,
                    instance.key_storage.verification_pattern.short()
                ));
            }
        }
        result
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
        "drill (in-memory simulator)".into()
    }

    async fn refresh(&self, instances: &[String]) -> Result<LiveFleet, BackendError> {
        if self.token_expired.load(Ordering::SeqCst) {
            return Err(expired());
        }
        live_of(&lock(&self.fleet), instances)
    }

    async fn perform(&self, operation: &Operation<'_>) -> Result<(), BackendError> {
        let operation = to_sim(operation)?;
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
        let result = self.apply(&operation);
        let shown = match &result {
            Ok(()) => "done".to_string(),
            Err(refused) => format!("refused: {}", refused.0),
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
        result.map_err(|refused| BackendError::Refused {
            operation: name.into(),
            reason: refused.0,
        })
    }
}
