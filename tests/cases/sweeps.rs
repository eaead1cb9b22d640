//! Every fault at every operation, then the rerun, in process: the drill's apply (the
//! executor, the journal and the planner that `mkplan apply` runs, on the embedded simulator
//! or over HTTP to an in-process `sim serve`) with one fault at operation n, for every n, on a
//! 3-unit instance and on one with 3 operational, 2 recovery and 2 failover units, with and
//! without a service that reports its rewrap status.
//!
//! In process is exact for these faults: the drill's crash drops the apply at the end of the
//! crashing operation, keeping every journal record written before it and writing none after,
//! as a killed process would (every record is written before the next operation starts); a
//! lost response and a failed operation are errors the executor sees either way. The real
//! process's death (SIGKILL of `mkplan` mid-apply, a `sim serve` that dies) and the rerun by
//! another operator on a shared database are in `cases::apply`, at the operations where the
//! outcome differs: a load, a commit, the rewrap, the last step.
//!
//! The simulator is the judge: after every sequence it must show zero incidents, and the fleet
//! must be converged, or the rerun must have refused exactly where the rewrap's outcome is
//! unknown (no status, and the rewrap sent or commits made before a crash; or the rewrap
//! failed, which "no rewrap" does not settle).

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use mkplan::backend::sim::Fleet as SimFleet;
use mkplan::drill::schedule::{AttemptFaults, Schedule};
use mkplan::drill::{Drill, RunResult, Verdict, run_schedule, runtime};
use mkplan::keypart::Secret32;

use crate::cases::apply::{seven_units, three_units};
use crate::support::*;

/// `mkplan apply`'s default parallelism, as the binary sweeps in `cases::apply` ran with.
const PARALLELISM: usize = 10;

/// Mutating operations of a full rotation of `units` crypto units.
fn operations(units: usize) -> usize {
    3 * units + 1
}

/// The two demo key parts of the first instance, opened once (tests/fixtures/keyparts).
fn key_parts() -> &'static HashMap<String, Vec<Secret32>> {
    static PARTS: OnceLock<HashMap<String, Vec<Secret32>>> = OnceLock::new();
    PARTS.get_or_init(|| {
        let parts = (1..=2)
            .map(|n| {
                let path = repo_file(&format!("tests/fixtures/keyparts/custodian-{n}.json"));
                let text = std::fs::read_to_string(&path).expect("a test key part file");
                let file = mkplan::keypart::parse_file("part", &text).expect("it parses");
                let password = mkplan::keypart::Password::new(DEMO_PASSWORDS[n - 1].into());
                mkplan::keypart::open(&file, &password).expect("it opens")
            })
            .collect();
        HashMap::from([(INSTANCE.to_string(), parts)])
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// mkplan dies right after the operation took effect.
    Crash,
    /// Over HTTP: the server dies right after the operation is on disk, without answering,
    /// and comes back on the same file and port.
    ServerDies,
    LostResponse,
    Failed,
}

impl Fault {
    fn at(self, n: u64) -> AttemptFaults {
        let mut faults = AttemptFaults::default();
        match self {
            Fault::Crash => faults.crash_after_op = Some(n),
            Fault::ServerDies => faults.restart_server_after_op = Some(n),
            Fault::LostResponse => {
                faults.lose_response_op.insert(n);
            }
            Fault::Failed => {
                faults.fail_op.insert(n);
            }
        }
        faults
    }

    /// The attempt was interrupted, as a crash interrupts it: a gap in which someone else may
    /// have rewrapped.
    fn interrupts(self) -> bool {
        matches!(self, Fault::Crash | Fault::ServerDies)
    }
}

/// One fault at every operation, each in a fresh copy of the fleet and a fresh journal, on a
/// service that reports its rotation status and on one that does not.
fn sweep(fleet: fn(bool) -> Fleet, units: usize, fault: Fault, over_http: bool) {
    for reports in [true, false] {
        sweep_one(fleet, units, fault, over_http, reports);
    }
}

/// `sweep` on one kind of service: `reports` says whether it reports its rotation status.
fn sweep_one(fleet: fn(bool) -> Fleet, units: usize, fault: Fault, over_http: bool, reports: bool) {
    let fleet = fleet(reports);
    let ws = rotate_to_b(&fleet);
    let desired_text = ws.read(DESIRED);
    let desired = mkplan::model::parse_desired(DESIRED, &desired_text, ws.dir.path())
        .expect("the desired file parses");
    let sim = SimFleet::parse(FLEET, &fleet.to_yaml()).expect("the fleet parses");
    let drill = Drill {
        desired: &desired,
        desired_sha256: "sweep",
        fleet: &sim,
        key_parts: key_parts(),
        planner: mkplan::plan::plan,
    };
    let scratch = ws.dir.path();
    let run = |n: u64, runtime: &tokio::runtime::Runtime| {
        let schedule = Schedule {
            seed: n,
            parallelism: PARALLELISM,
            latency_ms: 0,
            attempts: vec![fault.at(n)],
            actors: Vec::new(),
        };
        let result = runtime
            .block_on(run_schedule(&drill, n, schedule, scratch, over_http))
            .expect("the run's scratch folders");
        judge(&result, units, fault, reports, n);
    };
    let points = 1..=operations(units) as u64;
    if over_http {
        // Each run has its own server, port, fleet file and state folder, and waits on a
        // real clock and network: two side by side, each on a runtime of its own.
        crate::cases::parallel::each(HTTP_WIDTH, points, |n| {
            run(n, &runtime(true).expect("a runtime"))
        });
    } else {
        let runtime = runtime(false).expect("a runtime");
        for n in points {
            run(n, &runtime);
        }
    }
}

/// Runs of an HTTP sweep side by side.
const HTTP_WIDTH: usize = 2;

/// What `cases::apply`'s binary sweeps asserted, on the drill's record of the run.
fn judge(result: &RunResult, units: usize, fault: Fault, reports: bool, n: u64) {
    let context = format!(
        "{fault:?} at operation {n} of {}, {units} units, reports_rotation_status={reports}, over HTTP: {}\nendings {:#?}\nlog {:#?}",
        operations(units),
        result.over_http,
        result.attempt_endings,
        result.log
    );
    assert!(!result.fired.is_empty(), "the fault never fired: {context}");
    assert!(
        result.violations.is_empty(),
        "incidents: {:?}\n{context}",
        result.violations
    );
    if fault == Fault::Crash {
        assert_eq!(
            result.attempt_endings[0], "crashed (injected)",
            "the first attempt must die: {context}"
        );
    }
    let rewrap_op = 2 * units as u64 + 1;
    let done = |p: &&mkplan::drill::backend::Performed| {
        p.result.starts_with("done") || p.result.starts_with("accepted")
    };
    // A commit the log shows took effect. An interrupted attempt may also have had commits in
    // flight that took effect unlogged (over HTTP the server performs them after the client
    // is gone): after an interruption before the rewrap, the rerun may refuse either way.
    let committed = result
        .log
        .iter()
        .filter(|p| p.attempt == 1 && p.operation == "commit_new_mk")
        .any(|p| done(&p));
    let first_converged = result.attempt_endings[0] == "converged";
    // A rewrap whose outcome is unknown (sent, and the answer lost or the attempt cut off),
    // or a gap after commits in which someone else may have rewrapped: without the service's
    // status the rerun must refuse, never resend it, until the operator says what happened.
    // With it, a rewrap the service failed is unknown too: its "no rewrap" cannot tell a
    // request that never ran from one still on its way or queued.
    let unknown_rewrap = n == rewrap_op && (!reports || fault == Fault::Failed);
    let interrupted = !reports && fault.interrupts() && n < rewrap_op;
    let must_refuse = (unknown_rewrap || (interrupted && committed)) && !first_converged;
    let may_refuse = must_refuse || (interrupted && !first_converged);
    if let Verdict::Refused { reason } = &result.verdict {
        assert!(
            may_refuse,
            "refused where the rerun must converge: {context}"
        );
        assert!(
            reason.contains("rewrap_evidence"),
            "refused for another reason: {reason}\n{context}"
        );
        assert_eq!(result.attempts, 2, "refused at once: {context}");
    } else if must_refuse {
        panic!("the rerun must refuse, got {:?}\n{context}", result.verdict);
    } else {
        assert_eq!(
            result.verdict,
            Verdict::Converged,
            "the rerun must converge: {context}"
        );
        assert!(result.attempts <= 2, "one rerun converges: {context}");
    }
    let rewraps: BTreeSet<_> = result
        .log
        .iter()
        .filter(|p| p.operation == "rewrap_key_storage")
        .filter(done)
        .map(|p| (p.attempt, p.number))
        .collect();
    assert!(rewraps.len() <= 1, "rewrap sent twice: {context}");
}

#[test]
fn crash_at_every_operation_then_rerun_three_units() {
    sweep(three_units, 3, Fault::Crash, false);
}

#[test]
fn crash_at_every_operation_then_rerun_seven_units() {
    sweep(seven_units, 7, Fault::Crash, false);
}

#[test]
fn lost_response_at_every_operation() {
    sweep(three_units, 3, Fault::LostResponse, false);
    sweep(seven_units, 7, Fault::LostResponse, false);
}

#[test]
fn failed_operation_at_every_operation() {
    sweep(three_units, 3, Fault::Failed, false);
    sweep(seven_units, 7, Fault::Failed, false);
}

/// Over HTTP a run takes a real server and a real clock (about half a second): each sweep is
/// four tests, one per fleet and kind of service, so that the suite's threads share them.
macro_rules! http_sweeps {
    ($($name:ident: $fault:expr;)*) => {$(
        mod $name {
            use super::super::*;

            http_sweeps!(@one three_units_reporting_status: three_units, 3, $fault, true);
            http_sweeps!(@one three_units_silent: three_units, 3, $fault, false);
            http_sweeps!(@one seven_units_reporting_status: seven_units, 7, $fault, true);
            http_sweeps!(@one seven_units_silent: seven_units, 7, $fault, false);
        }
    )*};
    (@one $test:ident: $fleet:ident, $units:expr, $fault:expr, $reports:expr) => {
        #[test]
        fn $test() {
            sweep_one($fleet, $units, $fault, true, $reports);
        }
    };
}

mod http {
    http_sweeps! {
        crash_at_every_operation_then_rerun: Fault::Crash;
        server_dies_at_every_operation_then_rerun: Fault::ServerDies;
        lost_response_at_every_operation: Fault::LostResponse;
        failed_operation_at_every_operation: Fault::Failed;
    }
}

/// The sweep's judge is not blind: a run the simulator saw rewrap twice, or that converged
/// where it had to refuse, fails it.
#[test]
#[should_panic(expected = "the rerun must refuse")]
fn a_sweep_that_converges_where_it_must_refuse_fails() {
    let result = RunResult {
        run: 1,
        schedule: Schedule {
            seed: 1,
            parallelism: 1,
            latency_ms: 0,
            attempts: vec![Fault::LostResponse.at(7)],
            actors: Vec::new(),
        },
        verdict: Verdict::Converged,
        attempts: 2,
        attempt_endings: vec!["stopped: lost".into(), "converged".into()],
        operations: 10,
        recovery_operations: 3,
        over_http: false,
        fired: vec!["attempt 1, operation 7 (rewrap_key_storage): lost response".into()],
        violations: Vec::new(),
        log: Vec::new(),
    };
    judge(&result, 3, Fault::LostResponse, false, 7);
}
