//! `--backend http://HOST:PORT` (or https): the HTTP JSON API that `mkplan sim serve` serves,
//! laid out like the TKE API (docs/http-api.md). reqwest with rustls (ring), no OpenSSL.
//!
//! Reads are safe to repeat; a mutating request whose outcome is unknown (timeout, reset
//! connection, 5xx) comes back as `Transient`, and the executor settles it by reading the
//! unit's state before anything else. A 401 stops cleanly with "log in again" advice. At most
//! `parallelism` requests are in flight at once, reads and commands together.

use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Client, Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::peer::Answer;
pub use super::peer::Peer;
use super::wiped::{self, wiped};
use super::{BackendError, Operation, SendBy, endpoint};
use crate::model::live::UNITS_PER_INSTANCE_MAX;
use crate::model::{CryptoUnit, LiveFleet, LiveInstance};
pub(in crate::backend) use answers::describe;
pub(in crate::backend) use answers::{Failure, logged_url, request_name};
pub(crate) use answers::{StatusBody, UnitList, error_code, error_message};

mod answers;

/// How long an idle connection is kept for the next request.
const POOL_IDLE_S: u64 = 4;
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// A read answers at once on any service; a command may wait for the unit (the simulator's
/// `latency_ms` goes up to 60 s).
pub const READ_TIMEOUT_MS: u64 = 30_000;
pub const COMMAND_TIMEOUT_MS: u64 = 90_000;
/// Largest response body read.
pub const RESPONSE_BYTES_MAX: usize = 1024 * 1024;

/// A bearer token: zeroized on drop, never printed.
#[derive(Clone)]
pub struct Token(Zeroizing<String>);

impl Token {
    /// `MKPLAN_TOKEN` may hold the bare token or the whole `Bearer …` value. The header value
    /// is built at its final size, so no growth leaves a copy behind.
    pub fn new(text: impl Into<Zeroizing<String>>) -> Self {
        const BEARER: &str = "Bearer ";
        let text = text.into();
        let trimmed = text.trim();
        let bare = trimmed.strip_prefix(BEARER).map_or(trimmed, str::trim);
        let mut header = Zeroizing::new(String::with_capacity(BEARER.len() + bare.len()));
        header.push_str(BEARER);
        header.push_str(bare);
        Self(header)
    }

    /// The header shares a zeroizing copy of the token (see `wiped`) instead of copying it
    /// into a plain buffer on every request.
    fn header(&self, peer: Peer) -> Result<HeaderValue, BackendError> {
        let mut value = HeaderValue::from_maybe_shared(wiped(self.0.clone())).map_err(|_| {
            BackendError::Unauthorized {
                problem: format!(
                    "{} holds characters that cannot go in an HTTP header",
                    peer.token_source()
                ),
                renew: "Set it to the token alone (no quotes, no line breaks)".into(),
            }
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

pub struct HttpBackend {
    /// Plain http to a host other than this machine: nothing secret is sent there.
    clear_text: bool,
    base: Url,
    shown: String,
    client: Client,
    /// Replaced when a fresh token is obtained (the TKE backend's IAM exchange).
    token: std::sync::RwLock<Option<Token>>,
    /// Who should answer, for messages.
    peer: Peer,
    in_flight: Semaphore,
    /// What the service called itself in its last list of crypto units.
    service: std::sync::Mutex<Option<String>>,
}

impl HttpBackend {
    /// `carried` names every secret that will be sent to `base` (`MKPLAN_TOKEN`, key parts):
    /// plain http to another machine is refused here, before the first request.
    pub fn new(
        base: &str,
        token: Option<Token>,
        parallelism: usize,
        carried: &[&str],
    ) -> Result<Self, BackendError> {
        assert!(
            token.is_none() || !carried.is_empty(),
            "a backend's token is named among what it carries"
        );
        let base = endpoint::parse("backend", base)?;
        endpoint::refuse_clear_text("backend", &base, carried)?;
        let bad = |why: String| {
            BackendError::Unreachable(format!("backend {}: {why}", endpoint::shown(&base)))
        };
        // reqwest is built without a default crypto provider (ring is far cheaper to build
        // than aws-lc), and its client wants one even for plain http; installing it twice is
        // harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = Client::builder();
        if base.scheme() == "http" {
            // No request of this client uses TLS (no redirect is followed): it trusts no root
            // rather than reading the system's (tens of milliseconds, beside the key parts'
            // decryption, before the first step).
            builder = builder.tls_certs_only(std::iter::empty());
        }
        let client = builder
            // A redirect would send a command (and its key parts) again, elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .pool_max_idle_per_host(parallelism)
            // `sim serve` closes a connection idle for its header timeout (10 s by default):
            // drop ours well before, so that a command is never written to a connection the
            // server is closing (its outcome would then be unknown).
            .pool_idle_timeout(Duration::from_secs(POOL_IDLE_S))
            .user_agent(concat!("mkplan/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            clear_text: base.scheme() == "http" && !endpoint::is_loopback(&base),
            shown: endpoint::shown(&base),
            base,
            client,
            token: std::sync::RwLock::new(token),
            peer: Peer::SimServe,
            in_flight: Semaphore::new(parallelism.max(1)),
            service: std::sync::Mutex::new(None),
        })
    }

    pub fn describe(&self) -> String {
        self.shown.clone()
    }

    /// Says who should answer (the TKE API rather than `mkplan sim serve`), for messages.
    pub(super) fn answered_by(mut self, peer: Peer) -> Self {
        self.peer = peer;
        self
    }

    /// What journal records bind to: the service's own name once a refresh has read it (the
    /// same fleet served at another address is the same service), else the URL.
    pub fn identity(&self) -> String {
        self.service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| self.shown.clone())
    }

    /// Sends every later request with this token.
    pub fn set_token(&self, token: Token) {
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = Some(token);
    }

    /// The client, for requests to other hosts (the IAM token exchange).
    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    pub(super) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in new: the base URL can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// One request; the body of a 2xx answer, or the error it maps to.
    pub(super) async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Zeroizing<String>>,
        timeout_ms: u64,
        send_by: SendBy,
    ) -> Result<Vec<u8>, Failure> {
        let _permit = self.in_flight.acquire().await.expect("never closed");
        // As late as mkplan can look: after the wait for a free connection, just before the
        // request is built and sent.
        send_by
            .check_with(|| request_name(&method, &url))
            .map_err(Failure::Final)?;
        // `-v`: the request line, its status and its time; never a header value or a body.
        // Made only when the log is on.
        let started = Instant::now();
        let logged = if tracing::enabled!(tracing::Level::INFO) {
            format!("{method} {}", logged_url(&url))
        } else {
            String::new()
        };
        let mut request = self
            .client
            .request(method, url)
            .timeout(Duration::from_millis(timeout_ms))
            .header("accept", "application/json");
        let header = match &*self.token.read().unwrap_or_else(|e| e.into_inner()) {
            Some(token) => Some(token.header(self.peer).map_err(Failure::Final)?),
            None => None,
        };
        tracing::debug!(
            "{logged}: {} bytes sent, {}",
            body.as_ref().map_or(0, |b| b.len()),
            if header.is_some() {
                "with a token"
            } else {
                "without a token"
            }
        );
        if let Some(header) = header {
            request = request.header(AUTHORIZATION, header);
        }
        if let Some(body) = body {
            // reqwest keeps the body until the request is done with; `wiped` makes that our
            // zeroizing buffer rather than a plain copy of a load's key parts.
            request = request
                .header("content-type", "application/json")
                .body(wiped(body));
        }
        let response = request.send().await.map_err(|e| {
            let why = describe(&e);
            tracing::info!(
                "{logged} → no answer after {} ms: {why}",
                started.elapsed().as_millis()
            );
            Failure::Network(why)
        })?;
        let status = response.status();
        tracing::info!("{logged} → {status} ({} ms)", started.elapsed().as_millis());
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        let (server, content_type, retry_after) = (
            header(reqwest::header::SERVER),
            header(reqwest::header::CONTENT_TYPE),
            header(reqwest::header::RETRY_AFTER),
        );
        if response
            .content_length()
            .is_some_and(|n| n > RESPONSE_BYTES_MAX as u64)
        {
            return Err(Failure::Final(BackendError::Protocol(format!(
                "{} answered with {} bytes, over the limit of {RESPONSE_BYTES_MAX}",
                self.shown,
                response.content_length().unwrap_or_default()
            ))));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Failure::Network(describe(&e)))?;
        // The connection goes back to the pool in a task of its own once the answer is read:
        // let it run before the permit frees, or the request that takes the permit finds no
        // idle connection and opens another (at --parallelism 256, some 350 connections).
        tokio::task::yield_now().await;
        if bytes.len() > RESPONSE_BYTES_MAX {
            return Err(Failure::Final(BackendError::Protocol(format!(
                "{} answered with more than {RESPONSE_BYTES_MAX} bytes",
                self.shown
            ))));
        }
        tracing::debug!(
            "{logged}: {} bytes answered ({})",
            bytes.len(),
            content_type.as_deref().unwrap_or("no content type")
        );
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        Err(Failure::Status(Answer {
            status,
            message: error_message(&bytes),
            code: error_code(&bytes),
            stranger: self
                .peer
                .stranger(server.as_deref(), content_type.as_deref(), &bytes),
            retry_after,
        }))
    }

    pub(super) async fn read<T: DeserializeOwned>(
        &self,
        segments: &[&str],
    ) -> Result<T, BackendError> {
        let url = self.url(segments);
        let bytes = self
            .call(
                Method::GET,
                url.clone(),
                None,
                READ_TIMEOUT_MS,
                SendBy::ANY_TIME,
            )
            .await
            .map_err(|f| self.read_error(f, &Method::GET, &url))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            BackendError::Protocol(format!(
                "GET {} answered something mkplan cannot read: {}",
                crate::quote::name(url.as_str()),
                crate::quote::message(&e.to_string())
            ))
        })
    }

    /// The error of a request that reads (and may be repeated), named by its method and URL.
    pub(super) fn read_error(&self, failure: Failure, method: &Method, url: &Url) -> BackendError {
        let request = request_name(method, url);
        match failure {
            Failure::Final(error) => error,
            Failure::Network(why) => {
                BackendError::Transient(format!("{request}: cannot reach {}: {why}", self.shown))
            }
            Failure::Status(answer) => {
                let status = answer.status;
                self.status_error(answer, &request).unwrap_or_else(|| {
                    BackendError::Protocol(format!("{request}: the service answered {status}"))
                })
            }
        }
    }

    /// 401, 404, 5xx and an answer from another server mean the same for reads and commands;
    /// the rest depends on which. `request` names the request (`POST URL`, and the operation).
    fn status_error(&self, answer: Answer, request: &str) -> Option<BackendError> {
        let Answer {
            status,
            message,
            code,
            stranger,
            ..
        } = answer;
        if let Some(who) = stranger
            && status.is_client_error()
        {
            // Not the service's answer: its body says nothing about instances or tokens.
            return Some(BackendError::Unreachable(format!(
                "{request}: the server at {} answered {status}, and it is not {}: {who}. {}",
                self.shown,
                match self.peer {
                    Peer::SimServe => "mkplan's",
                    Peer::Tke { .. } => "the TKE API",
                },
                self.peer.stranger_fix()
            )));
        }
        Some(match status {
            StatusCode::UNAUTHORIZED => {
                let sent = self
                    .token
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_some();
                BackendError::Unauthorized {
                    problem: if sent {
                        format!(
                            "{request}: the service rejected {} ({message})",
                            self.peer.token_source()
                        )
                    } else {
                        format!("{request}: the service asks for a token ({message})")
                    },
                    renew: self.peer.renew(sent),
                }
            }
            StatusCode::NOT_FOUND => BackendError::NotFound(format!("{request}: {message}")),
            s if s.is_server_error() => {
                BackendError::Transient(format!("{request}: the service answered {s}: {message}"))
            }
            // A clear that names a key the new register no longer holds: it changed nothing,
            // and sending it again changes nothing either. The plan is stale.
            StatusCode::CONFLICT if code.as_deref() == Some("new_register_changed") => {
                BackendError::Refused {
                    operation: request.into(),
                    reason: format!(
                        "{message}; the plan was made when the new register held another key: plan again"
                    ),
                }
            }
            // A rewrap is running: the instance takes no command until it ends. Whose rewrap
            // it is, the executor settles from what it knows (set immediate follows only a
            // completed rewrap of its own).
            StatusCode::CONFLICT if code.as_deref() == Some("rewrap_in_progress") => {
                BackendError::RewrapRunning(format!(
                    "{request}: the service refused it while a rewrap of the key storage runs ({message})"
                ))
            }
            // The unit is busy with a command: maybe an earlier attempt of this one. Unknown.
            StatusCode::CONFLICT => BackendError::Transient(format!(
                "{request}: the crypto unit is busy with another command ({message})"
            )),
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => BackendError::Refused {
                operation: request.into(),
                reason: message,
            },
            _ => return None,
        })
    }

    async fn instance(&self, id: &str) -> Result<LiveInstance, BackendError> {
        let list: UnitList = self.read(&["v1", "tke", id, "hsms"]).await?;
        let listed = list.entries();
        if listed.len() > UNITS_PER_INSTANCE_MAX {
            return Err(BackendError::Protocol(format!(
                "service instance {id} lists {} crypto units, over the limit of {UNITS_PER_INSTANCE_MAX}",
                listed.len()
            )));
        }
        let units = try_join_all(listed.iter().map(|(kind, entry)| async move {
            let unit: CryptoUnit = self
                .read(&["v1", "tke", id, "hsms", &entry.hsm_id])
                .await?;
            if !unit.hsm_id.eq_ignore_ascii_case(&entry.hsm_id) || unit.unit_type != *kind {
                return Err(BackendError::Protocol(format!(
                    "service instance {id}: crypto unit {} is listed as {} but its state names {} ({})",
                    crate::quote::bare(&entry.hsm_id),
                    kind.as_str(),
                    crate::quote::bare(&unit.hsm_id),
                    unit.unit_type.as_str()
                )));
            }
            Ok(unit)
        }));
        let status = async {
            let status: StatusBody = self.read(&["v1", "tke", id, "rewrap"]).await?;
            Ok::<_, BackendError>(status.status)
        };
        let (crypto_units, rewrap_status) = tokio::try_join!(units, status)?;
        if let Some(service) = &list.service {
            *self.service.lock().unwrap_or_else(|e| e.into_inner()) = Some(service.clone());
        }
        Ok(LiveInstance {
            id: id.to_ascii_lowercase(),
            region: list.region.unwrap_or_default(),
            rewrap_status,
            crypto_units,
        })
    }

    pub async fn refresh(&self, instances: &[String]) -> Result<LiveFleet, BackendError> {
        let instances = try_join_all(instances.iter().map(|id| self.instance(id))).await?;
        Ok(LiveFleet { instances })
    }

    pub async fn perform(
        &self,
        operation: &Operation<'_>,
        send_by: SendBy,
    ) -> Result<(), BackendError> {
        let (name, segments, body): (&str, Vec<&str>, Zeroizing<String>) = match *operation {
            Operation::LoadNewMk {
                instance,
                unit,
                key_parts,
            } => {
                if self.clear_text {
                    return Err(BackendError::Refused {
                        operation: "load_new_mk".into(),
                        reason: format!(
                            "key parts are never sent in clear text to another machine; reach {} with https://",
                            self.shown
                        ),
                    });
                }
                let body = wiped::key_parts_body(key_parts);
                (
                    "load_new_mk",
                    vec!["v1", "tke", instance, "hsms", unit, "load_new_mk"],
                    body,
                )
            }
            Operation::CommitNewMk {
                instance,
                unit,
                verification_pattern,
                signers,
            } => (
                "commit_new_mk",
                vec!["v1", "tke", instance, "hsms", unit, "commit_new_mk"],
                Zeroizing::new(
                    json!({ "verification_pattern": verification_pattern.as_str(), "signers": signers })
                        .to_string(),
                ),
            ),
            Operation::ClearNewMk {
                instance,
                unit,
                verification_pattern,
            } => (
                "clear_new_mk",
                vec!["v1", "tke", instance, "hsms", unit, "clear_new_mk"],
                Zeroizing::new(match verification_pattern {
                    Some(vp) => json!({ "verification_pattern": vp.as_str() }).to_string(),
                    None => "{}".into(),
                }),
            ),
            Operation::SetImmediate {
                instance,
                unit,
                verification_pattern,
                signers,
            } => (
                "set_immediate",
                vec!["v1", "tke", instance, "hsms", unit, "set_immediate"],
                Zeroizing::new(
                    json!({ "verification_pattern": verification_pattern.as_str(), "signers": signers })
                        .to_string(),
                ),
            ),
            Operation::RewrapKeyStorage { instance } => (
                "rewrap_key_storage",
                vec!["v1", "tke", instance, "rewrap"],
                Zeroizing::new("{}".into()),
            ),
        };
        let url = self.url(&segments);
        // The operation, and the request that carried it (ids and path: nothing secret); made
        // only for a message.
        let request = || format!("{name} ({})", request_name(&Method::POST, &url));
        match self
            .call(
                Method::POST,
                url.clone(),
                Some(body),
                COMMAND_TIMEOUT_MS,
                send_by,
            )
            .await
        {
            Ok(_) => Ok(()),
            // An answer mkplan cannot read (too long, say) came after the request arrived.
            Err(Failure::Final(BackendError::Protocol(why))) => Err(BackendError::Transient(
                format!("{}: {why}; the outcome is unknown", request()),
            )),
            Err(Failure::Final(error)) => Err(error),
            // The request may or may not have reached the unit: unknown, settle by reading.
            Err(Failure::Network(why)) => Err(BackendError::Transient(format!(
                "{}: no answer from {} ({why}); the outcome is unknown",
                request(),
                self.shown
            ))),
            Err(Failure::Status(answer)) => {
                let (status, message) = (answer.status, answer.message.clone());
                let request = request();
                Err(self
                    .status_error(answer, &request)
                    .unwrap_or(BackendError::Refused {
                        operation: request,
                        reason: format!("{status}: {message}"),
                    }))
            }
        }
    }
}
