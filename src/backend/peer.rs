//! Who should answer an HTTP backend: `mkplan sim serve` or the TKE API. The messages about
//! a rejected token name the variable this backend reads it from (`MKPLAN_TOKEN`, or
//! `IBMCLOUD_IAM_TOKEN` / `IBMCLOUD_API_KEY`), and an error answer from some other server at
//! the address (a web server, a proxy's page) is told apart from the service's own.

use reqwest::StatusCode;
use serde_json::Value;

/// Who should answer at the other end, for messages: where its token comes from, and how an
/// answer from some other server at that address is told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// `mkplan sim serve` (`--backend http://`): it names itself in its `Server` header and
    /// answers errors as `{"error": {"code": …, "message": …}}` (docs/http-api.md).
    SimServe,
    /// The TKE API (`tke:`), which answers in JSON. Its token is `IBMCLOUD_IAM_TOKEN`, or
    /// the one IAM gives for `IBMCLOUD_API_KEY`.
    Tke { api_key: bool },
}

impl Peer {
    /// What to do about a token the service rejected, or the lack of one.
    pub(super) fn renew(self, sent: bool) -> String {
        match (self, sent) {
            (Self::SimServe, true) => "Log in again and set MKPLAN_TOKEN to a fresh token",
            (Self::SimServe, false) => {
                "No token was sent: set MKPLAN_TOKEN to a token the server accepts (one given to `mkplan sim serve --token`)"
            }
            (Self::Tke { api_key: true }, _) => {
                "Log in again (`ibmcloud login`) and set IBMCLOUD_API_KEY to a valid API key of a user with access to the service instance (`ibmcloud iam api-key-create`)"
            }
            (Self::Tke { .. }, true) => {
                "Log in again (`ibmcloud login`) and set IBMCLOUD_IAM_TOKEN to a fresh token (`ibmcloud iam oauth-tokens`), or set IBMCLOUD_API_KEY to an API key instead, which mkplan renews"
            }
            (Self::Tke { .. }, false) => {
                "No token was sent: log in (`ibmcloud login`) and set IBMCLOUD_IAM_TOKEN to a token (`ibmcloud iam oauth-tokens`), or IBMCLOUD_API_KEY to an API key"
            }
        }
        .into()
    }

    /// The token and where it comes from, for a message about it.
    pub(super) fn token_source(self) -> &'static str {
        match self {
            Self::SimServe => "the token in MKPLAN_TOKEN",
            Self::Tke { api_key: true } => "the token IAM returned for IBMCLOUD_API_KEY",
            Self::Tke { api_key: false } => "the token in IBMCLOUD_IAM_TOKEN",
        }
    }

    /// Who answered, in words, when the answer is not from the service expected here: a web
    /// server, a proxy's page, another program on that port. `None` when it is.
    pub(crate) fn stranger(
        self,
        server: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Option<String> {
        let named_ours = server.is_some_and(|s| {
            s.strip_prefix(super::SIM_SERVER_NAME)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        });
        if named_ours {
            return None;
        }
        let media = content_type
            .and_then(|c| c.split(';').next())
            .map(str::trim)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let html = media == "text/html" || body.trim_ascii_start().starts_with(b"<");
        let ours = match self {
            // Behind a proxy that replaces the Server header, the body still says whose it is.
            Self::SimServe => serde_json::from_slice::<Value>(body).is_ok_and(|value| {
                value["error"]["code"].is_string() && value["error"]["message"].is_string()
            }),
            // Only a web page is plainly not the TKE API: its error bodies are not documented.
            Self::Tke { .. } => !html,
        };
        if ours {
            return None;
        }
        let named = match server {
            Some(server) => format!("its Server header says {}", crate::quote::quote(server)),
            None => "it names no server".into(),
        };
        let sent = if html {
            "a web page (HTML)".to_string()
        } else if media.is_empty() {
            "a body of no stated type".to_string()
        } else {
            crate::quote::bare(&media)
        };
        Some(format!("{named} and it sent {sent}"))
    }

    /// Advice on an answer from a stranger: where the address comes from.
    pub(super) fn stranger_fix(self) -> &'static str {
        match self {
            Self::SimServe => {
                "`mkplan sim serve` names itself in its Server header (mkplan-sim/VERSION) and answers errors in JSON. Check the backend's URL (--backend, MKPLAN_BACKEND or `backend:` in the desired file): its host and port are those `mkplan sim serve` printed"
            }
            Self::Tke { .. } => {
                "The TKE API answers in JSON, never with a web page. Check the TKE endpoint (--tke-endpoint or MKPLAN_TKE_ENDPOINT) and the region in tke:REGION"
            }
        }
    }
}

/// An answer outside 2xx.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    /// The service's message, or the start of the body: cut and inert.
    pub(super) message: String,
    /// The problem's `error.code`, when the body has one (`new_register_changed`, say).
    pub(super) code: Option<String>,
    /// Who answered, when it is not the service expected at this address (`Peer::stranger`).
    pub(super) stranger: Option<String>,
    /// The `Retry-After` header as sent (seconds or an HTTP date), for a 429 or 503.
    pub(super) retry_after: Option<String>,
}
