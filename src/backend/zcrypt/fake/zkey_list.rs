//! The fake `zkey list` (and the records of `zkey validate`): each key as a record of libutil's "long" layout, byte for byte as
//! s390-tools prints it (zkey/keystore.c `_keystore_setup_record` and
//! `_keystore_print_record`, libutil/util_rec.c `rec_print_long`): the `Key` line, its name
//! padded to 54 columns, 85 dashes, every field indented by eight spaces with its label
//! padded to 20, a field's further values (volumes and APQNs, split at `,`; the two halves of
//! the verification pattern) on lines of their own 31 spaces in, then a blank line.

use std::path::Path;

use super::Output;
use super::render::ZKEY_DIR;
use super::world::{World, ZkeyKey};

/// One record: `fields` in order, each with its values (the first beside the label).
pub fn record(name: &str, fields: &[(&str, Vec<String>)]) -> String {
    let mut text = format!("{:<28} : {:<54}\n{}\n", "Key", name, "-".repeat(85));
    for (label, values) in fields {
        let mut values = values.iter();
        let first = values.next().map_or("", String::as_str);
        text.push_str(&format!("        {label:<20} : {first}\n"));
        for value in values {
            text.push_str(&format!("        {:<20}   {value}\n", ""));
        }
    }
    text.push('\n');
    text
}

fn one(value: impl Into<String>) -> Vec<String> {
    vec![value.into()]
}

/// What `zkey validate` adds to a key's record: its status and the master key it is
/// enciphered under.
pub struct Validation {
    pub valid: bool,
    pub enciphered_with: String,
}

/// The fields zkey lists (or, with `validation`, validates) for `key`, in its order.
pub fn fields(
    key: &ZkeyKey,
    dir: &Path,
    validation: Option<&Validation>,
) -> Vec<(&'static str, Vec<String>)> {
    let token = super::render::token(key.key_type, &key.skey, "", key.ep11_header).len();
    let tokens = if key.xts { 2 } else { 1 };
    let (first, second) = key
        .verification_pattern
        .split_at(key.verification_pattern.len().min(32));
    let mut fields = vec![
        ("Description", one(&key.description)),
        ("Secure key size", one(format!("{} bytes", token * tokens))),
        (
            "Clear key size",
            one(if validation.is_none_or(|v| v.valid) {
                format!("{} bits", 256 * tokens)
            } else {
                "(unknown)".to_string()
            }),
        ),
        ("XTS type key", one(if key.xts { "Yes" } else { "No" })),
        ("Key type", one(key.key_type.name())),
        (
            "Volumes",
            key.volume.as_ref().map_or_else(
                || one("(none)"),
                |v| one(format!("{}:{}", v.device, v.dm_name)),
            ),
        ),
        (
            "APQNs",
            if key.apqns.is_empty() {
                one("(none)")
            } else {
                key.apqns.clone()
            },
        ),
        (
            "Key file name",
            one(dir
                .join(ZKEY_DIR)
                .join(format!("{}.skey", key.name))
                .display()
                .to_string()),
        ),
        ("Sector size", one("(system default)")),
        (
            "Volume type",
            one(match &key.volume {
                Some(v) if !v.luks2 => "plain",
                _ => "luks2",
            }),
        ),
        ("Verification pattern", vec![first.into(), second.into()]),
        ("KMS", one("(local)")),
        ("KMS key label", one("(local)")),
        ("Dummy passphrase", one("(none)")),
        ("Created", one(&key.creation_time)),
        ("Changed", one("(never)")),
        (
            "Re-enciphered",
            one(format!(
                "{} {}",
                key.reencipher_time.as_deref().unwrap_or("(never)"),
                if key.renc.is_some() {
                    "(re-enciphering pending)"
                } else {
                    ""
                }
            )),
        ),
    ];
    if let Some(validation) = validation {
        let status = if validation.valid { "Valid" } else { "Invalid" };
        fields.insert(0, ("Status", one(status)));
        let after_type = fields.iter().position(|(l, _)| *l == "Key type").unwrap() + 1;
        fields.insert(
            after_type,
            ("Enciphered with", one(&validation.enciphered_with)),
        );
    }
    fields
}

pub fn list(world: &World, names: &[String], dir: &Path) -> Output {
    let mut output = Output::default();
    for name in names {
        let key = world.selected_key(name);
        output
            .stdout
            .push_str(&record(&key.name, &fields(key, dir, None)));
    }
    output
}
