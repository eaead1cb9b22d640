//! Domain groups on a PostgreSQL store (issue 17), through the binary, on the fake Crypto
//! Express platform: the group's journal kept in the database (`--state postgres://…`, here
//! `MKPLAN_STATE`), each intent committed before its step and the outcome after; an apply
//! killed in the middle resumed by a rerun against the same database; a second apply refused
//! by the lease while the first holds the group's APQNs; and a journal that the database lost
//! records of (restored from an older backup, or copied to another database) refused. Every
//! apply leaves zero incidents. Each test gets a database of its own (skipped, with a message,
//! where no PostgreSQL is set up).

use crate::cases::zcrypt::{Operator, World};
use crate::support::postgres::{column, database, execute};

/// A world whose state is a fresh database, and that database's URL.
pub(crate) fn on_postgres() -> Option<(World, String)> {
    let url = database()?;
    let mut world = World::new(true);
    world.env.push(("MKPLAN_STATE", url.clone()));
    world.env.push(("MKPLAN_LEASE_TTL_S", "5".into()));
    Some((world, url))
}

/// The group journal's records in the database, each as `kind` (`begin`, `intent`, …).
fn kinds(url: &str) -> Vec<String> {
    column(
        url,
        "SELECT line::json->'record'->>'record' FROM mkplan_group_journal ORDER BY seq",
    )
}

fn count(url: &str, sql: &str) -> usize {
    column(url, sql)[0].parse().unwrap()
}

/// No group journal goes on in the state folder: the database holds it. A folder's journal
/// that was pushed is kept as an archive, ending with its `pushed` record.
fn assert_no_folder_journal(world: &World) {
    let state = world.root.join("state");
    for entry in std::fs::read_dir(&state).into_iter().flatten() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("zcrypt-") {
            let text = std::fs::read_to_string(&path).unwrap();
            let last = text.lines().last().unwrap_or_default();
            assert!(
                last.contains("\"pushed\""),
                "{name} written in {state:?}: {last}"
            );
        }
    }
}

#[test]
fn zcrypt_postgres_a_fresh_ep11_change_converges_with_its_journal_in_the_database() {
    let Some((world, url)) = on_postgres() else {
        return;
    };
    world.assert_applies_and_converges();
    let kinds = kinds(&url);
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("begin"),
        "{kinds:?}"
    );
    assert_eq!(kinds.last().map(String::as_str), Some("done"), "{kinds:?}");
    let intents = kinds.iter().filter(|k| *k == "intent").count();
    let outcomes = kinds.iter().filter(|k| *k == "outcome").count();
    assert_eq!(intents, 10, "one intent per step: {kinds:?}");
    assert_eq!(
        outcomes, intents,
        "an outcome after every intent: {kinds:?}"
    );
    // Each tool step's intent promises its send window; a ceremony is the operator's.
    let windowed = "SELECT count(*) FROM mkplan_group_journal \
        WHERE line::json->'record'->>'send_within_ms' IS NOT NULL";
    assert_eq!(count(&url, windowed), 4);
    // The Begin record holds both cards' serial numbers.
    let begin = column(&url, "SELECT line FROM mkplan_group_journal WHERE seq = 1");
    assert!(begin[0].contains("93AABC0400000002"), "{begin:?}");
    // Every record was written under the apply's lease, which it released.
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM mkplan_group_journal WHERE fence IS NULL"
        ),
        0
    );
    assert_eq!(count(&url, "SELECT count(*) FROM mkplan_leases"), 0);
    assert_no_folder_journal(&world);
    // The journal in the database is what the next plan reads: nothing left, no incident.
    world.assert_nothing_left();
}

/// The apply killed while it waits for the operator at a ceremony step (the step's intent
/// committed, no outcome), then killed again right after a tool's effect: each rerun against
/// the same database reclaims the dead apply's lease at once, settles the interrupted step by
/// reading, and the last converges. Zero incidents after every apply.
#[test]
fn zcrypt_postgres_an_apply_killed_mid_change_is_resumed_by_a_rerun_on_the_same_database() {
    let Some((world, url)) = on_postgres() else {
        return;
    };
    let (code, stderr) = world.apply_as(|action, apqn| {
        if (action, apqn) == ("commit_new_mk", "04.0006") {
            Operator::PerformsThenApplyKilled
        } else {
            Operator::Performs
        }
    });
    assert_eq!(code, None, "the apply was not killed: {stderr}");
    world.assert_no_incidents();
    let kinds = kinds(&url);
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("intent"),
        "the ceremony's intent was committed before the step: {kinds:?}"
    );
    assert_eq!(count(&url, "SELECT count(*) FROM mkplan_leases"), 1);

    world.crash_mkplan_after_reencipher(1);
    let (code, stderr) = world.apply();
    assert_eq!(code, None, "the apply was not killed: {stderr}");
    assert!(stderr.contains("Reclaimed lease"), "{stderr}");
    assert!(
        stderr.contains("was interrupted: settled by reading the stores again"),
        "{stderr}"
    );
    world.assert_no_incidents();
    let line = column(
        &url,
        "SELECT line FROM mkplan_group_journal ORDER BY seq DESC LIMIT 1",
    );
    assert!(
        line[0].contains("\"intent\"") && line[0].contains("zkey reencipher"),
        "the tool's intent was committed before it ran: {line:?}"
    );

    world.remove_wrapper();
    let stderr = world.assert_apply_converges();
    assert!(stderr.contains("Reclaimed lease"), "{stderr}");
    assert!(
        stderr.contains("was interrupted: settled by reading the stores again"),
        "{stderr}"
    );
    world.assert_nothing_left();
    assert_eq!(count(&url, "SELECT count(*) FROM mkplan_leases"), 0);
    assert_no_folder_journal(&world);
}

/// While one apply waits for the operator, a second apply of the same group is refused by the
/// lease (exit 1), naming the holder, and runs nothing; a plan still reads the journal. The
/// first goes on to converge with zero incidents.
#[test]
fn zcrypt_postgres_a_second_apply_of_the_group_is_refused_by_the_lease_naming_its_holder() {
    let Some((world, url)) = on_postgres() else {
        return;
    };
    let mut second = None;
    let (code, stderr) = world.apply_as(|_, _| {
        if second.is_none() {
            let plan = world.run(&["plan", "group.yaml"]);
            assert!(
                plan.status.success(),
                "plan takes no lease: {}",
                String::from_utf8_lossy(&plan.stderr)
            );
            second = Some(world.run(&["apply", "group.yaml", "--auto-approve"]));
        }
        Operator::Performs
    });
    assert_eq!(code, Some(0), "{stderr}");
    let second = second.expect("the first apply met a ceremony step");
    let said = String::from_utf8_lossy(&second.stderr).to_string();
    assert_eq!(second.status.code(), Some(1), "{said}");
    for needle in [
        "another writer holds",
        "(apply by ",
        "03.0006, 04.0006",
        "mkplan unlock ",
    ] {
        assert!(said.contains(needle), "{needle:?} not in: {said}");
    }
    assert!(!said.contains("Ceremony step"), "{said}");
    world.assert_no_incidents();
    world.assert_nothing_left();
    assert_eq!(count(&url, "SELECT count(*) FROM mkplan_leases"), 0);
}

/// The shell command between "`mv " and the next backquote in `said`.
fn suggested_move(said: &str) -> String {
    let start = said.find("`mv ").expect("a move suggested") + 1;
    let end = start + said[start..].find('`').unwrap();
    said[start..end].to_string()
}

/// Runs the `mv` a refusal (`said`) suggests: the operator's word.
pub(crate) fn give_word(world: &World, said: &str) {
    let moved = std::process::Command::new("sh")
        .args(["-c", &suggested_move(said)])
        .current_dir(&world.root)
        .status()
        .unwrap();
    assert!(moved.success(), "the move it suggests failed: {said}");
}

/// `plan` and `apply` refuse (exit 3) naming `what`, with nothing run and no incident.
fn assert_refused(world: &World, what: &str) -> String {
    let plan = world.run(&["plan", "group.yaml"]);
    let said = String::from_utf8_lossy(&plan.stderr).to_string();
    assert_eq!(plan.status.code(), Some(3), "{said}");
    for needle in [
        "the domain group journal of zcrypt:",
        "cannot be trusted",
        what,
        "restore the database from a backup",
        "serial numbers",
    ] {
        assert!(said.contains(needle), "{needle:?} not in: {said}");
    }
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(!stderr.contains("Ceremony step"), "{stderr}");
    world.assert_no_incidents();
    said
}

/// Removes the last `n` records of the group journal and sets its head to match, as a restore
/// from an older backup leaves it (only the database's owner can: the rows are append-only).
pub(crate) fn restore_older_backup(url: &str, n: usize) {
    execute(
        url,
        &format!(
            "ALTER TABLE mkplan_group_journal DISABLE TRIGGER USER;
             DELETE FROM mkplan_group_journal WHERE seq > (SELECT max(seq) - {n} FROM mkplan_group_journal);
             ALTER TABLE mkplan_group_journal ENABLE TRIGGER USER;
             UPDATE mkplan_group_scopes s SET records = j.seq, chain = j.chain
               FROM mkplan_group_journal j WHERE j.scope = s.scope
               AND j.seq = (SELECT max(seq) FROM mkplan_group_journal);"
        ),
    );
}

/// A journal cut back in the database (a restore from an older backup: the rows and the
/// scope's head agree) is refused against this machine's head of it; a card swapped meanwhile
/// would go unseen otherwise. Moving the head away is the operator's word, and the change then
/// converges with zero incidents.
#[test]
fn zcrypt_postgres_a_journal_rolled_back_in_the_database_is_refused() {
    let Some((world, url)) = on_postgres() else {
        return;
    };
    world.apply_until_the_first_set();
    world.assert_no_incidents();
    let before = kinds(&url).len();
    restore_older_backup(&url, 3);
    let said = assert_refused(
        &world,
        &format!(
            "it holds {} records, but mkplan last saw it hold {before}",
            before - 3
        ),
    );
    give_word(&world, &said);
    world.assert_apply_converges();
    world.assert_nothing_left();
}

/// The journal's database copied to another (a restore from a dump, a copy): the copy holds
/// every record, but it is not where the journal was last written, and may lack the latest
/// records. It is refused.
#[test]
fn zcrypt_postgres_a_journal_copied_to_another_database_is_refused() {
    let Some((world, url)) = on_postgres() else {
        return;
    };
    world.apply_until_the_first_set();
    let (base, name) = url.rsplit_once('/').unwrap();
    let copy = format!("{name}_copy");
    // The source may not be in use while it is copied: mkplan's last session may linger.
    let mut tries = 0;
    while let Err(e) = crate::support::postgres::try_column(
        &format!("{base}/postgres"),
        &format!("CREATE DATABASE {copy} TEMPLATE {name}"),
    ) {
        tries += 1;
        assert!(tries < 50, "copy the database: {e}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut world = world;
    world.env.retain(|(k, _)| *k != "MKPLAN_STATE");
    world.env.push(("MKPLAN_STATE", format!("{base}/{copy}")));
    assert_refused(&world, "is not the one it was last written in");
}

/// The Begin record's serial numbers are read from the database: a card swapped behind an
/// APQN in the middle of the change is refused by name.
#[test]
fn zcrypt_postgres_a_card_swapped_mid_change_is_refused_from_the_journal_in_the_database() {
    let Some((world, _url)) = on_postgres() else {
        return;
    };
    world.apply_until_the_first_set();
    world.swap_card("04", "93AABC04000000FF");
    world.assert_refused(&["card_serial_numbers", "93AABC04000000FF"]);
}

/// `state push` moves a state folder's group journal into the database in the middle of a
/// change: the apply against the database resumes it (the Begin record's serial numbers came
/// along) and converges with zero incidents, and the folder's journal, marked as pushed, is
/// refused from then on.
#[test]
fn zcrypt_postgres_state_push_moves_a_group_journal_mid_change_and_retires_the_folder() {
    let Some(url) = database() else {
        return;
    };
    let mut world = World::new(true);
    world.apply_until_the_first_set();
    let out = world.run(&["state", "push", "--from", "state", "--state", &url]);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("journal records of domain group zcrypt:"),
        "{said}"
    );
    let folder = world.run(&["plan", "group.yaml"]);
    let refused = String::from_utf8_lossy(&folder.stderr).to_string();
    assert_eq!(folder.status.code(), Some(3), "{refused}");
    assert!(refused.contains("was pushed to postgres://"), "{refused}");
    assert_eq!(kinds(&url).first().map(String::as_str), Some("begin"));
    let again = world.run(&["state", "push", "--from", "state", "--state", &url]);
    assert_eq!(again.status.code(), Some(1));

    world.env.push(("MKPLAN_STATE", url.clone()));
    world.swap_card("04", "93AABC04000000FF");
    world.assert_refused(&["card_serial_numbers"]);
    world.swap_card("04", "93AABC0400000002");
    world.assert_apply_converges();
    world.assert_nothing_left();
    assert_no_folder_journal(&world);
}

/// `kill -SIG PID`.
fn signal(sig: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

/// An apply paused (`SIGSTOP`) at a ceremony step past its lease's expiry: a second apply
/// reclaims the lease, settles the step it left open by reading, and stops at the same
/// ceremony (no answer on its stdin). The first, resumed, can write nothing more: its outcome
/// is refused by the database, and it stops, saying why. A last apply converges; zero
/// incidents after every apply.
#[test]
fn zcrypt_postgres_a_paused_apply_whose_lease_was_taken_over_writes_nothing_more() {
    let Some((mut world, url)) = on_postgres() else {
        return;
    };
    world.env.retain(|(k, _)| *k != "MKPLAN_LEASE_TTL_S");
    world.env.push(("MKPLAN_LEASE_TTL_S", "1".into()));
    world.env.push(("MKPLAN_RECLAIM_GRACE_S", "1".into()));
    let mut second = None;
    let (code, stderr) = world.apply_as(|_, _| {
        if second.is_none() {
            let pid = column(&url, "SELECT pid FROM mkplan_leases").remove(0);
            signal("-STOP", &pid);
            std::thread::sleep(std::time::Duration::from_millis(2_500));
            second = Some(world.run(&["apply", "group.yaml", "--auto-approve"]));
            signal("-CONT", &pid);
        }
        Operator::Stops
    });
    let second = second.expect("the first apply met a ceremony step");
    let said = String::from_utf8_lossy(&second.stderr).to_string();
    assert_eq!(second.status.code(), Some(1), "{said}");
    assert!(said.contains("Reclaimed lease"), "{said}");
    assert!(
        said.contains("was interrupted: settled by reading"),
        "{said}"
    );
    assert!(said.contains("no more input on stdin"), "{said}");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no longer holds its lease"), "{stderr}");
    world.assert_no_incidents();
    world.assert_apply_converges();
    world.assert_nothing_left();
}
