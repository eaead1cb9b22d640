//! `--backend tke:REGION`: the real service's TKE API, read-only (shared/tke-wire.md §1–§3).
//! One `GET …/hsms` lists an instance's crypto units; per unit, three unsigned EP11 queries
//! (domain attributes, administrators and their certificates, domain info) give its
//! thresholds, mode, administrators and both master-key registers. Every m_admin reply is
//! checked against its crypto module's OA epoch key, whose certificate chain ends at one of
//! IBM's root keys (module `oa`; the test root only with `MKPLAN_TKE_TEST_OA_ROOT`, on
//! loopback). With the administrators' signature keys (`signature_keys:` in the desired
//! file) it also sends loads, commits, set immediates and clears as signed admin commands
//! (§4, module `commands`); the rewrap stays a ceremony step (no published trigger, §8.1).
//!
//! Authentication: an IAM bearer token from `IBMCLOUD_IAM_TOKEN`, or an API key from
//! `IBMCLOUD_API_KEY` exchanged at IAM (`MKPLAN_IAM_ENDPOINT` overrides the endpoint), renewed
//! before it expires. Tokens and keys are zeroized and never printed.

pub mod admin;
mod commands;
pub mod der;
pub mod ep11;
pub mod htp;
pub mod kari;
pub mod oa;
pub mod oa_test_chain;
pub mod pacing;
pub mod sigkey;
pub mod sigkey_rsa;
pub mod signer;
pub mod signserv;
mod verified;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use p521::ecdsa::VerifyingKey;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::http::{Failure, HttpBackend, Peer, Token, UnitList, request_name};
use super::{BackendError, Operation, endpoint};
use crate::model::live::UNITS_PER_INSTANCE_MAX;
use crate::model::unit::ADMINISTRATOR_NAME_LEN_MAX;
use crate::model::{
    Administrator, CryptoUnit, LiveFleet, LiveInstance, Mode, RewrapStatus, Ski, UnitType,
};

/// The IAM endpoint that exchanges API keys for tokens.
pub const IAM_ENDPOINT: &str = "https://iam.cloud.ibm.com";
/// A token is renewed when less than this is left of it.
pub const TOKEN_RENEW_BEFORE_S: u64 = 300;
/// Largest threshold a unit may report (EP11 allows 8 administrators).
const THRESHOLD_MAX: u32 = 8;
/// Trusts mkplan's test OA root (`oa_test_chain`) besides IBM's: tests against
/// `mkplan sim serve --protocol tke` only, refused unless the TKE endpoint is this machine.
pub const TEST_OA_ROOT_VARIABLE: &str = "MKPLAN_TKE_TEST_OA_ROOT";

/// A protocol-level problem with one request or reply; turned into `BackendError::Protocol`
/// with the unit's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    pub message: String,
}

impl WireError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// An EP11 return value (and reason) as the SDK names it: `3-<rc>-<reason>` (§5.3).
    pub fn ep11(rc: u32, reason: Option<u32>) -> Self {
        let (name, meaning) = match rc {
            0x03 => ("SLOT_ID_INVALID", "invalid domain"),
            0x07 => ("ARGUMENTS_BAD", "bad arguments"),
            0x20 => (
                "DATA_INVALID",
                "invalid data (an administrator's SKI not found, with reason 32)",
            ),
            0x21 => ("DATA_LEN_RANGE", "an input is missing or unexpected"),
            0x31 => ("DEVICE_MEMORY", "the crypto unit is out of memory"),
            0x50 => (
                "FUNCTION_CANCELED",
                "the domain's attributes forbid it (reason 80: loading a master key)",
            ),
            0x54 => (
                "FUNCTION_NOT_SUPPORTED",
                "not supported on this crypto module",
            ),
            0x60 => (
                "KEY_HANDLE_INVALID",
                "a key, certificate or record was not found",
            ),
            0x65 => (
                "KEY_CHANGED",
                "the new register's VP is not the one supplied (commit VP mismatch)",
            ),
            0x66 => ("KEY_NEEDED", "a needed key is missing"),
            0x91 => (
                "OPERATION_NOT_INITIALIZED",
                "not initialized (reason 61: FCV not loaded)",
            ),
            0xA3 => (
                "PIN_EXPIRED",
                "invalid transaction counter: re-query it and sign again",
            ),
            0xB3 => ("SESSION_HANDLE_INVALID", "not allowed in imprint mode"),
            0xC0 => ("SIGNATURE_INVALID", "a signature is invalid"),
            0xC1 => ("SIGNATURE_LEN_RANGE", "a signature is malformed"),
            0xD0 => ("TEMPLATE_INCOMPLETE", "not enough signatures"),
            0xD1 => (
                "TEMPLATE_INCONSISTENT",
                "a threshold or attribute rule is violated",
            ),
            0x100 => ("USER_ALREADY_LOGGED_IN", "the administrator already exists"),
            0x101 => (
                "USER_NOT_LOGGED_IN",
                "the signer is not an installed administrator",
            ),
            0x105 => (
                "USER_TOO_MANY_TYPES",
                "too many administrators (at most 8 per domain)",
            ),
            0x8001_0002 => ("IBM_INTERNAL_ERROR", "internal error of the crypto unit"),
            _ => ("unknown", "an EP11 error mkplan does not know"),
        };
        Self::new(format!(
            "EP11 error 3-{rc}-{} ({name}): {meaning}",
            reason.unwrap_or(0)
        ))
    }
}

/// `[zone].[host].[CM index].[domain index]` → (CM, domain) (§1.1).
pub fn parse_location(location: &str) -> Result<(u32, u32), WireError> {
    let parts: Vec<&str> = location.split('.').collect();
    let [_, _, cm, domain] = parts[..] else {
        return Err(WireError::new(format!(
            "location {} does not have 4 parts [zone].[host].[CM].[domain]",
            crate::quote::quote(location)
        )));
    };
    let number = |part: &str, what: &str| {
        part.trim_matches(['[', ']']).parse::<u32>().map_err(|_| {
            WireError::new(format!(
                "location {}: the {what} index is not a number",
                crate::quote::quote(location)
            ))
        })
    };
    Ok((number(cm, "crypto module")?, number(domain, "domain")?))
}

/// The zone of a location, `us-south` for `[us-south].[AZ3-CS3].[02].[03]`.
fn zone(location: &str) -> String {
    location
        .split('.')
        .next()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string()
}

/// The TKE base URL for a region (§1, public endpoint of `cloud.ibm.com`).
pub fn base_url(region: &str) -> Result<String, String> {
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "tke:{}: a region is like us-south or eu-de (lower-case letters, digits, hyphens)",
            crate::quote::bare(region)
        ));
    }
    Ok(format!("https://tke.{region}.hs-crypto.cloud.ibm.com"))
}

/// Where the bearer token comes from.
pub enum Credentials {
    /// `IBMCLOUD_IAM_TOKEN`: used as it is; a 401 means log in again.
    Token(Token),
    /// `IBMCLOUD_API_KEY`: exchanged at IAM, and again before the token expires.
    ApiKey {
        key: Zeroizing<String>,
        iam: String,
    },
    None,
}

/// Where one crypto unit's HTP requests go: POSTed to its `hsm_id` in its instance, framed
/// for its CM and domain (§2.1), and alone on its crypto module.
struct Target<'a> {
    instance: &'a str,
    hsm_id: &'a str,
    /// `pacing::module_of` its location.
    module: String,
    cm: u32,
    domain: u32,
}

pub struct TkeBackend {
    transport: HttpBackend,
    shown: String,
    credentials: Credentials,
    /// When the token from the API key must be renewed.
    renew_at: std::sync::Mutex<Option<Instant>>,
    exchange: tokio::sync::Mutex<()>,
    /// At most one request in flight per crypto module (the SDK is sequential).
    modules: pacing::Modules,
    /// The root keys a module's OA chain may end at: IBM's, and the test root in tests.
    roots: Vec<oa::RootKey>,
    /// Each crypto module's epoch key (`pacing::module_of`), read once per run and again
    /// after a reply that fails its signature.
    epoch_keys: tokio::sync::Mutex<HashMap<String, VerifyingKey>>,
    /// Whether the TKE endpoint is on this machine (the only place the test root may be).
    loopback: bool,
    /// Whose crypto modules answered: the OA root their verified chains end at
    /// (`verified::root_label`), from the first verified chain of this run on.
    answered_under: std::sync::Mutex<Option<String>>,
    /// The administrators' signature keys (empty: every step is a ceremony step).
    signers: Vec<Box<dyn signer::Signer>>,
    /// One signed command at a time per domain (`module#domain`).
    domains: std::sync::Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    #[serde(default)]
    pub(crate) response: String,
}

#[derive(Deserialize)]
pub(crate) struct IamToken {
    pub(crate) access_token: Zeroizing<String>,
    #[serde(default)]
    pub(crate) expires_in: Option<u64>,
}

impl TkeBackend {
    /// `shown` is how the operator named it (`tke:us-south`); `base` the URL it talks to.
    /// Plain http to another machine is refused here, before any request, for the TKE
    /// endpoint when a token goes there and for the IAM endpoint when an API key does.
    pub fn new(
        shown: &str,
        base: &str,
        credentials: Credentials,
        parallelism: usize,
    ) -> Result<Self, BackendError> {
        let (token, carried): (Option<Token>, &[&str]) = match &credentials {
            Credentials::Token(token) => (Some(token.clone()), &["IBMCLOUD_IAM_TOKEN"]),
            Credentials::ApiKey { .. } => (None, &["the IAM token bought with IBMCLOUD_API_KEY"]),
            Credentials::None => (None, &[]),
        };
        let endpoint = endpoint::parse("TKE endpoint", base)?;
        endpoint::refuse_clear_text("TKE endpoint", &endpoint, carried)?;
        if let Credentials::ApiKey { iam, .. } = &credentials {
            let role = "IAM endpoint (MKPLAN_IAM_ENDPOINT)";
            endpoint::refuse_clear_text(role, &endpoint::parse(role, iam)?, &["IBMCLOUD_API_KEY"])?;
        }
        let api_key = matches!(credentials, Credentials::ApiKey { .. });
        Ok(Self {
            transport: HttpBackend::new(base, token, parallelism, carried)?
                .answered_by(Peer::Tke { api_key }),
            shown: format!("{shown} ({})", endpoint::shown(&endpoint)),
            credentials,
            renew_at: std::sync::Mutex::new(None),
            exchange: tokio::sync::Mutex::new(()),
            modules: pacing::Modules::default(),
            roots: oa::IBM_ROOTS.to_vec(),
            epoch_keys: tokio::sync::Mutex::new(HashMap::new()),
            loopback: endpoint::is_loopback(&endpoint),
            answered_under: std::sync::Mutex::new(None),
            signers: Vec::new(),
            domains: std::sync::Mutex::new(HashMap::new()),
        })
    }

    pub fn describe(&self) -> String {
        self.shown.clone()
    }

    /// What journal records bind to: the endpoint and whose crypto modules answer there, the
    /// OA root their certificate chains end at (IBM's, or a test root of `sim serve --protocol
    /// tke`), so that a simulator and the service never share records at one URL. Known once
    /// a refresh verified a module's chain; before that it matches no record.
    pub fn identity(&self) -> String {
        let under = self
            .answered_under
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "OA root not read yet".into());
        format!("{}; {under})", self.shown.trim_end_matches(')'))
    }

    /// The identity an mkplan older than the OA root in it gave this backend: the endpoint
    /// alone (`tke:REGION (URL)`), which a simulator at that URL shared.
    pub fn legacy_identity(&self) -> String {
        self.shown.clone()
    }

    /// With an API key: a token from IAM if there is none yet or it expires soon.
    async fn authenticate(&self) -> Result<(), BackendError> {
        let Credentials::ApiKey { key, iam } = &self.credentials else {
            return Ok(());
        };
        let _one_at_a_time = self.exchange.lock().await;
        let due = |renew_at: Option<Instant>| renew_at.is_none_or(|at| Instant::now() >= at);
        if !due(*self.renew_at.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(());
        }
        let form = super::wiped::iam_form(key);
        let url = format!("{}/identity/token", iam.trim_end_matches('/'));
        // The request, for messages: the form it carries (the API key) is never shown.
        let request = format!("POST {}", crate::quote::name(&url));
        let started = Instant::now();
        let response = self
            .transport
            .client()
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .timeout(Duration::from_millis(super::http::READ_TIMEOUT_MS))
            .body(super::wiped::wiped(form))
            .send()
            .await
            .map_err(|e| BackendError::Transient(format!("{request}: cannot reach IAM: {e}")))?;
        let status = response.status();
        // `-v`: the exchange's request line and status; the form (the API key) and the answer
        // (the token) never.
        tracing::info!(
            "{request} → {status} ({} ms)",
            started.elapsed().as_millis()
        );
        if status == reqwest::StatusCode::BAD_REQUEST || status == reqwest::StatusCode::UNAUTHORIZED
        {
            return Err(BackendError::Unauthorized {
                problem: format!(
                    "{request}: IAM refused the API key in IBMCLOUD_API_KEY ({status})"
                ),
                renew: Peer::Tke { api_key: true }.renew(true),
            });
        }
        if !status.is_success() {
            return Err(BackendError::Transient(format!(
                "{request}: IAM answered {status}"
            )));
        }
        // The answer holds the token: kept in a zeroizing buffer (the same allocation when
        // the client hands over the only handle to it).
        let bytes = Zeroizing::new(Vec::from(response.bytes().await.map_err(|e| {
            BackendError::Transient(format!("{request}: IAM's answer broke off: {e}"))
        })?));
        let token: IamToken = serde_json::from_slice(&bytes).map_err(|_| {
            BackendError::Protocol(format!("{request}: IAM answered without an access_token"))
        })?;
        let lifetime = token.expires_in.unwrap_or(3600);
        tracing::debug!("{request}: IAM gave a token valid for {lifetime} s");
        self.transport.set_token(Token::new(token.access_token));
        *self.renew_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(
            Instant::now() + Duration::from_secs(lifetime.saturating_sub(TOKEN_RENEW_BEFORE_S)),
        );
        Ok(())
    }

    /// One read of the TKE API, alone on its crypto module when it goes to one, and tried
    /// again after `429 Too Many Requests` (module `pacing`). Only for reads: a command that
    /// changes anything must never be resent blindly.
    async fn read_call(
        &self,
        method: Method,
        url: Url,
        body: Option<Zeroizing<String>>,
        module: Option<&str>,
    ) -> Result<Vec<u8>, Failure> {
        let _alone = match module {
            Some(module) => Some(self.modules.one_at_a_time(module).await),
            None => None,
        };
        let mut attempt = 1;
        loop {
            let failure = match self
                .transport
                .call(
                    method.clone(),
                    url.clone(),
                    body.clone(),
                    super::http::READ_TIMEOUT_MS,
                    super::SendBy::ANY_TIME,
                )
                .await
            {
                Err(Failure::Status(answer)) if answer.status == StatusCode::TOO_MANY_REQUESTS => {
                    answer
                }
                other => return other,
            };
            let request = request_name(&method, &url);
            match pacing::after_rate_limit(
                attempt,
                failure.retry_after.as_deref(),
                jiff::Timestamp::now(),
            ) {
                pacing::Pause::Wait(pause) => {
                    tracing::info!(
                        "{request}: 429 Too Many Requests, attempt {attempt}; trying again in {} ms",
                        pause.as_millis()
                    );
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                pacing::Pause::GiveUp(why) => {
                    return Err(Failure::Final(BackendError::Unreachable(format!(
                        "{request}: {why} ({}). Nothing was changed: wait a few minutes and run mkplan again",
                        failure.message
                    ))));
                }
            }
        }
    }

    /// One HTP request to one crypto unit; the checked payload of its reply.
    async fn query(&self, unit: &Target<'_>, payload: &[u8]) -> Result<Vec<u8>, BackendError> {
        let Target {
            instance,
            hsm_id,
            cm,
            domain,
            ..
        } = *unit;
        let url = self.transport.url(&["v1", "tke", instance, "hsms", hsm_id]);
        tracing::debug!(
            "HTP query to crypto unit {}: CM {cm:#x}, domain {domain}, {} payload bytes",
            crate::quote::bare(hsm_id),
            payload.len()
        );
        let body =
            Zeroizing::new(json!({ "request": htp::request(cm, domain, payload) }).to_string());
        let bytes = self
            .read_call(
                Method::POST,
                url.clone(),
                Some(body),
                Some(&unit.module),
            )
            .await
            .map_err(|failure| match failure {
                Failure::Status(answer)
                    if answer.status == reqwest::StatusCode::NOT_FOUND
                        && answer.stranger.is_none() =>
                {
                    BackendError::NotFound(format!(
                        "{}: crypto unit {} or instance {instance} not found ({}); the instance, the region or the account is wrong",
                        request_name(&Method::POST, &url),
                        crate::quote::bare(hsm_id),
                        answer.message
                    ))
                }
                other => self.transport.read_error(other, &Method::POST, &url),
            })?;
        let reply: Reply = serde_json::from_slice(&bytes).map_err(|e| {
            BackendError::Protocol(format!(
                "crypto unit {hsm_id}: the reply is not {{\"response\": …}} ({})",
                crate::quote::message(&e.to_string())
            ))
        })?;
        if reply.response.is_empty() {
            return Err(BackendError::Protocol(format!(
                "crypto unit {hsm_id}: the reply's response is empty"
            )));
        }
        htp::parse_response(&reply.response)
            .map_err(|e| BackendError::Protocol(format!("crypto unit {hsm_id}: {e}")))
    }

    /// Thresholds, mode, administrators and registers of one unit (§3.5 step 4).
    async fn unit(
        &self,
        instance: &str,
        kind: UnitType,
        hsm_id: &str,
        location: &str,
        serial: &str,
    ) -> Result<CryptoUnit, BackendError> {
        let wire = |e: WireError| BackendError::Protocol(format!("crypto unit {hsm_id}: {e}"));
        let (cm, domain) = parse_location(location).map_err(wire)?;
        let target = Target {
            instance,
            hsm_id,
            module: pacing::module_of(location),
            cm,
            domain,
        };
        let target = &target;
        let attributes = self.admin(target, ep11::ADMQ_DOM_ATTRS, &[]).await?;
        if serial.is_empty() {
            return Err(BackendError::Protocol(format!(
                "crypto unit {hsm_id}: the service lists it without a serial number, so the crypto module that answers cannot be checked"
            )));
        }
        if attributes.serial() != serial {
            return Err(BackendError::Protocol(format!(
                "crypto unit {hsm_id}: serial number mismatch: the service lists {serial}, the crypto module answers {}; stop and ask IBM support",
                attributes.serial()
            )));
        }
        let values = ep11::parse_attributes(&attributes.output).map_err(wire)?;
        let threshold = |value: u32, what: &str| {
            u8::try_from(value).ok().filter(|v| u32::from(*v) <= THRESHOLD_MAX).ok_or_else(|| {
                BackendError::Protocol(format!("crypto unit {hsm_id}: the {what} threshold is {value} (missing or out of range)"))
            })
        };
        let signature_threshold = threshold(values.signature_threshold, "signature")?;
        let revocation_threshold = threshold(values.revocation_threshold, "revocation")?;
        let listed = self.admin(target, ep11::ADMQ_DOMADMIN, &[]).await?;
        let skis = ep11::parse_ski_list(&listed.output).map_err(wire)?;
        let administrators = try_join_all(skis.iter().map(|ski| async move {
            let certificate = self.admin(target, ep11::ADMQ_DOMADMIN, ski).await?;
            let name = ep11::certificate_name(&certificate.output).map_err(wire)?;
            let name: String = name.chars().take(ADMINISTRATOR_NAME_LEN_MAX).collect();
            Ok::<_, BackendError>(Administrator {
                name,
                ski: Ski::parse(&hex::encode(ski)).map_err(BackendError::Protocol)?,
                public_key: None,
            })
        }))
        .await?;
        let info = self
            .query(target, &ep11::domain_info_request(domain))
            .await?;
        let info = ep11::parse_xcp_info(&info, domain).map_err(wire)?;
        let registers = ep11::parse_domain_info(&info, domain).map_err(wire)?;
        Ok(CryptoUnit {
            hsm_id: hsm_id.to_ascii_lowercase(),
            unit_type: kind,
            location: location.to_string(),
            // The SDK's rule: signature threshold 0 means imprint mode.
            mode: if signature_threshold == 0 {
                Mode::Imprint
            } else {
                Mode::Admin
            },
            signature_threshold,
            revocation_threshold,
            administrators,
            new_register: registers.new,
            current_register: registers.current,
        })
    }

    async fn instance(&self, id: &str) -> Result<LiveInstance, BackendError> {
        self.authenticate().await?;
        let url = self.transport.url(&["v1", "tke", id, "hsms"]);
        let bytes = self
            .read_call(Method::GET, url.clone(), None, None)
            .await
            .map_err(|f| self.transport.read_error(f, &Method::GET, &url))?;
        let list: UnitList = serde_json::from_slice(&bytes).map_err(|e| {
            BackendError::Protocol(format!(
                "{}: the service answered a list of crypto units mkplan cannot read: {}",
                request_name(&Method::GET, &url),
                crate::quote::message(&e.to_string())
            ))
        })?;
        let listed = list.entries();
        if listed.len() > UNITS_PER_INSTANCE_MAX {
            return Err(BackendError::Protocol(format!(
                "service instance {id} lists {} crypto units, over the limit of {UNITS_PER_INSTANCE_MAX}",
                listed.len()
            )));
        }
        let crypto_units = try_join_all(listed.iter().map(|(kind, entry)| {
            self.unit(
                id,
                *kind,
                &entry.hsm_id,
                &entry.location,
                &entry.serial_number,
            )
        }))
        .await?;
        Ok(LiveInstance {
            id: id.to_ascii_lowercase(),
            region: crypto_units
                .first()
                .map(|u| zone(&u.location))
                .unwrap_or_default(),
            // The real service publishes no rotation status.
            rewrap_status: RewrapStatus::NotReported,
            crypto_units,
        })
    }

    pub async fn refresh(&self, instances: &[String]) -> Result<LiveFleet, BackendError> {
        let instances = try_join_all(instances.iter().map(|id| self.instance(id))).await?;
        Ok(LiveFleet { instances })
    }

    /// The administrators' signature keys, opened and checked: with them this backend sends
    /// loads, commits, set immediates and clears as signed commands (module `commands`).
    pub fn set_signers(&mut self, signers: Vec<Box<dyn signer::Signer>>) {
        self.signers = signers;
    }

    /// Whether this backend sends signed commands (it has signature keys).
    pub fn sends_commands(&self) -> bool {
        !self.signers.is_empty()
    }
}

#[cfg(test)]
mod pacing_tests;
#[cfg(test)]
mod tests;
