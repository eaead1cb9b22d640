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
    /// The other folders' rewraps it weighed (`FolderRewrap::witnessed`); None: it names
    /// none (an older mkplan's).
    pub weighed: Option<Vec<String>>,
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
    /// A step of this rotation found the service running a rewrap mkplan did not send, after
    /// its own had completed (what it saw): the key storage may be lost. Only the operator's
    /// `--completed` attestation with the service's evidence (IBM support) settles it.
    pub foreign_rewrap: Option<String>,
}

/// Per service instance id (lower case), the latest open rotation this journal recorded
/// against the backend being planned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalEvidence {
    /// The journal, as the operator knows it: "the journal in .mkplan".
    pub witness: String,
    /// The desired file being planned, for the commands a refusal suggests.
    pub desired_file: String,
    /// The backend identity this evidence's records were made against (`Backend::identity`):
    /// a refusal that asks the operator to confirm a record names it.
    pub backend: String,
    pub rotations: BTreeMap<String, JournalRotation>,
    /// Per instance id, the other backends this journal holds rotation records of: they are
    /// no evidence here, but a refusal names them.
    pub elsewhere: BTreeMap<String, BTreeSet<String>>,
    /// Per instance id, the first record about it whose seal did not verify, and why: it and
    /// everything this journal recorded of the instance before it are no evidence.
    pub unauthenticated: BTreeMap<String, String>,
    /// The same for a record that may concern every instance (an apply run's start).
    pub unauthenticated_all: Option<String>,
    /// Per instance id, the rewraps records this journal cannot vouch for say mkplan sent
    /// (their seal does not verify, or a record after them voids them): no evidence of
    /// anything, but reason enough to refuse what would be unsafe were they true.
    pub unverified_rewraps: BTreeMap<String, Vec<RewrapOnRecord>>,
    /// Per instance id, the rewraps records made against other backends (another fleet
    /// file's path, another endpoint of one service) say were sent and never answered, or
    /// seen to complete, in a rotation not closed there, with that backend's identity. They
    /// are no evidence here (a rehearsal is not the real service), but the same instance id
    /// may be this very service reached another way: reason enough to refuse "nobody
    /// rewrapped" on the operator's word alone.
    pub rewraps_elsewhere: BTreeMap<String, Vec<(String, RewrapOnRecord)>>,
    /// Per instance id, this journal's latest rotation of it against this backend, open or
    /// closed: when it began and what the plan that began it weighed.
    pub began: BTreeMap<String, Began>,
    /// What the other state folders of this machine say that this journal never heard.
    pub other_folders: OtherFolders,
}

/// The start of a rotation, as its record says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Began {
    /// When (UTC, RFC 3339).
    pub at: Option<String>,
    /// The other folders' rewraps of the instance its plan weighed (`FolderRewrap::witnessed`);
    /// None for a record an older mkplan made: it weighed what every other state folder said
    /// until `at`, as far as clocks tell.
    pub weighed: Option<Vec<String>>,
}

/// The other state folders this user's mkplan wrote on this machine (their heads lie beside
/// the journal key: `store::files::other_folders`). Other witnesses, each of what it saw: a
/// rewrap one of them sent may still be queued at the service, or have run, and this journal
/// knows nothing of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtherFolders {
    /// Per service instance id (lower case), the rewraps they say mkplan sent (never
    /// answered, or completed) in a rotation not closed there, against whatever backend: one
    /// service reached another way has another identity.
    pub rewraps: BTreeMap<String, Vec<FolderRewrap>>,
    /// Folders mkplan wrote that cannot be read now: any of them may hold such a rewrap of any
    /// instance.
    pub unread: Vec<UnreadFolder>,
}

/// A rewrap another state folder's journal says mkplan sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderRewrap {
    /// The state folder, as a command names it; for another scope of the database this
    /// journal is in, that database as shown.
    pub state_dir: String,
    /// Another scope of the same database (another identity of the same instance id: the
    /// service reached through another endpoint), when the record is there and not in a
    /// folder.
    pub scope: Option<String>,
    /// The backend identity its records name.
    pub backend: String,
    pub rewrap: RewrapOnRecord,
}

impl FolderRewrap {
    /// What names this rewrap in an attestation that weighed it (`Record::Attested::weighed`):
    /// its folder or scope, backend, step and intent's time, never whether it was answered
    /// (one weighed unanswered and answered since is the same rewrap).
    pub fn witnessed(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.state_dir,
            self.scope.as_deref().unwrap_or(""),
            self.backend,
            self.rewrap.step,
            self.rewrap.intent_at.as_deref().unwrap_or("")
        )
    }
}

/// A state folder with a head among the journal key's heads, whose journal cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadFolder {
    /// The folder its head names.
    pub state_dir: String,
    /// The head file, which keeps the folder asked about until it is removed.
    pub head: String,
    pub why: String,
    /// The instances its head says had a rewrap sent in a rotation not closed there when
    /// mkplan last wrote it; None: any.
    pub instances: Option<Vec<String>>,
}

impl OtherFolders {
    /// The rewraps of `instance` other folders say were sent.
    pub fn rewraps_of(&self, instance: &str) -> &[FolderRewrap] {
        self.rewraps
            .get(&instance.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

impl OtherFolders {
    /// The folders that cannot be read and may hold a rewrap of `instance`.
    pub fn unread_for(&self, instance: &str) -> Vec<&UnreadFolder> {
        let instance = instance.to_ascii_lowercase();
        self.unread
            .iter()
            .filter(|u| u.instances.as_ref().is_none_or(|i| i.contains(&instance)))
            .collect()
    }
}

impl FolderRewrap {
    /// "the journal in /srv/s1 says that against sim:/x/fleet.yaml, mkplan's own rewrap … was
    /// sent … and never answered".
    pub fn describe(&self) -> String {
        match &self.scope {
            Some(scope) => format!(
                "the journal of {scope} in {} (another backend identity of this instance id in the same database) says that against {}, {}",
                self.state_dir,
                self.backend,
                self.rewrap.describe()
            ),
            None => format!(
                "the journal in {} says that against {}, {}",
                crate::quote::name(&self.state_dir),
                self.backend,
                self.rewrap.describe()
            ),
        }
    }

    /// Where the rotation it belongs to is settled: `--state DIR` for a folder; for another
    /// scope of the database, the backend that scope is.
    pub fn settle_with(&self) -> String {
        match &self.scope {
            Some(scope) => format!(
                "through the backend those records were made with ({scope}: the same `--backend`, and for `tke:` the same `--tke-endpoint`), against this same database"
            ),
            None => format!(
                "with that folder (`--state {}`), or push it into this store once no run holds it (`mkplan state push --from {}`)",
                crate::quote::name(&self.state_dir),
                crate::quote::name(&self.state_dir)
            ),
        }
    }
}

impl UnreadFolder {
    /// What `state_dir` says when the head that named the folder cannot be read itself.
    pub const UNKNOWN: &'static str = "(the folder its head names cannot be read)";
    /// The start of `why` for a folder written with an earlier journal key.
    pub const EARLIER_KEY: &'static str = "its journal was sealed with an earlier journal key";
    /// Every folder: the journal key, or the folder of its heads, cannot be read (`head`
    /// names the key), so which folders left a head cannot be told.
    pub const HEADS: &'static str =
        "(every state folder of this machine: the journal heads cannot be read)";
    /// `head` of a `HEADS` entry when no variable says where the heads are kept.
    pub const NO_HOME: &'static str = "XDG_STATE_HOME or HOME";

    /// What makes it answer again, or takes it out of the check on the operator's word.
    pub fn remedy(&self) -> String {
        let head = crate::quote::name(&self.head);
        if self.state_dir == Self::HEADS && self.head == Self::NO_HOME {
            return "run mkplan with HOME (or XDG_STATE_HOME) set as it was when those state folders were written: their heads are kept under it".into();
        }
        if self.state_dir == Self::HEADS {
            return format!(
                "make the journal key {head} and the folders of its heads yours alone again, as the reason above says; until then no other state folder of this machine can be asked whether it sent a rewrap"
            );
        }
        if self.state_dir == Self::UNKNOWN {
            return format!(
                "make its head {head} yours alone and whole again (`chmod 600 {head}`; a head emptied by a crash: run mkplan once in that folder); if no folder of yours can still hold a rewrap, remove that head, which is your word that it holds none"
            );
        }
        let dir = crate::quote::name(&self.state_dir);
        if self.why.starts_with(Self::EARLIER_KEY) {
            return format!(
                "settle it in {dir} itself (`mkplan plan DESIRED --state {dir}` names the records this key cannot verify and what settles them: the service's rotation status, or `attest rewrap … --service-evidence`); once no rewrap it sent can still land, remove its head {head}, which is your word that it holds none"
            );
        }
        format!(
            "make {dir} readable again (its owner: `chmod go-w {dir}`; a folder moved: put it back, or settle it from its new place with --state); if it was removed for good and no rewrap it sent can still land, remove its head {head}, which is your word that it holds none"
        )
    }

    /// "the state folder /srv/s1 (head …) cannot be read: why".
    pub fn describe(&self) -> String {
        if self.state_dir == Self::HEADS {
            return format!(
                "the heads of the other state folders this user's mkplan wrote on this machine cannot be read: {}",
                self.why
            );
        }
        format!(
            "the state folder {} cannot be read: {} (mkplan keeps asking it while its head {} is there)",
            crate::quote::name(&self.state_dir),
            self.why,
            crate::quote::name(&self.head)
        )
    }
}

/// A rewrap of one instance that a journal record says mkplan sent and never heard back
/// from, or saw complete; the operator's rewraps by hand are their own and not among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapOnRecord {
    /// Its intent's step (`rRUN.sN`).
    pub step: String,
    /// The rotation's keys, when a record names them.
    pub from: Option<VerificationPattern>,
    pub to: Option<VerificationPattern>,
    /// A record says it completed; otherwise it was never answered.
    pub completed: bool,
    /// When the run that sent it began.
    pub sent_at: Option<String>,
    /// When its intent was written, where the record says (mkplan writes it for a rewrap).
    pub intent_at: Option<String>,
    /// Every record it rests on verifies.
    pub verified: bool,
    /// A ceremony step: shown to the operator, who ran (or not) the TKE CLI command.
    pub by_hand: bool,
}

impl JournalEvidence {
    /// " (its records were made against BACKEND …)", for a refusal that asks the operator
    /// to confirm what a record says; empty when the backend is unnamed.
    pub fn records_made_against(&self) -> String {
        if self.backend.is_empty() {
            return String::new();
        }
        format!(
            " (the records it relies on were made against {}: if that is not the service you mean, such as a `mkplan sim serve` rehearsal, attest nothing and find out first)",
            self.backend
        )
    }

    /// The journal as messages name it ("the journal in .mkplan"; "the journal" when unnamed).
    pub fn witness_named(&self) -> &str {
        if self.witness.is_empty() {
            "the journal"
        } else {
            &self.witness
        }
    }
}

impl RewrapOnRecord {
    /// It may be the rewrap of the rotation `from` → `to` (a record that names no keys may be
    /// any rotation's).
    pub fn of_rotation(&self, from: &VerificationPattern, to: &VerificationPattern) -> bool {
        self.from.as_ref().is_none_or(|f| f == from) && self.to.as_ref().is_none_or(|t| t == to)
    }

    /// It may still move key storage that is under `from`, whatever rotation is staged now:
    /// never answered, it may be queued at the service, and it lands whenever every new
    /// register holds a committed key, whichever key that is (round 12, F1). `None`: the
    /// current registers differ, and any key may be the one.
    pub fn may_land(&self, from: Option<&VerificationPattern>) -> bool {
        !self.completed
            && match (&self.from, from) {
                (Some(sent_from), Some(from)) => sent_from == from,
                _ => true,
            }
    }

    /// It speaks against "nobody rewrapped `from` → `to`": it may be that rotation's rewrap,
    /// or a rewrap from `from` never answered, which may still land.
    pub fn speaks_against(&self, from: &VerificationPattern, to: &VerificationPattern) -> bool {
        self.of_rotation(from, to) || self.may_land(Some(from))
    }

    /// "mkplan's own rewrap from A… to B… was sent in the run of T and never answered".
    pub fn describe(&self) -> String {
        let keys = match (&self.from, &self.to) {
            (Some(from), Some(to)) => format!(" from {}… to {}…", from.short(), to.short()),
            _ => String::new(),
        };
        format!(
            "{}{keys} was {}{} and {}",
            if self.by_hand {
                "the rewrap ceremony step"
            } else {
                "mkplan's own rewrap"
            },
            if self.by_hand { "shown" } else { "sent" },
            self.sent_at
                .as_ref()
                .map(|t| format!(" in the run of {t}"))
                .unwrap_or_default(),
            if self.completed {
                "completed"
            } else if self.by_hand {
                "left without the operator's word"
            } else {
                "never answered"
            }
        )
    }
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

    /// The rewraps of `instance` that records made against other backends say were sent,
    /// with each backend's identity (`rewraps_elsewhere`).
    pub fn rewraps_elsewhere(&self, instance: &str) -> &[(String, RewrapOnRecord)] {
        self.rewraps_elsewhere
            .get(&instance.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Why this journal's records of `instance` are no evidence, if some are not.
    pub fn unauthenticated(&self, instance: &str) -> Option<&str> {
        self.unauthenticated
            .get(&instance.to_ascii_lowercase())
            .or(self.unauthenticated_all.as_ref())
            .map(String::as_str)
    }

    /// The rewraps of the rotation `from` → `to` of `instance` that records this journal
    /// cannot vouch for say mkplan sent.
    pub fn unverified_rewraps(
        &self,
        instance: &str,
        from: Option<&VerificationPattern>,
        to: &VerificationPattern,
    ) -> Vec<&RewrapOnRecord> {
        self.unverified_rewraps
            .get(&instance.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .filter(|r| match from {
                Some(from) => r.speaks_against(from, to),
                None => r.to.as_ref().is_none_or(|t| t == to) || r.may_land(None),
            })
            .collect()
    }

    /// A rewrap of `instance` that records made against another backend identity, or records
    /// this journal cannot vouch for, say was sent from `from` and never answered: it may
    /// still be queued at the service, and no word of the moment (the service's "no
    /// rewrap", registers with nothing staged) outweighs it.
    pub fn may_land_from_records(
        &self,
        instance: &str,
        from: Option<&VerificationPattern>,
    ) -> bool {
        let key = instance.to_ascii_lowercase();
        self.rewraps_elsewhere
            .get(&key)
            .into_iter()
            .flatten()
            .map(|(_, r)| r)
            .chain(self.unverified_rewraps.get(&key).into_iter().flatten())
            .any(|r| r.may_land(from))
    }
}
