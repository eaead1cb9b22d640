//! What `sim serve` reads from its clients, who may be anyone on the network it listens on:
//!
//! - JSON API commands: lines `COMMAND UNIT BODY` (`UNIT` an index into the example fleet's
//!   crypto units, `BODY` the JSON of `POST /v1/tke/{instance}/hsms/{hsm_id}/{COMMAND}`, or
//!   `rewrap` for `POST /v1/tke/{instance}/rewrap`), each applied by the simulator's rules in
//!   turn, as the server does. The fleet the server would write after each must read back the
//!   same: a client must not be able to leave a fleet file the server cannot restart from.
//! - The TKE front: the whole input as the body of `POST …/hsms/{hsm_id}` (`{"request": HTP}`),
//!   whose answer the TKE client must be able to read.
//! - The IAM exchange: the whole input as the form body of `POST /identity/token`.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mkplan::backend::sim::hsm::perform_at;
use mkplan::backend::sim::{Fleet, SimOperation};
use mkplan::backend::tke::htp;
use mkplan::fuzzing::{iam_form_api_key, sim_command, tke_answer};
use mkplan_fuzz::assert_inert_line;

/// Commands one input may send, so that an input stays quick.
const COMMANDS_MAX: usize = 16;
/// The simulator's clock at the first command (Unix ms); an hour passes between commands,
/// so that rewraps complete.
const START_MS: u64 = 1_800_000_000_000;
const STEP_MS: u64 = 3_600_000;

static FLEET: LazyLock<Fleet> = LazyLock::new(|| {
    Fleet::parse(
        "three-units.yaml",
        include_str!("../../examples/fleets/three-units.yaml"),
    )
    .unwrap()
});

fuzz_target!(|data: &[u8]| {
    let mut fleet = FLEET.clone();
    let instance = fleet.instances[0].id.clone();
    let units: Vec<String> = fleet.instances[0]
        .crypto_units
        .iter()
        .map(|u| u.hsm_id.clone())
        .collect();
    for (index, line) in data.split(|b| *b == b'\n').take(COMMANDS_MAX).enumerate() {
        let mut fields = line.splitn(3, |b| *b == b' ');
        let command = String::from_utf8_lossy(fields.next().unwrap_or_default());
        let unit = fields
            .next()
            .and_then(|u| std::str::from_utf8(u).ok()?.parse::<usize>().ok())
            .map_or("", |u| &units[u % units.len()]);
        let body = fields.next().unwrap_or_default();
        let operation = if command == "rewrap" {
            SimOperation::RewrapKeyStorage {
                instance: instance.clone(),
            }
        } else {
            match sim_command(&instance, unit, &command, body) {
                Ok(operation) => operation,
                Err(status) => {
                    assert!(matches!(status, 400 | 404), "status {status}");
                    continue;
                }
            }
        };
        match perform_at(&mut fleet, &operation, START_MS + index as u64 * STEP_MS) {
            Ok(_) => {
                let written = fleet.to_yaml();
                let again = Fleet::parse("fleet.yaml", &written).unwrap_or_else(|e| {
                    panic!("after {operation:?} the fleet does not read back: {e}\n{written}")
                });
                assert_eq!(again, fleet);
            }
            // A refusal goes back to the client that sent the command, which cuts and escapes
            // it (`http::error_message`): it may quote what the client sent.
            Err(refused) => {
                let _ = refused.reason();
            }
        }
    }

    let unit = &FLEET.instances[0].crypto_units[0];
    if let Some(answer) = tke_answer(unit, data) {
        if let Err(e) = htp::parse_response(&answer) {
            assert_inert_line("TKE front answer", &e.message);
        }
    }
    if let Ok(form) = std::str::from_utf8(data) {
        let _ = iam_form_api_key(form);
    }
});
