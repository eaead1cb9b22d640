//! A signing service as the TKE CLI knows it (`TKE_SIGNSERV_URL`, shared/tke-wire.md §6.2),
//! in the test process, on its own thread and runtime: `GET /keys/{name}` answers a P-521
//! public key, `POST /sign/{name}` an ECDSA signature over SHA-512 of the input. Its keys are
//! derived from their names, so a test can write the SKI a crypto unit should know before the
//! service starts ([`ski`]).
//!
//! Knobs make it misbehave as a real one might: a token it requires, a wrong signature,
//! error statuses, slowness. It records every request (method, path, `Authorization` value)
//! so a test can say what reached it. Used by the library's tests of `tke::signserv` (which
//! include this file by path) and by the integration tests (`support::signserv`).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p521::ecdsa::signature::Signer as _;
use p521::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

/// The keys the service holds unless a test says otherwise.
pub const KEYS: [&str; 3] = ["alice-p521", "bob-p521", "carol-p521"];

/// How the service behaves; change it while it runs with [`SignServ::set`].
#[derive(Clone, Debug)]
pub struct Knobs {
    /// The names it has keys for.
    pub keys: Vec<String>,
    /// When set, the exact `Authorization` value it wants (else 401).
    pub token: Option<String>,
    /// Signs other bytes than it was given: a signature that does not verify.
    pub wrong_signature: bool,
    /// Answers every request with this status (and a JSON error).
    pub status: Option<u16>,
    /// Answers `POST /sign/…` with this status; `GET /keys/…` as usual.
    pub sign_status: Option<u16>,
    /// Waits this long before each answer.
    pub delay_ms: u64,
    /// Answers the key request with this `publickey` value (base64) instead of the key's.
    pub public_key_base64: Option<String>,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            keys: KEYS.iter().map(|k| k.to_string()).collect(),
            token: None,
            wrong_signature: false,
            status: None,
            sign_status: None,
            delay_ms: 0,
            public_key_base64: None,
        }
    }
}

/// One request as it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
}

struct Shared {
    knobs: Mutex<Knobs>,
    seen: Mutex<Vec<Seen>>,
}

/// A running service; stops when dropped.
pub struct SignServ {
    /// `http://127.0.0.1:PORT`, for `TKE_SIGNSERV_URL`.
    pub url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SignServ {
    pub fn start(knobs: Knobs) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let shared = Arc::new(Shared {
            knobs: Mutex::new(knobs),
            seen: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/keys/{name}", get(public_key_answer))
            .route("/sign/{name}", post(sign_answer))
            .with_state(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the signing service");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Self {
            url,
            shared,
            stop: Some(stop),
        }
    }

    pub fn set(&self, knobs: Knobs) {
        *self.shared.knobs.lock().unwrap() = knobs;
    }

    /// Every request so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for SignServ {
    fn drop(&mut self) {
        // Not joined: a slow answer still sleeping must not hold up the test.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The service's key for `name`: derived from the name, so tests agree on it in advance.
pub fn signing_key(name: &str) -> SigningKey {
    let mut secret = [0u8; 66];
    secret[2..].copy_from_slice(&Sha512::digest(format!(
        "mkplan test signing service {name}"
    )));
    SigningKey::from_slice(&secret).expect("a scalar below the order")
}

/// `04 ‖ X ‖ Y` (133 bytes).
pub fn public_key(name: &str) -> Vec<u8> {
    signing_key(name)
        .verifying_key()
        .to_sec1_point(false)
        .as_bytes()
        .to_vec()
}

/// The SKI a crypto unit knows the key's administrator by: SHA-256(`04 ‖ X ‖ Y`).
pub fn ski(name: &str) -> [u8; 32] {
    Sha256::digest(public_key(name)).into()
}

/// DER `SEQ{INTEGER X, INTEGER Y}`, minimal (a coordinate with leading zero bytes is shorter
/// than 66 bytes on the wire, as a real service may send it).
pub fn public_key_der(name: &str) -> Vec<u8> {
    let point = public_key(name);
    let body = [integer(&point[1..67]), integer(&point[67..])].concat();
    [vec![0x30], length(body.len()), body].concat()
}

fn integer(magnitude: &[u8]) -> Vec<u8> {
    let start = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len() - 1);
    let mut value = magnitude[start..].to_vec();
    if value[0] & 0x80 != 0 {
        value.insert(0, 0);
    }
    [vec![0x02], length(value.len()), value].concat()
}

fn length(n: usize) -> Vec<u8> {
    match n {
        0..0x80 => vec![n as u8],
        0x80..0x100 => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// Records the request, waits, and answers the knobs' refusals; the knobs when it may go on.
async fn admit(
    shared: &Shared,
    method: &str,
    path: String,
    headers: &HeaderMap,
) -> Result<Knobs, Response> {
    let authorization = headers
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    shared.seen.lock().unwrap().push(Seen {
        method: method.into(),
        path,
        authorization: authorization.clone(),
    });
    let knobs = shared.knobs.lock().unwrap().clone();
    if knobs.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(knobs.delay_ms)).await;
    }
    if let Some(status) = knobs.status {
        let status = StatusCode::from_u16(status).expect("a status code");
        return Err(error(status, "the test service was told to fail"));
    }
    if let Some(wanted) = &knobs.token
        && authorization.as_deref() != Some(wanted)
    {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or invalid key token",
        ));
    }
    Ok(knobs)
}

/// The key, or the service's 404.
fn known(knobs: &Knobs, name: &str) -> Result<SigningKey, Box<Response>> {
    if knobs.keys.iter().any(|k| k == name) {
        Ok(signing_key(name))
    } else {
        Err(Box::new(error(StatusCode::NOT_FOUND, "no such key")))
    }
}

async fn public_key_answer(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        let knobs = admit(&shared, "GET", format!("/keys/{name}"), &headers).await?;
        known(&knobs, &name).map_err(|e| *e)?;
        let publickey = knobs
            .public_key_base64
            .clone()
            .unwrap_or_else(|| STANDARD.encode(public_key_der(&name)));
        Ok::<_, Response>(Json(json!({ "publickey": publickey })).into_response())
    };
    answer.await.unwrap_or_else(|refusal| refusal)
}

async fn sign_answer(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let answer = async {
        let knobs = admit(&shared, "POST", format!("/sign/{name}"), &headers).await?;
        if let Some(status) = knobs.sign_status {
            let status = StatusCode::from_u16(status).expect("a status code");
            return Err(error(status, "the test service was told to fail signing"));
        }
        let key = known(&knobs, &name).map_err(|e| *e)?;
        if body["hash_algorithm"] != "sha2-512" {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "hash_algorithm must be sha2-512",
            ));
        }
        let mut input = body["input"]
            .as_str()
            .and_then(|text| STANDARD.decode(text).ok())
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "input must be base64"))?;
        if knobs.wrong_signature {
            input.push(0);
        }
        let signature: Signature = key.sign(&input);
        let der = signature.to_der();
        Ok(Json(json!({ "signature": STANDARD.encode(der.as_bytes()) })).into_response())
    };
    answer.await.unwrap_or_else(|refusal| refusal)
}
