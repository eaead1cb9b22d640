//! The CPRB inside HTP strings (its 32-byte header: domain, return code, reason, payload
//! length), as raw bytes: the harness frames them as the service and the client would (an
//! all-clear response, a request), so the fuzzer spends no time on hex and framing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkplan::backend::tke::htp::{self, CPRB_LEN, ERROR_BLOCK_LEN};
use mkplan_fuzz::assert_inert_line;

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let block = format!("{:<ERROR_BLOCK_LEN$}", "000000000000000000");
    let body = format!(";{block};{}", hex_upper(data));
    let response = format!("{}{body}", body.len());
    match htp::parse_response(&response) {
        Ok(payload) => {
            // The header's length field says how much of the rest is the payload.
            let length = u32::from_be_bytes(data[28..32].try_into().unwrap()) as usize;
            assert_eq!(payload, &data[CPRB_LEN..CPRB_LEN + length]);
            assert_eq!(
                &data[16..20],
                &[0, 0, 0, 0],
                "a return code or reason was let through"
            );
        }
        Err(e) => assert_inert_line("CPRB", &e.message),
    }
    let body = format!(";PCI request;XPNUM   ;1;        ;{}", hex_upper(data));
    let request = format!("{}{body}", body.len());
    match htp::parse_request(&request) {
        Ok(request) => {
            assert_eq!(request.cm, 1);
            assert_eq!(
                request.domain,
                u32::from_be_bytes(data[12..16].try_into().unwrap())
            );
            assert!(request.payload.len() <= htp::PAYLOAD_LEN_MAX);
        }
        Err(e) => assert_inert_line("CPRB", &e.message),
    }
});
