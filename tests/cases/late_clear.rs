//! A clear of a new register that lands late: a slow service loses the response to a
//! `clear_new_mk`, mkplan reads the unit, finds the old key still there and sends the clear
//! again, stages the new key, rewraps and sets immediate; the first clear then runs at the
//! service. Once it cleared whatever the new register held, the new key after the rewrap: the
//! key storage was lost (adversary, finding 1). mkplan's clear now names the key it is meant
//! for, and the service clears only that key (docs/http-api.md).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::cases::apply::{assert_converged, assert_no_incidents, sim};
use crate::cases::network::apply_via;
use crate::support::*;

fn said(run: &Run) -> String {
    format!("{}\n{}", run.stdout, run.stderr)
}

/// Regression (adversary, finding 1, h1c): every new register holds a stale key C; the
/// responses of the three clears are lost and each clear runs 600 ms later, after mkplan sent
/// it again and loaded B. The late clears name C, the new registers hold B: they clear
/// nothing. The rotation converges in one run with zero incidents.
#[test]
fn late_clears_landing_after_the_new_key_is_loaded_clear_nothing() {
    let ws = rotate_to_b(
        &Fleet::instance()
            .key_storage(A)
            .reports_rotation_status(true)
            .units(3, uncommitted(C), valid(A)),
    );
    let server = Server::start(
        &ws.path(FLEET),
        "latency_ms=100,lose_response_op=1,lose_response_op=3,lose_response_op=5,lost_response_lands_after_ms=600",
        &[],
    );
    let started = Instant::now();
    let first = apply_via(&ws, &server.url, None, &["--parallelism", "1"]);
    assert!(
        said(&first).contains("sending it again"),
        "the lost clears were sent again: {}",
        said(&first)
    );
    // Every queued clear has landed (600 ms after its request, plus the latency).
    let landed = Duration::from_millis(3_000);
    if let Some(left) = landed.checked_sub(started.elapsed()) {
        std::thread::sleep(left);
    }
    assert_no_incidents(&ws, "after the late clears landed");
    // A late clear that cleared B before the rewrap would have stopped the run (the commit
    // or the check before the rewrap); after it, it loses the key storage.
    assert_eq!(first.code, 0, "{}", said(&first));
    assert_converged(&ws, "after the late clears");
    let rerun = apply_via(&ws, &server.url, None, &[]);
    assert_eq!(rerun.code, 0, "{}", said(&rerun));
    assert_converged(&ws, "after the rerun");
}

/// One plain HTTP/1.1 POST of `body` to `url` + `path`: the status and the body.
fn post(url: &str, path: &str, body: &str) -> (u16, String) {
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the server");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, answer)
}

fn new_register(ws: &Workspace, unit: usize) -> String {
    format!(
        "{:#}",
        sim(ws).instances[0].crypto_units[unit - 1].new_register
    )
}

/// The API itself: a clear that names a key clears only that key (409 new_register_changed
/// and nothing changed when the register holds another, a no-op success on an empty one); a
/// clear without a key clears whatever is there, as before.
#[test]
fn a_clear_naming_a_key_clears_only_that_key() {
    let ws = rotate_to_b(
        &Fleet::instance()
            .key_storage(A)
            .reports_rotation_status(true)
            .units(2, uncommitted(C), valid(A)),
    );
    let server = Server::start(&ws.path(FLEET), "", &[]);
    let clear = |unit: usize| format!("/v1/tke/{INSTANCE}/hsms/{}/clear_new_mk", u(unit));
    let naming = |vp: &str| format!("{{\"verification_pattern\":\"{vp}\"}}");

    let (status, answer) = post(&server.url, &clear(1), &naming(B));
    assert_eq!(status, 409, "{answer}");
    for words in ["new_register_changed", B, C, &u(1)] {
        assert!(answer.contains(words), "{words}: {answer}");
    }
    assert!(new_register(&ws, 1).contains(C), "nothing was cleared");

    let (status, answer) = post(&server.url, &clear(1), &naming(C));
    assert_eq!(status, 200, "{answer}");
    assert!(new_register(&ws, 1).starts_with("Empty"));
    let (status, answer) = post(&server.url, &clear(1), &naming(C));
    assert_eq!(status, 200, "a repeated clear is a no-op: {answer}");

    let (status, answer) = post(&server.url, &clear(2), "{}");
    assert_eq!(status, 200, "{answer}");
    assert!(new_register(&ws, 2).starts_with("Empty"));
    assert_no_incidents(&ws, "clears");
}
