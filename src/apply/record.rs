//! What the journal records: the records themselves (an intent before every operation, an
//! outcome after it, the rotation's start and close, attestations, roll-backs), the outcomes
//! an operation can have, and their time stamps. How they are written, sealed and read back
//! is `journal`'s.

use serde::{Deserialize, Serialize};

use super::journal_key::SealFault;
use crate::model::VerificationPattern;
use crate::plan::Action;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// An apply run begins; `run` counts runs in this journal from 1. Intents and outcomes
    /// name their step as `r{run}.{step id}`, unique across runs. `backend` is the identity of
    /// the backend the run acts on: every intent of the run is bound to it.
    ApplyStarted {
        run: u32,
        plan_sha256: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backend: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
        /// The audit trail's head when the run began: anchors it, so that removing its last
        /// entries is seen (`audit::verify_anchored`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audit: Option<AuditHead>,
    },
    /// The audit trail's head when a run ended.
    AuditAnchored {
        audit: AuditHead,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// An instance's rotation begins under this journal: its key storage is under `from`. The
    /// record is bound to the backend's identity and to the crypto units (hsm_ids, sorted) and
    /// their registers (`registers`: the live instance's fingerprint) at its start: it is
    /// evidence for that backend and those units only.
    RotationStarted {
        instance: String,
        from: VerificationPattern,
        to: VerificationPattern,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backend: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        units: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        registers: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
        /// The other folders' and scopes' rewraps of the instance that the plan beginning the
        /// rotation weighed (`FolderRewrap::witnessed`; it found none of them able to land
        /// then): a completed one among them speaks no more against this rotation
        /// (`plan::evidence_folders`). None: a record an older mkplan made, whose rotation is
        /// ordered against them by time stamps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weighed: Option<Vec<String>>,
    },
    /// About to send an operation, or (`by_hand`) to show the operator a ceremony step.
    Intent {
        step: String,
        action: Action,
        instance: String,
        unit: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        by_hand: bool,
        /// On a journal that other writers can take over (a database's): the operation is
        /// sent within this many milliseconds of the intent being committed, or never. A
        /// writer that takes over waits for it before settling the intent from the live
        /// state (`backend::send_by`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        send_within_ms: Option<u64>,
        /// A rewrap's: when its intent was written (UTC, RFC 3339), for people and for a
        /// rotation begun before it (`plan::evidence_folders`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// What came of the intent with the same `step`.
    Outcome {
        step: String,
        outcome: Outcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// The operator's word about the rewrap of one rotation (`mkplan attest rewrap`), bound
    /// like a rotation record. `ran`: the rewrap completed (true) or did not run (false).
    Attested {
        instance: String,
        backend: String,
        units: Vec<String>,
        from: VerificationPattern,
        to: VerificationPattern,
        ran: bool,
        /// What the operator attests, in words, as it was put to them.
        statement: String,
        /// With `--service-evidence`: what the service showed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service_evidence: Option<String>,
        at: String,
        /// `at` in seconds since the Unix epoch: an attestation expires.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_unix: Option<u64>,
        /// The rewraps of this instance that the other state folders and scopes held when
        /// it was made (`FolderRewrap::witnessed`): the only ones it speaks for. Another
        /// folder's rewrap not among them came after it, whatever the clocks say
        /// (`plan::evidence_folders`). None: an attestation an older mkplan made, which
        /// speaks for none of them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weighed: Option<Vec<String>>,
    },
    /// `mkplan journal close`: the live state showed this instance's rotation finished; the
    /// records before this one say nothing more about it.
    RotationClosed {
        instance: String,
        backend: String,
        why: String,
        at: String,
    },
    /// The journal was found shorter than, or different from, what this user's mkplan last
    /// wrote to it (`journal_key::Head`): cut back, or replaced by an older copy. Nothing
    /// before this record is evidence. Written when a run or an attestation opens such a
    /// journal; shown, not written, when `plan` reads it.
    RolledBack {
        /// The records mkplan had last written, and those found.
        expected: u64,
        found: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
        /// What else showed it, when not the count (a database that is a copy or a restore).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        why: Option<String>,
    },
    /// An apply found the service running a rewrap after this journal saw the rotation's own
    /// rewrap complete: one mkplan did not send. Kept so that every later plan refuses, even
    /// once that rewrap has ended and the service looks as it did after the first.
    ForeignRewrapSeen {
        instance: String,
        backend: String,
        from: VerificationPattern,
        to: VerificationPattern,
        seen: String,
        at: String,
    },
    /// `mkplan state push` moved this folder's journal into a database (`to`, without a
    /// password): it continues there, and the folder is an archive from now on. Every
    /// command that would read the folder as evidence, or append to it, refuses.
    Pushed { to: String, at: String },
    /// A record read from the file whose seal does not verify: kept to be named, never
    /// evidence. Never written.
    #[serde(skip)]
    Unauthenticated {
        /// Its line in the journal, from 1.
        line: usize,
        why: SealFault,
        record: Box<Record>,
    },
}

impl Record {
    /// The outcome record of `step`, stamped with the time.
    pub fn outcome(step: String, outcome: Outcome) -> Self {
        Self::Outcome {
            step,
            outcome,
            at: Some(utc_now()),
        }
    }

    /// The record as written, authenticated or not.
    pub fn written(&self) -> &Record {
        match self {
            Self::Unauthenticated { record, .. } => record,
            other => other,
        }
    }

    /// What the record is, in a word, for messages.
    pub fn kind(&self) -> &'static str {
        match self.written() {
            Self::ApplyStarted { .. } => "apply started",
            Self::AuditAnchored { .. } => "audit anchor",
            Self::RotationStarted { .. } => "rotation started",
            Self::Intent { .. } => "intent",
            Self::Outcome { .. } => "outcome",
            Self::Attested { .. } => "attestation",
            Self::RotationClosed { .. } => "rotation closed",
            Self::RolledBack { .. } => "rolled back",
            Self::Pushed { .. } => "pushed",
            Self::ForeignRewrapSeen { .. } => "foreign rewrap seen",
            Self::Unauthenticated { .. } => "unauthenticated",
        }
    }
}

/// How many entries the audit trail held, and the SHA-256 of the last one's line
/// (`audit::CHAIN_START` for none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    pub entries: u64,
    pub head: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The operation took effect (for a rewrap: mkplan's own "KMS CRK rewrap successful").
    Done,
    /// The service refused it, or it failed with no effect.
    NotDone {
        reason: String,
    },
    /// A lost response settled later by reading the live state.
    SettledDone {
        evidence: String,
    },
    SettledNotDone {
        evidence: String,
    },
    /// Not sent again: the service was running a rewrap that mkplan did not send, after this
    /// rotation's own rewrap had completed. It had no effect; the rotation's evidence is
    /// contradicted until IBM support's word is attested (`JournalRotation::foreign_rewrap`).
    ForeignRewrap {
        evidence: String,
    },
}

impl Outcome {
    pub fn took_effect(&self) -> bool {
        matches!(self, Self::Done | Self::SettledDone { .. })
    }
}

/// Seconds since the Unix epoch, from the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 UTC from the system clock (`crate::timestamp`): the time
/// stamps of journal records, shown to the operator as "witnessed the commits at T".
pub fn utc_now() -> String {
    crate::timestamp::utc_now()
}
