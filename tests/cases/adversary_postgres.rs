//! Attacks on the PostgreSQL store (issue 15) that worked when an adversary found them: each
//! test plants the attack through the binary and asserts what a safe mkplan must do (no
//! incident in the simulator, no secret in a message, nothing written where it should not
//! be). Each is fixed now, and its test fails without the fix.
//!
//! 1. `mkplan unlock` of a live holder in the middle of its rewrap: the next writer settles
//!    the rewrap as "had no effect" and sends its own; the holder's request lands after it.
//! 2. The same with no operator at all: a writer in another PID namespace on the same machine
//!    (two CI containers on one runner) takes the live holder for dead and reclaims its lease
//!    at once.
//! 3. The same again through lease expiry: a holder paused between its rewrap intent and the
//!    send, whose request reaches the service after the takeover (fixed: send windows).
//! 4. A role with the grants docs/state.md once gave operators appends a forged attestation,
//!    in another operator's name, with no lease: the next apply reruns the rewrap (fixed: the
//!    documented grants refuse every way of planting it).
//! 5. A database restored from a backup taken between an attestation and the rewrap it
//!    allowed: nothing sees the rollback, and the next apply rewraps again (fixed: the database
//!    and WAL timeline each scope was last written in).
//! 6. A password in the state URL's query (`?password=`) reaches the error message; a URL
//!    missing its `//` is taken for a folder, shown with its password and created.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cases::apply::{PASSWORDS, assert_no_incidents, three_units};
use crate::support::postgres::{column, database, execute, try_column};
use crate::support::*;

fn with_database(fleet: &Fleet) -> Option<(Workspace, String)> {
    let url = database()?;
    let mut ws = rotate_to_b(fleet);
    ws.store = Some(url.clone());
    Some((ws, url))
}

fn env_with(faults: &str, ttl: &str) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> =
        PASSWORDS.iter().map(|(k, v)| (*k, v.to_string())).collect();
    env.push(("MKPLAN_LEASE_TTL_S", ttl.to_string()));
    // A taker's wait for a request still on its way, after the send windows: short here.
    env.push(("MKPLAN_RECLAIM_GRACE_S", "3".to_string()));
    if !faults.is_empty() {
        env.push(("MKPLAN_SIM_FAULTS", faults.to_string()));
    }
    env
}

/// `mkplan apply` in the background with `faults`, from the workspace's folder.
fn spawn_apply(ws: &Workspace, faults: &str, ttl: &str) -> Child {
    let desired = ws.path(DESIRED).display().to_string();
    let mut command = ws.process(&["apply", &desired, "--auto-approve"]);
    command
        .envs(env_with(faults, ttl))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command.spawn().expect("start mkplan apply")
}

/// A second operator's `apply` with `faults`, from a folder of their own.
fn other_apply(ws: &Workspace, faults: &str, ttl: &str) -> Run {
    let env = env_with(faults, ttl);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ws.mkplan_as_other(&["apply", DESIRED, "--auto-approve"], &env)
}

fn stderr_of(child: Child) -> (i32, String) {
    let output = child.wait_with_output().expect("wait for mkplan");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn rewrap_intents(url: &str) -> usize {
    try_column(
        url,
        "SELECT count(*) FROM mkplan_journal WHERE line LIKE '%\"kind\":\"intent\"%' AND line LIKE '%rewrap_key_storage%'",
    )
    .unwrap_or_default()
    .first()
    .and_then(|n| n.parse().ok())
    .unwrap_or_default()
}

/// The first apply stops (power cut) right after its last commit: loads and commits are in
/// the journal, the rewrap is not sent. What a rerun resumes from.
fn staged_and_interrupted(ws: &Workspace) {
    let env = env_with("crash_after_op=6", "600");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let crashed = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &env);
    assert_eq!(crashed.code, -1, "{}", crashed.stderr);
}

/// The holder resumes with a slow network: its rewrap intent is journaled (and its lease
/// checked with it), then the request takes `latency` ms to reach the service.
fn holder_sending_its_rewrap_slowly(
    ws: &Workspace,
    url: &str,
    latency_ms: u64,
    ttl: &str,
) -> Child {
    let holder = spawn_apply(ws, &format!("latency_ms={latency_ms}"), ttl);
    wait_until("the holder journals its rewrap intent", || {
        rewrap_intents(url) > 0
    });
    holder
}

fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).expect("a pid");
    // SAFETY: kill has no memory effects; the pid is our own child's.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "signal {signal}");
}

/// Attack 1: another operator reads the refusal ("release it now with `mkplan unlock`"),
/// unlocks the live holder and applies. The holder is mid-rewrap: its intent is written,
/// its request on the way. The taker settles that rewrap as "had no effect" from the
/// service's "no rewrap in progress" and sends its own; the holder's request lands after
/// it, before the taker's set immediate: a second rewrap.
/// Fixed: `unlock` refuses a live lease (one its holder still renews).
#[test]
fn attack_1_unlocking_a_live_holder_mid_rewrap_must_not_lose_the_key_storage() {
    let Some((ws, url)) = with_database(&three_units(true)) else {
        return;
    };
    staged_and_interrupted(&ws);
    let holder = holder_sending_its_rewrap_slowly(&ws, &url, 6_000, "60");
    let lease = column(&url, "SELECT id FROM mkplan_leases");
    assert_eq!(lease.len(), 1, "{lease:?}");
    let unlocked = ws.mkplan_as_other(&["unlock", &lease[0]], &[]);
    assert_eq!(
        unlocked.code, 1,
        "a live lease is not released: {}",
        unlocked.stderr
    );
    assert!(unlocked.stderr.contains("is live"), "{}", unlocked.stderr);
    let taker = other_apply(&ws, "latency_ms=4000", "60");
    assert_eq!(
        taker.code, 1,
        "the lease still refuses the taker: {}",
        taker.stderr
    );
    let (_, holder_stderr) = stderr_of(holder);
    assert_no_incidents(
        &ws,
        &format!(
            "unlock of a live holder mid-rewrap\n--- taker\n{}\n--- holder\n{holder_stderr}",
            taker.stderr
        ),
    );
}

/// Attack 2: as attack 1, with nobody typing `unlock`. The taker runs in another PID
/// namespace on the same machine (two CI jobs in containers on one runner share the kernel's
/// boot id, and an image's /etc/machine-id is often empty or the same): the holder's pid
/// does not exist there, so its live lease is "gone from this machine" and reclaimed at once.
/// Fixed: a lease's holder is "on this machine" only in the same boot and pid namespace.
#[test]
fn attack_2_a_live_holder_seen_from_another_pid_namespace_must_not_be_reclaimed() {
    let unshare_works = Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !unshare_works {
        eprintln!("attack 2 skipped: `unshare --pid` is not allowed here");
        return;
    }
    let Some((ws, url)) = with_database(&three_units(true)) else {
        return;
    };
    staged_and_interrupted(&ws);
    let holder = holder_sending_its_rewrap_slowly(&ws, &url, 6_000, "60");
    // The taker: the same command as another operator's, in a PID namespace of its own.
    let folder = ws.path("other-operator");
    std::fs::create_dir_all(&folder).expect("a folder");
    let mut inner = ws.process(&["apply", "../desired.yaml", "--auto-approve"]);
    inner
        .current_dir(&folder)
        .envs(env_with("latency_ms=4000", "60"));
    let mut outer = Command::new("unshare");
    outer
        .args(["--pid", "--fork"])
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(&folder)
        .stdin(Stdio::null());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => outer.env(key, value),
            None => outer.env_remove(key),
        };
    }
    let taker = outer.output().expect("run the taker");
    let taker_stderr = String::from_utf8_lossy(&taker.stderr);
    let (_, holder_stderr) = stderr_of(holder);
    assert!(
        !taker_stderr.contains("Reclaimed lease"),
        "a live holder's lease was reclaimed: {taker_stderr}"
    );
    assert_no_incidents(
        &ws,
        &format!("another PID namespace\n--- taker\n{taker_stderr}\n--- holder\n{holder_stderr}"),
    );
}

/// Attack 3: the documented gap, made concrete. The holder is paused (SIGSTOP: a suspended
/// laptop) after journaling its rewrap intent and before the request leaves; its lease
/// expires; the taker settles the rewrap as "had no effect" and sends its own; the holder
/// wakes and its request goes out before the taker's set immediate.
/// Fixed: every intent on a shared journal carries a send window (twice the lease's term, at
/// least 10 s: 10 s here), the holder checks it just before the request leaves and sends
/// nothing once it has passed, and a taker waits out the windows of the intents left open
/// (plus MKPLAN_RECLAIM_GRACE_S for a request on its way) before it settles them. Here the
/// holder is paused 12 s, past its window: it wakes up and sends nothing. The taker no longer
/// settles the open rewrap from "no rewrap" at all (a request may be queued at the service):
/// it refuses until the operator says what the service showed.
#[test]
fn attack_3_a_holder_paused_between_its_rewrap_intent_and_the_send_must_not_rewrap_again() {
    let Some((ws, url)) = with_database(&three_units(true)) else {
        return;
    };
    staged_and_interrupted(&ws);
    let holder = holder_sending_its_rewrap_slowly(&ws, &url, 1_500, "2");
    signal(&holder, libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(3_000));
    let taker = spawn_apply(&ws, "latency_ms=4000", "2");
    std::thread::sleep(Duration::from_millis(9_000));
    signal(&holder, libc::SIGCONT);
    let (taker_code, taker_stderr) = stderr_of(taker);
    let (_, holder_stderr) = stderr_of(holder);
    assert_no_incidents(
        &ws,
        &format!("paused holder\n--- taker\n{taker_stderr}\n--- holder\n{holder_stderr}"),
    );
    // The taker read the live state after the holder woke up (12 s) and its window closed
    // (10 s after the intent): had the holder sent its rewrap, the taker would have found it.
    assert!(taker_stderr.contains("Waiting "), "{taker_stderr}");
    assert!(
        holder_stderr.contains("writes and sends nothing more"),
        "{holder_stderr}"
    );
    // The holder sent nothing, but nothing at the taker's end shows it: the service's "no
    // rewrap" does not settle a rewrap intent left open (a request may still be queued at
    // the service), so the taker refuses and asks for what the service showed.
    assert_eq!(taker_code, 3, "{taker_stderr}");
    assert!(taker_stderr.contains("rewrap_evidence"), "{taker_stderr}");
    assert!(
        !taker_stderr.contains("rewrap_key_storage: had no effect"),
        "{taker_stderr}"
    );
}

/// Attack 3b: a chain of takeovers. The first taker reclaims the paused holder's expired
/// lease and, while it waits for the holder's request to arrive, is killed; a second writer on
/// the same machine finds the first taker's process gone and reclaims its lease at once. The
/// holder's intent is still open and within its window: the second writer must wait for it as
/// the first would have, although the lease it reclaimed was not the holder's. The holder
/// wakes within its window and sends its rewrap; the second writer's read must show it.
#[test]
fn attack_3b_a_writer_that_takes_over_from_a_dead_taker_still_waits_for_the_paused_holder() {
    let Some((ws, url)) = with_database(&three_units(true)) else {
        return;
    };
    staged_and_interrupted(&ws);
    let holder = holder_sending_its_rewrap_slowly(&ws, &url, 1_500, "2");
    signal(&holder, libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(2_500));
    let first = spawn_apply(&ws, "", "2");
    wait_until("the first taker holds a lease of its own", || {
        try_column(&url, "SELECT count(*) FROM mkplan_leases")
            .unwrap_or_default()
            .first()
            .is_some_and(|n| n == "1")
            && try_column(&url, "SELECT pid FROM mkplan_leases")
                .unwrap_or_default()
                .first()
                .is_some_and(|pid| *pid == first.id().to_string())
    });
    signal(&first, libc::SIGKILL);
    let _ = stderr_of(first);
    let second = spawn_apply(&ws, "latency_ms=2000", "2");
    // Within the holder's window (10 s after its intent): its rewrap leaves now.
    std::thread::sleep(Duration::from_millis(2_000));
    signal(&holder, libc::SIGCONT);
    let (second_code, second_stderr) = stderr_of(second);
    let (_, holder_stderr) = stderr_of(holder);
    assert_no_incidents(
        &ws,
        &format!("chain of takeovers\n--- second\n{second_stderr}\n--- holder\n{holder_stderr}"),
    );
    assert!(second_stderr.contains("Waiting "), "{second_stderr}");
    assert_eq!(second_code, 0, "{second_stderr}");
}

/// Attack 4: docs/state.md once gave operators `INSERT` on `mkplan_journal` and `UPDATE` on
/// `mkplan_scopes`, and `mkplan_journal_append` skipped the fence for a NULL lease: a role with
/// those grants, holding no lease, appended an outcome "the service refused the rewrap" for a
/// rewrap that ran, then an attestation that nobody rewrapped in alice's name (`written_by`),
/// chained and headed as mkplan would: the next apply rewrapped again.
/// Fixed: the journal is written only through functions that check a lease and its fence, and
/// record the caller's own login role; operators get `SELECT`, rights on the leases, and
/// `EXECUTE`. With exactly the grants docs/state.md gives, each way of planting the forgery is
/// refused, nothing is written, and the next apply settles the rewrap from the journal.
#[test]
fn attack_4_a_record_appended_outside_mkplan_by_an_operator_role_is_no_evidence() {
    let Some((ws, url)) = with_database(&three_units(false)) else {
        return;
    };
    // The rewrap is accepted (it completes at once here), then the power goes.
    let env = env_with("crash_after_op=7", "600");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let crashed = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &env);
    assert_eq!(crashed.code, -1, "{}", crashed.stderr);

    let database_name = url.rsplit('/').next().expect("a database").to_string();
    let role = format!("ops_{database_name}");
    // docs/state.md, "Roles": exactly these.
    execute(
        &url,
        &format!(
            "CREATE ROLE {role} LOGIN; \
             GRANT SELECT ON mkplan_schema, mkplan_scopes, mkplan_journal, mkplan_audit, \
                   mkplan_leases, mkplan_writers_ended TO {role}; \
             GRANT UPDATE, DELETE ON mkplan_leases TO {role};"
        ),
    );
    let as_operator = url.replacen("://mkplan@", &format!("://{role}@"), 1);
    let started = column(
        &as_operator,
        "SELECT line FROM mkplan_journal WHERE line LIKE '%\"kind\":\"rotation_started\"%'",
    );
    let started: serde_json::Value = serde_json::from_str(&started[0]).expect("a record");
    let record = &started["record"];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let forged = format!(
        r#"{{"kind":"attested","instance":{},"backend":{},"units":{},"from":{},"to":{},"ran":false,"statement":"nobody rewrapped","at":"now","at_unix":{now}}}"#,
        record["instance"], record["backend"], record["units"], record["from"], record["to"]
    );
    let scope = record["backend"].as_str().expect("a scope");
    let instance = record["instance"].as_str().expect("an instance");
    let step = column(
        &as_operator,
        "SELECT line::json->'record'->>'step' FROM mkplan_journal WHERE line LIKE '%\"kind\":\"intent\"%' AND line LIKE '%rewrap_key_storage%'",
    );
    let outcome = format!(
        r#"{{"kind":"outcome","step":"{}","outcome":{{"not_done":{{"reason":"the service refused it: busy"}}}},"at":"now"}}"#,
        step[0]
    );
    let records_before = column(&url, "SELECT count(*) FROM mkplan_journal");
    // Through mkplan's own function, with no lease at all.
    let through_function = try_column(
        &as_operator,
        &format!(
            "WITH f AS (SELECT '{outcome}'::text AS r, encode(sha256(convert_to('{outcome}', 'UTF8')), 'hex') AS s) \
             SELECT mkplan_journal_append('{scope}', NULL, NULL, 'forged-outcome', \
                    ARRAY['{{\"sha256\":\"' || f.s || '\",\"record\":' || f.r || '}}'], ARRAY[f.s], ARRAY['{instance}']) FROM f"
        ),
    );
    assert!(through_function.is_err(), "{through_function:?}");
    // The owner's direct write, which needs no lease.
    let through_owner_function = try_column(
        &as_operator,
        &format!(
            "SELECT mkplan_journal_write('{scope}', NULL, 'forged', ARRAY['x'], ARRAY['y'], ARRAY['{instance}'])"
        ),
    );
    assert!(
        through_owner_function.is_err(),
        "{through_owner_function:?}"
    );
    // Straight into the table, in alice's name.
    let inserted = try_column(
        &as_operator,
        &format!(
            "WITH f AS (SELECT '{forged}'::text AS r, encode(sha256(convert_to('{forged}', 'UTF8')), 'hex') AS s) \
             INSERT INTO mkplan_journal (scope, seq, instance, line, sha256, chain, batch, fence, written_by) \
             SELECT '{scope}', h.journal_records + 1, '{instance}', '{{\"sha256\":\"' || f.s || '\",\"record\":' || f.r || '}}', f.s, \
                    encode(sha256(convert_to(h.journal_chain || f.s, 'UTF8')), 'hex'), 'forged', NULL, 'alice' \
             FROM f, mkplan_scopes h WHERE h.scope = '{scope}'"
        ),
    );
    assert!(inserted.is_err(), "{inserted:?}");
    let moved_head = try_column(
        &as_operator,
        &format!(
            "UPDATE mkplan_scopes SET journal_records = journal_records + 1 WHERE scope = '{scope}'"
        ),
    );
    assert!(moved_head.is_err(), "{moved_head:?}");
    assert_eq!(
        column(&url, "SELECT count(*) FROM mkplan_journal"),
        records_before,
        "nothing was written"
    );

    let victim = ws.mkplan_as_other(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_no_incidents(
        &ws,
        &format!("forged attestation\n--- victim\n{}", victim.stderr),
    );
}

/// Attack 5: the database is restored from a backup (or fails over to a replica that lagged)
/// taken after an operator attested that nobody rewrapped and before the apply that then
/// rewrapped. The file store finds such a rollback (its head is kept with the journal key);
/// the database store trusted the restored journal, and the attestation, still fresh, let
/// the next apply, by an operator on another machine, rewrap again.
/// Fixed: each scope records the database and WAL timeline its journal was last written in;
/// a copy, a restore into a new database, a point-in-time recovery or a promoted replica
/// changes them, and the journal is then taken as rolled back: nothing before is evidence.
#[test]
fn attack_5_a_database_restored_from_before_a_rewrap_must_not_rewrap_again() {
    let Some((ws, url)) = with_database(&three_units(false)) else {
        return;
    };
    staged_and_interrupted(&ws);
    let instance = instance_id(0);
    ws.mkplan(&[
        "attest",
        "rewrap",
        &instance,
        "--not-run",
        "--desired",
        DESIRED,
    ])
    .expect_code(0);
    // The nightly backup.
    let server = std::env::var("MKPLAN_TEST_POSTGRES").expect("a server");
    let source = url.rsplit('/').next().expect("a database").to_string();
    let backup = format!("{source}_backup");
    execute(
        &server,
        &format!("CREATE DATABASE {backup} TEMPLATE {source}"),
    );
    // The attested apply sends the rewrap; the power goes right after it was accepted.
    let env = env_with("crash_after_op=1", "600");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let crashed = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &env);
    assert_eq!(crashed.code, -1, "{}", crashed.stderr);
    // The restore: everyone now names the restored database.
    let mut restored = ws;
    let (base, _) = url.rsplit_once('/').expect("a URL");
    restored.store = Some(format!("{base}/{backup}"));
    let after = restored.mkplan_as_other(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_no_incidents(
        &restored,
        &format!("restored database\n--- apply\n{}", after.stderr),
    );
    // Refused for safety, and the refusal names the restore.
    assert_eq!(after.code, 3, "{}", after.stderr);
    assert!(
        after.stderr.contains("not the one it was last written in"),
        "{}",
        after.stderr
    );
}

/// Attack 6a: `?password=` is a PostgreSQL URL's way to carry a password too; the refusals
/// that show the URL (`redacted`) cut only what sits between `://` and `@`.
/// Fixed: a URL's query is redacted in every message.
#[test]
fn attack_6_a_password_in_the_state_urls_query_never_reaches_a_message() {
    let ws = rotate_to_b(&three_units(true));
    for state in [
        "postgres://ops@db.example:5432/mkplan?password=hunter2-secret",
        "postgres://ops@127.0.0.1:5432/mkplan?password=hunter2-secret&sslmode=bogus",
        "postgres://127.0.0.1/mkplan?user=ops&password=hunter2-secret&port=x",
        "postgres://ops@127.0.0.1:5432/?password=hunter2-secret",
    ] {
        let run = ws.mkplan(&["--state", state, "plan", DESIRED]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            !run.stderr.contains("hunter2") && !run.stdout.contains("hunter2"),
            "{state}: {}",
            run.stderr
        );
    }
}

/// Attack 6b: a state URL missing its `//` (`postgres:USER:PASSWORD@HOST/DB`) is taken for a
/// folder: status shows it, password and all, and apply creates folders named after it.
/// Fixed: `postgres:` without `//` is refused, never made a folder.
#[test]
fn attack_6_a_state_url_without_its_slashes_is_refused_not_made_a_folder() {
    let ws = rotate_to_b(&three_units(true));
    let state = "postgres:ops:hunter2-secret@db.example/mkplan";
    let status = ws.mkplan(&["--state", state, "status", DESIRED]);
    assert!(
        !status.stdout.contains("hunter2") && !status.stderr.contains("hunter2"),
        "{}",
        status.stdout
    );
    let _ = ws.mkplan_with_env(
        &["--state", state, "apply", DESIRED, "--auto-approve"],
        &PASSWORDS,
    );
    let written: Vec<String> = ws
        .listing()
        .into_iter()
        .filter(|name| name.contains("hunter2"))
        .collect();
    assert!(written.is_empty(), "written to disk: {written:?}");
}

/// Round 9 (HPCS), S2: libpq's `key=value` connection string used to be taken for a folder
/// name, so its password was shown in "To resume:", in refusals and kept in journal heads.
/// It is refused, naming its keywords only, and nothing is written.
#[test]
fn attack_9_a_libpq_connection_string_is_refused_not_made_a_folder() {
    let ws = rotate_to_b(&three_units(true));
    let state = "host=127.0.0.1 port=5432 dbname=mk user=mkplan password=Tunnel-Pw-7f3a";
    for args in [
        &["--state", state, "plan", DESIRED][..],
        &["--state", state, "apply", DESIRED, "--auto-approve"],
    ] {
        let out = ws.mkplan_with_env(args, &PASSWORDS);
        assert_ne!(out.code, 0, "{}", out.stderr);
        assert!(
            out.stderr
                .contains("a libpq connection string (host=… port=… dbname=… user=… password=…)"),
            "{}",
            out.stderr
        );
        assert!(
            !out.stdout.contains("Tunnel-Pw") && !out.stderr.contains("Tunnel-Pw"),
            "{}",
            out.stderr
        );
    }
    let written: Vec<String> = ws
        .listing()
        .into_iter()
        .filter(|name| name.contains("Tunnel-Pw") || name.contains("host="))
        .collect();
    assert!(written.is_empty(), "written to disk: {written:?}");
}
