//! What mkplan's own journal says about a rotation, as the planner needs it. The journal file
//! itself lives in `apply`; this is the pure summary the planner takes as input, so planning
//! stays a function of (desired, live, journal evidence).
//!
//! A journal is one witness among others: one folder on one machine. It speaks only of the
//! rotations it recorded against this backend and these crypto units, and only of what it
//! saw; the planner (`plan::evidence`) decides what that proves.

use std::collections::{BTreeMap, BTreeSet};

use super::VerificationPattern;

/// How long an attestation stays in force at most, even when no apply run follows it: it
/// speaks of the moment it was made, and other operators may act after it.
pub const ATTESTATION_TTL_S: u64 = 900;

/// The journal's word on the rewrap of one rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalRewrap {
    /// This journal never sent the rewrap of this rotation.
    NotSent,
    /// This journal sent it and never learnt its outcome (a crash, a lost response): unknown.
    /// `sent_at`: when the run that sent it began. `by_hand`: a ceremony step, shown to the
    /// operator (who runs the TKE CLI command) and left without their word: mkplan sent
    /// nothing itself.
    Unsettled {
        sent_at: Option<String>,
        by_hand: bool,
    },
    /// It completed: mkplan's own "KMS CRK rewrap successful", the service's status read
    /// later, or the operator's attestation. `how` says which.
    Completed { how: String },
    /// It was sent and did not run, settled by evidence about that very request.
    NotRun { how: String },
}

/// The operator's attestation about the rewrap of this rotation, still in force: made after
/// the last apply run in this journal began, and not older than `ATTESTATION_TTL_S`. It
/// covers the time between the run before it and now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreshAttestation {
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRotation {
    pub from: VerificationPattern,
    pub to: VerificationPattern,
    /// The crypto units (hsm_ids, lower case, sorted) the rotation was recorded against.
    pub units: Vec<String>,
    pub started_at: Option<String>,
    pub rewrap: JournalRewrap,
    /// Crypto units whose load of `to` this journal saw take effect.
    pub loaded: BTreeSet<String>,
    /// Crypto units whose commit of `to` this journal saw take effect, and when the last was.
    pub committed: BTreeSet<String>,
    pub committed_at: Option<String>,
    /// Crypto units whose set immediate to `to` this journal saw take effect, and those whose
    /// set immediate it sent without learning the outcome.
    pub promoted: BTreeSet<String>,
    pub promotion_sent: BTreeSet<String>,
    /// A not-run attestation still in force.
    pub attested_not_run: Option<FreshAttestation>,
    /// A completed attestation still in force: it vouches that the rewrap this journal saw
    /// complete is still the last one (nobody rotated on and back since).
    pub attested_completed: Option<FreshAttestation>,
}

/// Per service instance id (lower case), the latest open rotation this journal recorded
/// against the backend being planned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalEvidence {
    /// The journal, as the operator knows it: "the journal in .mkplan".
    pub witness: String,
    /// The desired file being planned, for the commands a refusal suggests.
    pub desired_file: String,
    pub rotations: BTreeMap<String, JournalRotation>,
    /// Per instance id, the other backends this journal holds rotation records of: they are
    /// no evidence here, but a refusal names them.
    pub elsewhere: BTreeMap<String, BTreeSet<String>>,
    /// Per instance id, the first record about it whose seal did not verify, and why: it and
    /// everything this journal recorded of the instance before it are no evidence.
    pub unauthenticated: BTreeMap<String, String>,
    /// The same for a record that may concern every instance (an apply run's start).
    pub unauthenticated_all: Option<String>,
}

impl JournalEvidence {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn rotation(&self, instance: &str) -> Option<&JournalRotation> {
        self.rotations.get(&instance.to_ascii_lowercase())
    }

    pub fn elsewhere(&self, instance: &str) -> Option<&BTreeSet<String>> {
        self.elsewhere.get(&instance.to_ascii_lowercase())
    }

    /// Why this journal's records of `instance` are no evidence, if some are not.
    pub fn unauthenticated(&self, instance: &str) -> Option<&str> {
        self.unauthenticated
            .get(&instance.to_ascii_lowercase())
            .or(self.unauthenticated_all.as_ref())
            .map(String::as_str)
    }
}
