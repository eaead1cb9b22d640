//! Regressions from the seventh adversarial review (/work/adv/repro7): witnesses a journal
//! cannot hear. A state folder whose path changed spelling under it, a database reached
//! through two endpoints of one service, a clear done by hand that may still land. Every
//! test runs the binary and checks the simulator's incidents where anything was applied.

use crate::cases::adversary3::assert_says;
use crate::cases::adversary4::in_folder;
use crate::cases::apply::{PASSWORDS, assert_no_incidents, three_units};
use crate::cases::security_journal::NOT_RUN;
use crate::support::*;

/// C2. Folder `work/fleet-x/.mkplan` sent the rewrap A → B and its answer was lost. Then the
/// project folder moves and a symlink keeps its old path working (`mv work projects && ln -s
/// projects work`). The folder's head, named after the old path, no longer matched the name
/// its recorded path gives, and was skipped without a word: a colleague's fresh folder took
/// "nobody rewrapped" on its operator's word and rewrapped a second time. Now that folder is
/// read where the head says it is, and its unanswered rewrap refuses the attestation and the
/// plan.
#[cfg(unix)]
#[test]
fn a_folder_whose_parent_moved_behind_a_symlink_is_still_asked() {
    let ws = rotate_to_b(&three_units(false));
    std::fs::create_dir_all(ws.path("work/fleet-x")).unwrap();
    crate::cases::adversary4::rewrap_unanswered_in(&ws, "work/fleet-x/.mkplan");
    std::fs::rename(ws.path("work"), ws.path("projects")).unwrap();
    std::os::unix::fs::symlink(ws.path("projects"), ws.path("work")).unwrap();
    let s1 = ws
        .path("projects/fleet-x/.mkplan")
        .canonicalize()
        .unwrap()
        .display()
        .to_string();
    let before = ws.bytes(FLEET);
    let attest = in_folder(&ws, "s2", &NOT_RUN, &[]);
    assert_says(&attest, 3, &["refused", &s1], "s2's attestation");
    let plan = in_folder(&ws, "s2", &["plan", DESIRED], &[]);
    assert_says(&plan, 3, &["rewrap_evidence", &s1], "s2's plan");
    let apply = in_folder(&ws, "s2", &["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_says(&apply, 3, &["rewrap_evidence"], "s2's apply");
    assert_eq!(
        ws.bytes(FLEET),
        before,
        "a refused command touched the fleet"
    );
    assert_no_incidents(&ws, "after the move");
}

/// A1. On a team database, one service instance reached as two backend identities (the TKE
/// API's public and private endpoints; here a rehearsal copy of the fleet, the same instance
/// id) is two scopes. One sent the rewrap and its answer was lost; the other's journal never
/// heard of it, took "nobody rewrapped" on its operator's word, and rewrapped again. Now the
/// database's other scopes are witnesses as another state folder is: the attestation and the
/// plan are refused, naming that scope.
#[test]
fn a_rewrap_left_unanswered_under_another_identity_in_the_database_refuses() {
    let Some(url) = crate::support::postgres::database() else {
        return;
    };
    let mut ws = rotate_to_b(&three_units(false));
    ws.store = Some(url);
    crate::cases::adversary4::with_a_rehearsal(&ws);
    let mut env = PASSWORDS.to_vec();
    env.push(("MKPLAN_SIM_FAULTS", "lose_response_op=7"));
    let first = ws.mkplan_with_env(
        &[
            "apply",
            "rehearsal-desired.yaml",
            "--auto-approve",
            "--parallelism",
            "1",
        ],
        &env,
    );
    assert_says(
        &first,
        1,
        &["outcome is unknown"],
        "the other identity's rewrap",
    );
    let before = ws.bytes(FLEET);
    let attest = ws.mkplan_with_env(&NOT_RUN, &[]);
    assert_says(
        &attest,
        3,
        &["refused", "another backend identity", "rehearsal.yaml"],
        "the attestation",
    );
    let plan = ws.mkplan_with_env(&["plan", DESIRED], &[]);
    assert_says(
        &plan,
        3,
        &["rewrap_evidence", "another backend identity", "--backend"],
        "the plan",
    );
    let apply = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_says(&apply, 3, &["rewrap_evidence"], "the apply");
    assert_eq!(
        ws.bytes(FLEET),
        before,
        "a refused command touched the fleet"
    );
    assert_no_incidents(&ws, "after the refusals");
}

/// D1. `apply --manual`: the operator is shown the clear of unit 3's new register (a stale key
/// C), starts it with the TKE CLI, and mkplan dies before their answer. A clear the TKE CLI
/// sends names no key, so if it is still on its way it clears whatever the register holds when
/// it lands. The rerun used to settle the step "had no effect" from one read, then load,
/// commit and rewrap, and the late clear took the new master key from that unit after the
/// rewrap. Now the rerun refuses (exit 3) and sends nothing; once the register shows empty
/// (the clear landed, or the operator cleared that unit again), it settles the step and the
/// rotation converges.
#[test]
fn a_clear_by_hand_left_unanswered_refuses_the_rerun_until_the_register_is_empty() {
    use crate::cases::ceremony::{Asked, Ceremony, perform};
    let fleet = Fleet::instance()
        .key_storage(A)
        .reports_rotation_status(true)
        .units(2, empty(), valid(A))
        .unit(uncommitted(C), valid(A));
    let ws = rotate_to_b(&fleet);
    let mut ceremony = Ceremony::start(&ws, &["--manual", "--parallelism", "1"]);
    loop {
        let asked = ceremony
            .next()
            .expect("mkplan shows the clear before it ends");
        if matches!(&asked, Asked::Step { action, .. } if action == "clear_new_mk") {
            break;
        }
        perform(&ws, &asked, B);
        ceremony.answer("done");
    }
    // The operator's TKE CLI clear is on its way; mkplan dies.
    ceremony.kill();
    let before = ws.bytes(FLEET);
    let rerun = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_says(
        &rerun,
        3,
        &[
            "(clear_new_mk on crypto unit",
            "names no key",
            "Evidence that would settle it",
            "selecting that crypto unit only",
        ],
        "the rerun",
    );
    assert_eq!(
        ws.bytes(FLEET),
        before,
        "the refused rerun touched the fleet"
    );
    crate::cases::witnesses::operator(&ws, FLEET, &[crate::cases::witnesses::clear_new(&u(3))]);
    let again = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_says(
        &again,
        0,
        &["took effect"],
        "the rerun once the register is empty",
    );
    assert_no_incidents(&ws, "after the clear landed");
}

/// B1. A state home kept elsewhere through a symlink (`~/.local/state -> /data/me/state`,
/// the folder the user's alone) refused every command, saying the link (mode 777, as every
/// link) was not the user's alone and suggesting a `chmod` that changes nothing. Now the
/// folder the link leads to is checked, and the rotation runs; one that others can write is
/// still refused, named where it is.
#[cfg(unix)]
#[test]
fn a_state_home_kept_elsewhere_through_a_symlink_is_checked_where_it_leads() {
    use std::os::unix::fs::PermissionsExt;
    let ws = rotate_to_b(&three_units(false));
    let real = ws.path("real-state");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&real, ws.path("state-link")).unwrap();
    let link = ws.path("state-link").display().to_string();
    let env = |extra: &[(&'static str, &'static str)]| {
        let mut env: Vec<(&str, &str)> = extra.to_vec();
        env.push(("XDG_STATE_HOME", link.as_str()));
        env
    };
    let plan = ws.mkplan_with_env(&["plan", DESIRED], &env(&[]));
    assert_says(&plan, 0, &["Plan:"], "plan with a linked state home");
    let apply = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &env(&PASSWORDS));
    assert_says(
        &apply,
        0,
        &["Apply complete"],
        "apply with a linked state home",
    );
    assert!(
        real.join("mkplan/heads").is_dir(),
        "the heads live where the link leads"
    );
    assert_no_incidents(&ws, "after the apply");
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).unwrap();
    let shown = real.canonicalize().unwrap().display().to_string();
    let refused = ws.mkplan_with_env(&["plan", DESIRED], &env(&[]));
    assert_ne!(
        refused.code,
        0,
        "{}",
        crate::cases::adversary3::said(&refused)
    );
    for words in ["not yours alone", &shown, "through"] {
        assert!(
            crate::cases::adversary3::said(&refused).contains(words),
            "{words}: {}",
            crate::cases::adversary3::said(&refused)
        );
    }
}

/// S3. A custodian's password written where the key part file's path belongs was printed by
/// `validate` and `plan`, in the message and again in the line shown under it. Now a `file:`
/// that names nothing is placed (file, line, column) and its value is not shown.
#[test]
fn a_password_written_as_a_key_part_files_path_is_never_shown() {
    let ws = rotate_to_b(&three_units(false));
    let secret = DEMO_PASSWORDS[0];
    ws.write(
        DESIRED,
        &ws.read(DESIRED).replace(
            "file: keyparts/custodian-1.json",
            &format!("file: \"{secret}\""),
        ),
    );
    for command in ["validate", "plan"] {
        let run = ws.mkplan(&[command, DESIRED]);
        let shown = crate::cases::adversary3::said(&run);
        assert_eq!(run.code, 1, "{command}: {shown}");
        assert!(
            shown.contains("desired.yaml:") && shown.contains("its value is not shown"),
            "{command}: {shown}"
        );
        assert!(
            !shown.contains(secret),
            "{command} showed the password: {shown}"
        );
    }
}

/// A2. Two applies on one database through two backend identities of one instance (the TKE
/// API's public and private endpoints) each took a lease: a lease overlapped only its own
/// scope's. Now a live lease another service scope holds on the same instance id refuses the
/// apply, naming its holder, and nothing is sent.
#[test]
fn a_live_lease_through_another_identity_of_the_instance_refuses_the_apply() {
    use crate::support::postgres::execute;
    let Some(url) = crate::support::postgres::database() else {
        return;
    };
    let mut ws = rotate_to_b(&three_units(false));
    ws.store = Some(url.clone());
    // Any command makes the schema.
    ws.mkplan(&["plan", DESIRED]).expect_code(0);
    execute(
        &url,
        &format!(
            "INSERT INTO mkplan_leases (id, scope, instances, fence, command, holder, host, host_id, pid, expires) \
             VALUES ('private-endpoint-lease', 'tke:us-south (https://private.us-south.example)', \
             ARRAY['{}'], nextval('mkplan_fence'), 'apply', 'op1', 'jump-host', 'another-machine', 4242, \
             clock_timestamp() + interval '1 hour')",
            INSTANCE.to_lowercase()
        ),
    );
    let before = ws.bytes(FLEET);
    let refused = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_ne!(refused.code, 0, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("another writer holds")
            && refused.stderr.contains("private-endpoint-lease")
            && refused.stderr.contains("jump-host"),
        "the refusal names the holder: {}",
        refused.stderr
    );
    assert_eq!(ws.bytes(FLEET), before, "a refused apply touched the fleet");
    // Once it is gone (released, or expired: another scope's expired lease is left to its
    // own scope), the apply runs.
    execute(
        &url,
        "UPDATE mkplan_leases SET expires = clock_timestamp() - interval '1 second'",
    );
    ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS)
        .expect_code(0);
    assert_no_incidents(&ws, "after the other lease expired");
}
