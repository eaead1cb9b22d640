//! Credentials in transit and at rest in the process (issue: security, points 2 and 6). A
//! token, an API key, the token it buys and key parts never go over plain http to another
//! machine, and "another machine" includes any host name but `localhost`, even one that
//! resolves to loopback: a logging listener on the address that name resolves to stands in
//! for the attacker's server and must receive nothing. URLs carry no password. A password
//! variable is gone from the process's environment once read.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cases::apply::{PASSWORDS, assert_converged, assert_no_incidents, three_units};
use crate::support::*;

const TOKEN: &str = "bearer-token-never-in-clear-7f3a";
const API_KEY: &str = "api-key-never-in-clear-91c2";

/// A host name other than `localhost` that resolves, on this machine, only to loopback (the
/// machine's own name, or another name /etc/hosts maps to 127.x or ::1), and its first address.
fn loopback_name() -> (String, IpAddr) {
    let mut candidates: Vec<String> = Vec::new();
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        candidates.push(name.trim().to_string());
    }
    for line in std::fs::read_to_string("/etc/hosts")
        .unwrap_or_default()
        .lines()
    {
        let mut fields = line
            .split('#')
            .next()
            .unwrap_or_default()
            .split_whitespace();
        if fields
            .next()
            .and_then(|address| address.parse::<IpAddr>().ok())
            .is_some_and(|address| address.is_loopback())
        {
            candidates.extend(fields.map(String::from));
        }
    }
    for name in candidates {
        if name.is_empty()
            || name.eq_ignore_ascii_case("localhost")
            || name.parse::<IpAddr>().is_ok()
        {
            continue;
        }
        let Ok(addresses) = (name.as_str(), 0).to_socket_addrs() else {
            continue;
        };
        let addresses: Vec<SocketAddr> = addresses.collect();
        if !addresses.is_empty() && addresses.iter().all(|a| a.ip().is_loopback()) {
            return (name, addresses[0].ip());
        }
    }
    panic!(
        "no host name other than localhost resolves to loopback on this machine; add one to /etc/hosts (`127.0.0.1 NAME`)"
    );
}

/// What a listener received.
#[derive(Default)]
struct Received {
    connections: usize,
    bytes: Vec<u8>,
}

/// A plain TCP listener that records every connection and every byte sent to it, then closes
/// the connection without answering.
struct LoggingListener {
    port: u16,
    received: Arc<Mutex<Received>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LoggingListener {
    fn start(address: IpAddr) -> Self {
        let listener = TcpListener::bind((address, 0)).expect("bind a loopback listener");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Received::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((mut stream, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    received.lock().unwrap().connections += 1;
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let mut buffer = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buffer) {
                        received.lock().unwrap().bytes.extend(&buffer[..n]);
                    }
                }
            })
        };
        Self {
            port,
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, host: &str) -> String {
        format!("http://{host}:{}", self.port)
    }

    /// Stops listening; what was received.
    fn finish(mut self) -> Received {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the listener thread");
        }
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

impl Drop for LoggingListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Refused with exit 1, naming the URL and the fix, and no secret anywhere: not in the output,
/// not in any file of the workspace (plans, journal, audit trail).
fn assert_refused(ws: &Workspace, run: &Run, url: &str, names: &[&str]) {
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(url),
        "the URL is not named: {}",
        run.stderr
    );
    let tls = url.replacen("http://", "https://", 1);
    assert!(run.stderr.contains(&tls), "no https fix: {}", run.stderr);
    assert!(
        run.stderr.contains("localhost"),
        "no loopback fix: {}",
        run.stderr
    );
    assert!(run.stderr.contains("Nothing was sent"), "{}", run.stderr);
    for name in names {
        assert!(
            run.stderr.contains(name),
            "{name} not named: {}",
            run.stderr
        );
    }
    assert_no_secret(ws, run);
}

/// No secret in the run's output, nor in any file of the workspace but the desired file (which
/// a test may have written one into).
fn assert_no_secret(ws: &Workspace, run: &Run) {
    let secrets = [TOKEN, API_KEY, "s3cret-pw", PASSWORDS[0].1, PASSWORDS[1].1];
    for secret in secrets {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "{secret} shown: {}",
            run.stderr
        );
        for file in ws.listing() {
            let path = ws.path(&file);
            if path.is_file() && file != DESIRED {
                let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
                assert!(!text.contains(secret), "{secret} written in {file}");
            }
        }
    }
}

fn assert_nothing_received(listener: LoggingListener, context: &str) {
    let received = listener.finish();
    assert_eq!(
        (received.connections, received.bytes.len()),
        (0, 0),
        "{context}: the listener received {:?}",
        String::from_utf8_lossy(&received.bytes)
    );
}

/// `MKPLAN_TOKEN` with `--backend http://NAME:PORT`, NAME resolving to loopback but not being
/// `localhost`: refused before any connection. Without the token, the same URL does reach the
/// listener, which shows that the name leads there.
#[test]
fn a_bearer_token_is_not_sent_over_http_to_a_name_that_resolves_to_loopback() {
    let (name, address) = loopback_name();
    let ws = rotate_to_b(&three_units(true));
    let listener = LoggingListener::start(address);
    let url = listener.url(&name);
    let run = ws.mkplan_with_env(
        &["plan", DESIRED, "--backend", &url, "--out", "plan.json"],
        &[("MKPLAN_TOKEN", TOKEN)],
    );
    assert_refused(&ws, &run, &url, &["MKPLAN_TOKEN", "backend"]);
    assert!(!ws.path("plan.json").exists(), "a plan was written");
    assert_nothing_received(listener, "with MKPLAN_TOKEN");

    let control = LoggingListener::start(address);
    let without = ws.mkplan(&["plan", DESIRED, "--backend", &control.url(&name)]);
    assert_eq!(without.code, 1, "{}", without.stderr);
    let received = control.finish();
    assert!(
        received.connections > 0 && String::from_utf8_lossy(&received.bytes).contains("GET "),
        "{name} did not lead to the listener, so this test shows nothing"
    );
    assert!(!String::from_utf8_lossy(&received.bytes).contains(TOKEN));
}

/// `IBMCLOUD_API_KEY` with an http IAM endpoint on another machine: the key is not exchanged;
/// and an http TKE endpoint refuses the token that key would buy, before the exchange (the IAM
/// endpoint, on loopback here, receives nothing either).
#[test]
fn an_api_key_and_the_token_it_buys_are_not_sent_over_http_to_another_machine() {
    let (name, address) = loopback_name();
    let ws = rotate_to_b(&three_units(true));
    let iam = LoggingListener::start(address);
    let iam_url = iam.url(&name);
    let run = ws.mkplan_with_env(
        &[
            "plan",
            DESIRED,
            "--backend",
            "tke:us-south",
            "--tke-endpoint",
            "http://localhost:9",
        ],
        &[
            ("IBMCLOUD_API_KEY", API_KEY),
            ("MKPLAN_IAM_ENDPOINT", iam_url.as_str()),
        ],
    );
    assert_refused(&ws, &run, &iam_url, &["IBMCLOUD_API_KEY", "IAM endpoint"]);
    assert_nothing_received(iam, "the IAM endpoint");

    let tke = LoggingListener::start(address);
    let iam = LoggingListener::start("127.0.0.1".parse().unwrap());
    let tke_url = tke.url(&name);
    let local_iam = iam.url("127.0.0.1");
    let run = ws.mkplan_with_env(
        &[
            "plan",
            DESIRED,
            "--backend",
            "tke:us-south",
            "--tke-endpoint",
            &tke_url,
        ],
        &[
            ("IBMCLOUD_API_KEY", API_KEY),
            ("MKPLAN_IAM_ENDPOINT", local_iam.as_str()),
        ],
    );
    assert_refused(&ws, &run, &tke_url, &["IBMCLOUD_API_KEY", "TKE endpoint"]);
    assert_nothing_received(tke, "the TKE endpoint");
    assert_nothing_received(iam, "the IAM endpoint, before the TKE endpoint was checked");
}

/// `IBMCLOUD_IAM_TOKEN` with `--tke-endpoint http://NAME:PORT`: refused, nothing sent.
#[test]
fn an_iam_token_is_not_sent_over_http_to_another_machine() {
    let (name, address) = loopback_name();
    let ws = rotate_to_b(&three_units(true));
    let listener = LoggingListener::start(address);
    let url = listener.url(&name);
    let run = ws.mkplan_with_env(
        &[
            "status",
            DESIRED,
            "--backend",
            "tke:us-south",
            "--tke-endpoint",
            &url,
        ],
        &[("IBMCLOUD_IAM_TOKEN", TOKEN)],
    );
    assert_refused(&ws, &run, &url, &["IBMCLOUD_IAM_TOKEN", "TKE endpoint"]);
    assert_nothing_received(listener, "with IBMCLOUD_IAM_TOKEN");
}

/// Key parts are credentials too: `apply` of a desired file with key part files, and of the
/// saved plan that loads them, over http to another machine and with no token at all, is
/// refused before the first request, before any password is read.
#[test]
fn key_parts_are_not_sent_over_http_to_another_machine_even_without_a_token() {
    let (name, address) = loopback_name();
    let ws = rotate_to_b(&three_units(true));
    ws.mkplan(&["plan", DESIRED, "--out", "plan.json"])
        .expect_code(0);
    let fleet = ws.bytes(FLEET);
    for target in [DESIRED, "plan.json"] {
        let listener = LoggingListener::start(address);
        let url = listener.url(&name);
        let run = ws.mkplan_with_env(
            &["apply", target, "--auto-approve", "--backend", &url],
            &PASSWORDS,
        );
        assert_refused(&ws, &run, &url, &["key parts", "backend"]);
        assert!(!run.stderr.contains("MKPLAN_TOKEN"), "{}", run.stderr);
        assert_nothing_received(listener, target);
    }
    assert_eq!(ws.bytes(FLEET), fleet, "the fleet was touched");
    assert_no_incidents(&ws, "after the refused applies");
}

/// A user name or password in any URL mkplan sends to (the backend, in the flag or in the
/// desired file; the TKE endpoint; the IAM endpoint) is refused without being shown, and
/// nothing is sent or written.
#[test]
fn a_url_with_a_password_is_refused_everywhere_without_showing_it() {
    let ws = rotate_to_b(&three_units(true));
    let listener = LoggingListener::start("127.0.0.1".parse().unwrap());
    let with_password = format!("http://user:s3cret-pw@127.0.0.1:{}", listener.port);
    let via_tke = |endpoint: &str| {
        vec![
            "plan".to_string(),
            DESIRED.into(),
            "--backend".into(),
            "tke:us-south".into(),
            "--tke-endpoint".into(),
            endpoint.into(),
        ]
    };
    fn args(all: &[String]) -> Vec<&str> {
        all.iter().map(String::as_str).collect()
    }
    let runs = [
        ws.mkplan(&[
            "plan",
            DESIRED,
            "--backend",
            &with_password,
            "--out",
            "p.json",
        ]),
        ws.mkplan_with_env(
            &args(&via_tke(&with_password)),
            &[("IBMCLOUD_IAM_TOKEN", TOKEN)],
        ),
        ws.mkplan_with_env(
            &args(&via_tke("http://localhost:9")),
            &[
                ("IBMCLOUD_API_KEY", API_KEY),
                ("MKPLAN_IAM_ENDPOINT", with_password.as_str()),
            ],
        ),
    ];
    for run in &runs {
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            run.stderr.contains("user name or password"),
            "{}",
            run.stderr
        );
        assert_no_secret(&ws, run);
    }
    ws.write(
        DESIRED,
        &ws.read(DESIRED).replace(
            "backend: sim:fleet.yaml",
            &format!("backend: {with_password}"),
        ),
    );
    let from_file = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_eq!(from_file.code, 1, "{}", from_file.stderr);
    assert_no_secret(&ws, &from_file);
    assert!(!ws.path("p.json").exists());
    assert_nothing_received(listener, "a URL with a password");
}

/// A password variable is read once, then wiped from the process's environment: while the
/// apply runs (slowed by the simulator's latency), `/proc/PID/environ`, which another process
/// of the same user may read, no longer shows it.
#[test]
fn a_password_variable_is_wiped_from_the_environment_while_apply_runs() {
    let ws = rotate_to_b(&three_units(true));
    let marker = "visible-marker-5d1e";
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("mkplan"))
        .current_dir(ws.path(""))
        .env("MKPLAN_STATE_DIR", ws.path(".mkplan"))
        .env("MKPLAN_JOURNAL_KEY", ws.journal_key())
        .env_remove("MKPLAN_BACKEND")
        .env("MKPLAN_SIM_FAULTS", "latency_ms=300")
        .env("MKPLAN_TEST_MARKER", marker)
        .envs(PASSWORDS)
        .args(["apply", DESIRED, "--auto-approve"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(ws.path("stderr.txt")).unwrap())
        .spawn()
        .expect("start mkplan apply");
    let environ = format!("/proc/{}/environ", child.id());
    let holds = |bytes: &[u8], text: &str| bytes.windows(text.len()).any(|w| w == text.as_bytes());
    let (mut readable, mut wiped) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "apply did not finish");
        if let Ok(bytes) = std::fs::read(&environ)
            && holds(&bytes, marker)
        {
            readable = true;
            wiped |= PASSWORDS
                .iter()
                .all(|(_, password)| !holds(&bytes, password));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr = ws.read("stderr.txt");
    assert!(status.success(), "{stderr}");
    assert!(readable, "the child's environment could not be read");
    assert!(
        wiped,
        "the passwords stayed in /proc/PID/environ for the whole apply"
    );
    assert_converged(&ws, "after an apply with wiped password variables");
}

/// Two key part files protected by one password, named by one variable: the variable is read
/// once (it is gone after the first read) and its password opens both.
#[test]
fn a_password_variable_that_two_key_parts_share_is_read_once() {
    let ws = Workspace::empty();
    let shared = [("SHARED_PASSWORD", "one-password-for-both")];
    for file in ["a.json", "b.json"] {
        ws.mkplan_with_env(
            &[
                "keypart",
                "new",
                "--out",
                file,
                "--password-env",
                "SHARED_PASSWORD",
            ],
            &shared,
        )
        .expect_code(0);
    }
    let run = ws.mkplan_with_env(
        &[
            "keypart",
            "vp",
            "a.json",
            "b.json",
            "--password-env",
            "SHARED_PASSWORD",
        ],
        &shared,
    );
    run.expect_code(0);
    assert_eq!(run.stdout.trim().len(), 64, "{}", run.stdout);
}

/// A password written where its variable's name belongs (`password_env: "…"`) is refused with
/// its place, but neither its value nor its line is shown (adversary round 6, S1): the
/// message held it back, and the excerpt under it printed the line anyway.
#[test]
fn a_password_written_as_password_env_is_never_shown() {
    let ws = rotate_to_b(&three_units(true));
    let password = "demo-part-1-passw0rd-7c1f";
    let desired = ws.read(DESIRED);
    assert!(
        desired.contains("password_env: MKPLAN_PART1_PASSWORD"),
        "{desired}"
    );
    ws.write(
        DESIRED,
        &desired.replace(
            "password_env: MKPLAN_PART1_PASSWORD",
            &format!("password_env: \"{password}\""),
        ),
    );
    for args in [&["validate", DESIRED][..], &["plan", DESIRED]] {
        let run = ws.mkplan(args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("password_env is not an environment variable name")
                && !run.stdout.contains(password)
                && !run.stderr.contains(password),
            "{args:?}: {}",
            run.stderr
        );
    }
}
