//! Bearer tokens: which the server accepts, how long each lives after its first use, and the
//! API keys the TKE front's IAM exchange turns into new tokens. Tokens are never printed.
//!
//! The server keeps only the SHA-256 digest of each token and API key, and compares the digest
//! of what a client sends with every one of them in constant time (`subtle`), without stopping
//! at the first match: how long a check takes says nothing about how much of a guess was
//! right, nor how long the secret is.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::resources::problem;

/// The SHA-256 digest of a token or API key: what the server keeps and compares.
type Digest = Zeroizing<[u8; 32]>;

/// A token's digest and the moment of its first use.
type Accepted = (Digest, Arc<OnceLock<Instant>>);

/// Bearer tokens the server accepts, and how long each lives after its first use.
pub struct Tokens {
    accepted: Mutex<Vec<Accepted>>,
    ttl: Option<Duration>,
    /// API keys the IAM exchange (`POST /identity/token`, TKE protocol) accepts.
    api_keys: Vec<Digest>,
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
                    .iter()
                    .map(|t| (digest(t.as_bytes()), Arc::new(OnceLock::new())))
                    .collect(),
            ),
            ttl,
            api_keys: Vec::new(),
        }
    }

    /// Also accept these API keys at the IAM exchange; each exchange issues a new token.
    pub fn with_api_keys(mut self, api_keys: Vec<Zeroizing<String>>) -> Self {
        self.api_keys = api_keys.iter().map(|k| digest(k.as_bytes())).collect();
        self
    }

    /// Whether the IAM exchange knows `given` (never an empty key).
    pub(super) fn knows_api_key(&self, given: &str) -> bool {
        !given.is_empty() && find(&self.api_keys, &digest(given.as_bytes()), |k| k).is_some()
    }

    pub(super) fn ttl_s(&self) -> Option<u64> {
        self.ttl.map(|t| t.as_secs())
    }

    /// Whether a request must carry a token (one was given, or an API key to obtain one).
    pub fn required(&self) -> bool {
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
            .push((digest(token.as_bytes()), Arc::new(OnceLock::new())));
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
        let given = digest(given.as_bytes());
        let accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        let first_use = find(&accepted, &given, |(token, _)| token)
            .map(|(_, first_use)| first_use.clone())
            .ok_or_else(|| {
                Box::new(problem(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the bearer token is not valid here",
                ))
            })?;
        drop(accepted);
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

fn digest(secret: &[u8]) -> Digest {
    Zeroizing::new(Sha256::digest(secret).into())
}

/// The entry of `known` whose digest is `given`. Every entry is compared, each in constant
/// time, so that the time taken does not depend on where (or whether) `given` matches, nor on
/// how much of it is right.
fn find<'a, T>(known: &'a [T], given: &Digest, digest_of: impl Fn(&T) -> &Digest) -> Option<&'a T> {
    known.iter().fold(None, |found, entry| {
        if same(digest_of(entry), given) {
            Some(entry)
        } else {
            found
        }
    })
}

/// Whether two digests are equal, in constant time: both are 32 bytes, so neither the contents
/// nor the lengths of the secrets behind them show in the time taken.
fn same(a: &Digest, b: &Digest) -> bool {
    a[..].ct_eq(&b[..]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Correctness only: that the comparison takes the same time whatever the input cannot be
    /// shown by a unit test (timings on a shared machine are noise); it rests on `subtle`'s
    /// `ct_eq` over 32-byte digests, with no early return on length or on a first difference.
    fn same_secret(a: &[u8], b: &[u8]) -> bool {
        same(&digest(a), &digest(b))
    }

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(same_secret(b"token-1", b"token-1"));
        assert!(same_secret(b"", b""));
        assert!(!same_secret(b"token-1", b"token-2"));
        assert!(!same_secret(b"token-1", b"token-10"), "a longer guess");
        assert!(!same_secret(b"token-1", b"token-"), "a prefix");
        assert!(!same_secret(b"token-1", b""));
        assert!(!same_secret(b"Token-1", b"token-1"), "case matters");
    }

    #[test]
    fn tokens_and_api_keys_are_found_whichever_their_place() {
        let secrets = |list: &[&str]| list.iter().map(|s| Zeroizing::new(s.to_string())).collect();
        let tokens = Tokens::new(secrets(&["first", "second", "third"]), None)
            .with_api_keys(secrets(&["key-a", "key-b"]));
        let accepted = tokens.accepted.lock().unwrap();
        for (n, token) in ["first", "second", "third"].iter().enumerate() {
            let found = find(&accepted, &digest(token.as_bytes()), |(d, _)| d).expect("found");
            assert!(std::ptr::eq(found, &accepted[n]), "{token}");
        }
        for wrong in ["", "firs", "first ", "fourth"] {
            assert!(
                find(&accepted, &digest(wrong.as_bytes()), |(d, _)| d).is_none(),
                "{wrong:?}"
            );
        }
        drop(accepted);
        assert!(tokens.knows_api_key("key-a") && tokens.knows_api_key("key-b"));
        assert!(!tokens.knows_api_key("key-") && !tokens.knows_api_key(""));
        assert!(!Tokens::none().knows_api_key("key-a"));
    }
}
