//! Regressions from the thirteenth adversarial review, HPCS side (/work/adv/r13).
//!
//! F3: folder s1's rewrap went unanswered. A command that finds no journal key where it
//! looks (the key moved away after a suspected leak, another MKPLAN_JOURNAL_KEY, a database
//! command, which never makes one) read only the database heads beside the key's place, and
//! with no place for a key at all (no HOME) it asked nobody: `attest --not-run` against the
//! team database was taken, and the next apply rewrapped a second time. Now every folder head
//! kept under any key id is asked, and with neither XDG_STATE_HOME nor HOME every folder may
//! hold a rewrap.
//!
//! F1: `status` in another folder showed "Open rotations: none recorded" while s1's rewrap
//! was never answered; an operator who trusted it cleared the new registers by hand. Now
//! `status` lists what the other folders say, and warns against by-hand steps until settled.

use crate::cases::adversary3::{assert_says, said};
use crate::cases::adversary4::{in_folder, rewrap_unanswered_in};
use crate::cases::apply::{PASSWORDS, assert_no_incidents, three_units};
use crate::cases::security_journal::NOT_RUN;
use crate::support::*;

#[test]
fn a_database_command_without_a_journal_key_asks_the_folders_sealed_with_one() {
    let Some(url) = crate::support::postgres::database() else {
        return;
    };
    let ws = rotate_to_b(&three_units(false));
    rewrap_unanswered_in(&ws, "s1");
    // Moved away after a suspected leak; a database command makes no new one.
    std::fs::rename(ws.journal_key(), ws.path("journal.key.leaked")).unwrap();
    let s1 = ws.path("s1").canonicalize().unwrap().display().to_string();
    let before = ws.bytes(FLEET);

    let attest = in_folder(&ws, &url, &NOT_RUN, &[]);
    assert_says(&attest, 3, &[&s1, "no journal key is here"], "attest");
    let plan = in_folder(&ws, &url, &["plan", DESIRED], &[]);
    assert_says(&plan, 3, &["rewrap_evidence", &s1], "plan");
    let apply = in_folder(&ws, &url, &["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_says(&apply, 3, &["rewrap_evidence", &s1], "apply");
    assert_eq!(ws.bytes(FLEET), before, "nothing was sent");
    assert_no_incidents(&ws, "a database command without a key");
}

#[test]
fn a_command_with_another_journal_key_path_asks_the_folders_sealed_with_the_usual_one() {
    let ws = rotate_to_b(&three_units(false));
    rewrap_unanswered_in(&ws, "s1");
    let s1 = ws.path("s1").canonicalize().unwrap().display().to_string();
    let elsewhere = ws.path("keys/journal.key").display().to_string();
    let plan = in_folder(
        &ws,
        "s2",
        &["plan", DESIRED],
        &[("MKPLAN_JOURNAL_KEY", &elsewhere)],
    );
    assert_says(
        &plan,
        3,
        &["rewrap_evidence", &s1, "no journal key is here"],
        "s2's plan",
    );
    assert!(!said(&plan).contains("Plan:"), "{}", said(&plan));
}

#[test]
fn without_home_or_state_home_every_folder_may_hold_a_rewrap() {
    let Some(url) = crate::support::postgres::database() else {
        return;
    };
    let ws = rotate_to_b(&three_units(false));
    rewrap_unanswered_in(&ws, "s1");
    let before = ws.bytes(FLEET);
    let run = |args: &[&str]| {
        let mut command = ws.process(args);
        command
            .env("MKPLAN_STATE", &url)
            .env_remove("MKPLAN_STATE_DIR")
            .env_remove("MKPLAN_JOURNAL_KEY")
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("HOME");
        let output = command.output().expect("mkplan runs");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    };
    let attest = run(&NOT_RUN);
    assert_says(
        &attest,
        3,
        &["neither XDG_STATE_HOME nor HOME is set", "with HOME"],
        "attest without HOME",
    );
    let plan = run(&["plan", DESIRED]);
    assert_says(&plan, 3, &["rewrap_evidence", "HOME"], "plan without HOME");
    assert_eq!(ws.bytes(FLEET), before, "nothing was sent");
    assert_no_incidents(&ws, "commands without HOME");
}

#[test]
fn status_shows_another_folders_unanswered_rewrap_and_warns_against_steps_by_hand() {
    let ws = rotate_to_b(&three_units(false));
    rewrap_unanswered_in(&ws, "s1");
    let s1 = ws.path("s1").canonicalize().unwrap().display().to_string();
    let status = in_folder(&ws, "s2", &["status", DESIRED], &[]);
    assert_says(
        &status,
        0,
        &[
            "Open rotations: none recorded",
            "Other witnesses",
            &s1,
            "never answered",
            "clear no new register and make no set immediate by hand",
        ],
        "s2's status",
    );
    let json = in_folder(&ws, "s2", &["status", DESIRED, "--json"], &[]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let witnesses = value["state"]["other_witnesses"].as_array().unwrap();
    assert_eq!(witnesses.len(), 1, "{value}");
    assert_eq!(witnesses[0]["rewrap"], "unknown");
    assert_eq!(witnesses[0]["instance"], INSTANCE);
    assert!(witnesses[0]["said"].as_str().unwrap().contains(&s1));
    // s1's own status speaks of its own journal, not of itself as another folder.
    let own = in_folder(&ws, "s1", &["status", DESIRED], &[]);
    assert_eq!(own.code, 0, "{}", own.stderr);
    assert!(!own.stdout.contains("Other witnesses"), "{}", own.stdout);
    assert_no_incidents(&ws, "status");
}
