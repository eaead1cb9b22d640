//! An administrator's RSA-2048 signature key from a TKE CLI signature key file
//! (shared/tke-wire.md §4.3, §6.1): the file's `enckey` decrypts (module `sigkey`) to PKCS#1
//! `RSAPrivateKey` DER, which this module turns into a [`Signer`].
//!
//! The signature is what IBM's SDK sends and the crypto units check: the raw RSA private
//! operation on the 256-byte ANSI X9.31 block `6B BB…BB BA ‖ SHA-256(block DER) ‖ 34 CC`,
//! left-padded to 256 bytes, without X9.31's choice of min(s, n−s). Before a key signs, its
//! SKI (SHA-256 of DER `SEQ{INTEGER n, INTEGER e}`) must equal the file's `ski`: that is the
//! identifier the crypto unit knows the administrator by, and a key that does not match it
//! would only collect refusals from every unit. Each signature is checked with the public key
//! before it leaves (a fault in the CRT computation must not hand out a value that reveals a
//! prime factor), and the private operation is blinded with randomness from the OS.
//!
//! [`verify_x931`] is the other side, for the simulator's crypto units: strict, false on
//! anything that is not exactly a good signature.

use rsa::hazmat;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::rand_core::{TryCryptoRng, TryRng};
use rsa::traits::PublicKeyParts;
use rsa::{BoxedUint, PrivateKey, PublicKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::der;
use super::signer::{SignError, SignFuture, SignatureKind, Signer};

/// The only RSA modulus size a crypto unit takes for an administrator.
pub const MODULUS_BITS: u32 = 2048;
/// Bytes of a signature (and of the X9.31 block): the modulus size.
pub const SIGNATURE_LEN: usize = 256;
/// SHA-256's identifier in an X9.31 trailer (`34 CC`).
const X931_SHA256_ID: u8 = 0x34;
const X931_PAD: u8 = 0xBB;
const DER_INTEGER: u8 = 0x02;

/// The key a signature key file holds, checked against the file's `ski`, as a [`Signer`].
pub fn signer(
    administrator: &str,
    source: String,
    pkcs1_der: Zeroizing<Vec<u8>>,
    ski: [u8; 32],
) -> Result<Box<dyn Signer>, SignError> {
    let refused = |why: String| {
        SignError::Refused(format!(
            "administrator {}: {source}: {why}",
            crate::quote::bare(administrator)
        ))
    };
    // The parser's error would say nothing the operator can act on, and must not echo bytes.
    let key = PrivateKey::from_pkcs1_der(&pkcs1_der).map_err(|_| {
        refused(
            "its key is not an RSA private key mkplan can read (PKCS#1 RSAPrivateKey, two primes). Make the key file again with the TKE CLI (sigkey-add)"
                .into(),
        )
    })?;
    drop(pkcs1_der);
    let bits = key.n().bit_width_vartime();
    if bits != MODULUS_BITS {
        return Err(refused(format!(
            "its RSA key has a {bits}-bit modulus; crypto units take only {MODULUS_BITS}-bit RSA (or P-521) administrator keys"
        )));
    }
    let computed = ski_of(key.as_public_key());
    if computed != ski {
        return Err(refused(format!(
            "its key does not match its `ski` (the file says {}, the key's is {}): the file was altered or its parts come from two keys. Use the administrator's own key file as the TKE CLI wrote it",
            hex::encode(ski),
            hex::encode(computed)
        )));
    }
    Ok(Box::new(RsaSigner {
        administrator: administrator.to_string(),
        source,
        public_key_der: public_key_der(key.as_public_key()),
        key,
        ski,
    }))
}

/// True when `signature` is exactly the RSA-2048 X9.31 signature over `block_der` for the
/// public key `public_key_der` (DER `SEQ{INTEGER n, INTEGER e}`, as its SKI is computed).
/// Anything else is false: a key that does not parse or is not 2048 bits, a signature of the
/// wrong length or not below the modulus, a recovered block that differs in any byte.
pub fn verify_x931(public_key_der: &[u8], block_der: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = PublicKey::from_pkcs1_der(public_key_der) else {
        return false;
    };
    if key.n().bit_width_vartime() != MODULUS_BITS || signature.len() != SIGNATURE_LEN {
        return false;
    }
    let Ok(s) = BoxedUint::from_be_slice(signature, key.n_bits_precision()) else {
        return false;
    };
    if s >= *key.n().as_ref() {
        return false;
    }
    let Ok(recovered) = hazmat::rsa_encrypt(&key, &s) else {
        return false;
    };
    let Some(recovered) = left_padded(&recovered) else {
        return false;
    };
    recovered.ct_eq(&x931_block(block_der)).into()
}

/// SHA-256 of DER `SEQ{INTEGER n, INTEGER e}`: the identifier a crypto unit knows an RSA
/// administrator by (§4.3).
pub fn ski_of(key: &PublicKey) -> [u8; 32] {
    Sha256::digest(public_key_der(key)).into()
}

/// DER `SEQ{INTEGER n, INTEGER e}` (PKCS#1 `RSAPublicKey`), minimal, as the SDK's
/// `asn1.Marshal(rsa.PublicKey)` writes it.
pub fn public_key_der(key: &PublicKey) -> Vec<u8> {
    der::sequence(&[
        positive_integer(&key.n_bytes()),
        positive_integer(&key.e_bytes()),
    ])
}

/// A DER INTEGER holding the unsigned big-endian `magnitude` (leading zeros dropped, one
/// `00` added when the top bit is set).
fn positive_integer(magnitude: &[u8]) -> Vec<u8> {
    let first = magnitude.iter().position(|b| *b != 0);
    let trimmed = first.map_or(&[0u8][..], |i| &magnitude[i..]);
    if trimmed[0] & 0x80 != 0 {
        der::element(DER_INTEGER, &[&[0u8][..], trimmed].concat())
    } else {
        der::element(DER_INTEGER, trimmed)
    }
}

/// `6B BB…BB BA ‖ SHA-256(block DER) ‖ 34 CC`, 256 bytes (220 × `BB`).
fn x931_block(block_der: &[u8]) -> [u8; SIGNATURE_LEN] {
    let mut block = [X931_PAD; SIGNATURE_LEN];
    block[0] = 0x6B;
    let hash_at = SIGNATURE_LEN - 2 - 32;
    block[hash_at - 1] = 0xBA;
    block[hash_at..hash_at + 32].copy_from_slice(&Sha256::digest(block_der));
    block[SIGNATURE_LEN - 2] = X931_SHA256_ID;
    block[SIGNATURE_LEN - 1] = 0xCC;
    block
}

/// The integer as exactly 256 big-endian bytes, or None if it does not fit.
fn left_padded(value: &BoxedUint) -> Option<[u8; SIGNATURE_LEN]> {
    let bytes = value.to_be_bytes();
    let (high, low) = bytes.split_at(bytes.len().checked_sub(SIGNATURE_LEN)?);
    if high.iter().any(|b| *b != 0) {
        return None;
    }
    low.try_into().ok()
}

struct RsaSigner {
    administrator: String,
    source: String,
    /// The rsa crate wipes its private key on drop.
    key: PrivateKey,
    public_key_der: Vec<u8>,
    ski: [u8; 32],
}

impl RsaSigner {
    fn sign_now(&self, block_der: &[u8]) -> Result<Vec<u8>, SignError> {
        let block = x931_block(block_der);
        let failed = |why: &str| {
            SignError::Refused(format!(
                "administrator {}: {}: {why}; nothing was sent. This is a bug or a broken machine: report it",
                crate::quote::bare(&self.administrator),
                self.source
            ))
        };
        // Below the modulus: it starts with 6B and the modulus has its top bit set.
        let input = BoxedUint::from_be_slice(&block, self.key.n_bits_precision())
            .map_err(|_| failed("the X9.31 block does not fit the modulus"))?;
        // Checks m^e = c after the private operation, so a CRT fault is never returned.
        let mut signature =
            hazmat::rsa_decrypt_and_check(&self.key, Some(&mut OsRandomness), &input)
                .map_err(|_| failed("the RSA private operation failed its consistency check"))?;
        let bytes = left_padded(&signature);
        zeroize::Zeroize::zeroize(&mut signature);
        let bytes = bytes.ok_or_else(|| failed("the signature is longer than the modulus"))?;
        // A second, independent check of the bytes that leave: the padding, the encoding and
        // the arithmetic, as a crypto unit will check them.
        if !verify_x931(&self.public_key_der, block_der, &bytes) {
            return Err(failed(
                "the signature does not verify with the key's public half",
            ));
        }
        Ok(bytes.to_vec())
    }
}

impl Signer for RsaSigner {
    fn administrator(&self) -> &str {
        &self.administrator
    }

    fn source(&self) -> String {
        self.source.clone()
    }

    fn ski(&self) -> [u8; 32] {
        self.ski
    }

    fn kind(&self) -> SignatureKind {
        SignatureKind::Rsa2048
    }

    fn sign<'a>(&'a self, block_der: &'a [u8]) -> SignFuture<'a> {
        // About a millisecond of arithmetic: not worth a thread of its own.
        Box::pin(async move { self.sign_now(block_der) })
    }
}

/// The operating system's randomness, for blinding the private operation (the rsa crate
/// speaks rand_core 0.10; mkplan's `getrandom` fills the bytes).
struct OsRandomness;

/// rand_core wants an error type that is a `std::error::Error`; getrandom's is one only with
/// its `std` feature, and its details would not help an operator anyway.
#[derive(Debug, thiserror::Error)]
#[error("the operating system gave no randomness")]
struct NoRandomness;

impl TryRng for OsRandomness {
    type Error = NoRandomness;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        getrandom::u32().map_err(|_| NoRandomness)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        getrandom::u64().map_err(|_| NoRandomness)
    }

    fn try_fill_bytes(&mut self, destination: &mut [u8]) -> Result<(), Self::Error> {
        getrandom::fill(destination).map_err(|_| NoRandomness)
    }
}

impl TryCryptoRng for OsRandomness {}

#[cfg(test)]
#[path = "sigkey_rsa_tests.rs"]
mod tests;
