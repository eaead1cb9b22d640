//! Steps and their actions. The action is the symbol an operator reads (OpenTofu's `+`/`-`),
//! and one name per concept is used in code, JSON and text alike.

use std::collections::HashMap;
use std::fmt;

use crate::model::{CurrentRegister, NewRegister, VerificationPattern};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    ClearNewMk,
    LoadNewMk,
    CommitNewMk,
    RewrapKeyStorage,
    RemoveUnit,
    SetImmediate,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Self::ClearNewMk,
        Self::LoadNewMk,
        Self::CommitNewMk,
        Self::RewrapKeyStorage,
        Self::RemoveUnit,
        Self::SetImmediate,
    ];

    /// The name in JSON and in the operator's words elsewhere.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClearNewMk => "clear_new_mk",
            Self::LoadNewMk => "load_new_mk",
            Self::CommitNewMk => "commit_new_mk",
            Self::RewrapKeyStorage => "rewrap_key_storage",
            Self::RemoveUnit => "remove_unit",
            Self::SetImmediate => "set_immediate",
        }
    }

    pub fn symbol(self) -> char {
        match self {
            Self::ClearNewMk => '-',
            Self::LoadNewMk => '+',
            Self::CommitNewMk => '~',
            Self::RewrapKeyStorage => '!',
            Self::RemoveUnit => '/',
            Self::SetImmediate => '>',
        }
    }

    /// As the TKE CLI's documentation says it.
    pub fn label(self) -> &'static str {
        match self {
            Self::ClearNewMk => "clear new master key register",
            Self::LoadNewMk => "load new master key",
            Self::CommitNewMk => "commit new master key",
            Self::RewrapKeyStorage => "rewrap key storage",
            Self::RemoveUnit => "remove crypto unit from the selection",
            Self::SetImmediate => "set immediate",
        }
    }

    /// Whether the step can be undone without loss. A commit can be undone by clearing the
    /// new register (before the rewrap); a clear destroys the staged key; a rewrap and a set
    /// immediate cannot be taken back.
    pub fn reversible(self) -> bool {
        matches!(self, Self::LoadNewMk | Self::CommitNewMk | Self::RemoveUnit)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    pub action: Action,
    pub instance: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub depends_on: Vec<String>,
    pub reversible: bool,
    /// Administrator signatures the step needs.
    pub signatures: u32,
    pub description: String,
    /// The rewrap: after it, the rotation can only go forward.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub point_of_no_return: bool,
}

/// The steps of each service instance, in the order given: one pass, so views and checks of
/// large fleets stay linear.
pub fn by_instance<'a>(
    steps: impl IntoIterator<Item = &'a Step>,
) -> HashMap<&'a str, Vec<&'a Step>> {
    let mut grouped: HashMap<&str, Vec<&Step>> = HashMap::new();
    for step in steps {
        grouped
            .entry(step.instance.as_str())
            .or_default()
            .push(step);
    }
    grouped
}

/// What a step does to one crypto unit's registers when it succeeds (rotating to `target`).
pub fn effect(
    action: Action,
    new: &mut NewRegister,
    current: &mut CurrentRegister,
    target: &VerificationPattern,
) {
    match action {
        Action::ClearNewMk => *new = NewRegister::Empty,
        Action::LoadNewMk => *new = NewRegister::FullUncommitted(target.clone()),
        Action::CommitNewMk => *new = NewRegister::FullCommitted(target.clone()),
        Action::SetImmediate => {
            if let Some(vp) = new.verification_pattern() {
                *current = CurrentRegister::Valid(vp.clone());
            }
            *new = NewRegister::Empty;
        }
        Action::RewrapKeyStorage | Action::RemoveUnit => {}
    }
}
