//! Regressions from the third adversarial review (repro3 h7/h7b, h2, h4/h4b): a rewrap mkplan
//! sent is never forgotten, not by an abort that closes its rotation, not by registers that
//! were cleared after it, not by reaching the same service under another backend identity.
//! Every test runs the binary and ends with the simulator's incidents checked.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::cases::apply::{PASSWORDS, assert_no_incidents, sim, three_units};
use crate::cases::network::apply_via;
use crate::support::*;

/// Everything the command said.
pub(crate) fn said(run: &Run) -> String {
    format!("{}\n{}", run.stdout, run.stderr)
}

#[track_caller]
pub(crate) fn assert_says(run: &Run, code: i32, words: &[&str], context: &str) {
    let text = said(run);
    assert_eq!(run.code, code, "{context}: exit {}\n{text}", run.code);
    for word in words {
        assert!(text.contains(word), "{context}: {word:?} missing\n{text}");
    }
}

/// Another operator, straight at the service (`sim serve`'s JSON API): clears `unit`'s new
/// register. A plain HTTP/1.1 request: the test crate has no HTTP client.
pub(crate) fn clear_new_register(url: &str, unit: &str) {
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).expect("the server accepts");
    let request = format!(
        "POST /v1/tke/{INSTANCE}/hsms/{unit}/clear_new_mk HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "clear of {unit}: {answer}"
    );
}

/// h7/h7b. A slow service queues mkplan's rewrap and its answer is lost (no rotation status:
/// apply stops, exit 1). Another operator aborts by clearing every new register: the registers
/// now look like a finished rotation (every current A, every new Empty). The queued rewrap may
/// still land once B is staged again, so: `plan` refuses (it used to plan the whole rotation,
/// rewrap included), `journal close` refuses and closes nothing, an apply of a desired file
/// for A ("nothing to do") keeps the rotation open with a warning instead of closing it, and
/// the next apply for B still refuses. Nothing ever stages B again: zero incidents.
#[test]
fn an_abort_never_closes_a_rotation_whose_rewrap_went_unanswered() {
    let ws = rotate_to_b(&three_units(false));
    let mut server = Server::start(
        &ws.path(FLEET),
        "lose_response_op=7,lost_response_lands_after_ms=8000",
        &[],
    );
    let sent = Instant::now();
    let first = apply_via(&ws, &server.url, None, &["--parallelism", "1"]);
    assert_says(
        &first,
        1,
        &["outcome is unknown"],
        "the rewrap's answer is lost",
    );
    for n in 1..=3 {
        clear_new_register(&server.url, &u(n));
    }
    let backend = [("MKPLAN_BACKEND", server.url.as_str())];

    let plan = ws.mkplan_with_env(&["plan", DESIRED], &backend);
    assert_says(
        &plan,
        3,
        &[
            "rewrap_evidence",
            "never recorded",
            "--completed",
            "--service-evidence",
        ],
        "plan after the abort",
    );
    assert!(!said(&plan).contains("Plan:"), "{}", said(&plan));

    let journaled = ws.read(".mkplan/journal.jsonl");
    let close = ws.mkplan_with_env(&["journal", "close", DESIRED], &backend);
    assert_says(
        &close,
        3,
        &[
            "Kept open",
            INSTANCE,
            "--service-evidence",
            "Nothing was closed",
        ],
        "journal close",
    );
    assert_eq!(ws.read(".mkplan/journal.jsonl"), journaled, "close wrote");

    // The abort's desired file: back to A, nothing to do.
    ws.write(
        DESIRED,
        &Desired::rotate_to(A)
            .without_key_parts()
            .to_yaml(&[INSTANCE.to_string()]),
    );
    let nothing = apply_via(&ws, &server.url, None, &[]);
    assert_says(
        &nothing,
        0,
        &["warning: Kept open", "No changes"],
        "nothing to do",
    );
    assert!(!said(&nothing).contains("Closed the journal's rotation"));

    ws.write(
        DESIRED,
        &Desired::rotate_to(B).to_yaml(&[INSTANCE.to_string()]),
    );
    let again = apply_via(&ws, &server.url, None, &["--parallelism", "1"]);
    assert_says(&again, 3, &["rewrap_evidence"], "the rotation again");
    the_queued_rewrap_lands_on_nothing(&ws, &mut server, sent, 8_000, "after the abort");
}

/// The steps of a test came before a rewrap queued at `sent` lands `lands_ms` later; it
/// lands, and fails (nothing is staged): the server stops cleanly, with no incident and the
/// key storage still under A.
pub(crate) fn the_queued_rewrap_lands_on_nothing(
    ws: &Workspace,
    server: &mut Server,
    sent: Instant,
    lands_ms: u64,
    context: &str,
) {
    assert!(
        sent.elapsed() < Duration::from_millis(lands_ms),
        "the steps above came after the queued rewrap landed: the test proves less"
    );
    std::thread::sleep(Duration::from_millis(lands_ms + 500).saturating_sub(sent.elapsed()));
    assert!(server.stop().success());
    assert_no_incidents(ws, context);
    assert_eq!(
        sim(ws).instances[0]
            .key_storage
            .verification_pattern
            .as_str(),
        A
    );
}

/// h2. Status reported; mkplan's own rewrap A → B completed (journaled), then every set
/// immediate failed and every new register was cleared afterwards (a file edit here: as
/// an operation it would be the incident itself). The service still reports "rewrap
/// successful, waiting on set immediate", every current register holds A. A service waiting
/// on set immediate cannot have rewrapped to a key every current register already holds:
/// `plan`, `apply` and `status --export-fleet` refuse (evidence_consistent) and name B and
/// its recovery; nothing is sent (the fleet file is untouched, no incident is recorded).
#[test]
fn a_service_waiting_on_set_immediate_never_had_its_rewrap_go_to_a_key_every_unit_holds() {
    let ws = rotate_to_b(&three_units(true));
    let env = [
        PASSWORDS.to_vec(),
        vec![("MKPLAN_SIM_FAULTS", "fail_op=8,fail_op=9,fail_op=10")],
    ]
    .concat();
    let first = ws.mkplan_with_env(
        &["apply", DESIRED, "--auto-approve", "--parallelism", "1"],
        &env,
    );
    assert_eq!(first.code, 1, "set immediate fails: {}", said(&first));
    assert_no_incidents(&ws, "the rewrap completed, set immediate failed");
    let mut fleet = sim(&ws);
    assert_eq!(
        fleet.instances[0].key_storage.verification_pattern.as_str(),
        B
    );
    for unit in &mut fleet.instances[0].crypto_units {
        unit.new_register = mkplan::model::NewRegister::Empty;
    }
    // No register holds B: the simulator calls that lost (in reality, loading B again from its
    // key parts saves it).
    fleet.instances[0].key_storage.unusable = true;
    ws.write(FLEET, &fleet.to_yaml());
    let before = ws.bytes(FLEET);

    for (run, context) in [
        (ws.mkplan(&["plan", DESIRED]), "plan"),
        (
            ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS),
            "apply",
        ),
        (
            ws.mkplan(&["status", DESIRED, "--export-fleet", "exported.yaml"]),
            "status --export-fleet",
        ),
    ] {
        assert_says(
            &run,
            3,
            &[
                "evidence_consistent",
                "waiting on",
                &B[..12],
                "Load 57c060b114f5… again from its key parts",
            ],
            context,
        );
        assert!(!said(&run).contains("rewrap_key_storage"), "{context}");
    }
    assert!(!ws.path("exported.yaml").exists(), "an export was written");
    assert_eq!(ws.bytes(FLEET), before, "a refused run touched the fleet");
    assert!(sim(&ws).incidents.is_empty(), "{:#?}", sim(&ws).incidents);
}

/// h4. mkplan's own rewrap answer is lost (no rotation status): `attest --not-run` needs what
/// the service showed. The fleet file then moves to prod/fleet.yaml (same service, instance,
/// units, folder and journal key): the backend's identity changes. The records of the old
/// identity are still no evidence, but their unanswered rewrap keeps `plan` and `apply`
/// refusing, and a plain `attest --not-run` is refused naming the other identity; with what
/// the service showed it is taken. No second rewrap: zero incidents.
#[test]
fn a_moved_fleet_file_keeps_its_unanswered_rewrap_on_record() {
    let ws = rotate_to_b(&three_units(false));
    let env = [
        PASSWORDS.to_vec(),
        vec![("MKPLAN_SIM_FAULTS", "lose_response_op=7")],
    ]
    .concat();
    let first = ws.mkplan_with_env(
        &["apply", DESIRED, "--auto-approve", "--parallelism", "1"],
        &env,
    );
    assert_eq!(
        first.code,
        1,
        "the rewrap's answer is lost: {}",
        said(&first)
    );
    let attest = [
        "attest",
        "rewrap",
        INSTANCE,
        "--desired",
        DESIRED,
        "--not-run",
    ];
    assert_says(
        &ws.mkplan(&attest),
        3,
        &["--service-evidence"],
        "attest before the move",
    );

    let moved = sim(&ws).to_yaml();
    std::fs::create_dir_all(ws.path("prod")).unwrap();
    ws.write("prod/fleet.yaml", &moved);
    std::fs::remove_file(ws.path(FLEET)).unwrap();
    let desired = ws
        .read(DESIRED)
        .replace("sim:fleet.yaml", "sim:prod/fleet.yaml");
    assert!(desired.contains("sim:prod/fleet.yaml"), "{desired}");
    ws.write(DESIRED, &desired);
    let before = ws.bytes("prod/fleet.yaml");

    let plan = ws.mkplan(&["plan", DESIRED]);
    assert_says(
        &plan,
        3,
        &["rewrap_evidence", "never answered", "--service-evidence"],
        "plan after the move",
    );
    assert!(
        !said(&plan).contains("(nobody rewrapped since)"),
        "{}",
        said(&plan)
    );
    let refused = ws.mkplan(&attest);
    assert_says(
        &refused,
        3,
        &[
            "fleet.yaml",
            "never answered",
            "rehearsal",
            "--service-evidence",
        ],
        "attest --not-run after the move",
    );
    let apply = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_says(&apply, 3, &["rewrap_evidence"], "apply after the move");
    assert_eq!(ws.bytes("prod/fleet.yaml"), before, "a refused run acted");

    let fleet = mkplan::backend::sim::oplog::read(&ws.path("prod/fleet.yaml")).unwrap();
    assert!(fleet.incidents.is_empty(), "{:#?}", fleet.incidents);
    assert!(!fleet.instances[0].key_storage.unusable);
}
