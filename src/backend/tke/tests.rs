//! Golden tests from shared/tke-wire.md §7 (byte for byte), round trips of every structure,
//! and a property test: no input makes the response parsers panic.

use proptest::prelude::*;

use super::ep11::{self, AdminResponse};
use super::{der, htp, parse_location};
use crate::model::{CurrentRegister, NewRegister, VerificationPattern};

const DOMAIN_INFO_REQUEST: &str = "149;PCI request;XPNUM   ;2;        ;002004000080543400000000000000030000000000000000000000000000001A3018040400010026040400000003040400000003040400000000";
const ATTRIBUTES_REQUEST: &str = "181;PCI request;XPNUM   ;2;        ;002004000080543400000000000000030000000000000000000000000000002A30280404000100290404000000030418301604040001000A040800000003000000000400040004000400";
const ADMINS_REQUEST: &str = "181;PCI request;XPNUM   ;2;        ;002004000080543400000000000000030000000000000000000000000000002A302804040001002904040000000304183016040400010002040800000003000000000400040004000400";
const RESPONSE_CPRB: &str = concat!(
    "002004000000543400000000000000030000000000000000000000000000006A",
    "30820066",
    "0404",
    "00010026",
    "0404",
    "00000003",
    "0404",
    "00000000",
    "04820050",
    "00000003",
    "C2AD0A997751E04066912FA490A9976D6135D221C0DF197DFB8C8A7A00000000",
    "5C1B924542FECD099A9568826BCE5018476B3C2A29944C9C7FF6E47F00000000",
    "0000001F",
    "0000000000000001",
);
const ATTRIBUTES_BLOCK: &str = "306404040001000A040800000003A1B2C3D4041039334141424541370000000000000001041000000000000000000000000000000029040400000000042800000001000000020000000200000002000000030030204D00000004000000000000000500000000";

fn vp(text: &str) -> VerificationPattern {
    VerificationPattern::parse(text).unwrap()
}

fn worked_response() -> String {
    format!("434;000000000000000000{};{RESPONSE_CPRB}", " ".repeat(138))
}

#[test]
fn the_worked_example_requests_are_built_byte_for_byte() {
    let (cm, domain) = parse_location("[us-south].[AZ3-CS3].[02].[03]").unwrap();
    assert_eq!((cm, domain), (2, 3));
    let request = htp::request(cm, domain, &ep11::domain_info_request(domain));
    println!("domain info request: {request}");
    assert_eq!(request, DOMAIN_INFO_REQUEST);
    assert_eq!(
        htp::request(
            cm,
            domain,
            &ep11::admin_query(domain, ep11::ADMQ_DOM_ATTRS, &[])
        ),
        ATTRIBUTES_REQUEST
    );
    assert_eq!(
        htp::request(
            cm,
            domain,
            &ep11::admin_query(domain, ep11::ADMQ_DOMADMIN, &[])
        ),
        ADMINS_REQUEST
    );
}

#[test]
fn the_worked_example_response_is_parsed_with_its_long_form_lengths() {
    let payload = htp::parse_response(&worked_response()).unwrap();
    assert_eq!(payload.len(), 0x6A);
    assert_eq!(
        &payload[..4],
        [0x30, 0x82, 0x00, 0x66],
        "non-minimal long-form length"
    );
    let info = ep11::parse_xcp_info(&payload, 3).unwrap();
    assert_eq!(info.len(), 80);
    let registers = ep11::parse_domain_info(&info, 3).unwrap();
    println!(
        "parsed: flags {:#04x}, current {:#}, new {:#}",
        registers.flags, registers.current, registers.new
    );
    assert_eq!(registers.flags, 0x1F);
    assert_eq!(
        registers.current,
        CurrentRegister::Valid(vp(
            "c2ad0a997751e04066912fa490a9976d6135d221c0df197dfb8c8a7a00000000"
        ))
    );
    assert_eq!(
        registers.new,
        NewRegister::FullCommitted(vp(
            "5c1b924542fecd099a9568826bce5018476b3c2a29944c9c7ff6e47f00000000"
        ))
    );
    // The wrong domain, or a non-zero return value, is an error (the SDK checks neither).
    assert!(
        ep11::parse_xcp_info(&payload, 4)
            .unwrap_err()
            .message
            .contains("domain 3, not 4")
    );
}

#[test]
fn the_worked_example_attribute_block_yields_domain_serial_counter_and_thresholds() {
    let block = hex::decode(ATTRIBUTES_BLOCK).unwrap();
    let rsp = der::sequence(&[
        der::octet_string(&ep11::M_ADMIN.to_be_bytes()),
        der::octet_string(&3u32.to_be_bytes()),
        der::octet_string(&0u32.to_be_bytes()),
        der::octet_string(&block),
        der::octet_string(&[]),
    ]);
    let parsed: AdminResponse = ep11::parse_admin_response(&rsp, 3, ep11::ADMQ_DOM_ATTRS).unwrap();
    assert_eq!(hex::encode_upper(&parsed.admin_domain), "00000003A1B2C3D4");
    assert_eq!(parsed.serial(), "93AABEA7");
    assert_eq!(parsed.counter.last(), Some(&0x29));
    let attributes = ep11::parse_attributes(&parsed.output).unwrap();
    assert_eq!(
        (
            attributes.signature_threshold,
            attributes.revocation_threshold
        ),
        (2, 2)
    );
    assert_eq!(attributes.permissions, 0x0030_204D);
    // Only three elements when the return value says why.
    let refused = ep11::error_response(ep11::M_ADMIN, 3, 0xB3);
    let error = ep11::parse_admin_response(&refused, 3, ep11::ADMQ_DOM_ATTRS).unwrap_err();
    assert!(
        error
            .message
            .contains("3-179-0 (SESSION_HANDLE_INVALID): not allowed in imprint mode"),
        "{error}"
    );
}

#[test]
fn every_structure_round_trips() {
    let request = htp::parse_request(DOMAIN_INFO_REQUEST).unwrap();
    assert_eq!((request.cm, request.domain), (2, 3));
    assert_eq!(request.payload, ep11::domain_info_request(3));
    assert_eq!(
        ep11::function_of(&request.payload).unwrap(),
        (ep11::GET_XCP_INFO, 3)
    );
    let attributes = htp::parse_request(ATTRIBUTES_REQUEST).unwrap();
    assert_eq!(
        ep11::parse_admin_query(&attributes.payload, 3).unwrap(),
        (ep11::ADMQ_DOM_ATTRS, Vec::new())
    );
    for (current, new) in [
        (CurrentRegister::Empty, NewRegister::Empty),
        (
            CurrentRegister::Valid(vp(&"ab".repeat(32))),
            NewRegister::FullUncommitted(vp(&"cd".repeat(32))),
        ),
        (
            CurrentRegister::Valid(vp(&"ab".repeat(32))),
            NewRegister::FullCommitted(vp(&"ef".repeat(32))),
        ),
    ] {
        let text = htp::response(
            7,
            &ep11::domain_info_response(7, &current, &new, true, false),
        );
        let info = ep11::parse_xcp_info(&htp::parse_response(&text).unwrap(), 7).unwrap();
        let registers = ep11::parse_domain_info(&info, 7).unwrap();
        assert_eq!((registers.current, registers.new), (current, new));
    }
    let module = b"SIMULATE\0\0\0\0\0\0\0\x01";
    let output = ep11::attributes_output(2, 3, 0x4D);
    let rsp = ep11::admin_response(5, ep11::ADMQ_DOM_ATTRS, module, 41, 0, &output);
    let parsed = ep11::parse_admin_response(&rsp, 5, ep11::ADMQ_DOM_ATTRS).unwrap();
    assert_eq!(parsed.serial(), "SIMULATE");
    let attributes = ep11::parse_attributes(&parsed.output).unwrap();
    assert_eq!(
        (
            attributes.signature_threshold,
            attributes.revocation_threshold,
            attributes.permissions
        ),
        (2, 3, 0x4D)
    );
    let ski = [0x3f; 32];
    assert_eq!(
        ep11::certificate_name(&ep11::certificate(" alice ", &ski)).unwrap(),
        "alice"
    );
    assert_eq!(
        ep11::parse_ski_list(&[[1u8; 32], [2u8; 32]].concat())
            .unwrap()
            .len(),
        2
    );
    assert!(ep11::parse_ski_list(&[0u8; 33]).is_err());
}

#[test]
fn host_errors_and_adapter_errors_are_clear() {
    let error = htp::parse_response(&htp::host_error_response(
        9,
        4,
        0,
        "domain index out of range",
    ))
    .unwrap_err();
    assert!(
        error
            .message
            .contains("host error 9-4-0: the domain index is not an integer or out of range"),
        "{error}"
    );
    let timeout = htp::parse_response(&htp::host_error_response(15, 2, 30, "")).unwrap_err();
    assert!(timeout.message.contains("timed out"), "{timeout}");
    let mut cprb = hex::decode(RESPONSE_CPRB).unwrap();
    cprb[17] = 8;
    let text = format!(
        "1;{};{}",
        " ".repeat(156).replacen("  ", "00", 1),
        hex::encode(&cprb)
    );
    let error = htp::parse_response(&text).unwrap_err();
    assert!(error.message.contains("CPRB return code 8"), "{error}");
    assert!(htp::parse_response("12;short;00").is_err());
    // Regression (found by the property test below): a multi-byte character in the error
    // block made a positional slice panic.
    let block = format!("09       4🕴{}", " ".repeat(150));
    assert!(
        htp::parse_response(&format!("1;{block};"))
            .unwrap_err()
            .message
            .contains("not ASCII")
    );
    assert!(htp::parse_request("150;PCI request;XPNUM   ;2;        ;00").is_err());
}

/// Found by fuzzing (`fuzz/fuzz_targets/tke_htp.rs`): the text of a host error block reached
/// the message raw, ASCII control characters (an escape, a NUL, a newline) included.
#[test]
fn a_host_error_block_is_shown_inert() {
    let block = format!(
        "0\x1b{:<54}{:<100}",
        "\x0012345", "IBM says\nforged line \x1b[2J\x7f"
    );
    let error = htp::parse_response(&format!("1;{block};")).unwrap_err();
    assert!(
        error.message.contains("forged line"),
        "the service's text is shown: {error}"
    );
    assert!(
        !error.message.chars().any(crate::quote::is_control_like),
        "{:?}",
        error.message
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, rng_seed: proptest::test_runner::RngSeed::Fixed(20261127), ..ProptestConfig::default() })]

    #[test]
    fn no_reply_makes_a_parser_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), text in ".{0,400}") {
        let _ = htp::parse_response(&text);
        let _ = htp::parse_request(&text);
        let _ = ep11::parse_xcp_info(&bytes, 3);
        let _ = ep11::parse_admin_response(&bytes, 3, ep11::ADMQ_DOM_ATTRS);
        let _ = ep11::parse_domain_info(&bytes, 3);
        let _ = ep11::parse_attributes(&bytes);
        let _ = ep11::certificate_name(&bytes);
        let _ = ep11::parse_admin_query(&bytes, 3);
        let _ = der::elements(&bytes);
    }

    #[test]
    fn a_corrupted_worked_response_is_an_error_or_the_same_registers(index in 0usize..RESPONSE_CPRB.len(), digit in 0u32..16) {
        let mut cprb = RESPONSE_CPRB.as_bytes().to_vec();
        cprb[index] = char::from_digit(digit, 16).unwrap().to_ascii_uppercase() as u8;
        let text = format!("434;000000000000000000{};{}", " ".repeat(138), String::from_utf8(cprb).unwrap());
        let _ = htp::parse_response(&text)
            .map_err(|e| e.message)
            .and_then(|p| ep11::parse_xcp_info(&p, 3).map_err(|e| e.message))
            .and_then(|i| ep11::parse_domain_info(&i, 3).map_err(|e| e.message));
    }
}

#[test]
fn null_recovery_and_failover_lists_mean_no_units() {
    use crate::backend::http::UnitList;
    use crate::model::UnitType;
    let entry = r#"{"hsm_id": "0a1b", "location": "[us-south].[AZ1-CS1].[01].[04]", "serial_number": "0A1B"}"#;
    let list: UnitList = serde_json::from_str(&format!(
        r#"{{"hsms": [{entry}], "source_hsms": null, "failover_hsms": null}}"#
    ))
    .expect("null lists are empty lists, as the SDK reads them");
    let kinds: Vec<UnitType> = list.entries().iter().map(|(kind, _)| *kind).collect();
    assert_eq!(kinds, [UnitType::Operational]);
    let absent: UnitList = serde_json::from_str(&format!(r#"{{"hsms": [{entry}]}}"#)).unwrap();
    assert_eq!(absent.entries().len(), 1);
    // `hsms` is required, as in the SDK: null there is not an empty instance.
    assert!(serde_json::from_str::<UnitList>(r#"{"hsms": null}"#).is_err());
    assert!(serde_json::from_str::<UnitList>(r#"{"hsms": [], "source_hsms": {}}"#).is_err());
}

/// The domain a reply names is checked wherever it names one (docs/tke.md, "The domain in a
/// reply"): the response's domain field, the domain info's own, and the signed block's admin
/// domain. The SDK checks none of them; the CPRB header's domain is not checked (tke-wire §8).
#[test]
fn a_reply_for_another_domain_is_refused_wherever_it_names_one() {
    let admin_rsp = |outer: u32, block: &[u8]| {
        der::sequence(&[
            der::octet_string(&ep11::M_ADMIN.to_be_bytes()),
            der::octet_string(&outer.to_be_bytes()),
            der::octet_string(&0u32.to_be_bytes()),
            der::octet_string(block),
            der::octet_string(&[]),
        ])
    };
    let block = hex::decode(ATTRIBUTES_BLOCK).unwrap();
    let parsed =
        ep11::parse_admin_response(&admin_rsp(3, &block), 3, ep11::ADMQ_DOM_ATTRS).unwrap();
    parsed.check_admin_domain(3).unwrap();
    assert_eq!(
        parsed.check_admin_domain(4).unwrap_err().message,
        "the response block is for domain 3, not 4"
    );
    assert_eq!(
        ep11::parse_admin_response(&admin_rsp(3, &block), 4, ep11::ADMQ_DOM_ATTRS)
            .unwrap_err()
            .message,
        "the response is for domain 3, not 4"
    );
    // The outer field says 7 as asked, the signed block still says 3.
    let mixed = ep11::parse_admin_response(&admin_rsp(7, &block), 7, ep11::ADMQ_DOM_ATTRS).unwrap();
    assert!(mixed.check_admin_domain(7).is_err());
    let short = AdminResponse {
        admin_domain: vec![0, 0, 0, 3],
        ..parsed
    };
    assert!(
        short
            .check_admin_domain(3)
            .unwrap_err()
            .message
            .contains("not 8")
    );
    let info = ep11::parse_xcp_info(&htp::parse_response(&worked_response()).unwrap(), 3).unwrap();
    assert_eq!(
        ep11::parse_domain_info(&info, 5).unwrap_err().message,
        "the domain info is for domain 3, not 5"
    );
}
