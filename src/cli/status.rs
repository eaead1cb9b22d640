//! `status`: the live register table (on stdout, like `ibmcloud tke cryptounit-mk`), and the
//! live state exported as a simulator fleet.

use std::path::Path;

use super::BackendArg;
use super::context::{read_desired, refresh_desired};
use super::output;
use crate::backend::Backend;
use crate::error::Result;
use crate::render;

pub async fn status(
    desired: &Path,
    flag: &BackendArg,
    json: bool,
    instances: &[String],
    export_fleet: Option<&Path>,
    state_dir: &Path,
) -> Result<u8> {
    let desired = read_desired(desired)?.only(instances)?;
    let (backend, live) = refresh_desired(&desired, flag).await?;
    if !desired.left_out.is_empty() {
        eprintln!(
            "{}",
            render::left_out_because(&desired.left_out, "not refreshed, not shown")
        );
    }
    if json {
        output::report_line(&render::status_json(&live))?;
    } else {
        output::report(&render::status(&live, &backend.describe()))?;
    }
    if let Some(out) = export_fleet {
        super::drill::export_fleet(&desired, &live, &backend, state_dir, out)?;
    }
    Ok(0)
}
