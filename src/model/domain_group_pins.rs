//! Where mkplan finds the USER PIN of each openCryptoki token that `pkcshsm_mk_change` logs
//! in to (OCK pkcshsm_mk_change.c `login_tokens`: one prompt per affected slot, "Enter the
//! USER PIN for slot N: ", answered by a line on stdin). The group file names a source per
//! slot, a file or an environment variable, never the PIN itself: the file is reviewed in
//! pull requests and its SHA-256 is in every saved plan. Pure: reading the sources is the
//! backend's (`backend::zcrypt::pins`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::InputError;

/// Slots a group names PIN sources for at most.
pub const USER_PIN_SLOTS_MAX: usize = 256;

/// Where one slot's USER PIN is read from when `pkcshsm_mk_change` asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// A file whose first line is the PIN (a final newline is not part of it).
    File(PathBuf),
    /// An environment variable of mkplan's process.
    Env(String),
}

impl std::fmt::Display for PinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "file {}", crate::quote::path(path)),
            Self::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

/// A slot's PIN source and where the group file names it (the line and column of its entry
/// under `opencryptoki_user_pins:`), so that a source that cannot be read is reported there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedPinSource {
    pub source: PinSource,
    pub line: u64,
    pub column: u64,
    /// A `file:` written with no folder in it: if it names no file, it may be the PIN itself
    /// written where the path belongs, and is not shown.
    pub bare: bool,
}

/// Every slot's PIN source, and the group file they are named in (as shown in messages).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserPinSources {
    pub file: String,
    pub slots: BTreeMap<u64, PlacedPinSource>,
}

impl UserPinSources {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn get(&self, slot: u64) -> Option<&PlacedPinSource> {
        self.slots.get(&slot)
    }

    /// The environment variables that hold a PIN: no tool mkplan runs is given them
    /// (`SystemRunner::hiding`).
    pub fn variables(&self) -> Vec<String> {
        self.slots
            .values()
            .filter_map(|placed| match &placed.source {
                PinSource::Env(name) => Some(name.clone()),
                PinSource::File(_) => None,
            })
            .collect()
    }

    /// The sources, by slot.
    pub fn sources(&self) -> impl Iterator<Item = (u64, &PinSource)> {
        self.slots
            .iter()
            .map(|(slot, placed)| (*slot, &placed.source))
    }
}

/// Makes an error at a line and column, with its fix.
type ErrorAt<'a> = &'a dyn Fn((u64, u64), String, &str) -> InputError;

/// One entry of `opencryptoki_user_pins:` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUserPin {
    slot: Spanned<u64>,
    #[serde(default)]
    file: Option<Spanned<String>>,
    #[serde(default)]
    env: Option<Spanned<String>>,
    /// Accepted only to refuse it by name, without echoing it.
    #[serde(default, alias = "user_pin")]
    pin: Option<Spanned<serde::de::IgnoredAny>>,
}

/// The sources by slot; `error` places a message at a line and column; `relative` makes a
/// file's path absolute from the group file's folder.
pub(super) fn parse_user_pins(
    raw: &Spanned<Vec<Spanned<RawUserPin>>>,
    relative: &dyn Fn(&str) -> PathBuf,
    error: ErrorAt,
) -> Result<BTreeMap<u64, PlacedPinSource>, InputError> {
    let at = |line: &serde_saphyr::Location| (line.line(), line.column());
    if raw.value.len() > USER_PIN_SLOTS_MAX {
        return Err(error(
            at(&raw.referenced),
            format!("more than {USER_PIN_SLOTS_MAX} slots"),
            "name a PIN source for each token pkcshsm_mk_change logs in to",
        ));
    }
    let mut sources = BTreeMap::new();
    for entry in &raw.value {
        let place = at(&entry.referenced);
        let e = &entry.value;
        if let Some(literal) = &e.pin {
            // Placed, but its line not shown: it holds the PIN.
            let (line, column) = at(&literal.referenced);
            return Err(error(
                (line, column),
                format!("a USER PIN written in the group file (slot {})", e.slot.value),
                "never write a PIN in the group file, which is reviewed and hashed into saved plans: name a file (`file: /etc/mkplan/slot3.pin`) or an environment variable (`env: OCK_SLOT3_USER_PIN`) that holds it",
            )
            .located(line, column));
        }
        let source = match (&e.file, &e.env) {
            (Some(file), None) if !file.value.is_empty() => PinSource::File(relative(&file.value)),
            (None, Some(env)) if is_env_name(&env.value) => PinSource::Env(env.value.clone()),
            // Placed, but neither its value nor its line shown: it may be the PIN itself.
            (None, Some(env)) => {
                let (line, column) = at(&env.referenced);
                return Err(error(
                    (line, column),
                    format!(
                        "slot {}: env is not an environment variable name (its value is not shown, in case it is the PIN)",
                        e.slot.value
                    ),
                    "env names the variable that holds the USER PIN (letters, digits and _, not starting with a digit), never the PIN itself",
                )
                .located(line, column));
            }
            _ => {
                return Err(error(
                    place,
                    format!("slot {} names no PIN source, or two", e.slot.value),
                    "name exactly one: `file: PATH` or `env: NAME`",
                ));
            }
        };
        let (line, column) = place;
        let bare = e.file.as_ref().is_some_and(|f| !f.value.contains('/'));
        let placed = PlacedPinSource {
            source,
            line,
            column,
            bare,
        };
        if sources.insert(e.slot.value, placed).is_some() {
            return Err(error(
                at(&e.slot.referenced),
                format!("slot {} is given twice", e.slot.value),
                "name one PIN source per slot",
            ));
        }
    }
    Ok(sources)
}

fn is_env_name(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
