//! The errors a command can end with, and the exit code each maps to (contract.md):
//! 1 for bad input, unreachable backends and failed steps; 3 for a safety refusal; 4 for a
//! stale plan.

use crate::backend::BackendError;
use crate::model::InputError;
use crate::plan::PlanRefused;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Input(#[from] InputError),
    #[error("{0}")]
    Backend(#[from] BackendError),
    #[error("{0}")]
    Refused(#[from] PlanRefused),
    #[error("{0}")]
    Stale(String),
    /// Evidence that is damaged or contradicts itself (a corrupt journal): stop, exit 3.
    #[error("{0}")]
    Unsafe(String),
    /// Anything else the operator can fix: the message says how.
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Refused(_) | Self::Unsafe(_) => 3,
            Self::Stale(_) => 4,
            Self::Input(_) | Self::Backend(_) | Self::Other(_) => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
