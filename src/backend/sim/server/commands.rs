//! The JSON API's commands: the register commands on one crypto unit and the instance's
//! rewrap. Each is one mutating operation: a crypto unit takes one command at a time (409
//! otherwise), the faults act by its number, the simulator's rules decide, and the change is
//! on disk before the response. A rewrap answers when it has completed; it runs on the
//! server, so it completes even if its client goes away.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::super::{Accepted, Fleet, Refused, SimOperation, clock};
use super::durable::Shared;
use super::resources::{find_unit, problem, unknown_instance, unknown_unit};
use crate::keypart::{self, KEY_LEN, Secret32};
use crate::model::VerificationPattern;

/// The body of a unit command. `key_parts` (hex) only for `load_new_mk`;
/// `verification_pattern` and `signers` for `commit_new_mk` and `set_immediate`;
/// `verification_pattern` (optional, and mkplan always sends it) for `clear_new_mk`: the key
/// the clear is meant for, so a clear that arrives late clears nothing loaded since.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommandBody {
    /// In hex; zeroized when dropped.
    #[serde(default)]
    key_parts: Vec<Zeroizing<String>>,
    #[serde(default)]
    verification_pattern: Option<String>,
    /// The administrators who signed a commit or a set immediate.
    #[serde(default)]
    signers: Vec<String>,
}

/// `POST /v1/tke/{instance}/hsms/{hsm_id}/{command}`.
pub(super) async fn unit_command(
    State(shared): State<Arc<Shared>>,
    UrlPath((instance, hsm_id, command)): UrlPath<(String, String, String)>,
    body: Option<Json<CommandBody>>,
) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let operation = match parse_command(&instance, &hsm_id, &command, &body) {
        Ok(operation) => operation,
        Err(response) => return *response,
    };
    {
        let state = shared.state();
        let Some(found) = state.fleet.instance(&instance) else {
            return unknown_instance(&instance);
        };
        if find_unit(&found.crypto_units, &hsm_id).is_none() {
            return unknown_unit(&instance, &hsm_id);
        }
    }
    mutate(&shared, hsm_id.to_ascii_lowercase(), operation).await
}

pub(crate) fn parse_command(
    instance: &str,
    hsm_id: &str,
    command: &str,
    body: &CommandBody,
) -> Result<SimOperation, Box<Response>> {
    let bad = |message: String| Box::new(problem(StatusCode::BAD_REQUEST, "bad_request", &message));
    let (instance, unit) = (instance.to_string(), hsm_id.to_string());
    Ok(match command {
        "load_new_mk" => {
            let mut parts = Vec::with_capacity(body.key_parts.len());
            for (index, part) in body.key_parts.iter().enumerate() {
                let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
                hex::decode_to_slice(part.as_bytes(), &mut bytes[..]).map_err(|_| {
                    bad(format!(
                        "key part {} is not {} hex characters",
                        index + 1,
                        2 * KEY_LEN
                    ))
                })?;
                parts.push(Secret32::from_bytes(*bytes));
            }
            let combined = keypart::combine(&parts).map_err(|e| bad(e.to_string()))?;
            SimOperation::LoadNewMk {
                instance,
                unit,
                verification_pattern: combined.verification_pattern(),
            }
        }
        "commit_new_mk" | "set_immediate" => {
            let text = body.verification_pattern.as_deref().ok_or_else(|| {
                bad(format!(
                    "{command} needs the verification_pattern the new register must hold"
                ))
            })?;
            let verification_pattern = VerificationPattern::parse(text)
                .map_err(|e| bad(format!("verification_pattern: {e}")))?;
            let signers = body.signers.clone();
            if command == "commit_new_mk" {
                SimOperation::CommitNewMk {
                    instance,
                    unit,
                    verification_pattern,
                    signers,
                }
            } else {
                SimOperation::SetImmediate {
                    instance,
                    unit,
                    verification_pattern,
                    signers,
                }
            }
        }
        "clear_new_mk" => SimOperation::ClearNewMk {
            instance,
            unit,
            verification_pattern: match body.verification_pattern.as_deref() {
                Some(text) => Some(
                    VerificationPattern::parse(text)
                        .map_err(|e| bad(format!("verification_pattern: {e}")))?,
                ),
                None => None,
            },
        },
        other => {
            return Err(Box::new(problem(
                StatusCode::NOT_FOUND,
                "unknown_command",
                &format!(
                    "unknown command {}: the commands are load_new_mk, commit_new_mk, clear_new_mk and set_immediate",
                    crate::quote::quote(other)
                ),
            )));
        }
    })
}

/// `POST /v1/tke/{instance}/rewrap`.
pub(super) async fn rewrap(
    State(shared): State<Arc<Shared>>,
    UrlPath(instance): UrlPath<String>,
) -> Response {
    if shared.state().fleet.instance(&instance).is_none() {
        return unknown_instance(&instance);
    }
    let busy = format!("instance {}", instance.to_ascii_lowercase());
    mutate(&shared, busy, SimOperation::RewrapKeyStorage { instance }).await
}

/// Releases a unit's "command in progress" mark when the response is sent, or when the
/// client goes away and the handler is dropped.
struct BusyGuard<'a> {
    shared: &'a Shared,
    key: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.shared
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// One mutating operation: faults by its number, the simulator's rules, a durable write
/// before the response. A rewrap's faults act right after its acceptance; without them, the
/// response waits for its completion.
async fn mutate(shared: &Arc<Shared>, busy: String, operation: SimOperation) -> Response {
    if !shared
        .busy
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(busy.clone())
    {
        return problem(
            StatusCode::CONFLICT,
            "crypto_unit_busy",
            &format!(
                "another command for {} is in progress: a crypto unit takes one command at a time",
                operation.unit().unwrap_or(operation.instance())
            ),
        );
    }
    let _busy = BusyGuard { shared, key: busy };
    let number = shared.operations.fetch_add(1, Ordering::SeqCst) + 1;
    let late_ms = shared.faults.lost_response_lands_after_ms;
    if late_ms > 0 && shared.faults.lose_response_op.contains(&number) {
        // A slow service that queued the request while its connection was reset: the caller
        // hears of it at once, and the request takes effect later, whatever the caller does.
        let (queued, name) = (shared.clone(), operation.name());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(late_ms)).await;
            let _ = perform_numbered(&queued, number, operation).await;
        });
        return lost(number, name);
    }
    perform_numbered(shared, number, operation).await
}

/// The response an operation whose response was lost gets: a transient error.
fn lost(number: u64, name: &str) -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "transient",
        &format!("injected fault lose_response_op={number}: the response to {name} was lost"),
    )
}

/// `mutate` after the busy check, for the operation numbered `number`. With `latency_ms`
/// the operation takes that long in all, as a service's own does: it lands (applied, and
/// written durably) halfway, and its answer leaves at the end. The server's write is then
/// inside the latency asked for, not added to it.
async fn perform_numbered(shared: &Arc<Shared>, number: u64, operation: SimOperation) -> Response {
    if shared.faults.latency_ms == 0 {
        return perform_landing(shared, number, operation).await;
    }
    let latency = Duration::from_millis(shared.faults.latency_ms);
    let answer_at = tokio::time::Instant::now() + latency;
    tokio::time::sleep(latency / 2).await;
    let response = perform_landing(shared, number, operation).await;
    tokio::time::sleep_until(answer_at).await;
    response
}

/// `perform_numbered` from the moment the operation reaches the service.
async fn perform_landing(shared: &Arc<Shared>, number: u64, operation: SimOperation) -> Response {
    if shared.faults.fail_op.contains(&number) {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "transient",
            &format!(
                "injected fault fail_op={number}: {} failed with a transient error and had no effect",
                operation.name()
            ),
        );
    }
    let (result, after, applied) = {
        let mut state = shared.state();
        let result = state.perform(&operation, shared.clock.now_ms());
        let after = after_state(&state.fleet, &operation);
        (result, after, state.applied)
    };
    shared.commit_wanted.notify_one();
    shared.durable(applied).await;
    // The service runs the rewrap from here on, whatever becomes of this request.
    let completion = match result {
        Ok(Accepted::RewrapRunning { completes_at_ms }) => Some(tokio::spawn(complete_when_due(
            shared.clone(),
            completes_at_ms,
        ))),
        _ => None,
    };
    if shared.faults.crash_after_op.contains(&number) {
        // As if the service's host lost power right after the write: no response, no cleanup.
        shared.crash().await;
    }
    if shared.faults.lose_response_op.contains(&number) {
        return lost(number, operation.name());
    }
    if let Some(completion) = completion {
        let _ = completion.await;
        return Json(after_state(&shared.state().fleet, &operation)).into_response();
    }
    match result {
        Ok(_) => Json(after).into_response(),
        Err(Refused::Busy(reason)) => problem(
            StatusCode::CONFLICT,
            "rewrap_in_progress",
            &format!("the service refused {}: {reason}", operation.name()),
        ),
        Err(Refused::Changed(reason)) => problem(
            StatusCode::CONFLICT,
            "new_register_changed",
            &format!("the service refused {}: {reason}", operation.name()),
        ),
        Err(Refused::Rule(reason)) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            &format!("the service refused {}: {reason}", operation.name()),
        ),
    }
}

/// Completes a rewrap when it is due and writes it, as a task of its own: the rewrap
/// completes on time even if its client has gone away.
async fn complete_when_due(shared: Arc<Shared>, completes_at_ms: u64) {
    clock::sleep_until(shared.clock.as_ref(), completes_at_ms).await;
    let applied = shared.state().applied;
    shared.durable(applied).await;
}

/// The state the response reports: the unit after a unit command, the rewrap status after
/// a rewrap.
fn after_state(fleet: &Fleet, operation: &SimOperation) -> Value {
    let Some(instance) = fleet.instance(operation.instance()) else {
        return Value::Null;
    };
    match operation.unit() {
        Some(hsm_id) => find_unit(&instance.crypto_units, hsm_id)
            .map(|u| serde_json::to_value(u).expect("units serialize"))
            .unwrap_or(Value::Null),
        None => json!({ "status": instance.rewrap_status() }),
    }
}
