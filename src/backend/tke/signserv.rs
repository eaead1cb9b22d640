//! An administrator's P-521 key held by a signing service, as the TKE CLI supports it
//! (`TKE_SIGNSERV_URL`, shared/tke-wire.md §6.2): `GET {url}/keys/{name}` gives the public key,
//! `POST {url}/sign/{name}` signs the DER bytes of one xcpAdminBlk (the service hashes them
//! with SHA-512). The key never leaves the service; mkplan holds at most its token.
//!
//! mkplan trusts the service no further than it can check. The public key must be a point
//! on P-521; its SKI (SHA-256 of `04 ‖ X ‖ Y`) is what the crypto unit will look for. Every
//! signature is verified with that key before it is returned, so a service that signs the
//! wrong bytes, with the wrong key or with garbage is caught here, before anything reaches a
//! crypto unit; the signature goes on in strict DER whatever encoding the service used.
//!
//! The URL follows the rules of every other URL mkplan sends to (`endpoint`): no user name,
//! password, query or fragment, and plain `http://` only to this machine (`localhost`,
//! `127.0.0.1`, `[::1]`), token or not: the key name and the blocks to sign go there. Key
//! names are RFC 3986 unreserved characters, so they go into the path as they are. Errors
//! name the request and the administrator, never the token; a service that did not answer is
//! [`SignError::Unavailable`], one that answered no (or nonsense) is [`SignError::Refused`].

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p521::ecdsa::signature::hazmat::PrehashVerifier;
use p521::ecdsa::{Signature, VerifyingKey};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Client, Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use super::der;
use super::signer::{SignError, SignFuture, SignatureKind, Signer};
use crate::backend::wiped::wiped;
use crate::backend::{endpoint, http};

/// The variable the TKE CLI reads the service's base URL from; mkplan reads the same one.
pub const URL_VARIABLE: &str = "TKE_SIGNSERV_URL";
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// One request, answer included. A signing service may ask a person or an HSM; it still
/// answers in seconds.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Largest answer read: a public key or a signature is a few hundred bytes.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024;
/// Longest key name accepted.
pub const KEY_NAME_LEN_MAX: usize = 200;
/// Bytes of a P-521 coordinate.
const COORDINATE_LEN: usize = 66;
const ROLE: &str = "signing service (TKE_SIGNSERV_URL)";
const DER_INTEGER: u8 = 0x02;

/// The key `key_name` of the signing service at `url`, for `administrator`: its public key is
/// read (and checked) now; each signature is asked for, and verified, when a command is signed.
pub async fn signer(
    url: &str,
    administrator: &str,
    key_name: &str,
    token: Option<Zeroizing<String>>,
) -> Result<Box<dyn Signer>, SignError> {
    open(
        url,
        administrator,
        key_name,
        token,
        Duration::from_millis(REQUEST_TIMEOUT_MS),
    )
    .await
}

/// [`signer`] with the request timeout as a parameter, for tests of a slow service.
async fn open(
    url: &str,
    administrator: &str,
    key_name: &str,
    token: Option<Zeroizing<String>>,
    timeout: Duration,
) -> Result<Box<dyn Signer>, SignError> {
    let administrator_shown = crate::quote::bare(administrator);
    check_key_name(key_name).map_err(|why| {
        SignError::Refused(format!(
            "administrator {administrator_shown}: signing service key {}: {why}",
            crate::quote::quote(key_name)
        ))
    })?;
    let context = format!("administrator {administrator_shown}, signing service key {key_name}");
    if has_user_info(url) {
        return Err(SignError::Refused(format!(
            "{context}: {ROLE} {}: a URL here carries no user name or password (it is shown in messages and logs). Give the key token as docs/tke.md says, not in the URL",
            crate::quote::name(&endpoint::redacted(url))
        )));
    }
    let base =
        endpoint::parse(ROLE, url).map_err(|e| SignError::Refused(format!("{context}: {e}")))?;
    let carried: &[&str] = if token.is_some() {
        &["its key token", "the commands to sign"]
    } else {
        &["the commands to sign"]
    };
    endpoint::refuse_clear_text(ROLE, &base, carried)
        .map_err(|e| SignError::Refused(format!("{context}: {e}")))?;
    let service = Service {
        client: client().map_err(|why| SignError::Unavailable(format!("{context}: {why}")))?,
        base,
        key_name: key_name.to_string(),
        token,
        timeout,
        context,
    };
    let url = service.url("keys");
    let answer: PublicKeyAnswer = service.call(Method::GET, url.clone(), None).await?;
    let request = request_name(&Method::GET, &url);
    let point = STANDARD
        .decode(answer.publickey.trim())
        .ok()
        .and_then(|der| uncompressed_point(&der))
        .ok_or_else(|| {
            service.refused(format!(
                "{request} answered a public key that is not base64 of DER SEQ{{INTEGER X, INTEGER Y}} with 66-byte coordinates: a signing service's keys must be P-521"
            ))
        })?;
    let key = VerifyingKey::from_sec1_bytes(&point).map_err(|_| {
        service.refused(format!(
            "{request} answered a public key that is not a point on P-521: check the key in the signing service"
        ))
    })?;
    Ok(Box::new(ServiceSigner {
        administrator: administrator.to_string(),
        ski: Sha256::digest(&point).into(),
        key,
        service,
    }))
}

/// RFC 3986 unreserved characters only (`A–Z a–z 0–9 - . _ ~`), and not `.` or `..`, which
/// a URL path reads as "here" and "up".
fn check_key_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > KEY_NAME_LEN_MAX {
        return Err(format!("a key name has 1 to {KEY_NAME_LEN_MAX} characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
    {
        return Err(format!(
            "{} is not allowed in a key name: use letters, digits, `-`, `.`, `_` and `~` only (RFC 3986 unreserved characters, which go into the service's URL as they are)",
            crate::quote::quote(&bad.to_string())
        ));
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are not key names (a URL path reads them as folders)".into());
    }
    Ok(())
}

/// A user name or password in the URL's authority: `endpoint::parse` refuses it too, but its
/// advice names the backends' variables.
fn has_user_info(url: &str) -> bool {
    url.split_once("://").is_some_and(|(_, rest)| {
        rest.split(['/', '\\', '?', '#'])
            .next()
            .unwrap_or_default()
            .contains('@')
    })
}

fn client() -> Result<Client, String> {
    // As in `http`: reqwest is built without a default crypto provider; installing ring
    // twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        // A redirect would take the token and the command elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .user_agent(concat!("mkplan/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("no HTTP client: {e}"))
}

/// `04 ‖ X ‖ Y` from DER `SEQ{INTEGER X, INTEGER Y}`, each coordinate left-padded to 66 bytes.
fn uncompressed_point(der_bytes: &[u8]) -> Option<Vec<u8>> {
    let [x, y] = two_integers(der_bytes)?;
    Some([&[0x04][..], &x, &y].concat())
}

/// The signature from DER `SEQ{INTEGER r, INTEGER s}` (lengths read leniently, as a service
/// may write them); None when it is not one, or r or s is zero or not below the order.
fn p521_signature(der_bytes: &[u8]) -> Option<Signature> {
    let [r, s] = two_integers(der_bytes)?;
    Signature::from_slice(&[r, s].concat()).ok()
}

/// Two non-negative DER INTEGERs filling a SEQUENCE, each as 66 big-endian bytes.
fn two_integers(der_bytes: &[u8]) -> Option<[[u8; COORDINATE_LEN]; 2]> {
    let sequence = der::read_whole(der_bytes, der::SEQUENCE, "a P-521 value").ok()?;
    let elements = der::elements(sequence.value).ok()?;
    let [first, second] = elements.as_slice() else {
        return None;
    };
    Some([unsigned(first)?, unsigned(second)?])
}

fn unsigned(element: &der::Tlv<'_>) -> Option<[u8; COORDINATE_LEN]> {
    let value = element.value;
    if element.tag != DER_INTEGER || value.is_empty() || value[0] & 0x80 != 0 {
        return None;
    }
    let start = value.iter().position(|b| *b != 0).unwrap_or(value.len());
    let magnitude = &value[start..];
    let mut out = [0u8; COORDINATE_LEN];
    out.get_mut(COORDINATE_LEN.checked_sub(magnitude.len())?..)?
        .copy_from_slice(magnitude);
    Some(out)
}

#[derive(Deserialize)]
struct PublicKeyAnswer {
    publickey: String,
}

#[derive(Deserialize)]
struct SignatureAnswer {
    signature: String,
}

/// The way to one key of the service.
struct Service {
    client: Client,
    base: Url,
    key_name: String,
    /// Sent as the whole `Authorization` value, as the TKE CLI sends it.
    token: Option<Zeroizing<String>>,
    timeout: Duration,
    /// "administrator alice, signing service key alice-p521", at the head of every message.
    context: String,
}

impl Service {
    fn url(&self, operation: &str) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("endpoint::parse refuses a URL that cannot be a base")
            .pop_if_empty()
            .extend([operation, self.key_name.as_str()]);
        url
    }

    fn refused(&self, why: String) -> SignError {
        SignError::Refused(format!("{}: {why}", self.context))
    }

    fn unavailable(&self, why: String) -> SignError {
        SignError::Unavailable(format!(
            "{}: {why}. Nothing was sent to a crypto unit. Check that the signing service runs and that {URL_VARIABLE} names it, then run mkplan again",
            self.context
        ))
    }

    /// One request; the JSON of a 2xx answer, or the error it maps to.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<T, SignError> {
        let request = request_name(&method, &url);
        let mut builder = self
            .client
            .request(method, url)
            .timeout(self.timeout)
            .header(ACCEPT, "application/json");
        if let Some(token) = &self.token {
            let mut value = HeaderValue::from_maybe_shared(wiped(token.clone())).map_err(|_| {
                self.refused(format!(
                    "{request} was not sent: the key token holds characters an HTTP header cannot carry (a line break?)"
                ))
            })?;
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        if let Some(body) = body {
            builder = builder.header(CONTENT_TYPE, "application/json").body(body);
        }
        let started = std::time::Instant::now();
        let response = builder.send().await.map_err(|e| {
            self.unavailable(format!(
                "{request}: no answer ({})",
                describe(&e, self.timeout)
            ))
        })?;
        let status = response.status();
        tracing::info!(
            "{request} → {status} ({} ms)",
            started.elapsed().as_millis()
        );
        let bytes = self.bounded_body(&request, response).await?;
        if !status.is_success() {
            return Err(self.status_error(&request, status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            self.refused(format!(
                "{request} answered something mkplan cannot read: {}",
                crate::quote::message(&e.to_string())
            ))
        })
    }

    /// The body, read a chunk at a time and refused past [`RESPONSE_BYTES_MAX`], so a
    /// service cannot fill the memory.
    async fn bounded_body(
        &self,
        request: &str,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, SignError> {
        let too_long = || {
            self.refused(format!(
                "{request} answered more than {RESPONSE_BYTES_MAX} bytes, far more than a key or a signature"
            ))
        };
        if response
            .content_length()
            .is_some_and(|n| n > RESPONSE_BYTES_MAX as u64)
        {
            return Err(too_long());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            self.unavailable(format!(
                "{request}: the answer broke off ({})",
                describe(&e, self.timeout)
            ))
        })? {
            if bytes.len() + chunk.len() > RESPONSE_BYTES_MAX {
                return Err(too_long());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    fn status_error(&self, request: &str, status: StatusCode, body: &[u8]) -> SignError {
        // A service may quote the token it refused: it is cut out before the message is
        // quoted (and perhaps shortened), so no part of it can reach a message from here.
        let body = String::from_utf8_lossy(body);
        let message = match self.token.as_deref().map(|t| t.trim()) {
            Some(token) if !token.is_empty() && body.contains(token) => {
                http::error_message(body.replace(token, "[the key token]").as_bytes())
            }
            _ => http::error_message(body.as_bytes()),
        };
        let answered = if message.is_empty() {
            format!("{request} answered {status}")
        } else {
            format!("{request} answered {status}: {message}")
        };
        match status.as_u16() {
            401 | 403 if self.token.is_none() => self.refused(format!(
                "{answered}. The service wants a key token for this key and none was given: give the administrator's key token"
            )),
            401 | 403 => self.refused(format!(
                "{answered}. The service refused the key token given for this key: check the token (it may have expired)"
            )),
            404 => self.refused(format!(
                "{answered}. The service has no key named {}: check the key name",
                self.key_name
            )),
            408 | 429 | 500..=599 => self.unavailable(format!(
                "{answered}. The service could not answer now"
            )),
            _ => self.refused(format!("{answered}. The service refused the request")),
        }
    }
}

struct ServiceSigner {
    administrator: String,
    ski: [u8; 32],
    key: VerifyingKey,
    service: Service,
}

impl ServiceSigner {
    async fn sign_now(&self, block_der: &[u8]) -> Result<Vec<u8>, SignError> {
        let body = serde_json::to_vec(&serde_json::json!({
            "hash_algorithm": "sha2-512",
            "input": STANDARD.encode(block_der),
        }))
        .expect("a JSON object of strings");
        let url = self.service.url("sign");
        let request = request_name(&Method::POST, &url);
        let answer: SignatureAnswer = self.service.call(Method::POST, url, Some(body)).await?;
        let signature = STANDARD
            .decode(answer.signature.trim())
            .ok()
            .and_then(|der| p521_signature(&der))
            .ok_or_else(|| {
                self.service.refused(format!(
                    "{request} answered a signature that is not base64 of DER SEQ{{INTEGER r, INTEGER s}} for P-521. Nothing was sent to a crypto unit"
                ))
            })?;
        self.key
            .verify_prehash(&Sha512::digest(block_der), &signature)
            .map_err(|_| {
                self.service.refused(format!(
                    "{request} answered a signature that does not verify with the key's public key (SKI {}): the service signed other bytes or with another key. Nothing was sent to a crypto unit; check the signing service",
                    hex::encode(self.ski)
                ))
            })?;
        Ok(signature.to_der().as_bytes().to_vec())
    }
}

impl Signer for ServiceSigner {
    fn administrator(&self) -> &str {
        &self.administrator
    }

    fn source(&self) -> String {
        format!("signing service key {}", self.service.key_name)
    }

    fn ski(&self) -> [u8; 32] {
        self.ski
    }

    fn kind(&self) -> SignatureKind {
        SignatureKind::P521
    }

    fn sign<'a>(&'a self, block_der: &'a [u8]) -> SignFuture<'a> {
        Box::pin(self.sign_now(block_der))
    }
}

/// `METHOD URL`: the URL holds the base the operator gave (no user info: refused) and the key
/// name (unreserved characters: checked), never the token.
fn request_name(method: &Method, url: &Url) -> String {
    format!("{method} {}", crate::quote::name(url.as_str()))
}

/// Why a request got no answer (the backends' own wording), with the time waited, quoted
/// for a message.
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timed out after {} ms", timeout.as_millis());
    }
    crate::quote::message(&crate::backend::http::describe(error))
}

#[cfg(test)]
#[path = "signserv_tests.rs"]
mod tests;
