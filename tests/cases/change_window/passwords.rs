//! Key part passwords before the approval: a variable the desired file names, or, when it is
//! not set, a prompt on the terminal that does not echo; without a terminal, an error that
//! names the variable, the file and the fix. A wrong password stops the apply before the
//! "yes" prompt, with nothing sent.

use std::time::Duration;

use super::terminal::Terminal;
use crate::cases::apply::{PASSWORDS, assert_no_incidents, three_units};
use crate::support::*;

fn apply_on_a_terminal(ws: &Workspace, passwords: &[(&str, &str)]) -> Terminal {
    let mut command = ws.process(&["apply", DESIRED]);
    command.envs(passwords.iter().copied());
    Terminal::spawn(command)
}

const PROMPT: &str = "Password for key part keyparts/custodian-2.json (custodian of key part VP ";

/// Waits for the password prompt, and for the echo to go off: the prompt is written just
/// before, and on a loaded machine a test can look in between (at most 5 s more).
fn wait_for_the_prompt(terminal: &mut Terminal) {
    terminal.wait_for(PROMPT, Duration::from_secs(30));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while terminal.echoes() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The custodian of part 2 types the password at a prompt that does not echo it; the parts are
/// checked before "Apply these steps?"; Ctrl-C at that prompt cancels with nothing touched.
#[test]
fn a_password_variable_not_set_is_asked_on_the_terminal_before_the_approval() {
    let ws = rotate_to_b(&three_units(true));
    let before = ws.bytes(FLEET);
    let mut terminal = apply_on_a_terminal(&ws, &PASSWORDS[..1]);
    wait_for_the_prompt(&mut terminal);
    terminal.wait_for(
        "MKPLAN_PART2_PASSWORD is not set): ",
        Duration::from_secs(5),
    );
    assert!(!terminal.output().contains("Apply these steps?"));
    terminal.type_text("demo-custodian-2\n");
    terminal.wait_for("Key parts decrypted", Duration::from_secs(30));
    terminal.wait_for("Apply these steps?", Duration::from_secs(5));
    terminal.ctrl_c();
    let (status, output) = terminal.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("apply cancelled by the interrupt at the prompt; nothing was touched"),
        "{output}"
    );
    assert!(
        !output.contains("demo-custodian-2"),
        "the password was echoed:\n{output}"
    );
    assert_eq!(ws.bytes(FLEET), before, "the fleet changed");
    assert!(
        !ws.path(".mkplan/journal.jsonl").exists()
            || !ws.read(".mkplan/journal.jsonl").contains("\"intent\""),
        "an intent was journaled"
    );
}

/// A wrong password typed at the prompt stops the apply before the approval is asked.
#[test]
fn a_wrong_password_at_the_prompt_stops_before_the_approval() {
    let ws = rotate_to_b(&three_units(true));
    let before = ws.bytes(FLEET);
    let mut terminal = apply_on_a_terminal(&ws, &PASSWORDS[..1]);
    wait_for_the_prompt(&mut terminal);
    terminal.type_text("not-the-password\n");
    let (status, output) = terminal.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("key part file keyparts/custodian-2.json"),
        "{output}"
    );
    assert!(!output.contains("Apply these steps?"), "{output}");
    assert!(!output.contains("not-the-password"), "{output}");
    assert_eq!(ws.bytes(FLEET), before, "the fleet changed");
}

/// Ctrl-C at the password prompt (which reads it itself, the echo off) cancels with nothing
/// touched, and leaves the terminal echoing again.
#[test]
fn ctrl_c_at_the_password_prompt_cancels_and_restores_the_terminal() {
    let ws = rotate_to_b(&three_units(true));
    let before = ws.bytes(FLEET);
    let mut terminal = apply_on_a_terminal(&ws, &PASSWORDS[..1]);
    wait_for_the_prompt(&mut terminal);
    assert!(!terminal.echoes(), "the prompt echoes the password");
    terminal.type_text("demo-cus");
    terminal.ctrl_c();
    let (status, output, terminal) = terminal.wait_keeping(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("interrupted at the password prompt; nothing was touched"),
        "{output}"
    );
    assert!(terminal.echoes(), "the terminal was left without echo");
    assert!(!output.contains("demo-cus"), "{output}");
    assert_eq!(ws.bytes(FLEET), before, "the fleet changed");
}

/// Without a terminal, a missing variable is an error that names it, the key part file and
/// the ways to set it that keep the password off the command line.
#[test]
fn a_password_variable_not_set_without_a_terminal_names_the_variable_file_and_fix() {
    let ws = rotate_to_b(&three_units(true));
    let before = ws.bytes(FLEET);
    let run = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS[..1]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    for expected in [
        "key part file keyparts/custodian-2.json",
        "MKPLAN_PART2_PASSWORD (`password_env` in the desired file) is not set",
        "no terminal to ask on",
        "read -rs MKPLAN_PART2_PASSWORD && export MKPLAN_PART2_PASSWORD",
        "Nothing was touched",
    ] {
        assert!(
            run.stderr.contains(expected),
            "{expected:?} in:\n{}",
            run.stderr
        );
    }
    assert!(
        !run.stderr.contains("Password for key part"),
        "{}",
        run.stderr
    );
    assert_eq!(ws.bytes(FLEET), before, "the fleet changed");
    assert_no_incidents(&ws, "missing password");
}

/// Ctrl-C at `keypart new`'s and `keypart vp`'s prompts: before the fix, the prompt's own
/// SIGINT ended mkplan with the terminal's echo still off, and no word. Now it cancels, says
/// so, writes nothing and leaves the terminal echoing.
#[test]
fn ctrl_c_at_a_keypart_prompt_cancels_and_restores_the_terminal() {
    let ws = rotate_to_b(&three_units(true));
    for (args, prompt) in [
        (
            &["keypart", "new", "--out", "keyparts/new.json"][..],
            "Password for the new key part keyparts/new.json: ",
        ),
        (
            &[
                "keypart",
                "vp",
                "keyparts/custodian-1.json",
                "keyparts/custodian-2.json",
            ][..],
            "Password for key part keyparts/custodian-1.json",
        ),
    ] {
        let mut terminal = Terminal::spawn(ws.process(args));
        terminal.wait_for(prompt, Duration::from_secs(30));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while terminal.echoes() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !terminal.echoes(),
            "{args:?}: the prompt echoes the password"
        );
        terminal.type_text("secret-so-far");
        terminal.ctrl_c();
        let (status, output, terminal) = terminal.wait_keeping(Duration::from_secs(10));
        assert_eq!(status.code(), Some(1), "{args:?}: {output}");
        assert!(
            output.contains("interrupted at the password prompt; nothing was touched"),
            "{args:?}: {output}"
        );
        assert!(
            terminal.echoes(),
            "{args:?}: the terminal was left without echo"
        );
        assert!(!output.contains("secret-so-far"), "{args:?}: {output}");
    }
    assert!(
        !ws.path("keyparts/new.json").exists(),
        "keypart new wrote a file"
    );
}
