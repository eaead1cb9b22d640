//! Master key registers in the general shape: several master key types per domain, each with
//! NEW, CURRENT and (for CCA) OLD. HPCS is the special case of one type (`WK`), no OLD, and a
//! NEW register loaded in one request (no `partial`): `hpcs_view` shows its crypto units in
//! this shape, so that the loss rule (`loss`) is the same for both backends. No I/O.
//!
//! Verification patterns compare on the length the key stores compare (zcrypt.md §8.6):
//! EP11 shows 32 bytes and every tool compares the first 16; CCA AES and APKA are 8 bytes,
//! ASYM 16. The kernel's longer form and a store's shorter form of one key are equal. A
//! backend whose own patterns already are the digits it compares (HPCS's first 56) keeps
//! them whole ([`Mkvp::exact`]).

use std::collections::BTreeMap;
use std::fmt;

/// A master key type, in the kernel's and zkey's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MkType {
    /// EP11's wrapping key.
    Wk,
    /// CCA DES master key: invisible in sysfs (only the CCA library or the TKE show it).
    Sym,
    Asym,
    Aes,
    Apka,
}

impl MkType {
    pub const ALL: [MkType; 5] = [Self::Wk, Self::Sym, Self::Asym, Self::Aes, Self::Apka];

    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(word))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wk => "WK",
            Self::Sym => "SYM",
            Self::Asym => "ASYM",
            Self::Aes => "AES",
            Self::Apka => "APKA",
        }
    }

    pub fn is_ep11(self) -> bool {
        self == Self::Wk
    }

    /// Whether the type has an OLD register (CCA's types do, EP11's WK does not).
    pub fn has_old(self) -> bool {
        !self.is_ep11()
    }

    /// Hex digits the stores compare: EP11 16 bytes, CCA AES/APKA/SYM 8, ASYM 16.
    pub fn compared_hex_len(self) -> usize {
        match self {
            Self::Wk | Self::Asym => 32,
            Self::Aes | Self::Apka | Self::Sym => 16,
        }
    }

    /// Hex digits a desired file or the kernel may write: the compared length, or EP11's
    /// full 32 bytes.
    pub fn accepted_hex_lens(self) -> &'static [usize] {
        match self {
            Self::Wk => &[32, 64],
            Self::Asym => &[32],
            Self::Aes | Self::Apka | Self::Sym => &[16],
        }
    }

    /// Whether sysfs shows this type's registers (SYM never).
    pub fn visible_in_sysfs(self) -> bool {
        self != Self::Sym
    }
}

impl serde::Serialize for MkType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for MkType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        Self::parse(&word).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{} is not a master key type: one of WK, SYM, ASYM, AES, APKA",
                crate::quote::quote(&word)
            ))
        })
    }
}

impl fmt::Display for MkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A master key's verification pattern, lower-case hex, cut to the length the stores compare.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Mkvp(String);

/// As a plan file writes it: lower-case hex of a compared length (16 or 32 digits).
impl<'de> serde::Deserialize<'de> for Mkvp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let hex = text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex && matches!(text.len(), 16 | 32) {
            Ok(Self(text))
        } else {
            Err(serde::de::Error::custom(format!(
                "{} is not a verification pattern: 16 or 32 lower-case hex digits",
                crate::quote::quote(&text)
            )))
        }
    }
}

impl Mkvp {
    /// `hex` of one of the type's accepted lengths, `0x` allowed.
    pub fn parse(mk_type: MkType, hex: &str) -> Result<Self, String> {
        let digits = hex.strip_prefix("0x").unwrap_or(hex);
        if !digits.bytes().all(|b| b.is_ascii_hexdigit())
            || !mk_type.accepted_hex_lens().contains(&digits.len())
        {
            let lens: Vec<String> = mk_type
                .accepted_hex_lens()
                .iter()
                .map(ToString::to_string)
                .collect();
            return Err(format!(
                "a {mk_type} verification pattern is {} hex digits, found {}",
                lens.join(" or "),
                crate::quote::quote(hex)
            ));
        }
        let mut vp = digits.to_ascii_lowercase();
        vp.truncate(mk_type.compared_hex_len());
        Ok(Self(vp))
    }

    /// `hex` whole, lower-cased and never cut: for a backend whose own verification patterns
    /// already are the digits it compares. Two such patterns are equal only when every digit
    /// is.
    pub fn exact(hex: &str) -> Result<Self, String> {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "a verification pattern is hex digits, found {}",
                crate::quote::quote(hex)
            ));
        }
        Ok(Self(hex.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Mkvp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A NEW register. CCA's `full` is `Ready` (it plays Full Committed: CCA has no commit), as is
/// EP11's `committed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewMk {
    Empty,
    /// CCA: some key parts loaded (`partial`), no VP yet.
    Partial,
    /// EP11: loaded, not committed.
    Uncommitted(Mkvp),
    /// EP11 committed, CCA full: ready to be set.
    Ready(Mkvp),
    /// The card did not answer (`- -`), or the type is not visible in sysfs.
    Unknown,
}

impl NewMk {
    pub fn vp(&self) -> Option<&Mkvp> {
        match self {
            Self::Uncommitted(vp) | Self::Ready(vp) => Some(vp),
            _ => None,
        }
    }
}

/// A CURRENT or OLD register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeldMk {
    Valid(Mkvp),
    Invalid,
    Unknown,
}

impl HeldMk {
    pub fn vp(&self) -> Option<&Mkvp> {
        match self {
            Self::Valid(vp) => Some(vp),
            _ => None,
        }
    }
}

/// The registers of one master key type on one APQN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeRegisters {
    pub new: NewMk,
    pub current: HeldMk,
    /// `None` for EP11 (no OLD register).
    pub old: Option<HeldMk>,
}

impl TypeRegisters {
    /// Whether any register holds the key with this VP: a key under it can still be used or
    /// re-enciphered (the loss rule's test).
    pub fn holds(&self, vp: &Mkvp) -> bool {
        self.new.vp() == Some(vp)
            || self.current.vp() == Some(vp)
            || self.old.as_ref().and_then(HeldMk::vp) == Some(vp)
    }

    /// Whether the card did not say what some register holds.
    pub fn is_unknown(&self) -> bool {
        self.new == NewMk::Unknown
            || self.current == HeldMk::Unknown
            || self.old == Some(HeldMk::Unknown)
    }

    /// After a set (EP11 finalize, CCA SET): CURRENT → OLD (CCA), NEW → CURRENT, NEW empty.
    pub fn after_set(&self) -> Self {
        let promoted = self.new.vp().cloned();
        Self {
            new: NewMk::Empty,
            old: self.old.as_ref().map(|_| self.current.clone()),
            current: promoted.map_or(HeldMk::Invalid, HeldMk::Valid),
        }
    }
}

/// Every master key type of one APQN.
pub type ApqnRegisters = BTreeMap<MkType, TypeRegisters>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ep11_patterns_compare_on_sixteen_bytes() {
        let long = Mkvp::parse(MkType::Wk, &"ab".repeat(32)).unwrap();
        let short = Mkvp::parse(MkType::Wk, &format!("0x{}", "AB".repeat(16))).unwrap();
        assert_eq!(long, short);
        assert!(Mkvp::parse(MkType::Wk, &"ab".repeat(8)).is_err());
        assert!(Mkvp::parse(MkType::Aes, &"ab".repeat(16)).is_err());
        assert!(Mkvp::parse(MkType::Asym, &"ab".repeat(16)).is_ok());
    }

    #[test]
    fn an_exact_pattern_is_never_cut() {
        let long = "ab".repeat(28);
        let mut differs_late = long.clone();
        differs_late.replace_range(54..56, "cd");
        let exact = Mkvp::exact(&long.to_ascii_uppercase()).unwrap();
        assert_eq!(exact.as_str(), long);
        assert_ne!(exact, Mkvp::exact(&differs_late).unwrap());
        assert!(Mkvp::exact("").is_err());
        assert!(Mkvp::exact("0xab").is_err());
    }

    #[test]
    fn a_cca_set_moves_current_to_old() {
        let a = Mkvp::parse(MkType::Aes, "1111111111111111").unwrap();
        let b = Mkvp::parse(MkType::Aes, "2222222222222222").unwrap();
        let registers = TypeRegisters {
            new: NewMk::Ready(b.clone()),
            current: HeldMk::Valid(a.clone()),
            old: Some(HeldMk::Invalid),
        };
        let set = registers.after_set();
        assert_eq!(set.current, HeldMk::Valid(b));
        assert_eq!(set.old, Some(HeldMk::Valid(a.clone())));
        assert!(set.holds(&a));
        let ep11 = TypeRegisters {
            old: None,
            ..registers
        };
        assert!(!ep11.after_set().holds(&a));
    }
}
