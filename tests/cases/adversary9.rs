//! Regression from the ninth adversarial review, HPCS side (/work/adv/repro9, K1): a command
//! whose store is a team database never asked the other databases its user wrote from the
//! same machine (a state folder's did, since A1b), so a rewrap left unanswered in one
//! database was sent again through another, exit 0. A database is told from itself under
//! another spelling by what it holds.

use crate::cases::adversary3::assert_says;
use crate::cases::adversary7_a1b::rewrap_unanswered_on;
use crate::cases::apply::{PASSWORDS, assert_no_incidents};
use crate::cases::security_journal::NOT_RUN;
use crate::support::*;

#[test]
fn a_database_asks_the_other_team_databases_its_user_wrote_from_this_machine() {
    let (Some(mk), Some(mk2)) = (
        crate::support::postgres::database(),
        crate::support::postgres::database(),
    ) else {
        return;
    };
    let (ws, _) = rewrap_unanswered_on(mk.clone());
    let before = ws.bytes(FLEET);
    let in_db = |state: &str, args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["--state", state];
        all.extend_from_slice(args);
        ws.mkplan_with_env(&all, env)
    };
    let attest = in_db(&mk2, &NOT_RUN, &[]);
    assert_says(
        &attest,
        3,
        &["refused", "team database", &mk],
        "op2's attestation in the other database",
    );
    let plan = in_db(&mk2, &["plan", DESIRED], &[]);
    assert_says(
        &plan,
        3,
        &["rewrap_evidence", "team database", &mk],
        "op2's plan in the other database",
    );
    let apply = in_db(&mk2, &["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_says(&apply, 3, &["rewrap_evidence"], "op2's apply");
    // The first database under another spelling is no other witness: its own journal
    // refuses, as it always did, never naming itself as another database.
    let respelled = mk.replacen("127.0.0.1", "localhost", 1);
    assert_ne!(respelled, mk, "the test server is reached at 127.0.0.1");
    let plan = in_db(&respelled, &["plan", DESIRED], &[]);
    let said = crate::cases::adversary3::said(&plan);
    assert_eq!(plan.code, 3, "{said}");
    assert!(!said.contains("team database"), "{said}");
    assert_eq!(
        ws.bytes(FLEET),
        before,
        "a refused command touched the fleet"
    );
    assert_no_incidents(&ws, "after the refusals");
}
