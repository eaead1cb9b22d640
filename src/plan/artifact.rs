//! The plan as an artifact: what `plan --json` prints, what `plan --out` saves and `show`
//! and `apply` read back. It carries the hash of the desired file and a fingerprint of the
//! live state it was made from, so a stale plan can be refused. It holds no secret.

use serde::{Deserialize, Serialize};

use super::step::{Action, Step};
use crate::model::{CurrentRegister, NewRegister, RewrapStatus, UnitType, VerificationPattern};

pub const PLAN_FORMAT_VERSION: &str = "1";
/// Longest plan file read: room for a plan of `INSTANCES_MAX` instances of 16 units.
pub const PLAN_FILE_BYTES_MAX: u64 = 512 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: String,
    pub desired_sha256: String,
    pub live_fingerprint: String,
    /// The desired file and backend the plan was made from (set by `plan`, read by
    /// `apply PLANFILE`). In a plan file saved by `plan --out`, the desired file's path is
    /// relative to the plan file's folder (or absolute), so the plan applies from any folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The backend's identity (`Backend::identity`): `apply PLANFILE` refuses to run the
    /// plan against any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_identity: Option<String>,
    /// With `plan --instance`: the service instances the plan is limited to. `apply PLANFILE`
    /// refreshes, checks and applies exactly these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targeted: Vec<String>,
    /// The desired file's service instances that `--instance` left out: not refreshed, not
    /// planned, not applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
    pub changes: bool,
    /// Steps in the order apply runs them.
    pub steps: Vec<Step>,
    pub instances: Vec<InstancePlan>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstancePlan {
    pub id: String,
    pub region: String,
    /// The MK every current register must hold when the plan has run.
    pub target_verification_pattern: VerificationPattern,
    /// The MK the key storage is under now, as the evidence shows.
    pub key_storage_under: VerificationPattern,
    pub rewrap_status: RewrapStatus,
    pub evidence: Vec<String>,
    /// The administrators who sign this instance's commits and set immediates (the desired
    /// file's, installed on every crypto unit).
    #[serde(default)]
    pub administrators: Vec<String>,
    pub units: Vec<UnitChange>,
    /// What the smart-card ceremony of this instance needs, when its key parts are on cards
    /// and the plan loads or commits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceremony: Option<CeremonyNeeds>,
}

/// Readers, people and PIN entries a smart-card ceremony needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CeremonyNeeds {
    /// Patterns of the PC/SC names of the readers the key part cards go in.
    pub key_part_readers: Vec<String>,
    pub key_part_holders: Vec<String>,
    /// The administrators who may sign (their signature cards go in the signature reader).
    pub administrators: Vec<String>,
    /// The most signatures one step needs.
    pub signatures_max: u8,
    /// PIN entries on the PIN pad over all loads and commits: one per card used.
    pub pin_entries: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitChange {
    pub hsm_id: String,
    #[serde(rename = "type")]
    pub unit_type: UnitType,
    pub location: String,
    pub before: Registers,
    pub after: Registers,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registers {
    pub new_register: NewRegister,
    pub current_register: CurrentRegister,
}

impl Plan {
    pub fn count(&self, action: Action) -> usize {
        self.steps.iter().filter(|s| s.action == action).count()
    }

    pub fn signatures(&self) -> u32 {
        self.steps.iter().map(|s| s.signatures).sum()
    }
}

impl InstancePlan {
    /// One line saying where this instance stands, for the reader of the plan.
    pub fn phase(&self, steps: &[&Step]) -> &'static str {
        let has = |a: Action| steps.iter().any(|s| s.action == a);
        if steps.is_empty() {
            "converged: nothing to do"
        } else if has(Action::RewrapKeyStorage) {
            "rotate: stage the new master key, rewrap, set immediate"
        } else if has(Action::SetImmediate) {
            "resume after the rewrap: set immediate only (never rewrap again)"
        } else {
            "tidy: clear stale new registers"
        }
    }
}
