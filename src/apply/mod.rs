//! The executor: the write-ahead journal, the state directory lock, the settlement of
//! operations whose outcome is unknown, and the step runner.
//!
//! - `executor`: the concurrent scheduler and its journal writes;
//! - `send`: one operation sent and settled, and the re-read before a rewrap;
//! - `by_hand`: ceremony steps the operator performs;
//! - `interrupt`: the operator's Ctrl-C, and where the run stopped for it;
//! - `read_back`: the check after the last step, each instance as soon as its steps end;
//! - `resume`: before a run, settling what earlier runs left open, and recording rotations;
//! - `journal`: the records written, sealed, fsynced and read back; `record`: what they say;
//! - `journal_key`: the key, kept outside the state folder, that seals journal records;
//! - `group`, `group_journal`: a `zcrypt:` domain group's run, and its journal, sealed with
//!   the same key;
//! - `evidence`: journal records → the planner's evidence;
//! - `attest`: the operator's attestation, as journal records;
//! - `group`, `group_journal`, `group_evidence`: a domain group's apply (issue 17), its
//!   journal, and what that journal tells the planner (serial numbers, LUKS2 stagings);
//!   `group_archive`: its copies that `state push` and `state pull` leave, and `audit verify`
//!   of a folder's group journals.

pub mod attest;
pub mod audit;
mod by_hand;
pub mod evidence;
pub mod executor;
pub mod group;
pub mod group_archive;
pub mod group_evidence;
pub mod group_journal;
pub mod interrupt;
pub mod journal;
pub mod journal_key;
pub mod lock;
mod open_rewraps;
pub mod other_folders;
pub mod read_back;
pub mod record;
pub mod resume;
mod send;
pub mod session;
pub mod state_dir;
