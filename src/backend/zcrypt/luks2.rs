//! The staged copy of a LUKS2 volume's secure key, read from its header with `cryptsetup`.
//!
//! `zkey-cryptsetup reencipher --staged` puts the re-enciphered secure key in a new, unbound
//! key slot and records it in a `paes-reencipher` token of the header (s390-tools
//! zkey-cryptsetup.c `put_reencipher_token`: `"unbound-keyslot": N`). `zkey-cryptsetup
//! validate` says only that a re-enciphering is pending, not under which master key, and
//! anyone may stage again between two reads (`--batch-mode` cancels the pending one). So
//! mkplan reads the staged key itself, as `reencipher --complete` does:
//!
//! 1. `cryptsetup luksDump DEVICE --dump-json-metadata`: the token's `unbound-keyslot`;
//! 2. `cryptsetup luksDump DEVICE --unbound --key-slot N --key-file F --batch-mode`: the
//!    unbound key, a secure key token (two back to back for XTS), printed in hex after
//!    `Unbound Key:` (cryptsetup.c `luksDump_with_unbound_key`); its MKVP sits where zkey
//!    reads it (`stores::token_mkvp`).
//!
//! The passphrase stays in its file: only the path is an argument. The token is enciphered
//! under a master key; mkplan keeps only its MKVP.

use std::path::Path;

/// The `cryptsetup` arguments that print the header's metadata as JSON.
pub fn metadata_args(device: &str) -> Vec<String> {
    vec![
        "luksDump".into(),
        device.into(),
        "--dump-json-metadata".into(),
    ]
}

/// The `cryptsetup` arguments that print the key of unbound key slot `slot`. `--batch-mode`
/// answers the tool's question ("The header dump with unbound key is sensitive
/// information"): stdin is no terminal here.
pub fn unbound_key_args(device: &str, slot: u32, key_file: &Path) -> Vec<String> {
    vec![
        "luksDump".into(),
        device.into(),
        "--unbound".into(),
        "--key-slot".into(),
        slot.to_string(),
        "--key-file".into(),
        key_file.display().to_string(),
        "--batch-mode".into(),
    ]
}

/// The unbound key slot that zkey-cryptsetup's `paes-reencipher` token names, from the
/// header's JSON metadata.
pub fn unbound_keyslot(json: &str) -> Result<u32, String> {
    let metadata: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| format!("cryptsetup printed no JSON metadata ({e})"))?;
    let tokens = metadata
        .get("tokens")
        .and_then(serde_json::Value::as_object)
        .ok_or("the header's JSON metadata has no `tokens`")?;
    let slots: Vec<&serde_json::Value> = tokens
        .values()
        .filter(|t| t.get("type").and_then(serde_json::Value::as_str) == Some("paes-reencipher"))
        .map(|t| t.get("unbound-keyslot").unwrap_or(&serde_json::Value::Null))
        .collect();
    match slots.as_slice() {
        [] => Err("the header has no `paes-reencipher` token: the pending re-enciphering was not staged by zkey-cryptsetup".into()),
        [slot] => slot
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("the `paes-reencipher` token's unbound-keyslot is {slot}, not a key slot number")),
        _ => Err(format!(
            "the header has {} `paes-reencipher` tokens: which key slot is staged is not shown",
            slots.len()
        )),
    }
}

/// The bytes of the unbound key that `cryptsetup luksDump --unbound` printed: hex bytes after
/// `Unbound Key:`, 16 to a line, continued on lines that begin with a tab. `Key bits:` must
/// match their count.
pub fn unbound_key(stdout: &str) -> Result<Vec<u8>, String> {
    let mut lines = stdout.lines();
    let bits: Option<usize> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Key bits:"))
        .and_then(|v| v.trim().parse().ok());
    let first = lines
        .find_map(|l| l.strip_prefix("Unbound Key:"))
        .ok_or("cryptsetup printed no `Unbound Key:`")?;
    let mut hex = first.to_string();
    for line in lines.by_ref() {
        if !line.starts_with('\t') {
            break;
        }
        hex.push(' ');
        hex.push_str(line);
    }
    // A word that is not a byte is named by its place, never shown: it is part of a key.
    let bytes = hex
        .split_whitespace()
        .enumerate()
        .map(|(at, b)| {
            (b.len() == 2)
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
                .ok_or_else(|| {
                    format!(
                        "word {} of the unbound key cryptsetup printed is not a hex byte (its value is not shown: it is part of a key)",
                        at + 1
                    )
                })
        })
        .collect::<Result<Vec<u8>, String>>()?;
    match bits {
        Some(bits) if bits == bytes.len() * 8 => Ok(bytes),
        Some(bits) => Err(format!(
            "cryptsetup said `Key bits: {bits}` but printed {} bytes",
            bytes.len()
        )),
        None => Err("cryptsetup printed no `Key bits:`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_names_the_unbound_keyslot() {
        let json = r#"{"keyslots":{"0":{"type":"luks2"},"1":{"type":"luks2"}},
            "tokens":{"0":{"type":"paes-verification-pattern","keyslots":[]},
                      "1":{"type":"paes-reencipher","keyslots":["1"],"verification-pattern":"ab",
                           "original-keyslot":0,"unbound-keyslot":1}}}"#;
        assert_eq!(unbound_keyslot(json), Ok(1));
        let none = r#"{"tokens":{}}"#;
        assert!(
            unbound_keyslot(none)
                .unwrap_err()
                .contains("no `paes-reencipher`")
        );
        let two = r#"{"tokens":{"0":{"type":"paes-reencipher","unbound-keyslot":1},
                                 "1":{"type":"paes-reencipher","unbound-keyslot":2}}}"#;
        assert!(
            unbound_keyslot(two)
                .unwrap_err()
                .contains("2 `paes-reencipher`")
        );
        assert!(unbound_keyslot("LUKS header information").is_err());
    }

    #[test]
    fn the_unbound_key_is_read_as_cryptsetup_prints_it() {
        let out = "LUKS header information for /dev/dasdb1\nUUID:    \tx\nKeyslot: \t1\nKey bits:\t256\nUnbound Key:\t00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f \n\t\t10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f \n";
        let key = unbound_key(out).unwrap();
        assert_eq!(key, (0u8..32).collect::<Vec<u8>>());
        let short = out.replace("Key bits:\t256", "Key bits:\t512");
        assert!(unbound_key(&short).unwrap_err().contains("512"));
        assert!(unbound_key("Key bits:\t8\n").is_err());
        assert!(unbound_key("Key bits:\t8\nUnbound Key:\tzz\n").is_err());
    }

    #[test]
    fn a_word_of_the_unbound_key_that_is_not_a_byte_is_named_by_its_place_never_shown() {
        // Two bytes run together are still two bytes of the key.
        let out = "Key bits:\t24\nUnbound Key:\t00 c0ffee\n";
        let why = unbound_key(out).unwrap_err();
        assert!(why.contains("word 2"), "{why}");
        assert!(!why.contains("c0ffee") && !why.contains("c0"), "{why}");
    }
}
