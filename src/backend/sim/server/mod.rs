//! `mkplan sim serve`: the simulator behind an HTTP JSON API whose resource layout follows the
//! TKE API (`/v1/tke/{instance}/hsms`), so that the HTTP backend, its timeouts, tokens and
//! lost responses, and the concurrent executor are exercised over a real network stack.
//! docs/http-api.md describes the API.
//!
//! Here: opening the fleet, where the server may listen, and routing. The fleet lives in memory
//! and every change is durable before its response (`durable`: group commits to the operation
//! log, `super::oplog`, replayed and compacted when the server starts and stops); `resources`
//! reads, `commands` mutates (with the faults), `tke_front` speaks the TKE wire protocol
//! instead, `tokens` authorizes, `connections` bounds how many clients are served at once and
//! how long each may take to send its request. The server holds the fleet file's lock for its
//! lifetime, so an embedded `sim:` backend on the same file cannot race it.

pub(crate) mod commands;
mod connections;
mod durable;
mod in_process;
mod resources;
mod tke_card;
pub(crate) mod tke_front;
mod tokens;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::sync::{Notify, watch};

pub use connections::{
    BODY_TIMEOUT_MS_DEFAULT, CONNECTIONS_MAX_DEFAULT, CONNECTIONS_MAX_LIMIT,
    HEADER_TIMEOUT_MS_DEFAULT, Limits, TIMEOUT_MS_MAX,
};
pub use in_process::InProcess;
pub use tokens::Tokens;

use super::oplog;
use super::{Clock, Faults, Fleet, SystemClock};
use crate::backend::SIM_SERVER_NAME;
use durable::{Crash, Durable, Shared, commit, group_commits};
use resources::problem;

/// Largest request body the server reads (a load with three key parts is under 300 bytes).
pub const REQUEST_BYTES_MAX: usize = 16 * 1024;

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
    pub limits: Limits,
}

/// Binds, prints the URL on stdout (one line, for scripts and the test harness), and serves
/// until Ctrl-C or SIGTERM; then waits for the last group commit. An address other than
/// loopback is refused without a token, before anything is opened.
pub async fn serve(options: ServeOptions) -> Result<(), String> {
    let shown = options.fleet.display().to_string();
    let listen = options.listen;
    let limits = options.limits;
    let beyond_this_machine = beyond_this_machine(&options)?;
    let (shared, replayed) = open(options, Arc::new(SystemClock), Crash::Abort)?;
    if let Some(replayed) = replayed {
        eprintln!("mkplan sim serve: {replayed}");
    }
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
    if beyond_this_machine {
        eprintln!(
            "mkplan sim serve: warning: {address} is reachable from other machines over plain HTTP, where a token crosses the network in clear text. mkplan sends tokens and key parts to another machine only over https://: put a TLS proxy in front, or listen on 127.0.0.1."
        );
    }
    tokio::spawn(group_commits(shared.clone()));
    connections::serve(listener, router(shared.clone()), limits, shutdown_signal()).await;
    // A clean stop leaves the whole state in the fleet file and no log.
    commit(&shared, true).await;
    eprintln!("mkplan sim serve: stopped; the fleet file {shown} holds every change.");
    Ok(())
}

/// An address other than loopback without a token or API key would let anyone who reaches it
/// read and change the fleet: refused. Otherwise, whether the address is beyond this machine.
fn beyond_this_machine(options: &ServeOptions) -> Result<bool, String> {
    if options.listen.ip().to_canonical().is_loopback() {
        return Ok(false);
    }
    if !options.tokens.required() {
        return Err(format!(
            "--listen {} is not a loopback address and no --token is set: anyone who can reach it could read the fleet and change its registers. Pass --token (or MKPLAN_SIM_TOKENS; with --protocol tke, --api-key), or listen on 127.0.0.1 or [::1]",
            options.listen
        ));
    }
    Ok(true)
}

/// Locks and reads the fleet file. An operation log that a crash left beside it is replayed
/// and compacted into it first, so that the server starts on one file and no log; what was
/// replayed, said.
fn open(
    mut options: ServeOptions,
    clock: Arc<dyn Clock>,
    crash: Crash,
) -> Result<(Arc<Shared>, Option<String>), String> {
    let shown = options.fleet.display().to_string();
    // The file itself, not a symbolic link to it, as the embedded simulator takes it: its
    // lock, its operation log and the compaction's rename belong beside the fleet, or a
    // `sim:` of the same fleet would not wait for this server's lock, and the server's
    // changes would land in a copy at the link's place (round 12, F2).
    options.fleet = std::fs::canonicalize(&options.fleet).map_err(|e| {
        format!(
            "cannot resolve the fleet file {}: {e}",
            crate::quote::name(&shown)
        )
    })?;
    let lock = lock_exclusively(&options.fleet)?;
    let text = Fleet::read_text(&options.fleet).map_err(|e| {
        format!(
            "cannot read the fleet file {}: {e}",
            crate::quote::name(&shown)
        )
    })?;
    let (fleet, log) = oplog::recover(&options.fleet, &text)?;
    let mut replayed = None;
    let base_sha256 = match log {
        None => oplog::sha256_hex(text.as_bytes()),
        Some(log) => {
            let sha = oplog::compact(&options.fleet, &fleet).map_err(|e| {
                format!("cannot compact the operation log into the fleet file {shown}: {e}")
            })?;
            replayed = Some(format!(
                "replayed {} acknowledged change(s) from the operation log {} into {shown}{}",
                log.entries
                    .iter()
                    .filter(|e| matches!(e, oplog::Entry::Change { .. }))
                    .count(),
                oplog::log_path(&options.fleet).display(),
                if log.torn_bytes > 0 {
                    format!(
                        "; its last {} byte(s), a write the crash cut short, were never acknowledged and are dropped",
                        log.torn_bytes
                    )
                } else {
                    String::new()
                }
            ));
            sha
        }
    };
    let (committed, _) = watch::channel(0);
    let path = options.fleet;
    let shared = Arc::new(Shared {
        protocol: options.protocol,
        path: path.clone(),
        faults: options.faults,
        tokens: options.tokens,
        limits: options.limits,
        clock,
        operations: AtomicU64::new(0),
        state: Mutex::new(Durable::new(fleet)),
        log: Mutex::new(oplog::Writer::new(&path, base_sha256)),
        committed,
        commit_wanted: Notify::new(),
        busy: Mutex::new(Default::default()),
        cards: Mutex::new(Default::default()),
        _lock: lock,
        crash,
    });
    Ok((shared, replayed))
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
        Protocol::Tke => tke_front::routes(),
    };
    routes
        .fallback(|| async {
            problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such resource; see docs/http-api.md",
            )
        })
        // Inner to `authorize`: a request without a valid token is refused before its body is
        // read.
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            connections::read_body_within,
        ))
        .layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .layer(axum::extract::DefaultBodyLimit::max(REQUEST_BYTES_MAX))
        // Outermost: every answer, a refusal of the token included, says whose it is.
        .layer(middleware::map_response(identify))
        .with_state(shared)
}

/// `Server: mkplan-sim/VERSION` on every answer (docs/http-api.md): a client that reaches
/// another server at this address can tell its 404 from ours.
async fn identify(mut response: Response) -> Response {
    let name = concat!("/", env!("CARGO_PKG_VERSION"));
    if let Ok(value) = axum::http::HeaderValue::from_str(&format!("{SIM_SERVER_NAME}{name}")) {
        response
            .headers_mut()
            .insert(axum::http::header::SERVER, value);
    }
    response
}

fn json_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/tke/{instance}/hsms", get(resources::list_units))
        .route(
            "/v1/tke/{instance}/hsms/{hsm_id}",
            get(resources::unit_state),
        )
        .route(
            "/v1/tke/{instance}/hsms/{hsm_id}/{command}",
            post(commands::unit_command),
        )
        .route(
            "/v1/tke/{instance}/rewrap",
            get(resources::rewrap_status).post(commands::rewrap),
        )
}

async fn authorize(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if request.uri().path() == tke_front::IAM_TOKEN_PATH {
        return next.run(request).await;
    }
    match shared.tokens.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(response) => *response,
    }
}

#[cfg(test)]
mod tests;
