//! What the service and its crypto units do with each operation: the simulator's rules. It
//! refuses what the HSM refuses, and *performs* what the HSM performs even when that destroys
//! the key storage, recording each loss as an incident. After every operation it checks the
//! key-safety invariant: some register of the instance holds the key storage's MK.

use super::fleet::{Fleet, Incident, SimInstance};
use crate::model::{CryptoUnit, CurrentRegister, Mode, NewRegister, VerificationPattern};

/// A mutating operation as the simulator receives it. A load carries only the VP of the
/// combined key: the simulator never needs the key itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimOperation {
    LoadNewMk {
        instance: String,
        unit: String,
        verification_pattern: VerificationPattern,
    },
    CommitNewMk {
        instance: String,
        unit: String,
        verification_pattern: VerificationPattern,
        /// Administrator names who signed the command.
        signers: Vec<String>,
    },
    ClearNewMk {
        instance: String,
        unit: String,
    },
    ClearCurrentMk {
        instance: String,
        unit: String,
    },
    RewrapKeyStorage {
        instance: String,
    },
    SetImmediate {
        instance: String,
        unit: String,
        /// The VP the committed new register must hold.
        verification_pattern: VerificationPattern,
        signers: Vec<String>,
    },
}

impl SimOperation {
    pub fn name(&self) -> &'static str {
        match self {
            Self::LoadNewMk { .. } => "load_new_mk",
            Self::CommitNewMk { .. } => "commit_new_mk",
            Self::ClearNewMk { .. } => "clear_new_mk",
            Self::ClearCurrentMk { .. } => "clear_current_mk",
            Self::RewrapKeyStorage { .. } => "rewrap_key_storage",
            Self::SetImmediate { .. } => "set_immediate",
        }
    }

    pub fn instance(&self) -> &str {
        match self {
            Self::LoadNewMk { instance, .. }
            | Self::CommitNewMk { instance, .. }
            | Self::ClearNewMk { instance, .. }
            | Self::ClearCurrentMk { instance, .. }
            | Self::RewrapKeyStorage { instance }
            | Self::SetImmediate { instance, .. } => instance,
        }
    }

    pub fn unit(&self) -> Option<&str> {
        match self {
            Self::LoadNewMk { unit, .. }
            | Self::CommitNewMk { unit, .. }
            | Self::ClearNewMk { unit, .. }
            | Self::ClearCurrentMk { unit, .. }
            | Self::SetImmediate { unit, .. } => Some(unit),
            Self::RewrapKeyStorage { .. } => None,
        }
    }
}

/// The service said no; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Applies one operation to the fleet; on `Err` nothing changed.
pub fn perform(fleet: &mut Fleet, operation: &SimOperation) -> Result<(), Refused> {
    let instance = fleet
        .instance_mut(operation.instance())
        .ok_or_else(|| Refused(format!("no service instance {}", operation.instance())))?;
    let mut incidents = Vec::new();
    match operation {
        SimOperation::RewrapKeyStorage { .. } => rewrap(instance, &mut incidents)?,
        unit_operation => {
            let hsm_id = unit_operation.unit().expect("unit operations name a unit");
            let storage = instance.key_storage.verification_pattern.clone();
            let unit = instance
                .crypto_units
                .iter_mut()
                .find(|u| u.hsm_id.eq_ignore_ascii_case(hsm_id))
                .ok_or_else(|| {
                    Refused(format!(
                        "no crypto unit {hsm_id} in instance {}",
                        operation.instance()
                    ))
                })?;
            if unit.mode == Mode::Imprint {
                return Err(Refused(format!(
                    "crypto unit {hsm_id} is in imprint mode: register commands are refused"
                )));
            }
            if let Some(incident) = on_unit(unit, unit_operation, &storage)? {
                incidents.push(incident);
            }
        }
    }
    let storage = &instance.key_storage.verification_pattern;
    if instance
        .crypto_units
        .iter()
        .all(|u| u.current_register.holds(storage))
    {
        // Every unit is promoted: the service no longer waits on set immediate.
        instance.key_storage.rewrapped_from = None;
    }
    if !instance.key_storage.unusable && !instance.key_storage_held() {
        instance.key_storage.unusable = true;
        incidents.push(format!(
            "after {}, no register of the instance holds the key storage's master key {}: the key storage ({} keys) is unusable",
            operation.name(),
            instance.key_storage.verification_pattern,
            instance.key_storage.keys
        ));
    }
    let instance_id = instance.id.clone();
    fleet
        .incidents
        .extend(incidents.into_iter().map(|description| Incident {
            instance: instance_id.clone(),
            unit: operation.unit().map(str::to_string),
            operation: operation.name().into(),
            description,
        }));
    Ok(())
}

fn on_unit(
    unit: &mut CryptoUnit,
    operation: &SimOperation,
    storage: &VerificationPattern,
) -> Result<Option<String>, Refused> {
    let id = unit.hsm_id.clone();
    match operation {
        SimOperation::LoadNewMk {
            verification_pattern,
            ..
        } => {
            if unit.new_register != NewRegister::Empty {
                return Err(Refused(format!(
                    "the new register of crypto unit {id} is {}: clear it before loading",
                    unit.new_register.status()
                )));
            }
            unit.new_register = NewRegister::FullUncommitted(verification_pattern.clone());
        }
        SimOperation::CommitNewMk {
            verification_pattern,
            ..
        } => match &unit.new_register {
            NewRegister::FullUncommitted(vp) if vp == verification_pattern => {
                unit.new_register = NewRegister::FullCommitted(vp.clone());
            }
            NewRegister::FullUncommitted(vp) => {
                return Err(Refused(format!(
                    "commit on crypto unit {id}: the verification pattern given does not match the new register's {vp}"
                )));
            }
            other => {
                return Err(Refused(format!(
                    "commit on crypto unit {id}: the new register is {}, not Full Uncommitted",
                    other.status()
                )));
            }
        },
        SimOperation::ClearNewMk { .. } => unit.new_register = NewRegister::Empty,
        SimOperation::ClearCurrentMk { .. } => unit.current_register = CurrentRegister::Empty,
        SimOperation::SetImmediate { .. } => {
            let Some(staged) = unit.new_register.committed().cloned() else {
                return Err(Refused(format!(
                    "set immediate on crypto unit {id}: the new register is {}, not Full Committed",
                    unit.new_register.status()
                )));
            };
            unit.current_register = CurrentRegister::Valid(staged.clone());
            unit.new_register = NewRegister::Empty;
            if staged != *storage {
                return Ok(Some(format!(
                    "set immediate before the rewrap: crypto unit {id}'s current register now holds {staged} while the key storage is under {storage}; this unit can no longer use the key storage"
                )));
            }
        }
        SimOperation::RewrapKeyStorage { .. } => unreachable!("instance operation"),
    }
    Ok(None)
}

/// The service's rewrap: its pre-checks, then the re-encryption from the current MK to the
/// new one, whether or not the key storage is really under the current MK.
fn rewrap(instance: &mut SimInstance, incidents: &mut Vec<String>) -> Result<(), Refused> {
    let units = &instance.crypto_units;
    if let Some(unit) = units.iter().find(|u| u.mode == Mode::Imprint) {
        return Err(Refused(format!(
            "rewrap refused: crypto unit {} is in imprint mode",
            unit.hsm_id
        )));
    }
    let from = common(
        units
            .iter()
            .map(|u| u.current_register.verification_pattern()),
    );
    let to = common(units.iter().map(|u| u.new_register.committed()));
    let (Some(from), Some(to)) = (from, to) else {
        return Err(Refused(
            "rewrap refused: every current register must be Valid with the same verification pattern and every new register Full Committed with the same verification pattern".into(),
        ));
    };
    let storage = &mut instance.key_storage;
    if storage.verification_pattern != from && !storage.unusable {
        storage.unusable = true;
        incidents.push(format!(
            "rewrap started again after it completed: the key storage, under {}, was re-encrypted as if it were under {from}; its {} keys are lost",
            storage.verification_pattern, storage.keys
        ));
    }
    storage.verification_pattern = to;
    storage.rewrapped_from = Some(from);
    Ok(())
}

fn common<'a>(
    mut vps: impl Iterator<Item = Option<&'a VerificationPattern>>,
) -> Option<VerificationPattern> {
    let first = vps.next()??;
    vps.all(|vp| vp == Some(first)).then(|| first.clone())
}
