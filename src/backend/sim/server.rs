//! `mkplan sim serve`: the simulator behind an HTTP JSON API whose resource layout follows the
//! TKE API (`/v1/tke/{instance}/hsms`), so that the HTTP backend, its timeouts, tokens and
//! lost responses, and the concurrent executor are exercised over a real network stack.
//! docs/http-api.md describes the API.
//!
//! The fleet lives in memory and every operation is durable before its response: operations
//! apply to the in-memory fleet under a mutex, then wait for a *group commit* that writes the
//! whole fleet atomically (temporary file, fsync, rename, fsync of the folder) for every
//! operation applied so far. Reads wait for the same commit, so no client ever sees a state
//! that a crash could take back. The server holds the fleet file's lock for its lifetime, so an
//! embedded `sim:` backend on the same file cannot race it.

use std::collections::HashSet;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use zeroize::Zeroizing;

use super::{Faults, Fleet, SimOperation, hsm};
use crate::keypart::{self, KEY_LEN, Secret32};
use crate::model::{CryptoUnit, UnitType, VerificationPattern};

/// Largest request body the server reads (a load with three key parts is under 300 bytes).
pub const REQUEST_BYTES_MAX: usize = 16 * 1024;

/// Bearer tokens the server accepts, and how long each lives after its first use.
/// A token and the moment of its first use.
type Accepted = (Zeroizing<String>, Arc<OnceLock<Instant>>);

pub struct Tokens {
    accepted: Mutex<Vec<Accepted>>,
    ttl: Option<Duration>,
    /// API keys the IAM exchange (`POST /identity/token`, TKE protocol) accepts.
    api_keys: Vec<Zeroizing<String>>,
}

impl Tokens {
    /// No token: every request is accepted.
    pub fn none() -> Self {
        Self::new(Vec::new(), None)
    }

    pub fn new(accepted: Vec<Zeroizing<String>>, ttl: Option<Duration>) -> Self {
        Self {
            accepted: Mutex::new(
                accepted
                    .into_iter()
                    .map(|t| (t, Arc::new(OnceLock::new())))
                    .collect(),
            ),
            ttl,
            api_keys: Vec::new(),
        }
    }

    /// Also accept these API keys at the IAM exchange; each exchange issues a new token.
    pub fn with_api_keys(mut self, api_keys: Vec<Zeroizing<String>>) -> Self {
        self.api_keys = api_keys;
        self
    }

    pub(super) fn api_keys(&self) -> &[Zeroizing<String>] {
        &self.api_keys
    }

    pub(super) fn ttl_s(&self) -> Option<u64> {
        self.ttl.map(|t| t.as_secs())
    }

    fn required(&self) -> bool {
        !self.api_keys.is_empty()
            || !self
                .accepted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
    }

    /// A new random token, valid from now on (as IAM issues them).
    pub(super) fn issue(&self) -> Zeroizing<String> {
        let mut bytes = [0u8; 24];
        let _ = getrandom::fill(&mut bytes);
        let token = Zeroizing::new(hex::encode(bytes));
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((token.clone(), Arc::new(OnceLock::new())));
        token
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        if !self.required() {
            return Ok(());
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Box::new(problem(
                    StatusCode::UNAUTHORIZED,
                    "missing_token",
                    "this server needs `Authorization: Bearer TOKEN`",
                ))
            })?;
        let first_use = self
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(token, _)| constant_time_eq(token.as_bytes(), given.as_bytes()))
            .map(|(_, first_use)| first_use.clone())
            .ok_or_else(|| {
                Box::new(problem(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the bearer token is not valid here",
                ))
            })?;
        let first_use = *first_use.get_or_init(Instant::now);
        if self.ttl.is_some_and(|ttl| first_use.elapsed() > ttl) {
            return Err(Box::new(problem(
                StatusCode::UNAUTHORIZED,
                "token_expired",
                "the bearer token has expired",
            )));
        }
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Which API the server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// JSON resources and register commands (docs/http-api.md).
    Json,
    /// The TKE API's read half: HTP strings carrying EP11 queries (tke-wire.md §1–§3).
    Tke,
}

pub struct ServeOptions {
    pub protocol: Protocol,
    pub fleet: PathBuf,
    pub listen: SocketAddr,
    pub faults: Faults,
    pub tokens: Tokens,
}

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
    /// Mutating requests received, counted from 1, for fault injection.
    pub(super) operations: AtomicU64,
    pub(super) state: Mutex<Durable>,
    /// The number of the last operation written to disk.
    pub(super) committed: watch::Sender<u64>,
    pub(super) commit_wanted: Notify,
    /// Crypto units (and instances, for the rewrap) with a command in progress: a real unit
    /// takes one command at a time (each carries the unit's transaction counter + 1).
    pub(super) busy: Mutex<HashSet<String>>,
    /// Held for the server's lifetime.
    pub(super) _lock: File,
    pub(super) crash: Crash,
}

pub(super) struct Durable {
    pub(super) fleet: Fleet,
    /// Operations applied to `fleet` so far.
    pub(super) applied: u64,
}

/// Binds, prints the URL on stdout (one line, for scripts and the test harness), and serves
/// until Ctrl-C or SIGTERM; then waits for the last group commit.
pub async fn serve(options: ServeOptions) -> Result<(), String> {
    let shown = options.fleet.display().to_string();
    let listen = options.listen;
    let shared = open(options)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    println!("http://{address}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    eprintln!(
        "mkplan sim serve: fleet {shown} on http://{address}; every operation is durable before its response. Ctrl-C stops."
    );
    tokio::spawn(group_commits(shared.clone()));
    axum::serve(listener, router(shared.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    let applied = lock_state(&shared).applied;
    let mut committed = shared.committed.subscribe();
    let _ = committed.wait_for(|c| *c >= applied).await;
    Ok(())
}

/// Locks and reads the fleet file.
fn open(options: ServeOptions) -> Result<Arc<Shared>, String> {
    let shown = options.fleet.display().to_string();
    let lock = lock_exclusively(&options.fleet)?;
    let text = std::fs::read_to_string(&options.fleet)
        .map_err(|e| format!("cannot read the fleet file {shown}: {e}"))?;
    let fleet = Fleet::parse(&shown, &text).map_err(|e| e.to_string())?;
    let (committed, _) = watch::channel(0);
    Ok(Arc::new(Shared {
        protocol: options.protocol,
        path: options.fleet,
        faults: options.faults,
        tokens: options.tokens,
        operations: AtomicU64::new(0),
        state: Mutex::new(Durable { fleet, applied: 0 }),
        committed,
        commit_wanted: Notify::new(),
        busy: Mutex::new(HashSet::new()),
        _lock: lock,
        crash: Crash::Abort,
    }))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

fn lock_exclusively(fleet: &Path) -> Result<File, String> {
    let lock_path = super::lock_path(fleet);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    file.try_lock().map_err(|_| {
        format!(
            "the fleet file {} is in use by another process (another `mkplan sim serve`, or an apply on sim:{}): stop it first",
            fleet.display(),
            fleet.display()
        )
    })?;
    Ok(file)
}

fn router(shared: Arc<Shared>) -> Router {
    let routes = match shared.protocol {
        Protocol::Json => json_routes(),
        Protocol::Tke => super::tke_front::routes(),
    };
    routes
        .fallback(|| async {
            problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such resource; see docs/http-api.md",
            )
        })
        .layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .layer(axum::extract::DefaultBodyLimit::max(REQUEST_BYTES_MAX))
        .with_state(shared)
}

fn json_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/tke/{instance}/hsms", get(list_units))
        .route("/v1/tke/{instance}/hsms/{hsm_id}", get(unit_state))
        .route(
            "/v1/tke/{instance}/hsms/{hsm_id}/{command}",
            axum::routing::post(unit_command),
        )
        .route("/v1/tke/{instance}/rewrap", get(rewrap_status).post(rewrap))
}

async fn authorize(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if request.uri().path() == super::tke_front::IAM_TOKEN_PATH {
        return next.run(request).await;
    }
    match shared.tokens.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(response) => *response,
    }
}

/// `{"error": {"code": …, "message": …}}` with a status.
pub(super) fn problem(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

impl Shared {
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

/// A server inside this process (drills), on a runtime of its own: killing the runtime drops
/// every connection at once, as a power cut would.
pub struct InProcess {
    pub address: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl InProcess {
    /// Starts a JSON-API server on `fleet`, listening on `listen`, with no tokens;
    /// `crash_after_op` raises `crashed` instead of aborting the process. The fleet's lock
    /// may still be held by a server just killed: waits for it a bounded time.
    pub fn start(
        fleet: &Path,
        listen: SocketAddr,
        faults: &Faults,
        crashed: Arc<Notify>,
    ) -> Result<Self, String> {
        let deadline = Instant::now() + Duration::from_millis(super::LOCK_WAIT_MS_MAX);
        let mut shared = loop {
            let options = ServeOptions {
                protocol: Protocol::Json,
                fleet: fleet.to_path_buf(),
                listen,
                faults: faults.clone(),
                tokens: Tokens::none(),
            };
            match open(options) {
                Ok(shared) => break shared,
                Err(e) if Instant::now() < deadline && e.contains("in use") => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        };
        Arc::get_mut(&mut shared).expect("just made").crash = Crash::Signal(crashed);
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.spawn(group_commits(shared.clone()));
        runtime.spawn(async move {
            if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                let _ = axum::serve(listener, router(shared)).await;
            }
        });
        Ok(Self {
            address,
            runtime: Some(runtime),
        })
    }

    /// Kills the server: connections drop, nothing more is written (every answered operation
    /// is already on disk), the fleet's lock is released as the tasks go.
    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

pub(super) fn lock_state(shared: &Shared) -> std::sync::MutexGuard<'_, Durable> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until the operations applied so far are on disk.
pub(super) async fn durable(shared: &Shared, applied: u64) {
    let mut committed = shared.committed.subscribe();
    let _ = committed.wait_for(|c| *c >= applied).await;
}

/// Writes the fleet whenever operations are applied that are not on disk yet: one write for
/// every operation that arrived while the previous write was running.
async fn group_commits(shared: Arc<Shared>) {
    loop {
        shared.commit_wanted.notified().await;
        // A copy under the lock (fast); serializing and writing without it, so that
        // operations keep applying while the disk works.
        let (fleet, applied) = {
            let state = lock_state(&shared);
            if state.applied <= *shared.committed.borrow() {
                continue;
            }
            (state.fleet.clone(), state.applied)
        };
        // The write holds the server (and so the fleet file's lock) until it is done: a
        // server started again on the file after a kill reads it only then.
        let writer = shared.clone();
        let written = tokio::task::spawn_blocking(move || {
            super::write_atomically(&writer.path, fleet.to_yaml().as_bytes())
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

pub(super) fn unknown_instance(instance: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "instance_not_found",
        &format!(
            "no service instance {instance}: check the instance id, the region and the account"
        ),
    )
}

/// The TKE list of crypto units: `hsms` (operational), `source_hsms` (recovery) and
/// `failover_hsms`, plus the instance's region (an extension of the TKE shape).
pub(super) async fn list_units(
    State(shared): State<Arc<Shared>>,
    UrlPath(instance): UrlPath<String>,
) -> Response {
    let (body, applied) = {
        let state = lock_state(&shared);
        let Some(found) = state.fleet.instance(&instance) else {
            return unknown_instance(&instance);
        };
        let entries = |kind: UnitType| -> Vec<Value> {
            found
                .crypto_units
                .iter()
                .filter(|u| u.unit_type == kind)
                .map(|u| {
                    json!({
                        "hsm_id": u.hsm_id, "location": u.location,
                        "serial_number": serial_of(&u.hsm_id),
                        "state": "ACTIVE", "version": 1,
                    })
                })
                .collect()
        };
        let body = json!({
            "metadata": [{ "collectionType": "application/json", "collectionTotal": found.crypto_units.len() }],
            "region": found.region,
            "hsms": entries(UnitType::Operational),
            "source_hsms": entries(UnitType::Recovery),
            "failover_hsms": entries(UnitType::Failover),
        });
        (body, state.applied)
    };
    durable(&shared, applied).await;
    Json(body).into_response()
}

/// One unit's mode, thresholds, administrators and registers (what the TKE queries return).
async fn unit_state(
    State(shared): State<Arc<Shared>>,
    UrlPath((instance, hsm_id)): UrlPath<(String, String)>,
) -> Response {
    match durable_unit(&shared, &instance, &hsm_id).await {
        Ok(unit) => Json(unit).into_response(),
        Err(response) => *response,
    }
}

/// A copy of one unit, once the state it shows is on disk; or the 404 that says which id is
/// wrong.
pub(super) async fn durable_unit(
    shared: &Shared,
    instance: &str,
    hsm_id: &str,
) -> Result<CryptoUnit, Box<Response>> {
    let (unit, applied) = {
        let state = lock_state(shared);
        let Some(found) = state.fleet.instance(instance) else {
            return Err(Box::new(unknown_instance(instance)));
        };
        match find_unit(&found.crypto_units, hsm_id) {
            Some(unit) => (unit.clone(), state.applied),
            None => return Err(Box::new(unknown_unit(instance, hsm_id))),
        }
    };
    durable(shared, applied).await;
    Ok(unit)
}

/// The 8-character serial number of the crypto module of a simulated unit: the `/hsms` list
/// and the module id in EP11 replies must agree on it (tke-wire.md §3.5).
pub(super) fn serial_of(hsm_id: &str) -> String {
    hsm_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect::<String>()
        .to_ascii_uppercase()
}

pub(super) fn find_unit<'a>(units: &'a [CryptoUnit], hsm_id: &str) -> Option<&'a CryptoUnit> {
    units.iter().find(|u| u.hsm_id.eq_ignore_ascii_case(hsm_id))
}

pub(super) fn unknown_unit(instance: &str, hsm_id: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "crypto_unit_not_found",
        &format!("service instance {instance} has no crypto unit {hsm_id}"),
    )
}

async fn rewrap_status(
    State(shared): State<Arc<Shared>>,
    UrlPath(instance): UrlPath<String>,
) -> Response {
    let (status, applied) = {
        let state = lock_state(&shared);
        let Some(found) = state.fleet.instance(&instance) else {
            return unknown_instance(&instance);
        };
        (found.rewrap_status(), state.applied)
    };
    durable(&shared, applied).await;
    Json(json!({ "status": status })).into_response()
}

/// The body of a unit command. `key_parts` (hex) only for `load_new_mk`,
/// `verification_pattern` only for `commit_new_mk`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    /// In hex; zeroized when dropped.
    #[serde(default)]
    key_parts: Vec<Zeroizing<String>>,
    #[serde(default)]
    verification_pattern: Option<String>,
    /// The administrators who signed a commit or a set immediate.
    #[serde(default)]
    signers: Vec<String>,
}

async fn unit_command(
    State(shared): State<Arc<Shared>>,
    UrlPath((instance, hsm_id, command)): UrlPath<(String, String, String)>,
    body: Option<Json<CommandBody>>,
) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let operation = match parse_command(&instance, &hsm_id, &command, &body) {
        Ok(operation) => operation,
        Err(response) => return *response,
    };
    {
        let state = lock_state(&shared);
        let Some(found) = state.fleet.instance(&instance) else {
            return unknown_instance(&instance);
        };
        if find_unit(&found.crypto_units, &hsm_id).is_none() {
            return unknown_unit(&instance, &hsm_id);
        }
    }
    mutate(&shared, hsm_id.to_ascii_lowercase(), operation).await
}

fn parse_command(
    instance: &str,
    hsm_id: &str,
    command: &str,
    body: &CommandBody,
) -> Result<SimOperation, Box<Response>> {
    let bad = |message: String| Box::new(problem(StatusCode::BAD_REQUEST, "bad_request", &message));
    let (instance, unit) = (instance.to_string(), hsm_id.to_string());
    Ok(match command {
        "load_new_mk" => {
            let mut parts = Vec::with_capacity(body.key_parts.len());
            for (index, part) in body.key_parts.iter().enumerate() {
                let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
                hex::decode_to_slice(part.as_bytes(), &mut bytes[..]).map_err(|_| {
                    bad(format!(
                        "key part {} is not {} hex characters",
                        index + 1,
                        2 * KEY_LEN
                    ))
                })?;
                parts.push(Secret32::from_bytes(*bytes));
            }
            let combined = keypart::combine(&parts).map_err(|e| bad(e.to_string()))?;
            SimOperation::LoadNewMk {
                instance,
                unit,
                verification_pattern: combined.verification_pattern(),
            }
        }
        "commit_new_mk" | "set_immediate" => {
            let text = body.verification_pattern.as_deref().ok_or_else(|| {
                bad(format!(
                    "{command} needs the verification_pattern the new register must hold"
                ))
            })?;
            let verification_pattern = VerificationPattern::parse(text)
                .map_err(|e| bad(format!("verification_pattern: {e}")))?;
            let signers = body.signers.clone();
            if command == "commit_new_mk" {
                SimOperation::CommitNewMk {
                    instance,
                    unit,
                    verification_pattern,
                    signers,
                }
            } else {
                SimOperation::SetImmediate {
                    instance,
                    unit,
                    verification_pattern,
                    signers,
                }
            }
        }
        "clear_new_mk" => SimOperation::ClearNewMk { instance, unit },
        other => {
            return Err(Box::new(problem(
                StatusCode::NOT_FOUND,
                "unknown_command",
                &format!(
                    "unknown command {other:?}: the commands are load_new_mk, commit_new_mk, clear_new_mk and set_immediate"
                ),
            )));
        }
    })
}

async fn rewrap(State(shared): State<Arc<Shared>>, UrlPath(instance): UrlPath<String>) -> Response {
    if lock_state(&shared).fleet.instance(&instance).is_none() {
        return unknown_instance(&instance);
    }
    let busy = format!("instance {}", instance.to_ascii_lowercase());
    mutate(&shared, busy, SimOperation::RewrapKeyStorage { instance }).await
}

/// Releases a unit's "command in progress" mark when the response is sent, or when the
/// client goes away and the handler is dropped.
struct BusyGuard<'a> {
    shared: &'a Shared,
    key: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.shared
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// One mutating operation: faults by its number, the simulator's rules, a durable write
/// before the response.
async fn mutate(shared: &Shared, busy: String, operation: SimOperation) -> Response {
    if !shared
        .busy
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(busy.clone())
    {
        return problem(
            StatusCode::CONFLICT,
            "crypto_unit_busy",
            &format!(
                "another command for {} is in progress: a crypto unit takes one command at a time",
                operation.unit().unwrap_or(operation.instance())
            ),
        );
    }
    let _busy = BusyGuard { shared, key: busy };
    let number = shared.operations.fetch_add(1, Ordering::SeqCst) + 1;
    if shared.faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(shared.faults.latency_ms)).await;
    }
    if shared.faults.fail_op.contains(&number) {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "transient",
            &format!(
                "injected fault fail_op={number}: {} failed with a transient error and had no effect",
                operation.name()
            ),
        );
    }
    let (result, applied) = {
        let mut state = lock_state(shared);
        let result = hsm::perform(&mut state.fleet, &operation);
        if result.is_ok() {
            state.applied += 1;
        }
        let after = after_state(&state.fleet, &operation);
        (result.map(|()| after), state.applied)
    };
    shared.commit_wanted.notify_one();
    durable(shared, applied).await;
    if shared.faults.crash_after_op.contains(&number) {
        // As if the service's host lost power right after the write: no response, no cleanup.
        shared.crash().await;
    }
    if shared.faults.lose_response_op.contains(&number) {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "transient",
            &format!(
                "injected fault lose_response_op={number}: the response to {} was lost",
                operation.name()
            ),
        );
    }
    match result {
        Ok(after) => Json(after).into_response(),
        Err(refused) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            &format!("the service refused {}: {}", operation.name(), refused.0),
        ),
    }
}

/// The state the response reports: the unit after a unit command, the rewrap status after
/// a rewrap.
fn after_state(fleet: &Fleet, operation: &SimOperation) -> Value {
    let Some(instance) = fleet.instance(operation.instance()) else {
        return Value::Null;
    };
    match operation.unit() {
        Some(hsm_id) => find_unit(&instance.crypto_units, hsm_id)
            .map(|u| serde_json::to_value(u).expect("units serialize"))
            .unwrap_or(Value::Null),
        None => json!({ "status": instance.rewrap_status() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewRegister;

    const INSTANCE: &str = "5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b";
    const UNIT: &str = "0a1b2c3d-0000-4000-8000-000000000001";

    /// A server on a copy of examples/fleets/three-units.yaml; its URL and the fleet's path.
    async fn start(faults: &str, tokens: Tokens) -> (String, PathBuf, tempfile::TempDir) {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("fleet.yaml");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/fleets/three-units.yaml"
            ),
            &path,
        )
        .unwrap();
        let shared = open(ServeOptions {
            protocol: Protocol::Json,
            fleet: path.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            faults: Faults::parse(faults).unwrap(),
            tokens,
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(group_commits(shared.clone()));
        tokio::spawn(async move { axum::serve(listener, router(shared)).await });
        (url, path, folder)
    }

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    fn load(client: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
        let parts = [hex::encode([1u8; 32]), hex::encode([2u8; 32])];
        client
            .post(format!("{url}/v1/tke/{INSTANCE}/hsms/{UNIT}/load_new_mk"))
            .json(&json!({ "key_parts": parts }))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_command_on_a_busy_unit_is_refused_with_409() {
        let (url, path, _folder) = start("latency_ms=300", Tokens::none()).await;
        let client = client();
        let (first, second) = tokio::join!(load(&client, &url).send(), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            load(&client, &url).send().await
        });
        assert_eq!(first.unwrap().status(), 200);
        let second = second.unwrap();
        assert_eq!(second.status(), 409);
        assert!(second.text().await.unwrap().contains("crypto_unit_busy"));
        // The first was durable before its response.
        let fleet = Fleet::parse("f", &std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(matches!(
            fleet.instances[0].crypto_units[0].new_register,
            NewRegister::FullUncommitted(_)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_are_required_checked_and_expire() {
        let tokens = Tokens::new(
            vec![Zeroizing::new("good".into())],
            Some(Duration::from_millis(200)),
        );
        let (url, _path, _folder) = start("", tokens).await;
        let client = client();
        let list = format!("{url}/v1/tke/{INSTANCE}/hsms");
        let status = |r: reqwest::Response| r.status().as_u16();
        assert_eq!(status(client.get(&list).send().await.unwrap()), 401);
        let wrong = client.get(&list).bearer_auth("bad").send().await.unwrap();
        assert_eq!(status(wrong), 401);
        let good = client.get(&list).bearer_auth("good").send().await.unwrap();
        assert_eq!(status(good), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let expired = client.get(&list).bearer_auth("good").send().await.unwrap();
        assert_eq!(expired.status(), 401);
        assert!(expired.text().await.unwrap().contains("token_expired"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn faults_count_commands_and_concurrent_commands_are_all_durable() {
        let (url, path, _folder) = start("fail_op=1,lose_response_op=2", Tokens::none()).await;
        let client = client();
        let failed = load(&client, &url).send().await.unwrap();
        assert_eq!(failed.status(), 503);
        let lost = load(&client, &url).send().await.unwrap();
        assert_eq!(
            lost.status(),
            503,
            "the response is lost, the load took effect"
        );
        let units = [
            "0a1b2c3d-0000-4000-8000-000000000002",
            "0a1b2c3d-0000-4000-8000-000000000003",
        ];
        let sent = futures_util::future::join_all(units.iter().map(|unit| {
            client
                .post(format!("{url}/v1/tke/{INSTANCE}/hsms/{unit}/load_new_mk"))
                .json(&json!({ "key_parts": [hex::encode([1u8; 32]), hex::encode([2u8; 32])] }))
                .send()
        }))
        .await;
        assert!(sent.into_iter().all(|r| r.unwrap().status() == 200));
        let fleet = Fleet::parse("f", &std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(
            fleet.instances[0]
                .crypto_units
                .iter()
                .all(|u| matches!(u.new_register, NewRegister::FullUncommitted(_))),
            "every load is on disk"
        );
        let unknown = client
            .get(format!(
                "{url}/v1/tke/00000000-0000-4000-8000-000000000000/hsms"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 404);
    }
}
