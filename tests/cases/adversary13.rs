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
//!
//! Round 14, F1 and F2: a database command with no key keeps its head beside the key's
//! default place (`$XDG_CONFIG_HOME/mkplan/heads`); a folder whose key was elsewhere (on a
//! USB stick) never read it, took `attest --not-run` and rewrapped again. Now the database
//! heads are asked wherever a command keeps them.
//!
//! Round 15, F1: `state push` left no database head. The pushed folder was removed, and its
//! head with it (the refusal's own advice, once no rewrap "it sent" could land); the
//! database's unanswered rewrap was then asked by nobody, `attest --not-run` was taken and a
//! second rewrap lost the key storage. Now a push leaves the database's head.

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

#[test]
fn a_folder_with_its_key_elsewhere_asks_the_database_a_keyless_command_wrote() {
    let Some(url) = crate::support::postgres::database() else {
        return;
    };
    let ws = rotate_to_b(&three_units(false));
    let config = ws.path("config");
    let config = config.display().to_string();
    // The database command looks for the key at its default place, where there is none.
    let default_key = format!("{config}/mkplan/journal.key");
    let mut env = PASSWORDS.to_vec();
    env.extend([
        ("MKPLAN_SIM_FAULTS", "lose_response_op=7"),
        ("XDG_CONFIG_HOME", config.as_str()),
        ("MKPLAN_JOURNAL_KEY", default_key.as_str()),
    ]);
    let first = in_folder(
        &ws,
        &url,
        &["apply", DESIRED, "--auto-approve", "--parallelism", "1"],
        &env,
    );
    assert_says(&first, 1, &["outcome is unknown"], "the database's apply");
    assert!(
        !std::path::Path::new(&default_key).exists(),
        "no key was made"
    );
    let before = ws.bytes(FLEET);
    let shown = url.rsplit_once('/').map(|(_, name)| name).unwrap();

    // The same user in a folder, with the key kept elsewhere (the workspace's).
    let elsewhere = [("XDG_CONFIG_HOME", config.as_str())];
    let attest = in_folder(&ws, "s2", &NOT_RUN, &elsewhere);
    assert_says(&attest, 3, &["team database", shown], "s2's attest");
    let plan = in_folder(&ws, "s2", &["plan", DESIRED], &elsewhere);
    assert_says(
        &plan,
        3,
        &["rewrap_evidence", "team database", shown],
        "s2's plan",
    );
    let status = in_folder(&ws, "s2", &["status", DESIRED], &elsewhere);
    assert_says(&status, 0, &["Other witnesses", shown], "s2's status");
    assert_eq!(ws.bytes(FLEET), before, "nothing was sent");
    assert_no_incidents(&ws, "a folder with its key elsewhere");
}

#[test]
fn a_pushed_folders_unanswered_rewrap_is_asked_of_the_database_once_the_folder_is_gone() {
    let Some(url) = crate::support::postgres::database() else {
        return;
    };
    let ws = rotate_to_b(&three_units(false));
    rewrap_unanswered_in(&ws, "s1");
    let s1 = ws.path("s1");
    let s1_text = s1.canonicalize().unwrap().display().to_string();
    let push = in_folder(&ws, &url, &["state", "push", "--from", &s1_text], &[]);
    assert_eq!(push.code, 0, "{}", said(&push));
    // The folder removed, and its head with it: the operator's word that the folder is gone.
    std::fs::remove_dir_all(&s1).unwrap();
    for entry in std::fs::read_dir(ws.heads())
        .unwrap()
        .filter_map(Result::ok)
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if text.contains(&format!("\"state_dir\":\"{s1_text}\"")) {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let before = ws.bytes(FLEET);
    let shown = url.rsplit_once('/').map(|(_, name)| name).unwrap();
    let attest = in_folder(&ws, "s2", &NOT_RUN, &[]);
    assert_says(&attest, 3, &["team database", shown], "s2's attest");
    let apply = in_folder(&ws, "s2", &["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_says(&apply, 3, &["rewrap_evidence", shown], "s2's apply");
    assert_eq!(ws.bytes(FLEET), before, "nothing was sent");
    assert_no_incidents(&ws, "after the push and the folder's removal");
}
