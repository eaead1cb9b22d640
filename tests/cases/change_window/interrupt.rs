//! Ctrl-C during `apply`, on a real terminal: the first stops it after the steps in flight
//! (journaled, then where it stopped and the command that resumes it), the second exits at
//! once and leaves the open intents for the next run to settle. A backend that dies mid-apply
//! ends with the same resume command. Each resume is run exactly as printed.

use std::time::{Duration, Instant};

use super::terminal::Terminal;
use crate::cases::apply::{PASSWORDS, assert_converged, assert_no_incidents, three_units};
use crate::support::*;

/// `mkplan ARGS` in the workspace, as a user's shell runs it: the passwords in the environment
/// (read from a file, as the README shows), the state directory (MKPLAN_STATE_DIR, which the
/// resume command therefore names) and journal key the workspace's other runs use.
fn mkplan_command(
    ws: &Workspace,
    args: &[&str],
    passwords: &[(&str, &str)],
) -> std::process::Command {
    let mut command = ws.process(args);
    command.envs(passwords.iter().copied());
    command
}

/// The journal's records of one kind.
fn count(ws: &Workspace, kind: &str) -> usize {
    std::fs::read_to_string(ws.path(".mkplan/journal.jsonl"))
        .unwrap_or_default()
        .matches(&format!("\"kind\":\"{kind}\""))
        .count()
}

/// Waits until the journal holds `intents` intents (the steps are sent).
#[track_caller]
fn wait_for_intents(ws: &Workspace, intents: usize, terminal: &Terminal) {
    let started = Instant::now();
    while count(ws, "intent") < intents {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no {intents} intents in the journal; the terminal shows:\n{}",
            terminal.output()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The command after "To resume: " in `output`.
#[track_caller]
fn resume_command(output: &str) -> String {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix("To resume: "))
        .unwrap_or_else(|| panic!("no resume command in:\n{output}"))
        .trim()
        .to_string()
}

/// Runs a printed `mkplan …` command as it stands (the tests' paths need no quoting).
fn run_printed(ws: &Workspace, command: &str) -> Run {
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[0], "mkplan", "{command}");
    let output = mkplan_command(ws, &words[1..], &PASSWORDS)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the resume command");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The demonstration: an apply approved with "yes" on a terminal, against
/// `sim serve --faults latency_ms=2000`, interrupted while its three loads are in flight.
#[test]
fn ctrl_c_lets_the_steps_in_flight_finish_and_the_printed_command_resumes() {
    let ws = rotate_to_b(&three_units(true));
    let server = Server::start(&ws.path(FLEET), "latency_ms=2000", &[]);
    let url = server.url.clone();
    let mut terminal = Terminal::spawn(mkplan_command(
        &ws,
        &["apply", "desired.yaml", "--backend", &url],
        &PASSWORDS,
    ));
    terminal.wait_for("Apply these steps?", Duration::from_secs(30));
    terminal.type_text("yes\n");
    wait_for_intents(&ws, 3, &terminal);
    terminal.ctrl_c();
    terminal.wait_for("Interrupt received", Duration::from_secs(5));
    assert_eq!(count(&ws, "outcome"), 0, "the loads were still in flight");
    let (status, output) = terminal.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("Waiting for the 3 step(s) in flight"),
        "{output}"
    );
    assert!(output.contains("done:         3 of 10 step(s)"), "{output}");
    assert!(
        output.contains("in flight, then done: 3 load_new_mk (s1, s2, s3)"),
        "{output}"
    );
    assert!(
        output.contains("not started:  7 step(s): 3 commit_new_mk (s4, s5, s6), 1 rewrap_key_storage (s7), 3 set_immediate (s8, s9, s10)"),
        "{output}"
    );
    let resume = resume_command(&output);
    assert_eq!(
        resume,
        format!(
            "mkplan apply desired.yaml --auto-approve --backend {url} --state {}",
            ws.path(".mkplan").display()
        )
    );
    // Every intent has its outcome: the interrupt left nothing for the next run to settle.
    assert_eq!(count(&ws, "intent"), 3);
    assert_eq!(count(&ws, "outcome"), 3);
    assert_no_incidents(&ws, "after the interrupt");

    let rerun = run_printed(&ws, &resume);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(
        rerun.stderr.contains("Resuming from the journal"),
        "{}",
        rerun.stderr
    );
    assert!(
        !rerun.stderr.contains("settled from the previous run"),
        "{}",
        rerun.stderr
    );
    assert!(
        rerun.stderr.contains("Apply complete: 7 steps"),
        "{}",
        rerun.stderr
    );
    drop(server);
    assert_converged(&ws, "after the resume");
}

/// A second Ctrl-C exits at once (130), while the loads are still in flight: their intents
/// stay open, and the next run settles them from the live state before it sends anything.
#[test]
fn a_second_ctrl_c_exits_at_once_and_the_next_run_settles_what_was_in_flight() {
    const LATENCY_MS: u64 = 1_500;
    let ws = rotate_to_b(&three_units(true));
    let server = Server::start(&ws.path(FLEET), &format!("latency_ms={LATENCY_MS}"), &[]);
    let url = server.url.clone();
    let mut terminal = Terminal::spawn(mkplan_command(
        &ws,
        &["apply", "desired.yaml", "--backend", &url, "--auto-approve"],
        &PASSWORDS,
    ));
    wait_for_intents(&ws, 3, &terminal);
    terminal.ctrl_c();
    terminal.wait_for("Interrupt received", Duration::from_secs(5));
    terminal.ctrl_c();
    let (status, output) = terminal.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(130), "{output}");
    assert!(
        output.contains("Second interrupt: mkplan exits now"),
        "{output}"
    );
    assert!(!output.contains("To resume"), "{output}");
    assert_eq!(
        (count(&ws, "intent"), count(&ws, "outcome")),
        (3, 0),
        "it exited with the loads in flight"
    );
    // Let the server finish (or drop) the loads it received, then resume.
    std::thread::sleep(Duration::from_millis(LATENCY_MS + 500));
    let rerun = run_printed(
        &ws,
        &format!("mkplan apply desired.yaml --auto-approve --backend {url}"),
    );
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert_eq!(
        rerun
            .stderr
            .matches("settled from the previous run")
            .count(),
        3,
        "{}",
        rerun.stderr
    );
    drop(server);
    assert_converged(&ws, "after the settling run");
}

/// Ctrl-C at a ceremony step's prompt ends the prompt: the step's outcome is unknown (the
/// operator may have done part of it), the resume command keeps --manual, and the next run
/// settles the step from the live state.
#[test]
fn ctrl_c_at_a_ceremony_prompt_stops_and_the_next_run_settles_the_step() {
    let ws = rotate_to_b(&three_units(true));
    let mut terminal = Terminal::spawn(mkplan_command(
        &ws,
        &["apply", "desired.yaml", "--manual", "--auto-approve"],
        &[],
    ));
    terminal.wait_for("Type 'done' when it is done", Duration::from_secs(30));
    terminal.ctrl_c();
    let (status, output) = terminal.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("outcome unknown (the ceremony stopped: interrupted at the prompt"),
        "{output}"
    );
    assert_eq!(
        resume_command(&output),
        format!(
            "mkplan apply desired.yaml --auto-approve --state {} --manual",
            ws.path(".mkplan").display()
        )
    );
    // The loads queued behind it were never shown (journaled as not done).
    assert!(
        output.contains("not started:  9 step(s): 2 load_new_mk (s2, s3), 3 commit_new_mk"),
        "{output}"
    );
    assert!(!output.contains("already stopping"), "{output}");
    assert_eq!((count(&ws, "intent"), count(&ws, "outcome")), (3, 2));
    assert_no_incidents(&ws, "after the interrupted ceremony");

    // The operator decides to let mkplan send the rest.
    let rerun = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert_eq!(
        rerun
            .stderr
            .matches("settled from the previous run")
            .count(),
        1,
        "{}",
        rerun.stderr
    );
    assert_converged(&ws, "after the rerun");
}

/// The backend dies in the middle of the apply: the error ends with the command that resumes
/// it, and that command converges once the service is back.
#[test]
fn a_backend_that_dies_mid_apply_ends_with_the_resume_command() {
    let ws = rotate_to_b(&three_units(true));
    let server = Server::start(&ws.path(FLEET), "crash_after_op=4,latency_ms=100", &[]);
    let url = server.url.clone();
    let run = ws.mkplan_with_env(
        &["apply", DESIRED, "--auto-approve", "--backend", &url],
        &PASSWORDS,
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let last = run.stderr.trim_end().lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!(
            "To resume: mkplan apply desired.yaml --auto-approve --backend {url} --state {}",
            ws.path(".mkplan").display()
        ),
        "{}",
        run.stderr
    );
    drop(server);
    assert_no_incidents(&ws, "after the crash");
    let _back = Server::start_on(&ws.path(FLEET), "", &[], url.trim_start_matches("http://"));
    let rerun = run_printed(&ws, &resume_command(&run.stderr));
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert_converged(&ws, "after the resume");
}
