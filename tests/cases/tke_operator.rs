//! The scripted operator of a TKE rotation: `apply --backend tke:REGION` against
//! `mkplan sim serve --protocol tke`, whose rewrap ceremony step is met the way a test says
//! (performed with the TKE CLI's `cryptounit-mk-rotate` as the simulator offers it, stopped
//! at, or performed and then cut off).

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use crate::cases::tke_signed::env;
use crate::support::*;

/// The scripted operator's hands for the rewrap: the TKE CLI's `cryptounit-mk-rotate`, as the
/// simulator offers it at `url`.
fn rewrap_on(url: &str, instance: &str) {
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST /v1/tke/{instance}/rewrap HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// What the scripted operator does when shown the rewrap ceremony step.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Operator {
    /// Performs it and says so.
    Rewraps,
    /// Types 'stop' (the rewrap belongs to another change window).
    Stops,
    /// Performs it, says so, and the run is cut off once it journaled the rewrap done (a
    /// laptop lid closed).
    RewrapsThenCutOff,
}

/// `apply` over the TKE protocol at `url`, the rewrap ceremony step met by `operator`.
pub(super) fn apply_at(
    ws: &Workspace,
    url: &str,
    extra_env: &[(&str, &str)],
    operator: Operator,
) -> (i32, String, usize) {
    let mut command = ws.process(&[
        "apply",
        DESIRED,
        "--auto-approve",
        "--verify-timeout-s",
        "5",
        "--backend",
        "tke:us-south",
        "--tke-endpoint",
        url,
    ]);
    for (name, value) in env(extra_env) {
        command.env(name, value);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let lines = crate::support::stderr_lines(&mut child);
    let (mut transcript, mut ceremonies) = (String::new(), 0);
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(120)) {
        transcript.push_str(&line);
        transcript.push('\n');
        if line.starts_with("Type 'done'") {
            ceremonies += 1;
            assert!(
                transcript.contains("rewrap") && transcript.contains("cryptounit-mk-rotate"),
                "only the rewrap is a ceremony step:\n{transcript}"
            );
            if operator == Operator::Stops {
                let _ = writeln!(stdin, "stop");
                continue;
            }
            rewrap_on(url, INSTANCE);
            let _ = writeln!(stdin, "done");
        } else if line.starts_with("Type 'yes'") {
            let _ = writeln!(stdin, "yes");
        } else if operator == Operator::RewrapsThenCutOff
            && line.contains("rewrap_key_storage")
            && line.contains(" done")
        {
            let _ = child.kill();
            break;
        }
    }
    drop(stdin);
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), transcript, ceremonies)
}
