//! `status` of a domain group file: the APQNs' registers and the stores as the machine shows
//! them, then the store's part, as for an HPCS desired file: who holds the state folder's
//! lock, or the database's lease on the group's APQNs (who, since when, until when), which
//! an apply of the group would wait for.

use std::path::Path;

use super::BackendArg;
use super::output;
use super::state::{lock_lines, locks_json};
use super::zcrypt::{open_backend, read_error, read_group};
use crate::apply::group_journal::GroupJournal;
use crate::error::Result;
use crate::model::domain_group_desired::DesiredGroup;
use crate::render::domain_group::group_status_text;
use crate::store::Store;
use crate::store::postgres::{self, LeaseInfo};

pub async fn status(path: &Path, flag: &BackendArg, json: bool, store: &Store) -> Result<u8> {
    let mut desired = read_group(path)?;
    let backend = open_backend(&mut desired, flag, path)?;
    let live = backend.read(&desired).map_err(read_error)?;
    let identity = backend.identity(&desired);
    let named = journal_named(store, &identity);
    // A store that cannot be read does not hide the machine.
    let holders = holders(store, &identity, &desired);
    if json {
        let apqns: Vec<_> = live
            .apqns
            .iter()
            .map(|a| serde_json::json!({"apqn": a.apqn.to_string(), "usable": a.usable, "mode": a.mode, "serial": a.card_serial}))
            .collect();
        let state = match holders {
            Ok(holders) => serde_json::json!({"store": named, "locks": locks_json(&holders)}),
            Err(error) => serde_json::json!({"store": named, "error": error.to_string()}),
        };
        output::report_line(&serde_json::json!({"format_version": "1", "kind": "domain_group", "domain_group": desired.name, "backend": backend.describe(), "apqns": apqns, "state": state}).to_string())?;
    } else {
        let mut report = group_status_text(&live, &backend.describe());
        match holders {
            Ok(holders) => report += &format!("\nState: {named}\n{}", lock_lines(&holders)),
            Err(error) => report += &format!("\nState: cannot be read: {error}\n"),
        }
        output::report(&report)?;
    }
    Ok(0)
}

/// The group's journal, as messages name it.
fn journal_named(store: &Store, identity: &str) -> String {
    match store {
        Store::Files(dir) => format!(
            "the domain group journal {}",
            crate::quote::path(&GroupJournal::path_for(dir, identity))
        ),
        Store::Postgres(database) => format!(
            "the domain group journal of {} in {}",
            crate::quote::bare(identity),
            database.shown()
        ),
    }
}

/// Who holds what an apply of the group takes: the folder's lock, or a lease on one of the
/// group's APQNs on this image.
fn holders(store: &Store, identity: &str, desired: &DesiredGroup) -> Result<Vec<LeaseInfo>> {
    match store {
        Store::Files(_) => store.holders(identity),
        Store::Postgres(database) => {
            let apqns: Vec<String> = desired.apqns.iter().map(ToString::to_string).collect();
            postgres::group_holders(database, identity, &apqns)
        }
    }
}
