//! What mkplan's own journal says about a rotation, as the planner needs it. The journal file
//! itself lives in `apply`; this is the pure summary the planner takes as input, so planning
//! stays a function of (desired, live, journal evidence).

use std::collections::BTreeMap;

use super::VerificationPattern;

/// The journal's word on the rewrap of one instance, for the rotation to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalRewrap {
    /// mkplan ran this rotation's earlier steps and never sent a rewrap: the key storage is
    /// still under `from`.
    NotStarted { from: VerificationPattern },
    /// A rewrap was sent and its outcome never recorded (crash, lost response): unknown.
    Unsettled { from: VerificationPattern },
    /// The rewrap completed: mkplan's own "KMS CRK rewrap successful".
    Completed { from: VerificationPattern },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRotation {
    pub to: VerificationPattern,
    pub rewrap: JournalRewrap,
}

/// Per service instance id, the rotation the journal knows about, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalEvidence {
    pub rotations: BTreeMap<String, JournalRotation>,
}

impl JournalEvidence {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn rotation(&self, instance: &str) -> Option<&JournalRotation> {
        self.rotations.get(instance)
    }
}
