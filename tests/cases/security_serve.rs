//! `mkplan sim serve` is safe to leave running (issue: security, point 7). Each test plants
//! the attack against a real server process and shows it bounded or refused: connections that
//! stall are closed after the header or body timeout, no more than `--connections-max` are
//! served at once while a real client still gets its answer, and an address beyond this
//! machine without a token is refused with nothing served. (That tokens and API keys are
//! compared in constant time is a unit test in src/backend/sim/server/tokens.rs: correctness
//! only, as timing cannot be shown on a shared machine.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::cases::apply::three_units;
use crate::support::*;

const TIMEOUT_MS: u64 = 300;
const CONNECTIONS_MAX: usize = 4;
/// Longest a stalled client is waited for before the test calls it never closed: far beyond
/// the rounds of TIMEOUT_MS the server needs, well under what a hung server would take.
const CLOSE_WAIT_MS_MAX: u64 = 15_000;

/// What a slow client sends before it stops: nothing, half a request line, or headers
/// without the blank line that ends them.
const STALLED_AFTER: [&[u8]; 3] = [
    b"",
    b"GET /v1/tke/",
    b"GET /v1/tke/x/hsms HTTP/1.1\r\nHost: simulator\r\nX-Slow: ",
];

/// Connects to `address`, sends `bytes` and stops; a thread waits for the server to close
/// the connection and returns when it did (since `opened`) and what it answered, or `None`
/// when it never closed.
fn stall(
    address: &str,
    bytes: &'static [u8],
    opened: Instant,
) -> JoinHandle<Option<(Duration, String)>> {
    let mut stream = TcpStream::connect(address).expect("connect to the server");
    stream.write_all(bytes).expect("send the first bytes");
    thread::spawn(move || {
        stream
            .set_read_timeout(Some(Duration::from_millis(CLOSE_WAIT_MS_MAX)))
            .unwrap();
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(_) => return None,
        }
        Some((
            opened.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        ))
    })
}

/// Three times more stalled connections than the server serves at once: each is closed
/// after the header timeout, never more than `--connections-max` at a time, and a real
/// `mkplan plan` that arrives behind them is answered once they are gone.
#[test]
fn stalled_connections_are_closed_and_cannot_starve_a_real_client() {
    let ws = rotate_to_b(&three_units(true));
    let server = Server::start(
        &ws.path(FLEET),
        "",
        &[
            "--header-timeout-ms",
            &TIMEOUT_MS.to_string(),
            "--connections-max",
            &CONNECTIONS_MAX.to_string(),
        ],
    );
    let address = server.url.trim_start_matches("http://");
    let opened = Instant::now();
    let stalled: Vec<_> = (0..3 * CONNECTIONS_MAX)
        .map(|n| stall(address, STALLED_AFTER[n % STALLED_AFTER.len()], opened))
        .collect();

    let plan = ws.mkplan_with_env(
        &["plan", DESIRED, "--json", "--detailed-exitcode"],
        &[("MKPLAN_BACKEND", &server.url)],
    );
    let answered_after = opened.elapsed();
    plan.planned(2);

    let mut closed: Vec<Duration> = stalled
        .into_iter()
        .map(|watcher| {
            let (after, answer) = watcher
                .join()
                .unwrap()
                .expect("the server never closed a stalled connection");
            assert!(answer.is_empty(), "a stalled client got {answer:?}");
            after
        })
        .collect();
    closed.sort();
    let round = Duration::from_millis(TIMEOUT_MS);
    // Each slot holds a stalled connection for a whole timeout: within the first two rounds,
    // at most one round's worth can have been closed; without a cap all would be.
    let early = closed.iter().filter(|after| **after < 2 * round).count();
    assert!(
        early <= CONNECTIONS_MAX,
        "{early} stalled connections were closed within two timeouts: more than --connections-max {CONNECTIONS_MAX} were served at once ({closed:?})"
    );
    let bound = Duration::from_millis(CLOSE_WAIT_MS_MAX);
    assert!(
        answered_after < bound,
        "the plan was answered after {answered_after:?}"
    );
}

/// A client that sends its headers, or its body, a byte at a time is cut off after the
/// timeout (the body with 408), however long it would go on.
#[test]
fn a_request_that_trickles_in_is_cut_off() {
    let ws = rotate_to_b(&three_units(true));
    let timeout = TIMEOUT_MS.to_string();
    let server = Server::start(
        &ws.path(FLEET),
        "",
        &[
            "--header-timeout-ms",
            &timeout,
            "--body-timeout-ms",
            &timeout,
        ],
    );
    let address = server.url.trim_start_matches("http://").to_string();
    let head = format!(
        "POST /v1/tke/{INSTANCE}/rewrap HTTP/1.1\r\nHost: simulator\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    let trickle = |first: String| {
        let address = address.clone();
        thread::spawn(move || {
            let started = Instant::now();
            let mut stream = TcpStream::connect(address).unwrap();
            stream.write_all(first.as_bytes()).unwrap();
            // A byte every 20 ms, until the server closes the connection.
            while started.elapsed() < Duration::from_millis(CLOSE_WAIT_MS_MAX) {
                if stream.write_all(b"x").is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            stream
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            (
                started.elapsed(),
                String::from_utf8_lossy(&answer).into_owned(),
            )
        })
    };
    let headers = trickle("GET /v1/tke/x/hsms HTTP/1.1\r\nX-Slow: ".into());
    let body = trickle(head);
    let bound = Duration::from_millis(CLOSE_WAIT_MS_MAX / 2);
    let (after, answer) = headers.join().unwrap();
    assert!(after < bound, "slow headers went on for {after:?}");
    assert!(answer.is_empty(), "slow headers were answered {answer:?}");
    let (after, answer) = body.join().unwrap();
    assert!(after < bound, "a slow body went on for {after:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
}

/// `mkplan sim serve --listen LISTEN` without a token: its exit code and both streams, or a
/// panic when it is still running after a few seconds (it served).
fn serve_refused(ws: &Workspace, listen: &str) -> Run {
    let output = assert_cmd::Command::cargo_bin("mkplan")
        .unwrap()
        .current_dir(ws.dir.path())
        .env_remove("MKPLAN_SIM_TOKENS")
        .env_remove("MKPLAN_SIM_API_KEYS")
        .args(["sim", "serve", "--fleet", FLEET, "--listen", listen])
        .timeout(Duration::from_secs(10))
        .output()
        .expect("run mkplan sim serve");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// An address other than loopback without a token is refused, with why and the fix; the
/// server exits non-zero, listens nowhere and leaves the fleet's folder as it was.
#[test]
fn an_address_beyond_this_machine_without_a_token_is_refused() {
    let ws = rotate_to_b(&three_units(true));
    let before = ws.listing();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for listen in [
        "0.0.0.0:0".to_string(),
        format!("0.0.0.0:{port}"),
        format!("[::]:{port}"),
    ] {
        let run = serve_refused(&ws, &listen);
        assert_eq!(run.code, 1, "{listen}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{listen}: it printed {}", run.stdout);
        for words in ["not a loopback address", "--token", "127.0.0.1", &listen] {
            assert!(run.stderr.contains(words), "{listen}: {}", run.stderr);
        }
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "{listen}: something listens on port {port}"
        );
        assert_eq!(ws.listing(), before, "{listen}: files were created");
    }
}

/// With a token the same address is served, with a warning that plain HTTP crosses the
/// network in clear text, and a request without the token is refused.
#[test]
fn an_address_beyond_this_machine_with_a_token_is_served_with_a_warning() {
    let ws = rotate_to_b(&three_units(true));
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("mkplan"))
        .current_dir(ws.dir.path())
        .args(["sim", "serve", "--fleet", FLEET, "--listen", "0.0.0.0:0"])
        .env("MKPLAN_SIM_TOKENS", "remote-token")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mkplan sim serve");
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let port = url.trim().rsplit(':').next().unwrap().to_string();
    let mut stream = TcpStream::connect(format!("127.0.0.1:{port}")).expect("it listens");
    stream
        .write_all(format!("GET /v1/tke/{INSTANCE}/hsms HTTP/1.1\r\nHost: simulator\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let _ = child.kill();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = child.wait();
    assert!(stderr.contains("warning"), "{stderr}");
    assert!(stderr.contains("clear text"), "{stderr}");
    assert!(
        !stderr.contains("remote-token"),
        "the token leaked: {stderr}"
    );
}
