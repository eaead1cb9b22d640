//! Entry points for the fuzz targets under `fuzz/` (run by `scripts/fuzz`): each parser that
//! is not public on its own, behind one function that takes what arrives from outside, so the
//! targets call the code mkplan runs rather than a copy of it. Not an API: hidden from the
//! docs, and it changes with the fuzz targets.

use zeroize::Zeroizing;

use crate::apply::audit::{self, Verified};
use crate::apply::journal::{self, JournalError, Record};
use crate::apply::journal_key::JournalKey;
use crate::backend::http::{StatusBody, UnitList};
use crate::backend::sim::SimOperation;
use crate::backend::sim::server::{commands, tke_front};
use crate::backend::tke::{IamToken, Reply};
use crate::model::{CryptoUnit, RewrapStatus, UnitType};
use crate::plan::Plan;

/// The journal key the targets seal and check with: fixed, so that a run replays.
pub fn journal_key() -> JournalKey {
    JournalKey::from_secret(Zeroizing::new([0x5a; 32]), None)
}

/// Journal bytes read as `Journal::read` reads them (no head): the records, and the length
/// of the intact prefix `Journal::open` would keep.
pub fn read_journal(
    bytes: &[u8],
    key: Option<&JournalKey>,
) -> Result<(Vec<Record>, usize), JournalError> {
    let parsed = journal::parse(std::path::Path::new("journal.jsonl"), bytes, key, &[])?;
    Ok((parsed.records, parsed.good_len))
}

/// The lines `Journal::append` writes for `records` into an empty journal.
pub fn write_journal(key: &JournalKey, records: &[Record]) -> String {
    journal::sealed_lines(key, "", records).0
}

/// The lines `Audit::write_all` appends to a trail that `verify_text` walked.
pub fn extend_audit(verified: &Verified, time: u64, events: Vec<serde_json::Value>) -> String {
    audit::chained_lines(verified.entries, &verified.last_hash, time, events).0
}

/// A saved plan's text, read as `apply PLANFILE` and `show` read it.
pub fn parse_plan_file(text: &str) -> crate::error::Result<Plan> {
    crate::cli::plan::parse_plan_file("plan.json", text)
}

/// What the HTTP backend reads from `GET /v1/tke/{instance}/hsms`: (type, hsm_id, location,
/// serial number) per listed crypto unit, in the backend's order.
pub fn http_unit_list(body: &[u8]) -> serde_json::Result<Vec<(UnitType, String, String, String)>> {
    let list: UnitList = serde_json::from_slice(body)?;
    Ok(list
        .entries()
        .into_iter()
        .map(|(kind, e)| {
            (
                kind,
                e.hsm_id.clone(),
                e.location.clone(),
                e.serial_number.clone(),
            )
        })
        .collect())
}

/// What the HTTP backend reads from `GET …/hsms/{hsm_id}`.
pub fn http_unit(body: &[u8]) -> serde_json::Result<CryptoUnit> {
    serde_json::from_slice(body)
}

/// What the HTTP backend reads from `GET …/rewrap`.
pub fn http_rewrap_status(body: &[u8]) -> serde_json::Result<RewrapStatus> {
    serde_json::from_slice::<StatusBody>(body).map(|b| b.status)
}

/// What the HTTP backend shows of an error answer's body.
pub fn http_error_message(body: &[u8]) -> String {
    crate::backend::http::error_message(body)
}

/// What the HTTP backend (`tke` false: `mkplan sim serve`; true: the TKE API) says of who
/// sent an error answer with these `Server` and `Content-Type` headers and `body`, when it is
/// not the service expected at the address.
pub fn http_stranger(
    tke: bool,
    server: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<String> {
    let peer = if tke {
        crate::backend::http::Peer::Tke { api_key: false }
    } else {
        crate::backend::http::Peer::SimServe
    };
    peer.stranger(server, content_type, body)
}

/// What the TKE backend reads from a `POST …/hsms/{hsm_id}` answer: its HTP response string.
pub fn tke_reply(body: &[u8]) -> serde_json::Result<String> {
    serde_json::from_slice::<Reply>(body).map(|r| r.response)
}

/// What the TKE backend reads from IAM's token answer: the token's length (the token itself
/// stays here) and its lifetime.
pub fn iam_token(body: &[u8]) -> serde_json::Result<(usize, Option<u64>)> {
    serde_json::from_slice::<IamToken>(body).map(|t| (t.access_token.len(), t.expires_in))
}

/// What `sim serve` makes of `POST /v1/tke/{instance}/hsms/{hsm_id}/{command}` with `body`
/// (read as axum's `Json` reads it): the operation, or the HTTP status of its refusal.
pub fn sim_command(
    instance: &str,
    hsm_id: &str,
    command: &str,
    body: &[u8],
) -> Result<SimOperation, u16> {
    let body: commands::CommandBody = if body.is_empty() {
        commands::CommandBody::default()
    } else {
        serde_json::from_slice(body).map_err(|_| 400u16)?
    };
    commands::parse_command(instance, hsm_id, command, &body).map_err(|r| r.status().as_u16())
}

/// What `sim serve --protocol tke` answers to `POST …/hsms/{hsm_id}` with `body` for `unit`:
/// the HTP response string, or `None` where axum refuses the body before the handler runs.
pub fn tke_answer(unit: &CryptoUnit, body: &[u8]) -> Option<String> {
    let body: tke_front::Body = serde_json::from_slice(body).ok()?;
    Some(tke_front::answer(unit, &body.request))
}

/// The API key `sim serve --protocol tke` reads from an IAM token request's form body.
pub fn iam_form_api_key(body: &str) -> Zeroizing<String> {
    tke_front::api_key_of(body)
}
