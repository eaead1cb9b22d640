//! Replies verified to a root key (issue 16): over `--backend tke:`, every m_admin reply must
//! carry its crypto module's OA signature, and the module's certificate chain must end at a
//! root mkplan trusts. `mkplan sim serve --protocol tke` signs with test material, so these
//! runs trust its test root only through `MKPLAN_TKE_TEST_OA_ROOT`; its faults forge a reply,
//! root the chain elsewhere, or change the module's epoch key.

use super::tke::{comparable, example};
use crate::support::*;

fn plan(ws: &Workspace, server: &Server, env: &[(&str, &str)]) -> Run {
    ws.mkplan_with_env(
        &[
            "plan",
            DESIRED,
            "--json",
            "--backend",
            "tke:us-south",
            "--tke-endpoint",
            &server.url,
        ],
        env,
    )
}

/// Refused: exit 1, nothing planned, `said` on stderr, the fleet untouched.
#[track_caller]
fn assert_refused(ws: &Workspace, before: &[u8], run: &Run, said: &[&str]) {
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout.trim().is_empty(),
        "nothing planned: {}",
        run.stdout
    );
    for text in said {
        assert!(run.stderr.contains(text), "{text}: {}", run.stderr);
    }
    assert_eq!(ws.bytes(FLEET), before, "nothing was touched");
}

#[test]
fn without_the_test_root_the_simulator_s_replies_are_refused() {
    let ws = example("three-units");
    let before = ws.bytes(FLEET);
    let server = Server::start(&ws.path(FLEET), "", &["--protocol", "tke"]);
    let run = plan(&ws, &server, &[]);
    assert_refused(
        &ws,
        &before,
        &run,
        &[
            "OA certificate chain is refused",
            "none of the Oa2 root keys mkplan trusts (IBM 4768 (CEX6) OA root, IBM 4769 (CEX7) OA root).",
            "crypto module [",
        ],
    );
    assert!(!run.stderr.contains("TEST OA root"), "{}", run.stderr);
    // With it, the same server is read, and every run says the test root is trusted.
    let trusted = plan(&ws, &server, &[TKE_TEST_OA_ROOT]);
    assert_eq!(trusted.code, 0, "{}", trusted.stderr);
    assert!(
        trusted
            .stderr
            .contains("warning: MKPLAN_TKE_TEST_OA_ROOT is set: tke:us-south (http://127.0.0.1:"),
        "{}",
        trusted.stderr
    );
}

#[test]
fn the_test_root_is_refused_for_a_tke_endpoint_on_another_machine() {
    let ws = example("three-units");
    let before = ws.bytes(FLEET);
    let run = ws.mkplan_with_env(
        &["plan", DESIRED, "--backend", "tke:us-south"],
        &[
            TKE_TEST_OA_ROOT,
            ("IBMCLOUD_IAM_TOKEN", "not-sent-anywhere"),
        ],
    );
    assert_refused(
        &ws,
        &before,
        &run,
        &[
            "MKPLAN_TKE_TEST_OA_ROOT is set, but tke:us-south (https://tke.us-south.hs-crypto.cloud.ibm.com) is not on this machine",
            "Nothing was sent",
        ],
    );
}

#[test]
fn a_forged_reply_is_refused_naming_the_crypto_module() {
    let ws = example("three-units");
    let before = ws.bytes(FLEET);
    let server = Server::start(
        &ws.path(FLEET),
        "forge_reply_from_op=1",
        &["--protocol", "tke"],
    );
    let run = plan(&ws, &server, &[TKE_TEST_OA_ROOT]);
    assert_refused(
        &ws,
        &before,
        &run,
        &[
            "sent a reply that is not signed by it",
            "the reply's OA signature does not verify with the crypto module's epoch key",
            "also after re-reading its OA certificates; nothing was read from it",
            "crypto module [",
        ],
    );
}

#[test]
fn a_chain_to_an_unknown_root_is_refused() {
    let ws = example("three-units");
    let before = ws.bytes(FLEET);
    let server = Server::start(&ws.path(FLEET), "oa_unknown_root=1", &["--protocol", "tke"]);
    let run = plan(&ws, &server, &[TKE_TEST_OA_ROOT]);
    assert_refused(
        &ws,
        &before,
        &run,
        &[
            "OA certificate chain is refused: device certificate 1: its signature does not verify",
            "crypto module [",
        ],
    );
}

#[test]
fn a_changed_epoch_key_is_read_again_once_and_the_read_goes_on() {
    let ws = example("three-units");
    let embedded = ws.mkplan(&["plan", DESIRED, "--json"]);
    // Requests 1–3 read the module's certificates; from request 5 on it signs with a new key.
    let server = Server::start(
        &ws.path(FLEET),
        "oa_epoch_change_op=5",
        &["--protocol", "tke"],
    );
    let mut args = vec!["-v", "plan", DESIRED, "--json"];
    args.extend(["--backend", "tke:us-south", "--tke-endpoint", &server.url]);
    let run = ws.mkplan_with_env(&args, &[TKE_TEST_OA_ROOT]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(comparable(&run), comparable(&embedded));
    assert!(
        run.stderr
            .contains("a reply failed its OA signature; re-reading crypto module ["),
        "{}",
        run.stderr
    );
}
