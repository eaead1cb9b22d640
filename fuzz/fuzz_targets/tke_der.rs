//! The DER of the TKE wire protocol (`backend::tke::der`) and the EP11 structures read from
//! it on both sides (`ep11`): the client reads domain info, attributes, administrator lists
//! and certificates; the simulator's TKE front reads m_admin queries. An element that reads
//! writes back to an element that reads the same (`element` writes minimal lengths).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mkplan::backend::tke::{WireError, der, ep11};
use mkplan_fuzz::assert_inert_line;

fn check(result: Result<impl Sized, WireError>) {
    if let Err(e) = result {
        assert_inert_line("EP11", &e.message);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok((tlv, rest)) = der::read(data) {
        assert!(tlv.value.len() + rest.len() < data.len());
        let written = der::element(tlv.tag, tlv.value);
        let (again, after) = der::read(&written).expect("a written element reads");
        assert_eq!(again, tlv);
        assert!(after.is_empty());
        if let Ok(elements) = der::elements(tlv.value) {
            assert!(elements.len() <= der::ELEMENTS_MAX);
            let concat: Vec<u8> = elements
                .iter()
                .flat_map(|e| der::element(e.tag, e.value))
                .collect();
            assert_eq!(
                der::elements(&concat).expect("written elements read"),
                elements
            );
        }
    }
    check(der::octet_strings(data, "fuzz"));
    // The domain the request or response names, so the echo checks pass and the rest is read.
    let domain = ep11::function_of(data).map_or(0, |(_, d)| d);
    check(ep11::parse_xcp_info(data, domain));
    for command in [ep11::ADMQ_DOM_ATTRS, ep11::ADMQ_DOMADMIN] {
        match ep11::parse_admin_response(data, domain, command) {
            Ok(answer) => {
                let _ = answer.serial();
            }
            Err(e) => assert_inert_line("EP11", &e.message),
        }
    }
    check(ep11::parse_domain_info(data, domain));
    check(ep11::parse_attributes(data));
    check(ep11::parse_ski_list(data));
    check(ep11::certificate_name(data));
    check(ep11::parse_admin_query(data, domain));
});
