//! A crypto unit (one EP11 domain on an HSM card) as the service reports it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::{CurrentRegister, NewRegister};

/// Administrators a crypto unit can hold.
pub const ADMINISTRATORS_MAX: usize = 8;
/// Characters in an administrator's name.
pub const ADMINISTRATOR_NAME_LEN_MAX: usize = 30;
/// Highest signature or revocation threshold.
pub const THRESHOLD_MAX: u8 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitType {
    Operational,
    Recovery,
    Failover,
}

impl UnitType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operational => "operational",
            Self::Recovery => "recovery",
            Self::Failover => "failover",
        }
    }
}

impl fmt::Display for UnitType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `imprint`: fresh or zeroized, thresholds 0, register commands refused. `admin`: thresholds ≥ 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Admin,
    Imprint,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Imprint => "imprint",
        }
    }
}

/// A subject key identifier: 64 hex characters naming an administrator's signature key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Ski(String);

impl Ski {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() != 64 || !text.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "an administrator's ski is 64 hex characters (the SHA-256 of its public key), found {}",
                crate::quote::quote(text)
            ));
        }
        Ok(Self(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Ski {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Administrator {
    pub name: String,
    pub ski: Ski,
    /// Simulator fleets only: hex of the bytes the SKI is the SHA-256 of (`04 ‖ X ‖ Y` for
    /// P-521, DER `SEQ{INTEGER n, INTEGER e}` for RSA), so that `sim serve --protocol tke`
    /// can check the administrator's signatures on commands. Never read from a real service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CryptoUnit {
    pub hsm_id: String,
    #[serde(rename = "type")]
    pub unit_type: UnitType,
    pub location: String,
    pub mode: Mode,
    pub signature_threshold: u8,
    pub revocation_threshold: u8,
    #[serde(default)]
    pub administrators: Vec<Administrator>,
    pub new_register: NewRegister,
    pub current_register: CurrentRegister,
}

impl CryptoUnit {
    pub fn administrator(&self, name: &str) -> Option<&Administrator> {
        self.administrators.iter().find(|a| a.name == name)
    }

    /// The hsm_id shortened for narrow tables: first 8 and last 4 characters.
    pub fn short_id(&self) -> String {
        short_id(&self.hsm_id)
    }
}

pub fn short_id(id: &str) -> String {
    if id.len() <= 14 || !id.is_ascii() {
        return id.to_string();
    }
    format!("{}…{}", &id[..8], &id[id.len() - 4..])
}

/// Checks the shape of a UUID (8-4-4-4-12 hex): service instance GUIDs and hsm_ids.
pub fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}
