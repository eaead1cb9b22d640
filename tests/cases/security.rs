//! What someone who can write a file near the user can make mkplan do (issue: security).
//! Each test plants the attack and shows it refused, with nothing sent and nothing
//! overwritten.

use std::os::unix::fs::PermissionsExt;

use crate::cases::apply::{PASSWORDS, three_units};
use crate::support::*;

/// A repository that ships a `.mkplan/` folder whose `lock`, `journal.jsonl` or
/// `audit.jsonl` is a symlink to a file of the user's: mkplan never writes (or reads)
/// through it, refuses with the file named, and sends nothing.
#[test]
fn a_symlink_planted_in_the_state_folder_is_never_followed() {
    for planted in ["lock", "journal.jsonl", "audit.jsonl"] {
        let ws = rotate_to_b(&three_units(true));
        let state = ws.path(".mkplan");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        ws.write("victim", "the user's precious file\n");
        std::os::unix::fs::symlink(ws.path("victim"), state.join(planted)).unwrap();
        let fleet = ws.bytes(FLEET);
        let run = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
        assert_ne!(run.code, 0, "{planted}: {}", run.stderr);
        assert!(run.stderr.contains("symlink"), "{planted}: {}", run.stderr);
        assert_eq!(
            ws.read("victim"),
            "the user's precious file\n",
            "{planted} was written through"
        );
        assert_eq!(ws.bytes(FLEET), fleet, "{planted}: the fleet was touched");
    }
}

/// A state folder that its group or others may write, or that is itself a symlink, is
/// refused (with the fix) before anything is read from it or sent.
#[test]
fn a_state_folder_others_may_write_is_refused() {
    let ws = rotate_to_b(&three_units(true));
    let state = ws.path(".mkplan");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let fleet = ws.bytes(FLEET);
    let run = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    // The same refusal, exit 3, from a command that writes as from one that reads.
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("chmod go-w"), "{}", run.stderr);
    assert_eq!(ws.bytes(FLEET), fleet);
    let plan = ws.mkplan(&["plan", DESIRED]);
    assert_eq!(plan.code, 3, "{}", plan.stderr);
    let elsewhere = ws.path("real-state");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, ws.path("linked-state")).unwrap();
    let linked = ws.mkplan_with_env(
        &[
            "--state-dir",
            "linked-state",
            "apply",
            DESIRED,
            "--auto-approve",
        ],
        &PASSWORDS,
    );
    assert_eq!(linked.code, 3, "{}", linked.stderr);
    assert!(linked.stderr.contains("is a symlink"), "{}", linked.stderr);
    assert_eq!(ws.bytes(FLEET), fleet);
}

/// mkplan makes its state folder 0700 and its files 0600.
#[test]
fn the_state_folder_and_its_files_are_private() {
    let ws = rotate_to_b(&three_units(true));
    ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS)
        .expect_code(0);
    let mode = |name: &str| {
        std::fs::metadata(ws.path(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(".mkplan"), 0o700);
    for file in ["lock", "journal.jsonl", "audit.jsonl"] {
        assert_eq!(mode(&format!(".mkplan/{file}")), 0o600, "{file}");
    }
}

/// A saved plan whose `backend` was changed to another server (a logging listener on
/// loopback stands in for it): `apply PLANFILE` takes its backend from the desired file or the
/// command line, never from the plan, refuses the mismatch (exit 4), and sends nothing, key
/// parts included, to the other server.
#[test]
fn a_saved_plan_naming_another_server_sends_nothing_there() {
    let ws = rotate_to_b(&three_units(true));
    ws.mkplan(&["plan", DESIRED, "--out", "plan.json"])
        .expect_code(0);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut plan: serde_json::Value = serde_json::from_str(&ws.read("plan.json")).unwrap();
    plan["backend"] = url.clone().into();
    plan["backend_identity"] = url.clone().into();
    ws.write("plan.json", &plan.to_string());
    let fleet = ws.bytes(FLEET);
    let run = ws.mkplan_with_env(&["apply", "plan.json"], &PASSWORDS);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains(&url), "{}", run.stderr);
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "mkplan connected to the server named by the plan file"
    );
    assert_eq!(ws.bytes(FLEET), fleet, "the fleet was touched");
}
