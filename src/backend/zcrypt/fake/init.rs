//! `mkplan sim zcrypt init DIR --world WORLD.yaml`: a new world folder with its truth, its
//! sysfs tree and zkey repository, the tokens' configs, and `DIR/bin` with the fake tools.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::world::{World, write_durably};
use super::{TOOLS, ock, render};
use crate::backend::zcrypt::ock_conf::OPENCRYPTOKI_CONF;
use crate::model::InputError;

/// Largest world file read.
const WORLD_YAML_BYTES_MAX: u64 = 16 * 1024 * 1024;

#[derive(Debug)]
pub enum InitError {
    Input(InputError),
    Other(String),
}

impl From<String> for InitError {
    fn from(message: String) -> Self {
        Self::Other(message)
    }
}

/// Creates the world in `dir` (which must not hold one) from the YAML at `world_file`; the
/// fake tools will exec `mkplan`.
pub fn init(dir: &Path, world_file: &Path, mkplan: &Path) -> Result<World, InitError> {
    let shown = world_file.display().to_string();
    let text = crate::bounded_read::read_to_string(world_file, WORLD_YAML_BYTES_MAX)
        .map_err(|e| InitError::Input(InputError::new(&shown, format!("cannot read it: {e}"))))?;
    let world = super::world_file::parse(
        &shown,
        &text,
        world_file.parent().unwrap_or(Path::new(".")),
        mkplan.to_path_buf(),
    )
    .map_err(InitError::Input)?;
    if dir.join(super::world::WORLD_FILE).exists() {
        return Err(format!(
            "{} already holds a world: choose a new folder, or remove it first",
            crate::quote::path(dir)
        )
        .into());
    }
    materialize(dir, &world)?;
    Ok(world)
}

/// A copy of the world in `from` at `to` (a new folder), changed by `arm` first (a drill
/// arms its faults there): the truth, its views, the tokens' configs as the operator left
/// them, and `to/bin` with tools that serve the copy. The number of incidents `from` had.
pub fn copy(from: &Path, to: &Path, arm: impl FnOnce(&mut World)) -> Result<usize, String> {
    let from = std::path::absolute(from).map_err(|e| format!("{}: {e}", from.display()))?;
    let mut world = World::load(&from)?;
    let incidents = world.incidents.len();
    arm(&mut world);
    materialize(to, &world)?;
    for token in &world.tokens {
        let config = ock::config_path(&from, token);
        if config.exists() {
            let text = std::fs::read(&config)
                .map_err(|e| format!("{}: {e}", crate::quote::path(&config)))?;
            let to = std::path::absolute(to).map_err(|e| format!("{}: {e}", to.display()))?;
            write_durably(&ock::config_path(&to, token), &text)?;
        }
    }
    Ok(incidents)
}

/// Writes `world` into `dir`: the truth, its views, the tokens' configs and `DIR/bin`.
fn materialize(dir: &Path, world: &World) -> Result<(), String> {
    let mkplan = &world.mkplan;
    let mkdir = |path: &Path| {
        std::fs::create_dir_all(path)
            .map_err(|e| format!("{}: cannot create it: {e}", crate::quote::path(path)))
    };
    mkdir(dir)?;
    let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    world.save(&dir)?;
    render::render(&dir, world)?;
    write_durably(&dir.join(render::ZKEY_DIR).join(".lock"), b"")?;
    mkdir(&dir.join(ock::OCK_DIR))?;
    write_durably(
        &dir.join(ock::OCK_DIR).join(OPENCRYPTOKI_CONF),
        ock::slots_text(world).as_bytes(),
    )?;
    for token in &world.tokens {
        write_durably(
            &ock::config_path(&dir, token),
            ock::config_text(world, token).as_bytes(),
        )?;
    }
    let bin = dir.join("bin");
    mkdir(&bin)?;
    for tool in TOOLS {
        let script = format!(
            "#!/bin/sh\n# A fake {tool} of mkplan's zcrypt simulator (docs/zcrypt-sim.md).\nexec {} sim zcrypt tool {tool} --world-dir {} -- \"$@\"\n",
            shell_quote(&mkplan.display().to_string()),
            shell_quote(&dir.display().to_string())
        );
        let path = bin.join(tool);
        write_durably(&path, script.as_bytes())?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(|e| {
            format!(
                "{}: cannot make it executable: {e}",
                crate::quote::path(&path)
            )
        })?;
    }
    Ok(())
}

/// `'text'`, with each `'` written `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}
