//! A domain group: the APQNs that must hold the same master keys (one of each type), and the
//! key stores enciphered under them. This is the general shape of what HPCS calls a service
//! instance: there, the group is the instance's crypto units, one type (`WK`), no OLD
//! register, and one store (the service's key storage), whose state the service reports at
//! best as one bit; [`super::hpcs_view`] shows an instance in this shape. Here each store is
//! observable on its own (zkey's `.renc`, `zkey validate`, `pkcshsm_mk_change list`), and the
//! rewrap is one step per store. No I/O.
//!
//! The loss rule over these shapes is [`super::loss`], re-exported here for the zcrypt planner.

use std::collections::BTreeMap;
use std::fmt;

pub use super::loss::{Loss, losses, losses_where};
use super::registers::{ApqnRegisters, MkType, Mkvp};

/// One domain of one card, written `card.domain` in hex (`03.0006`), as zkey and lszcrypt do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Apqn {
    pub card: u8,
    pub domain: u16,
}

impl fmt::Display for Apqn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}.{:04x}", self.card, self.domain)
    }
}

impl<'de> serde::Deserialize<'de> for Apqn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Apqn {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let fail = || {
            format!(
                "{} is not an APQN: write card.domain in hex, as in 03.0006",
                crate::quote::quote(text)
            )
        };
        let (card, domain) = text.split_once('.').ok_or_else(fail)?;
        let hex = |digits: &str, len: usize| {
            (digits.len() <= len
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(digits, 16).ok())
            .flatten()
        };
        let card = hex(card, 2)
            .and_then(|c| u8::try_from(c).ok())
            .ok_or_else(fail)?;
        let domain = hex(domain, 4)
            .and_then(|d| u16::try_from(d).ok())
            .ok_or_else(fail)?;
        Ok(Self { card, domain })
    }
}

/// What the group's cards run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupMode {
    Ep11,
    Cca,
}

impl fmt::Display for GroupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ep11 => "EP11",
            Self::Cca => "CCA",
        })
    }
}

/// One APQN as read from the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveApqn {
    pub apqn: Apqn,
    /// Card and queue online, configured, not check-stopped (zkey's rule).
    pub usable: bool,
    /// `None`: no such card or queue, or an accelerator.
    pub mode: Option<GroupMode>,
    /// The card's serial number; another one behind the same APQN is another card.
    pub card_serial: Option<String>,
    /// `None` when the kernel shows no `mkvps` (offline, or too old a kernel).
    pub registers: Option<ApqnRegisters>,
}

/// The kinds of store that hold keys under a group's master keys.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// A secure key in zkey's repository (`NAME.skey`, staged `NAME.renc`).
    ZkeyKey,
    /// The copy of a volume key in a LUKS2 header (`zkey-cryptsetup reencipher`).
    Luks2Volume,
    /// An openCryptoki token's key objects (`pkcshsm_mk_change`).
    OpenCryptoki,
    /// A key an application keeps itself, checked and re-enciphered by commands the operator
    /// declares.
    Application,
    /// An HPCS service instance's key storage, rewrapped by the service (`hpcs_view`): never
    /// in a domain group's desired file or plan.
    #[serde(skip)]
    KeyStorage,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZkeyKey => "zkey key",
            Self::Luks2Volume => "LUKS2 volume",
            Self::OpenCryptoki => "openCryptoki tokens",
            Self::Application => "application key",
            Self::KeyStorage => "key storage",
        }
    }
}

/// A store, named as its tool names it.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct StoreId {
    pub kind: StoreKind,
    pub name: String,
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.kind.as_str(),
            crate::quote::quote(&self.name)
        )
    }
}

/// Which master key a store's copies are enciphered under, for one type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCopies {
    /// The copy in use (`.skey`, the active keyslot, the token's objects).
    pub active: Mkvp,
    /// A staged copy (`.renc`, an unbound keyslot, an open `pkcshsm_mk_change` operation).
    pub staged: Option<Mkvp>,
}

/// What a store's tool says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreState {
    Known(BTreeMap<MkType, KeyCopies>),
    /// The tool could not tell: `why`, and what would settle it.
    Unknown {
        why: String,
        settle: String,
    },
}

/// One store as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveStore {
    pub id: StoreId,
    pub state: StoreState,
    /// What a later step must name: an open `pkcshsm_mk_change` operation's id.
    pub handle: Option<String>,
}

/// Everything read about one domain group.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LiveGroup {
    pub apqns: Vec<LiveApqn>,
    pub stores: Vec<LiveStore>,
    /// Every store found on the machine that could depend on the group, declared or not.
    pub inventory: super::domain_group_inventory::Inventory,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apqns_print_as_zkey_writes_them() {
        let apqn: Apqn = "3.6".parse().unwrap();
        assert_eq!(apqn.to_string(), "03.0006");
        assert!("03".parse::<Apqn>().is_err());
        assert!("100.0001".parse::<Apqn>().is_err());
    }
}
