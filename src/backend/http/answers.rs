//! What the HTTP API answers, as `HttpBackend` reads it: the failure of one request before it
//! is given a meaning, the service's error message, and the bodies of the unit list and the
//! rewrap status (the TKE API's shapes, docs/http-api.md).

use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::Value;

use super::super::BackendError;
use super::super::peer::Answer;
use crate::model::{RewrapStatus, UnitType};

/// What went wrong with one request, before it is given a meaning.
pub(in crate::backend) enum Failure {
    /// No complete answer: connection refused or reset, timeout.
    Network(String),
    /// An answer outside 2xx.
    Status(Answer),
    Final(BackendError),
}

/// `METHOD URL`, for messages. The URL holds the base the operator gave and ids the service
/// listed (never a token: a URL with a user name or password is refused), cut and inert.
/// A URL for the `-v` log: scheme, host, port and path (the query and any user info left out).
pub(in crate::backend) fn logged_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    crate::quote::name(shown.as_str())
}

pub(in crate::backend) fn request_name(method: &Method, url: &Url) -> String {
    format!("{method} {}", crate::quote::name(url.as_str()))
}

/// The service's `{"error": {"message": …}}`, or the start of whatever it sent: cut and
/// inert, as it ends up in an error message.
pub(crate) fn error_message(bytes: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(bytes)
        && let Some(message) = value["error"]["message"].as_str()
    {
        return crate::quote::message(message);
    }
    crate::quote::message(&String::from_utf8_lossy(bytes))
}

/// The problem's code (`{"error": {"code": …}}`), when the body is one; short and plain, or
/// none.
pub(crate) fn error_code(bytes: &[u8]) -> Option<String> {
    let value = serde_json::from_slice::<Value>(bytes).ok()?;
    let code = value["error"]["code"].as_str()?;
    (code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then(|| code.to_string())
}

/// The causes of a reqwest error, without its top line ("error sending request for url …",
/// which repeats the URL the message already names).
pub(in crate::backend) fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    let mut causes: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !causes.iter().any(|c| c.contains(&text)) {
            causes.push(text);
        }
        source = cause.source();
    }
    if causes.is_empty() {
        error.to_string()
    } else {
        causes.join(": ")
    }
}

/// The TKE list of an instance's crypto units.
#[derive(Deserialize)]
pub(crate) struct UnitList {
    hsms: Vec<Entry>,
    #[serde(default, deserialize_with = "null_is_empty")]
    source_hsms: Vec<Entry>,
    #[serde(default, deserialize_with = "null_is_empty")]
    failover_hsms: Vec<Entry>,
    #[serde(default)]
    pub(crate) region: Option<String>,
    /// The service's own name for itself (`sim serve`: its fleet file), whatever address it
    /// is reached at.
    #[serde(default)]
    pub(crate) service: Option<String>,
}

/// `"source_hsms": null` (or `"failover_hsms": null`) lists no units, as the SDK reads it
/// (common/submit.go skips a missing or null list). `hsms` stays required, as there.
fn null_is_empty<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Entry>, D::Error> {
    Ok(Option::<Vec<Entry>>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Deserialize)]
pub(crate) struct Entry {
    pub(crate) hsm_id: String,
    #[serde(default)]
    pub(crate) location: String,
    #[serde(default)]
    pub(crate) serial_number: String,
}

impl UnitList {
    /// Operational, then recovery, then failover units, each in the service's order.
    pub(crate) fn entries(&self) -> Vec<(UnitType, &Entry)> {
        let operational = self.hsms.iter().map(|e| (UnitType::Operational, e));
        let recovery = self.source_hsms.iter().map(|e| (UnitType::Recovery, e));
        let failover = self.failover_hsms.iter().map(|e| (UnitType::Failover, e));
        operational.chain(recovery).chain(failover).collect()
    }
}

#[derive(Deserialize)]
pub(crate) struct StatusBody {
    pub(crate) status: RewrapStatus,
}
