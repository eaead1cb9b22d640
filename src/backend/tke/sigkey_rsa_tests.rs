//! RSA-2048 administrator keys against answers worked out by OpenSSL, not by this code
//! (tests/fixtures/tke/README.md says how each fixture was made).

use super::*;

const KEY: &[u8] = include_bytes!("../../../tests/fixtures/tke/rsa2048-admin.pkcs1.der");
const PUBLIC_KEY: &[u8] = include_bytes!("../../../tests/fixtures/tke/rsa2048-admin.public.der");
const SMALL_KEY: &[u8] = include_bytes!("../../../tests/fixtures/tke/rsa1024-admin.pkcs1.der");
/// `openssl rsautl -sign -raw` over the X9.31 block of [`COMMIT_BLOCK`].
const COMMIT_SIGNATURE: &[u8] =
    include_bytes!("../../../tests/fixtures/tke/rsa2048-admin.commit-block.sig");
/// `sha256sum rsa2048-admin.public.der`.
const SKI_HEX: &str = "d52a2491206879a60780580f3f7485ac8206c79f436d44044b55ad27c2d25b25";
/// The COMMIT xcpAdminBlk of shared/tke-wire.md §7: the bytes an administrator signs.
const COMMIT_BLOCK: &str = "305604040000000D040800000003A1B2C3D404103933414142454137000000000000000104100000000000000000000000000000002A04205C1B924542FECD099A9568826BCE5018476B3C2A29944C9C7FF6E47F00000000";
const SOURCE: &str = "signature key file keys/alice.json";

fn ski() -> [u8; 32] {
    hex::decode(SKI_HEX).unwrap().try_into().unwrap()
}

fn commit_block() -> Vec<u8> {
    hex::decode(COMMIT_BLOCK).unwrap()
}

fn alice(key: &[u8], ski: [u8; 32]) -> Result<Box<dyn Signer>, SignError> {
    signer("alice", SOURCE.into(), Zeroizing::new(key.to_vec()), ski)
}

fn refusal(result: Result<Box<dyn Signer>, SignError>) -> String {
    match result {
        Err(SignError::Refused(message)) => message,
        Err(other) => panic!("expected a refusal, got {other:?}"),
        Ok(_) => panic!("expected a refusal, got a signer"),
    }
}

#[test]
fn the_ski_is_sha256_of_the_public_key_der_as_openssl_writes_it() {
    let key = PrivateKey::from_pkcs1_der(KEY).unwrap();
    assert_eq!(public_key_der(key.as_public_key()), PUBLIC_KEY);
    assert_eq!(hex::encode(ski_of(key.as_public_key())), SKI_HEX);
}

#[test]
fn x931_block_is_6b_bb_ba_hash_34_cc() {
    let block = x931_block(b"abc");
    assert_eq!(block[0], 0x6B);
    assert!(block[1..221].iter().all(|b| *b == 0xBB));
    assert_eq!(block[221], 0xBA);
    assert_eq!(&block[222..254], &Sha256::digest(b"abc")[..]);
    assert_eq!(&block[254..], &[0x34, 0xCC]);
}

#[tokio::test]
async fn signs_the_commit_block_as_openssl_does() {
    let alice = alice(KEY, ski()).unwrap();
    assert_eq!(alice.kind(), SignatureKind::Rsa2048);
    assert_eq!(alice.ski(), ski());
    assert_eq!(alice.administrator(), "alice");
    assert_eq!(alice.source(), SOURCE);
    let signature = alice.sign(&commit_block()).await.unwrap();
    assert_eq!(signature.len(), SIGNATURE_LEN);
    // Blinding is random; the result is not.
    assert_eq!(signature, COMMIT_SIGNATURE);
    assert!(verify_x931(PUBLIC_KEY, &commit_block(), &signature));
}

#[test]
fn a_short_result_is_left_padded_to_256_bytes() {
    let small = BoxedUint::from_be_slice(&[0x01, 0x02], 2048).unwrap();
    let padded = left_padded(&small).unwrap();
    assert!(padded[..254].iter().all(|b| *b == 0));
    assert_eq!(&padded[254..], &[0x01, 0x02]);
    let wide = BoxedUint::from_be_slice(&[0xFF; 257], 3072).unwrap();
    assert!(left_padded(&wide).is_none());
}

#[test]
fn a_key_that_does_not_match_its_ski_is_refused() {
    let mut wrong = ski();
    wrong[31] ^= 1;
    let message = refusal(alice(KEY, wrong));
    assert!(message.contains("administrator alice"), "{message}");
    assert!(message.contains(SOURCE), "{message}");
    assert!(message.contains("does not match its `ski`"), "{message}");
    assert!(message.contains(SKI_HEX), "{message}");
    // No key material: not the modulus, let alone anything private.
    let modulus = hex::encode(&PUBLIC_KEY[9..40]);
    assert!(!message.to_lowercase().contains(&modulus), "{message}");
}

#[test]
fn a_key_of_another_size_is_refused() {
    let small = PrivateKey::from_pkcs1_der(SMALL_KEY).unwrap();
    let message = refusal(alice(SMALL_KEY, ski_of(small.as_public_key())));
    assert!(message.contains("1024-bit modulus"), "{message}");
    assert!(message.contains("administrator alice"), "{message}");
}

#[test]
fn bytes_that_are_not_a_pkcs1_key_are_refused_without_echoing_them() {
    for bad in [
        &b""[..],
        &b"\x30\x03\x02\x01\x00"[..],
        &KEY[..KEY.len() - 1],
    ] {
        let message = refusal(alice(bad, ski()));
        assert!(message.contains("not an RSA private key"), "{message}");
    }
    // A public key is not a private one.
    let message = refusal(alice(PUBLIC_KEY, ski()));
    assert!(message.contains("not an RSA private key"), "{message}");
}

#[tokio::test]
async fn a_key_whose_private_exponent_was_altered_never_hands_out_its_result() {
    // The private exponent starts at byte 277 (after n, 4 + 3 + 4 + 257 bytes, and e, 5).
    let mut damaged = KEY.to_vec();
    assert_eq!(&damaged[273..277], &[0x02, 0x82, 0x01, 0x00]);
    damaged[300] ^= 0x01;
    // Either the rsa crate's own checks refuse the key, or the signature fails its check.
    match alice(&damaged, ski()) {
        Err(SignError::Refused(message)) => assert!(message.contains("alice"), "{message}"),
        Err(other) => panic!("{other:?}"),
        Ok(signer) => match signer.sign(&commit_block()).await {
            Err(SignError::Refused(message)) => {
                assert!(message.contains("nothing was sent"), "{message}")
            }
            other => panic!("a damaged key signed: {other:?}"),
        },
    }
}

#[test]
fn verify_rejects_any_change_to_block_signature_key_or_length() {
    let block = commit_block();
    assert!(verify_x931(PUBLIC_KEY, &block, COMMIT_SIGNATURE));

    let mut other_block = block.clone();
    other_block[60] ^= 1;
    assert!(!verify_x931(PUBLIC_KEY, &other_block, COMMIT_SIGNATURE));

    for index in [0, 128, 255] {
        let mut tampered = COMMIT_SIGNATURE.to_vec();
        tampered[index] ^= 0x40;
        assert!(!verify_x931(PUBLIC_KEY, &block, &tampered), "byte {index}");
    }
    assert!(!verify_x931(PUBLIC_KEY, &block, &COMMIT_SIGNATURE[1..]));
    let mut longer = vec![0u8];
    longer.extend_from_slice(COMMIT_SIGNATURE);
    assert!(!verify_x931(PUBLIC_KEY, &block, &longer));
    assert!(!verify_x931(PUBLIC_KEY, &block, &[]));
    // Not below the modulus: the modulus itself, and all ones.
    let key = PublicKey::from_pkcs1_der(PUBLIC_KEY).unwrap();
    assert!(!verify_x931(PUBLIC_KEY, &block, &key.n_bytes()));
    assert!(!verify_x931(PUBLIC_KEY, &block, &[0xFF; SIGNATURE_LEN]));
    // n − s recovers n − block, which X9.31 would accept and the SDK never sends.
    let n = key.n().as_ref().clone();
    let s = BoxedUint::from_be_slice(COMMIT_SIGNATURE, n.bits_precision()).unwrap();
    let complement = left_padded(&n.wrapping_sub(&s)).unwrap();
    assert!(!verify_x931(PUBLIC_KEY, &block, &complement));
}

#[test]
fn verify_is_false_for_keys_that_do_not_parse_or_are_not_2048_bits() {
    let block = commit_block();
    assert!(!verify_x931(b"", &block, COMMIT_SIGNATURE));
    assert!(!verify_x931(
        &PUBLIC_KEY[..PUBLIC_KEY.len() - 1],
        &block,
        COMMIT_SIGNATURE
    ));
    let mut trailing = PUBLIC_KEY.to_vec();
    trailing.push(0);
    assert!(!verify_x931(&trailing, &block, COMMIT_SIGNATURE));
    assert!(!verify_x931(KEY, &block, COMMIT_SIGNATURE));
    let small = PrivateKey::from_pkcs1_der(SMALL_KEY).unwrap();
    let small_public = public_key_der(small.as_public_key());
    assert!(!verify_x931(
        &small_public,
        &block,
        &COMMIT_SIGNATURE[..128]
    ));
}
