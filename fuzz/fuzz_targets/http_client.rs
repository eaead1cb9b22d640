//! What the HTTP backend (`--backend http://…`) reads from the server, which may be anyone's:
//! the list of an instance's crypto units, one unit's state, the rewrap status, and the body
//! of an error answer. A unit state that reads writes back the same; an error body reaches the
//! operator only cut and inert.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkplan::backend::tke::parse_location;
use mkplan::fuzzing::{http_error_message, http_rewrap_status, http_unit, http_unit_list};
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
});
