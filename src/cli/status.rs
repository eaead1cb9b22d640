//! `status`: the live register table (on stdout, like `ibmcloud tke cryptounit-mk`), and the
//! live state exported as a simulator fleet.

use std::path::Path;

use super::BackendArg;
use super::context::{evidence_for, read_desired, refresh_desired};
use super::output;
use crate::backend::Backend;
use crate::error::Result;
use crate::render;
use crate::store::Store;

pub async fn status(
    desired: &Path,
    flag: &BackendArg,
    json: bool,
    instances: &[String],
    export_fleet: Option<&Path>,
    store: &Store,
) -> Result<u8> {
    let desired = read_desired(desired)?.only(instances)?;
    let (backend, live) = refresh_desired(&desired, flag).await?;
    if !desired.left_out.is_empty() {
        eprintln!(
            "{}",
            render::left_out_because(&desired.left_out, "not refreshed, not shown")
        );
    }
    // The store's view: who holds the lock, which rotations are open. A store that cannot be
    // read does not hide the live state.
    let scope = backend.identity();
    let evidence = store
        .read_journal(&scope, Some(&desired.instance_ids()))
        .map(|records| evidence_for(&records, &backend, store, &desired));
    if json {
        let state = evidence
            .and_then(|evidence| super::state::status_state(store, &scope, &evidence))
            .unwrap_or_else(|error| {
                serde_json::json!({
                    "store": store.journal_named(&scope),
                    "error": error.to_string(),
                })
            });
        output::report_line(&render::status_json_with_state(&live, &state))?;
    } else {
        let mut report = render::status_fitted(
            &live,
            &backend.describe(),
            super::conventions::terminal_width(),
        );
        match evidence.and_then(|evidence| super::state::status_section(store, &scope, &evidence)) {
            Ok(section) => report += &section,
            Err(error) => report += &format!("\nState: cannot be read: {error}\n"),
        }
        output::report(&report)?;
    }
    if let Some(out) = export_fleet {
        super::drill::export_fleet(&desired, &live, &backend, store, out)?;
    }
    Ok(0)
}
