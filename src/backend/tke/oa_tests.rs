//! OA certificates and reply signatures. There is no captured certificate to test against,
//! so the certificates here are built byte by byte at the offsets the SDK's parsers read
//! (`oa2CertificateX.go`, `oa3CertificateX.go`), signed by test keys and rooted in a test
//! root (the OA2 builder and the keys are in `oa_test_chain`, which the simulator uses
//! too). The reply signature vector was made with OpenSSL 3.0 (`openssl dgst -sha512 -sign`
//! with a secp521r1 key), an implementation independent of the one that checks it.

use p521::ecdsa::{SigningKey, VerifyingKey};

use super::super::oa_test_chain::{oa2, point, root_of, sign, signing_key};
use super::*;

/// A CEX8 certificate of `len` bytes, at the absolute offsets of tke-wire.md §4.6.
fn oa3(
    len: usize,
    subject: [u8; 32],
    signer: [u8; 32],
    key: &[u8],
    signed_by: &SigningKey,
) -> Vec<u8> {
    let mb = len == OA3_MB_LEN;
    let mut data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    data[191..223].copy_from_slice(&signer);
    let subject_at = if mb { 264 } else { 266 };
    data[subject_at..subject_at + 32].copy_from_slice(&subject);
    let key_at = if mb { 323 } else { 405 };
    data[key_at..key_at + 133].copy_from_slice(key);
    let body = [&data[4..182], &data[236..key_at + 133]].concat();
    let (r, s) = sign(signed_by, &body);
    let (r_at, s_at) = if mb { (476, 544) } else { (558, 626) };
    data[r_at..r_at + 66].copy_from_slice(&r);
    data[s_at..s_at + 66].copy_from_slice(&s);
    data
}

fn test_root(family: Family, ski: [u8; 32], key: &SigningKey) -> RootKey {
    root_of(family, ski, key)
}

const EPOCH: [u8; 32] = [0xe0; 32];
const INTERMEDIATE: [u8; 32] = [0x1e; 32];
const ROOT: [u8; 32] = [0x70; 32];

/// Epoch certificate (index 0) signed by an intermediate (index 1) signed by the test root.
fn chain(
    build: impl Fn([u8; 32], [u8; 32], &[u8], &SigningKey) -> Vec<u8>,
) -> (Vec<Vec<u8>>, SigningKey, SigningKey) {
    let (epoch, intermediate, root) = (signing_key(1), signing_key(2), signing_key(3));
    let chain = vec![
        build(EPOCH, INTERMEDIATE, &point(&epoch), &intermediate),
        build(INTERMEDIATE, ROOT, &point(&intermediate), &root),
    ];
    (chain, epoch, root)
}

#[test]
fn an_oa2_chain_to_its_root_yields_the_epoch_key() {
    let (chain, epoch, root) = chain(oa2);
    let key = verify_chain(&chain, &[test_root(Family::Oa2, ROOT, &root)]).unwrap();
    assert_eq!(&key, epoch.verifying_key());
    // The same chain is not IBM's: refused by default.
    let refused = verify_chain_to_ibm(&chain).unwrap_err().message;
    assert!(
        refused.contains("device certificate 1: the chain ends at signer SKI 7070")
            && refused.contains("none of the Oa2 root keys mkplan trusts (IBM 4768 (CEX6) OA root"),
        "{refused}"
    );
}

#[test]
fn both_oa3_forms_chain_to_their_root() {
    for len in [OA3_LEN, OA3_MB_LEN] {
        let (chain, epoch, root) = chain(|a, b, k, s| oa3(len, a, b, k, s));
        assert_eq!(OaCertificate::parse(&chain[0]).unwrap().family, Family::Oa3);
        let key = verify_chain(&chain, &[test_root(Family::Oa3, ROOT, &root)]).unwrap();
        assert_eq!(&key, epoch.verifying_key(), "{len} bytes");
        // A root of the other family is not taken, whatever its SKI.
        assert!(verify_chain(&chain, &[test_root(Family::Oa3, ROOT, &root)]).is_ok());
        assert!(verify_chain(&chain, &[test_root(Family::Oa2, ROOT, &root)]).is_err());
        // The signed body: bytes 4..182 and 236..end of the key; 182..236 (the SignerInfo's
        // head, with the signer SKI checked against the parent) is not under the signature.
        let roots = [test_root(Family::Oa3, ROOT, &root)];
        for (at, signed) in [
            (100, true),
            (300, true),
            (185, false),
            (230, false),
            (3, false),
        ] {
            let mut changed = chain.clone();
            changed[0][at] ^= 1;
            assert_eq!(
                verify_chain(&changed, &roots).is_ok(),
                !signed,
                "{len} bytes, byte {at}"
            );
        }
    }
}

#[test]
fn an_ibm_root_ski_without_ibm_s_signature_is_refused() {
    let cex7 = hex::decode(IBM_ROOTS[1].ski).unwrap().try_into().unwrap();
    let (epoch, impostor) = (signing_key(1), signing_key(9));
    let forged = vec![oa2(EPOCH, cex7, &point(&epoch), &impostor)];
    let message = verify_chain_to_ibm(&forged).unwrap_err().message;
    assert_eq!(
        message,
        "device certificate 0: its signature does not verify"
    );
}

#[test]
fn a_broken_chain_is_refused_naming_the_certificate() {
    let (mut chain, _, root) = chain(oa2);
    let roots = [test_root(Family::Oa2, ROOT, &root)];
    // One byte of the epoch certificate's signed body changed.
    chain[0][40] ^= 1;
    let message = verify_chain(&chain, &roots).unwrap_err().message;
    assert_eq!(
        message,
        "device certificate 0: its signature does not verify"
    );
    // A parent that is not the named signer.
    let (chain, _, root) = self::chain(oa2);
    let stranger = oa2([0x33; 32], ROOT, &point(&signing_key(4)), &root);
    let message = verify_chain(
        &[chain[0].clone(), stranger],
        &[test_root(Family::Oa2, ROOT, &root)],
    )
    .unwrap_err()
    .message;
    assert!(
        message.starts_with("device certificate 0: it names signer SKI 1e1e"),
        "{message}"
    );
    // A certificate that signs itself, even with the right key.
    let own = signing_key(5);
    let selfish = vec![oa2(ROOT, ROOT, &point(&own), &own)];
    let message = verify_chain(&selfish, &[test_root(Family::Oa2, ROOT, &own)])
        .unwrap_err()
        .message;
    assert!(
        message.contains("self-signed OA certificates are refused"),
        "{message}"
    );
    // Too long, or empty.
    assert!(verify_chain(&[], &roots).is_err());
    assert!(verify_chain(&vec![chain[0].clone(); CHAIN_LEN_MAX + 1], &roots).is_err());
}

#[test]
fn no_certificate_bytes_make_the_parser_panic() {
    let (chain, _, _) = chain(oa2);
    for end in 0..chain[0].len() {
        assert!(
            OaCertificate::parse(&chain[0][..end]).is_err(),
            "{end} bytes"
        );
    }
    let mut huge = chain[0].clone();
    huge[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(OaCertificate::parse(&huge).is_err());
    let message = OaCertificate::parse(&[0x30; 700]).unwrap_err().message;
    assert!(
        message.contains("older crypto modules (CEX5) are not supported"),
        "{message}"
    );
    // An OA3-sized certificate whose key is not a point.
    assert!(OaCertificate::parse(&vec![0u8; OA3_LEN]).is_err());
}

#[test]
fn ibm_s_root_keys_are_p521_points() {
    for root in IBM_ROOTS {
        root.key();
        assert_eq!(hex::decode(root.ski).unwrap().len(), 32, "{}", root.name);
    }
    assert_eq!(
        IBM_ROOTS.iter().filter(|r| r.family == Family::Oa3).count(),
        1
    );
}

/// Made with OpenSSL 3.0.19: `openssl ecparam -name secp521r1 -genkey`, then
/// `openssl dgst -sha512 -sign` over `REPLY_BLOCK`; the public point from `openssl ec -pubout`.
const OPENSSL_POINT: &str = "0401eac4c1493ccb0f76b4683fa930d92595180302761e14be31345a4851e97bbf1ed71e4e23e6ad753878749187b495ea007f505b2a39b66c82de15b103167aabf88500a307e8a62ec3e234fef9bd5dbf3804de7f7118e436df4dac40e34e6235a654570edf37d533740bc9b41e6f0de325abe4c2c4916a51b3e5a81c44a3dabeab301dcf";
const OPENSSL_SIGNATURE: &str = "3081880242018c85058a8982de4287a13e4c93ab6c5ba548455c913f7fe9d27d9ec57f678494c776e20cacea0748f234d067f65d5a0044f7775298661a71f16a1c97f14ffc2d9d0242012d2806d8ec8650da845ac110fe3ccd514ccda15fd03157adcabc4a18ba2400e7d425e9c452442eb6d8725bf20c792a63c96a48c7d4b3c0efd894f1e0d05a8f8173";
const REPLY_BLOCK: &[u8] = b"mkplan OA reply signature test vector: an xcpAdminRspBlk stand-in";

/// A SignerInfo as the card sends it (tke-wire.md §4.3 shape).
fn signer_info(algorithm: &[u8], signature: &[u8]) -> Vec<u8> {
    let algorithm_id =
        |oid: &[u8]| der::sequence(&[der::element(0x06, oid), der::element(0x05, &[])]);
    der::sequence(&[
        der::element(0x02, &[3]),
        der::element(0x80, &[0xab; 32]),
        algorithm_id(&[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03]),
        algorithm_id(algorithm),
        der::octet_string(signature),
    ])
}

const OID_DILITHIUM: [u8; 11] = [
    0x2b, 0x06, 0x01, 0x04, 0x01, 0x02, 0x82, 0x0b, 0x01, 0x08, 0x07,
];

#[test]
fn a_reply_signature_made_by_openssl_verifies_and_a_forged_reply_does_not() {
    let key = VerifyingKey::from_sec1_bytes(&hex::decode(OPENSSL_POINT).unwrap()).unwrap();
    let ecdsa = signer_info(
        &OID_ECDSA_WITH_SHA512,
        &hex::decode(OPENSSL_SIGNATURE).unwrap(),
    );
    verify_reply(&ecdsa, REPLY_BLOCK, &key).unwrap();
    // The CEX8 may put a Dilithium SignerInfo first: the ECDSA one is found after it.
    let dilithium = signer_info(&OID_DILITHIUM, &[0x11; 64]);
    verify_reply(
        &[dilithium.clone(), ecdsa.clone()].concat(),
        REPLY_BLOCK,
        &key,
    )
    .unwrap();
    let mut forged = REPLY_BLOCK.to_vec();
    forged[0] ^= 0x20;
    assert_eq!(
        verify_reply(&ecdsa, &forged, &key).unwrap_err().message,
        "the reply's OA signature does not verify with the crypto module's epoch key"
    );
    let other = *signing_key(7).verifying_key();
    assert!(verify_reply(&ecdsa, REPLY_BLOCK, &other).is_err());
    assert!(
        verify_reply(&dilithium, REPLY_BLOCK, &key)
            .unwrap_err()
            .message
            .contains("no ECDSA P-521 OA signature")
    );
    assert!(verify_reply(&[], REPLY_BLOCK, &key).is_err());
    assert!(verify_reply(&[0x30, 0x03, 0x02, 0x01, 0x03], REPLY_BLOCK, &key).is_err());
}

/// What `sim serve --protocol tke` answers: its chain verifies to the test root only, and
/// every m_admin reply verifies with the epoch key of certificate 0.
#[test]
fn the_simulator_s_chain_and_replies_verify_to_the_test_root_only() {
    use super::super::{ep11, htp, oa_test_chain};
    use crate::backend::sim::server::tke_front;
    let unit: crate::model::CryptoUnit = serde_json::from_value(serde_json::json!({
        "hsm_id": "0a1b2c3d-0000-4000-8000-000000000001", "type": "operational",
        "location": "[us-south].[AZ1-CS1].[01].[02]", "mode": "admin",
        "signature_threshold": 1, "revocation_threshold": 1, "administrators": [],
        "new_register": {"status": "Empty"}, "current_register": {"status": "Empty"}
    }))
    .unwrap();
    let ask = |payload: &[u8]| {
        let answer = tke_front::answer(&unit, &htp::request(1, 2, payload));
        htp::parse_response(&answer).unwrap()
    };
    let mut chain = Vec::new();
    for index in 0.. {
        let reply = ask(&ep11::device_certificate_query(2, index));
        match ep11::parse_device_certificate(&reply, 2).unwrap() {
            Some(certificate) => chain.push(certificate.output),
            None => break,
        }
    }
    assert_eq!(chain.len(), 2);
    let epoch = verify_chain(&chain, &[oa_test_chain::test_root()]).unwrap();
    assert!(verify_chain_to_ibm(&chain).is_err());
    let reply = ask(&ep11::admin_query(2, ep11::ADMQ_DOM_ATTRS, &[]));
    let attributes = ep11::parse_admin_response(&reply, 2, ep11::ADMQ_DOM_ATTRS).unwrap();
    verify_reply(&attributes.signer_infos, &attributes.block, &epoch).unwrap();
    let mut forged = attributes.block.clone();
    *forged.last_mut().unwrap() ^= 1;
    assert!(verify_reply(&attributes.signer_infos, &forged, &epoch).is_err());
}

/// A chain that verified is remembered by its exact bytes and roots only: after the good
/// chain is remembered, a chain with one byte changed, a chain with another epoch
/// certificate, and the good chain under other roots are each checked in full and refused.
#[test]
fn a_remembered_chain_lets_no_changed_chain_or_other_roots_pass() {
    let (good, epoch, root) = chain(oa2);
    let roots = [test_root(Family::Oa2, ROOT, &root)];
    assert_eq!(
        &verify_chain_once(&good, &roots).unwrap(),
        epoch.verifying_key()
    );
    assert!(chain_remembered(&good, &roots));
    // Asked again: the same key, from memory.
    assert_eq!(
        &verify_chain_once(&good, &roots).unwrap(),
        epoch.verifying_key()
    );

    for (certificate, at) in [(0, 40), (1, 40), (0, 300), (1, 300)] {
        let mut changed = good.clone();
        changed[certificate][at] ^= 1;
        let refused = verify_chain_once(&changed, &roots).unwrap_err().message;
        assert!(
            refused.contains(&format!("device certificate {certificate}")),
            "certificate {certificate}, byte {at}: {refused}"
        );
        assert!(!chain_remembered(&changed, &roots));
    }
    // Another epoch key, certified by a key that is not the intermediate's.
    let impostor = signing_key(9);
    let swapped = vec![
        oa2(EPOCH, INTERMEDIATE, &point(&impostor), &impostor),
        good[1].clone(),
    ];
    assert!(verify_chain_once(&swapped, &roots).is_err());
    // One certificate of the good chain only: it ends at no root.
    assert!(verify_chain_once(&good[..1], &roots).is_err());
    // The good chain where only IBM's roots are trusted.
    assert!(verify_chain_once(&good, &IBM_ROOTS).is_err());
    assert!(!chain_remembered(&good, &IBM_ROOTS));
    // The good chain is still accepted as it was.
    assert_eq!(
        &verify_chain_once(&good, &roots).unwrap(),
        epoch.verifying_key()
    );
}
