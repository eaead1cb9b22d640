//! The fake platform's stores besides zkey's, driven through the world's `bin` scripts: an
//! openCryptoki token moved by the fake `pkcshsm_mk_change` (which logs in to each affected
//! slot with a USER PIN read from stdin, as the real one does), and an application key
//! declared with its own commands (the fake `appkey`).

use crate::cases::zcrypt_fake::{A, B, EP11_APQNS, ZWorld, ep11_only_world, unpin_config};

#[test]
fn pkcshsm_mk_change_checks_the_token_and_cancels_only_before_the_set() {
    let world = ZWorld::example();
    let unloaded = world.tool(
        "pkcshsm_mk_change",
        &["reencipher", "--apqns", EP11_APQNS, "--ep11-wkvp", &B[..32]],
    );
    unloaded.expect_code(1);
    assert!(
        unloaded
            .stderr
            .contains("NEW WK master key is not loaded and committed"),
        "{}",
        unloaded.stderr
    );
    world.load_and_commit_ep11(B);
    let partial = world.tool(
        "pkcshsm_mk_change",
        &["reencipher", "--apqns", "03.0006", "--ep11-wkvp", &B[..32]],
    );
    partial.expect_code(1);
    assert!(
        partial
            .stderr
            .contains("Slot 3: APQN 04.0006 must be included into this operation."),
        "{}",
        partial.stderr
    );
    let created = world.tool(
        "pkcshsm_mk_change",
        &["reencipher", "--apqns", EP11_APQNS, "--ep11-wkvp", &B[..32]],
    );
    let id = created
        .stdout
        .split("Master key change operation '")
        .nth(1)
        .unwrap()[..6]
        .to_string();
    world
        .tool("pkcshsm_mk_change", &["cancel", "--id", &id])
        .expect_code(0);
    world
        .tke(&["clear", "--apqns", EP11_APQNS, "--type", "EP11"])
        .expect_code(0);
    world.assert_no_incidents();
    // Clearing NEW with an operation open loses its re-enciphered objects.
    world.load_and_commit_ep11(B);
    world
        .tool(
            "pkcshsm_mk_change",
            &["reencipher", "--apqns", EP11_APQNS, "--ep11-wkvp", &B[..32]],
        )
        .expect_code(0);
    world
        .tke(&["clear", "--apqns", EP11_APQNS, "--type", "EP11"])
        .expect_code(0);
    let incidents = world.incidents();
    incidents.expect_code(1);
    assert!(
        incidents.stdout.contains("re-enciphered copies"),
        "{}",
        incidents.stdout
    );
}

/// openCryptoki's cancel query compares every APQN's CURRENT with the key the token expects,
/// which, with an operation open, is the one `reencipher` saved for its slot: the key its
/// objects were under. So once every APQN is set a cancel is refused, pinned or not, and no
/// object is lost; finalize needs no pin (a config with none is not checked).
#[test]
fn pkcshsm_mk_change_refuses_a_cancel_after_the_set_pinned_or_not() {
    let stage_and_set = |world: &ZWorld| {
        world.load_and_commit_ep11(B);
        let created = world.tool(
            "pkcshsm_mk_change",
            &["reencipher", "--apqns", EP11_APQNS, "--ep11-wkvp", &B[..32]],
        );
        created.expect_code(0);
        world
            .tke(&["set", "--apqns", EP11_APQNS, "--type", "EP11"])
            .expect_code(0);
        created
            .stdout
            .split("Master key change operation '")
            .nth(1)
            .unwrap()[..6]
            .to_string()
    };
    let unpin = |world: &ZWorld| unpin_config(&world.path("opencryptoki/ep11tok3.conf"));
    // The example's zkey keys and volume are left under the old WK on purpose: only the
    // token's objects are watched here.
    let token_lost = |world: &ZWorld| world.incidents().stdout.contains("opencryptoki slot 3");
    let world = ZWorld::example();
    let id = stage_and_set(&world);
    for pinned in [true, false] {
        if !pinned {
            unpin(&world);
        }
        let refused = world.tool("pkcshsm_mk_change", &["cancel", "--id", &id]);
        refused.expect_code(1);
        assert!(
            refused.stderr.contains("does not match the expected one"),
            "pinned {pinned}: {}",
            refused.stderr
        );
        assert!(!token_lost(&world));
    }
    let finalized = world.tool("pkcshsm_mk_change", &["finalize", "--id", &id]);
    finalized.expect_code(0);
    assert!(
        finalized
            .stdout
            .contains(&format!("'{id}' successfully finalized")),
        "{}",
        finalized.stdout
    );
    assert!(!token_lost(&world), "{}", world.incidents().stdout);
}

#[test]
fn a_declared_application_key_is_checked_moved_and_lost_like_the_others() {
    let yaml = format!(
        "{}applications:\n  - {{name: payments, type: WK, apqns: [\"03.0006\", \"04.0006\"], mkvp: \"{}\"}}\n  - {{name: ledger, type: WK, apqns: [\"03.0006\", \"04.0006\"], mkvp: \"{}\"}}\n",
        ep11_only_world(),
        &A[..32],
        &A[..32]
    );
    let world = ZWorld::new(&yaml);
    world.tool("appkey", &["check", "payments"]).expect_code(0);
    world.load_and_commit_ep11(B);
    world
        .tool("zkey", &["reencipher", "--to-new"])
        .expect_code(0);
    world
        .tool("appkey", &["reencipher", "payments", "--to-new"])
        .expect_code(0);
    world
        .tke(&["set", "--apqns", EP11_APQNS, "--type", "EP11"])
        .expect_code(0);
    let between = world.tool("appkey", &["check", "payments"]);
    between.expect_code(1);
    assert!(
        between
            .stdout
            .contains(&format!("payments: staged copy (MKVP: {B})")),
        "{}",
        between.stdout
    );
    world
        .tool("appkey", &["reencipher", "payments", "--complete"])
        .expect_code(0);
    world.tool("appkey", &["check", "payments"]).expect_code(0);
    let incidents = world.incidents();
    incidents.expect_code(1);
    assert!(
        incidents.stdout.contains("INCIDENT application ledger:"),
        "{}",
        incidents.stdout
    );
    assert!(
        !incidents.stdout.contains("payments") && !incidents.stdout.contains("zkey k1"),
        "{}",
        incidents.stdout
    );
}

/// The example world's token with its USER PIN (`user_pin`, in plans/keys/slot3.pin), NEW
/// loaded and committed: `reencipher` with `stdin` on its stdin.
fn reencipher_with_stdin(world: &ZWorld, stdin: &str) -> crate::support::Run {
    let args = ["reencipher", "--apqns", EP11_APQNS, "--ep11-wkvp", &B[..32]];
    world.tool_with_stdin("pkcshsm_mk_change", &args, stdin)
}

#[test]
fn pkcshsm_mk_change_logs_in_with_the_pin_on_stdin_and_a_wrong_one_changes_nothing() {
    let world = ZWorld::example();
    world.load_and_commit_ep11(B);
    let before = world.read("world.json");
    for (stdin, said) in [
        ("", "Aborted by user."),
        (
            "not-the-pin\n",
            "Error logging in for slot 3: 0xA0 (CKR_PIN_INCORRECT)",
        ),
    ] {
        let run = reencipher_with_stdin(&world, stdin);
        run.expect_code(1);
        assert!(
            run.stdout.contains("Enter the USER PIN for slot 3: ")
                && run.stderr.contains(said)
                && !run.stdout.contains("not-the-pin")
                && !run.stderr.contains("not-the-pin"),
            "{}{}",
            run.stdout,
            run.stderr
        );
        assert_eq!(
            world.read("world.json"),
            before,
            "{stdin:?} changed the world"
        );
    }
    // An empty line asks again; the PIN is the line without its CR or LF.
    let run = reencipher_with_stdin(&world, "\n87654321\r\n");
    run.expect_code(0);
    assert!(
        run.stderr.contains("Empty pin entered, try again.")
            && run.stdout.contains("Master key change operation '"),
        "{}{}",
        run.stdout,
        run.stderr
    );
}
