//! `mkplan sim serve --protocol tke`: the simulator answering the TKE API's read half
//! exactly as the real service frames it (tke-wire.md §1–§3), so that `--backend tke:REGION
//! --tke-endpoint http://127.0.0.1:PORT` is tested end to end over loopback.
//!
//! - `GET /v1/tke/{instance}/hsms`: the TKE list (`hsms`, `source_hsms`, `failover_hsms`).
//! - `POST /v1/tke/{instance}/hsms/{hsm_id}` `{"request": HTP}` → `{"response": HTP}`: domain
//!   info, domain attributes, the administrator list and each administrator's certificate,
//!   built from the fleet, the crypto module's OA device certificates, the domain's importer
//!   key; and signed commands (load, commit, set immediate, clear, new importer key), which
//!   the card's side checks and performs (module `tke_card`).
//! - `POST /v1/tke/{instance}/rewrap`: the rewrap, as the operator starts it with the TKE CLI
//!   in a ceremony step (the real service publishes no API for it).
//! - `POST /identity/token`: an IAM-like exchange of an API key (`--api-key`) for a token.
//!
//! Every m_admin reply is signed, as a card signs it, with the epoch key of
//! `tke::oa_test_chain`: TEST MATERIAL whose root no client trusts unless a test says so.
//!
//! No rewrap status is published, as the real service publishes none. Faults count the
//! POSTed requests: `fail_op` answers 500 with nothing done, `lose_response_op` does what was
//! asked (a signed command takes effect) and answers 500, `latency_ms` delays each one,
//! `crash_after_op` aborts after answering nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::durable::Shared;
use super::resources::{durable_unit, problem, serial_of};
use crate::backend::tke::oa_test_chain::{
    TestModule, reply_signer_info, second_service_module, test_module,
};
use crate::backend::tke::{ep11, htp, parse_location};
use crate::model::{CryptoUnit, Mode};

pub const IAM_TOKEN_PATH: &str = "/identity/token";
/// Permissions the simulated domains report (load, commit, … allowed; tke-wire.md §3.2).
const PERMISSIONS: u32 = 0x0030_204D;

/// The simulated crypto modules' OA chain and epoch key (test material, see module doc);
/// after the `oa_epoch_change_op` fault, a new epoch; with `oa_unknown_root`, a chain to a
/// root nobody trusts.
static MODULE: std::sync::LazyLock<TestModule> = std::sync::LazyLock::new(|| test_module(0, false));
static NEXT_EPOCH: std::sync::LazyLock<TestModule> =
    std::sync::LazyLock::new(|| test_module(1, false));
static STRANGER: std::sync::LazyLock<TestModule> =
    std::sync::LazyLock::new(|| test_module(0, true));
/// With `oa_second_test_root`: another simulated service's modules, and their next epoch.
static SECOND: std::sync::LazyLock<TestModule> =
    std::sync::LazyLock::new(|| second_service_module(0));
static SECOND_NEXT_EPOCH: std::sync::LazyLock<TestModule> =
    std::sync::LazyLock::new(|| second_service_module(1));

/// How the module signs one reply: its chain and key, and whether the reply is forged.
#[derive(Clone, Copy)]
pub(crate) struct Signing {
    module: &'static TestModule,
    forge: bool,
}

impl Signing {
    /// The module as it signs without faults.
    pub(crate) fn honest() -> Self {
        Self {
            module: &MODULE,
            forge: false,
        }
    }

    pub(super) fn module(&self) -> &'static TestModule {
        self.module
    }

    fn for_request(faults: &crate::backend::sim::faults::Faults, number: u64) -> Self {
        let from = |op: Option<u64>| op.is_some_and(|op| number >= op);
        let module: &'static TestModule = if faults.oa_unknown_root {
            &STRANGER
        } else if faults.oa_second_test_root && from(faults.oa_epoch_change_op) {
            &SECOND_NEXT_EPOCH
        } else if faults.oa_second_test_root {
            &SECOND
        } else if from(faults.oa_epoch_change_op) {
            &NEXT_EPOCH
        } else {
            &MODULE
        };
        Self {
            module,
            forge: from(faults.forge_reply_from_op),
        }
    }
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/tke/{instance}/hsms", get(super::resources::list_units))
        .route("/v1/tke/{instance}/hsms/{hsm_id}", post(query))
        // The stand-in for the TKE CLI's `cryptounit-mk-rotate` (no published API, tke-wire.md
        // §8.1): what a scripted operator runs in a ceremony step. mkplan never calls it.
        .route("/v1/tke/{instance}/rewrap", post(super::commands::rewrap))
        .route(IAM_TOKEN_PATH, post(iam_token))
}

#[derive(Deserialize)]
pub(crate) struct Body {
    pub(crate) request: String,
}

async fn query(
    State(shared): State<Arc<Shared>>,
    UrlPath((instance, hsm_id)): UrlPath<(String, String)>,
    body: Option<Json<Body>>,
) -> Response {
    let Some(Json(body)) = body else {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body must be {\"request\": \"<HTP request>\"}",
        );
    };
    let number = shared
        .operations
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        + 1;
    if shared.faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(shared.faults.latency_ms)).await;
    }
    let unavailable = || {
        problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "transient",
            &format!("injected fault on request {number}: service unavailable, retry later"),
        )
    };
    if shared.faults.fail_op.contains(&number) {
        return unavailable();
    }
    // The request takes effect and its answer is lost on the way back (contract.md), as a
    // signed command whose reply a proxy dropped: the caller must read again what it did.
    let lost = shared.faults.lose_response_op.contains(&number);
    let unit = match durable_unit(&shared, &instance, &hsm_id).await {
        Ok(unit) => unit,
        Err(response) => return *response,
    };
    if shared.faults.crash_after_op.contains(&number) {
        shared.crash().await;
    }
    let signing = Signing::for_request(&shared.faults, number);
    if let Some((domain, payload)) = signed_command(&unit, &body.request) {
        return match super::tke_card::command(&shared, &instance, &unit, domain, &payload, signing)
            .await
        {
            Ok(_) if lost => unavailable(),
            Ok(reply) => Json(json!({ "response": htp::response(domain, &reply) })).into_response(),
            Err(response) => response,
        };
    }
    if lost {
        return unavailable();
    }
    let card = shared.cards_view(&unit.hsm_id);
    Json(json!({ "response": answer_card(&unit, &body.request, signing, &card) })).into_response()
}

/// The domain and payload of a signed command (not a query) for `unit`, framed right.
fn signed_command(unit: &CryptoUnit, request: &str) -> Option<(u32, Vec<u8>)> {
    let request = htp::parse_request(request).ok()?;
    let (cm, domain) = parse_location(&unit.location).ok()?;
    if request.cm != cm || request.domain != domain {
        return None;
    }
    let (function, _) = ep11::function_of(&request.payload).ok()?;
    if function != ep11::M_ADMIN {
        return None;
    }
    let (command, _) = ep11::parse_admin_query(&request.payload, domain).ok()?;
    super::tke_card::is_command(command).then_some((domain, request.payload))
}

/// The module id a unit's card reports: its serial (8 ASCII bytes) ‖ instance 1.
pub(super) fn module_id(unit: &CryptoUnit) -> Vec<u8> {
    [serial_of(&unit.hsm_id).into_bytes(), vec![0; 7], vec![1]].concat()
}

/// The HTP response to one HTP request, as the crypto unit and its host would give it.
pub(crate) fn answer(unit: &CryptoUnit, request: &str) -> String {
    answer_signed(unit, request, Signing::honest())
}

pub(crate) fn answer_signed(unit: &CryptoUnit, request: &str, signing: Signing) -> String {
    answer_card(unit, request, signing, &(0, None))
}

/// The answer, with the domain's card-side state: its counter and importer key.
fn answer_card(
    unit: &CryptoUnit,
    request: &str,
    signing: Signing,
    card: &(u64, Option<p521::PublicKey>),
) -> String {
    let request = match htp::parse_request(request) {
        Ok(request) => request,
        Err(e) => return htp::host_error_response(9, 12, 0, &e.message),
    };
    let Ok((cm, domain)) = parse_location(&unit.location) else {
        return htp::host_error_response(11, 1, 0, "the unit's location cannot be read");
    };
    if request.cm != cm {
        return htp::host_error_response(9, 2, 0, "crypto module index out of range");
    }
    if request.domain != domain {
        return htp::host_error_response(9, 5, 0, "domain index out of range");
    }
    let payload = match ep11::function_of(&request.payload) {
        Ok((ep11::GET_XCP_INFO, _)) => domain_info(unit, domain, &request.payload),
        Ok((ep11::M_ADMIN, _)) => admin(unit, domain, &request.payload, signing, card),
        Ok((function, _)) => ep11::error_response(function, domain, 0x54),
        Err(e) => return htp::host_error_response(9, 12, 0, &e.message),
    };
    htp::response(domain, &payload)
}

fn domain_info(unit: &CryptoUnit, domain: u32, payload: &[u8]) -> Vec<u8> {
    let subtype = crate::backend::tke::der::octet_strings(payload, "request")
        .ok()
        .and_then(|fields| fields.get(2).map(|f| f.to_vec()));
    if subtype.as_deref() != Some(&ep11::INFO_DOMAIN.to_be_bytes()[..]) {
        return ep11::error_response(ep11::GET_XCP_INFO, domain, 0x54);
    }
    ep11::domain_info_response(
        domain,
        &unit.current_register,
        &unit.new_register,
        !unit.administrators.is_empty(),
        unit.mode == Mode::Imprint,
    )
}

fn admin(
    unit: &CryptoUnit,
    domain: u32,
    payload: &[u8],
    signing: Signing,
    (counter, importer): &(u64, Option<p521::PublicKey>),
) -> Vec<u8> {
    let Ok((command, input)) = ep11::parse_admin_query(payload, domain) else {
        return ep11::error_response(ep11::M_ADMIN, domain, 0x07);
    };
    let module = module_id(unit);
    let reply = |admin_domain: &[u8], code: u32, output: &[u8]| {
        let mut block =
            ep11::admin_response_block(admin_domain, command, &module, *counter, code, output);
        let signature = reply_signer_info(&signing.module.epoch, &block);
        if signing.forge && command != ep11::ADMQ_DEVICE_CERT && !output.is_empty() {
            // The last byte of the output, changed after signing.
            let last = block.len() - 1;
            block[last] ^= 0x01;
        }
        ep11::signed_admin_response(domain, &block, &signature)
    };
    let in_domain = [domain.to_be_bytes(), [0; 4]].concat();
    let ok = |output: &[u8]| reply(&in_domain, 0, output);
    match command {
        ep11::ADMQ_DEVICE_CERT => device_certificate(signing.module, &input, |code, output| {
            reply(&[0; 8], code, output)
        }),
        ep11::ADMQ_DOM_ATTRS => ok(&ep11::attributes_output(
            u32::from(unit.signature_threshold),
            u32::from(unit.revocation_threshold),
            PERMISSIONS,
        )),
        ep11::ADMQ_DOMADMIN if input.is_empty() => {
            let skis: Vec<u8> = unit
                .administrators
                .iter()
                .flat_map(|a| hex::decode(a.ski.as_str()).unwrap_or_default())
                .collect();
            ok(&skis)
        }
        ep11::ADMQ_DOMADMIN => match unit
            .administrators
            .iter()
            .find(|a| hex::decode(a.ski.as_str()).ok().as_deref() == Some(&input[..]))
        {
            Some(administrator) => ok(&ep11::certificate(&administrator.name, &input)),
            None => reply(&in_domain, 0x20, &32u32.to_be_bytes()),
        },
        ep11::ADMQ_IMPORTER => match importer {
            Some(key) => ok(&crate::backend::tke::kari::importer_output(key)),
            None => {
                let (code, reason) = ep11::CERTIFICATE_NOT_FOUND;
                reply(&in_domain, code, &reason.to_be_bytes())
            }
        },
        _ => reply(&in_domain, 0x54, &[]),
    }
}

/// Device certificate `input` (u32 index), or their number when `input` is empty; past the
/// end the card's "not found" (96/60).
fn device_certificate(
    module: &TestModule,
    input: &[u8],
    reply: impl Fn(u32, &[u8]) -> Vec<u8>,
) -> Vec<u8> {
    let certificates = &module.certificates;
    if input.is_empty() {
        let count = u32::try_from(certificates.len()).unwrap_or(u32::MAX);
        return reply(0, &count.to_be_bytes());
    }
    let index = <[u8; 4]>::try_from(input).map(u32::from_be_bytes);
    match index.ok().and_then(|i| certificates.get(i as usize)) {
        Some(certificate) => reply(0, certificate),
        None => {
            let (code, reason) = ep11::CERTIFICATE_NOT_FOUND;
            reply(code, &reason.to_be_bytes())
        }
    }
}

/// `POST /identity/token` with `grant_type=…apikey&apikey=K`: a new token for a known key.
async fn iam_token(State(shared): State<Arc<Shared>>, body: String) -> Response {
    let key = api_key_of(&body);
    if !shared.tokens.knows_api_key(&key) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found." })),
        )
            .into_response();
    }
    let token = shared.tokens.issue();
    Json(json!({
        "access_token": token.as_str(), "token_type": "Bearer",
        "expires_in": shared.tokens.ttl_s().unwrap_or(3600),
    }))
    .into_response()
}

/// The `apikey` of a form body (`grant_type=…&apikey=K`), percent-decoded.
pub(crate) fn api_key_of(body: &str) -> zeroize::Zeroizing<String> {
    body.split('&')
        .find_map(|pair| pair.strip_prefix("apikey="))
        .map(percent_decode)
        .unwrap_or_default()
}

fn percent_decode(text: &str) -> zeroize::Zeroizing<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let decoded = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match decoded {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    zeroize::Zeroizing::new(String::from_utf8_lossy(&out).into_owned())
}
