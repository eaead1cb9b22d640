//! Reading the key stores' tools (zcrypt.md §4): which master key each store's copies are
//! under. Pure parsers of the tools' real output; the runs are in [`super::group`].
//!
//! - `zkey validate` exits 0 even with invalid keys: its text is read key by key (`Key`,
//!   `Key type`, `Enciphered with … (MKVP: …)`, `Re-enciphered … (re-enciphering pending)`).
//! - A pending key's staged copy is `NAME.renc`, whose MKVP sits where zkey reads it (S390
//!   pkey.h): CCA AESDATA a u64 at offset 8, AESCIPHER `kvp` at 10, EP11-AES `wkvp` at 48
//!   behind the 16-byte header (version 0x06), at 32 in a token without it (version 0x03).
//! - `pkcshsm_mk_change list`: in [`super::ock_list`].
//! - `zkey-cryptsetup validate DEVICE`: the active keyslot's `Key type` and `Enciphered
//!   with … (MKVP: …)`, and `Volume key re-enciphering is pending` while a staged keyslot
//!   exists; the staged keyslot's master key is not shown (S390 zkey-cryptsetup.c).

use crate::model::domain_group::KeyCopies;
use crate::model::registers::{MkType, Mkvp};

/// One key as `zkey validate` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZkeyKeyView {
    pub name: String,
    pub key_type: String,
    /// The MKVP the `.skey` is enciphered under, as zkey prints it.
    pub mkvp: String,
    pub pending: bool,
}

fn value<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    let (name, value) = line.split_once(':')?;
    (name.trim() == label).then(|| value.trim())
}

/// The keys of a `zkey validate` run. A block without its MKVP is an error: zkey's format
/// changed, and nothing is guessed.
pub fn parse_validate(stdout: &str) -> Result<Vec<ZkeyKeyView>, String> {
    let mut keys: Vec<ZkeyKeyView> = Vec::new();
    for line in stdout.lines() {
        if let Some(name) = value(line, "Key") {
            keys.push(ZkeyKeyView {
                name: name.to_string(),
                key_type: String::new(),
                mkvp: String::new(),
                pending: false,
            });
            continue;
        }
        let Some(key) = keys.last_mut() else { continue };
        if let Some(kind) = value(line, "Key type") {
            key.key_type = kind.to_string();
        } else if let Some(under) = value(line, "Enciphered with") {
            let mkvp = under
                .split_once("MKVP:")
                .map(|(_, rest)| rest.trim().trim_end_matches(')').trim())
                .ok_or_else(|| {
                    format!("zkey validate: {} shows no MKVP", crate::quote::quote(line))
                })?;
            key.mkvp = mkvp.to_string();
        } else if let Some(when) = value(line, "Re-enciphered") {
            key.pending = when.contains("(re-enciphering pending)");
        }
    }
    if let Some(key) = keys
        .iter()
        .find(|k| k.mkvp.is_empty() || k.key_type.is_empty())
    {
        return Err(format!(
            "zkey validate showed key {} without its key type or MKVP",
            crate::quote::quote(&key.name)
        ));
    }
    Ok(keys)
}

/// A LUKS2 volume's secure key as `zkey-cryptsetup validate` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Luks2View {
    pub key_type: String,
    /// The MKVP the active keyslot's key is enciphered under, as printed.
    pub mkvp: String,
    /// A staged re-encipherment is pending (an unbound keyslot holds a re-enciphered copy,
    /// under a key the tool does not show).
    pub pending: bool,
}

/// The encryption key of a `zkey-cryptsetup validate` run (its integrity key, if any, is
/// not read: mkplan refuses a volume that has one). Read whatever the exit code (1 when
/// the key is not valid); a block without its key type or MKVP is an error.
pub fn parse_luks2_validate(stdout: &str) -> Result<Luks2View, String> {
    if !stdout.starts_with("Validation of secure volume key of device") {
        return Err("zkey-cryptsetup validate printed no validation of the volume key".into());
    }
    if stdout.contains("Integrity key:") {
        return Err(
            "the volume has a secure integrity key too, which mkplan does not read yet".into(),
        );
    }
    let mut view = Luks2View {
        key_type: String::new(),
        mkvp: String::new(),
        pending: false,
    };
    for line in stdout.lines() {
        if line.trim() == "Volume key re-enciphering is pending" {
            view.pending = true;
        } else if let Some(kind) = value(line, "Key type") {
            view.key_type = kind.to_string();
        } else if let Some(under) = value(line, "Enciphered with") {
            view.mkvp = under
                .split_once("MKVP:")
                .map(|(_, rest)| rest.trim().trim_end_matches(')').trim().to_string())
                .unwrap_or_default();
        }
    }
    if view.key_type.is_empty() || view.mkvp.is_empty() {
        return Err("zkey-cryptsetup validate showed no key type or no MKVP".into());
    }
    Ok(view)
}

/// The master key type a zkey key type is enciphered under.
pub fn mk_type_of(key_type: &str) -> Option<MkType> {
    match key_type {
        "EP11-AES" => Some(MkType::Wk),
        "CCA-AESDATA" | "CCA-AESCIPHER" => Some(MkType::Aes),
        _ => None,
    }
}

/// The MKVP in a secure key token file (the first token of an XTS pair), lower-case hex;
/// `None` for bytes that are not a token of `key_type` zkey would read one from.
pub fn token_mkvp(key_type: &str, bytes: &[u8]) -> Option<String> {
    let (offset, len) = match key_type {
        "CCA-AESDATA" => (8, 8),
        "CCA-AESCIPHER" => (10, 8),
        "EP11-AES" => (ep11_wkvp_offset(bytes)?, 16),
        _ => return None,
    };
    bytes.get(offset..offset + len).map(hex::encode)
}

/// Where an EP11-AES token keeps its wkvp, told apart as zkey does (S390 pkey.c
/// `is_ep11_aes_key`, `is_ep11_aes_key_with_header`): a non-CCA token (type 0x00, header
/// version 0) of version 0x03 is `struct ep11keytoken` alone, its header laid over the session
/// field (320 bytes, every key zkey made before s390-tools 2.30.0, and since then its
/// PKEY_TYPE_EP11 fallback): wkvp at 32; of version 0x06, the 16-byte `ep11kblob_header`
/// comes first (336 bytes): wkvp at 48. Either way the header's length may not exceed the
/// file and the blob's version, 32 bytes past the wkvp, is 0x1234.
fn ep11_wkvp_offset(bytes: &[u8]) -> Option<usize> {
    let (size, wkvp) = match bytes.get(4)? {
        0x03 => (320, 32),
        0x06 => (336, 48),
        _ => return None,
    };
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    let token = bytes.len() >= size
        && bytes[0] == 0x00
        && bytes[1] == 0x00
        && u16_at(2)? <= bytes.len()
        && u16_at(wkvp + 32)? == 0x1234;
    token.then_some(wkvp)
}

/// An application key's check: `active: VP` and, while a staged copy exists, `staged: VP`.
pub fn parse_application_check(mk_type: MkType, stdout: &str) -> Result<KeyCopies, String> {
    let lines = |label: &str| -> Vec<&str> {
        stdout
            .lines()
            .filter(|line| value(line, label).is_some())
            .collect()
    };
    // Two lines for one copy contradict each other, or repeat it: either way the check does
    // not say which one is true, and the last line is not evidence of the other.
    for label in ["active", "staged"] {
        let found = lines(label);
        if found.len() > 1 {
            return Err(format!(
                "the check printed {} `{label}:` lines ({}): which one is true is not shown",
                found.len(),
                found
                    .iter()
                    .map(|l| crate::quote::quote(l.trim()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let one = |label: &str| {
        lines(label)
            .first()
            .and_then(|line| value(line, label))
            .map(|vp| Mkvp::parse(mk_type, vp))
            .transpose()
    };
    let staged = one("staged")?;
    let active = one("active")?.ok_or("the check printed no `active: VP` line")?;
    Ok(KeyCopies { active, staged })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALIDATE: &str = "Key                  : disk-root
Status               : Valid
Key type             : EP11-AES
Enciphered with      : CURRENT master key (MKVP: a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1)
Re-enciphered        : (never) (re-enciphering pending)
Associated APQNs     : 03.0006, 04.0006

Key                  : db-data
Status               : Invalid
Key type             : CCA-AESDATA
Enciphered with      : (unknown, MKVP: c1c1c1c1c1c1c1c1)
Re-enciphered        : 2026-11-30 10:00:00
Associated APQNs     : 05.0006
WARNING: Not all APQNs have the same master key or fulfill the requirements

1 keys are valid, 1 keys are invalid, 1 warnings
";

    #[test]
    fn luks2_validate_gives_the_active_keyslots_mkvp_and_whether_staging_is_pending() {
        let shown = "Validation of secure volume key of device '/dev/dasdb1':
  Encryption key:
    Status:                Valid
    Secure key size:       672 bytes
    XTS type key:          Yes
    Key type:              EP11-AES
    Clear key size:        512 bits
    Enciphered with:       CURRENT master key (MKVP: a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1)
    Verification pattern:  0123456789abcdef
                           0123456789abcdef
  Volume key re-enciphering is pending
";
        let view = parse_luks2_validate(shown).unwrap();
        assert_eq!(view.mkvp, "a1".repeat(16));
        assert!(view.pending && view.key_type == "EP11-AES");
        let done = shown.replace("  Volume key re-enciphering is pending\n", "");
        assert!(!parse_luks2_validate(&done).unwrap().pending);
        assert!(parse_luks2_validate("").is_err());
        let integrity = format!("{shown}  Integrity key:\n");
        assert!(parse_luks2_validate(&integrity).is_err());
    }

    #[test]
    fn validate_is_read_key_by_key_whatever_the_exit_code() {
        let keys = parse_validate(VALIDATE).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys[0].pending && !keys[1].pending);
        assert_eq!(keys[1].mkvp, "c1c1c1c1c1c1c1c1");
        assert_eq!(mk_type_of(&keys[0].key_type), Some(MkType::Wk));
        assert!(parse_validate("Key : x\nKey type : EP11-AES\n").is_err());
    }

    #[test]
    fn validate_is_read_in_the_record_layout_zkey_prints() {
        // keystore.c `_keystore_print_record` with validation, libutil `rec_print_long`.
        let more = " ".repeat(31);
        let shown = format!(
            "{:<28} : {:<54}\n{}
        Status               : Valid
        Description          : 
        Key type             : EP11-AES
        Enciphered with      : CURRENT master key (MKVP: a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1)
        Volumes              : /dev/dasdb1:enc-root
        APQNs                : 03.0006
{more}04.0006
        Re-enciphered        : (never) (re-enciphering pending)

WARNING: APQN 04.0006: No master key is set

1 keys are valid, 0 keys are invalid, 1 warnings
",
            "Key",
            "disk-root",
            "-".repeat(85)
        );
        let keys = parse_validate(&shown).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].name, "disk-root");
        assert_eq!(keys[0].key_type, "EP11-AES");
        assert_eq!(keys[0].mkvp, "a1".repeat(16));
        assert!(keys[0].pending);
    }

    #[test]
    fn token_mkvps_sit_where_zkey_reads_them() {
        // An EP11-AES token with the 16-byte header: version 0x06, wkvp at 48, blob version
        // 0x1234 at 80.
        let mut with_header = vec![0u8; 336];
        with_header[2..4].copy_from_slice(&336u16.to_be_bytes());
        with_header[4] = 0x06;
        with_header[48..64].copy_from_slice(&[0xab; 16]);
        with_header[80..82].copy_from_slice(&0x1234u16.to_be_bytes());
        assert_eq!(
            token_mkvp("EP11-AES", &with_header).unwrap(),
            "ab".repeat(16)
        );
        // Without it (zkey before s390-tools 2.30.0): version 0x03, wkvp at 32, the blob
        // version at 64; the bytes at 48 are the key's attributes.
        let mut without = vec![0u8; 320];
        without[2..4].copy_from_slice(&320u16.to_be_bytes());
        without[4] = 0x03;
        without[32..48].copy_from_slice(&[0xcd; 16]);
        without[48..64].copy_from_slice(&[0x20; 16]);
        without[64..66].copy_from_slice(&0x1234u16.to_be_bytes());
        assert_eq!(token_mkvp("EP11-AES", &without).unwrap(), "cd".repeat(16));
        // An XTS pair is read from its first token.
        let pair = [without.clone(), without.clone()].concat();
        assert_eq!(token_mkvp("EP11-AES", &pair).unwrap(), "cd".repeat(16));
        // Anything zkey would not read as an EP11-AES token gives nothing.
        let mut other = without.clone();
        other[4] = 0x07;
        assert_eq!(token_mkvp("EP11-AES", &other), None);
        let mut no_blob = without.clone();
        no_blob[64] = 0;
        assert_eq!(token_mkvp("EP11-AES", &no_blob), None);
        assert_eq!(token_mkvp("EP11-AES", &without[..300]), None);
        let mut too_long = with_header.clone();
        too_long[2..4].copy_from_slice(&400u16.to_be_bytes());
        assert_eq!(token_mkvp("EP11-AES", &too_long), None);
        assert_eq!(token_mkvp("CCA-AESDATA", &with_header[..4]), None);
    }

    #[test]
    fn application_checks_are_read() {
        let copies = parse_application_check(
            MkType::Aes,
            "active: 1111111111111111\nstaged: 2222222222222222\n",
        )
        .unwrap();
        assert_eq!(copies.staged.unwrap().as_str(), "2222222222222222");
        assert!(parse_application_check(MkType::Aes, "ok\n").is_err());
        let twice = "active: 1111111111111111\nactive: 2222222222222222\n";
        let why = parse_application_check(MkType::Aes, twice).unwrap_err();
        assert!(why.contains("2 `active:` lines"), "{why}");
    }
}
