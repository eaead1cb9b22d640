//! What the HTTP backend (`--backend http://…`) reads from the server, which may be anyone's:
//! the list of an instance's crypto units, one unit's state, the rewrap status, and the body
//! and headers of an error answer (whose it is, `Peer::stranger`). A unit state that reads
//! writes back the same; what an error answer says reaches the operator only cut and inert.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkplan::backend::tke::parse_location;
use mkplan::fuzzing::{
    http_error_message, http_rewrap_status, http_stranger, http_unit, http_unit_list,
};
use mkplan::model::CryptoUnit;
use mkplan_fuzz::assert_inert_line;

fuzz_target!(|data: &[u8]| {
    if let Ok(units) = http_unit_list(data) {
        for (_, _, location, _) in units {
            if let Err(e) = parse_location(&location) {
                assert_inert_line("location", &e.message);
            }
        }
    }
    if let Ok(unit) = http_unit(data) {
        let json = serde_json::to_string(&unit).expect("a unit serializes");
        let again: CryptoUnit = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("a unit as written does not read back: {e}\n{json}"));
        assert_eq!(again, unit);
    }
    let _ = http_rewrap_status(data);
    assert_inert_line("error body", &http_error_message(data));
    // Who sent an error answer: its first two lines as the Server and Content-Type headers
    // (as reqwest gives them: visible ASCII, space and tab), the rest as the body.
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let header = |bytes: Option<&[u8]>| {
        bytes
            .filter(|b| b.iter().all(|c| *c == b'\t' || (b' '..=b'~').contains(c)))
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let (server, content_type) = (header(parts.next()), header(parts.next()));
    let body = parts.next().unwrap_or_default();
    for tke in [false, true] {
        if let Some(stranger) = http_stranger(tke, server.as_deref(), content_type.as_deref(), body)
        {
            assert_inert_line("stranger", &stranger);
        }
    }
});
