//! What the server reads out, for both protocols: the list of an instance's crypto units,
//! one unit's state, the rewrap status, and the problems (`{"error": …}`) every route answers
//! with. Each read waits until the state it shows is on disk.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::durable::Shared;
use crate::model::{CryptoUnit, UnitType};

/// `{"error": {"code": …, "message": …}}` with a status.
pub(super) fn problem(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

pub(super) fn unknown_instance(instance: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "instance_not_found",
        &format!(
            "no service instance {instance}: check the instance id, the region and the account"
        ),
    )
}

pub(super) fn unknown_unit(instance: &str, hsm_id: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "crypto_unit_not_found",
        &format!("service instance {instance} has no crypto unit {hsm_id}"),
    )
}

pub(super) fn find_unit<'a>(units: &'a [CryptoUnit], hsm_id: &str) -> Option<&'a CryptoUnit> {
    units.iter().find(|u| u.hsm_id.eq_ignore_ascii_case(hsm_id))
}

/// The 8-character serial number of the crypto module of a simulated unit: the `/hsms` list
/// and the module id in EP11 replies must agree on it (tke-wire.md §3.5).
pub(super) fn serial_of(hsm_id: &str) -> String {
    hsm_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect::<String>()
        .to_ascii_uppercase()
}

/// The TKE list of crypto units: `hsms` (operational), `source_hsms` (recovery) and
/// `failover_hsms`, plus the instance's region (an extension of the TKE shape).
pub(super) async fn list_units(
    State(shared): State<Arc<Shared>>,
    UrlPath(instance): UrlPath<String>,
) -> Response {
    let (body, applied) = {
        let state = shared.state();
        let Some(found) = state.fleet.instance(&instance) else {
            return unknown_instance(&instance);
        };
        let entries = |kind: UnitType| -> Vec<Value> {
            found
                .crypto_units
                .iter()
                .filter(|u| u.unit_type == kind)
                .map(|u| {
                    json!({
                        "hsm_id": u.hsm_id, "location": u.location,
                        "serial_number": serial_of(&u.hsm_id),
                        "state": "ACTIVE", "version": 1,
                    })
                })
                .collect()
        };
        // Which service this is, whatever address it is reached at: the fleet file itself.
        // mkplan binds its journal records to it (an extension of the TKE shape).
        let service = std::fs::canonicalize(&shared.path).unwrap_or_else(|_| shared.path.clone());
        let body = json!({
            "metadata": [{ "collectionType": "application/json", "collectionTotal": found.crypto_units.len() }],
            "region": found.region,
            "service": format!("sim:{}", service.display()),
            "hsms": entries(UnitType::Operational),
            "source_hsms": entries(UnitType::Recovery),
            "failover_hsms": entries(UnitType::Failover),
        });
        (body, state.applied)
    };
    shared.durable(applied).await;
    Json(body).into_response()
}

/// One unit's mode, thresholds, administrators and registers (what the TKE queries return).
pub(super) async fn unit_state(
    State(shared): State<Arc<Shared>>,
    UrlPath((instance, hsm_id)): UrlPath<(String, String)>,
) -> Response {
    match durable_unit(&shared, &instance, &hsm_id).await {
        Ok(unit) => Json(unit).into_response(),
        Err(response) => *response,
    }
}

/// A copy of one unit, once the state it shows is on disk; or the 404 that says which id is
/// wrong.
pub(super) async fn durable_unit(
    shared: &Shared,
    instance: &str,
    hsm_id: &str,
) -> Result<CryptoUnit, Box<Response>> {
    let (unit, applied) = {
        let state = shared.state();
        let Some(found) = state.fleet.instance(instance) else {
            return Err(Box::new(unknown_instance(instance)));
        };
        match find_unit(&found.crypto_units, hsm_id) {
            Some(unit) => (unit.clone(), state.applied),
            None => return Err(Box::new(unknown_unit(instance, hsm_id))),
        }
    };
    shared.durable(applied).await;
    Ok(unit)
}

/// `{"status": "not_reported" | "not_rewrapped" | "in_progress" | "rewrapped"}`.
pub(super) async fn rewrap_status(
    State(shared): State<Arc<Shared>>,
    UrlPath(instance): UrlPath<String>,
) -> Response {
    let (status, applied) = {
        let state = shared.state();
        let Some(found) = state.fleet.instance(&instance) else {
            return unknown_instance(&instance);
        };
        (found.rewrap_status(), state.applied)
    };
    shared.durable(applied).await;
    Json(json!({ "status": status })).into_response()
}
