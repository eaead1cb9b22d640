//! Golden tests of the signed commands' bytes. Every vector comes from outside mkplan's code:
//! - RFC 3394 §4.6 (wrap 256 bits of key data with a 256-bit KEK);
//! - NIST CAVS `ansx963_2001.rsp`, SHA-256 (the X9.63 KDF), the vectors pyca/cryptography
//!   tests its X963KDF with, rechecked with OpenSSL;
//! - tke-wire.md §7's COMMIT block (produced with the SDK's own builders);
//! - whole COMMIT_WK and IMPORT_WK requests made by `tests/fixtures/tke/vectors.py`: the SDK's
//!   layouts, OpenSSL's ECDH, KDF, key wrap and RFC 6979 (deterministic) ECDSA over SHA-512,
//!   with fixed test keys, a fixed ephemeral key and a fixed UKM.

use p521::SecretKey;

use super::super::kari::{self, x963_sha256};
use super::super::sigkey::P521Signer;
use super::super::signer::Signer;
use super::*;

/// The test key whose scalar is 10 zero bytes then `seed` 56 times (as `vectors.py`).
fn key(seed: u8) -> SecretKey {
    let mut scalar = [0u8; 66];
    scalar[10..].fill(seed);
    SecretKey::from_slice(&scalar).unwrap()
}

/// The address of tke-wire.md §7: domain 3, instance A1B2C3D4, module 93AABEA7…01, counter
/// 0x29.
fn address() -> Address {
    Address {
        admin_domain: hex::decode("00000003A1B2C3D4").unwrap(),
        module_id: hex::decode("39334141424541370000000000000001").unwrap(),
        counter: [[0u8; 15].as_slice(), &[0x29]].concat(),
    }
}

fn golden(name: &str) -> Vec<u8> {
    let text = match name {
        "commit" => include_str!("../../../tests/fixtures/tke/commit_wk.hex"),
        _ => include_str!("../../../tests/fixtures/tke/import_wk.hex"),
    };
    hex::decode(text.trim()).unwrap()
}

#[test]
fn aes_256_key_wrap_is_rfc_3394() {
    let kek: [u8; 32] =
        hex::decode("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
            .unwrap()
            .try_into()
            .unwrap();
    let data: [u8; 32] =
        hex::decode("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
            .unwrap()
            .try_into()
            .unwrap();
    let wrapped = kari::wrap(&kek, &data);
    assert_eq!(
        hex::encode_upper(wrapped),
        "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"
    );
    assert_eq!(*kari::unwrap(&kek, &wrapped).unwrap(), data);
}

#[test]
fn the_kdf_is_ansi_x963_with_sha256() {
    let z = hex::decode("96c05619d56c328ab95fe84b18264b08725b85e33fd34f08").unwrap();
    assert_eq!(
        hex::encode(&*x963_sha256(&z, &[], 16)),
        "443024c3dae66b95e6f5670601558f71"
    );
    let z = hex::decode("22518b10e70f2a3f243810ae3254139efbee04aa57c7af7d").unwrap();
    let info = hex::decode("75eef81aa3041e33b80971203d2c0c52").unwrap();
    assert_eq!(
        hex::encode(&*x963_sha256(&z, &info, 128)),
        "c498af77161cc59f2962b9a713e2b215152d139766ce34a776df11866a69bf2e52a13d9c7c6fc878c50c5ea0bc7b00e0da2447cfd874f6cf92f30d0097111485500c90c3af8b487872d04685d14c8d1dc8d7fa08beb0ce0ababc11f0bd496269142d43525a78e5bc79a17f59676a5706dc54d54d4d1f0bd7e386128ec26afc21"
    );
}

#[test]
fn the_commit_block_is_tke_wire_section_7() {
    let vp =
        hex::decode("5C1B924542FECD099A9568826BCE5018476B3C2A29944C9C7FF6E47F00000000").unwrap();
    assert_eq!(
        hex::encode_upper(block(COMMIT_WK, &address(), &vp)),
        "305604040000000D040800000003A1B2C3D404103933414142454137000000000000000104100000000000000000000000000000002A04205C1B924542FECD099A9568826BCE5018476B3C2A29944C9C7FF6E47F00000000"
    );
}

#[tokio::test]
async fn a_commit_wk_request_is_byte_for_byte_the_sdks() {
    let vp =
        hex::decode("5C1B924542FECD099A9568826BCE5018476B3C2A29944C9C7FF6E47F00000000").unwrap();
    let alice = P521Signer::new("alice", "test", &key(0x41));
    let bob = P521Signer::new("bob", "test", &key(0x42));
    let signers: [&dyn Signer; 2] = [&alice, &bob];
    let block = block(COMMIT_WK, &address(), &vp);
    let request = signed_request(3, &block, &signers).await.unwrap();
    assert_eq!(
        hex::encode_upper(&request),
        hex::encode_upper(golden("commit"))
    );
    // What the card reads back: the block, both signers, both signatures good.
    let read = parse_signed_request(&request).unwrap();
    assert_eq!(read.block, block);
    assert_eq!(read.counter, address().next_counter());
    for (info, signer) in read.signer_infos.iter().zip(signers) {
        assert_eq!(info.ski, signer.ski());
        let point = kari::point(
            &key(if signer.administrator() == "alice" {
                0x41
            } else {
                0x42
            })
            .public_key(),
        );
        assert!(verify_p521(&point, &block, &info.signature));
        assert!(!verify_p521(&point, &block[1..], &info.signature));
    }
}

#[tokio::test]
async fn an_import_wk_request_is_byte_for_byte_the_sdks_layout_with_openssls_kari() {
    let importer = key(0x49);
    let ski = kari::importer_ski(&importer.public_key());
    let part = [0x11u8; 32];
    let recipient_info = kari::recipient_info(
        &importer.public_key(),
        &ski,
        &part,
        &key(0x45),
        &[0x55; kari::UKM_LEN],
    );
    let alice = P521Signer::new("alice", "test", &key(0x41));
    let request = import_request(3, &address(), &[recipient_info], &[&alice])
        .await
        .unwrap();
    assert_eq!(
        hex::encode_upper(&request),
        hex::encode_upper(golden("import"))
    );
    // The card's side opens it with the importer key.
    let outer = parse_signed_request(&request).unwrap();
    assert!(outer.signer_infos.is_empty());
    let parts = parse_import_parts(&outer.input).unwrap();
    assert_eq!(parts.len(), 1);
    let (named, opened) = kari::open(&importer, &parts[0].input).unwrap();
    assert_eq!(named, ski);
    assert_eq!(*opened, part);
    assert!(kari::open(&key(0x46), &parts[0].input).is_err());
}

#[test]
fn the_counter_is_the_one_read_plus_one_and_wraps() {
    let mut at = address();
    assert_eq!(at.next_counter()[15], 0x2a);
    at.counter = vec![0xff; 16];
    assert_eq!(at.next_counter(), vec![0; 16]);
    at.counter = [[0u8; 14].as_slice(), &[0x01, 0xff]].concat();
    assert_eq!(&at.next_counter()[14..], &[0x02, 0x00]);
}
