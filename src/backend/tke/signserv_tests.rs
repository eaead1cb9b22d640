//! The signing service client against the test service of tests/support/signserv.rs (the
//! same file the integration tests use), in this process.

use super::*;

#[path = "../../../tests/support/signserv.rs"]
mod service;

use service::{Knobs, SignServ};

const ALICE: &str = "alice-p521";
const TOKEN: &str = "alice-token-7f3c9e";
/// The COMMIT xcpAdminBlk of shared/tke-wire.md §7.
const COMMIT_BLOCK: &str = "305604040000000D040800000003A1B2C3D404103933414142454137000000000000000104100000000000000000000000000000002A04205C1B924542FECD099A9568826BCE5018476B3C2A29944C9C7FF6E47F00000000";

fn block() -> Vec<u8> {
    hex::decode(COMMIT_BLOCK).unwrap()
}

fn token(text: &str) -> Option<Zeroizing<String>> {
    Some(Zeroizing::new(text.to_string()))
}

fn refused<T>(result: Result<T, SignError>) -> String {
    match result {
        Err(SignError::Refused(message)) => message,
        Err(other) => panic!("expected a refusal, got {other:?}"),
        Ok(_) => panic!("expected a refusal"),
    }
}

fn unavailable<T>(result: Result<T, SignError>) -> String {
    match result {
        Err(SignError::Unavailable(message)) => message,
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("expected Unavailable"),
    }
}

#[tokio::test]
async fn signs_and_the_signature_verifies_with_the_services_key() {
    let service = SignServ::start(Knobs::default());
    let alice = signer(&service.url, "alice", ALICE, None).await.unwrap();
    assert_eq!(alice.kind(), SignatureKind::P521);
    assert_eq!(alice.administrator(), "alice");
    assert_eq!(alice.source(), "signing service key alice-p521");
    assert_eq!(alice.ski(), service::ski(ALICE));
    let signature = alice.sign(&block()).await.unwrap();
    // Strict DER, and a good ECDSA/SHA-512 signature by the key the unit knows.
    let parsed = Signature::from_der(&signature).unwrap();
    assert_eq!(parsed.to_der().as_bytes(), &signature[..]);
    let key = VerifyingKey::from_sec1_bytes(&service::public_key(ALICE)).unwrap();
    key.verify_prehash(&Sha512::digest(block()), &parsed)
        .unwrap();
    let seen = service.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/keys/alice-p521")
    );
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("POST", "/sign/alice-p521")
    );
    assert!(seen.iter().all(|s| s.authorization.is_none()));
}

#[tokio::test]
async fn the_base_url_keeps_its_path_and_a_trailing_slash_is_not_doubled() {
    let service = SignServ::start(Knobs::default());
    let url = format!("{}/", service.url);
    signer(&url, "alice", ALICE, None).await.unwrap();
    assert_eq!(service.seen()[0].path, "/keys/alice-p521");
    let under = Service {
        client: client().unwrap(),
        base: Url::parse("https://signserv.example/tke/").unwrap(),
        key_name: ALICE.into(),
        token: None,
        timeout: Duration::from_secs(1),
        context: String::new(),
    };
    assert_eq!(
        under.url("sign").as_str(),
        "https://signserv.example/tke/sign/alice-p521"
    );
}

#[tokio::test]
async fn the_token_is_sent_as_it_is_only_when_given_and_never_shown() {
    let service = SignServ::start(Knobs {
        token: Some(TOKEN.into()),
        ..Knobs::default()
    });
    let alice = signer(&service.url, "alice", ALICE, token(TOKEN))
        .await
        .unwrap();
    alice.sign(&block()).await.unwrap();
    let seen = service.seen();
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some(TOKEN)),
        "{seen:?}"
    );

    let message = refused(signer(&service.url, "alice", ALICE, None).await);
    assert_eq!(service.seen().last().unwrap().authorization, None);
    assert!(message.contains("none was given"), "{message}");
    assert!(message.contains("401"), "{message}");

    let wrong = "wrong-token-0a1b2c";
    let message = refused(signer(&service.url, "alice", ALICE, token(wrong)).await);
    assert!(message.contains("refused the key token"), "{message}");
    assert!(message.contains("administrator alice"), "{message}");
    assert!(
        message.contains(&format!("GET {}/keys/alice-p521", service.url)),
        "{message}"
    );
    assert!(
        !message.contains(wrong) && !message.contains(TOKEN),
        "{message}"
    );
}

#[test]
fn a_token_the_service_quotes_back_is_hidden() {
    // The test service's message does not quote it; a hostile one would: check the scrub.
    let alice = Service {
        client: client().unwrap(),
        base: Url::parse("http://127.0.0.1:1").unwrap(),
        key_name: ALICE.into(),
        token: token(TOKEN),
        timeout: Duration::from_secs(5),
        context: "administrator alice".into(),
    };
    let body = format!("{{\"error\":\"token {TOKEN} is not valid\"}}");
    let message = alice
        .status_error("GET x", StatusCode::BAD_REQUEST, body.as_bytes())
        .to_string();
    assert!(!message.contains(TOKEN), "{message}");
    assert!(message.contains("[the key token]"), "{message}");
}

#[tokio::test]
async fn a_signature_that_does_not_verify_is_refused_before_it_leaves() {
    let service = SignServ::start(Knobs::default());
    let alice = signer(&service.url, "alice", ALICE, None).await.unwrap();
    service.set(Knobs {
        wrong_signature: true,
        ..Knobs::default()
    });
    let message = refused(alice.sign(&block()).await);
    assert!(message.contains("does not verify"), "{message}");
    assert!(
        message.contains(&format!("POST {}/sign/alice-p521", service.url)),
        "{message}"
    );
    assert!(message.contains("administrator alice"), "{message}");
    assert!(
        message.contains("Nothing was sent to a crypto unit"),
        "{message}"
    );
}

#[tokio::test]
async fn a_public_key_that_is_not_on_p521_is_refused() {
    let service = SignServ::start(Knobs::default());
    let mut point = service::public_key(ALICE);
    point[132] ^= 1;
    let off_curve = [
        vec![0x30, 0x81, 0x88, 0x02, 0x42],
        point[1..67].to_vec(),
        vec![0x02, 0x42],
        point[67..].to_vec(),
    ]
    .concat();
    service.set(Knobs {
        public_key_base64: Some(STANDARD.encode(&off_curve)),
        ..Knobs::default()
    });
    let message = refused(signer(&service.url, "alice", ALICE, None).await);
    assert!(message.contains("not a point on P-521"), "{message}");
    for garbage in ["not base64!", "MAA=", "MIIBCgKCAQEA"] {
        service.set(Knobs {
            public_key_base64: Some(garbage.into()),
            ..Knobs::default()
        });
        let message = refused(signer(&service.url, "alice", ALICE, None).await);
        assert!(message.contains("must be P-521"), "{garbage}: {message}");
    }
}

#[tokio::test]
async fn key_names_outside_rfc3986_unreserved_are_refused_before_any_request() {
    let service = SignServ::start(Knobs::default());
    for bad in [
        "", "../keys", "a/b", "a b", "a%2Fb", "a?b", "a#b", ".", "..", "ключ",
    ] {
        let message = refused(signer(&service.url, "alice", bad, None).await);
        assert!(message.contains("key name"), "{bad}: {message}");
    }
    let long = "a".repeat(KEY_NAME_LEN_MAX + 1);
    refused(signer(&service.url, "alice", &long, None).await);
    assert!(service.seen().is_empty());
    assert!(check_key_name("Alice_P521.v2~x-y").is_ok());
}

#[tokio::test]
async fn plain_http_to_another_machine_and_user_info_are_refused() {
    let message =
        refused(signer("http://signserv.example:8080", "alice", ALICE, token(TOKEN)).await);
    assert!(message.contains("clear text"), "{message}");
    assert!(
        message.contains("https://signserv.example:8080"),
        "{message}"
    );
    assert!(message.contains("Nothing was sent"), "{message}");
    // Without a token too: the commands to sign go there, and a forged public key would come
    // back.
    let message = refused(signer("http://10.1.2.3:8080", "alice", ALICE, None).await);
    assert!(message.contains("the commands to sign"), "{message}");
    let message = refused(
        signer(
            "https://me:secret-pw@signserv.example",
            "alice",
            ALICE,
            None,
        )
        .await,
    );
    assert!(!message.contains("secret-pw"), "{message}");
    assert!(message.contains("no user name or password"), "{message}");
    assert!(
        message.contains("key token") && !message.contains("MKPLAN_TOKEN"),
        "{message}"
    );
    refused(signer("ftp://signserv.example", "alice", ALICE, None).await);
    refused(signer("https://signserv.example/?key=1", "alice", ALICE, None).await);
}

#[tokio::test]
async fn status_answers_say_what_to_fix_or_that_the_service_is_down() {
    let service = SignServ::start(Knobs::default());
    let message = refused(signer(&service.url, "alice", "dave-p521", None).await);
    assert!(message.contains("404"), "{message}");
    assert!(message.contains("no key named dave-p521"), "{message}");

    service.set(Knobs {
        status: Some(500),
        ..Knobs::default()
    });
    let message = unavailable(signer(&service.url, "alice", ALICE, None).await);
    assert!(message.contains("500"), "{message}");
    assert!(
        message.contains(&format!("GET {}/keys/alice-p521", service.url)),
        "{message}"
    );
    assert!(
        message.contains("Nothing was sent to a crypto unit"),
        "{message}"
    );

    service.set(Knobs::default());
    let alice = signer(&service.url, "alice", ALICE, None).await.unwrap();
    service.set(Knobs {
        sign_status: Some(503),
        ..Knobs::default()
    });
    let message = unavailable(alice.sign(&block()).await);
    assert!(
        message.contains("POST") && message.contains("503"),
        "{message}"
    );
    service.set(Knobs {
        sign_status: Some(400),
        ..Knobs::default()
    });
    let message = refused(alice.sign(&block()).await);
    assert!(message.contains("refused the request"), "{message}");
}

#[tokio::test]
async fn a_slow_or_absent_service_is_unavailable() {
    let service = SignServ::start(Knobs {
        delay_ms: 2_000,
        ..Knobs::default()
    });
    let slow = open(
        &service.url,
        "alice",
        ALICE,
        None,
        Duration::from_millis(200),
    )
    .await;
    let message = unavailable(slow);
    assert!(message.contains("timed out after 200 ms"), "{message}");

    // A port nobody listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let message =
        unavailable(signer(&format!("http://127.0.0.1:{port}"), "alice", ALICE, None).await);
    assert!(message.contains("no answer"), "{message}");
    assert!(message.contains(URL_VARIABLE), "{message}");
}

#[tokio::test]
async fn an_answer_over_the_size_limit_is_refused() {
    let service = SignServ::start(Knobs {
        public_key_base64: Some("A".repeat(RESPONSE_BYTES_MAX)),
        ..Knobs::default()
    });
    let message = refused(signer(&service.url, "alice", ALICE, None).await);
    assert!(
        message.contains(&format!("more than {RESPONSE_BYTES_MAX} bytes")),
        "{message}"
    );
}

#[test]
fn der_integers_are_read_leniently_and_padded() {
    let point = service::public_key(ALICE);
    let der = service::public_key_der(ALICE);
    assert_eq!(uncompressed_point(&der).unwrap(), point);
    // Non-minimal long-form lengths are accepted; negative numbers, other tags, a third
    // element and coordinates over 66 bytes are not.
    let padded = [
        vec![0x30, 0x82, 0x00, 0x88, 0x02, 0x42],
        point[1..67].to_vec(),
        vec![0x02, 0x42],
        point[67..].to_vec(),
    ]
    .concat();
    assert_eq!(uncompressed_point(&padded).unwrap(), point);
    assert!(two_integers(&[0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01]).is_none());
    assert!(two_integers(&[0x30, 0x06, 0x04, 0x01, 0x01, 0x02, 0x01, 0x01]).is_none());
    assert!(
        two_integers(&[
            0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01
        ])
        .is_none()
    );
    let wide = [
        vec![0x30, 0x4A, 0x02, 0x43, 0x01],
        vec![0u8; 66],
        vec![0x02, 0x01, 0x01],
    ]
    .concat();
    assert!(two_integers(&wide).is_none());
    assert!(p521_signature(&[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01]).is_none());
}
