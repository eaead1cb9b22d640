//! Messages that name the real fix, over the network (issue 13, point 7): on `tke:` a
//! rejected token names `IBMCLOUD_IAM_TOKEN` / `IBMCLOUD_API_KEY`, never `MKPLAN_TOKEN`; an
//! HTTP error names the request it came from (method and URL, never a token or a body); a
//! 404 from a server that is not mkplan's says so, told apart by the `Server: mkplan-sim/…`
//! header that `mkplan sim serve` puts on every answer. Nothing is touched.

use std::io::{Read, Write};

use crate::cases::apply::{PASSWORDS, assert_converged, assert_no_incidents, three_units};
use crate::support::*;

const GOOD_TOKEN: &str = "good-token-5e1f";
const BAD_TOKEN: &str = "expired-token-a9d2";

fn via_tke(ws: &Workspace, endpoint: &str, env: &[(&str, &str)]) -> Run {
    let args = [
        "plan",
        DESIRED,
        "--backend",
        "tke:us-south",
        "--tke-endpoint",
        endpoint,
    ];
    ws.mkplan_with_env(&args, &with_test_oa_root(env))
}

/// Exit 1, every `said` on stderr, none of `never` on stdout or stderr, the fleet untouched.
#[track_caller]
fn assert_stopped(ws: &Workspace, fleet: &[u8], run: &Run, said: &[&str], never: &[&str]) {
    assert_eq!(run.code, 1, "{}", run.stderr);
    for words in said {
        assert!(
            run.stderr.contains(words),
            "no {words:?} in\n{}",
            run.stderr
        );
    }
    for words in never {
        assert!(
            !run.stderr.contains(words) && !run.stdout.contains(words),
            "{words:?} in\n{}",
            run.stderr
        );
    }
    assert_eq!(ws.bytes(FLEET), fleet, "the fleet was touched");
}

#[test]
fn a_rejected_token_on_tke_names_the_ibmcloud_variables() {
    let ws = rotate_to_b(&three_units(false));
    let fleet = ws.bytes(FLEET);
    let server = Server::start(
        &ws.path(FLEET),
        "",
        &["--protocol", "tke", "--token", GOOD_TOKEN],
    );
    let read = format!("GET {}/v1/tke/{INSTANCE}/hsms", server.url);

    // Before: "… Log in again and set MKPLAN_TOKEN to a fresh token".
    let rejected = via_tke(&ws, &server.url, &[("IBMCLOUD_IAM_TOKEN", BAD_TOKEN)]);
    assert_stopped(
        &ws,
        &fleet,
        &rejected,
        &[
            &read,
            "the service rejected the token in IBMCLOUD_IAM_TOKEN",
            "set IBMCLOUD_IAM_TOKEN to a fresh token (`ibmcloud iam oauth-tokens`)",
            "IBMCLOUD_API_KEY",
        ],
        &["MKPLAN_TOKEN", BAD_TOKEN],
    );

    let none = via_tke(&ws, &server.url, &[]);
    assert_stopped(
        &ws,
        &fleet,
        &none,
        &[
            &read,
            "No token was sent",
            "IBMCLOUD_IAM_TOKEN",
            "IBMCLOUD_API_KEY",
        ],
        &["MKPLAN_TOKEN"],
    );
    drop(server);

    let server = Server::start(
        &ws.path(FLEET),
        "",
        &["--protocol", "tke", "--api-key", "key-for-tests-0123"],
    );
    let refused = via_tke(
        &ws,
        &server.url,
        &[
            ("MKPLAN_IAM_ENDPOINT", server.url.as_str()),
            ("IBMCLOUD_API_KEY", "not-the-key-77"),
        ],
    );
    assert_stopped(
        &ws,
        &fleet,
        &refused,
        &[
            &format!("POST {}/identity/token", server.url),
            "IAM refused the API key in IBMCLOUD_API_KEY",
            "set IBMCLOUD_API_KEY to a valid API key",
        ],
        &["MKPLAN_TOKEN", "not-the-key-77"],
    );
}

#[test]
fn an_http_error_names_the_request_it_came_from() {
    let ws = rotate_to_b(&three_units(true));
    let fleet = ws.bytes(FLEET);
    let server = Server::start(&ws.path(FLEET), "", &["--token", GOOD_TOKEN]);
    let rejected = ws.mkplan_with_env(
        &["plan", DESIRED, "--backend", &server.url],
        &[("MKPLAN_TOKEN", BAD_TOKEN)],
    );
    assert_stopped(
        &ws,
        &fleet,
        &rejected,
        &[
            &format!(
                "GET {}/v1/tke/{INSTANCE}/hsms: the service rejected the token in MKPLAN_TOKEN",
                server.url
            ),
            "set MKPLAN_TOKEN to a fresh token",
        ],
        &[BAD_TOKEN],
    );
    drop(server);

    // A command answered 503: the note names the operation and its request. Before:
    // "load_new_mk: the service answered 503 …".
    let server = Server::start(&ws.path(FLEET), "fail_op=1", &[]);
    let run = ws.mkplan_with_env(
        &["apply", DESIRED, "--auto-approve", "--backend", &server.url],
        &PASSWORDS,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let request = format!("load_new_mk (POST {}/v1/tke/{INSTANCE}/hsms/", server.url);
    let note = run
        .stderr
        .lines()
        .find(|l| l.contains(&request))
        .unwrap_or_else(|| panic!("no {request:?} in\n{}", run.stderr));
    assert!(
        note.contains("/load_new_mk): the service answered 503"),
        "{note}"
    );
    for (_, password) in PASSWORDS {
        assert!(
            !run.stderr.contains(password),
            "a password in\n{}",
            run.stderr
        );
    }
    drop(server);
    assert_converged(&ws, "after a 503");
    assert_no_incidents(&ws, "after a 503");
}

/// A server that answers every request with `head` (status line and headers) and `body`.
fn fake_server(head: &str, body: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = format!(
        "{head}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 8192];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    url
}

const PYTHON_404: &str = "HTTP/1.1 404 Not Found\r\nserver: SimpleHTTP/0.6 Python/3.11.7\r\ncontent-type: text/html;charset=utf-8";
const PAGE: &str =
    "<!DOCTYPE HTML>\n<html><body><h1>Error response</h1><p>Error code: 404</p></body></html>\n";

#[test]
fn a_404_from_a_server_that_is_not_mkplans_says_so() {
    let ws = rotate_to_b(&three_units(true));
    let fleet = ws.bytes(FLEET);
    let stranger = fake_server(PYTHON_404, PAGE);

    // Before: "GET …: <!DOCTYPE HTML>\n<html …. Check the instance id, the region and the
    // account (and the backend URL)".
    let http = ws.mkplan(&["plan", DESIRED, "--backend", &stranger]);
    assert_stopped(
        &ws,
        &fleet,
        &http,
        &[
            &format!(
                "GET {stranger}/v1/tke/{INSTANCE}/hsms: the server at {stranger} answered 404 Not Found, and it is not mkplan's"
            ),
            "its Server header says \"SimpleHTTP/0.6 Python/3.11.7\"",
            "a web page (HTML)",
            "mkplan-sim/VERSION",
            "Check the backend's URL",
        ],
        &["Check the instance id", "<html", "DOCTYPE"],
    );

    let tke = via_tke(&ws, &stranger, &[("IBMCLOUD_IAM_TOKEN", GOOD_TOKEN)]);
    assert_stopped(
        &ws,
        &fleet,
        &tke,
        &["and it is not the TKE API", "--tke-endpoint"],
        &["<html", GOOD_TOKEN, "Check the instance id"],
    );

    // mkplan's own 404 behind a proxy that names itself: the error's shape says whose it is,
    // and it still means "no such instance".
    let proxied = fake_server(
        "HTTP/1.1 404 Not Found\r\nserver: nginx\r\ncontent-type: application/json",
        r#"{"error":{"code":"instance_not_found","message":"no service instance here"}}"#,
    );
    let run = ws.mkplan(&["plan", DESIRED, "--backend", &proxied]);
    assert_stopped(
        &ws,
        &fleet,
        &run,
        &["no service instance here", "Check the instance id"],
        &["not mkplan's"],
    );
}

/// `mkplan sim serve` names itself on every answer, a refusal of the token and a 404 included.
#[test]
fn sim_serve_names_itself_on_every_answer() {
    let ws = rotate_to_b(&three_units(true));
    let expected = format!("server: mkplan-sim/{}", env!("CARGO_PKG_VERSION"));
    for protocol in ["json", "tke"] {
        let server = Server::start(
            &ws.path(FLEET),
            "",
            &["--protocol", protocol, "--token", GOOD_TOKEN],
        );
        for (path, token) in [
            (format!("/v1/tke/{INSTANCE}/hsms"), GOOD_TOKEN),
            (format!("/v1/tke/{INSTANCE}/hsms"), BAD_TOKEN),
            ("/no/such/path".to_string(), GOOD_TOKEN),
        ] {
            let address = server.url.trim_start_matches("http://");
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            let head = answer
                .split("\r\n\r\n")
                .next()
                .unwrap()
                .to_ascii_lowercase();
            assert!(head.contains(&expected), "{protocol} {path}: {head}");
        }
    }
}
