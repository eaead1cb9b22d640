//! `status`: the live register table.

use std::path::Path;

use super::BackendArg;
use super::context::{open_backend, read_desired};
use crate::backend::Backend;
use crate::error::Result;
use crate::render;

pub async fn status(desired: &Path, backend: &BackendArg, json: bool) -> Result<u8> {
    let desired = read_desired(desired)?;
    let backend = open_backend(&desired, backend)?;
    let ids: Vec<String> = desired
        .state
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect();
    let live = backend.refresh(&ids).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&live).expect("live state serializes")
        );
    } else {
        eprint!("{}", render::status(&live, &backend.describe()));
    }
    Ok(0)
}
