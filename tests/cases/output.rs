//! Where mkplan writes and how it ends, as scripts and pipes see it: the report a command
//! exists for on stdout (`status x.yaml | less`, `show plan.json > p.txt`), diagnostics on
//! stderr; a refusal as a Markdown report; usage errors exit 1 so that 2 only ever means
//! "changes"; and a reader that closes the pipe early (`| head -1`) ends mkplan quietly.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use crate::cases::apply::{PASSWORDS, assert_no_incidents};
use crate::support::*;

fn row1() -> Workspace {
    rotate_to_b(&Fleet::instance().key_storage(A).units(3, empty(), valid(A)))
}

#[track_caller]
fn report_on_stdout(run: &Run, words: &str) {
    assert!(
        run.stdout.contains(words),
        "the report ({words:?}) is not on stdout\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        !run.stderr.contains(words),
        "the report ({words:?}) is on stderr too:\n{}",
        run.stderr
    );
}

#[test]
fn reports_go_to_stdout_and_diagnostics_to_stderr() {
    let ws = row1();
    let plan = ws.mkplan(&["plan", DESIRED]);
    plan.expect_code(0);
    report_on_stdout(&plan, "Symbols:");
    report_on_stdout(&plan, "rewrap_key_storage");
    assert_eq!(
        plan.stderr, "",
        "a plan with nothing to report has a quiet stderr"
    );

    let saved = ws.mkplan(&["plan", DESIRED, "--out", "p.json"]);
    saved.expect_code(0);
    report_on_stdout(&saved, "rewrap_key_storage");
    assert!(
        saved.stderr.contains("Saved the plan to p.json"),
        "{}",
        saved.stderr
    );

    let shown = ws.mkplan(&["show", "p.json"]);
    shown.expect_code(0);
    report_on_stdout(&shown, "mkplan plan: saved plan p.json");
    assert_eq!(shown.stderr, "");

    let status = ws.mkplan(&["status", DESIRED]);
    status.expect_code(0);
    report_on_stdout(&status, "Live state from");
    report_on_stdout(&status, &u(3));
    assert_eq!(status.stderr, "");

    let runbook = ws.mkplan(&["runbook", "p.json"]);
    runbook.expect_code(0);
    report_on_stdout(&runbook, "RUNBOOK: master key rotation");
    let markdown = ws.mkplan(&["runbook", "p.json", "--markdown"]);
    markdown.expect_code(0);
    report_on_stdout(&markdown, "# Runbook: master key rotation");
}

#[test]
fn the_drills_summary_is_its_report_unless_json_is_asked_for() {
    let ws = row1();
    let args = ["drill", DESIRED, "--runs", "3", "--seed", "7"];
    let text = ws.mkplan_with_env(&args, &PASSWORDS);
    text.expect_code(0);
    report_on_stdout(&text, "3 runs in");
    // Progress stays on stderr.
    assert!(text.stderr.contains("Drilling"), "{}", text.stderr);
    assert!(!text.stdout.contains("Drilling"), "{}", text.stdout);

    let json = ws.mkplan_with_env(&[&args[..], &["--json"]].concat(), &PASSWORDS);
    json.expect_code(0);
    assert_eq!(json.json()["runs"], 3, "stdout is the JSON document alone");
    assert!(json.stderr.contains("3 runs in"), "{}", json.stderr);
}

/// Row 8 of the scenario table (committed everywhere, no rotation status, no journal):
/// `plan --markdown` prints the refusal for the pull request, and still exits 3.
#[test]
fn a_refused_plan_in_markdown_is_a_report_for_a_pull_request() {
    let ws = rotate_to_b(
        &Fleet::instance()
            .key_storage(A)
            .reports_rotation_status(false)
            .units(3, committed(B), valid(A))
            .and_instance()
            .key_storage(A)
            .unit(empty(), valid(A))
            .unit(empty(), valid(A))
            .imprint(),
    );
    let run = ws.mkplan(&["plan", DESIRED, "--markdown", "--detailed-exitcode"]);
    run.expect_code(3);
    let markdown = &run.stdout;
    assert!(
        markdown.starts_with("### mkplan plan: refused for safety, 2 service instances\n"),
        "{markdown}"
    );
    for words in [
        // The pre-checks, by name and id, per instance.
        &format!("Service instance `{INSTANCE}`"),
        &format!("Service instance `{}`", instance_id(1)),
        "“evidence of whether the rewrap ran” (`rewrap_evidence`)",
        "“no crypto unit in imprint mode” (`admin_mode`)",
        // Each witness's word, as a list.
        "\n- service: does not report its rotation status\n",
        "\n- journal: ",
        "\n- registers: they alone cannot prove it\n",
        // The crypto units and their values, in a table.
        "| crypto unit | type | value |",
        &format!("| `{}` | operational | new Full Committed {B}", u(2)),
        &format!("| `{}` | operational | mode imprint |", hsm(1, 2)),
        // The fix.
        "**Fix:** use the journal of the mkplan run that started this rotation",
        "Nothing was planned and nothing was touched",
    ] {
        assert!(markdown.contains(words), "no {words:?} in\n{markdown}");
    }
    // The error on stderr is the same refusal in words.
    assert!(run.stderr.contains("rewrap_evidence"), "{}", run.stderr);
    assert_no_incidents(&ws, "after the refused plan");
}

#[test]
fn usage_errors_exit_1_so_that_2_only_means_changes() {
    let ws = row1();
    for args in [
        vec!["plan", DESIRED, "--detailed-exitcode", "--no-such-flag"],
        vec!["plan", "--detailed-exitcode"],
        vec!["plan", DESIRED, "--json", "--markdown"],
        vec!["plan", DESIRED, "--parallelism", "0"],
        vec!["no-such-command"],
        vec![],
    ] {
        let run = ws.mkplan(&args);
        assert_eq!(
            run.code,
            1,
            "`mkplan {}` is a usage error: exit 1\n{}",
            args.join(" "),
            run.stderr
        );
        assert!(
            run.stderr.contains("error:") || run.stderr.contains("Usage:"),
            "`mkplan {}`: {}",
            args.join(" "),
            run.stderr
        );
        assert_eq!(run.stdout, "", "`mkplan {}`", args.join(" "));
    }
    // The plan itself still says 2 for changes.
    ws.mkplan(&["plan", DESIRED, "--detailed-exitcode"])
        .expect_code(2);
}

#[test]
fn help_and_version_print_to_stdout_and_exit_0() {
    let ws = Workspace::empty();
    for args in [
        vec!["--help"],
        vec!["plan", "--help"],
        vec!["help", "status"],
        vec!["-h"],
    ] {
        let run = ws.mkplan(&args);
        run.expect_code(0);
        assert!(run.stdout.contains("Usage:"), "{}", run.stdout);
        assert_eq!(run.stderr, "");
    }
    let version = ws.mkplan(&["--version"]);
    version.expect_code(0);
    assert!(version.stdout.starts_with("mkplan "), "{}", version.stdout);
}

// ---------------------------------------------------------------------------------------------
// Closed pipes

/// `mkplan ARGS` in `ws` as the harness runs it, but bare, for the pipe tests.
fn command(ws: &Workspace, args: &[&str]) -> Command {
    let mut command = ws.process(args);
    command.stdin(Stdio::null());
    command
}

/// Runs `mkplan ARGS` with stdout on a pipe whose read end is closed before mkplan starts:
/// its first write fails with EPIPE. The exit code and stderr.
fn with_closed_stdout(ws: &Workspace, args: &[&str]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let output = command(ws, args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run mkplan");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[track_caller]
fn quiet(args: &[&str], stderr: &str) {
    for words in ["panicked", "Broken pipe", "failed printing"] {
        assert!(
            !stderr.contains(words),
            "`mkplan {}` with a closed stdout: {words:?} on stderr:\n{stderr}",
            args.join(" ")
        );
    }
}

/// `mkplan … | head -1` after head has gone: mkplan ends quietly, with the exit code its
/// command would have had (the report was only cut short by its reader).
#[test]
fn a_closed_stdout_ends_quietly_with_the_commands_own_exit_code() {
    let ws = row1();
    ws.mkplan(&["plan", DESIRED, "--out", "p.json"])
        .expect_code(0);
    for (args, code) in [
        (vec!["plan", DESIRED, "--json"], 0),
        (vec!["plan", DESIRED, "--json", "--detailed-exitcode"], 2),
        (vec!["plan", DESIRED], 0),
        (vec!["plan", DESIRED, "--markdown"], 0),
        (vec!["status", DESIRED], 0),
        (vec!["status", DESIRED, "--json"], 0),
        (vec!["show", "p.json"], 0),
        (vec!["show", "p.json", "--dot"], 0),
        (vec!["runbook", "p.json"], 0),
        (vec!["--help"], 0),
        (vec!["--version"], 0),
    ] {
        let (exit, stderr) = with_closed_stdout(&ws, &args);
        quiet(&args, &stderr);
        assert_eq!(exit, code, "`mkplan {}`:\n{stderr}", args.join(" "));
    }
    // A refusal still exits 3, its reason on stderr.
    let refused = rotate_to_b(
        &Fleet::instance()
            .key_storage(A)
            .units(2, empty(), valid(A))
            .unit(empty(), valid(A))
            .imprint(),
    );
    let args = ["plan", DESIRED, "--markdown"];
    let (exit, stderr) = with_closed_stdout(&refused, &args);
    quiet(&args, &stderr);
    assert_eq!(exit, 3, "{stderr}");
    assert!(stderr.contains("admin_mode"), "{stderr}");
}

/// `mkplan plan … --out p.json 2>&1 | head -1`: both streams closed. The plan is still saved
/// and the exit code is the plan's.
#[test]
fn closed_stdout_and_stderr_still_save_the_plan() {
    let ws = row1();
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let status = command(
        &ws,
        &["plan", DESIRED, "--out", "p.json", "--detailed-exitcode"],
    )
    .stderr(writer.try_clone().expect("a second writer"))
    .stdout(writer)
    .status()
    .expect("run mkplan");
    assert_eq!(status.code(), Some(2));
    let saved: serde_json::Value = serde_json::from_str(&ws.read("p.json")).expect("saved");
    assert_well_formed(&saved);
}

/// The real `| head -1`: a plan of 300 instances (far more than a pipe holds), one line read,
/// then the reader goes while mkplan is still writing.
#[test]
fn a_reader_that_stops_after_one_line_ends_mkplan_quietly() {
    let mut fleet = Fleet::instance().key_storage(A).units(3, empty(), valid(A));
    for _ in 1..300 {
        fleet = fleet
            .and_instance()
            .key_storage(A)
            .units(3, empty(), valid(A));
    }
    let ws = rotate_to_b(&fleet);
    for args in [
        vec!["plan", DESIRED, "--json", "--detailed-exitcode"],
        vec!["status", DESIRED],
    ] {
        let mut child = command(&ws, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mkplan");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut first)
            .expect("one line");
        assert!(!first.is_empty());
        // The BufReader, and with it the read end, is gone here.
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("piped")
            .read_to_string(&mut stderr)
            .expect("stderr");
        let code = child.wait().expect("mkplan ends").code();
        quiet(&args, &stderr);
        let expected = if args[0] == "plan" { 2 } else { 0 };
        assert_eq!(
            code,
            Some(expected),
            "`mkplan {}`:\n{stderr}",
            args.join(" ")
        );
    }
}
