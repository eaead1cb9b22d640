use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::*;
use crate::keypart::{self, Secret32};
use crate::model::{NewRegister, VerificationPattern};
use tokio::sync::Notify;

const INSTANCE: &str = "5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b";
const UNIT: &str = "0a1b2c3d-0000-4000-8000-000000000001";

/// examples/fleets/three-units.yaml.
fn example() -> Fleet {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/fleets/three-units.yaml"
    );
    Fleet::parse(path, &std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A server on a copy of examples/fleets/three-units.yaml; its URL and the fleet's path.
async fn start(faults: &str, tokens: Tokens) -> (String, PathBuf, tempfile::TempDir) {
    start_on(&example(), faults, tokens).await
}

/// A server on a copy of `fleet`; its URL and the fleet's path.
async fn start_on(
    fleet: &Fleet,
    faults: &str,
    tokens: Tokens,
) -> (String, PathBuf, tempfile::TempDir) {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("fleet.yaml");
    std::fs::write(&path, fleet.to_yaml()).unwrap();
    let options = ServeOptions {
        protocol: Protocol::Json,
        fleet: path.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        faults: Faults::parse(faults).unwrap(),
        tokens,
        limits: Limits::default(),
    };
    let (shared, _) = open(options, Arc::new(SystemClock), Crash::Abort).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(group_commits(shared.clone()));
    let limits = shared.limits;
    tokio::spawn(connections::serve(
        listener,
        router(shared),
        limits,
        std::future::pending(),
    ));
    (url, path, folder)
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn load(client: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    let parts = [hex::encode([1u8; 32]), hex::encode([2u8; 32])];
    client
        .post(format!("{url}/v1/tke/{INSTANCE}/hsms/{UNIT}/load_new_mk"))
        .json(&json!({ "key_parts": parts }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_command_on_a_busy_unit_is_refused_with_409() {
    let (url, path, _folder) = start("latency_ms=300", Tokens::none()).await;
    let client = client();
    let (first, second) = tokio::join!(load(&client, &url).send(), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        load(&client, &url).send().await
    });
    assert_eq!(first.unwrap().status(), 200);
    let second = second.unwrap();
    assert_eq!(second.status(), 409);
    assert!(second.text().await.unwrap().contains("crypto_unit_busy"));
    // The first was durable before its response.
    let fleet = on_disk(&path);
    assert!(matches!(
        fleet.instances[0].crypto_units[0].new_register,
        NewRegister::FullUncommitted(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_checked_and_expire() {
    let tokens = Tokens::new(
        vec![Zeroizing::new("good".into())],
        Some(Duration::from_millis(200)),
    );
    let (url, _path, _folder) = start("", tokens).await;
    let client = client();
    let list = format!("{url}/v1/tke/{INSTANCE}/hsms");
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(client.get(&list).send().await.unwrap()), 401);
    let wrong = client.get(&list).bearer_auth("bad").send().await.unwrap();
    assert_eq!(status(wrong), 401);
    let good = client.get(&list).bearer_auth("good").send().await.unwrap();
    assert_eq!(status(good), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expired = client.get(&list).bearer_auth("good").send().await.unwrap();
    assert_eq!(expired.status(), 401);
    assert!(expired.text().await.unwrap().contains("token_expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_count_commands_and_concurrent_commands_are_all_durable() {
    let (url, path, _folder) = start("fail_op=1,lose_response_op=2", Tokens::none()).await;
    let client = client();
    let failed = load(&client, &url).send().await.unwrap();
    assert_eq!(failed.status(), 503);
    let lost = load(&client, &url).send().await.unwrap();
    assert_eq!(
        lost.status(),
        503,
        "the response is lost, the load took effect"
    );
    let units = [
        "0a1b2c3d-0000-4000-8000-000000000002",
        "0a1b2c3d-0000-4000-8000-000000000003",
    ];
    let sent = futures_util::future::join_all(units.iter().map(|unit| {
        client
            .post(format!("{url}/v1/tke/{INSTANCE}/hsms/{unit}/load_new_mk"))
            .json(&json!({ "key_parts": [hex::encode([1u8; 32]), hex::encode([2u8; 32])] }))
            .send()
    }))
    .await;
    assert!(sent.into_iter().all(|r| r.unwrap().status() == 200));
    let fleet = on_disk(&path);
    assert!(
        fleet.instances[0]
            .crypto_units
            .iter()
            .all(|u| matches!(u.new_register, NewRegister::FullUncommitted(_))),
        "every load is on disk"
    );
    let unknown = client
        .get(format!(
            "{url}/v1/tke/00000000-0000-4000-8000-000000000000/hsms"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

/// The example fleet with every new register Full Committed with the key parts' VP, and a
/// rewrap that takes `keys × ms_per_key` ms.
fn staged(keys: u64, ms_per_key: u64) -> (Fleet, VerificationPattern) {
    let parts = [Secret32::from_bytes([1; 32]), Secret32::from_bytes([2; 32])];
    let new = keypart::combine(&parts).unwrap().verification_pattern();
    let mut fleet = example();
    let instance = &mut fleet.instances[0];
    instance.key_storage.keys = keys;
    instance.key_storage.rewrap_ms_per_key = ms_per_key;
    for unit in &mut instance.crypto_units {
        unit.new_register = NewRegister::FullCommitted(new.clone());
    }
    (fleet, new)
}

/// What a crash would leave: the fleet file with the operation log replayed.
fn on_disk(path: &Path) -> Fleet {
    super::oplog::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrap_answers_once_completed_and_shows_in_progress_meanwhile() {
    let (fleet, new) = staged(3, 200);
    let (url, path, _folder) = start_on(&fleet, "", Tokens::none()).await;
    let client = client();
    let rewrap = format!("{url}/v1/tke/{INSTANCE}/rewrap");
    let started = Instant::now();
    let first = tokio::spawn(client.post(&rewrap).send());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let status: Value = client
        .get(&rewrap)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "in_progress");
    let again = client.post(&rewrap).send().await.unwrap();
    assert_eq!(again.status(), 409, "a second rewrap");
    let set_immediate = client
        .post(format!("{url}/v1/tke/{INSTANCE}/hsms/{UNIT}/set_immediate"))
        .json(&json!({ "verification_pattern": new.as_str(), "signers": ["alice", "bob"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(set_immediate.status(), 409, "a command during the rewrap");
    assert!(set_immediate.text().await.unwrap().contains("in progress"));

    let answered = first.await.unwrap().unwrap();
    assert_eq!(answered.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(600));
    let body: Value = answered.json().await.unwrap();
    assert_eq!(body["status"], "rewrapped");
    let storage = on_disk(&path).instances[0].key_storage.clone();
    assert_eq!(
        storage.verification_pattern, new,
        "on disk before the answer"
    );
    assert_eq!(storage.rewrap_in_progress, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrap_whose_client_went_away_completes_and_is_written() {
    let (fleet, new) = staged(3, 200);
    let (url, path, _folder) = start_on(&fleet, "", Tokens::none()).await;
    let client = client();
    let rewrap = format!("{url}/v1/tke/{INSTANCE}/rewrap");
    let gone = client
        .post(&rewrap)
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(gone.is_err(), "the client stopped waiting");
    // On a busy machine the first command may still be finishing (its group commit): the
    // unit is then busy, which is not yet the answer asked about. Asked again until it is.
    let deadline = Instant::now() + Duration::from_secs(10);
    let said = loop {
        let again = client.post(&rewrap).send().await.unwrap();
        assert_eq!(again.status(), 409, "still running without its client");
        let said = again.text().await.unwrap();
        if !said.contains("crypto_unit_busy") || Instant::now() > deadline {
            break said;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(said.contains("rewrap_in_progress"), "{said}");
    assert!(
        on_disk(&path).instances[0]
            .key_storage
            .rewrap_in_progress
            .is_some()
    );
    // Nobody asks: the server completes it and writes it by itself. Polled with a bound,
    // so a busy machine that writes a little late does not fail the test.
    let deadline = Instant::now() + Duration::from_secs(10);
    let storage = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let storage = on_disk(&path).instances[0].key_storage.clone();
        if storage.rewrap_in_progress.is_none() || Instant::now() > deadline {
            break storage;
        }
    };
    assert_eq!(storage.verification_pattern, new);
    assert_eq!(storage.rewrap_in_progress, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_rewrap_response_comes_at_once_and_the_rewrap_runs_on() {
    let (fleet, new) = staged(3, 200);
    let (url, path, _folder) = start_on(&fleet, "lose_response_op=1", Tokens::none()).await;
    let client = client();
    let rewrap = format!("{url}/v1/tke/{INSTANCE}/rewrap");
    let started = Instant::now();
    let lost = client.post(&rewrap).send().await.unwrap();
    assert_eq!(lost.status(), 503);
    assert!(started.elapsed() < Duration::from_millis(600));
    let status: Value = client
        .get(&rewrap)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "in_progress");
    tokio::time::sleep(Duration::from_millis(800).saturating_sub(started.elapsed())).await;
    let storage = on_disk(&path).instances[0].key_storage.clone();
    assert_eq!(
        storage.verification_pattern, new,
        "completed and written on time"
    );
    assert_eq!(
        storage.rewrapped_from,
        Some(
            example().instances[0]
                .key_storage
                .verification_pattern
                .clone()
        )
    );
}

/// The simulator's ground truth through a crash: an incident (a set immediate before the
/// rewrap) and a load, acknowledged, then the server killed at once. They are in the
/// operation log, not the fleet file; a server started again replays them exactly once,
/// compacts them into the fleet file and removes the log; a clean stop leaves no log either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_and_incidents_survive_a_kill_and_replay_once() {
    let (fleet, new) = staged(3000, 0);
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("fleet.yaml");
    std::fs::write(&path, fleet.to_yaml()).unwrap();
    let original = std::fs::read(&path).unwrap();
    let start = || {
        InProcess::start(
            &path,
            "127.0.0.1:0".parse().unwrap(),
            &Faults::default(),
            Arc::new(Notify::new()),
            Arc::new(SystemClock),
        )
        .unwrap()
    };
    let server = start();
    let url = format!("http://{}", server.address);
    let client = client();
    let harmful = client
        .post(format!("{url}/v1/tke/{INSTANCE}/hsms/{UNIT}/set_immediate"))
        .json(&json!({ "verification_pattern": new.as_str(), "signers": ["alice", "bob"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(harmful.status(), 200, "{}", harmful.text().await.unwrap());
    let acknowledged = on_disk(&path);
    assert_eq!(
        acknowledged.incidents.len(),
        1,
        "the simulator recorded the loss"
    );
    server.kill();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        original,
        "only the log was written"
    );
    assert!(oplog::log_path(&path).exists());

    let server = start();
    assert!(!oplog::log_path(&path).exists(), "replayed and compacted");
    let compacted = Fleet::parse("f", &std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        compacted, acknowledged,
        "exactly the acknowledged state, incident once"
    );
    server.kill();
    let again = start();
    assert_eq!(on_disk(&path).incidents.len(), 1, "never applied twice");
    again.kill();
}
