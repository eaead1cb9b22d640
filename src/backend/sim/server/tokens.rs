//! Bearer tokens: which the server accepts, how long each lives after its first use, and the
//! API keys the TKE front's IAM exchange turns into new tokens. Tokens are compared in
//! constant time and never printed.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use zeroize::Zeroizing;

use super::resources::problem;

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

    pub(super) fn check(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
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
