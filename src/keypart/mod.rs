//! Key parts: the 32-byte secrets that custodians hold and that combine (by XOR) into the new
//! master key. A key part file keeps one part under a password: Argon2id (memory-hard) turns
//! the password into a key, XChaCha20-Poly1305 seals the part, and the header (format, VP,
//! KDF parameters) is authenticated as associated data so it cannot be altered unnoticed. The
//! part's own VP is stored in the clear so that a plan can name it without any secret.
//!
//! Secrets live in `Zeroizing` buffers and the types that hold them have no `Debug`.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::model::{InputError, VerificationPattern};

pub const KEY_LEN: usize = 32;
pub const FILE_FORMAT: &str = "mkplan-keypart";
pub const FILE_VERSION: u32 = 1;
pub const SALT_LEN: usize = 16;
pub const NONCE_LEN: usize = 24;
/// Argon2id cost: 64 MiB, 3 passes, 1 lane (RFC 9106's second recommended option).
pub const KDF_MEMORY_KIB: u32 = 64 * 1024;
pub const KDF_ITERATIONS: u32 = 3;
pub const KDF_PARALLELISM: u32 = 1;
/// Lower bounds a file must meet, so a tampered header cannot weaken the KDF to nothing.
pub const KDF_MEMORY_KIB_MIN: u32 = 19 * 1024;
pub const KDF_ITERATIONS_MIN: u32 = 2;
pub const PASSWORD_LEN_MIN: usize = 8;

/// 32 secret bytes: a key part or a combined master key. A clone is zeroized on drop too.
#[derive(Clone)]
pub struct Secret32(Zeroizing<[u8; KEY_LEN]>);

impl Secret32 {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// SHA-256 over `01` ‖ key, last 4 bytes zeroed.
    pub fn verification_pattern(&self) -> VerificationPattern {
        let mut hasher = Sha256::new();
        hasher.update([0x01]);
        hasher.update(self.0.as_slice());
        let mut digest: [u8; 32] = hasher.finalize().into();
        digest[28..].fill(0);
        VerificationPattern::from_bytes(&digest)
    }
}

/// A password, taken from the environment or a prompt; never from a flag's value. A clone
/// is zeroized on drop too.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    pub fn from_zeroizing(text: Zeroizing<String>) -> Self {
        Self(text)
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn matches(&self, other: &str) -> bool {
        self.0.as_str() == other
    }

    pub fn is_long_enough(&self) -> bool {
        self.0.chars().count() >= PASSWORD_LEN_MIN
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyPartError {
    #[error("wrong password, or the file was altered: it does not decrypt")]
    DoesNotOpen,
    #[error("the decrypted key part does not match the verification pattern stored in the file")]
    VerificationPatternMismatch,
    #[error("a master key combines 2 or 3 key parts, {0} given")]
    PartCount(usize),
    #[error("key parts {0} and {1} are the same key part; each custodian's part must differ")]
    SamePart(usize, usize),
    #[error("the key parts combine into an all-zero key")]
    ZeroKey,
    #[error("the key derivation failed: {0}")]
    Kdf(String),
}

/// Combines key parts by XOR into the master key.
pub fn combine(parts: &[Secret32]) -> Result<Secret32, KeyPartError> {
    if !(2..=3).contains(&parts.len()) {
        return Err(KeyPartError::PartCount(parts.len()));
    }
    for (i, a) in parts.iter().enumerate() {
        for (j, b) in parts.iter().enumerate().skip(i + 1) {
            if a.expose() == b.expose() {
                return Err(KeyPartError::SamePart(i + 1, j + 1));
            }
        }
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    for part in parts {
        for (k, p) in key.iter_mut().zip(part.expose()) {
            *k ^= p;
        }
    }
    if key.iter().all(|b| *b == 0) {
        return Err(KeyPartError::ZeroKey);
    }
    Ok(Secret32(key))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPartFile {
    pub format: String,
    pub version: u32,
    /// The VP of this key part alone (not of the master key).
    pub verification_pattern: VerificationPattern,
    pub kdf: Kdf,
    pub cipher: Cipher,
    /// Hex of the sealed key part and its 16-byte tag.
    pub ciphertext: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kdf {
    pub algorithm: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub salt: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cipher {
    pub algorithm: String,
    pub nonce: String,
}

/// Randomness a sealed file needs, passed in so sealing stays deterministic under test.
pub struct SealRandom {
    pub salt: [u8; SALT_LEN],
    pub nonce: [u8; NONCE_LEN],
}

pub fn seal(
    part: &Secret32,
    password: &Password,
    random: &SealRandom,
) -> Result<KeyPartFile, KeyPartError> {
    let mut file = KeyPartFile {
        format: FILE_FORMAT.into(),
        version: FILE_VERSION,
        verification_pattern: part.verification_pattern(),
        kdf: Kdf {
            algorithm: "argon2id".into(),
            memory_kib: KDF_MEMORY_KIB,
            iterations: KDF_ITERATIONS,
            parallelism: KDF_PARALLELISM,
            salt: hex::encode(random.salt),
        },
        cipher: Cipher {
            algorithm: "xchacha20poly1305".into(),
            nonce: hex::encode(random.nonce),
        },
        ciphertext: String::new(),
    };
    let cipher = file_cipher(&file, password)?;
    let sealed = cipher
        .encrypt(
            &XNonce::from(random.nonce),
            Payload {
                msg: part.expose(),
                aad: associated_data(&file).as_bytes(),
            },
        )
        .map_err(|_| KeyPartError::DoesNotOpen)?;
    file.ciphertext = hex::encode(sealed);
    Ok(file)
}

pub fn open(file: &KeyPartFile, password: &Password) -> Result<Secret32, KeyPartError> {
    let nonce: [u8; NONCE_LEN] =
        decode_exact(&file.cipher.nonce).ok_or(KeyPartError::DoesNotOpen)?;
    let sealed = hex::decode(&file.ciphertext).map_err(|_| KeyPartError::DoesNotOpen)?;
    let cipher = file_cipher(file, password)?;
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed,
                    aad: associated_data(file).as_bytes(),
                },
            )
            .map_err(|_| KeyPartError::DoesNotOpen)?,
    );
    let bytes: [u8; KEY_LEN] = plain
        .as_slice()
        .try_into()
        .map_err(|_| KeyPartError::DoesNotOpen)?;
    let part = Secret32::from_bytes(bytes);
    if part.verification_pattern() != file.verification_pattern {
        return Err(KeyPartError::VerificationPatternMismatch);
    }
    Ok(part)
}

fn file_cipher(file: &KeyPartFile, password: &Password) -> Result<XChaCha20Poly1305, KeyPartError> {
    let salt: [u8; SALT_LEN] = decode_exact(&file.kdf.salt).ok_or(KeyPartError::DoesNotOpen)?;
    let params = Params::new(
        file.kdf.memory_kib,
        file.kdf.iterations,
        file.kdf.parallelism,
        Some(KEY_LEN),
    )
    .map_err(|e| KeyPartError::Kdf(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.bytes(), &salt, key.as_mut_slice())
        .map_err(|e| KeyPartError::Kdf(e.to_string()))?;
    Ok(XChaCha20Poly1305::new(&(*key).into()))
}

/// Everything in the header that an attacker could change to mislead: bound to the ciphertext.
fn associated_data(file: &KeyPartFile) -> String {
    format!(
        "{}/{}|{}|{}|{}|{}|{}|{}|{}|{}",
        file.format,
        file.version,
        file.verification_pattern,
        file.kdf.algorithm,
        file.kdf.memory_kib,
        file.kdf.iterations,
        file.kdf.parallelism,
        file.kdf.salt,
        file.cipher.algorithm,
        file.cipher.nonce
    )
}

fn decode_exact<const N: usize>(text: &str) -> Option<[u8; N]> {
    hex::decode(text).ok()?.try_into().ok()
}

/// Reads a key part file and checks that it is well formed, without any secret: what `plan`
/// and `validate` can check. `name` is for messages.
pub fn parse_file(name: &str, text: &str) -> Result<KeyPartFile, InputError> {
    let file: KeyPartFile = serde_json::from_str(text).map_err(|e| {
        InputError::new(name, format!("not a key part file: {e}"))
            .at(text, e.line() as u64, e.column() as u64)
            .fix("point the desired file at a file written by `mkplan keypart new`")
    })?;
    let problem = if file.format != FILE_FORMAT || file.version != FILE_VERSION {
        Some(format!(
            "format {:?} version {}, expected {FILE_FORMAT:?} version {FILE_VERSION}",
            file.format, file.version
        ))
    } else if file.kdf.algorithm != "argon2id" || file.cipher.algorithm != "xchacha20poly1305" {
        Some(format!(
            "algorithms {}/{}, expected argon2id/xchacha20poly1305",
            file.kdf.algorithm, file.cipher.algorithm
        ))
    } else if file.kdf.memory_kib < KDF_MEMORY_KIB_MIN
        || file.kdf.iterations < KDF_ITERATIONS_MIN
        || file.kdf.parallelism == 0
    {
        Some(format!(
            "KDF cost {} KiB × {} passes is below the minimum {KDF_MEMORY_KIB_MIN} KiB × {KDF_ITERATIONS_MIN}",
            file.kdf.memory_kib, file.kdf.iterations
        ))
    } else if decode_exact::<SALT_LEN>(&file.kdf.salt).is_none()
        || decode_exact::<NONCE_LEN>(&file.cipher.nonce).is_none()
        || hex::decode(&file.ciphertext).map(|c| c.len()) != Ok(KEY_LEN + 16)
    {
        Some("the salt, nonce or ciphertext has the wrong length".into())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(
            InputError::new(name, format!("damaged key part file: {problem}"))
                .fix("restore the custodian's key part file from its backup"),
        ),
        None => Ok(file),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random() -> SealRandom {
        SealRandom {
            salt: [7; SALT_LEN],
            nonce: [9; NONCE_LEN],
        }
    }

    #[test]
    fn verification_pattern_matches_the_wire_spec_sample() {
        // tke-wire.md: SHA-256(01 ‖ 32×11) with the last 4 bytes zeroed.
        let vp = Secret32::from_bytes([0x11; 32]).verification_pattern();
        assert_eq!(
            vp.as_str(),
            "c2ad0a997751e04066912fa490a9976d6135d221c0df197dfb8c8a7a00000000"
        );
    }

    #[test]
    fn combine_is_xor_and_refuses_bad_sets() {
        let a = Secret32::from_bytes([0x0f; 32]);
        let b = Secret32::from_bytes([0xf0; 32]);
        assert_eq!(combine(&[a, b]).unwrap().expose(), &[0xff; 32]);
        let same = [Secret32::from_bytes([1; 32]), Secret32::from_bytes([1; 32])];
        assert_eq!(combine(&same).err(), Some(KeyPartError::SamePart(1, 2)));
        let zero = [
            Secret32::from_bytes([1; 32]),
            Secret32::from_bytes([2; 32]),
            Secret32::from_bytes([3; 32]),
        ];
        assert_eq!(combine(&zero).err(), Some(KeyPartError::ZeroKey));
        assert_eq!(
            combine(&[Secret32::from_bytes([1; 32])]).err(),
            Some(KeyPartError::PartCount(1))
        );
    }

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let part = Secret32::from_bytes([0x42; 32]);
        let password = Password::new("correct horse".into());
        let file = seal(&part, &password, &random()).unwrap();
        assert!(!file.ciphertext.contains(&hex::encode([0x42; 32])));
        let text = serde_json::to_string(&file).unwrap();
        let parsed = parse_file("p.json", &text).unwrap();
        assert_eq!(open(&parsed, &password).unwrap().expose(), part.expose());
        assert_eq!(
            open(&parsed, &Password::new("wrong horse".into())).err(),
            Some(KeyPartError::DoesNotOpen)
        );
        let mut altered = parsed.clone();
        altered.verification_pattern = Secret32::from_bytes([1; 32]).verification_pattern();
        assert_eq!(
            open(&altered, &password).err(),
            Some(KeyPartError::DoesNotOpen)
        );
        let mut weakened = parsed;
        weakened.kdf.memory_kib = 8;
        assert!(parse_file("p.json", &serde_json::to_string(&weakened).unwrap()).is_err());
    }
}
