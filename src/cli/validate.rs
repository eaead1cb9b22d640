//! `validate DESIRED.yaml`: every check that needs neither the network nor a password, and
//! touches nothing. The desired file and its key part files; the backend `plan` would use
//! (`--backend`, `MKPLAN_BACKEND`, else `backend:` in the file, whose errors point at its line
//! and column); for `sim:FLEET.yaml`, that the fleet file exists, parses and holds every
//! service instance of the desired file; for `http://` and `tke:`, the URL and the rules for
//! sending a token there. No request is sent and no file is written.

use std::path::Path;

use super::BackendArg;
use super::context::{Desired, open_backend, read_desired};
use crate::backend::{AnyBackend, Backend, BackendError, BackendSpec};
use crate::error::{Error, Result};
use crate::model::InputError;

/// The fix for a `backend:` line that names no backend mkplan can open.
const BACKEND_FIX: &str = "write `backend: sim:FLEET.yaml` (a path relative to the desired file's folder), `backend: http://HOST:PORT` or `backend: tke:REGION`, or leave it out and pass --backend";

pub async fn validate(path: &Path, flag: &BackendArg) -> Result<u8> {
    let desired = read_desired(path)?;
    // `backend:` is checked even when --backend overrides it: it is part of the file.
    spec_in_desired(&desired)?;
    let instances = desired.state.instances.len();
    let backend = match (&flag.backend, &desired.state.backend) {
        (None, None) => {
            "no backend named: `plan` needs --backend, MKPLAN_BACKEND or `backend:`".to_string()
        }
        _ => check_backend(&desired, flag).await?,
    };
    eprintln!(
        "{} is valid: {instances} service instance(s), key part files present and well formed; {backend}.",
        desired.path.display()
    );
    Ok(0)
}

/// Opens the backend as `plan` would (without a request), and for `sim:` reads the fleet.
async fn check_backend(desired: &Desired, flag: &BackendArg) -> Result<String> {
    let backend = open_backend(desired, flag).map_err(|error| placed(desired, flag, error))?;
    let AnyBackend::Sim(..) = &backend else {
        return Ok(format!(
            "backend {} (not contacted: `plan` reaches it)",
            backend.describe()
        ));
    };
    let ids: Vec<String> = desired
        .state
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect();
    // The embedded simulator's fleet is a local file: reading it is offline, and writes
    // nothing (a rewrap that is due completes in memory only).
    backend.refresh(&ids).await.map_err(|error| match error {
        BackendError::UnknownInstance { .. } => Error::Other(format!(
            "{}: backend {}: {error}. Add the instance to the fleet file, or correct its id in the desired file",
            desired.path.display(),
            backend.describe()
        )),
        other => placed(desired, flag, Error::Backend(other)),
    })?;
    Ok(format!(
        "backend {}: the fleet file parses and holds every service instance",
        backend.describe()
    ))
}

/// A backend named in the desired file that cannot be opened: the error at `backend:`'s line
/// and column (the line is not shown, see `spec_in_desired`). A problem inside the fleet file
/// keeps its own place; a backend from --backend or MKPLAN_BACKEND has no place in the file.
fn placed(desired: &Desired, flag: &BackendArg, error: Error) -> Error {
    let in_file = flag.backend.is_none();
    match (error, desired.state.backend_at) {
        (Error::Backend(BackendError::Unreachable(problem)), Some((line, column))) if in_file => {
            let shown = desired.path.display().to_string();
            let error = InputError::new(&shown, problem).located(line, column);
            let sim = desired
                .state
                .backend
                .as_deref()
                .is_some_and(|b| b.starts_with("sim:"));
            Error::Input(if sim {
                error.fix("`sim:` paths are relative to the desired file's folder: give the path of a fleet file, as in examples/fleets/*.yaml")
            } else {
                error
            })
        }
        (other, _) => other,
    }
}

/// The backend that `backend:` in the desired file names; an error points at its line and
/// column, as every other error about the desired file does, without showing the line: it may
/// hold a URL with a password, which is refused and never echoed.
pub(super) fn spec_in_desired(desired: &Desired) -> Result<Option<BackendSpec>> {
    let Some(spec) = &desired.state.backend else {
        return Ok(None);
    };
    BackendSpec::parse(spec, desired.path.parent())
        .map(Some)
        .map_err(|problem| {
            let shown = desired.path.display().to_string();
            let error = InputError::new(&shown, problem).fix(BACKEND_FIX);
            match desired.state.backend_at {
                Some((line, column)) => error.located(line, column),
                None => error,
            }
            .into()
        })
}
