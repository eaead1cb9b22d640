//! The openCryptoki USER PINs, read from the sources the group file names
//! (`model::domain_group_pins`) when an apply needs them, and given to `pkcshsm_mk_change`
//! on its stdin, one line per prompt, as the real tool reads them (OCK `pin_prompt`: a line
//! of stdin, cut at the first CR or LF; no option or variable takes a PIN). A PIN is held
//! in a buffer that is zeroed when dropped, has no `Debug` or `Display`, and never reaches an
//! argument, the journal, a plan, a log line or an error message: those name the slot and
//! its source only.

use std::collections::BTreeMap;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::model::domain_group_desired::DesiredGroup;
use crate::model::domain_group_pins::PinSource;

/// Bytes of a PIN file read at most (a PKCS #11 PIN is far shorter).
const PIN_FILE_BYTES_MAX: u64 = 4096;

/// The prompt `pkcshsm_mk_change` writes before it reads a slot's PIN (`login_tokens`).
pub const USER_PIN_PROMPT: &str = "Enter the USER PIN for slot ";

/// One slot's USER PIN.
pub struct UserPin(Zeroizing<String>);

impl UserPin {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The PINs of an apply, by slot.
#[derive(Default)]
pub struct UserPins(BTreeMap<u64, UserPin>);

impl std::fmt::Debug for UserPins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserPins(slots {:?})", self.0.keys().collect::<Vec<_>>())
    }
}

/// Two sets of PINs are alike when they are for the same slots (the PINs are not compared).
impl PartialEq for UserPins {
    fn eq(&self, other: &Self) -> bool {
        self.0.keys().eq(other.0.keys())
    }
}

impl Eq for UserPins {}

impl UserPins {
    /// Reads every source the group names. An apply that will run `pkcshsm_mk_change` calls
    /// this before it touches anything: a missing, unreadable or empty source is an error
    /// naming the slot and the source.
    pub fn read(desired: &DesiredGroup) -> Result<Arc<Self>, String> {
        if desired.user_pins.is_empty() {
            return Err(
                "the group declares `opencryptoki: tokens`, and pkcshsm_mk_change asks for the USER PIN of every token it re-enciphers or finalizes, but the group file names no PIN source: add `opencryptoki_user_pins:` with `- {slot: N, file: PATH}` or `- {slot: N, env: NAME}` for each token's slot (never the PIN itself)".into(),
            );
        }
        let mut pins = BTreeMap::new();
        for (slot, source) in &desired.user_pins {
            pins.insert(*slot, read_one(*slot, source)?);
        }
        Ok(Arc::new(Self(pins)))
    }

    pub fn get(&self, slot: u64) -> Option<&UserPin> {
        self.0.get(&slot)
    }
}

fn read_one(slot: u64, source: &PinSource) -> Result<UserPin, String> {
    let text = match source {
        PinSource::File(path) => {
            let bytes = crate::bounded_read::read(path, PIN_FILE_BYTES_MAX)
                .map(Zeroizing::new)
                .map_err(|e| format!("the USER PIN of slot {slot}: {source}: {e}"))?;
            Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned())
        }
        PinSource::Env(name) => Zeroizing::new(std::env::var(name).map_err(|_| {
            format!("the USER PIN of slot {slot}: {source} is not set (or not UTF-8)")
        })?),
    };
    // As `pin_prompt` reads it: up to the first CR or LF.
    let line = text.split(['\r', '\n']).next().unwrap_or_default();
    if line.is_empty() {
        return Err(format!(
            "the USER PIN of slot {slot}: {source} holds an empty PIN (pkcshsm_mk_change would ask again)"
        ));
    }
    Ok(UserPin(Zeroizing::new(line.to_string())))
}

/// What to write when a tool prompts with the text it has printed so far: the slot a USER
/// PIN prompt names, if its last line is one.
pub fn prompted_slot(printed: &str) -> Option<u64> {
    let last = printed.rsplit('\n').next()?;
    last.strip_prefix(USER_PIN_PROMPT)?
        .strip_suffix(": ")?
        .parse()
        .ok()
}
