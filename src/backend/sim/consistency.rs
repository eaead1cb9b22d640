//! A hand-written fleet must not contradict itself: the rewrap status the simulator reports is
//! derived from the key storage and the registers, and a fleet whose key storage, service
//! memory (`rewrapped_from`, `rewrap_in_progress`) and registers disagree would make it
//! report something no service could. Such a fleet is refused when it is read, with a message
//! that names the instance and the line to correct. The simulator never writes one: every
//! state it reaches satisfies these rules.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;

use super::fleet::{Fleet, REWRAP_MS_PER_KEY_MAX, SimInstance};
use crate::model::{CurrentRegister, InputError, NewRegister};

/// The key of `key_storage` a contradiction is about, to point at its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    VerificationPattern,
    RewrapMsPerKey,
    RewrappedFrom,
    RewrapInProgress,
}

#[derive(Debug)]
pub struct Contradiction {
    /// Index of the instance in the fleet file.
    pub instance: usize,
    pub field: Field,
    pub message: String,
    pub fix: String,
}

impl Contradiction {
    pub fn into_input_error(self, file: &str, text: &str) -> InputError {
        let error = InputError::new(file, self.message).fix(self.fix);
        match locate(text, self.instance, self.field) {
            Some((line, column)) => error.at(text, line, column),
            None => error,
        }
    }
}

/// The first contradiction in the fleet, if any.
pub fn check(fleet: &Fleet) -> Result<(), Contradiction> {
    for (index, instance) in fleet.instances.iter().enumerate() {
        check_instance(instance).map_err(|(field, message, fix)| Contradiction {
            instance: index,
            field,
            message: format!("instance {}: {message}", instance.id),
            fix: fix.into(),
        })?;
    }
    Ok(())
}

type Found = (Field, String, &'static str);

fn check_instance(instance: &SimInstance) -> Result<(), Found> {
    let storage = &instance.key_storage;
    let key = &storage.verification_pattern;
    let units = &instance.crypto_units;
    if storage.rewrap_ms_per_key > REWRAP_MS_PER_KEY_MAX {
        return Err((
            Field::RewrapMsPerKey,
            format!(
                "rewrap_ms_per_key {} is over the limit of {REWRAP_MS_PER_KEY_MAX}",
                storage.rewrap_ms_per_key
            ),
            "the real service re-encrypts a key in about 20 ms; write a value up to the limit",
        ));
    }
    if !storage.unusable && !instance.key_storage_held() {
        return Err((
            Field::VerificationPattern,
            format!(
                "no register holds the key storage's master key {key}, so the key storage is lost, but it is not marked unusable"
            ),
            "correct the registers or the key storage's verification_pattern, or add `unusable: true` under key_storage",
        ));
    }
    if let Some(from) = &storage.rewrapped_from {
        if from == key {
            return Err((
                Field::RewrappedFrom,
                format!(
                    "rewrapped_from is the key storage's own master key {key}: a rewrap moves the key storage to another key"
                ),
                "set rewrapped_from to the key the storage was rewrapped from, or remove it",
            ));
        }
        if units.iter().all(|u| u.current_register.holds(key)) {
            return Err((
                Field::RewrappedFrom,
                format!(
                    "rewrapped_from is set, but every current register already holds the key storage's master key {key}: the service forgets a rewrap once every unit is promoted"
                ),
                "remove rewrapped_from",
            ));
        }
    }
    if let Some(running) = &storage.rewrap_in_progress {
        if storage.rewrapped_from.is_some() {
            return Err((
                Field::RewrapInProgress,
                "a rewrap is in progress and rewrapped_from says one has completed: the service runs one rewrap at a time and forgets the completed one when it starts the next".into(),
                "keep one of rewrap_in_progress and rewrapped_from",
            ));
        }
        if !storage.unusable && running.from != *key {
            return Err((
                Field::RewrapInProgress,
                format!(
                    "a rewrap from {} is in progress, but the key storage is under {key}",
                    running.from
                ),
                "set rewrap_in_progress.from to the key storage's verification_pattern",
            ));
        }
        let staged = units.iter().all(|u| {
            u.current_register == CurrentRegister::Valid(running.from.clone())
                && u.new_register == NewRegister::FullCommitted(running.to.clone())
        });
        if !staged {
            return Err((
                Field::RewrapInProgress,
                format!(
                    "a rewrap from {} to {} is in progress, so every current register must be Valid with the first and every new register Full Committed with the second (no command runs during a rewrap)",
                    running.from, running.to
                ),
                "correct the registers, or remove rewrap_in_progress",
            ));
        }
    }
    Ok(())
}

// Where each key is, read again only when a contradiction is found (the fleet of a large
// benchmark is read without it).

#[derive(Deserialize)]
struct LocatedFleet {
    #[serde(default)]
    instances: Vec<LocatedInstance>,
}

#[derive(Deserialize)]
struct LocatedInstance {
    key_storage: Spanned<LocatedKeyStorage>,
}

#[derive(Deserialize)]
struct LocatedKeyStorage {
    verification_pattern: Spanned<IgnoredAny>,
    #[serde(default)]
    rewrap_ms_per_key: Option<Spanned<IgnoredAny>>,
    #[serde(default)]
    rewrapped_from: Option<Spanned<IgnoredAny>>,
    #[serde(default)]
    rewrap_in_progress: Option<Spanned<IgnoredAny>>,
}

/// Line and column of `field` in the `instance`-th instance of the fleet file.
fn locate(text: &str, instance: usize, field: Field) -> Option<(u64, u64)> {
    let located: LocatedFleet = crate::model::from_yaml_str(text).ok()?;
    let storage = located.instances.get(instance)?;
    let at = |s: &Spanned<IgnoredAny>| (s.referenced.line(), s.referenced.column());
    let found = match field {
        Field::VerificationPattern => Some(&storage.key_storage.value.verification_pattern),
        Field::RewrapMsPerKey => storage.key_storage.value.rewrap_ms_per_key.as_ref(),
        Field::RewrappedFrom => storage.key_storage.value.rewrapped_from.as_ref(),
        Field::RewrapInProgress => storage.key_storage.value.rewrap_in_progress.as_ref(),
    };
    Some(found.map_or_else(
        || {
            let s = &storage.key_storage;
            (s.referenced.line(), s.referenced.column())
        },
        at,
    ))
}
