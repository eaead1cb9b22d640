//! mkplan's integration tests: one test binary that drives the real `mkplan` executable on the
//! embedded simulator, each test in its own temporary folder.
//!
//! - `cases::scenarios`: every row of shared/scenarios.md
//! - `cases::mixed`: mixed and unusual live states, and the pre-checks
//! - `cases::dependencies`: the step graph of a full rotation
//! - `cases::bad_input`: malformed desired, fleet and key part files
//! - `cases::views`: plan files, `show`, DOT, Markdown, `status`, and no secrets in any view
//! - `cases::saved_plans`: a plan saved in one folder applied from another, `--desired`,
//!   `--backend`
//! - `cases::targeting`: `--instance` on `plan`, `apply`, `status` and `drill`
//! - `cases::output`: the report on stdout, diagnostics on stderr, a refusal in Markdown, exit
//!   codes of usage errors, and closed pipes
//! - `cases::json_formats`: every JSON document against its schema (docs/schemas) and
//!   docs/json.md; the harness checks every `--json` output of every test too
//! - `cases::untouched`: `plan`, `status` and `validate` never change the simulator
//! - `cases::witnesses`: the witnesses of the key storage's MK (status, journal, registers,
//!   the operator's attestation) across folders, backends, aborts, unknown and slow rewraps
//! - `cases::docs`: the user docs: links that resolve inside the repository, complete
//!   examples the binary reads and plans, error outputs as mkplan prints them, scripts that run

mod cases;
mod support;
