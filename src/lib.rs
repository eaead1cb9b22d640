//! mkplan: a declarative runbook engine for HSM master key rotation.
//!
//! Where a reader starts, and what depends on what (arrows point at dependencies):
//!
//! ```text
//! cli ──> apply ──> plan ──> model     cli ──> render ──> plan, model
//!  │        └─────> backend ──> model   cli ──> keypart
//!  └────> drill ──> apply, backend, plan
//! ```
//!
//! - [`model`]: pure types: desired state, live crypto units, registers, VPs, journal evidence.
//! - [`plan`]: pure: pre-checks, the key storage finding, the step graph, its replay, the plan.
//! - [`render`]: pure: plan, refusal and live state → terminal text, Markdown, JSON (each
//!   document with its format version), DOT.
//! - [`backend`]: the only code that touches crypto units: the simulator (embedded, and
//!   served over HTTP or the TKE wire protocol), the HTTP client, and the real service's TKE
//!   API (reads, and signed admin commands with the administrators' keys); smart cards
//!   behind the same trait later.
//!   A second family, the domain group of Crypto Express APQNs on Linux (issue 17), runs
//!   through the same layers: `model::registers` and `model::domain_group` (NEW/CURRENT/OLD
//!   per master key type, stores, the loss rule), `plan::domain_group`, `backend::zcrypt`
//!   (sysfs, the tools behind a `ToolRunner`), `apply::group`, `cli::zcrypt` (docs/zcrypt.md).
//! - [`keypart`]: key part files: generation, password protection, combination, VPs.
//! - [`apply`]: the concurrent executor, the write-ahead journal, the lock, the audit trail,
//!   and the session bookkeeping around a run.
//! - [`drill`]: seeded fault schedules applied to in-memory copies of a fleet, judged by the
//!   simulator's ground truth.
//! - [`cli`]: argument parsing and the commands that glue the rest together.
//! - [`quote`], [`bounded_read`], [`timestamp`]: leaves every layer may use: input shown in a
//!   message, bounded and made inert; a file that input names, read only if regular and not
//!   too long; RFC 3339 time stamps.
//! - `fuzzing` (hidden): the parsers that are not public on their own, for the fuzz targets
//!   under `fuzz/`; nothing in the crate depends on it.

pub mod apply;
pub mod backend;
pub mod bounded_read;
pub mod cli;
pub mod drill;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod keypart;
pub mod model;
pub mod plan;
pub mod quote;
pub mod render;
pub mod store;
pub mod timestamp;

#[cfg(test)]
mod safety_tests;
