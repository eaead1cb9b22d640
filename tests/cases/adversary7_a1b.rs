//! Regression from the seventh adversarial review (/work/adv/repro7, A1b): a state folder
//! never asked the team database its own user writes from the same machine.

use crate::cases::adversary3::assert_says;
use crate::cases::adversary4::in_folder;
use crate::cases::apply::{PASSWORDS, assert_no_incidents, three_units};
use crate::cases::security_journal::NOT_RUN;
use crate::support::*;

/// A password that would be shown if a message took the database's URL as typed.
const PASSWORD: &str = "S3cretPW";

/// A workspace rotating A → B whose apply on the database `store` sent the rewrap and lost
/// its answer after the service ran it (exit 1, the outcome unknown); and that apply.
pub(crate) fn rewrap_unanswered_on(store: String) -> (Workspace, Run) {
    let mut ws = rotate_to_b(&three_units(false));
    ws.store = Some(store);
    let mut env = PASSWORDS.to_vec();
    env.push(("MKPLAN_SIM_FAULTS", "lose_response_op=7"));
    let first = ws.mkplan_with_env(
        &["apply", DESIRED, "--auto-approve", "--parallelism", "1"],
        &env,
    );
    assert_says(&first, 1, &["outcome is unknown"], "op1's rewrap");
    (ws, first)
}

/// A1b. op1 applies on the team database (`MKPLAN_STATE=postgres://…`, a password in the URL)
/// and its rewrap's answer is lost. op2, the same user on the same machine with the same
/// journal key, uses a state folder: its plan, `attest --not-run` and apply read only the
/// other state folders, took "nobody rewrapped" on the operator's word and rewrapped again.
/// Now a folder's command asks every database its user's journal heads name: each is refused,
/// naming the database (never its password) and how to settle it there. Once the database
/// cannot be reached, the refusal stays and says what would settle it.
#[test]
fn a_folder_asks_the_team_database_its_user_wrote_from_this_machine() {
    let Some(url) = crate::support::postgres::database() else {
        return;
    };
    let (shown, name) = url.rsplit_once('/').expect("a URL with a database");
    let shown = format!("{shown}/{name}");
    let (ws, first) = rewrap_unanswered_on(url.replacen('@', &format!(":{PASSWORD}@"), 1));
    let before = ws.bytes(FLEET);
    let settle_there = format!("--state {shown}");
    let attest = in_folder(&ws, "s2", &NOT_RUN, &[]);
    assert_says(
        &attest,
        3,
        &["refused", "team database", &shown, &settle_there],
        "op2's attestation",
    );
    let plan = in_folder(&ws, "s2", &["plan", DESIRED], &[]);
    assert_says(
        &plan,
        3,
        &["rewrap_evidence", "team database", &settle_there],
        "op2's plan",
    );
    let apply = in_folder(&ws, "s2", &["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_says(&apply, 3, &["rewrap_evidence"], "op2's apply");
    // The database cannot be reached any more: never "no evidence".
    let server = std::env::var("MKPLAN_TEST_POSTGRES").expect("a test server");
    crate::support::postgres::execute(&server, &format!("DROP DATABASE {name} WITH (FORCE)"));
    let plan = in_folder(&ws, "s2", &["plan", DESIRED], &[]);
    assert_says(
        &plan,
        3,
        &["rewrap_evidence", "cannot be read", &shown, "PGPASSWORD"],
        "op2's plan, the database gone",
    );
    let attest = in_folder(&ws, "s2", &NOT_RUN, &[]);
    assert_says(
        &attest,
        3,
        &["refused", "cannot be read", &shown, "remove its heads"],
        "op2's attestation, the database gone",
    );
    for run in [&first, &attest, &plan, &apply] {
        let text = crate::cases::adversary3::said(run);
        assert!(!text.contains(PASSWORD), "the password was shown:\n{text}");
    }
    assert_eq!(
        ws.bytes(FLEET),
        before,
        "a refused command touched the fleet"
    );
    assert_no_incidents(&ws, "after the refusals");
}
