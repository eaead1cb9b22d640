//! `apply --backend tke:REGION` sending signed admin commands to `sim serve --protocol tke`:
//! loads (IMPORT_WK, with GEN_IMPORTER first), commits, set immediates and clears, signed by
//! the administrators' P-521 signature key files (tests/fixtures/sigkeys, the TKE CLI's
//! format), checked by the simulated card (signatures against the fleet's public keys,
//! thresholds, transaction counters). The rewrap stays a ceremony step, performed by a
//! scripted operator. Every apply ends with zero incidents in the simulator.

use crate::cases::apply::sim;
use crate::cases::tke_operator::{Operator, apply_at};
use crate::support::*;

/// The passwords of the fixture key files (TEST MATERIAL).
const ALICE: (&str, &str) = ("MKPLAN_SIGKEY_ALICE", "sigkey-alice-demo");
const BOB: (&str, &str) = ("MKPLAN_SIGKEY_BOB", "sigkey-bob-demo");
const CAROL: (&str, &str) = ("MKPLAN_SIGKEY_CAROL", "sigkey-carol-demo");
const MALLORY: (&str, &str) = ("MKPLAN_SIGKEY_MALLORY", "sigkey-mallory-demo");
const DAVE: (&str, &str) = ("MKPLAN_SIGKEY_DAVE", "sigkey-dave-demo");

/// The fixture administrators' fleet lines (SKI and public key).
fn administrator_line(name: &str) -> String {
    let lines =
        std::fs::read_to_string(repo_file("tests/fixtures/sigkeys/administrators.yaml")).unwrap();
    lines
        .lines()
        .find(|l| l.contains(&format!("name: {name},")))
        .unwrap()
        .trim_start_matches("- ")
        .to_string()
}

/// The three-unit example, silent about its rotation status, whose administrators alice, bob
/// and carol hold the fixture keys; `keys` are the desired file's signature_keys lines. Its
/// rewrap completes at once: the example's rewrap (3,000 keys at 1 ms each) keeps every apply
/// that reaches it waiting 3 s for the simulator, and only
/// `a_rotation_is_sent_signed_and_only_the_rewrap_is_a_ceremony` needs it slow
/// (`workspace_with_the_examples_rewrap`).
pub(super) fn workspace(keys: &[&str]) -> Workspace {
    let ws = workspace_with_the_examples_rewrap(keys);
    let fleet = ws.read(FLEET);
    let slow = "rewrap_ms_per_key: 1\n";
    assert_eq!(fleet.matches(slow).count(), 1, "the example's rewrap");
    ws.write(FLEET, &fleet.replace(slow, "rewrap_ms_per_key: 0\n"));
    ws
}

/// `workspace(keys)` with the example's rewrap, which runs 3 s after the operator starts it:
/// mkplan reads the live state while it runs until it is over.
fn workspace_with_the_examples_rewrap(keys: &[&str]) -> Workspace {
    let ws = crate::cases::tke::example("three-units");
    let mut fleet = ws.read(FLEET);
    for (name, ski) in [
        ("alice", "3f0a3f0a"),
        ("bob", "7c217c21"),
        ("carol", "9e5d9e5d"),
    ] {
        let old = format!("{{ name: {name}, ski: \"{}\" }}", ski.repeat(8));
        assert!(fleet.contains(&old));
        fleet = fleet.replace(&old, &administrator_line(name));
    }
    ws.write(FLEET, &fleet);
    std::fs::create_dir_all(ws.path("sigkeys")).unwrap();
    for name in ["alice", "bob", "carol", "mallory", "dave-rsa"] {
        std::fs::copy(
            repo_file(&format!("tests/fixtures/sigkeys/{name}.json")),
            ws.path(&format!("sigkeys/{name}.json")),
        )
        .unwrap();
    }
    let mut desired = ws.read(DESIRED);
    desired.push_str("signature_keys:\n");
    for line in keys {
        desired.push_str(&format!("  {line}\n"));
    }
    ws.write(DESIRED, &desired);
    ws
}

pub(super) const ALICE_AND_BOB: [&str; 2] = [
    "alice: { file: sigkeys/alice.json, password_env: MKPLAN_SIGKEY_ALICE }",
    "bob: { file: sigkeys/bob.json, password_env: MKPLAN_SIGKEY_BOB }",
];

pub(super) fn env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![
        ("MKPLAN_PART1_PASSWORD", DEMO_PASSWORDS[0]),
        ("MKPLAN_PART2_PASSWORD", DEMO_PASSWORDS[1]),
        ALICE,
        BOB,
    ];
    all.extend_from_slice(extra);
    with_test_oa_root(&all)
}

/// `apply` over the TKE protocol with an operator who performs the rewrap when shown it and
/// attests it: (exit code, stderr, ceremony steps shown).
fn apply(ws: &Workspace, server: &Server, extra_env: &[(&str, &str)]) -> (i32, String, usize) {
    apply_at(ws, &server.url, extra_env, Operator::Rewraps)
}

/// One command in flight at a time: a refused command stops the apply before any other
/// starts, so "nothing changed" holds for the whole fleet.
const ONE_AT_A_TIME: (&str, &str) = ("MKPLAN_PARALLELISM", "1");

/// The rerun after a fault. On a service that reports no rotation status, a run that
/// stopped after commits leaves the rewrap unknown: the next plan refuses until the operator
/// says what happened (`attest rewrap`, as `cases::ceremony` shows); the simulator knows, so
/// the test attests the truth and applies again.
fn rerun_to_convergence(ws: &Workspace, server: &Server, context: &str) -> String {
    let (code, rerun, _) = apply(ws, server, &[]);
    if code == 0 {
        return rerun;
    }
    assert_eq!(code, 3, "{context}: the rerun\n{rerun}");
    assert!(rerun.contains("rewrap_evidence"), "{context}\n{rerun}");
    let ran = sim(ws).instances[0]
        .key_storage
        .verification_pattern
        .as_str()
        == B;
    let attest = ws.mkplan_with_env(
        &[
            "attest",
            "rewrap",
            INSTANCE,
            if ran { "--completed" } else { "--not-run" },
            "--desired",
            DESIRED,
            "--backend",
            "tke:us-south",
            "--tke-endpoint",
            &server.url,
        ],
        &with_test_oa_root(&[]),
    );
    assert_eq!(attest.code, 0, "{context}: {}", attest.stderr);
    let (code, rerun, _) = apply(ws, server, &[]);
    assert_eq!(code, 0, "{context}: after the attestation\n{rerun}");
    rerun
}

fn start(ws: &Workspace, faults: &str) -> Server {
    Server::start(&ws.path(FLEET), faults, &["--protocol", "tke"])
}

fn assert_converged(ws: &Workspace, context: &str) {
    let fleet = sim(ws);
    assert!(
        fleet.incidents.is_empty(),
        "{context}: incidents {:#?}",
        fleet.incidents
    );
    let instance = &fleet.instances[0];
    assert_eq!(
        instance.key_storage.verification_pattern.as_str(),
        B,
        "{context}"
    );
    for unit in &instance.crypto_units {
        assert_eq!(
            unit.current_register
                .verification_pattern()
                .map(|v| v.as_str().to_string()),
            Some(B.to_string()),
            "{context}: {unit:?}"
        );
        assert_eq!(unit.new_register.status(), "Empty", "{context}: {unit:?}");
    }
}

/// Nothing changed: every unit as the example starts, and no incident.
fn assert_untouched(ws: &Workspace, context: &str) {
    let fleet = sim(ws);
    assert!(
        fleet.incidents.is_empty(),
        "{context}: {:#?}",
        fleet.incidents
    );
    for unit in &fleet.instances[0].crypto_units {
        assert_eq!(unit.new_register.status(), "Empty", "{context}: {unit:?}");
        assert_eq!(
            unit.current_register
                .verification_pattern()
                .map(|v| v.as_str().to_string()),
            Some(A.to_string()),
            "{context}"
        );
    }
}

#[test]
fn a_rotation_is_sent_signed_and_only_the_rewrap_is_a_ceremony() {
    let ws = workspace_with_the_examples_rewrap(&ALICE_AND_BOB);
    let server = start(&ws, "");
    let (code, stderr, ceremonies) = apply(&ws, &server, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ceremonies, 1, "{stderr}");
    assert!(
        stderr.contains("Signature keys opened and checked (alice, bob)"),
        "{stderr}"
    );
    assert!(!stderr.contains("sigkey-"), "a password leaked:\n{stderr}");
    assert_converged(&ws, "signed rotation");
    // The journal holds the commands mkplan sent, and the operator's word for the rewrap.
    let audit = ws.audit_text();
    assert!(
        audit.contains("load_new_mk") && audit.contains("set_immediate"),
        "{audit}"
    );
    assert!(audit.contains("ceremony:"), "{audit}");
    // A second apply has nothing to do.
    let (code, stderr, _) = apply(&ws, &server, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("No changes"), "{stderr}");
}

/// Signed commands of the rotation, in order: per unit GEN_IMPORTER and IMPORT_WK, then per
/// unit COMMIT_WK, then (after the rewrap) per unit FINALIZE_WK.
const SIGNED_COMMANDS: u64 = 12;

/// Every signed command of a rotation, one at a time (so that command n is the same one in
/// every run): the server acts on it, then dies without answering (and comes back on the
/// same fleet file), or its answer is lost; the rerun settles the open step from the
/// registers and converges, with zero incidents.
/// The sweep runs in six tests, so that the suite's threads share it.
macro_rules! crash_sweeps {
    ($($name:ident: $commands:expr;)*) => {$(
        #[test]
        fn $name() {
            crash_sweep($commands);
        }
    )*};
}

crash_sweeps! {
    a_crash_at_every_signed_command_is_settled_by_the_rerun_1_to_2: 1..=2;
    a_crash_at_every_signed_command_is_settled_by_the_rerun_3_to_4: 3..=4;
    a_crash_at_every_signed_command_is_settled_by_the_rerun_5_to_6: 5..=6;
    a_crash_at_every_signed_command_is_settled_by_the_rerun_7_to_8: 7..=8;
    a_crash_at_every_signed_command_is_settled_by_the_rerun_9_to_10: 9..=10;
    a_crash_at_every_signed_command_is_settled_by_the_rerun_11_to_12: 11..=SIGNED_COMMANDS;
}

fn crash_sweep(commands: std::ops::RangeInclusive<u64>) {
    for n in commands {
        let faults: &[&str] = if [2, 7, 10].contains(&n) {
            &["crash_after_command", "lose_command_response"]
        } else {
            &["crash_after_command"]
        };
        for fault in faults {
            let ws = workspace(&ALICE_AND_BOB);
            let context = format!("{fault}={n}");
            let mut server = start(&ws, &context);
            let (code, stderr, _) = apply(&ws, &server, &[ONE_AT_A_TIME]);
            if *fault == "crash_after_command" {
                assert_ne!(code, 0, "{context}: the crash stops the apply\n{stderr}");
                server.wait();
            }
            drop(server);
            let server = start(&ws, "");
            rerun_to_convergence(&ws, &server, &context);
            assert_converged(&ws, &context);
        }
    }
}

#[test]
fn a_stale_counter_is_read_again_and_signed_again() {
    let ws = workspace(&ALICE_AND_BOB);
    let server = start(&ws, "stale_counter_command=2,stale_counter_command=5");
    let (code, stderr, _) = apply(&ws, &server, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_converged(&ws, "stale counters");
}

#[test]
fn a_counter_stale_every_time_is_refused_and_nothing_changes() {
    let ws = workspace(&ALICE_AND_BOB);
    let server = start(
        &ws,
        "stale_counter_command=1,stale_counter_command=2,stale_counter_command=3",
    );
    let (code, stderr, ceremonies) = apply(&ws, &server, &[ONE_AT_A_TIME]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(ceremonies, 0);
    assert!(stderr.contains("stale 3 times"), "{stderr}");
    assert!(stderr.contains("3-163"), "{stderr}");
    assert_untouched(&ws, "stale counter");
}

#[test]
fn the_wrong_key_file_for_an_administrator_is_refused_before_the_first_step() {
    let ws = workspace(&[
        "alice: { file: sigkeys/carol.json, password_env: MKPLAN_SIGKEY_CAROL }",
        ALICE_AND_BOB[1],
    ]);
    let server = start(&ws, "");
    let (code, stderr, _) = apply(&ws, &server, &[CAROL]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("administrator alice's key"), "{stderr}");
    assert!(stderr.contains("knows alice by SKI"), "{stderr}");
    assert!(stderr.contains("Nothing was touched"), "{stderr}");
    assert_untouched(&ws, "wrong key file");
    // A wrong password: the file does not decrypt.
    let (code, stderr, _) = apply(&ws, &server, &[("MKPLAN_SIGKEY_CAROL", "not-the-password")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("password is wrong"), "{stderr}");
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    assert_untouched(&ws, "wrong password");
}

#[test]
fn a_command_changed_on_the_way_fails_its_signature_on_the_card() {
    let ws = workspace(&ALICE_AND_BOB);
    let server = start(&ws, "tamper_command=1");
    let (code, stderr, _) = apply(&ws, &server, &[ONE_AT_A_TIME]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("3-192"), "{stderr}");
    assert!(stderr.contains("SIGNATURE_INVALID"), "{stderr}");
    assert_untouched(&ws, "tampered command");
}

#[test]
fn too_few_signatures_or_a_signer_not_installed_are_refused_before_the_first_step() {
    // The threshold is 2 and only alice's key is given.
    let ws = workspace(&ALICE_AND_BOB[..1]);
    let server = start(&ws, "");
    let (code, stderr, _) = apply(&ws, &server, &[ONE_AT_A_TIME]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("needs 2 signature(s)"), "{stderr}");
    assert!(stderr.contains("Nothing was touched"), "{stderr}");
    assert_untouched(&ws, "below threshold");
    drop(server);
    // mallory is an administrator in the desired file, but no unit has her key installed.
    let ws = workspace(&[
        ALICE_AND_BOB[0],
        "mallory: { file: sigkeys/mallory.json, password_env: MKPLAN_SIGKEY_MALLORY }",
    ]);
    ws.write(
        DESIRED,
        &ws.read(DESIRED).replace(
            "administrators: [alice, bob]",
            "administrators: [alice, bob, mallory]",
        ),
    );
    let server = start(&ws, "");
    // The planner refuses already: mallory is not installed on the crypto units.
    let (code, stderr, _) = apply(&ws, &server, &[MALLORY]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("administrators mallory from the desired file are not installed"),
        "{stderr}"
    );
    assert_untouched(&ws, "signer not installed");
}

#[test]
fn a_forged_command_reply_is_not_believed_and_is_settled_from_the_registers() {
    let ws = workspace(&ALICE_AND_BOB);
    // Command 2 is the first IMPORT_WK (command 1 makes the importer key): the card loads, and
    // its reply is changed on the way back.
    let server = start(&ws, "forge_command_reply=2");
    let (code, stderr, _) = apply(&ws, &server, &[ONE_AT_A_TIME]);
    assert!(stderr.contains("not signed by it"), "{stderr}");
    assert!(
        stderr.contains("the outcome is unknown; reading the live state to settle it"),
        "{stderr}"
    );
    assert_eq!(code, 0, "{stderr}");
    assert_converged(&ws, "forged reply");
    let audit = ws.audit_text();
    assert!(audit.contains("the live state shows the effect"), "{audit}");
}

#[test]
fn a_chain_to_an_unknown_root_sends_nothing() {
    let ws = workspace(&ALICE_AND_BOB);
    let server = start(&ws, "oa_unknown_root=1");
    let (code, stderr, _) = apply(&ws, &server, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("OA certificate chain is refused"),
        "{stderr}"
    );
    assert_untouched(&ws, "unknown root");
}

#[test]
fn sim_sigkey_new_writes_a_file_mkplan_opens() {
    let ws = Workspace::empty();
    let made = ws.mkplan_with_env(
        &[
            "sim",
            "sigkey",
            "new",
            "dave.json",
            "--administrator",
            "dave",
            "--password-env",
            "PW",
        ],
        &[("PW", "a-long-password")],
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    assert!(
        made.stdout.starts_with("- { name: dave, ski: \""),
        "{}",
        made.stdout
    );
    let text = ws.read("dave.json");
    for field in [
        "\"keyType\": \"p521ec\"",
        "\"ski\"",
        "\"seaSalt\"",
        "\"enckey\"",
    ] {
        assert!(text.contains(field), "{text}");
    }
    assert!(!text.contains("a-long-password"));
}

#[test]
fn validate_checks_signature_keys_offline_with_line_and_column() {
    let ws =
        workspace(&["alice: { file: sigkeys/nobody.json, password_env: MKPLAN_SIGKEY_ALICE }"]);
    let run = ws.mkplan(&["validate", DESIRED]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("desired.yaml:"), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "administrator alice's signature key file \"sigkeys/nobody.json\" cannot be read"
        ),
        "{}",
        run.stderr
    );
    let ws = workspace(&["dave: { file: sigkeys/alice.json }"]);
    let run = ws.mkplan(&["validate", DESIRED]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("not an administrator of any instance"),
        "{}",
        run.stderr
    );
    let ws = workspace(&ALICE_AND_BOB);
    let run = ws.mkplan(&["validate", DESIRED]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// `workspace(keys)` where administrator bob is known to every crypto unit by `bob_line`'s key
/// (another key than the fixture's bob.json).
fn workspace_with_bob(keys: &[&str], bob_line: &str) -> Workspace {
    let ws = workspace(keys);
    let fleet = ws.read(FLEET);
    assert!(fleet.contains(&administrator_line("bob")));
    ws.write(FLEET, &fleet.replace(&administrator_line("bob"), bob_line));
    ws
}

/// Bob's key is an RSA-2048 TKE CLI key file written by another implementation (Python's
/// `cryptography`, tests/fixtures/sigkeys/make_rsa_key_file.py): mkplan opens it, signs the
/// commits and set immediates with the X9.31 raw operation, and the card checks them against
/// the RSA public key the fleet holds.
#[test]
fn an_rsa_2048_key_file_signs_the_commits_and_set_immediates() {
    let bob_line = administrator_line("dave").replace("name: dave,", "name: bob,");
    let ws = workspace_with_bob(
        &[
            ALICE_AND_BOB[0],
            "bob: { file: sigkeys/dave-rsa.json, password_env: MKPLAN_SIGKEY_DAVE }",
        ],
        &bob_line,
    );
    let server = start(&ws, "");
    let (code, stderr, ceremonies) = apply(&ws, &server, &[DAVE]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ceremonies, 1, "{stderr}");
    assert!(!stderr.contains("sigkey-"), "a password leaked:\n{stderr}");
    assert_converged(&ws, "RSA-2048 signer");
}

/// Bob signs through the signing service (`TKE_SIGNSERV_URL`, played by a test server that
/// wants a token): mkplan asks it for the key, checks the SKI against the crypto units', has
/// it sign, verifies each signature before sending it, and the rotation converges. The
/// token goes to the service only, never into a message.
#[test]
fn the_signing_service_signs_for_an_administrator() {
    use crate::support::signserv::{self, Knobs, SignServ};
    const TOKEN: &str = "signserv-token-demo";
    let service = SignServ::start(Knobs {
        token: Some(TOKEN.into()),
        ..Knobs::default()
    });
    let bob_line = format!(
        "{{ name: bob, ski: \"{}\", public_key: \"{}\" }}",
        hex::encode(signserv::ski("bob-p521")),
        hex::encode(signserv::public_key("bob-p521"))
    );
    let ws = workspace_with_bob(
        &[
            ALICE_AND_BOB[0],
            "bob: { signing_service: bob-p521, token_env: MKPLAN_SIGNSERV_TOKEN_BOB }",
        ],
        &bob_line,
    );
    let server = start(&ws, "");
    let (code, stderr, ceremonies) = apply(
        &ws,
        &server,
        &[
            ("TKE_SIGNSERV_URL", &service.url),
            ("MKPLAN_SIGNSERV_TOKEN_BOB", TOKEN),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ceremonies, 1, "{stderr}");
    assert!(!stderr.contains(TOKEN), "the token leaked:\n{stderr}");
    assert_converged(&ws, "signing service");
    let seen = service.seen();
    let signs = seen
        .iter()
        .filter(|s| s.method == "POST" && s.path == "/sign/bob-p521")
        .count();
    assert!(
        signs >= 6,
        "bob signs every commit and set immediate: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some(TOKEN)),
        "{seen:?}"
    );

    // The service goes away: the next rotation's keys cannot be checked, and nothing is sent.
    drop(service);
    let ws = workspace_with_bob(
        &[ALICE_AND_BOB[0], "bob: { signing_service: bob-p521 }"],
        &bob_line,
    );
    let server = start(&ws, "");
    let (code, stderr, _) = apply(&ws, &server, &[("TKE_SIGNSERV_URL", "http://127.0.0.1:9")]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("Nothing was touched"), "{stderr}");
    assert_untouched(&ws, "signing service unavailable");
}
