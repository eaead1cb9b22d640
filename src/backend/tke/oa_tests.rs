//! OA certificates and reply signatures. There is no captured certificate to test against,
//! so the certificates here are built byte by byte at the offsets the SDK's parsers read
//! (`oa2CertificateX.go`, `oa3CertificateX.go`), signed by keys made here and rooted in a
//! test root that exists only in this test module. The reply signature vector was made
//! with OpenSSL 3.0 (`openssl dgst -sha512 -sign` with a secp521r1 key), an implementation
//! independent of the one that checks it.

use p521::ecdsa::signature::hazmat::PrehashSigner;
use p521::ecdsa::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha512};

use super::*;

fn signing_key(seed: u8) -> SigningKey {
    let mut scalar = [0u8; COORDINATE_LEN];
    scalar[10..].fill(seed);
    SigningKey::from_slice(&scalar).unwrap()
}

fn point(key: &SigningKey) -> Vec<u8> {
    key.verifying_key().to_sec1_point(false).as_bytes().to_vec()
}

fn sign(key: &SigningKey, body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let signature: Signature = key.sign_prehash(&Sha512::digest(body)).unwrap();
    let bytes = signature.to_bytes();
    (bytes[..66].to_vec(), bytes[66..].to_vec())
}

/// A CEX6/CEX7 certificate: header, info (4+4), metadata (173+3), aux data (83+5), SPKI
/// (158+2), SignerInfo (207+1), the fields where `oa2CertificateX.go` reads them.
fn oa2(subject: [u8; 32], signer: [u8; 32], key: &[u8], signed_by: &SigningKey) -> Vec<u8> {
    let lengths: [u32; 5] = [4, 173, 83, 158, 207];
    let mut header = vec![0u8; 32];
    header[0] = 0x45;
    header[3] = 5;
    // The whole certificate: header, then each section and its pad.
    let total: u32 = 32 + (4 + 4) + (173 + 3) + (83 + 5) + (158 + 2) + (207 + 1);
    header[4..8].copy_from_slice(&total.to_be_bytes());
    for (i, length) in lengths.iter().enumerate() {
        header[8 + 4 * i..12 + 4 * i].copy_from_slice(&length.to_be_bytes());
    }
    let mut metadata = vec![0u8; 176];
    metadata[87..119].copy_from_slice(&subject);
    metadata[121..153].copy_from_slice(&signer);
    metadata[171..173].copy_from_slice(&[0x04, 0x00]);
    let mut spki = vec![0u8; 160];
    spki[25..158].copy_from_slice(key);
    let body = [header, vec![0u8; 8], metadata, vec![0x5a; 88], spki].concat();
    let (r, s) = sign(signed_by, &body);
    let mut signer_info = vec![0u8; 208];
    signer_info[73..139].copy_from_slice(&r);
    signer_info[141..207].copy_from_slice(&s);
    [body, signer_info].concat()
}

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
    let point = point(key);
    let leak = |bytes: &[u8]| &*Box::leak(hex::encode(bytes).into_boxed_str());
    RootKey {
        name: "mkplan's test root (tests only)",
        family,
        ski: leak(&ski),
        x: leak(&point[1..67]),
        y: leak(&point[67..]),
    }
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
