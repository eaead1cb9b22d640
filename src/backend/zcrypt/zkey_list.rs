//! `zkey list`, read as s390-tools prints it: each key is a record of libutil's "long"
//! layout (`util_rec_new_long("-", ":", "Key", 28, 54)`, zkey/keystore.c
//! `_keystore_setup_record`; libutil/util_rec.c `rec_print_long`):
//!
//! ```text
//! Key                          : NAME (padded to 54 columns)
//! -------------------------------------------------------------------------------------
//!         Key type             : EP11-AES
//!         Volumes              : /dev/dasdb1:enc-root
//!                                /dev/dasdc1:enc-data
//!         APQNs                : 03.0006
//!                                04.0006
//! (a blank line)
//! ```
//!
//! Every field is indented by eight spaces, its label padded to 20 columns; a field with
//! several values (the volumes and APQNs, which zkey splits at `,`, the verification pattern,
//! an XTS key's KMS labels) has its further values on lines of their own, indented past the
//! colon. zkey has printed this layout since its keystore was written (2018); any other line
//! is refused, never guessed at.

use super::stores;
use crate::model::domain_group::{Apqn, GroupMode};
use crate::model::domain_group_inventory::FoundZkeyKey;

/// One key's record: its name and each field's values, in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub fields: Vec<(String, Vec<String>)>,
}

impl Record {
    /// The values of field `label`, if the record has it.
    pub fn field(&self, label: &str) -> Option<&[String]> {
        self.fields
            .iter()
            .find(|(name, _)| name == label)
            .map(|(_, values)| values.as_slice())
    }
}

/// The indent of a field line (util_rec: `key_size` 28, of which 8 indent the field).
const FIELD_INDENT: &str = "        ";

/// The records of a `zkey list` run. A line of no other shape, a record cut short after its
/// `Key` line, or a field shown twice is the reason nothing is read.
pub fn records(stdout: &str) -> Result<Vec<Record>, String> {
    let mut records: Vec<Record> = Vec::new();
    let mut open = false;
    let mut expect_rule = false;
    let refuse = |at: usize, line: &str, expected: &str| {
        format!(
            "zkey list, line {}: {} is not {expected} of the layout zkey prints its keys in (a `Key : NAME` line, a line of dashes, fields indented by eight spaces, a field's further values on lines of their own, a blank line after each key), so no key is read; run `zkey list` by hand to see what it prints",
            at + 1,
            crate::quote::quote(line)
        )
    };
    for (at, line) in stdout.lines().enumerate() {
        if expect_rule {
            if line.is_empty() || !line.bytes().all(|b| b == b'-') {
                return Err(refuse(at, line, "the line of dashes under a `Key` line"));
            }
            expect_rule = false;
            continue;
        }
        if line.trim().is_empty() {
            open = false;
            continue;
        }
        if !open {
            let name = line
                .split_once(" : ")
                .filter(|(label, _)| label.trim_end() == "Key")
                .map(|(_, name)| name.trim_end())
                .filter(|name| !name.is_empty());
            let Some(name) = name else {
                return Err(refuse(at, line, "a `Key : NAME` line"));
            };
            records.push(Record {
                name: name.to_string(),
                fields: Vec::new(),
            });
            open = true;
            expect_rule = true;
            continue;
        }
        let record = records.last_mut().expect("an open record");
        let Some(rest) = line.strip_prefix(FIELD_INDENT) else {
            return Err(refuse(at, line, "a field line"));
        };
        if rest.starts_with(' ') {
            let Some((_, values)) = record.fields.last_mut() else {
                return Err(refuse(at, line, "a field line"));
            };
            values.push(rest.trim().to_string());
            continue;
        }
        let Some((label, value)) = rest.split_once(" : ").or_else(|| {
            // A field whose value is empty: `LABEL :` and the space zkey prints after it.
            rest.trim_end().strip_suffix(" :").map(|label| (label, ""))
        }) else {
            return Err(refuse(at, line, "a field line"));
        };
        let label = label.trim_end();
        if record.field(label).is_some() {
            return Err(format!(
                "zkey list, line {}: key {} shows its field {} twice, so which one is true is not known and no key is read; run `zkey list --name {}` by hand to see what it prints",
                at + 1,
                crate::quote::quote(&record.name),
                crate::quote::quote(label),
                crate::quote::quote(&record.name)
            ));
        }
        record
            .fields
            .push((label.to_string(), vec![value.trim().to_string()]));
    }
    if expect_rule {
        return Err("zkey list ended right after a `Key` line, so its last key is not read; run `zkey list` by hand to see what it prints".into());
    }
    Ok(records)
}

/// The keys of `zkey list`, from each record's `Key type`, `Volumes`, `APQNs` and `Volume
/// type`, which zkey prints for every key: a record without one of them is refused.
pub fn parse_list(stdout: &str) -> Result<Vec<FoundZkeyKey>, String> {
    records(stdout)?.into_iter().map(found).collect()
}

fn found(record: Record) -> Result<FoundZkeyKey, String> {
    let field = |label: &str| {
        record.field(label).ok_or_else(|| {
            format!(
                "zkey list showed key {} without its {} field, which zkey prints for every key, so the key is not read; run `zkey list --name {}` by hand to see what it prints",
                crate::quote::quote(&record.name),
                crate::quote::quote(label),
                crate::quote::quote(&record.name)
            )
        })
    };
    let listed = |values: &[String]| -> Vec<String> {
        values
            .iter()
            .filter(|v| v.as_str() != "(none)")
            .cloned()
            .collect()
    };
    let key_type = field("Key type")?.join(" ");
    let volumes = listed(field("Volumes")?);
    let apqns = listed(field("APQNs")?)
        .iter()
        .map(|a| a.parse::<Apqn>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| {
            format!(
                "zkey list, key {}: {why}",
                crate::quote::quote(&record.name)
            )
        })?;
    let volume_type = field("Volume type")?.join(" ").to_ascii_lowercase();
    let mode = match stores::mk_type_of(&key_type) {
        Some(t) if t.is_ep11() => Some(GroupMode::Ep11),
        Some(_) => Some(GroupMode::Cca),
        None => None,
    };
    Ok(FoundZkeyKey {
        name: record.name,
        mode,
        key_type,
        apqns,
        luks2_volumes: if volume_type == "luks2" {
            volumes
        } else {
            Vec::new()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two keys as s390-tools prints them (libutil `rec_print_long`, IBM's "Listing keys in
    /// a secure key repository" example): names padded to 54 columns, 85 dashes, fields
    /// indented by eight spaces, further values 31 spaces in.
    fn real_list() -> String {
        let rule = "-".repeat(85);
        let more = " ".repeat(31);
        format!(
            "{:<28} : {:<54}\n{rule}
        Description          : 
        Secure key size      : 672 bytes
        Clear key size       : 512 bits
        XTS type key         : Yes
        Key type             : EP11-AES
        Volumes              : /dev/dasdb1:enc-root
{more}/dev/dasdc1:enc-data
        APQNs                : 03.0006
{more}04.0006
        Key file name        : /etc/zkey/repository/disk-root.skey
        Sector size          : (system default)
        Volume type          : luks2
        Verification pattern : 0123456789abcdef0123456789abcdef
{more}fedcba9876543210fedcba9876543210
        KMS                  : (local)
        KMS key label        : (local)
        Dummy passphrase     : (none)
        Created              : 2026-01-01 00:00:00
        Changed              : (never)
        Re-enciphered        : (never) 

{:<28} : {:<54}\n{rule}
        Description          : old data key
        Key type             : CCA-AESDATA
        Volumes              : (none)
        APQNs                : (none)
        Volume type          : plain
        Re-enciphered        : 2026-11-30 10:00:00 (re-enciphering pending)

",
            "Key", "disk-root", "Key", "loose"
        )
    }

    #[test]
    fn the_real_layout_gives_every_apqn_and_volume_of_each_key() {
        let keys = parse_list(&real_list()).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].name, "disk-root");
        assert_eq!(keys[0].key_type, "EP11-AES");
        assert_eq!(keys[0].mode, Some(GroupMode::Ep11));
        let apqns: Vec<String> = keys[0].apqns.iter().map(|a| a.to_string()).collect();
        assert_eq!(apqns, ["03.0006", "04.0006"]);
        assert_eq!(
            keys[0].luks2_volumes,
            ["/dev/dasdb1:enc-root", "/dev/dasdc1:enc-data"]
        );
        assert_eq!(keys[1].name, "loose");
        assert!(keys[1].apqns.is_empty() && keys[1].luks2_volumes.is_empty());
        assert_eq!(keys[1].mode, Some(GroupMode::Cca));
        let records = records(&real_list()).unwrap();
        assert_eq!(
            records[0].field("Verification pattern").unwrap().len(),
            2,
            "{records:?}"
        );
        assert_eq!(records[0].field("Description").unwrap(), [""]);
        assert!(parse_list("").unwrap().is_empty());
    }

    #[test]
    fn a_plain_volume_is_no_luks2_volume() {
        let list = real_list().replacen("luks2", "plain", 1);
        assert!(parse_list(&list).unwrap()[0].luks2_volumes.is_empty());
    }

    #[test]
    fn other_layouts_and_missing_fields_are_refused_not_guessed() {
        // Fields not indented (a layout zkey never printed).
        let flat = "Key                  : x\nKey type             : EP11-AES\nVolumes              : (none)\nAPQNs                : 03.0006\nVolume type          : luks2\n";
        let why = parse_list(flat).unwrap_err();
        assert!(why.contains("line 2"), "{why}");
        // A record without its APQNs field.
        let without = real_list().replace("        APQNs                : (none)\n", "");
        let why = parse_list(&without).unwrap_err();
        assert!(
            why.contains("\"loose\" without its \"APQNs\" field"),
            "{why}"
        );
        // The line of dashes missing, a field twice, a stray line, a garbled APQN.
        let rule = "-".repeat(85);
        assert!(parse_list(&real_list().replacen(&format!("{rule}\n"), "", 1)).is_err());
        let twice = real_list().replace(
            "        Volume type          : plain\n",
            "        Volume type          : plain\n        APQNs                : 05.0006\n",
        );
        assert!(parse_list(&twice).unwrap_err().contains("twice"));
        assert!(parse_list(&format!("{}WARNING: something\n", real_list())).is_err());
        let garbled = real_list().replace("04.0006", "04:0006");
        assert!(parse_list(&garbled).unwrap_err().contains("\"disk-root\""));
        assert!(parse_list(&format!("{:<28} : x\n", "Key")).is_err());
    }

    /// Found by the `zcrypt_tools` fuzz target: the advice to run `zkey list --name NAME`
    /// echoed the key's name raw, control characters and all, whatever its length.
    #[test]
    fn a_keys_name_in_the_advice_is_quoted_cut_and_inert() {
        let name = format!("x\u{0}\u{1b}[2J{}", "y".repeat(5000));
        let without = format!(
            "{:<28} : {name}\n{}\n        Key type             : EP11-AES\n",
            "Key",
            "-".repeat(85)
        );
        let why = parse_list(&without).unwrap_err();
        assert!(why.contains("--name \"x"), "{why}");
        assert!(!why.contains('\u{0}') && !why.contains('\u{1b}'), "{why:?}");
        assert!(why.len() < 2000, "{} bytes", why.len());
        let twice = format!("{without}        Key type             : EP11-AES\n");
        let why = parse_list(&twice).unwrap_err();
        assert!(why.contains("twice"), "{why}");
        assert!(!why.contains('\u{0}') && why.len() < 2000, "{why:?}");
    }
}
