//! Connections: how many the server holds at once, and how long a client may take to send a
//! request. `axum::serve` has neither limit, so a few clients that open connections and send
//! nothing, or a request a byte at a time, would hold the server's sockets (and file
//! descriptors) for as long as they like. Here each connection is served by hyper with a
//! header read timeout, at most `connections_max` are served at once (the rest wait in the
//! listen backlog until a slot frees), and a request body has its own deadline
//! (`read_body_within`, a middleware of the router).
//!
//! A slot is held from accept to close, so a stalled client costs a slot for at most the header
//! timeout (plus the body timeout once its headers are in), and a flood of stalled
//! connections delays a real client by whole rounds of that timeout, never forever.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::REQUEST_BYTES_MAX;
use super::durable::Shared;
use super::resources::problem;

pub const HEADER_TIMEOUT_MS_DEFAULT: u64 = 10_000;
pub const BODY_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Longest header or body timeout accepted (a slow network, not a stalled client).
pub const TIMEOUT_MS_MAX: u64 = 300_000;
/// A client with `--parallelism P` holds up to 2 P connections: P in use, and up to P idle in
/// its pool (a connection goes back to the pool a moment after its answer is read, so the next
/// request may open another). 1,024 serves the largest (P = 256) with room to spare; at 256 a
/// client at P = 256 stalled for seconds on its own idle connections.
pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// Most connections `--connections-max` may allow (each is a file descriptor).
pub const CONNECTIONS_MAX_LIMIT: usize = 4096;
/// Pause after an accept error that is not the client's (out of file descriptors): the
/// listener would otherwise fail again at once, in a busy loop.
const ACCEPT_RETRY_MS: u64 = 100;

/// How long a client may take, and how many may be connected at once.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// From accept (or from the end of the previous response on a kept-alive connection) to
    /// the end of the request's headers; then the connection is closed without an answer.
    pub header_timeout: Duration,
    /// From the end of the headers to the end of the body; then 408 and the connection closes.
    pub body_timeout: Duration,
    pub connections_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_millis(HEADER_TIMEOUT_MS_DEFAULT),
            body_timeout: Duration::from_millis(BODY_TIMEOUT_MS_DEFAULT),
            connections_max: CONNECTIONS_MAX_DEFAULT,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes; then accepts nothing more, lets
/// each connection finish the request it is answering, and returns once all are closed.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    assert!(
        (1..=CONNECTIONS_MAX_LIMIT).contains(&limits.connections_max),
        "connections_max is checked where it is parsed"
    );
    let slots = Arc::new(Semaphore::new(limits.connections_max));
    let (stopping, _) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if !is_the_clients(&e) {
                        tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tokio::spawn(connection(
            stream,
            router.clone(),
            limits,
            slot,
            stopping.subscribe(),
        ));
    }
    drop(listener);
    stopping.send_replace(true);
    // Every connection holds a slot until it closes: all slots back means all closed.
    let all = u32::try_from(limits.connections_max).expect("at most CONNECTIONS_MAX_LIMIT");
    let _ = slots.acquire_many(all).await;
}

/// One connection, HTTP/1.1 with keep-alive, holding `_slot` until it closes.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    _slot: OwnedSemaphorePermit,
    mut stopping: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let service = TowerToHyperService::new(router);
    let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
    tokio::select! {
        // An error is the client's (it went away, sent garbage or stalled): nothing to do.
        _ = connection.as_mut() => return,
        _ = stopping.wait_for(|stopping| *stopping) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// Errors of one connection that the listener should simply skip.
fn is_the_clients(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Reads the whole request body within the body timeout, so that no handler waits on a body
/// that trickles in; a body that is late gets 408 and the connection is closed.
pub(super) async fn read_body_within(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let timeout = shared.limits.body_timeout;
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, REQUEST_BYTES_MAX);
    let body = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return closing(problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                &format!(
                    "the request body is larger than {REQUEST_BYTES_MAX} bytes, or the connection broke while it was sent"
                ),
            ));
        }
        Err(_) => {
            return closing(problem(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                &format!(
                    "the request body did not arrive within {} ms; send it again",
                    timeout.as_millis()
                ),
            ));
        }
    };
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// The rest of an unread body must not be taken for the next request: close the connection.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
