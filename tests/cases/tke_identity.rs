//! A `tke:` backend's journal records bind to whose crypto modules answer, not only to the
//! URL (adversarial round 10, R1): a rehearsal on `mkplan sim serve --protocol tke` served at
//! the very address the real service is reached through (a local forwarder) never lends its
//! journal to the real rotation. The "real" service here is a second simulator whose crypto
//! modules chain to another OA root (`oa_second_test_root`), as IBM's differ from the test
//! root in life.

use crate::cases::security_journal::NOT_RUN;
use crate::cases::tke_operator::{Operator, apply_at};
use crate::cases::tke_signed::{ALICE_AND_BOB, workspace};
use crate::support::*;

const REAL: &str = "oa_second_test_root=1";
const REHEARSAL: &str = "rehearsal.yaml";

fn tke(ws: &Workspace, url: &str, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--backend", "tke:us-south", "--tke-endpoint", url]);
    ws.mkplan_with_env(&all, &with_test_oa_root(&[]))
}

fn incidents(ws: &Workspace, fleet: &str) -> usize {
    mkplan::backend::sim::oplog::read(&ws.path(fleet))
        .expect("the fleet reads")
        .incidents
        .len()
}

#[test]
fn a_rehearsal_at_the_real_services_url_never_lends_it_its_journal() {
    let ws = workspace(&ALICE_AND_BOB);
    let tke_protocol = ["--protocol", "tke"];
    // 1. The real service, through the forwarder's address: loads and commits B; the operator
    // stops at the rewrap (tomorrow's change window).
    let real = Server::start(&ws.path(FLEET), REAL, &tke_protocol);
    let url = real.url.clone();
    let address = url.trim_start_matches("http://").to_string();
    let (code, transcript, _) = apply_at(&ws, &url, &[], Operator::Stops);
    assert_eq!(code, 1, "{transcript}");
    drop(real);
    // 2. A rehearsal of the rest on a copy of the live state, served at the same address, in
    // the same state folder; cut off right after its rewrap is journaled done. Its commands
    // are slowed as a remote service's are (150 ms each; 700 ms made this test 41 s long).
    ws.write(REHEARSAL, &ws.read(FLEET));
    let rehearsal = Server::start_on(
        &ws.path(REHEARSAL),
        "latency_ms=150",
        &tke_protocol,
        &address,
    );
    assert_eq!(rehearsal.url, url);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let rehearsal_began = mkplan::timestamp::utc_now();
    let attest = tke(&ws, &url, &NOT_RUN);
    eprintln!("rehearsal attest: {}\n{}", attest.code, attest.stderr);
    let (code, transcript, _) = apply_at(&ws, &url, &[], Operator::RewrapsThenCutOff);
    eprintln!("rehearsal apply: {code}\n{transcript}");
    drop(rehearsal);
    // 3. The real service again. Every operator answers what mkplan asks truthfully: the one
    // whose run was shown the rewrap says what the TKE CLI told them; asked whether anybody
    // rotated back, everybody says no.
    let real = Server::start_on(&ws.path(FLEET), REAL, &tke_protocol, &address);
    let plan = tke(&ws, &url, &["plan", DESIRED]);
    eprintln!("real plan: {}\n{}", plan.code, plan.stderr);
    if let Some(answer) = truthful_answer(&plan.stderr, &rehearsal_began) {
        let attest = tke(
            &ws,
            &url,
            &["attest", "rewrap", INSTANCE, answer, "--desired", DESIRED],
        );
        eprintln!("real attest {answer}: {}\n{}", attest.code, attest.stderr);
    }
    let (code, transcript, _) = apply_at(&ws, &url, &[], Operator::Rewraps);
    eprintln!("real apply: {code}\n{transcript}");
    drop(real);
    assert_eq!(incidents(&ws, REHEARSAL), 0, "the rehearsal's fleet");
    assert_eq!(
        incidents(&ws, FLEET),
        0,
        "the real fleet: a set immediate before its rewrap"
    );
}

/// What an honest operator attests after the refusal `said`: the run it names as shown the
/// rewrap was the rehearsal's (it began at or after `rehearsal_began`), whose operator saw the
/// TKE CLI report success, or the real one's, whose operator typed 'stop'; asked whether
/// anybody finished and rotated back, nobody did.
fn truthful_answer(said: &str, rehearsal_began: &str) -> Option<&'static str> {
    if said.contains("ended without their word") {
        let at = said.split("in the run of ").nth(1)?.get(..20)?;
        return Some(if at >= rehearsal_began {
            "--completed"
        } else {
            "--not-run"
        });
    }
    (said.contains("If nobody did, confirm the journal")).then_some("--completed")
}
