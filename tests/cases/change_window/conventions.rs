//! The conventions operators look for (issue 13, point 9): an example in every command's
//! `--help` (and each runs on a copy of a fresh clone), shell completions, man pages,
//! `--version` with the commit, `-v` that shows the HTTP/TKE conversation and never a secret,
//! `-q`, and colour only where a terminal or the operator asks for it.

use std::fs;
use std::process::Command;
use std::time::Duration;

use clap::CommandFactory;

use super::terminal::Terminal;
use crate::support::*;

const ESC: char = '\x1b';

/// Every command path with no subcommand of its own: ["plan"], ["attest", "rewrap"], …, in
/// the order `mkplan help` lists them.
fn leaf_commands() -> Vec<Vec<String>> {
    fn walk(command: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        let subcommands: Vec<_> = command
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        if subcommands.is_empty() {
            out.push(path);
            return;
        }
        for sub in subcommands {
            let mut next = path.clone();
            next.push(sub.get_name().to_string());
            walk(sub, next, out);
        }
    }
    let mut out = Vec::new();
    walk(&mkplan::cli::Args::command(), Vec::new(), &mut out);
    out
}

fn help(path: &[String]) -> String {
    let ws = Workspace::empty();
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let run = ws.mkplan(&args);
    run.expect_code(0);
    run.stdout.clone()
}

/// The commands under "Examples:" (up to the first line that is not indented), a line ending
/// in `\\` joined with the next, comment lines left out.
fn examples(help: &str) -> Vec<String> {
    let Some(start) = help.find("\nExamples:\n") else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    let mut continued = false;
    for line in help[start + "\nExamples:\n".len()..]
        .lines()
        .take_while(|line| line.starts_with("  "))
    {
        let line = line.trim();
        if continued {
            let last = out.last_mut().expect("a line before");
            last.pop();
            last.push_str(line);
        } else if !line.starts_with('#') {
            out.push(line.to_string());
        }
        continued = line.ends_with('\\');
    }
    out
}

#[test]
fn every_command_help_has_an_example_section() {
    let commands = leaf_commands();
    assert!(commands.len() >= 18, "{commands:?}");
    for path in &commands {
        let help = help(path);
        let examples = examples(&help);
        assert!(
            !examples.is_empty(),
            "`mkplan {} --help` has no Examples section:\n{help}",
            path.join(" ")
        );
        let words = path.join(" ");
        assert!(
            examples.iter().any(|e| e.contains(&format!(" {words}"))),
            "`mkplan {words} --help`: no example runs the command:\n{examples:#?}"
        );
    }
    let top = Workspace::empty().mkplan(&["--help"]);
    assert!(top.stdout.contains("Examples:"), "{}", top.stdout);
}

/// Examples that cannot run on a copy of a clone without more than it holds: a server that
/// runs until stopped, a database, a reader, a placeholder to fill in, a prompt, a file
/// outside the copy, the system's log.
const NOT_RUN_HERE: [&str; 15] = [
    "read -rs",
    "sim serve",
    "--backend http://",
    "postgres://",
    "mkplan cards",
    "LOCK_ID",
    "INSTANCE",
    "--out custodian-3.json",
    "~/",
    "$PROFILE",
    "sudo ",
    "man -l",
    "/srv/mkplan",
    "GROUP.yaml",
    "journalctl",
];

#[test]
fn help_examples_run_on_a_copy_of_the_clone() {
    let root = tempfile::tempdir().unwrap();
    let clone = root.path().join("clone");
    for folder in ["examples", "plans"] {
        copy_folder(&repo_file(folder), &clone.join(folder));
    }
    let binary = assert_cmd::cargo::cargo_bin("mkplan");
    let bin_dir = binary.parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    for command in leaf_commands() {
        for example in examples(&help(&command)) {
            if NOT_RUN_HERE.iter().any(|skip| example.contains(skip)) {
                continue;
            }
            let output = Command::new("bash")
                .args(["-c", &example])
                .current_dir(&clone)
                .env("PATH", &path)
                .env("HOME", root.path())
                .env("MKPLAN_JOURNAL_KEY", root.path().join("journal.key"))
                .env("MKPLAN_PART1_PASSWORD", DEMO_PASSWORDS[0])
                .env("MKPLAN_PART2_PASSWORD", DEMO_PASSWORDS[1])
                .env("NO_COLOR", "1")
                .env_remove("MKPLAN_BACKEND")
                .env_remove("MKPLAN_STATE")
                .env_remove("MKPLAN_STATE_DIR")
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let code = output.status.code().unwrap_or(-1);
            let expected = if example.contains("--detailed-exitcode") {
                2
            } else {
                0
            };
            assert_eq!(
                code,
                expected,
                "the example `{example}` (from `mkplan {} --help`) exited {code}:\n{}{}",
                command.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran >= 20, "only {ran} examples ran");
    let fleet = fs::read_to_string(clone.join("examples/fleets/three-units.yaml")).unwrap();
    assert!(!fleet.contains("incidents:\n  -"), "incidents: {fleet}");
    let fleet = mkplan::backend::sim::Fleet::parse("three-units.yaml", &fleet).unwrap();
    assert!(fleet.incidents.is_empty(), "{:#?}", fleet.incidents);
    assert!(clone.join("plan.md").exists() && clone.join("drill.md").exists());
}

fn copy_folder(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn completions_for_every_shell_and_bash_loads_them() {
    let ws = Workspace::empty();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = ws.mkplan(&["completions", shell]);
        run.expect_code(0);
        assert!(
            run.stdout.contains("mkplan") && run.stdout.contains("attest"),
            "{shell}: {}",
            run.stdout
        );
    }
    let binary = assert_cmd::cargo::cargo_bin("mkplan");
    let loaded = Command::new("bash")
        .args([
            "-c",
            "source <(\"$MKPLAN\" completions bash) && complete -p mkplan",
        ])
        .env("MKPLAN", &binary)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("-F _mkplan mkplan"),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let unknown = ws.mkplan(&["completions", "tcsh"]);
    unknown.expect_code(1);
}

#[test]
fn man_prints_a_roff_page_and_writes_one_per_command() {
    let ws = Workspace::empty();
    let page = ws.mkplan(&["man"]);
    page.expect_code(0);
    assert!(page.stdout.contains(".TH mkplan 1"), "{}", page.stdout);
    assert!(page.stdout.contains("mkplan\\-plan(1)"), "{}", page.stdout);
    let written = ws.mkplan(&["man", "--out", "man"]);
    written.expect_code(0);
    for page in [
        "mkplan.1",
        "mkplan-plan.1",
        "mkplan-apply.1",
        "mkplan-attest-rewrap.1",
        "mkplan-sim-serve.1",
    ] {
        let text = ws.read(&format!("man/{page}"));
        assert!(text.contains(".TH"), "{page}: {text}");
    }
    assert!(
        ws.read("man/mkplan-plan.1").contains("Examples:"),
        "the plan page has no examples"
    );
    assert!(
        written.stderr.contains("man pages into man"),
        "{}",
        written.stderr
    );
}

#[test]
fn version_names_the_commit() {
    let run = Workspace::empty().mkplan(&["--version"]);
    run.expect_code(0);
    let version = run.stdout.trim();
    assert!(
        version.starts_with(&format!("mkplan {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        // Built from this checkout: its commit, "-dirty" when files have changes.
        Some(head) => assert!(
            version.contains(&format!("(commit {head}")),
            "{version} vs {head}"
        ),
        None => assert!(version.ends_with("(commit unknown)"), "{version}"),
    }
}

/// `plan` of a fresh rotation, run with the environment and flags given (the harness sets
/// NO_COLOR; these runs choose for themselves).
fn plan_run(ws: &Workspace, extra: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut args = vec!["plan", DESIRED];
    args.extend(extra);
    let mut process = ws.process(&args);
    process.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
    for (key, value) in env {
        process.env(key, value);
    }
    let output = process.output().unwrap();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn colour_only_on_a_terminal_or_when_asked() {
    let ws = rotate_to_b(&Fleet::instance().units(3, empty(), valid(A)));
    let (piped, _) = plan_run(&ws, &[], &[]);
    assert!(piped.contains("+  s1"), "{piped}");
    assert!(!piped.contains(ESC), "colour in piped output:\n{piped}");
    let (always, _) = plan_run(&ws, &["--color", "always"], &[("NO_COLOR", "1")]);
    assert!(always.contains("\x1b[32m+\x1b[0m  s1"), "{always:?}");
    assert!(always.contains("\x1b[31mIRREVERSIBLE"), "{always:?}");
    let (forced, _) = plan_run(&ws, &[], &[("CLICOLOR_FORCE", "1")]);
    assert!(forced.contains(ESC), "CLICOLOR_FORCE gave no colour");
    let (never, _) = plan_run(&ws, &["--color", "never"], &[("CLICOLOR_FORCE", "1")]);
    assert!(!never.contains(ESC));
    // Without the colour, the text is what the other tests compare.
    let plain: String = strip_ansi(&always);
    assert_eq!(plain, piped);

    // A refusal on stderr: "error: refused:" in bold red when asked.
    let refused = rotate_to_b(
        &Fleet::instance()
            .key_storage(B)
            .reports_rotation_status(true)
            .unit(empty(), valid(B))
            .unit(committed(B), valid(A))
            .unit(empty(), valid(A)),
    );
    let (_, stderr) = plan_run(&refused, &["--color", "always"], &[]);
    assert!(
        stderr.starts_with("\x1b[1;31merror: refused:\x1b[0m"),
        "{stderr:?}"
    );
    let (_, stderr) = plan_run(&refused, &[], &[]);
    assert!(stderr.starts_with("error: refused:"), "{stderr:?}");
}

#[test]
fn colour_on_a_terminal_and_none_with_no_color() {
    let ws = rotate_to_b(&Fleet::instance().units(3, empty(), valid(A)));
    for (no_color, coloured) in [(None, true), (Some(""), false), (Some("1"), false)] {
        let mut process = ws.process(&["plan", DESIRED]);
        process.env_remove("NO_COLOR").env("TERM", "xterm");
        if let Some(value) = no_color {
            process.env("NO_COLOR", value);
        }
        let (status, output) = Terminal::spawn(process).wait(Duration::from_secs(30));
        assert!(status.success(), "{output}");
        assert!(output.contains("load_new_mk"), "{output}");
        assert_eq!(
            output.contains(ESC),
            coloured,
            "NO_COLOR={no_color:?}: {output:?}"
        );
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == ESC {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

const TOKEN: &str = "tok-verbose-3f9a1c77e2b54d08";
const API_KEY: &str = "apikey-verbose-8d2e6b1f0c9a";

/// What must never appear in a `-v` log: the token, the API key, the passwords, the key parts'
/// files and bytes, and any Authorization header.
fn assert_no_secret(ws: &Workspace, log: &str) {
    for secret in [TOKEN, API_KEY, DEMO_PASSWORDS[0], DEMO_PASSWORDS[1]] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    let lower = log.to_lowercase();
    for word in ["authorization", "bearer ", "access_token", "apikey="] {
        assert!(!lower.contains(word), "{word} in the log:\n{log}");
    }
    let mut parts = Vec::new();
    for n in 1..=2 {
        let file =
            mkplan::keypart::parse_file("part", &ws.read(&format!("keyparts/custodian-{n}.json")))
                .unwrap();
        assert!(
            !log.contains(&file.ciphertext[..16]),
            "ciphertext in the log"
        );
        let password = mkplan::keypart::Password::new(DEMO_PASSWORDS[n - 1].into());
        parts.push(mkplan::keypart::open(&file, &password).unwrap());
    }
    let key = mkplan::keypart::combine(&parts).unwrap();
    for secret in parts.iter().chain([&key]) {
        let bytes = hex::encode(secret.expose());
        assert!(!lower.contains(&bytes[..16]), "key bytes in the log");
    }
}

#[test]
fn verbose_shows_the_http_conversation_and_never_a_secret() {
    let ws = rotate_to_b(&Fleet::instance().units(3, empty(), valid(A)));
    let server = Server::start(&ws.path(FLEET), "", &["--token", TOKEN]);
    let env = [
        ("MKPLAN_BACKEND", server.url.as_str()),
        ("MKPLAN_TOKEN", TOKEN),
        ("MKPLAN_PART1_PASSWORD", DEMO_PASSWORDS[0]),
        ("MKPLAN_PART2_PASSWORD", DEMO_PASSWORDS[1]),
    ];
    let quiet_plan = ws.mkplan_with_env(&["plan", DESIRED], &env);
    quiet_plan.expect_code(0);
    assert!(!quiet_plan.stderr.contains("GET "), "{}", quiet_plan.stderr);
    let plan = ws.mkplan_with_env(&["-v", "plan", DESIRED], &env);
    plan.expect_code(0);
    assert_eq!(plan.stdout, quiet_plan.stdout, "-v changed the report");
    let hsms = format!("GET {}/v1/tke/{INSTANCE}/hsms → 200 OK (", server.url);
    assert!(plan.stderr.contains(&hsms), "{}", plan.stderr);
    assert!(plan.stderr.contains(" ms)"), "{}", plan.stderr);
    let apply = ws.mkplan_with_env(&["-vv", "apply", DESIRED, "--auto-approve"], &env);
    apply.expect_code(0);
    for expected in [
        "POST ",
        "/load",
        "bytes sent, with a token",
        "bytes answered",
    ] {
        assert!(
            apply.stderr.contains(expected),
            "{expected}: {}",
            apply.stderr
        );
    }
    let fleet = ws.read(FLEET);
    assert!(!fleet.contains("incidents:\n  -"), "{fleet}");
    assert_no_secret(
        &ws,
        &format!("{}{}{}", plan.stderr, apply.stderr, apply.stdout),
    );
}

#[test]
fn verbose_shows_the_tke_conversation_and_never_the_api_key_or_token() {
    let ws = Workspace::empty();
    let fleet = fs::read_to_string(repo_file("examples/fleets/three-units.yaml"))
        .unwrap()
        .replace(
            "reports_rotation_status: true",
            "reports_rotation_status: false",
        );
    ws.write(FLEET, &fleet);
    ws.write(
        DESIRED,
        &fs::read_to_string(repo_file("plans/three-units.yaml"))
            .unwrap()
            .replace("sim:../examples/fleets/three-units.yaml", "sim:fleet.yaml"),
    );
    let server = Server::start(
        &ws.path(FLEET),
        "",
        &["--protocol", "tke", "--api-key", API_KEY],
    );
    let run = ws.mkplan_with_env(
        &[
            "-vv",
            "status",
            DESIRED,
            "--backend",
            "tke:us-south",
            "--tke-endpoint",
            &server.url,
        ],
        &[
            ("MKPLAN_IAM_ENDPOINT", server.url.as_str()),
            ("IBMCLOUD_API_KEY", API_KEY),
            TKE_TEST_OA_ROOT,
        ],
    );
    run.expect_code(0);
    for expected in [
        "/identity/token → 200 OK (",
        "IAM gave a token valid for",
        "HTP query to crypto unit",
        "/v1/tke/",
    ] {
        assert!(run.stderr.contains(expected), "{expected}: {}", run.stderr);
    }
    assert_no_secret(&ws, &format!("{}{}", run.stderr, run.stdout));
}

#[test]
fn quiet_keeps_the_report_and_errors_only() {
    let ws = rotate_to_b(&Fleet::instance().units(3, empty(), valid(A)));
    let normal = ws.mkplan(&["plan", DESIRED, "--out", "plan.json"]);
    normal.expect_code(0);
    assert!(
        normal.stderr.contains("Saved the plan"),
        "{}",
        normal.stderr
    );
    let quiet = ws.mkplan(&["-q", "plan", DESIRED, "--out", "plan.json"]);
    quiet.expect_code(0);
    assert_eq!(quiet.stdout, normal.stdout);
    assert_eq!(quiet.stderr, "");
    let apply = ws.mkplan_with_env(
        &["apply", DESIRED, "--auto-approve", "--quiet"],
        &[
            ("MKPLAN_PART1_PASSWORD", DEMO_PASSWORDS[0]),
            ("MKPLAN_PART2_PASSWORD", DEMO_PASSWORDS[1]),
        ],
    );
    apply.expect_code(0);
    // Neither the plan nor the key part check: the outcome (and the one-time note of a new
    // journal key, which the store prints).
    let lines: Vec<&str> = apply
        .stderr
        .lines()
        .filter(|l| !l.starts_with("Made a journal key"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", apply.stderr);
    assert!(
        lines[0].starts_with("Apply complete: 10 steps"),
        "{}",
        apply.stderr
    );
    let missing = ws.mkplan(&["-q", "plan", "nowhere.yaml"]);
    missing.expect_code(1);
    assert!(missing.stderr.starts_with("error:"), "{}", missing.stderr);
}
