//! Adversarial round 12 (HPCS), through the binary where the effect shows there. F1 (a rewrap
//! never answered, of another rotation or under another identity of the service, forgotten by
//! the service's "no rewrap" and by `attest --not-run`) is covered where the rules live:
//! `plan::evidence_tests::an_unanswered_rewrap_under_another_identity_outweighs_the_words_of_
//! the_moment` and `apply::attest::tests::not_run_is_refused_while_a_rewrap_of_another_
//! rotation_from_the_same_key_is_unanswered` (its queued landing needs a server that moves
//! under a running rotation). F2: `sim serve` through a symbolic link to the fleet file locked,
//! logged and compacted beside the link, so a `sim:` of the fleet itself did not wait for it,
//! and the server's changes landed in a copy at the link's place.

use crate::cases::apply::{PASSWORDS, assert_no_incidents, three_units};
use crate::support::*;

#[test]
fn sim_serve_through_a_symbolic_link_locks_and_writes_the_fleet_file_itself() {
    let ws = rotate_to_b(&three_units(false));
    let link = ws.path("link.yaml");
    std::os::unix::fs::symlink(ws.path(FLEET), &link).unwrap();
    let mut server = Server::start(&link, "", &[]);
    // The fleet itself is in use: a second server on it is refused, as on the link.
    let second = std::process::Command::new(assert_cmd::cargo::cargo_bin("mkplan"))
        .args(["sim", "serve", "--listen", "127.0.0.1:0", "--fleet"])
        .arg(ws.path(FLEET))
        .env_remove("MKPLAN_SIM_TOKENS")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        !second.status.success(),
        "a second server on the fleet started"
    );
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("in use by another process"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let mut env = PASSWORDS.to_vec();
    env.push(("MKPLAN_BACKEND", server.url.as_str()));
    let run = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(server.stop().success());
    // The link is still a link, and the fleet file holds every change.
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let plan = ws.mkplan_with_env(&["plan", DESIRED, "--detailed-exitcode"], &PASSWORDS);
    assert_eq!(
        plan.code, 0,
        "the fleet file holds the rotation: {}",
        plan.stderr
    );
    assert_no_incidents(&ws, "sim serve through a link");
}
