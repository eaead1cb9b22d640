//! Bounded work on hostile input (issue: security, point 5). Someone who can put a file in
//! front of mkplan (a desired file in a pull request, a key part file, a fleet, a plan, a
//! server's reply) cannot make it work for hours, flood the terminal, forge a line of its
//! output, or echo a file it was pointed at by mistake. Each test plants the input and shows
//! it refused quickly, in a short message, with nothing sent.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cases::apply::{PASSWORDS, assert_no_incidents, three_units};
use crate::on_both_backends;
use crate::support::*;

/// Generous: the refusal takes milliseconds; the KDF it prevents would take minutes, or all
/// the machine's memory.
const FAST_ENOUGH: Duration = Duration::from_secs(20);
/// What an error about one bad value may take on stderr.
const ERROR_BYTES_MAX: usize = 4096;
const MIB: usize = 1 << 20;

fn timed(run: impl FnOnce() -> Run) -> (Run, Duration) {
    let started = Instant::now();
    let run = run();
    (run, started.elapsed())
}

/// The stderr of a refusal: exit 1, short, without an escape byte, and without a line that
/// the input wrote (`forged` only ever appears inside a quoted, escaped value).
#[track_caller]
fn assert_short_and_inert(run: &Run, context: &str) {
    assert_eq!(run.code, 1, "{context}: exit {}\n{}", run.code, run.stderr);
    let shown = &run.stderr[..run.stderr.len().min(2000)];
    assert!(
        run.stderr.len() < ERROR_BYTES_MAX,
        "{context}: {} bytes on stderr:\n{shown}",
        run.stderr.len()
    );
    assert!(
        !run.stderr.contains('\u{1b}') && !run.stderr.contains('\r'),
        "{context}: a control character reached the terminal:\n{}",
        run.stderr.escape_debug()
    );
    assert!(
        !run.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("error: forged")),
        "{context}: the input forged a line:\n{shown}"
    );
    assert!(
        run.stdout.len() < ERROR_BYTES_MAX,
        "{context}: {}",
        run.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// 1. A key part file cannot make the KDF run for hours

on_both_backends! {
    /// A key part file whose header asks Argon2id for 4 GiB of memory, or for 10⁹ passes, is
    /// refused before the KDF runs: `apply` and `keypart vp` end within seconds, name the
    /// file, the parameter, its value and the limit, and say how to fix it; nothing is sent.
    fn a_key_part_file_asking_for_a_costly_kdf_is_refused_before_the_kdf_runs() {
        for (parameter, value) in [("memory_kib", 4 * 1024 * 1024u64), ("iterations", 1_000_000_000)] {
            let ws = rotate_to_b(&three_units(true));
            let part = "keyparts/custodian-1.json";
            let mut file: Value = serde_json::from_str(&ws.read(part)).unwrap();
            file["kdf"][parameter] = value.into();
            ws.write(part, &serde_json::to_string_pretty(&file).unwrap());
            let fleet = ws.bytes(FLEET);
            let runs = [
                ("apply", vec!["apply", DESIRED, "--auto-approve"]),
                (
                    "keypart vp",
                    vec![
                        "keypart",
                        "vp",
                        part,
                        "keyparts/custodian-2.json",
                        "--password-env",
                        "MKPLAN_PART1_PASSWORD",
                        "--password-env",
                        "MKPLAN_PART2_PASSWORD",
                    ],
                ),
            ];
            for (command, args) in runs {
                let context = format!("{command} with {parameter} = {value}");
                let (run, took) = timed(|| ws.mkplan_with_env(&args, &PASSWORDS));
                assert!(took < FAST_ENOUGH, "{context}: took {took:?}");
                assert_ne!(run.code, 0, "{context}: {}", run.stderr);
                for needed in [
                    "custodian-1.json",
                    parameter,
                    &value.to_string(),
                    "over the limit of",
                    "mkplan keypart new",
                    "tampered",
                ] {
                    assert!(
                        run.stderr.contains(needed),
                        "{context}: the message lacks {needed:?}:\n{}",
                        run.stderr
                    );
                }
                assert!(run.stdout.trim().is_empty(), "{context}: {}", run.stdout);
                assert_eq!(ws.bytes(FLEET), fleet, "{context}: the fleet was touched");
                assert_no_incidents(&ws, &context);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. A value quoted in an error is short and inert

/// A value with an escape sequence (colour, window title), a carriage return and a newline
/// followed by a forged error line.
const HOSTILE: &str = r"\e[31mRED\e]0;pwned\a\rerror: forged line\nerror: forged line";

/// The desired file of `ws` with the first line containing `needle` replaced by `line`.
fn with_line(ws: &Workspace, needle: &str, line: &str) -> String {
    ws.read(DESIRED)
        .lines()
        .map(|l| if l.contains(needle) { line } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A desired file whose instance id, verification pattern, backend, administrator, key part
/// path, crypto_units or version is a 1 MiB string, or a string with terminal escapes and a
/// forged line: `plan` and `validate` refuse it with a message of a few lines that quotes a
/// cut, escaped start of the value.
#[test]
fn a_huge_or_hostile_value_in_the_desired_file_gives_a_short_inert_error() {
    let big = "A".repeat(MIB);
    let cases: Vec<(&str, String)> = vec![
        ("- id:", format!("  - id: \"{big}\"")),
        ("- id:", format!("  - id: \"{HOSTILE}\"")),
        (
            "verification_pattern:",
            format!("      verification_pattern: \"{big}\""),
        ),
        (
            "verification_pattern:",
            format!("      verification_pattern: \"{HOSTILE}\""),
        ),
        ("backend:", format!("backend: \"{big}\"")),
        ("backend:", format!("backend: \"sim:{big}\"")),
        ("backend:", format!("backend: \"http://{big}\"")),
        ("backend:", format!("backend: \"tke:{big}\"")),
        ("backend:", format!("backend: \"{HOSTILE}\"")),
        ("backend:", format!("backend: \"sim:{HOSTILE}\"")),
        ("backend:", format!("backend: \"http://{HOSTILE}\"")),
        (
            "administrators:",
            format!("    administrators: [alice, \"{big}\"]"),
        ),
        (
            "administrators:",
            format!("    administrators: [alice, \"b{HOSTILE}\"]"),
        ),
        ("custodian-1.json", format!("        - file: \"{big}\"")),
        ("custodian-1.json", format!("        - file: \"{HOSTILE}\"")),
        ("crypto_units:", format!("    crypto_units: \"{big}\"")),
        ("crypto_units:", format!("    crypto_units: \"{HOSTILE}\"")),
        ("version:", format!("version: \"{big}\"")),
        // A long line, and raw control bytes on the line the snippet shows.
        ("crypto_units:", format!("    crypto_units: some # {big}")),
        (
            "crypto_units:",
            "    crypto_units: some # \u{1b}[2J\rerror: forged line".into(),
        ),
    ];
    for (needle, line) in cases {
        let ws = rotate_to_b(&three_units(true));
        ws.write(DESIRED, &with_line(&ws, needle, &line));
        let context = format!("{needle} {}", &line[..line.len().min(60)].escape_debug());
        for command in ["plan", "validate"] {
            let (run, took) = timed(|| ws.mkplan(&[command, DESIRED]));
            assert!(took < FAST_ENOUGH, "{context}: took {took:?}");
            assert_short_and_inert(&run, &format!("{command}: {context}"));
        }
    }
}

/// A fleet file (the simulator's state) with a 1 MiB or hostile instance id: the same.
#[test]
fn a_huge_or_hostile_value_in_the_fleet_gives_a_short_inert_error() {
    let big = "A".repeat(MIB);
    for value in [big.as_str(), HOSTILE] {
        let ws = rotate_to_b(&three_units(true));
        let fleet =
            ws.read(FLEET)
                .replacen(&format!("id: {INSTANCE}"), &format!("id: \"{value}\""), 1);
        assert_ne!(fleet, ws.read(FLEET), "the fleet names {INSTANCE}");
        ws.write(FLEET, &fleet);
        assert_short_and_inert(&ws.mkplan(&["status", DESIRED]), &value[..20]);
    }
}

/// A plan file with a 1 MiB format version, or a hostile desired file name: `apply` and
/// `runbook` refuse it with a short, inert message.
#[test]
fn a_huge_or_hostile_value_in_a_plan_file_gives_a_short_inert_error() {
    let ws = rotate_to_b(&three_units(true));
    ws.mkplan(&["plan", DESIRED, "--out", "plan.json"])
        .expect_code(0);
    let plan: Value = serde_json::from_str(&ws.read("plan.json")).unwrap();
    let big = "A".repeat(MIB);
    let hostile = "x\u{1b}[2J\rerror: forged line\nerror: forged line";
    for (field, value) in [
        ("format_version", big.as_str()),
        ("format_version", hostile),
        ("desired_file", big.as_str()),
        ("desired_file", hostile),
    ] {
        let mut altered = plan.clone();
        altered[field] = value.into();
        ws.write("plan.json", &altered.to_string());
        for args in [vec!["apply", "plan.json"], vec!["runbook", "plan.json"]] {
            let run = ws.mkplan_with_env(&args, &PASSWORDS);
            assert_short_and_inert(&run, &format!("{args:?} with a hostile {field}"));
        }
    }
    assert_no_incidents(&ws, "hostile plan files");
}

/// A server that answers every request with `status` and `body`, then closes the connection.
fn hostile_server(status: &str, body: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let status = status.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 8192];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
    });
    url
}

/// An HTTP backend whose error replies carry a 900 KB message with terminal escapes and a
/// forged line, or a 900 KB body that is not JSON: `plan` quotes a short, inert start of it.
#[test]
fn a_huge_or_hostile_server_reply_gives_a_short_inert_error() {
    let filler = "B".repeat(900 * 1024);
    let message = format!("\u{1b}]0;pwned\u{7}\rnot found\nerror: forged line {filler}");
    let replies = [
        (
            "404 Not Found",
            serde_json::json!({"error": {"message": message}}).to_string(),
        ),
        (
            "404 Not Found",
            format!("<html>\u{1b}[2J\nerror: forged line {filler}"),
        ),
        (
            "200 OK",
            format!("{{\"hsms\": [{{\"hsm_id\": \"\u{1b}[2J{filler}\"}}], \"x\": 1}}"),
        ),
    ];
    for (status, body) in replies {
        let url = hostile_server(status, body);
        let ws = rotate_to_b(&three_units(true));
        let (run, took) = timed(|| ws.mkplan(&["plan", DESIRED, "--backend", &url]));
        assert!(took < FAST_ENOUGH, "{status}: took {took:?}");
        assert_short_and_inert(&run, &format!("reply {status}"));
    }
}

// ---------------------------------------------------------------------------------------------
// 3. A path that names the wrong file never echoes it

const CANARY: &str = "hunter2-canary";

/// Files a mistyped path may name: a secrets file, a private key, JSON credentials.
fn secret_files() -> Vec<(&'static str, String)> {
    vec![
        (
            "secrets.env",
            format!(
                "# deployment secrets\npassword: {CANARY}\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ{CANARY}\n-----END OPENSSH PRIVATE KEY-----\n"
            ),
        ),
        (
            "id_rsa",
            format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ{CANARY}\n-----END OPENSSH PRIVATE KEY-----\n"
            ),
        ),
        (
            "credentials.json",
            format!(
                "{{\"type\": \"service_account\", \"private_key\": \"{CANARY}\", \"{CANARY}\": 1}}\n"
            ),
        ),
        ("passwd", format!("root:x:0:0:{CANARY}:/root:/bin/bash\n")),
        ("config.yaml", format!("{CANARY}: {CANARY}\n")),
    ]
}

#[track_caller]
fn assert_no_canary(run: &Run, context: &str) {
    assert_ne!(run.code, 0, "{context}: {}", run.stderr);
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(
            !text.contains(CANARY) && !text.contains("BEGIN OPENSSH") && !text.contains("b3Bl"),
            "{context}: the {stream} shows the file's content:\n{text}"
        );
    }
}

/// `backend: sim:SECRETFILE` (or `--backend sim:SECRETFILE`): `plan`, `apply` and `status`
/// fail with "not a simulator fleet file" and its position, and nothing of the file on stdout
/// or stderr.
#[test]
fn a_backend_naming_a_file_that_is_not_a_fleet_echoes_none_of_it() {
    for (name, content) in secret_files() {
        let ws = rotate_to_b(&three_units(true));
        ws.write(name, &content);
        let from_desired = ws
            .read(DESIRED)
            .replace("backend: sim:fleet.yaml", &format!("backend: sim:{name}"));
        ws.write(DESIRED, &from_desired);
        let backend = format!("sim:{name}");
        let runs: Vec<Vec<&str>> = vec![
            vec!["plan", DESIRED],
            vec!["plan", DESIRED, "--json"],
            vec!["status", DESIRED],
            vec!["apply", DESIRED, "--auto-approve"],
            vec!["plan", DESIRED, "--backend", &backend],
        ];
        for args in runs {
            let run = ws.mkplan_with_env(&args, &PASSWORDS);
            let context = format!("{name}: {args:?}");
            assert_no_canary(&run, &context);
            assert!(
                run.stderr.contains("is not a simulator fleet file"),
                "{context}: {}",
                run.stderr
            );
            assert!(
                run.stderr.contains(&format!("{name}:1:"))
                    || run.stderr.contains(&format!("{name}:2:")),
                "{context}: no line:column: {}",
                run.stderr
            );
        }
        assert_eq!(ws.read(name), content, "{name} was changed");
        assert_no_incidents(&ws, name);
    }
}

/// The same for the other files a path names: a key part file in the desired file, the files
/// given to `keypart vp`, a plan file given to `apply` or `runbook`, the desired file a plan
/// names, and the fleet given to `sim serve`.
#[test]
fn other_paths_naming_a_secret_file_echo_none_of_it() {
    for (name, content) in secret_files() {
        let ws = rotate_to_b(&three_units(true));
        ws.write(name, &content);
        let desired = ws.read(DESIRED);
        ws.write(
            "key-part-is-secret.yaml",
            &desired.replace("keyparts/custodian-1.json", name),
        );
        ws.mkplan(&["plan", DESIRED, "--out", "plan.json"])
            .expect_code(0);
        let mut plan: Value = serde_json::from_str(&ws.read("plan.json")).unwrap();
        plan["desired_file"] = name.into();
        ws.write("plan-names-secret.json", &plan.to_string());
        let runs: Vec<Vec<&str>> = vec![
            vec!["validate", "key-part-is-secret.yaml"],
            vec!["plan", "key-part-is-secret.yaml"],
            vec![
                "keypart",
                "vp",
                name,
                "keyparts/custodian-2.json",
                "--password-env",
                "MKPLAN_PART1_PASSWORD",
            ],
            vec!["apply", name],
            vec!["show", name],
            vec!["runbook", "plan-names-secret.json"],
            vec!["plan", name],
            vec!["sim", "serve", name, "--listen", "127.0.0.1:0"],
        ];
        for args in runs {
            let (run, took) = timed(|| ws.mkplan_with_env(&args, &PASSWORDS));
            assert!(took < FAST_ENOUGH, "{name}: {args:?} took {took:?}");
            assert_no_canary(&run, &format!("{name}: {args:?}"));
        }
        assert_no_incidents(&ws, name);
    }
}

/// A key part path (or `sim:`) naming a device or a pipe fails at once instead of reading
/// forever (`/dev/zero`) or waiting for a writer (a FIFO).
#[test]
fn a_path_naming_a_device_or_a_pipe_fails_at_once() {
    let ws = rotate_to_b(&three_units(true));
    let fifo = ws.path("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    let mut targets = vec!["/dev/zero".to_string()];
    if made.is_ok_and(|s| s.success()) {
        targets.push(fifo.display().to_string());
    }
    let desired = ws.read(DESIRED);
    for target in targets {
        ws.write(
            "desired-device.yaml",
            &desired.replace("keyparts/custodian-1.json", &target),
        );
        ws.write(
            "backend-device.yaml",
            &desired.replace("backend: sim:fleet.yaml", &format!("backend: sim:{target}")),
        );
        for args in [
            vec!["validate", "desired-device.yaml"],
            vec!["plan", "backend-device.yaml"],
        ] {
            let (run, took) = timed(|| ws.mkplan(&args));
            assert!(took < FAST_ENOUGH, "{target}: {args:?} took {took:?}");
            assert_eq!(run.code, 1, "{target}: {args:?}: {}", run.stderr);
            assert!(
                run.stderr.contains("not a regular file"),
                "{target}: {args:?}: {}",
                run.stderr
            );
        }
    }
}
