//! Team state on PostgreSQL (issue 15), through the binary: two mkplan processes in different
//! working folders share one database. The lease refuses the second and names the holder; a
//! killed holder's lease is reclaimed after it expires and the resumed apply converges; a
//! paused holder that wakes after another took over can write nothing; applies on different
//! instances run at once; a lost connection is retried; push, pull and a newer schema. Each
//! test gets a database of its own (skipped, with a message, where no PostgreSQL is set up).

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::cases::apply::{PASSWORDS, assert_converged, assert_no_incidents, sim, three_units};
use crate::support::postgres::{column, database, execute, try_column};
use crate::support::*;

/// How long a lease outlives its last renewal in these tests.
const TTL_S: &str = "2";
/// How long a taker waits after reclaiming an expired lease: longer than the served fleet's
/// latency in these tests (1.5 s at most), so a request the holder sent has landed.
const GRACE_S: &str = "3";

fn with_database(fleet: &Fleet) -> Option<(Workspace, String)> {
    let url = database()?;
    let mut ws = rotate_to_b(fleet);
    ws.store = Some(url.clone());
    Some((ws, url))
}

/// `mkplan apply` started in the background against `backend` (none: the desired file's).
fn spawn_apply(ws: &Workspace, backend: Option<&str>, faults: &str, extra: &[&str]) -> Child {
    let desired = ws.path(DESIRED).display().to_string();
    let mut args = vec!["apply", desired.as_str(), "--auto-approve"];
    args.extend(extra);
    let mut command = ws.process(&args);
    command
        .envs(PASSWORDS)
        .env("MKPLAN_LEASE_TTL_S", TTL_S)
        .env("MKPLAN_RECLAIM_GRACE_S", GRACE_S)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if !faults.is_empty() {
        command.env("MKPLAN_SIM_FAULTS", faults);
    }
    if let Some(url) = backend {
        command.env("MKPLAN_BACKEND", url);
    }
    command.spawn().expect("start mkplan apply")
}

/// A second operator's `mkplan ARGS` from a folder of their own.
fn other(ws: &Workspace, backend: Option<&str>, args: &[&str]) -> Run {
    let mut env = PASSWORDS.to_vec();
    env.push(("MKPLAN_LEASE_TTL_S", TTL_S));
    env.push(("MKPLAN_RECLAIM_GRACE_S", GRACE_S));
    if let Some(url) = backend {
        env.push(("MKPLAN_BACKEND", url));
    }
    ws.mkplan_as_other(args, &env)
}

#[track_caller]
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number `sql` counts; 0 before mkplan made its tables.
fn count(url: &str, sql: &str) -> usize {
    try_column(url, sql)
        .unwrap_or_default()
        .first()
        .and_then(|n| n.parse().ok())
        .unwrap_or_default()
}

fn intents(url: &str) -> usize {
    count(
        url,
        "SELECT count(*) FROM mkplan_journal WHERE line LIKE '%\"kind\":\"intent\"%'",
    )
}

fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).expect("a pid");
    // SAFETY: kill has no memory effects; the pid is our own child's.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "signal {signal}");
}

fn stderr_of(child: Child) -> (i32, String) {
    let output = child.wait_with_output().expect("wait for mkplan");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_second_apply_is_refused_by_the_lease_and_a_killed_holders_lease_is_reclaimed() {
    let Some((ws, url)) = with_database(&three_units(true)) else {
        return;
    };
    let holder = spawn_apply(&ws, None, "latency_ms=1500", &[]);
    wait_until("the holder journals its first intents", || {
        intents(&url) > 0
    });
    // The holder runs on another machine, as far as the lease knows: its death cannot be seen
    // from here, only its lease's expiry.
    execute(&url, "UPDATE mkplan_leases SET host_id = 'another-machine'");

    let refused = other(&ws, None, &["apply", DESIRED, "--auto-approve"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("another writer holds")
            && refused.stderr.contains(&format!("process {}", holder.id()))
            && refused.stderr.contains("mkplan unlock"),
        "the refusal names the holder and the way out: {}",
        refused.stderr
    );

    signal(&holder, libc::SIGKILL);
    let _ = stderr_of(holder);
    // The lease outlives its holder until it expires: still refused right after the kill.
    let early = other(&ws, None, &["apply", DESIRED, "--auto-approve"]);
    assert_eq!(early.code, 1, "{}", early.stderr);
    std::thread::sleep(Duration::from_millis(2_500));
    let resumed = other(&ws, None, &["apply", DESIRED, "--auto-approve"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(
        resumed.stderr.contains("Reclaimed lease"),
        "{}",
        resumed.stderr
    );
    assert_converged(&ws, "after the killed holder's lease was reclaimed");
    assert_no_incidents(&ws, "killed holder, reclaimed lease");
    ws.mkplan(&["audit", "verify"]).expect_code(0);
}

#[test]
fn a_paused_holder_that_wakes_after_a_takeover_writes_nothing_and_stops() {
    let Some((ws, url)) = with_database(&three_units(true)) else {
        return;
    };
    let server = Server::start(&ws.path(FLEET), "latency_ms=1500", &[]);
    let holder = spawn_apply(&ws, Some(&server.url), "", &[]);
    wait_until("the holder journals its first intents", || {
        intents(&url) > 0
    });
    signal(&holder, libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(3_000));

    let taker = other(
        &ws,
        Some(&server.url),
        &["apply", DESIRED, "--auto-approve"],
    );
    assert_eq!(taker.code, 0, "{}", taker.stderr);
    assert!(taker.stderr.contains("Reclaimed lease"), "{}", taker.stderr);
    // The holder's intents stay sendable for their window (10 s at this lease term), and a
    // request may then take MKPLAN_RECLAIM_GRACE_S (3 s) to arrive: the taker waits them out.
    assert!(
        taker.stderr.contains("Waiting ") && taker.stderr.contains("each intent's send window"),
        "{}",
        taker.stderr
    );

    signal(&holder, libc::SIGCONT);
    let (code, stderr) = stderr_of(holder);
    assert_eq!(code, 1, "the stale holder stops: {stderr}");
    assert!(
        stderr.contains("no longer holds its lease"),
        "it says why: {stderr}"
    );
    // Every record the stale holder wrote comes before the first one of the taker.
    let fences = column(
        &url,
        "SELECT DISTINCT fence FROM mkplan_journal ORDER BY fence",
    );
    assert_eq!(fences.len(), 2, "two writers: {fences:?}");
    let last_stale = count(
        &url,
        &format!(
            "SELECT max(seq) FROM mkplan_journal WHERE fence = {}",
            fences[0]
        ),
    );
    let first_taker = count(
        &url,
        &format!(
            "SELECT min(seq) FROM mkplan_journal WHERE fence = {}",
            fences[1]
        ),
    );
    assert!(
        last_stale < first_taker,
        "the stale holder wrote record {last_stale} after the taker's first, {first_taker}"
    );
    assert_converged(&ws, "after the takeover");
    assert_no_incidents(&ws, "paused holder, takeover, wake-up");
    let status = other(&ws, Some(&server.url), &["status", DESIRED]);
    assert!(
        status.stdout.contains("Lock: not held."),
        "{}",
        status.stdout
    );
}

#[test]
fn applies_on_different_instances_of_one_database_run_at_once() {
    let fleet = Fleet::instance()
        .reports_rotation_status(true)
        .units(2, empty(), valid(A))
        .and_instance()
        .reports_rotation_status(true)
        .units(2, empty(), valid(A));
    let Some((ws, url)) = with_database(&fleet) else {
        return;
    };
    let server = Server::start(&ws.path(FLEET), "latency_ms=300", &[]);
    let (first, second) = (instance_id(0), instance_id(1));
    let a = spawn_apply(&ws, Some(&server.url), "", &["--instance", &first]);
    wait_until("the first apply holds its lease", || {
        count(&url, "SELECT count(*) FROM mkplan_leases") == 1
    });
    let b = other(
        &ws,
        Some(&server.url),
        &["apply", DESIRED, "--auto-approve", "--instance", &second],
    );
    assert_eq!(b.code, 0, "{}", b.stderr);
    let (code, stderr) = stderr_of(a);
    assert_eq!(code, 0, "{stderr}");
    let fleet = sim(&ws);
    for instance in &fleet.instances {
        assert_eq!(instance.key_storage.verification_pattern.as_str(), B);
    }
    assert_no_incidents(&ws, "two applies on two instances");
    // The two runs took different numbers.
    let runs = column(
        &url,
        "SELECT line FROM mkplan_journal WHERE line LIKE '%\"kind\":\"apply_started\"%'",
    );
    assert_eq!(runs.len(), 2);
    assert!(
        runs[0].contains("\"run\":1") != runs[1].contains("\"run\":1"),
        "{runs:?}"
    );
    ws.mkplan(&["audit", "verify"]).expect_code(0);
}

#[test]
fn a_connection_lost_mid_apply_is_written_again_and_the_apply_converges() {
    let Some((ws, url)) = with_database(&three_units(true)) else {
        return;
    };
    let server = Server::start(&ws.path(FLEET), "latency_ms=600", &[]);
    let holder = spawn_apply(&ws, Some(&server.url), "", &[]);
    wait_until("the holder journals its first intents", || {
        intents(&url) > 0
    });
    execute(
        &url,
        // Only this test's database: the other tests run at the same time on the same cluster.
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'mkplan' AND datname = current_database()",
    );
    let (code, stderr) = stderr_of(holder);
    assert_eq!(code, 0, "{stderr}");
    assert_converged(&ws, "after a lost connection");
    assert_no_incidents(&ws, "lost connection");
    ws.mkplan(&["audit", "verify"]).expect_code(0);
}

#[test]
fn a_crashed_holders_lease_on_this_machine_is_reclaimed_at_once() {
    let Some((ws, _url)) = with_database(&three_units(true)) else {
        return;
    };
    let mut env = PASSWORDS.to_vec();
    env.push(("MKPLAN_SIM_FAULTS", "crash_after_op=2"));
    env.push(("MKPLAN_LEASE_TTL_S", "600"));
    let crashed = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &env);
    assert_eq!(crashed.code, -1, "{}", crashed.stderr);
    let resumed = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(
        resumed.stderr.contains("Reclaimed lease"),
        "{}",
        resumed.stderr
    );
    assert_converged(&ws, "after a crash on this machine");
    assert_no_incidents(&ws, "crash on this machine");
}

#[test]
fn status_shows_the_lease_and_the_open_rotation_a_crash_left() {
    let Some((ws, _url)) = with_database(&three_units(false)) else {
        return;
    };
    let mut env = PASSWORDS.to_vec();
    env.push(("MKPLAN_SIM_FAULTS", "crash_after_op=4"));
    env.push(("MKPLAN_LEASE_TTL_S", "600"));
    let crashed = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &env);
    assert_eq!(crashed.code, -1, "{}", crashed.stderr);
    let status = ws.mkplan(&["status", DESIRED]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("Lock: held by lease")
            && status.stdout.contains("Open rotation of")
            && status.stdout.contains("rewrap: not sent by this journal"),
        "{}",
        status.stdout
    );
    // The same, as data (the document is checked against its schema by the harness).
    let json = ws.mkplan(&["status", DESIRED, "--json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let state = &json.json()["state"];
    assert!(
        state["store"]
            .as_str()
            .is_some_and(|s| s.contains("postgres://")),
        "{state:#}"
    );
    assert_eq!(
        state["locks"].as_array().map(Vec::len),
        Some(1),
        "{state:#}"
    );
    assert_eq!(state["locks"][0]["holder_gone"], true, "{state:#}");
    let rotation = &state["open_rotations"][0];
    assert_eq!(rotation["rewrap"], "not_sent", "{state:#}");
    assert_eq!(
        rotation["crypto_units"].as_array().map(Vec::len),
        Some(3),
        "{state:#}"
    );
    assert_no_incidents(&ws, "crash, then status");
}

#[test]
fn push_moves_a_state_folder_once_and_pull_archives_it() {
    let Some(url) = database() else {
        return;
    };
    // The apply writes its journal in the workspace's folder, as before a team has a database.
    let ws = rotate_to_b(&three_units(true));
    let applied = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let folder = ws.path(".mkplan").display().to_string();
    let state = ["--state", url.as_str()];
    let push = ws.mkplan(&[&state[..], &["state", "push", "--from", &folder]].concat());
    assert_eq!(push.code, 0, "{}", push.stderr);
    assert!(push.stderr.contains("marked as pushed"), "{}", push.stderr);
    let again = ws.mkplan(&[&state[..], &["state", "push", "--from", &folder]].concat());
    assert_eq!(again.code, 3, "{}", again.stderr);
    assert!(again.stderr.contains("was pushed to"), "{}", again.stderr);
    let verify = ws.mkplan(&[&state[..], &["audit", "verify"]].concat());
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    let plan = ws.mkplan(&[&state[..], &["plan", DESIRED, "--detailed-exitcode"]].concat());
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let archive = ws.path("archive").display().to_string();
    let pull = ws.mkplan(&[&state[..], &["state", "pull", "--to", &archive]].concat());
    assert_eq!(pull.code, 0, "{}", pull.stderr);
    // The folder holds one record more than the database: the one that retired it.
    assert_eq!(
        ws.read("archive/1/journal.jsonl").lines().count() + 1,
        ws.read(".mkplan/journal.jsonl").lines().count()
    );
    assert_eq!(
        ws.read("archive/1/audit.jsonl"),
        ws.read(".mkplan/audit.jsonl")
    );
    let over = ws.mkplan(&[&state[..], &["state", "pull", "--to", &archive]].concat());
    assert_eq!(
        over.code, 1,
        "pull never writes over a folder: {}",
        over.stderr
    );
}

/// The adversary's break: `state push` while a `--not-run` attestation was in force; the
/// team applied from the database (the rewrap sent, then a crash); an operator still on the
/// folder applied from it and used the attestation a second time. The push now retires the
/// folder with a sealed record: plan, apply and attest from it are refused, nothing is sent.
#[test]
fn a_pushed_state_folder_is_an_archive_and_its_attestation_is_not_used_twice() {
    let Some(url) = database() else {
        return;
    };
    let ws = crate::cases::security_journal::interrupted_after_the_commits();
    crate::cases::security_journal::attest_not_run(&ws);
    let folder = ws.path(".mkplan").display().to_string();
    let state = ["--state", url.as_str()];
    let push = ws.mkplan(&[&state[..], &["state", "push", "--from", &folder]].concat());
    assert_eq!(push.code, 0, "{}", push.stderr);
    let mut crash = PASSWORDS.to_vec();
    crash.push(("MKPLAN_SIM_FAULTS", "crash_after_op=1"));
    let team = ws.mkplan_with_env(
        &[&state[..], &["apply", DESIRED, "--auto-approve"]].concat(),
        &crash,
    );
    assert_eq!(
        team.code, -1,
        "the team's apply sent the rewrap: {}",
        team.stderr
    );
    every_command_refuses(
        &ws,
        &["was pushed to"],
        "the folder's apply touched the fleet",
    );
    assert_no_incidents(&ws, "an apply from a pushed folder");
}

#[test]
fn a_database_with_a_newer_schema_or_an_edited_record_is_refused() {
    let Some((ws, url)) = with_database(&three_units(true)) else {
        return;
    };
    let applied = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_eq!(applied.code, 0, "{}", applied.stderr);

    // Rows are append-only: an edit by anyone but a superuser who disables the trigger fails.
    let edit = std::panic::catch_unwind(|| {
        execute(&url, "UPDATE mkplan_journal SET line = line WHERE seq = 1");
    });
    assert!(edit.is_err(), "the journal table refuses updates");
    // A superuser who works around it breaks the chain, and mkplan refuses with exit 3.
    execute(
        &url,
        "ALTER TABLE mkplan_journal DISABLE TRIGGER USER; \
         UPDATE mkplan_journal SET chain = repeat('0', 64) WHERE seq = 2; \
         ALTER TABLE mkplan_journal ENABLE TRIGGER USER;",
    );
    let plan = ws.mkplan(&["plan", DESIRED]);
    assert_eq!(plan.code, 3, "{}", plan.stderr);
    assert!(
        plan.stderr.contains("damaged at record 2"),
        "{}",
        plan.stderr
    );

    execute(&url, "INSERT INTO mkplan_schema (version) VALUES (99)");
    let newer = ws.mkplan(&["plan", DESIRED]);
    assert_eq!(newer.code, 1, "{}", newer.stderr);
    assert!(
        newer
            .stderr
            .contains("schema version 99, newer than this mkplan knows"),
        "{}",
        newer.stderr
    );
}

#[test]
fn the_database_password_never_reaches_a_message() {
    let Some(url) = database() else {
        return;
    };
    let ws = rotate_to_b(&three_units(true));
    let with_password = url.replacen("://mkplan@", "://mkplan:hunter2-secret@", 1);
    let wrong_port = with_password.replacen("127.0.0.1:", "127.0.0.1:1", 1);
    for state in [&with_password, &wrong_port] {
        let run = ws.mkplan(&["--state", state, "plan", DESIRED]);
        assert!(
            !run.stderr.contains("hunter2") && !run.stdout.contains("hunter2"),
            "{}",
            run.stderr
        );
    }
    let elsewhere = ws.mkplan(&[
        "--state",
        "postgres://ops:hunter2-secret@db.example:5432/mkplan",
        "plan",
        DESIRED,
    ]);
    assert_eq!(elsewhere.code, 1, "{}", elsewhere.stderr);
    assert!(
        elsewhere.stderr.contains("sslmode=require"),
        "{}",
        elsewhere.stderr
    );
    assert!(
        !elsewhere.stderr.contains("hunter2"),
        "{}",
        elsewhere.stderr
    );
}

/// The multi-actor property of the key-safety work with both mkplans on one database: X and
/// Y take turns with faults, an operator acts with the TKE CLI outside mkplan and attests the
/// truth when asked. Seeded runs, judged by the simulator: zero incidents, every run converged
/// or refused safely, and no more refusals than with two state folders (one database is a
/// witness to both). Rotations that X started and left are finished by Y.
#[test]
fn the_actors_drill_with_both_mkplans_on_one_database_loses_nothing() {
    let Some(url) = database() else {
        return;
    };
    let ws = rotate_to_b(&three_units(false));
    let drill = |shared: Option<&str>| {
        let mut args = vec![
            "drill", DESIRED, "--actors", "--runs", "30", "--seed", "11", "--json",
        ];
        if let Some(url) = shared {
            args.extend(["--shared-state", url]);
        }
        let run = ws.mkplan_with_env(&args, &PASSWORDS);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.json()
    };
    let apart = drill(None);
    let together = drill(Some(&url));
    for result in [&apart, &together] {
        assert_eq!(result["failed"], 0, "{result:#}");
        assert_eq!(result["incidents"], 0, "{result:#}");
    }
    let refused = |r: &serde_json::Value| r["refused"].as_u64().expect("a count");
    assert!(
        refused(&together) <= refused(&apart),
        "one database refused more than two folders: {} > {}",
        refused(&together),
        refused(&apart)
    );
    let y_finished_x = together["schedules"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|run| {
            let endings: Vec<&str> = run["attempt_endings"]
                .as_array()
                .expect("endings")
                .iter()
                .filter_map(|e| e.as_str())
                .collect();
            endings
                .iter()
                .position(|e| e.starts_with("X: ") && !e.ends_with("converged"))
                .is_some_and(|x| endings[x..].contains(&"Y: converged"))
        })
        .count();
    assert!(
        y_finished_x > 0,
        "no run where Y finished what X left: {together:#}"
    );
    let scopes = count(
        &url,
        "SELECT count(*) FROM mkplan_scopes WHERE scope LIKE 'drill %'",
    );
    assert_eq!(scopes, 30, "each run keeps a scope of its own");
    eprintln!(
        "actors drill, 30 runs: refused {} with two folders, {} with one database; Y finished X's rotation in {y_finished_x} runs",
        refused(&apart),
        refused(&together)
    );
}

/// `mkplan unlock ID` on a database never releases a live lease (its holder may have a request
/// on its way to the service); once the lease expired (its holder paused past its term), it
/// does, the holder's next write is refused, and the next apply converges.
#[test]
fn unlock_releases_only_an_expired_lease_and_its_holder_writes_nothing_more() {
    let Some((ws, url)) = with_database(&three_units(true)) else {
        return;
    };
    let server = Server::start(&ws.path(FLEET), "latency_ms=1000", &[]);
    let holder = spawn_apply(&ws, Some(&server.url), "", &[]);
    wait_until("the holder journals its first intents", || {
        intents(&url) > 0
    });
    let id = column(&url, "SELECT id FROM mkplan_leases")
        .pop()
        .expect("the holder's lease");
    let wrong = other(&ws, None, &["unlock", "0000"]);
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    let live = other(&ws, None, &["unlock", &id]);
    assert_eq!(live.code, 1, "a live lease stays: {}", live.stderr);
    assert!(live.stderr.contains("is live"), "{}", live.stderr);
    signal(&holder, libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(3_000));
    let unlocked = other(&ws, None, &["unlock", &id]);
    assert_eq!(unlocked.code, 0, "{}", unlocked.stderr);
    assert!(
        unlocked.stderr.contains(&format!("Released lease {id}")),
        "{}",
        unlocked.stderr
    );
    signal(&holder, libc::SIGCONT);
    let (code, stderr) = stderr_of(holder);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no longer holds its lease"), "{stderr}");
    let resumed = other(
        &ws,
        Some(&server.url),
        &["apply", DESIRED, "--auto-approve"],
    );
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_converged(&ws, "after unlock");
    assert_no_incidents(&ws, "unlock of an expired lease");
}

/// A database restored from a backup taken before a rewrap, under the same name: the machine
/// that wrote the later records sees the journal hold fewer than it saw, journals that it was
/// rolled back, and refuses (exit 3) instead of rewrapping again on the older attestation.
#[test]
fn a_database_restored_to_before_a_rewrap_is_seen_by_the_machine_that_wrote_after_it() {
    let Some((ws, url)) = with_database(&three_units(false)) else {
        return;
    };
    let mut env = PASSWORDS.to_vec();
    env.push(("MKPLAN_SIM_FAULTS", "crash_after_op=6"));
    let staged = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &env);
    assert_eq!(staged.code, -1, "{}", staged.stderr);
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
    let server = std::env::var("MKPLAN_TEST_POSTGRES").expect("a server");
    let (base, name) = url.rsplit_once('/').expect("a URL");
    execute(
        &server,
        &format!("CREATE DATABASE {name}_backup TEMPLATE {name}"),
    );
    // The attested apply sends the rewrap, then dies.
    let mut env = PASSWORDS.to_vec();
    env.push(("MKPLAN_SIM_FAULTS", "crash_after_op=1"));
    let crashed = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &env);
    assert_eq!(crashed.code, -1, "{}", crashed.stderr);
    // The restore, under the database's own name.
    execute(&server, &format!("DROP DATABASE {name} WITH (FORCE)"));
    execute(
        &server,
        &format!("ALTER DATABASE {name}_backup RENAME TO {name}"),
    );
    assert_eq!(format!("{base}/{name}"), url);
    let after = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_eq!(
        after.code, 3,
        "refused, not rewrapped again: {}",
        after.stderr
    );
    assert_no_incidents(&ws, "a database restored to before a rewrap");
}

/// Regression (adversary, finding 4): `state push` while an apply on the folder was running
/// copied the records written so far and retired the folder; the apply went on writing to the
/// retired folder (its commits, the rewrap's intent) and the database never knew of the
/// rewrap. Push now takes the folder's lock: refused while the apply holds it (exit 1, naming
/// the holder), nothing pushed, nothing appended; once the apply has ended, it pushes.
#[test]
fn state_push_is_refused_while_an_apply_holds_the_folders_lock() {
    let Some(url) = database() else {
        return;
    };
    let ws = rotate_to_b(&three_units(true));
    let apply = spawn_apply(&ws, None, "latency_ms=400", &[]);
    wait_until("the apply journals an intent", || {
        std::fs::read_to_string(ws.path(".mkplan/journal.jsonl"))
            .is_ok_and(|text| text.contains("\"intent\""))
    });
    let folder = ws.path(".mkplan").display().to_string();
    let state = ["--state", url.as_str()];
    let push = ws.mkplan(&[&state[..], &["state", "push", "--from", &folder]].concat());
    assert_eq!(push.code, 1, "{}", push.stderr);
    for words in [
        "state push needs the lock",
        "another apply holds the lock",
        "by process",
        "Nothing was pushed",
    ] {
        assert!(push.stderr.contains(words), "{words}: {}", push.stderr);
    }
    assert_eq!(
        count(&url, "SELECT count(*) FROM mkplan_journal"),
        0,
        "nothing was pushed"
    );
    let (code, stderr) = stderr_of(apply);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !ws.read(".mkplan/journal.jsonl").contains("\"pushed\""),
        "the refused push retired nothing"
    );
    assert_converged(&ws, "the apply the push waited for");
    let push = ws.mkplan(&[&state[..], &["state", "push", "--from", &folder]].concat());
    assert_eq!(push.code, 0, "{}", push.stderr);
}

/// Defence in depth for the same break: a folder whose journal has records after its
/// `pushed` record (an older mkplan's push, which took no lock, with an apply writing) is
/// refused, exit 3, by plan, apply and attest, naming those records and saying that the
/// database lacks them; nothing is sent. The `pushed` record is appended here as that push
/// did, while the apply holds the lock and goes on writing.
#[test]
fn a_folder_with_records_written_after_its_push_is_refused_naming_them() {
    use mkplan::apply::journal::{Journal, Record};
    use mkplan::apply::journal_key::JournalKey;
    let ws = rotate_to_b(&three_units(true));
    let apply = spawn_apply(&ws, None, "latency_ms=300", &[]);
    wait_until("the apply journals an intent", || {
        std::fs::read_to_string(ws.path(".mkplan/journal.jsonl"))
            .is_ok_and(|text| text.contains("\"intent\""))
    });
    let key = JournalKey::load(&ws.journal_key())
        .expect("the journal key reads")
        .expect("the apply made the journal key");
    let mut journal = Journal::open(&ws.path(".mkplan"), &key).expect("the journal opens");
    journal
        .append(Record::Pushed {
            to: "postgres://mkplan@db.example/mkplan".into(),
            at: "2026-12-01T16:00:00Z".into(),
        })
        .expect("pushed appended");
    drop(journal);
    let (code, stderr) = stderr_of(apply);
    assert_eq!(code, 0, "{stderr}");
    every_command_refuses(
        &ws,
        &[
            "written after the push",
            "rewrap_key_storage",
            "the database does not have these records",
            "never `mkplan attest rewrap --not-run`",
        ],
        "nothing was sent",
    );
    assert_no_incidents(&ws, "a folder written after its push");
}

/// `apply`, `plan` and `attest rewrap --not-run` with the workspace's folder each exit 3
/// saying every one of `words`, and the fleet is left as it was (`untouched` says so).
fn every_command_refuses(ws: &Workspace, words: &[&str], untouched: &str) {
    let before = ws.bytes(FLEET);
    for args in [
        vec!["apply", DESIRED, "--auto-approve"],
        vec!["plan", DESIRED],
        crate::cases::security_journal::NOT_RUN.to_vec(),
    ] {
        let run = ws.mkplan_with_env(&args, &PASSWORDS);
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        for said in words {
            assert!(run.stderr.contains(said), "{args:?} {said}: {}", run.stderr);
        }
    }
    assert_eq!(ws.bytes(FLEET), before, "{untouched}");
}

/// Regression (adversary round 3, h5): a folder's apply sent a rewrap and died; its records
/// never reached the database (the `state push` was refused while that apply ran, and the
/// operator went on as if it had worked). The database's journal is silent about the
/// rewrap, and `attest rewrap --not-run` against it, on the operator's word alone, is
/// refused: the folder, another journal this user's mkplan wrote on this machine, says the
/// rewrap was sent to this very backend and never answered. It names the folder and what
/// settles it; the database's apply sends nothing.
#[test]
fn attest_not_run_against_a_database_is_refused_while_a_folder_holds_the_unanswered_rewrap() {
    let Some(url) = database() else {
        return;
    };
    let ws = rotate_to_b(&three_units(false));
    let mut env = PASSWORDS.to_vec();
    env.push(("MKPLAN_SIM_FAULTS", "crash_after_op=7"));
    let crashed = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &env);
    assert_eq!(
        crashed.code, -1,
        "died right after its rewrap: {}",
        crashed.stderr
    );
    let state = ["--state", url.as_str()];
    let not_run = crate::cases::security_journal::NOT_RUN;
    let attest = ws.mkplan(&[&state[..], &not_run[..]].concat());
    assert_eq!(attest.code, 3, "{}", attest.stderr);
    let folder = ws.path(".mkplan").canonicalize().expect("the folder");
    for words in [
        format!("the journal in {}", folder.display()),
        "another state folder this user's mkplan wrote on this machine".into(),
        "was sent".into(),
        "never answered".into(),
        format!("mkplan state push --from {}", folder.display()),
        "--service-evidence".into(),
        "Nothing was journaled".into(),
    ] {
        assert!(attest.stderr.contains(&words), "{words}: {}", attest.stderr);
    }
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM mkplan_journal WHERE line LIKE '%attested%'"
        ),
        0,
        "nothing journaled"
    );
    let apply = ws.mkplan_with_env(
        &[&state[..], &["apply", DESIRED, "--auto-approve"]].concat(),
        &PASSWORDS,
    );
    assert_eq!(apply.code, 3, "{}", apply.stderr);
    assert_eq!(intents(&url), 0, "the database's apply sent nothing");
    // Attesting into the folder itself is refused as before: its own rewrap went unanswered.
    let own = ws.mkplan(&not_run);
    assert_eq!(own.code, 3, "{}", own.stderr);
    assert!(
        !own.stderr.contains("another state folder"),
        "the folder is not its own other journal: {}",
        own.stderr
    );
    assert_no_incidents(
        &ws,
        "attest against a database the folder's rewrap never reached",
    );
}
