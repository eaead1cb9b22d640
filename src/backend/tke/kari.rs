//! A key part encrypted for a domain's P-521 importer key (tke-wire.md §4.4, §8.7): the CMS
//! KeyAgreeRecipientInfo an IMPORT_WK carries, laid out as the SDK's
//! `CreateRecipientInfoP521EC` lays it out. The key-encryption key comes from ECDH between a
//! fresh (ephemeral) originator key and the importer key, through the ANSI X9.63 KDF with
//! SHA-256 over the RFC 5753 ECC-CMS-SharedInfo (the UKM, aes256-wrap, 256 bits); the key
//! part is then wrapped with AES-256 key wrap (RFC 3394), 32 bytes in, 40 out.
//!
//! What is not known (§8.7): the SDK never encrypts a customer key part itself, so whether a
//! card derives the KEK exactly this way is unverified; the shared-info's aes256-wrap
//! AlgorithmIdentifier carries the NULL parameter, as the envelope does (OpenSSL's CMS code
//! reuses the envelope's), where RFC 5753 would leave it out.

use aes_kw::{KeyInit, KwAes256};
use p521::elliptic_curve::sec1::ToSec1Point;
use p521::{PublicKey, SecretKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::WireError;
use super::der::{self, OCTET_STRING, SEQUENCE};

pub const OID_EC_PUBLIC_KEY: [u8; 7] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub const OID_STD_DH_SHA256_KDF: [u8; 6] = [0x2b, 0x81, 0x04, 0x01, 0x0b, 0x01];
pub const OID_AES256_WRAP: [u8; 9] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2d];
/// Bytes of the user keying material (the SDK's builder requires 40).
pub const UKM_LEN: usize = 40;
/// Bytes of a key part, and of it wrapped.
pub const KEY_PART_LEN: usize = 32;
pub const WRAPPED_LEN: usize = 40;
/// Bytes of an uncompressed P-521 point, `04 ‖ X ‖ Y`.
pub const POINT_LEN: usize = 133;

/// `SEQ{OID aes256-wrap, NULL}`.
fn aes256_wrap() -> Vec<u8> {
    der::sequence(&[
        der::element(0x06, &OID_AES256_WRAP),
        der::element(0x05, &[]),
    ])
}

/// ECC-CMS-SharedInfo (RFC 5753 §7.2): keyInfo, entityUInfo [0] = the UKM, suppPubInfo [2] =
/// the KEK's length in bits (256) as 4 bytes.
pub fn shared_info(ukm: &[u8]) -> Vec<u8> {
    der::sequence(&[
        aes256_wrap(),
        der::element(0xa0, &der::octet_string(ukm)),
        der::element(0xa2, &der::octet_string(&256u32.to_be_bytes())),
    ])
}

/// ANSI X9.63 KDF with SHA-256: `Hash(Z ‖ counter ‖ SharedInfo)` for counter 1, 2, …, cut to
/// `length` bytes.
pub fn x963_sha256(z: &[u8], shared_info: &[u8], length: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(length + 32));
    let mut counter = 1u32;
    while out.len() < length {
        let mut hash = Sha256::new();
        hash.update(z);
        hash.update(counter.to_be_bytes());
        hash.update(shared_info);
        out.extend_from_slice(&hash.finalize());
        counter += 1;
    }
    out.truncate(length);
    out
}

/// The AES-256 KEK both sides derive from the ECDH secret and the UKM.
fn kek(secret: &SecretKey, public: &PublicKey, ukm: &[u8]) -> Zeroizing<[u8; 32]> {
    let shared = p521::ecdh::diffie_hellman(secret.to_nonzero_scalar(), public.as_affine());
    let derived = x963_sha256(shared.raw_secret_bytes(), &shared_info(ukm), 32);
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&derived);
    key
}

pub fn wrap(kek: &[u8; 32], key_part: &[u8; KEY_PART_LEN]) -> [u8; WRAPPED_LEN] {
    let mut out = [0u8; WRAPPED_LEN];
    KwAes256::new(kek.into())
        .wrap_key(key_part, &mut out)
        .expect("32 bytes wrap into 40");
    out
}

pub fn unwrap(kek: &[u8; 32], wrapped: &[u8]) -> Option<Zeroizing<[u8; KEY_PART_LEN]>> {
    let mut out = Zeroizing::new([0u8; KEY_PART_LEN]);
    if wrapped.len() != WRAPPED_LEN {
        return None;
    }
    KwAes256::new(kek.into())
        .unwrap_key(wrapped, out.as_mut())
        .ok()?;
    Some(out)
}

/// `04 ‖ X ‖ Y` of a public key.
pub fn point(public: &PublicKey) -> Vec<u8> {
    public.to_sec1_point(false).as_bytes().to_vec()
}

/// The RecipientInfo carrying `key_part` for the importer key `importer` (identified by
/// `importer_ski`), with the originator key `ephemeral` and `ukm`: both fresh random for
/// every key part (the caller's seam, so a golden test can fix them).
pub fn recipient_info(
    importer: &PublicKey,
    importer_ski: &[u8; 32],
    key_part: &[u8; KEY_PART_LEN],
    ephemeral: &SecretKey,
    ukm: &[u8; UKM_LEN],
) -> Vec<u8> {
    let wrapped = wrap(&kek(ephemeral, importer, ukm), key_part);
    let bit_string = der::element(
        0x03,
        &[&[0u8][..], &point(&ephemeral.public_key())].concat(),
    );
    let originator_key = der::sequence(&[der::element(0x06, &OID_EC_PUBLIC_KEY), bit_string]);
    der::sequence(&[
        der::element(0x02, &[3]),
        der::element(0xa0, &der::element(0xa1, &originator_key)),
        der::element(0xa1, &der::octet_string(ukm)),
        der::sequence(&[der::element(0x06, &OID_STD_DH_SHA256_KDF), aes256_wrap()]),
        der::sequence(&[der::sequence(&[
            der::element(0xa0, &der::octet_string(importer_ski)),
            der::octet_string(&wrapped),
        ])]),
    ])
}

/// The card's side: the key part inside `recipient_info`, decrypted with the importer's
/// private key, and the importer SKI it names.
pub fn open(
    importer: &SecretKey,
    recipient_info: &[u8],
) -> Result<([u8; 32], Zeroizing<[u8; KEY_PART_LEN]>), WireError> {
    let bad = |why: &str| WireError::new(format!("the key part's RecipientInfo {why}"));
    let whole = der::read_whole(recipient_info, SEQUENCE, "the RecipientInfo")?;
    let fields = der::elements(whole.value)?;
    let [version, originator, ukm, algorithm, keys] = fields[..] else {
        return Err(bad("does not have 5 fields"));
    };
    if version.value != [3] || originator.tag != 0xa0 || ukm.tag != 0xa1 {
        return Err(bad("is malformed"));
    }
    let key_choice = der::read_whole(originator.value, 0xa1, "the originator")?;
    let originator_key = der::read_whole(key_choice.value, SEQUENCE, "the originator key")?;
    let parts = der::elements(originator_key.value)?;
    let [oid, bits] = parts[..] else {
        return Err(bad("has a malformed originator key"));
    };
    if oid.value != OID_EC_PUBLIC_KEY || bits.tag != 0x03 || bits.value.first() != Some(&0) {
        return Err(bad("has an originator key that is not a P-521 point"));
    }
    let ephemeral = PublicKey::from_sec1_bytes(&bits.value[1..])
        .map_err(|_| bad("has an originator key that is not on P-521"))?;
    let ukm = der::read_whole(ukm.value, OCTET_STRING, "the UKM")?.value;
    let expected = der::sequence(&[der::element(0x06, &OID_STD_DH_SHA256_KDF), aes256_wrap()]);
    if der::element(SEQUENCE, algorithm.value) != expected {
        return Err(bad(
            "names another key agreement than stdDH-sha256kdf with aes256-wrap",
        ));
    }
    let keys = der::read_whole(keys.value, SEQUENCE, "the recipient encrypted key")?;
    let key = der::elements(keys.value)?;
    let [identifier, wrapped] = key[..] else {
        return Err(bad("has a malformed recipient encrypted key"));
    };
    let ski = der::read_whole(identifier.value, OCTET_STRING, "the importer SKI")?.value;
    let ski: [u8; 32] = ski
        .try_into()
        .map_err(|_| bad("names an importer SKI that is not 32 bytes"))?;
    let part = unwrap(&kek(importer, &ephemeral, ukm), wrapped.value)
        .ok_or_else(|| bad("does not unwrap with the importer key (integrity check failed)"))?;
    Ok((ski, part))
}

/// The importer SKI as the SDK computes it: SHA-256(X ‖ Y), no `04` prefix (§4.4).
pub fn importer_ski(public: &PublicKey) -> [u8; 32] {
    Sha256::digest(&point(public)[1..]).into()
}

/// GEN_IMPORTER's output: `SEQ{algId, BIT STRING(00 04 X Y)}`.
pub fn importer_output(public: &PublicKey) -> Vec<u8> {
    der::sequence(&[
        der::sequence(&[
            der::element(0x06, &OID_EC_PUBLIC_KEY),
            der::element(0x06, &[0x2b, 0x81, 0x04, 0x00, 0x23]),
        ]),
        der::element(0x03, &[&[0u8][..], &point(public)].concat()),
    ])
}

/// The importer public key in GEN_IMPORTER's output.
pub fn parse_importer_output(output: &[u8]) -> Result<PublicKey, WireError> {
    let whole = der::read_whole(output, SEQUENCE, "the importer key")?;
    let fields = der::elements(whole.value)?;
    let bits = fields
        .iter()
        .find(|f| f.tag == 0x03)
        .ok_or_else(|| WireError::new("the importer key has no BIT STRING"))?;
    if bits.value.len() != POINT_LEN + 1 || bits.value[0] != 0 {
        return Err(WireError::new(
            "the importer key is not an uncompressed P-521 point",
        ));
    }
    PublicKey::from_sec1_bytes(&bits.value[1..])
        .map_err(|_| WireError::new("the importer key is not a point on P-521"))
}

/// A fresh P-521 secret key from the operating system's random numbers.
pub fn random_secret() -> SecretKey {
    loop {
        let mut bytes = Zeroizing::new([0u8; 66]);
        getrandom::fill(bytes.as_mut()).expect("the operating system's random numbers");
        // The order is just under 2^521: 521 bits, so the first byte keeps its lowest bit.
        bytes[0] &= 0x01;
        if let Ok(secret) = SecretKey::from_slice(bytes.as_ref()) {
            return secret;
        }
    }
}

pub fn random_ukm() -> [u8; UKM_LEN] {
    let mut ukm = [0u8; UKM_LEN];
    getrandom::fill(&mut ukm).expect("the operating system's random numbers");
    ukm
}
