//! The live state: what a backend reports about each service instance. It never contains the
//! key storage's MK: a real service does not reveal it, so the planner must work without it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::CryptoUnit;

/// Crypto units one instance may have (operational 3 + recovery 2 + failover 3, with room).
pub const UNITS_PER_INSTANCE_MAX: usize = 16;

/// What the service says about the rewrap of its key storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewrapStatus {
    /// The service does not answer "has the rewrap completed?".
    NotReported,
    /// No rewrap is running and none is waiting on set immediate: the key storage is under
    /// the current MK.
    NotRewrapped,
    /// A rewrap of the key storage is running (it takes about 60 s per 3,000 keys); it
    /// completes on the service whatever happens to the client that sent it.
    InProgress,
    /// "KMS CRK rewrap successful, waiting on cryptounit-mk-setimm": the key storage is under
    /// the MK staged in the new registers.
    Rewrapped,
}

impl RewrapStatus {
    pub fn describe(self) -> &'static str {
        match self {
            Self::NotReported => "not reported by the service",
            Self::NotRewrapped => "no rewrap waiting on set immediate",
            Self::InProgress => "rewrap of the key storage in progress",
            Self::Rewrapped => "KMS CRK rewrap successful, waiting on cryptounit-mk-setimm",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LiveInstance {
    pub id: String,
    pub region: String,
    pub rewrap_status: RewrapStatus,
    pub crypto_units: Vec<CryptoUnit>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LiveFleet {
    pub instances: Vec<LiveInstance>,
}

impl LiveFleet {
    pub fn instance(&self, id: &str) -> Option<&LiveInstance> {
        self.instances.iter().find(|i| i.id == id)
    }

    /// SHA-256 over the canonical JSON of the live state: equal fingerprints mean the registers,
    /// modes, thresholds, administrators and rewrap status are all unchanged.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).expect("live state serializes");
        hex::encode(Sha256::digest(&json))
    }
}

impl LiveInstance {
    pub fn unit(&self, hsm_id: &str) -> Option<&CryptoUnit> {
        self.crypto_units.iter().find(|u| u.hsm_id == hsm_id)
    }
}
