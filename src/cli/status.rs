//! `status`: the live register table.

use std::path::Path;

use super::BackendArg;
use super::context::refresh;
use crate::backend::Backend;
use crate::error::Result;
use crate::render;

pub async fn status(desired: &Path, backend: &BackendArg, json: bool) -> Result<u8> {
    let (_, backend, live) = refresh(desired, backend).await?;
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
