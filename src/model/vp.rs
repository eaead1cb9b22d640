//! Verification patterns: how operators (and the HSM) name a key without revealing it.
//!
//! A VP is 32 bytes written as 64 hex characters. Newer cards zero the last 4 bytes, so two
//! VPs are the same key when their first 56 hex characters agree, case-insensitively. That
//! rule lives here, in `PartialEq` and `Hash`, so no other module can compare VPs wrongly.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Hex characters in a written VP.
pub const VERIFICATION_PATTERN_HEX_LEN: usize = 64;
/// Hex characters that identify the key (the rest may be zeroed by the card).
pub const VERIFICATION_PATTERN_SIGNIFICANT_HEX_LEN: usize = 56;

#[derive(Clone)]
pub struct VerificationPattern {
    /// Always 64 lower-case hex characters.
    hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerificationPatternError {
    #[error(
        "a verification pattern is 64 hex characters (32 bytes), found {0} characters; copy the whole VP as `mkplan keypart vp` or `ibmcloud tke cryptounit-mk` prints it"
    )]
    Length(usize),
    #[error("a verification pattern is hex (0-9, a-f), found {0:?} at character {1}")]
    NotHex(char, usize),
}

impl VerificationPattern {
    pub fn parse(text: &str) -> Result<Self, VerificationPatternError> {
        let len = text.chars().count();
        if len != VERIFICATION_PATTERN_HEX_LEN {
            return Err(VerificationPatternError::Length(len));
        }
        if let Some((index, c)) = text
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_hexdigit())
        {
            return Err(VerificationPatternError::NotHex(c, index + 1));
        }
        Ok(Self {
            hex: text.to_ascii_lowercase(),
        })
    }

    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self {
            hex: hex::encode(bytes),
        }
    }

    /// The 32 bytes the 64 hex characters spell.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(self.as_str(), &mut bytes).expect("a VP holds 64 hex characters");
        bytes
    }

    pub fn as_str(&self) -> &str {
        &self.hex
    }

    /// The hex characters that identify the key: the ones equality compares.
    pub fn significant(&self) -> &str {
        &self.hex[..VERIFICATION_PATTERN_SIGNIFICANT_HEX_LEN]
    }

    /// The first 12 hex characters, enough for a reader to tell keys apart in a table.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl PartialEq for VerificationPattern {
    fn eq(&self, other: &Self) -> bool {
        self.significant() == other.significant()
    }
}
impl Eq for VerificationPattern {}

impl Hash for VerificationPattern {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.significant().hash(state);
    }
}

impl PartialOrd for VerificationPattern {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for VerificationPattern {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.significant().cmp(other.significant())
    }
}

impl fmt::Display for VerificationPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex)
    }
}

impl fmt::Debug for VerificationPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VP({})", self.short())
    }
}

impl Serialize for VerificationPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.hex)
    }
}

impl<'de> Deserialize<'de> for VerificationPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "c2ad0a997751e04066912fa490a9976d6135d221c0df197dfb8c8a7a00000000";

    #[test]
    fn equal_on_first_56_hex_case_insensitive() {
        let a = VerificationPattern::parse(A).unwrap();
        let tail = format!("{}DEADBEEF", &A[..56].to_ascii_uppercase());
        let b = VerificationPattern::parse(&tail).unwrap();
        assert_eq!(a, b);
        let mut changed = A.to_string();
        changed.replace_range(55..56, "b");
        assert_ne!(a, VerificationPattern::parse(&changed).unwrap());
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        assert_eq!(
            VerificationPattern::parse("abc"),
            Err(VerificationPatternError::Length(3))
        );
        let mut bad = A.to_string();
        bad.replace_range(3..4, "g");
        assert_eq!(
            VerificationPattern::parse(&bad),
            Err(VerificationPatternError::NotHex('g', 4))
        );
    }
}
