//! The TKE backend against a small fake TKE API in this process, which answers as
//! `sim serve --protocol tke` does (`tke_front::answer`) and counts what the module `pacing`
//! promises: requests in flight per crypto module, and how `429 Too Many Requests` is met.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::{Credentials, TkeBackend};
use crate::backend::BackendError;
use crate::backend::sim::server::tke_front;
use crate::model::{CryptoUnit, UnitType};

const INSTANCE: &str = "5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b";
/// How long the fake crypto module takes per request: long enough for requests that are
/// allowed to overlap to do so.
const ANSWER_MS: u64 = 10;

/// One answer the fake gives instead of the real one: 429, with this `Retry-After` if any.
type RateLimited = Option<&'static str>;

#[derive(Default)]
struct Fake {
    units: Vec<CryptoUnit>,
    /// Requests in flight now, and at the most, per crypto module (zone, host, CM).
    in_flight: Mutex<HashMap<String, usize>>,
    most_per_module: Mutex<HashMap<String, usize>>,
    in_flight_all: AtomicUsize,
    most_all: AtomicUsize,
    /// The next requests (GET or POST) answered 429; `always` answers every one so.
    rate_limited: Mutex<VecDeque<RateLimited>>,
    always: Option<RateLimited>,
    answered_429: AtomicUsize,
    requests: AtomicUsize,
}

impl Fake {
    fn rate_limit(&self) -> Option<Response> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let next = self
            .rate_limited
            .lock()
            .unwrap()
            .pop_front()
            .or(self.always)?;
        self.answered_429.fetch_add(1, Ordering::SeqCst);
        let mut headers = HeaderMap::new();
        if let Some(value) = next {
            headers.insert("retry-after", value.parse().unwrap());
        }
        Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                headers,
                Json(json!({"error": {"code": "rate_limited", "message": "too many requests"}})),
            )
                .into_response(),
        )
    }
}

/// The crypto module of a location, worked out here independently of `pacing::module_of`.
fn module(location: &str) -> String {
    location.rsplit_once('.').unwrap().0.to_string()
}

fn serial(hsm_id: &str) -> String {
    hsm_id[..8].to_ascii_uppercase()
}

async fn list(State(fake): State<Arc<Fake>>) -> Response {
    if let Some(refused) = fake.rate_limit() {
        return refused;
    }
    let hsms: Vec<_> = fake
        .units
        .iter()
        .map(|u| json!({"hsm_id": u.hsm_id, "location": u.location, "serial_number": serial(&u.hsm_id), "state": "READY", "version": 1}))
        .collect();
    // As the service may send them: no recovery or failover units, as null.
    Json(json!({"hsms": hsms, "source_hsms": null, "failover_hsms": null})).into_response()
}

async fn query(
    State(fake): State<Arc<Fake>>,
    UrlPath((_, hsm_id)): UrlPath<(String, String)>,
    Json(body): Json<tke_front::Body>,
) -> Response {
    if let Some(refused) = fake.rate_limit() {
        return refused;
    }
    let unit = fake.units.iter().find(|u| u.hsm_id == hsm_id).unwrap();
    let module = module(&unit.location);
    {
        let mut in_flight = fake.in_flight.lock().unwrap();
        let now = in_flight.entry(module.clone()).or_default();
        *now += 1;
        let mut most = fake.most_per_module.lock().unwrap();
        let most = most.entry(module.clone()).or_default();
        *most = (*most).max(*now);
    }
    let all = fake.in_flight_all.fetch_add(1, Ordering::SeqCst) + 1;
    fake.most_all.fetch_max(all, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(ANSWER_MS)).await;
    let response = tke_front::answer(unit, &body.request);
    fake.in_flight_all.fetch_sub(1, Ordering::SeqCst);
    *fake.in_flight.lock().unwrap().get_mut(&module).unwrap() -= 1;
    Json(json!({ "response": response })).into_response()
}

/// Six units: four domains of one crypto module, two of another, three administrators each.
fn units() -> Vec<CryptoUnit> {
    let locations = [
        "[us-south].[AZ1-CS1].[01].[01]",
        "[us-south].[AZ1-CS1].[01].[02]",
        "[us-south].[AZ1-CS1].[01].[03]",
        "[us-south].[AZ1-CS1].[01].[04]",
        "[us-south].[AZ2-CS2].[02].[01]",
        "[us-south].[AZ2-CS2].[02].[02]",
    ];
    let administrators = json!([
        {"name": "alice", "ski": "3f0a".repeat(16)},
        {"name": "bob", "ski": "7c21".repeat(16)},
        {"name": "carol", "ski": "9e5d".repeat(16)},
    ]);
    locations
        .iter()
        .enumerate()
        .map(|(i, location)| {
            serde_json::from_value(json!({
                "hsm_id": format!("0a1b2c3{i}-0000-4000-8000-00000000000{i}"),
                "type": "operational",
                "location": location,
                "mode": "admin",
                "signature_threshold": 2,
                "revocation_threshold": 2,
                "administrators": administrators,
                "new_register": {"status": "Empty"},
                "current_register": {"status": "Valid", "verification_pattern": "c2ad0a997751e04066912fa490a9976d6135d221c0df197dfb8c8a7a00000000"},
            }))
            .unwrap()
        })
        .collect()
}

/// The fake on a loopback port, and a TKE backend pointed at it.
async fn serve(fake: Fake) -> (Arc<Fake>, TkeBackend) {
    let fake = Arc::new(Fake {
        units: units(),
        ..fake
    });
    let router = Router::new()
        .route("/v1/tke/{instance}/hsms", get(list))
        .route("/v1/tke/{instance}/hsms/{hsm_id}", post(query))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut backend = TkeBackend::new("tke:us-south", &url, Credentials::None, 16).unwrap();
    backend.trust_test_root().unwrap();
    (fake, backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_one_crypto_module_go_one_at_a_time_and_modules_in_parallel() {
    let (fake, backend) = serve(Fake::default()).await;
    let fleet = backend.refresh(&[INSTANCE.to_string()]).await.unwrap();
    let read = &fleet.instances[0].crypto_units;
    assert_eq!(read.len(), 6, "null recovery and failover lists are empty");
    assert!(read.iter().all(|u| u.unit_type == UnitType::Operational));
    assert!(read.iter().all(|u| u.administrators.len() == 3));
    // Per crypto module, once: its OA certificates 0 and 1 and the "not found" after them;
    // per unit: attributes, the administrator list, three names, the domain info.
    assert_eq!(fake.requests.load(Ordering::SeqCst), 1 + 2 * 3 + 6 * 6);
    let most = fake.most_per_module.lock().unwrap().clone();
    println!(
        "most requests in flight: {most:?} per module, {} in all",
        fake.most_all.load(Ordering::SeqCst)
    );
    assert_eq!(most.len(), 2);
    assert!(
        most.values().all(|n| *n == 1),
        "a crypto module saw overlapping requests: {most:?}"
    );
    assert_eq!(
        fake.most_all.load(Ordering::SeqCst),
        2,
        "the two crypto modules are read in parallel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_read_waits_as_the_service_says_and_then_succeeds() {
    let (fake, backend) = serve(Fake {
        rate_limited: Mutex::new(VecDeque::from([
            Some("0"),
            // An HTTP date in the past: no wait.
            Some("Tue, 01 Dec 2020 03:00:00 GMT"),
            // No Retry-After: mkplan's own back-off.
            None,
        ])),
        ..Fake::default()
    })
    .await;
    let fleet = backend.refresh(&[INSTANCE.to_string()]).await.unwrap();
    assert_eq!(fleet.instances[0].crypto_units.len(), 6);
    assert_eq!(fake.answered_429.load(Ordering::SeqCst), 3);
    assert_eq!(fake.requests.load(Ordering::SeqCst), 3 + 1 + 2 * 3 + 6 * 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_still_rate_limited_after_the_last_attempt_fails_naming_the_request() {
    let (fake, backend) = serve(Fake {
        always: Some(Some("0")),
        ..Fake::default()
    })
    .await;
    let error = backend.refresh(&[INSTANCE.to_string()]).await.unwrap_err();
    let message = error.to_string();
    println!("{message}");
    assert!(matches!(error, BackendError::Unreachable(_)), "{error:?}");
    assert!(
        message.contains("GET http://127.0.0.1:")
            && message.contains(&format!("/v1/tke/{INSTANCE}/hsms"))
            && message.contains("429 Too Many Requests")
            && message.contains("gave up after 5 attempts")
            && message.contains("Nothing was changed"),
        "{message}"
    );
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        super::pacing::RATE_LIMITED_ATTEMPTS_MAX as usize
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_over_the_cap_fails_at_once() {
    let (fake, backend) = serve(Fake {
        always: Some(Some("3600")),
        ..Fake::default()
    })
    .await;
    let message = backend
        .refresh(&[INSTANCE.to_string()])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("asks to wait 3600 s, over mkplan's limit of 60 s"),
        "{message}"
    );
    assert_eq!(fake.requests.load(Ordering::SeqCst), 1);
}
