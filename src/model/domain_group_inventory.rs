//! Every store observable on a machine that could depend on a domain group's APQNs, whether
//! the group file declares it or not (zcrypt.md §5: a change is done only when every store
//! using the group's APQNs has moved). The planner compares it with the declared stores and
//! refuses a change that would leave one behind. No I/O: the backend fills it.

use std::collections::BTreeMap;

use super::domain_group::{Apqn, GroupMode};
use super::registers::{ApqnRegisters, MkType, Mkvp};

/// The key types of Secure Execution secrets in zkey (`PVSECRET-AES`, `PVSECRET-HMAC`).
pub const PVSECRET_PREFIX: &str = "PVSECRET-";

/// A zkey key as `zkey list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundZkeyKey {
    pub name: String,
    /// The mode of its key type (EP11-AES: EP11; CCA-*: CCA); `None` for a type mkplan does
    /// not know.
    pub mode: Option<GroupMode>,
    pub key_type: String,
    /// Its associated APQNs. Empty: zkey uses every online APQN of its type (zcrypt.md §4.1).
    pub apqns: Vec<Apqn>,
    /// Its LUKS2 volumes (`device:dm-name`), whose headers hold their own copy of the key.
    pub luks2_volumes: Vec<String>,
}

impl FoundZkeyKey {
    /// Whether a change of a group of `mode` on `group` touches this key. A Secure Execution
    /// secret (`PVSECRET-AES`, `PVSECRET-HMAC`: zkey imports it with no APQNs, s390-tools
    /// zkey/pvsecrets.c) is the Ultravisor's, under no Crypto Express master key (round 12z,
    /// F4: it was counted on every group, which refused with advice that could not help).
    pub fn depends_on(&self, group: &[Apqn], mode: GroupMode) -> bool {
        // zkey compares key types without case (keystore.c `strcasecmp`).
        if self
            .key_type
            .get(..PVSECRET_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PVSECRET_PREFIX))
        {
            return false;
        }
        if self.apqns.is_empty() {
            self.mode.is_none_or(|m| m == mode)
        } else {
            self.apqns.iter().any(|a| group.contains(a))
        }
    }
}

/// An open `pkcshsm_mk_change` operation: the tokens of its affected slots have copies of
/// their objects under its new keys, of the types it names, and no other token has any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundOperation {
    pub id: String,
    pub apqns: Vec<Apqn>,
    /// Its `New … MKVP` lines: the types it re-enciphers, each to its key.
    pub new: BTreeMap<MkType, Mkvp>,
    /// Its `Affected slots:`; `None` when the listing shows none.
    pub slots: Option<Vec<u64>>,
    /// Every key object of its slots has its copy (the re-encipherment is over).
    pub reenciphered: bool,
    /// Its `State:` line, when it is one `pkcshsm_mk_change` can neither finalize nor cancel
    /// (`perform_finalize_cancel` takes only "re-enciphered" and "errored"): a run stopped
    /// while re-enciphering, finalizing or canceling, or one still running.
    pub stuck: Option<String>,
}

impl FoundOperation {
    pub fn uses_any(&self, group: &[Apqn]) -> bool {
        self.apqns.iter().any(|a| group.contains(a))
    }
}

/// An openCryptoki token's config (`ep11tok*.conf`, `ccatok*.conf`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundToken {
    /// The config file, as a path the operator can open.
    pub config: String,
    pub mode: GroupMode,
    /// Its slot, when `opencryptoki.conf` names it (a config found by its file name has none).
    pub slot: Option<u64>,
    /// The APQNs its allow list names, read as openCryptoki reads them; `None`: every APQN
    /// of its mode (an EP11 config with `APQN_ANY` or no list, and every CCA token: its
    /// APQNs come from the CCA library, which mkplan cannot see).
    pub apqns: Option<Vec<Apqn>>,
    /// Its `EXPECTED_WKVP` / `EXPECTED_MKVPS` pins as written (hex, `0x` and quotes
    /// removed), by type: the keys the token accepts, so those its objects are under when
    /// no operation is open. A type with no pin is absent (CCA has none for ASYM).
    pub pins: BTreeMap<MkType, String>,
}

impl FoundToken {
    pub fn depends_on(&self, group: &[Apqn], mode: GroupMode) -> bool {
        self.mode == mode
            && self
                .apqns
                .as_ref()
                .is_none_or(|apqns| apqns.iter().any(|a| group.contains(a)))
    }
}

/// What the backend found, and what it could not read (each a reason: then nothing is known
/// about that kind of store, and the planner refuses).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Inventory {
    pub zkey_keys: Vec<FoundZkeyKey>,
    pub operations: Vec<FoundOperation>,
    pub tokens: Vec<FoundToken>,
    /// The machine's other APQNs whose `mkvps` could be read: zkey-cryptsetup re-enciphers a
    /// LUKS2 volume with the first APQN of the whole machine whose CURRENT holds its key and
    /// whose NEW is ready, not only with the key's associated APQNs (S390 zkey-cryptsetup.c).
    pub other_apqns: Vec<(Apqn, ApqnRegisters)>,
    /// Every APQN of the machine on a card openCryptoki would use, with the card's mode: the
    /// card online, configured, not check-stopped, a CCA or EP11 coprocessor; the queue's own
    /// state does not count (openCryptoki's EP11 `scan_for_ep11_cards` and
    /// `scan_for_card_domains` look at the card only). Read when a token config was found.
    pub machine_apqns: Vec<(Apqn, GroupMode)>,
    pub unreadable: Vec<String>,
    /// What the operator should know about what was read (a CCA config's allow list, which
    /// openCryptoki does not have), one line each.
    pub notes: Vec<String>,
    /// The KMS plug-in the zkey repository is bound to, if any (`kms.conf`).
    pub kms_plugin: Option<FoundKmsPlugin>,
}

/// A zkey repository bound to a KMS plug-in (s390-tools `zkey/kms.c`: its `kms.conf` names
/// the plug-in and the APQNs it was configured with). The plug-in keeps secure keys of its
/// own under those APQNs' master key (a KMIP plug-in's identity key), which only `zkey kms
/// reencipher` moves: no `zkey list` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundKmsPlugin {
    /// The `kms.conf` file, as a path the operator can open.
    pub config: String,
    pub plugin: String,
    /// Its `apqns`, as zkey reads them.
    pub apqns: Vec<Apqn>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(key_type: &str, mode: Option<GroupMode>) -> FoundZkeyKey {
        FoundZkeyKey {
            name: "k".into(),
            mode,
            key_type: key_type.into(),
            apqns: Vec::new(),
            luks2_volumes: Vec::new(),
        }
    }

    /// Round 12z, F4: a Secure Execution secret is under no Crypto Express master key.
    #[test]
    fn a_secure_execution_secret_depends_on_no_group_and_a_key_of_unknown_type_on_every_one() {
        let group = ["03.0006".parse::<Apqn>().unwrap()];
        for kind in ["PVSECRET-AES", "PVSECRET-HMAC", "pvsecret-aes"] {
            assert!(
                !key(kind, None).depends_on(&group, GroupMode::Ep11),
                "{kind}"
            );
            assert!(
                !key(kind, None).depends_on(&group, GroupMode::Cca),
                "{kind}"
            );
        }
        // A type mkplan does not know, with no APQNs: zkey uses any APQN, so every group.
        assert!(key("CCA-AESNEW", None).depends_on(&group, GroupMode::Ep11));
        assert!(key("EP11-AES", Some(GroupMode::Ep11)).depends_on(&group, GroupMode::Ep11));
        assert!(!key("EP11-AES", Some(GroupMode::Ep11)).depends_on(&group, GroupMode::Cca));
    }
}
