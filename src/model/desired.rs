//! The desired key state (`plans/*.yaml`): which MK every crypto unit of each service
//! instance must hold, and where that key comes from. Parsing and validation are pure: the
//! caller passes the file's name and text. Every error names file, line and column.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::quick_yaml::{self, At};
use super::unit::{ADMINISTRATOR_NAME_LEN_MAX, ADMINISTRATORS_MAX, THRESHOLD_MAX, is_uuid};
use super::{InputError, KeyWords, VerificationPattern};
use crate::quote::quote;

/// The keys a desired file may start with (it is written `version:` first).
const DESIRED_FIRST_KEYS: &[&str] = &["version", "backend", "instances", "signature_keys"];

/// What each key of a desired file holds, for an error about a value of the wrong type.
const DESIRED_KEY_WORDS: KeyWords = &[
    ("version", "the format version, `1`"),
    (
        "backend",
        "one value: sim:FLEET.yaml, http://HOST:PORT or tke:REGION",
    ),
    (
        "instances",
        "a list of service instances, each starting `- id: GUID`",
    ),
    ("id", "a service instance GUID (8-4-4-4-12 hex)"),
    ("crypto_units", "`all`"),
    ("signature_threshold", "a whole number from 1 to 8"),
    ("revocation_threshold", "a whole number from 1 to 8"),
    (
        "administrators",
        "a list of administrator names, e.g. [alice, bob]",
    ),
    (
        "master_key",
        "a mapping with verification_pattern: and key_parts:",
    ),
    (
        "verification_pattern",
        "the new master key's verification pattern: 64 hex digits in quotes",
    ),
    (
        "key_parts",
        "a list of 2 or 3 key parts, each `- file: PATH` or `- smart_card: {holder: NAME, reader: PATTERN}`",
    ),
    (
        "file",
        "the path of a key part file, relative to the desired file's folder",
    ),
    (
        "password_env",
        "the name of an environment variable (letters, digits, _)",
    ),
    ("smart_card", "a mapping `{holder: NAME, reader: PATTERN}`"),
    (
        "signature_keys",
        "a mapping of administrator names to `{ file: PATH, password_env: VARIABLE }` or `{ signing_service: KEY, token_env: VARIABLE }`",
    ),
    ("holder", "the name of the custodian who holds the card"),
    (
        "reader",
        "part of the card reader's name, e.g. \"Key part reader\"",
    ),
];

/// The only format version this mkplan reads.
pub const DESIRED_VERSION: u32 = 1;
/// Service instances one desired file may name.
pub const INSTANCES_MAX: usize = 10_000;
/// Key parts a new MK combines from.
pub const KEY_PARTS_MIN: usize = 2;
pub const KEY_PARTS_MAX: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredState {
    pub backend: Option<String>,
    /// Line and column of `backend:`'s value, for an error found when the backend is opened.
    pub backend_at: Option<(u64, u64)>,
    pub instances: Vec<DesiredInstance>,
    /// Whether the file has a `signature_keys:` section (`signature_keys::parse` reads it; a
    /// file without one is not parsed a second time).
    pub signature_keys_written: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredInstance {
    pub id: String,
    pub signature_threshold: u8,
    pub revocation_threshold: u8,
    pub administrators: Vec<String>,
    pub master_key: DesiredMasterKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredMasterKey {
    pub verification_pattern: VerificationPattern,
    pub key_parts: Vec<KeyPartSource>,
}

/// Where one key part comes from: a password-protected file mkplan can read, or an EP11 smart
/// card that only the TKE application reads (its load is a ceremony step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPartSource {
    File {
        /// Resolved against the desired file's folder.
        file: PathBuf,
        /// As written in the desired file, for messages.
        written: String,
        password_env: Option<String>,
        /// Line and column of `file:` in the desired file.
        position: (u64, u64),
    },
    SmartCard {
        /// Who holds the card and enters its PIN.
        holder: String,
        /// A pattern of the PC/SC name of the reader the card goes in (a substring, case
        /// ignored), e.g. "Key part reader".
        reader: String,
        position: (u64, u64),
    },
}

impl KeyPartSource {
    pub fn is_smart_card(&self) -> bool {
        matches!(self, Self::SmartCard { .. })
    }
}

/// Longest reader pattern.
pub const READER_PATTERN_LEN_MAX: usize = 100;

// The raw YAML form, with locations for the checks serde cannot make on its own.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDesired {
    version: At<u32>,
    #[serde(default)]
    backend: Option<At<String>>,
    instances: At<Vec<RawInstance>>,
    /// Read by `signature_keys::parse`.
    #[serde(default)]
    #[allow(dead_code)]
    signature_keys: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    id: At<String>,
    crypto_units: At<String>,
    signature_threshold: At<u8>,
    revocation_threshold: At<u8>,
    administrators: At<Vec<At<String>>>,
    master_key: RawMasterKey,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMasterKey {
    verification_pattern: VerificationPattern,
    #[serde(default)]
    key_parts: Option<At<Vec<At<RawKeyPart>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyPart {
    #[serde(default)]
    file: Option<At<String>>,
    #[serde(default)]
    password_env: Option<At<String>>,
    #[serde(default)]
    smart_card: Option<At<RawSmartCard>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmartCard {
    holder: At<String>,
    reader: At<String>,
}

fn at<T>(located: &At<T>) -> (u64, u64) {
    located.at
}

/// Reads a desired state. `file` names the file in messages; `folder` is where relative key
/// part paths start (the desired file's folder).
///
/// A plain file (what `quick_yaml` reads) is read and checked without the full parser; on
/// anything else, and on any error, the full parser reads it again, so that every error is
/// reported at its line and column as the full parser places it.
pub fn parse_desired(file: &str, text: &str, folder: &Path) -> Result<DesiredState, InputError> {
    if let Some(raw) = quick_yaml::read::<RawDesired>(text)
        && let Ok(state) = check(raw, file, text, folder)
    {
        return Ok(state);
    }
    check(parse_fully(file, text)?, file, text, folder)
}

/// The raw desired state in `text`, read by the full parser, whose errors carry line and
/// column.
fn parse_fully(file: &str, text: &str) -> Result<RawDesired, InputError> {
    crate::model::from_yaml_str(text).map_err(|e| {
        // A plan file names its desired file, so this may be any file: echo nothing of one
        // that does not start like a desired file (see `Fleet::parse`).
        let top = crate::model::yaml_top(text);
        if top.is_first_key(DESIRED_FIRST_KEYS) {
            InputError::from_yaml(
                file,
                text,
                &e,
                DESIRED_KEY_WORDS,
                "correct the desired file at that place; its format is in docs/desired.md",
            )
        } else {
            InputError::not_a(
                file,
                "a desired key-state file",
                "a desired file is YAML whose first key is `version:`, as in plans/*.yaml",
                Some(top.position()),
            )
            .fix("give the path of a desired key-state YAML file, e.g. plans/three-units.yaml")
        }
    })
}

/// The checks serde cannot make on its own, with the place of each error.
fn check(
    raw: RawDesired,
    file: &str,
    text: &str,
    folder: &Path,
) -> Result<DesiredState, InputError> {
    let error = |at: (u64, u64), message: String, fix: &str| {
        InputError::new(file, message).at(text, at.0, at.1).fix(fix)
    };
    if raw.version.value != DESIRED_VERSION {
        return Err(error(
            at(&raw.version),
            format!("unsupported version {}", raw.version.value),
            "this mkplan reads `version: 1`",
        ));
    }
    if raw.instances.value.is_empty() || raw.instances.value.len() > INSTANCES_MAX {
        return Err(error(
            at(&raw.instances),
            format!(
                "a desired file names 1 to {INSTANCES_MAX} service instances, found {}",
                raw.instances.value.len()
            ),
            "list the service instances to manage under `instances:`",
        ));
    }
    let mut seen = BTreeSet::new();
    let mut instances = Vec::with_capacity(raw.instances.value.len());
    for raw_instance in raw.instances.value {
        if !seen.insert(raw_instance.id.value.to_ascii_lowercase()) {
            return Err(error(
                at(&raw_instance.id),
                format!(
                    "service instance {} is listed twice",
                    quote(&raw_instance.id.value)
                ),
                "list each service instance once",
            ));
        }
        instances.push(validate_instance(raw_instance, &error, folder)?);
    }
    Ok(DesiredState {
        backend_at: raw.backend.as_ref().map(at),
        backend: raw.backend.map(|spec| spec.value),
        instances,
        signature_keys_written: raw.signature_keys.is_some(),
    })
}

fn validate_instance(
    raw: RawInstance,
    error: &impl Fn((u64, u64), String, &str) -> InputError,
    folder: &Path,
) -> Result<DesiredInstance, InputError> {
    if !is_uuid(&raw.id.value) {
        return Err(error(
            at(&raw.id),
            format!("{} is not a service instance GUID", quote(&raw.id.value)),
            "use the instance's GUID (8-4-4-4-12 hex), as `ibmcloud resource service-instance` shows it",
        ));
    }
    if raw.crypto_units.value != "all" {
        return Err(error(
            at(&raw.crypto_units),
            format!("crypto_units is {}", quote(&raw.crypto_units.value)),
            "write `crypto_units: all`: a master key rotation must select every crypto unit of the instance (operational, recovery and failover)",
        ));
    }
    for threshold in [&raw.signature_threshold, &raw.revocation_threshold] {
        if !(1..=THRESHOLD_MAX).contains(&threshold.value) {
            return Err(error(
                at(threshold),
                format!("threshold {} is out of range", threshold.value),
                "signature and revocation thresholds are 1 to 8",
            ));
        }
    }
    let administrators = validate_administrators(&raw, error)?;
    let key_parts = validate_key_parts(raw.master_key.key_parts, error, folder)?;
    Ok(DesiredInstance {
        id: raw.id.value.to_ascii_lowercase(),
        signature_threshold: raw.signature_threshold.value,
        revocation_threshold: raw.revocation_threshold.value,
        administrators,
        master_key: DesiredMasterKey {
            verification_pattern: raw.master_key.verification_pattern,
            key_parts,
        },
    })
}

fn validate_administrators(
    raw: &RawInstance,
    error: &impl Fn((u64, u64), String, &str) -> InputError,
) -> Result<Vec<String>, InputError> {
    let list = &raw.administrators;
    let list_at = at(list);
    let count = list.value.len();
    if count == 0 || count > ADMINISTRATORS_MAX {
        return Err(error(
            list_at,
            format!("{count} administrators listed"),
            "a crypto unit holds 1 to 8 administrators: list their names",
        ));
    }
    let threshold = raw
        .signature_threshold
        .value
        .max(raw.revocation_threshold.value);
    if count < usize::from(threshold) {
        return Err(error(
            list_at,
            format!(
                "{count} administrators cannot meet a signature threshold of {} and a revocation threshold of {}",
                raw.signature_threshold.value, raw.revocation_threshold.value
            ),
            "list at least as many administrators as the larger threshold",
        ));
    }
    let mut names = Vec::with_capacity(count);
    for name in &list.value {
        let name_at = at(name);
        let length = name.value.chars().count();
        if length == 0 || length > ADMINISTRATOR_NAME_LEN_MAX {
            return Err(error(
                name_at,
                format!(
                    "administrator name {} has {length} characters",
                    quote(&name.value)
                ),
                "an administrator name is 1 to 30 characters, as installed on the crypto units",
            ));
        }
        printable(name, "an administrator name", error)?;
        if names.contains(&name.value) {
            return Err(error(
                name_at,
                format!("administrator {} is listed twice", quote(&name.value)),
                "list each administrator once",
            ));
        }
        names.push(name.value.clone());
    }
    Ok(names)
}

fn validate_key_parts(
    raw: Option<At<Vec<At<RawKeyPart>>>>,
    error: &impl Fn((u64, u64), String, &str) -> InputError,
    folder: &Path,
) -> Result<Vec<KeyPartSource>, InputError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let count = raw.value.len();
    if !(KEY_PARTS_MIN..=KEY_PARTS_MAX).contains(&count) {
        return Err(error(
            at(&raw),
            format!("{count} key parts listed"),
            "a master key combines 2 or 3 key parts, each held by a different custodian",
        ));
    }
    let list_at = at(&raw);
    let mut parts = Vec::with_capacity(count);
    let mut files = BTreeSet::new();
    let mut holders = BTreeSet::new();
    for spanned in raw.value {
        let part_at = at(&spanned);
        let part = spanned.value;
        let source = match (part.file, part.smart_card) {
            (Some(file), None) => {
                key_part_file(file, part.password_env, folder, &mut files, error)?
            }
            (None, Some(card)) => {
                if let Some(env) = part.password_env {
                    return Err(error(
                        at(&env),
                        "password_env given for a key part on a smart card".into(),
                        "a smart card's PIN is entered on the PIN pad, never given to mkplan; remove password_env",
                    ));
                }
                smart_card(card, &mut holders, error)?
            }
            _ => {
                return Err(error(
                    part_at,
                    "a key part needs exactly one of file: and smart_card:".into(),
                    "write `- file: keyparts/NAME.json` (with password_env) or `- smart_card: {holder: NAME, reader: PATTERN}`",
                ));
            }
        };
        parts.push(source);
    }
    if parts.iter().any(KeyPartSource::is_smart_card)
        && !parts.iter().all(KeyPartSource::is_smart_card)
    {
        return Err(error(
            list_at,
            "key parts in files and on smart cards are mixed".into(),
            "one load takes all key parts at once, in one tool: put them all in files (mkplan or the TKE CLI loads them) or all on smart cards (the TKE application loads them)",
        ));
    }
    Ok(parts)
}

fn key_part_file(
    file: At<String>,
    password_env: Option<At<String>>,
    folder: &Path,
    files: &mut BTreeSet<std::path::PathBuf>,
    error: &impl Fn((u64, u64), String, &str) -> InputError,
) -> Result<KeyPartSource, InputError> {
    let file_at = at(&file);
    printable(&file, "a key part file's path", error)?;
    let path = folder.join(&file.value);
    if !files.insert(path.clone()) {
        return Err(error(
            file_at,
            format!("key part file {} is listed twice", quote(&file.value)),
            "each key part comes from a different custodian's file",
        ));
    }
    let password_env = match password_env {
        Some(env) if !is_env_name(&env.value) => {
            // Placed, but its line not shown: it may hold the password.
            let (line, column) = at(&env);
            return Err(error(
                (line, column),
                "password_env is not an environment variable name (its value is not shown, in case it is a password)".to_string(),
                "password_env names the variable that holds the password (letters, digits, _), never the password itself",
            )
            .located(line, column));
        }
        other => other.map(|s| s.value),
    };
    Ok(KeyPartSource::File {
        file: path,
        written: file.value,
        password_env,
        position: file_at,
    })
}

fn smart_card(
    card: At<RawSmartCard>,
    holders: &mut BTreeSet<String>,
    error: &impl Fn((u64, u64), String, &str) -> InputError,
) -> Result<KeyPartSource, InputError> {
    let card_at = at(&card);
    let RawSmartCard { holder, reader } = card.value;
    let name = holder.value.trim().to_string();
    if name.is_empty() || name.chars().count() > crate::model::unit::ADMINISTRATOR_NAME_LEN_MAX {
        return Err(error(
            at(&holder),
            format!(
                "holder {} is empty or longer than 30 characters",
                quote(&name)
            ),
            "name the custodian who holds the card and knows its PIN, in at most 30 characters",
        ));
    }
    printable(&holder, "a holder's name", error)?;
    printable(&reader, "a reader pattern", error)?;
    if !holders.insert(name.to_lowercase()) {
        return Err(error(
            at(&holder),
            format!("holder {name} holds two key parts"),
            "each key part is held by a different custodian",
        ));
    }
    let pattern = reader.value.trim().to_string();
    if pattern.is_empty() || pattern.len() > READER_PATTERN_LEN_MAX {
        return Err(error(
            at(&reader),
            "the reader pattern is empty or too long".into(),
            "give part of the PC/SC reader's name (see `mkplan cards`), e.g. \"Key part reader\"",
        ));
    }
    Ok(KeyPartSource::SmartCard {
        holder: name,
        reader: pattern,
        position: card_at,
    })
}

/// Names and paths in a desired file reach plans, runbooks and the terminal: a control
/// character (a newline, an escape) in one could forge a line of a runbook or drive the
/// terminal, and no operator writes one.
fn printable(
    value: &At<String>,
    what: &str,
    error: &impl Fn((u64, u64), String, &str) -> InputError,
) -> Result<(), InputError> {
    if !value.value.chars().any(crate::quote::is_control_like) {
        return Ok(());
    }
    Err(error(
        at(value),
        format!(
            "{what} holds a control character (a newline, a tab, an escape, a direction override): {}",
            quote(&value.value)
        ),
        "write it on one line with printable characters only",
    ))
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
#[path = "desired_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "desired_quick_tests.rs"]
mod quick_tests;
