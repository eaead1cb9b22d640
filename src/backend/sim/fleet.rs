//! The simulator's whole state: the fleet file (`examples/fleets/*.yaml`). Unlike a live
//! state it holds the ground truth a real service keeps to itself: the MK the key storage is
//! encrypted under, and the incidents (every loss the simulator has seen happen).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::model::unit::is_uuid;
use crate::model::{CryptoUnit, InputError, LiveInstance, RewrapStatus, VerificationPattern};

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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyStorage {
    /// The MK the key storage is encrypted under.
    pub verification_pattern: VerificationPattern,
    pub keys: u64,
    /// Set once the key storage has been destroyed (an incident says how).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unusable: bool,
    /// The service's memory of a rewrap: the MK the key storage was rewrapped from, kept
    /// from the rewrap until every current register holds the new MK. The simulator writes
    /// it; a hand-written fleet may leave it out (see `SimInstance::rewrap_status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrapped_from: Option<VerificationPattern>,
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
    pub fn parse(file: &str, text: &str) -> Result<Self, InputError> {
        let fleet: Fleet =
            crate::model::from_yaml_str(text).map_err(|e| {
            InputError::from_yaml(file, text, &e, "correct the fleet file at that place; it is the simulator's whole state, in the format of examples/fleets/*.yaml")
        })?;
        fleet.check().map_err(|message| {
            InputError::new(file, message)
                .fix("correct the fleet file; it is the simulator's whole state")
        })?;
        Ok(fleet)
    }

    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("a fleet serializes to YAML")
    }

    fn check(&self) -> Result<(), String> {
        let mut instances = BTreeSet::new();
        let mut units = BTreeSet::new();
        for instance in &self.instances {
            if !is_uuid(&instance.id) {
                return Err(format!("instance id {:?} is not a GUID", instance.id));
            }
            if !instances.insert(instance.id.to_ascii_lowercase()) {
                return Err(format!("instance {} appears twice", instance.id));
            }
            for unit in &instance.crypto_units {
                if !is_uuid(&unit.hsm_id) {
                    return Err(format!("hsm_id {:?} is not a UUID", unit.hsm_id));
                }
                if !units.insert(unit.hsm_id.to_ascii_lowercase()) {
                    return Err(format!("crypto unit {} appears twice", unit.hsm_id));
                }
            }
        }
        Ok(())
    }

    pub fn instance(&self, id: &str) -> Option<&SimInstance> {
        self.instances
            .iter()
            .find(|i| i.id.eq_ignore_ascii_case(id))
    }

    pub fn instance_mut(&mut self, id: &str) -> Option<&mut SimInstance> {
        self.instances
            .iter_mut()
            .find(|i| i.id.eq_ignore_ascii_case(id))
    }
}

impl SimInstance {
    /// What the service would say about the rewrap. A real service remembers that it ran a
    /// rewrap and is waiting on set immediate: that is `rewrapped_from`. A hand-written fleet
    /// may not say; then the answer is derived from the ground truth: some unit's current
    /// register does not hold the storage's MK yet, and the storage's MK is staged
    /// (committed) in some new register.
    pub fn rewrap_status(&self) -> RewrapStatus {
        if !self.reports_rotation_status {
            return RewrapStatus::NotReported;
        }
        if self.key_storage.rewrapped_from.is_some() {
            return RewrapStatus::Rewrapped;
        }
        let storage = &self.key_storage.verification_pattern;
        let waiting = self
            .crypto_units
            .iter()
            .any(|u| !u.current_register.holds(storage));
        let staged = self
            .crypto_units
            .iter()
            .any(|u| u.new_register.committed() == Some(storage));
        if waiting && staged {
            RewrapStatus::Rewrapped
        } else {
            RewrapStatus::NotRewrapped
        }
    }

    /// The instance as the service reports it: no key storage, no incidents.
    pub fn live(&self) -> LiveInstance {
        LiveInstance {
            id: self.id.to_ascii_lowercase(),
            region: self.region.clone(),
            rewrap_status: self.rewrap_status(),
            crypto_units: self.crypto_units.clone(),
        }
    }

    /// Whether any register still holds the MK the key storage is under.
    pub fn key_storage_held(&self) -> bool {
        let storage = &self.key_storage.verification_pattern;
        self.crypto_units
            .iter()
            .any(|u| u.current_register.holds(storage) || u.new_register.holds(storage))
    }
}
