//! HTP framing (`backend::tke::htp`): the request string the simulator's TKE front reads from
//! clients, and the response string (error block, CPRB, payload) the client reads from the
//! service. What reads writes back to what reads the same; a host error is reported inert.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkplan::backend::tke::htp;
use mkplan_fuzz::assert_inert_line;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match htp::parse_request(text) {
        Ok(request) => {
            let written = htp::request(request.cm, request.domain, &request.payload);
            assert_eq!(
                htp::parse_request(&written).expect("a written request reads"),
                request
            );
        }
        Err(e) => assert_inert_line("HTP request", &e.message),
    }
    match htp::parse_response(text) {
        Ok(payload) => {
            assert!(payload.len() <= htp::PAYLOAD_LEN_MAX);
            let written = htp::response(0, &payload);
            assert_eq!(
                htp::parse_response(&written).expect("a written response reads"),
                payload
            );
        }
        Err(e) => assert_inert_line("HTP response", &e.message),
    }
    // The simulator answers a request it cannot read with a host error carrying the reason.
    let error = htp::host_error_response(9, 12, 0, text);
    let e = htp::parse_response(&error).expect_err("a host error reads as one");
    assert_inert_line("HTP host error", &e.message);
});
