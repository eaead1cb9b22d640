//! TEST MATERIAL, never trusted by default: an OA certificate chain and epoch key that
//! `mkplan sim serve --protocol tke` signs its replies with, so that reply verification
//! (module `oa`) runs end to end in tests. Every private key here is derived from a public
//! seed in this file: anyone can forge with them, which is why the root they chain to is
//! none of IBM's and is trusted by nothing unless a test asks for it explicitly.
//!
//! The certificates are built byte by byte at the offsets the SDK's parsers read
//! (`oa2CertificateX.go`, tke-wire.md §4.6): an epoch certificate (index 0) signed by an
//! intermediate (index 1) signed by the test root.

use p521::ecdsa::signature::hazmat::PrehashSigner;
use p521::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha512};

use super::der;
use super::oa::{Family, RootKey};

/// Subject SKIs of the test chain's certificates and of its root.
pub const EPOCH_SKI: [u8; 32] = [0xe0; 32];
pub const INTERMEDIATE_SKI: [u8; 32] = [0x1e; 32];
pub const ROOT_SKI: [u8; 32] = [0x70; 32];
/// Seeds of the test keys: epoch, intermediate, root.
const EPOCH_SEED: u8 = 1;
const INTERMEDIATE_SEED: u8 = 2;
const ROOT_SEED: u8 = 3;
/// A root no client trusts, for the simulator's "unknown root" fault.
const STRANGER_ROOT_SEED: u8 = 6;
/// A second test root (its own SKI and key): the crypto modules of another simulated
/// service (`oa_second_test_root`), trusted with the first and told apart from it.
pub const SECOND_ROOT_SKI: [u8; 32] = [0x72; 32];
const SECOND_ROOT_SEED: u8 = 7;
/// ecdsa-with-SHA512 and SHA-512, as a card's SignerInfo names them (tke-wire.md §4.3).
const OID_ECDSA_WITH_SHA512: [u8; 8] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
const OID_SHA512: [u8; 9] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];

/// A P-521 test key whose scalar is `seed` repeated (public: test material only).
pub fn signing_key(seed: u8) -> SigningKey {
    let mut scalar = [0u8; 66];
    scalar[10..].fill(seed);
    SigningKey::from_slice(&scalar).expect("a non-zero scalar below the order")
}

/// `04 ‖ X ‖ Y` of a key.
pub fn point(key: &SigningKey) -> Vec<u8> {
    key.verifying_key().to_sec1_point(false).as_bytes().to_vec()
}

/// r and s (66 bytes each) of an ECDSA P-521 signature over SHA-512(`body`).
pub fn sign(key: &SigningKey, body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let signature: Signature = key
        .sign_prehash(&Sha512::digest(body))
        .expect("signing a SHA-512 digest");
    let bytes = signature.to_bytes();
    (bytes[..66].to_vec(), bytes[66..].to_vec())
}

/// A CEX6/CEX7 certificate: header, info (4+4), metadata (173+3), aux data (83+5), SPKI
/// (158+2), SignerInfo (207+1), the fields where `oa2CertificateX.go` reads them.
pub fn oa2(subject: [u8; 32], signer: [u8; 32], key: &[u8], signed_by: &SigningKey) -> Vec<u8> {
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

/// A root key (for `oa::verify_chain`) made from a test key; leaks its three hex strings,
/// once per call, so that it fits `RootKey`'s static fields.
pub fn root_of(family: Family, ski: [u8; 32], key: &SigningKey) -> RootKey {
    let point = point(key);
    let leak = |bytes: &[u8]| &*Box::leak(hex::encode(bytes).into_boxed_str());
    RootKey {
        name: "mkplan's test OA root (TEST MATERIAL: never trust it outside tests)",
        family,
        ski: leak(&ski),
        x: leak(&point[1..67]),
        y: leak(&point[67..]),
    }
}

/// The root the simulator's chain ends at; trusted only when a test asks for it.
pub fn test_root() -> RootKey {
    root_of(Family::Oa2, ROOT_SKI, &signing_key(ROOT_SEED))
}

/// The second test root: another simulated service's crypto modules end their chains there.
pub fn second_test_root() -> RootKey {
    RootKey {
        name: "mkplan's second test OA root (TEST MATERIAL: never trust it outside tests)",
        ..root_of(Family::Oa2, SECOND_ROOT_SKI, &signing_key(SECOND_ROOT_SEED))
    }
}

/// What the simulated crypto module holds: its device certificates and its epoch key.
pub struct TestModule {
    /// Index 0 (the epoch certificate) first.
    pub certificates: Vec<Vec<u8>>,
    pub epoch: SigningKey,
}

/// The simulator's chain. `epoch` picks the epoch key (a module's epoch key changes: a
/// different seed is a new epoch); `stranger_root` ends the chain at a root nobody trusts.
pub fn test_module(epoch: u8, stranger_root: bool) -> TestModule {
    let root = if stranger_root {
        STRANGER_ROOT_SEED
    } else {
        ROOT_SEED
    };
    module_under(epoch, ROOT_SKI, root)
}

/// The chain of another simulated service's crypto modules: to the second test root.
pub fn second_service_module(epoch: u8) -> TestModule {
    module_under(epoch, SECOND_ROOT_SKI, SECOND_ROOT_SEED)
}

fn module_under(epoch: u8, root_ski: [u8; 32], root_seed: u8) -> TestModule {
    let epoch_key = signing_key(EPOCH_SEED.wrapping_add(epoch.wrapping_mul(16)));
    let intermediate = signing_key(INTERMEDIATE_SEED);
    let root = signing_key(root_seed);
    TestModule {
        certificates: vec![
            oa2(
                EPOCH_SKI,
                INTERMEDIATE_SKI,
                &point(&epoch_key),
                &intermediate,
            ),
            oa2(INTERMEDIATE_SKI, root_ski, &point(&intermediate), &root),
        ],
        epoch: epoch_key,
    }
}

/// Reply signatures `reply_signer_info` remembers; when full, it forgets them all.
const REPLY_SIGNATURES_MAX: usize = 4096;

/// Signatures the simulator made, by signing key (its public point) and block. ECDSA here is
/// deterministic (RFC 6979: the nonce comes from the key and the digest), so signing the same
/// block with the same key again gives these very bytes: a simulator answering the same read
/// many times (every poll of an apply) signs it once.
static REPLY_SIGNATURES: std::sync::LazyLock<std::sync::Mutex<ReplySignatures>> =
    std::sync::LazyLock::new(Default::default);

/// (public point, block) -> (r, s).
type ReplySignatures = std::collections::HashMap<(Vec<u8>, Vec<u8>), (Vec<u8>, Vec<u8>)>;

/// `sign(key, block)`, remembered (see `REPLY_SIGNATURES`).
fn sign_remembered(key: &SigningKey, block: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let signatures = || REPLY_SIGNATURES.lock().unwrap_or_else(|e| e.into_inner());
    let id = (point(key), block.to_vec());
    if let Some(known) = signatures().get(&id) {
        return known.clone();
    }
    let signature = sign(key, block);
    let mut signatures = signatures();
    if signatures.len() >= REPLY_SIGNATURES_MAX {
        signatures.clear();
    }
    signatures.insert(id, signature.clone());
    signature
}

/// The SignerInfo a card puts in an xcpAdminRsp: ECDSA P-521 over SHA-512(`block`), the
/// xcpAdminRspBlk DER exactly as carried (tke-wire.md §4.3, §4.6).
pub fn reply_signer_info(key: &SigningKey, block: &[u8]) -> Vec<u8> {
    let (r, s) = sign_remembered(key, block);
    let integer = |n: &[u8]| {
        let n = &n[n.iter().take_while(|b| **b == 0).count()..];
        // A leading 0x00 keeps a high first bit from reading as negative.
        let bytes = if n.first().is_some_and(|b| b & 0x80 != 0) {
            [&[0u8][..], n].concat()
        } else {
            n.to_vec()
        };
        der::element(0x02, &bytes)
    };
    let algorithm_id =
        |oid: &[u8]| der::sequence(&[der::element(0x06, oid), der::element(0x05, &[])]);
    der::sequence(&[
        der::element(0x02, &[3]),
        der::element(0x80, &EPOCH_SKI),
        algorithm_id(&OID_SHA512),
        algorithm_id(&OID_ECDSA_WITH_SHA512),
        der::octet_string(&der::sequence(&[integer(&r), integer(&s)])),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a remembered signature saves is a signing that would give the same bytes.
    #[test]
    fn a_remembered_reply_signature_is_the_one_signing_gives_again() {
        let (key, other) = (signing_key(EPOCH_SEED), signing_key(INTERMEDIATE_SEED));
        let block = b"an xcpAdminRspBlk".to_vec();
        let first = sign_remembered(&key, &block);
        assert_eq!(first, sign(&key, &block), "RFC 6979: deterministic");
        assert_eq!(sign_remembered(&key, &block), first);
        // Another key or another block is signed, not looked up.
        assert_eq!(sign_remembered(&other, &block), sign(&other, &block));
        assert_ne!(sign_remembered(&other, &block), first);
        assert_ne!(sign_remembered(&key, b"another block"), first);
    }
}
