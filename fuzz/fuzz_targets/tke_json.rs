//! The JSON the TKE backend (`--backend tke:REGION`) reads from the service: the hsms list
//! (`GET /v1/tke/{instance}/hsms`), each unit's location in it, a query's reply
//! `{"response": HTP}` taken down to its EP11 answer as `TkeBackend::unit` takes it, and the
//! IAM token answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkplan::backend::tke::{ep11, htp, parse_location};
use mkplan::fuzzing::{http_unit_list, iam_token, tke_reply};
use mkplan_fuzz::assert_inert_line;

fuzz_target!(|data: &[u8]| {
    if let Ok(units) = http_unit_list(data) {
        for (_, _, location, _) in units {
            if let Err(e) = parse_location(&location) {
                assert_inert_line("location", &e.message);
            }
        }
    }
    if let Ok(response) = tke_reply(data) {
        match htp::parse_response(&response) {
            Err(e) => assert_inert_line("HTP response", &e.message),
            Ok(payload) => {
                let domain = ep11::function_of(&payload).map_or(0, |(_, d)| d);
                for command in [ep11::ADMQ_DOM_ATTRS, ep11::ADMQ_DOMADMIN] {
                    if let Ok(answer) = ep11::parse_admin_response(&payload, domain, command) {
                        let _ = answer.serial();
                        let _ = ep11::parse_attributes(&answer.output);
                        let _ = ep11::parse_ski_list(&answer.output);
                        let _ = ep11::certificate_name(&answer.output);
                    }
                }
                if let Ok(info) = ep11::parse_xcp_info(&payload, domain) {
                    let _ = ep11::parse_domain_info(&info, domain);
                }
            }
        }
    }
    let _ = iam_token(data);
});
