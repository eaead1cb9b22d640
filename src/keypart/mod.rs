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
use std::fmt;
use zeroize::Zeroizing;

use crate::model::{InputError, VerificationPattern};
use crate::quote::quote;

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
/// Upper bounds, checked before the KDF runs, so a tampered (or hostile) header cannot make
/// opening a key part take hours or all the machine's memory: 16 times the cost this mkplan
/// writes, in memory, in passes, and in their product (the work), and 16 lanes.
pub const KDF_COST_FACTOR_MAX: u64 = 16;
pub const KDF_MEMORY_KIB_MAX: u32 = KDF_MEMORY_KIB * KDF_COST_FACTOR_MAX as u32;
pub const KDF_ITERATIONS_MAX: u32 = KDF_ITERATIONS * KDF_COST_FACTOR_MAX as u32;
pub const KDF_WORK_KIB_MAX: u64 =
    KDF_MEMORY_KIB as u64 * KDF_ITERATIONS as u64 * KDF_COST_FACTOR_MAX;
pub const KDF_PARALLELISM_MAX: u32 = KDF_PARALLELISM * KDF_COST_FACTOR_MAX as u32;
/// Longest key part file: what `keypart new` writes is about 600 bytes.
pub const FILE_BYTES_MAX: u64 = 64 * 1024;
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

    /// The password's UTF-8 bytes, for a key that other tools seal with it (a TKE signature
    /// key file).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes()
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
    #[error("{0}")]
    KdfCost(KdfCostError),
}

/// A KDF parameter over its limit: the file asks for more work than any key part mkplan
/// writes, so it was altered, or written by something else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdfCostError {
    pub parameter: &'static str,
    pub value: u64,
    pub limit: u64,
}

impl fmt::Display for KdfCostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "its KDF's {} is {}, over the limit of {} ({KDF_COST_FACTOR_MAX} times what `mkplan keypart new` writes), so the key derivation was not run",
            self.parameter, self.value, self.limit
        )
    }
}

/// How to fix a [`KdfCostError`].
pub const KDF_COST_FIX: &str = "check that the key part file was not tampered with (compare it with the custodian's backup); if it was written this way on purpose, re-create the key part with `mkplan keypart new` (the master key changes with it: update verification_pattern in the desired file)";

/// Refuses KDF parameters that would cost more than [`KDF_COST_FACTOR_MAX`] times the default.
pub fn check_kdf_cost(kdf: &Kdf) -> Result<(), KdfCostError> {
    let memory = u64::from(kdf.memory_kib);
    let iterations = u64::from(kdf.iterations);
    let limits = [
        ("memory_kib", memory, u64::from(KDF_MEMORY_KIB_MAX)),
        ("iterations", iterations, u64::from(KDF_ITERATIONS_MAX)),
        (
            "memory_kib × iterations",
            memory * iterations,
            KDF_WORK_KIB_MAX,
        ),
        (
            "parallelism",
            u64::from(kdf.parallelism),
            u64::from(KDF_PARALLELISM_MAX),
        ),
    ];
    match limits.into_iter().find(|(_, value, limit)| value > limit) {
        Some((parameter, value, limit)) => Err(KdfCostError {
            parameter,
            value,
            limit,
        }),
        None => Ok(()),
    }
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
    // `parse_file` checks it too; a file built another way is checked here, before the work.
    check_kdf_cost(&file.kdf).map_err(KeyPartError::KdfCost)?;
    let salt: [u8; SALT_LEN] = decode_exact(&file.kdf.salt).ok_or(KeyPartError::DoesNotOpen)?;
    let params = Params::new(
        file.kdf.memory_kib,
        file.kdf.iterations,
        file.kdf.parallelism,
        Some(KEY_LEN),
    )
    .map_err(|e| KeyPartError::Kdf(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    let mut memory = kdf_memory(params.block_count());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into_with_memory(password.bytes(), &salt, key.as_mut_slice(), &mut memory)
        .map_err(|e| KeyPartError::Kdf(e.to_string()))?;
    Ok(XChaCha20Poly1305::new(&(*key).into()))
}

/// The KDF's memory (64 MiB for a part `keypart new` writes), in 2 MiB pages where the kernel
/// gives them (`madvise`; transparent huge pages in `madvise` mode, the common default): in
/// 4 KiB pages the first touch of each page is a fault of its own (16,384 per part, a fifth of
/// a decryption's time), and the KDF's reads, spread over the whole area, miss the TLB. The
/// cost the file asks for is unchanged: same memory, same passes.
fn kdf_memory(blocks: usize) -> Vec<argon2::Block> {
    let mut memory: Vec<argon2::Block> = Vec::with_capacity(blocks);
    #[cfg(target_os = "linux")]
    {
        const HUGE_PAGE: usize = 2 * 1024 * 1024;
        let start = memory.as_mut_ptr() as usize;
        let end = start + blocks * argon2::Block::SIZE;
        let (first, last) = (
            start.next_multiple_of(HUGE_PAGE),
            end / HUGE_PAGE * HUGE_PAGE,
        );
        if first < last {
            // SAFETY: [first, last) lies inside the allocation just made, nothing refers into
            // it yet, and MADV_HUGEPAGE changes only how its pages are backed, not its
            // contents. A refusal (no THP in this kernel) leaves 4 KiB pages: ignored.
            let _ = unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_HUGEPAGE,
                )
            };
        }
    }
    memory.resize(blocks, argon2::Block::default());
    memory
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

/// The text of the key part file at `path`: a regular file, at most `FILE_BYTES_MAX` bytes.
pub fn read_text(path: &std::path::Path) -> std::io::Result<String> {
    crate::bounded_read::read_to_string(path, FILE_BYTES_MAX)
}

/// Reads a key part file and checks that it is well formed, without any secret: what `plan`
/// and `validate` can check. `name` is for messages. A file that is not a key part file at
/// all (a desired file may name any path) is refused without a word of its content.
pub fn parse_file(name: &str, text: &str) -> Result<KeyPartFile, InputError> {
    let file: KeyPartFile = serde_json::from_str(text).map_err(|e| not_parsed(name, text, &e))?;
    let problem = if file.format != FILE_FORMAT || file.version != FILE_VERSION {
        Some(format!(
            "format {} version {}, expected {FILE_FORMAT:?} version {FILE_VERSION}",
            quote(&file.format),
            file.version
        ))
    } else if file.kdf.algorithm != "argon2id" || file.cipher.algorithm != "xchacha20poly1305" {
        Some(format!(
            "algorithms {}/{}, expected argon2id/xchacha20poly1305",
            quote(&file.kdf.algorithm),
            quote(&file.cipher.algorithm)
        ))
    } else if file.kdf.memory_kib < KDF_MEMORY_KIB_MIN
        || file.kdf.iterations < KDF_ITERATIONS_MIN
        || file.kdf.parallelism == 0
    {
        Some(format!(
            "KDF cost {} KiB × {} passes is below the minimum {KDF_MEMORY_KIB_MIN} KiB × {KDF_ITERATIONS_MIN}",
            file.kdf.memory_kib, file.kdf.iterations
        ))
    } else if let Err(cost) = check_kdf_cost(&file.kdf) {
        return Err(InputError::new(name, cost.to_string()).fix(KDF_COST_FIX));
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

/// What each key of a key part file holds, for an error about a value of the wrong type.
const KEY_PART_KEY_WORDS: crate::model::KeyWords = &[
    ("format", "\"mkplan-keypart\""),
    ("version", "the format version, a whole number"),
    (
        "verification_pattern",
        "the key part's verification pattern: 64 hex digits",
    ),
    (
        "kdf",
        "an object with algorithm, memory_kib, iterations, parallelism and salt",
    ),
    ("cipher", "an object with algorithm and nonce"),
    ("algorithm", "the algorithm's name"),
    ("memory_kib", "a whole number of KiB"),
    ("iterations", "a whole number of passes"),
    ("parallelism", "a whole number of lanes"),
    ("salt", "hex digits"),
    ("nonce", "hex digits"),
    ("ciphertext", "hex digits"),
];

/// The error for a file that does not parse as a key part file: the parser's words (cut and
/// inert) when the file says it is one (`"format": "mkplan-keypart"`), else only where it
/// departs from JSON.
fn not_parsed(name: &str, text: &str, error: &serde_json::Error) -> InputError {
    let position = (error.line() as u64, error.column() as u64);
    let says_key_part = serde_json::from_str::<serde_json::Value>(text)
        .is_ok_and(|value| value["format"].as_str() == Some(FILE_FORMAT));
    if says_key_part {
        return InputError::from_json(
            name,
            "damaged key part file",
            text,
            error,
            KEY_PART_KEY_WORDS,
        )
        .fix("restore the custodian's key part file from its backup");
    }
    let position = (position.0 > 0).then_some(position);
    InputError::not_a(
        name,
        "a key part file",
        "a key part file is the JSON `mkplan keypart new` writes, with \"format\": \"mkplan-keypart\"",
        position,
    )
    .fix("point the desired file at a file written by `mkplan keypart new`")
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

    #[test]
    fn a_costly_kdf_is_refused_before_it_runs() {
        let part = Secret32::from_bytes([0x42; 32]);
        let password = Password::new("correct horse".into());
        let file = seal(&part, &password, &random()).unwrap();
        for (parameter, change) in [
            (
                "memory_kib",
                (4 * 1024 * 1024, KDF_ITERATIONS, KDF_PARALLELISM),
            ),
            (
                "iterations",
                (KDF_MEMORY_KIB, 1_000_000_000, KDF_PARALLELISM),
            ),
            (
                "memory_kib × iterations",
                (KDF_MEMORY_KIB_MAX, KDF_ITERATIONS_MAX, 1),
            ),
            ("parallelism", (KDF_MEMORY_KIB, KDF_ITERATIONS, 1000)),
        ] {
            let mut costly = file.clone();
            (
                costly.kdf.memory_kib,
                costly.kdf.iterations,
                costly.kdf.parallelism,
            ) = change;
            let started = std::time::Instant::now();
            let Err(KeyPartError::KdfCost(cost)) = open(&costly, &password) else {
                panic!("{parameter}: opened");
            };
            assert!(started.elapsed().as_secs() < 5, "{parameter}: the KDF ran");
            assert_eq!(cost.parameter, parameter);
            let text = serde_json::to_string(&costly).unwrap();
            let error = parse_file("p.json", &text).unwrap_err().to_string();
            assert!(
                error.contains(parameter) && error.contains("limit"),
                "{error}"
            );
            assert!(error.contains("mkplan keypart new"), "{error}");
        }
        // Exactly at the limits is allowed.
        let mut dear = file.kdf.clone();
        (dear.memory_kib, dear.iterations, dear.parallelism) =
            (KDF_MEMORY_KIB_MAX, KDF_ITERATIONS, KDF_PARALLELISM_MAX);
        assert_eq!(check_kdf_cost(&dear), Ok(()));
    }

    #[test]
    fn a_file_that_is_not_a_key_part_file_is_not_echoed() {
        for text in [
            "{\"type\": \"service_account\", \"private_key\": \"hunter2-canary\"}",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nhunter2-canary\n",
            "{\"hunter2-canary\": 1}",
        ] {
            let error = parse_file("p.json", text).unwrap_err();
            let shown = error.to_string();
            assert!(shown.contains("is not a key part file"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        // A file that says it is one gets the parser's complaint, in the file's words.
        let error = parse_file(
            "p.json",
            "{\"format\": \"mkplan-keypart\", \"version\": \"x\"}",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("damaged key part file: version must be the format version"),
            "{error}"
        );
    }
}
