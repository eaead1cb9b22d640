//! The simulator's whole state: the fleet file (`examples/fleets/*.yaml`). Unlike a live
//! state it holds the ground truth a real service keeps to itself: the MK the key storage is
//! encrypted under, the rewrap the service is running or remembers, and the incidents (every
//! loss the simulator has seen happen).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::consistency;
use crate::model::hpcs_view;
use crate::model::unit::is_uuid;
use crate::model::{
    Administrator, CryptoUnit, InputError, KeyWords, LiveInstance, RewrapStatus,
    VerificationPattern,
};
use crate::quote::quote;

/// What each key of a fleet file holds, for an error about a value of the wrong type.
const FLEET_KEY_WORDS: KeyWords = &[
    (
        "instances",
        "a list of service instances, each starting `- id: GUID`",
    ),
    (
        "incidents",
        "a list of incidents (the simulator writes them)",
    ),
    ("id", "a service instance GUID (8-4-4-4-12 hex)"),
    ("region", "the instance's region, e.g. us-south"),
    (
        "key_storage",
        "a mapping with verification_pattern: and keys:",
    ),
    ("reports_rotation_status", "true or false"),
    (
        "crypto_units",
        "a list of crypto units, each starting `- hsm_id: UUID`",
    ),
    (
        "verification_pattern",
        "a verification pattern: 64 hex digits in quotes",
    ),
    (
        "rewrapped_from",
        "a verification pattern: 64 hex digits in quotes",
    ),
    ("from", "a verification pattern: 64 hex digits in quotes"),
    ("to", "a verification pattern: 64 hex digits in quotes"),
    ("keys", "a whole number (the keys in the key storage)"),
    ("rewrap_ms_per_key", "a whole number of milliseconds"),
    (
        "completes_at_ms",
        "a whole number of milliseconds since 1970 (Unix time)",
    ),
    ("unusable", "true or false"),
    (
        "rewrap_in_progress",
        "a mapping with from:, to: and completes_at_ms:",
    ),
    ("hsm_id", "a crypto unit UUID"),
    ("type", "operational, recovery or failover"),
    (
        "location",
        "the crypto unit's location, e.g. \"[us-south].[AZ1-CS1].[01].[04]\"",
    ),
    ("mode", "admin or imprint"),
    (
        "signature_threshold",
        "a whole number from 0 to 8 (0 in imprint mode)",
    ),
    (
        "revocation_threshold",
        "a whole number from 0 to 8 (0 in imprint mode)",
    ),
    (
        "administrators",
        "a list of administrators, each `{ name: NAME, ski: \"64 hex\" }`",
    ),
    ("name", "the administrator's name"),
    (
        "ski",
        "the administrator's key identifier: 64 hex digits in quotes",
    ),
    (
        "public_key",
        "hex of the administrator's public key (what the ski is the SHA-256 of), as `mkplan sim sigkey new` prints it",
    ),
    ("new_register", "a register, e.g. `{ status: Empty }`"),
    (
        "current_register",
        "a register, e.g. `{ status: Valid, verification_pattern: \"…\" }`",
    ),
    ("status", "the register's status, e.g. Empty or Valid"),
    ("instance", "a service instance GUID"),
    ("unit", "a crypto unit UUID"),
    ("operation", "the operation's name"),
    ("description", "text"),
];

/// How long the real service takes to re-encrypt one key: about 3,000 keys a minute.
pub const REWRAP_MS_PER_KEY_DEFAULT: u64 = 20;
/// Longest fleet file: room for `INSTANCES_MAX` instances of `UNITS_PER_INSTANCE_MAX` units
/// (about 1.5 KB of YAML each with 8 administrators).
pub const FLEET_FILE_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// The slowest re-encryption a fleet may ask for, so that a typo cannot stall a test for days.
pub const REWRAP_MS_PER_KEY_MAX: u64 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    pub instances: Vec<SimInstance>,
    #[serde(default)]
    pub incidents: Vec<Incident>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimInstance {
    pub id: String,
    pub region: String,
    pub key_storage: KeyStorage,
    #[serde(default = "yes")]
    pub reports_rotation_status: bool,
    pub crypto_units: Vec<CryptoUnit>,
}

fn yes() -> bool {
    true
}

fn rewrap_ms_per_key_default() -> u64 {
    REWRAP_MS_PER_KEY_DEFAULT
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyStorage {
    /// The MK the key storage is encrypted under.
    pub verification_pattern: VerificationPattern,
    pub keys: u64,
    /// How long the service takes to re-encrypt one key: a rewrap runs for
    /// `keys × rewrap_ms_per_key` milliseconds.
    #[serde(default = "rewrap_ms_per_key_default")]
    pub rewrap_ms_per_key: u64,
    /// Set once the key storage has been destroyed (an incident says how).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unusable: bool,
    /// The service's memory of a completed rewrap: the MK the key storage was rewrapped from,
    /// kept until every current register holds the new MK. The simulator writes it; a
    /// hand-written fleet may leave it out (see `SimInstance::mid_rotation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrapped_from: Option<VerificationPattern>,
    /// A rewrap the service accepted and is still running. It completes when the clock
    /// passes `completes_at_ms`, whoever touches the fleet first: the client that sent it
    /// may be long gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrap_in_progress: Option<RewrapInProgress>,
}

/// A running rewrap: the key storage is being re-encrypted from `from` to `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewrapInProgress {
    pub from: VerificationPattern,
    pub to: VerificationPattern,
    /// Wall-clock Unix milliseconds (the simulator's clock).
    pub completes_at_ms: u64,
}

/// A loss, or a harmful operation, that the simulator performed as the real service would.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    pub instance: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub operation: String,
    pub description: String,
}

impl Fleet {
    /// Reads a fleet file. A file that does not even start like a fleet (a YAML mapping whose
    /// first key is `instances:` or `incidents:`) is refused with its position only: `sim:`
    /// may name any file by mistake (`/etc/passwd`, a private key), and neither the parser's
    /// words (``unknown key `password` ``) nor the offending line may echo it. A file that
    /// does start like a fleet gets the parser's message and the line, as any file we wrote.
    ///
    /// A fleet the simulator wrote is read by `quick_yaml` first, which gives up on anything
    /// unusual or wrong; the full parser then reads the text again and reports the error at
    /// its line and column. The checks after the parse are the same either way.
    pub fn parse(file: &str, text: &str) -> Result<Self, InputError> {
        let fleet = match Self::parse_quickly(text) {
            Some(fleet) => fleet,
            None => Self::parse_fully(file, text)?,
        };
        fleet.check().map_err(|message| {
            InputError::new(file, message)
                .fix("correct the fleet file; it is the simulator's whole state")
        })?;
        consistency::check(&fleet).map_err(|found| found.into_input_error(file, text))?;
        Ok(fleet)
    }

    /// The fleet in `text`, read without locations, or `None` for the full parser to decide.
    fn parse_quickly(text: &str) -> Option<Self> {
        crate::model::quick_yaml::read(text)
    }

    /// The fleet in `text`, read by the full parser, whose errors carry line and column.
    fn parse_fully(file: &str, text: &str) -> Result<Self, InputError> {
        crate::model::from_yaml_str(text).map_err(|e| {
            let top = crate::model::yaml_top(text);
            if top.is_first_key(FLEET_FIRST_KEYS) {
                InputError::from_yaml(file, text, &e, FLEET_KEY_WORDS, "correct the fleet file at that place; it is the simulator's whole state, in the format of examples/fleets/*.yaml")
            } else {
                not_a_fleet(file, top.position())
            }
        })
    }

    /// The text of the fleet file at `path`: a regular file, at most `FLEET_FILE_BYTES_MAX`.
    pub fn read_text(path: &std::path::Path) -> std::io::Result<String> {
        crate::bounded_read::read_to_string(path, FLEET_FILE_BYTES_MAX)
    }

    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("a fleet serializes to YAML")
    }

    fn check(&self) -> Result<(), String> {
        let mut instances = BTreeSet::new();
        let mut units = BTreeSet::new();
        for instance in &self.instances {
            if !is_uuid(&instance.id) {
                return Err(format!("instance id {} is not a GUID", quote(&instance.id)));
            }
            if !instances.insert(instance.id.to_ascii_lowercase()) {
                return Err(format!("instance {} appears twice", instance.id));
            }
            for unit in &instance.crypto_units {
                if !is_uuid(&unit.hsm_id) {
                    return Err(format!("hsm_id {} is not a UUID", quote(&unit.hsm_id)));
                }
                if !units.insert(unit.hsm_id.to_ascii_lowercase()) {
                    return Err(format!("crypto unit {} appears twice", unit.hsm_id));
                }
                for administrator in &unit.administrators {
                    check_public_key(&unit.hsm_id, administrator)?;
                }
            }
        }
        Ok(())
    }

    pub fn instance(&self, id: &str) -> Option<&SimInstance> {
        self.position(id).map(|at| &self.instances[at])
    }

    /// Where the instance `id` is, in any case. The same case is tried first: a byte
    /// comparison is several times cheaper than a caseless one, and `sim serve` looks up an
    /// instance a few times per request among up to 10,000.
    pub fn position(&self, id: &str) -> Option<usize> {
        let instances = &self.instances;
        instances
            .iter()
            .position(|i| i.id == id)
            .or_else(|| instances.iter().position(|i| i.id.eq_ignore_ascii_case(id)))
    }

    /// Each instance's position, by its GUID in lower case: for finding many instances
    /// without a search each (a replay, a large fleet's live state).
    pub fn index(&self) -> std::collections::HashMap<String, usize> {
        self.instances
            .iter()
            .enumerate()
            .map(|(i, instance)| (instance.id.to_ascii_lowercase(), i))
            .collect()
    }

    pub fn instance_mut(&mut self, id: &str) -> Option<&mut SimInstance> {
        self.position(id).map(|at| &mut self.instances[at])
    }
}

/// The keys a fleet file starts with (the simulator writes `instances:` first).
const FLEET_FIRST_KEYS: &[&str] = &["instances", "incidents"];

/// An administrator's `public_key` must be what its SKI is the SHA-256 of.
fn check_public_key(unit: &str, administrator: &Administrator) -> Result<(), String> {
    use sha2::Digest;
    let Some(key) = &administrator.public_key else {
        return Ok(());
    };
    let bytes = hex::decode(key).map_err(|_| {
        format!(
            "crypto unit {unit}: administrator {}'s public_key is not hex",
            quote(&administrator.name)
        )
    })?;
    if hex::encode(sha2::Sha256::digest(&bytes)) != administrator.ski.as_str() {
        return Err(format!(
            "crypto unit {unit}: administrator {}'s public_key does not hash to its ski (the SKI is SHA-256 of 04||X||Y for P-521, of DER SEQ{{n, e}} for RSA); `mkplan sim sigkey new` prints both",
            quote(&administrator.name)
        ));
    }
    Ok(())
}

fn not_a_fleet(file: &str, position: (u64, u64)) -> InputError {
    InputError::not_a(
        file,
        "a simulator fleet file",
        "a fleet file is YAML whose first key is `instances:`, as in examples/fleets/*.yaml",
        Some(position),
    )
    .fix("point sim: (in `backend:` of the desired file, --backend or MKPLAN_BACKEND) at a fleet file, such as examples/fleets/three-units.yaml")
}

impl KeyStorage {
    /// How long a rewrap of this key storage runs.
    pub fn rewrap_ms(&self) -> u64 {
        self.keys.saturating_mul(self.rewrap_ms_per_key)
    }
}

impl SimInstance {
    /// What the service would say about the rewrap: running, done and waiting on set
    /// immediate, or neither. Complete the rewraps that are due first
    /// (`hsm::complete_rewraps`): this reads the fleet as it is.
    pub fn rewrap_status(&self) -> RewrapStatus {
        if !self.reports_rotation_status {
            RewrapStatus::NotReported
        } else if self.key_storage.rewrap_in_progress.is_some() {
            RewrapStatus::InProgress
        } else if self.mid_rotation() {
            RewrapStatus::Rewrapped
        } else {
            RewrapStatus::NotRewrapped
        }
    }

    /// Whether a completed rewrap waits on set immediate. The service remembers it
    /// (`rewrapped_from`); where a hand-written fleet does not say, the registers do: the
    /// key storage is under a key that some current register does not hold yet while a new
    /// register holds it, and only a rewrap moves the key storage to a staged key. (With no
    /// current register holding the storage's key, a new register must hold it, or the key
    /// storage is lost: `consistency` refuses such a fleet unless it is marked `unusable`.)
    pub fn mid_rotation(&self) -> bool {
        if self.key_storage.rewrapped_from.is_some() {
            return true;
        }
        let storage = &self.key_storage.verification_pattern;
        let waiting = self
            .crypto_units
            .iter()
            .any(|u| !u.current_register.holds(storage));
        let staged = self
            .crypto_units
            .iter()
            .any(|u| u.new_register.holds(storage));
        waiting && staged
    }

    /// The instance as the service reports it: no key storage, no incidents.
    pub fn live(&self) -> LiveInstance {
        LiveInstance {
            id: self.id.to_ascii_lowercase(),
            region: self.region.clone(),
            rewrap_status: self.rewrap_status(),
            // Public keys are the simulated cards' own: the service reports SKIs only.
            crypto_units: self
                .crypto_units
                .iter()
                .map(|unit| {
                    let mut unit = unit.clone();
                    for administrator in &mut unit.administrators {
                        administrator.public_key = None;
                    }
                    unit
                })
                .collect(),
        }
    }

    /// Whether any register still holds the MK the key storage is under: the loss rule every
    /// backend shares.
    pub fn key_storage_held(&self) -> bool {
        let under = &self.key_storage.verification_pattern;
        hpcs_view::key_storage_loss(&self.id, &self.crypto_units, under).is_none()
    }

    pub fn unit(&self, hsm_id: &str) -> Option<&CryptoUnit> {
        self.crypto_units
            .iter()
            .find(|u| u.hsm_id.eq_ignore_ascii_case(hsm_id))
    }
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
