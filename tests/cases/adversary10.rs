//! Regression from the tenth adversarial review, HPCS side (/work/adv/repro10, S1b): a
//! witness database named by the journal heads, reached over TCP on this machine without TLS
//! (an SSH tunnel's port), got the password file's line for it in clear text from whatever
//! listened there once the tunnel was closed. A witness's password now goes only where the
//! server is proven (a Unix socket, TLS this machine trusts); over such a port none is sent,
//! and the witness is refused as unreadable, saying why.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cases::adversary3::{assert_says, said};
use crate::cases::adversary4::in_folder;
use crate::cases::adversary7_a1b::rewrap_unanswered_on;
use crate::cases::apply::{PASSWORDS, assert_no_incidents};
use crate::support::*;

/// The password alice keeps in her password file for the tunnel's port.
const PASSWORD: &str = "Tunnel-Pw-7f3a";

/// A loop accepting on `listener` until `stop`, each connection given to `serve`.
fn accepting(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    serve: impl Fn(TcpStream) + Send + Clone + 'static,
) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let serve = serve.clone();
            std::thread::spawn(move || serve(stream));
        }
    });
}

/// Stops an `accepting` loop and frees its port.
fn stop(port: u16, flag: &AtomicBool) {
    flag.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect(("127.0.0.1", port));
    std::thread::sleep(Duration::from_millis(200));
}

/// The tunnel: every connection to it goes on to the test server's `port`.
fn tunnel(listener: TcpListener, to: u16, flag: Arc<AtomicBool>) {
    accepting(listener, flag, move |client| {
        let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
            return;
        };
        let (mut c, mut s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut c, &mut s);
            let _ = s.shutdown(std::net::Shutdown::Write);
        });
        let (mut s, mut c) = (server, client);
        let _ = std::io::copy(&mut s, &mut c);
        let _ = c.shutdown(std::net::Shutdown::Write);
    });
}

fn read_message(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).ok()?;
    let mut body = vec![0u8; (u32::from_be_bytes(length) as usize).checked_sub(4)?];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}

/// mallory's listener: no TLS, then AuthenticationCleartextPassword; what it was sent.
fn mallory(listener: TcpListener, flag: Arc<AtomicBool>, heard: Arc<Mutex<Vec<String>>>) {
    accepting(listener, flag, move |mut stream| {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let Some(mut startup) = read_message(&mut stream) else {
            return;
        };
        if startup.get(..4) == Some(&80877103u32.to_be_bytes()[..]) {
            let _ = stream.write_all(b"N");
            let Some(next) = read_message(&mut stream) else {
                return;
            };
            startup = next;
        }
        let _ = startup;
        let _ = stream.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]);
        let mut kind = [0u8; 1];
        let answer = stream
            .read_exact(&mut kind)
            .ok()
            .and_then(|_| read_message(&mut stream));
        let heard_now = match answer {
            Some(password) => format!("password {}", String::from_utf8_lossy(&password)),
            None => "connection, no password".to_string(),
        };
        heard.lock().unwrap().push(heard_now);
        let error = b"SFATAL\0C28P01\0Mpassword authentication failed\0\0";
        let mut reply = vec![b'E'];
        reply.extend_from_slice(&(error.len() as u32 + 4).to_be_bytes());
        reply.extend_from_slice(error);
        let _ = stream.write_all(&reply);
    });
}

#[test]
fn a_witness_database_at_a_port_nothing_proves_gets_no_password() {
    let Some(url) = crate::support::postgres::database() else {
        return;
    };
    let server = std::env::var("MKPLAN_TEST_POSTGRES").expect("a test server");
    let server_port: u16 = server
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("the test server's port");
    let (_, name) = url.rsplit_once('/').expect("a URL with a database");
    // alice's tunnel to the team database, and her password file line for it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let open = Arc::new(AtomicBool::new(false));
    tunnel(listener, server_port, open.clone());
    let through = format!("postgres://mkplan@localhost:{port}/{name}");
    let (ws, _) = rewrap_unanswered_on(through.clone());
    ws.write(
        "pgpass",
        &format!("localhost:{port}:{name}:mkplan:{PASSWORD}\n"),
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(ws.path("pgpass"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    let pgpass = ws.path("pgpass").display().to_string();
    let env = [("PGPASSFILE", pgpass.as_str())];
    // The tunnel open: a legitimate witness (it lets alice in without a password) is read.
    let plan = in_folder(&ws, "s2", &["plan", DESIRED], &env);
    assert_says(
        &plan,
        3,
        &["rewrap_evidence", "team database", &through],
        "the witness read through the tunnel",
    );
    // The tunnel closed; mallory listens on its port and asks for a cleartext password.
    stop(port, &open);
    let heard = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("the tunnel's port again");
    let closed = Arc::new(AtomicBool::new(false));
    mallory(listener, closed.clone(), heard.clone());
    let mut with_parts = PASSWORDS.to_vec();
    with_parts.extend_from_slice(&env);
    let runs = [
        in_folder(&ws, "s2", &["plan", DESIRED], &env),
        in_folder(
            &ws,
            "s2",
            &["apply", DESIRED, "--auto-approve"],
            &with_parts,
        ),
        in_folder(&ws, "s2", &["status", DESIRED], &env),
    ];
    stop(port, &closed);
    let heard = heard.lock().unwrap().clone();
    assert!(!heard.is_empty(), "mallory was asked: {heard:?}");
    assert!(
        heard.iter().all(|h| !h.contains(PASSWORD)),
        "the password went to mallory: {heard:?}"
    );
    assert_says(
        &runs[0],
        3,
        &["cannot be read", "does not prove the server", "sent none"],
        "the plan, the witness unproven",
    );
    assert_eq!(runs[1].code, 3, "{}", said(&runs[1]));
    for run in &runs {
        let text = said(run);
        assert!(!text.contains(PASSWORD), "the password was shown:\n{text}");
        assert!(!text.contains("db error"), "{text}");
    }
    assert_no_incidents(&ws, "after the refusals");
}
