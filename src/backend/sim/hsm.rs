//! What the service and its crypto units do with each operation: the simulator's rules. It
//! refuses what the HSM refuses, and *performs* what the HSM performs even when that destroys
//! the key storage, recording each loss as an incident. After every operation it checks the
//! key-safety invariant: some register of the instance holds the key storage's MK (the loss
//! rule every backend shares, `model::loss`).
//!
//! The rewrap, its pre-checks and its slow completion are in `rewrap`. Time comes in as
//! `now_ms` (see `clock`), so these rules stay pure.

use std::collections::BTreeSet;

use super::fleet::{Fleet, Incident, SimInstance};
use super::rewrap;
use crate::model::{CryptoUnit, CurrentRegister, Mode, NewRegister, VerificationPattern};

pub use super::rewrap::complete_rewraps;

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
    /// With `verification_pattern`, the clear names the key it clears: it clears only a new
    /// register that still holds exactly that key, is a no-op on an empty one, and is refused
    /// ([`Refused::Changed`]) when the register holds another key, so a clear that arrives late
    /// (queued at a slow service) never clears a key loaded since. Without it, the register is
    /// cleared whatever it holds (unsafe against late arrival).
    ClearNewMk {
        instance: String,
        unit: String,
        verification_pattern: Option<VerificationPattern>,
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
pub enum Refused {
    /// The operation breaks a rule of the service or of the crypto unit.
    #[error("{0}")]
    Rule(String),
    /// The instance is running a rewrap and takes no command until it completes: the same
    /// command may succeed later.
    #[error("{0}")]
    Busy(String),
    /// The register the command names a key for now holds another key: the command is stale
    /// (it may have arrived late) and changed nothing.
    #[error("{0}")]
    Changed(String),
}

impl Refused {
    pub fn reason(&self) -> &str {
        match self {
            Self::Rule(reason) | Self::Busy(reason) | Self::Changed(reason) => reason,
        }
    }
}

/// A refusal for breaking a rule.
pub(super) fn refuse<T>(reason: String) -> Result<T, Refused> {
    Err(Refused::Rule(reason))
}

/// What the service did with an operation it accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// The operation has taken effect.
    Done,
    /// A rewrap started; it completes when the clock passes `completes_at_ms`.
    RewrapRunning { completes_at_ms: u64 },
}

/// Applies one operation at time `now_ms`; on `Err` nothing changed. The rewraps that are due
/// complete first, as they would have on the service whether or not anyone looked.
pub fn perform_at(
    fleet: &mut Fleet,
    operation: &SimOperation,
    now_ms: u64,
) -> Result<Accepted, Refused> {
    complete_rewraps(fleet, now_ms);
    let instance = fleet
        .instance_mut(operation.instance())
        .ok_or_else(|| Refused::Rule(format!("no service instance {}", operation.instance())))?;
    rewrap::refuse_while_running(instance, operation, now_ms)?;
    let mut incidents = Vec::new();
    let accepted = match operation {
        SimOperation::RewrapKeyStorage { .. } => rewrap::start(instance, now_ms, &mut incidents)?,
        unit_operation => {
            on_instance_unit(instance, unit_operation, &mut incidents)?;
            Accepted::Done
        }
    };
    after_operation(instance, operation, &mut incidents);
    let instance_id = instance.id.clone();
    fleet
        .incidents
        .extend(incidents.into_iter().map(|description| Incident {
            instance: instance_id.clone(),
            unit: operation.unit().map(str::to_string),
            operation: operation.name().into(),
            description,
        }));
    // A rewrap of an empty key storage (or at zero cost per key) is done as it starts.
    Ok(match accepted {
        Accepted::RewrapRunning { completes_at_ms } if completes_at_ms <= now_ms => {
            complete_rewraps(fleet, now_ms);
            Accepted::Done
        }
        other => other,
    })
}

/// Applies one operation as if no time passed and every rewrap completed at once: for tests
/// of plans, where only the order of operations matters.
pub fn perform(fleet: &mut Fleet, operation: &SimOperation) -> Result<(), Refused> {
    complete_rewraps(fleet, u64::MAX);
    perform_at(fleet, operation, 0)?;
    complete_rewraps(fleet, u64::MAX);
    Ok(())
}

/// The bookkeeping after every accepted operation: the service forgets a rewrap once every
/// unit is promoted, and a key storage no register can decrypt any more is lost.
fn after_operation(
    instance: &mut SimInstance,
    operation: &SimOperation,
    incidents: &mut Vec<String>,
) {
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
}

fn on_instance_unit(
    instance: &mut SimInstance,
    operation: &SimOperation,
    incidents: &mut Vec<String>,
) -> Result<(), Refused> {
    let hsm_id = operation.unit().expect("unit operations name a unit");
    let storage = instance.key_storage.verification_pattern.clone();
    let unit = instance
        .crypto_units
        .iter_mut()
        .find(|u| u.hsm_id.eq_ignore_ascii_case(hsm_id))
        .ok_or_else(|| {
            Refused::Rule(format!(
                "no crypto unit {hsm_id} in instance {}",
                operation.instance()
            ))
        })?;
    if unit.mode == Mode::Imprint {
        return refuse(format!(
            "crypto unit {hsm_id} is in imprint mode: register commands are refused"
        ));
    }
    incidents.extend(on_unit(unit, operation, &storage)?);
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
                return refuse(format!(
                    "the new register of crypto unit {id} is {}: clear it before loading",
                    unit.new_register.status()
                ));
            }
            if unit.current_register.holds(verification_pattern) {
                return refuse(format!(
                    "load on crypto unit {id}: the key parts combine into {verification_pattern}, the unit's current master key; a rotation needs a new key (at least one key part must change)"
                ));
            }
            unit.new_register = NewRegister::FullUncommitted(verification_pattern.clone());
        }
        SimOperation::CommitNewMk {
            verification_pattern,
            signers,
            ..
        } => {
            check_signatures(unit, "commit", signers)?;
            match &unit.new_register {
                NewRegister::FullUncommitted(vp) if vp == verification_pattern => {
                    unit.new_register = NewRegister::FullCommitted(vp.clone());
                }
                NewRegister::FullUncommitted(vp) => {
                    return refuse(format!(
                        "commit on crypto unit {id}: the verification pattern given does not match the new register's {vp}"
                    ));
                }
                other => {
                    return refuse(format!(
                        "commit on crypto unit {id}: the new register is {}, not Full Uncommitted",
                        other.status()
                    ));
                }
            }
        }
        SimOperation::ClearNewMk {
            verification_pattern: Some(named),
            ..
        } if !unit.new_register.holds(named) => {
            if unit.new_register == NewRegister::Empty {
                // The key is gone either way: a clear repeated or arriving late is a no-op.
                return Ok(None);
            }
            return Err(Refused::Changed(format!(
                "clear of the new register of crypto unit {id}: the command names verification pattern {named}, but the new register holds {:#} (its key changed since the clear was sent); nothing was cleared",
                unit.new_register
            )));
        }
        SimOperation::ClearNewMk { .. } => {
            let strands = unit.new_register.holds(storage) && !unit.current_register.holds(storage);
            unit.new_register = NewRegister::Empty;
            if strands {
                return Ok(Some(format!(
                    "clear new of the key storage's master key: crypto unit {id}'s new register held {storage}, which its current register does not hold; the unit can no longer be promoted to it without loading it again (after the rewrap, a new register holding the new key must never be cleared)"
                )));
            }
        }
        SimOperation::ClearCurrentMk { .. } => unit.current_register = CurrentRegister::Empty,
        SimOperation::SetImmediate {
            verification_pattern,
            signers,
            ..
        } => {
            check_signatures(unit, "set immediate", signers)?;
            let staged = match &unit.new_register {
                NewRegister::FullCommitted(staged) if staged == verification_pattern => {
                    staged.clone()
                }
                NewRegister::FullCommitted(staged) => {
                    return refuse(format!(
                        "set immediate on crypto unit {id} names {verification_pattern}, but its new register holds {staged}: the service promotes only the key the command names"
                    ));
                }
                other => {
                    return refuse(format!(
                        "set immediate on crypto unit {id}: the new register is {}, not Full Committed",
                        other.status()
                    ));
                }
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

/// A signed command carries at least the unit's signature threshold of signatures, each by an
/// administrator installed on that unit.
fn check_signatures(unit: &CryptoUnit, command: &str, signers: &[String]) -> Result<(), Refused> {
    let id = &unit.hsm_id;
    if let Some(stranger) = signers.iter().find(|s| unit.administrator(s).is_none()) {
        let installed: Vec<&str> = unit
            .administrators
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        return refuse(format!(
            "{command} on crypto unit {id}: {} signed it but is not an administrator of this unit (its administrators: {}); only installed administrators can sign",
            crate::quote::quote(stranger),
            if installed.is_empty() {
                "none".into()
            } else {
                installed.join(", ")
            }
        ));
    }
    let distinct: BTreeSet<&str> = signers.iter().map(String::as_str).collect();
    let threshold = usize::from(unit.signature_threshold);
    if distinct.len() < threshold {
        return refuse(format!(
            "{command} on crypto unit {id} needs {threshold} signatures (its signature threshold) from different administrators, and has {}{}",
            distinct.len(),
            if distinct.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    distinct.iter().copied().collect::<Vec<_>>().join(", ")
                )
            }
        ));
    }
    Ok(())
}
