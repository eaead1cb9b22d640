//! Why a plan was refused: the pre-check (or missing evidence) by name, the crypto units and
//! their values, and what the operator can do. Exit code 3.

use std::fmt;

use serde::Serialize;

use crate::model::CryptoUnit;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// All crypto units of exactly one instance selected.
    Selection,
    /// No crypto unit in imprint mode.
    AdminMode,
    /// Signature thresholds equal on all crypto units.
    SignatureThresholdsEqual,
    /// The thresholds the desired file asks for are the ones installed.
    ThresholdsMatchDesired,
    /// A common set of administrators, installed on all units, at least as large as the threshold.
    CommonAdministrators,
    /// All current registers Valid with the same verification pattern.
    CurrentRegistersEqual,
    /// The key parts needed to load the new MK are named in the desired file.
    KeyPartsAvailable,
    /// Evidence of whether the rewrap ran (service status, journal, live state).
    RewrapEvidence,
    /// The evidence agrees with itself.
    EvidenceConsistent,
    /// No other rotation has passed its point of no return.
    NoOtherRotationInFlight,
    /// mkplan's replay of its own plan on a copy of the live state.
    PlanReplay,
}

impl Check {
    /// The check's id, as in JSON: `rewrap_evidence`.
    pub fn id(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::Selection => "all crypto units of exactly one service instance selected",
            Self::AdminMode => "no crypto unit in imprint mode",
            Self::SignatureThresholdsEqual => "signature thresholds equal on all crypto units",
            Self::ThresholdsMatchDesired => "thresholds installed match the desired file",
            Self::CommonAdministrators => {
                "a common set of administrators, installed on all crypto units, at least as large as the threshold"
            }
            Self::CurrentRegistersEqual => {
                "all current registers Valid with the same verification pattern"
            }
            Self::KeyPartsAvailable => "key parts available to load the new master key",
            Self::RewrapEvidence => "evidence of whether the rewrap ran",
            Self::EvidenceConsistent => "evidence consistent",
            Self::NoOtherRotationInFlight => "no other rotation past its point of no return",
            Self::PlanReplay => "plan keeps the key storage's master key when replayed",
        }
    }
}

/// One crypto unit named in a refusal, with the value that made the check fail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnitValue {
    pub hsm_id: String,
    #[serde(rename = "type")]
    pub unit_type: String,
    pub value: String,
}

impl UnitValue {
    pub fn new(unit: &CryptoUnit, value: impl Into<String>) -> Self {
        Self {
            hsm_id: unit.hsm_id.clone(),
            unit_type: unit.unit_type.as_str().into(),
            value: value.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub instance: String,
    pub check: Check,
    pub detail: String,
    pub units: Vec<UnitValue>,
    pub fix: String,
}

impl Refusal {
    pub fn new(instance: &str, check: Check, detail: impl Into<String>) -> Self {
        Self {
            instance: instance.to_string(),
            check,
            detail: detail.into(),
            units: Vec::new(),
            fix: String::new(),
        }
    }

    pub fn units(mut self, units: Vec<UnitValue>) -> Self {
        self.units = units;
        self
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = fix.into();
        self
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "refused: pre-check \"{}\" ({}) failed for service instance {}",
            self.check.title(),
            serde_json::to_value(self.check)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            self.instance
        )?;
        for line in self.detail.lines() {
            writeln!(f, "  {line}")?;
        }
        for unit in &self.units {
            writeln!(
                f,
                "    crypto unit {} ({:<11})  {}",
                unit.hsm_id, unit.unit_type, unit.value
            )?;
        }
        if !self.fix.is_empty() {
            writeln!(f, "  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// Every refusal of one `plan` run: nothing is planned when any instance is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanRefused {
    pub refusals: Vec<Refusal>,
}

impl fmt::Display for PlanRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, refusal) in self.refusals.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{refusal}")?;
        }
        write!(
            f,
            "\nNothing was planned and nothing was touched: {} refusal(s).",
            self.refusals.len()
        )
    }
}

impl std::error::Error for PlanRefused {}
