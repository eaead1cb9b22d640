//! Finding every store on the machine that could depend on a domain group, declared or not
//! (the planner's `undeclared_stores` and related checks): every zkey key with its associated
//! APQNs and LUKS2 volumes (`zkey list`, all keys), every openCryptoki token config that the
//! group's `opencryptoki_config` folder names (an EP11 token's in `OCK_EP11_TOKEN_DIR` when
//! mkplan's environment sets it), and every open `pkcshsm_mk_change` operation
//! (`pkcshsm_mk_change list`). What cannot be listed is recorded as unreadable, and
//! the planner refuses: an unlisted store is not a store known to be absent.
//!
//! An absent zkey repository holds no keys, and a machine without `pkcshsm_mk_change` on its
//! `PATH` has no operation it opened: both are evidence of absence, not silence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::group::ZcryptBackend;
use super::ock_conf;
use super::token_config::found_token;
use super::tools::ToolOutput;
use super::zkey_repository;
use crate::model::domain_group::{Apqn, GroupMode};
use crate::model::domain_group_desired::DesiredGroup;
use crate::model::domain_group_inventory::{FoundKmsPlugin, FoundToken, FoundZkeyKey, Inventory};

/// `OCK_EP11_TOKEN_DIR` as mkplan's own environment holds it (the tools it runs inherit that
/// environment, `pkcshsm_mk_change` and the EP11 token it loads included): the folder, made
/// absolute from the working folder as the token would open it. Set but empty, or not a
/// folder, is the reason: which configs the EP11 tokens read is then not known.
pub fn ep11_token_dir() -> Result<Option<PathBuf>, String> {
    let variable = ock_conf::EP11_TOKEN_DIR_VARIABLE;
    let Some(value) = std::env::var_os(variable) else {
        return Ok(None);
    };
    if value.is_empty() {
        return Err(format!(
            "{variable} is set but empty: the EP11 token would read its config from the root folder (/{}); unset it, or set it to the folder of the EP11 token configs",
            ock_conf::EP11_DEFAULT_CONFIG
        ));
    }
    let dir = std::path::absolute(PathBuf::from(value))
        .map_err(|e| format!("{variable}: cannot tell its folder: {e}"))?;
    match std::fs::metadata(&dir) {
        Ok(metadata) if metadata.is_dir() => Ok(Some(dir)),
        Ok(_) => Err(format!(
            "{variable} names {}, which is not a folder: the EP11 tokens' configs, and so their APQNs, are not known; set it to the folder of the EP11 token configs, or unset it",
            crate::quote::path(&dir)
        )),
        Err(e) => Err(format!(
            "{variable} names {}, which cannot be read ({e}): the EP11 tokens' configs, and so their APQNs, are not known; set it to the folder of the EP11 token configs, or unset it",
            crate::quote::path(&dir)
        )),
    }
}

/// The token configs in openCryptoki's folder: those its `opencryptoki.conf` names for an
/// EP11 or CCA slot (`confname`, else EP11's default `ep11tok.conf`; a CCA slot with none
/// reads no config and uses every CCA APQN), or, with no `opencryptoki.conf` there (a copy
/// of the folder), every `ep11tok*.conf` and `ccatok*.conf`. An EP11 token's config is
/// looked for where the token looks (`ock_conf::ep11_config_candidates`): in `token_dir`
/// (`OCK_EP11_TOKEN_DIR`) when it is set. An absent folder is no openCryptoki configured.
/// An `opencryptoki.conf` that cannot be read, or a slot whose config does not exist, is
/// the reason, naming the file and line.
fn token_configs(
    folder: &Path,
    token_dir: Option<&Path>,
    notes: &mut Vec<String>,
) -> Result<Vec<FoundToken>, String> {
    let slots_file = folder.join(ock_conf::OPENCRYPTOKI_CONF);
    if !slots_file.exists() {
        return configs_by_name(folder, token_dir, notes);
    }
    let shown = crate::quote::path(&slots_file);
    let text = crate::bounded_read::read_to_string(&slots_file, TOKEN_CONFIG_BYTES_MAX)
        .map_err(|e| format!("{shown}: {e}"))?;
    let slots = ock_conf::token_slots(&text).map_err(|e| {
        format!(
            "{shown}:{}: {}: pkcsslotd cannot read it either, so which tokens exist is not known",
            e.line, e.why
        )
    })?;
    let mut tokens = Vec::new();
    for slot in slots {
        let confname = slot.confname.as_ref().map(|(name, _)| name.as_str());
        let line = slot.confname.as_ref().map_or(slot.line, |(_, line)| *line);
        let candidates = match slot.mode {
            GroupMode::Ep11 => ock_conf::ep11_config_candidates(folder, token_dir, confname),
            GroupMode::Cca => confname.map(|name| folder.join(name)).into_iter().collect(),
        };
        if candidates.is_empty() {
            tokens.push(FoundToken {
                config: format!("{shown} slot {} (no confname)", slot.slot),
                mode: slot.mode,
                slot: Some(slot.slot),
                apqns: None,
                pins: BTreeMap::new(),
            });
            continue;
        }
        let (path, text) = first_readable(&candidates).map_err(|(path, e)| {
            let place = format!("{shown}:{line}: slot {} ({} token)", slot.slot, slot.mode);
            match (token_dir, slot.mode) {
                (Some(dir), GroupMode::Ep11) => format!(
                    "{place} {}: with {}={} the token reads {}, and {} ({e}): the token's APQNs are not known; put its config there, or correct or unset the variable",
                    confname.map_or_else(
                        || "has no confname".to_string(),
                        |name| format!("names its token's config {}", crate::quote::quote(name))
                    ),
                    ock_conf::EP11_TOKEN_DIR_VARIABLE,
                    crate::quote::path(dir),
                    candidates
                        .iter()
                        .map(|c| crate::quote::path(c))
                        .collect::<Vec<_>>()
                        .join(", else "),
                    if candidates.len() == 1 { "it cannot be read" } else { "neither can be read" }
                ),
                _ => format!(
                    "{place} {} {}, which cannot be read ({e}): the token's APQNs are not known",
                    match confname {
                        Some(_) => "names its token's config",
                        None => "has no confname, so its token reads the default",
                    },
                    crate::quote::path(&path)
                ),
            }
        })?;
        let text = String::from_utf8_lossy(&text);
        tokens.push(found_token(
            path.display().to_string(),
            slot.mode,
            Some(slot.slot),
            &text,
            notes,
        )?);
    }
    Ok(tokens)
}

/// The first of `candidates` that exists, read, as a token opens the first it can; a file
/// that exists but cannot be read is the reason (mkplan does not guess what the token, maybe
/// another user, reads then), and so is the last one missing.
fn first_readable(candidates: &[PathBuf]) -> Result<(PathBuf, Vec<u8>), (PathBuf, String)> {
    for (index, path) in candidates.iter().enumerate() {
        match crate::bounded_read::read(path, TOKEN_CONFIG_BYTES_MAX) {
            Ok(text) => return Ok((path.clone(), text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && index + 1 < candidates.len() => {}
            Err(e) => return Err((path.clone(), e.to_string())),
        }
    }
    unreachable!("a token has at least one config to try")
}

/// With no `opencryptoki.conf`: every `ep11tok*.conf` (EP11; in `token_dir` when it is set)
/// and `ccatok*.conf` (CCA) of the folder.
fn configs_by_name(
    folder: &Path,
    token_dir: Option<&Path>,
    notes: &mut Vec<String>,
) -> Result<Vec<FoundToken>, String> {
    if !folder.exists() {
        return Ok(Vec::new());
    }
    let mut tokens = Vec::new();
    match token_dir {
        None => tokens.extend(configs_named(
            folder,
            &[GroupMode::Ep11, GroupMode::Cca],
            notes,
        )?),
        Some(dir) => {
            tokens.extend(configs_named(folder, &[GroupMode::Cca], notes)?);
            tokens.extend(configs_named(dir, &[GroupMode::Ep11], notes)?);
        }
    }
    tokens.sort_by(|a, b| a.config.cmp(&b.config));
    Ok(tokens)
}

/// Every config of `modes` in `folder`, by its file name.
fn configs_named(
    folder: &Path,
    modes: &[GroupMode],
    notes: &mut Vec<String>,
) -> Result<Vec<FoundToken>, String> {
    let entries = std::fs::read_dir(folder).map_err(|e| {
        format!(
            "{}: cannot list openCryptoki's token configs ({e})",
            crate::quote::path(folder)
        )
    })?;
    let mut tokens = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let mode = if name.starts_with("ep11tok") && name.ends_with(".conf") {
            GroupMode::Ep11
        } else if name.starts_with("ccatok") && name.ends_with(".conf") {
            GroupMode::Cca
        } else {
            continue;
        };
        if !modes.contains(&mode) {
            continue;
        }
        let text = crate::bounded_read::read(&path, TOKEN_CONFIG_BYTES_MAX)
            .map_err(|e| format!("{}: {e}", crate::quote::path(&path)))?;
        let text = String::from_utf8_lossy(&text);
        tokens.push(found_token(
            path.display().to_string(),
            mode,
            None,
            &text,
            notes,
        )?);
    }
    Ok(tokens)
}

/// The KMS plug-in `repository`'s `kms.conf` binds it to, as zkey reads the file
/// (`properties_load`: `NAME=VALUE` lines, `#` comments; `kms_get_plugin`: no `kms`, or
/// `local`, is no plug-in; `_kms_init`: `apqns` is a comma-separated `CARD.DOMAIN` list in
/// hex). A file zkey could not read either is an error: the plug-in's keys are then not
/// known.
fn kms_plugin(repository: &Path) -> Result<Option<FoundKmsPlugin>, String> {
    let path = repository.join("kms.conf");
    let shown = path.display();
    let text = match crate::bounded_read::read_to_string(&path, TOKEN_CONFIG_BYTES_MAX) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "{shown}: cannot read the repository's KMS binding: {e}"
            ));
        }
    };
    let mut properties = std::collections::BTreeMap::new();
    for (at, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!(
                "{shown}:{}: a line with no `=`, which zkey cannot read either: the repository's KMS binding is not known",
                at + 1
            ));
        };
        properties.insert(name, value);
    }
    let plugin = match properties.get("kms") {
        Some(plugin) if !plugin.eq_ignore_ascii_case("local") => plugin.to_string(),
        _ => return Ok(None),
    };
    let mut apqns = Vec::new();
    for apqn in properties
        .get("apqns")
        .into_iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        let parsed = apqn
            .split_once('.')
            .and_then(|(card, domain)| {
                Some(Apqn {
                    card: u8::from_str_radix(card, 16).ok()?,
                    domain: u16::from_str_radix(domain, 16).ok()?,
                })
            })
            .ok_or_else(|| {
                format!(
                    "{shown}: APQN {} of KMS plug-in {} is not CARD.DOMAIN in hex, which zkey refuses too: the plug-in's APQNs are not known",
                    crate::quote::quote(apqn),
                    crate::quote::quote(&plugin)
                )
            })?;
        apqns.push(parsed);
    }
    Ok(Some(FoundKmsPlugin {
        config: shown.to_string(),
        plugin,
        apqns,
    }))
}

/// Bytes of a token config read at most.
const TOKEN_CONFIG_BYTES_MAX: u64 = 1024 * 1024;

/// Programs of openCryptoki: one on the PATH says it is installed, and its config folder
/// exists somewhere.
const OPENCRYPTOKI_PROGRAMS: [&str; 3] = ["pkcshsm_mk_change", "pkcsslotd", "pkcsconf"];

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

impl ZcryptBackend {
    /// Every zkey key, openCryptoki token config and open operation on this machine.
    pub fn inventory(&self, desired: &DesiredGroup) -> Inventory {
        let mut inventory = Inventory::default();
        let mut unreadable = Vec::new();
        let mut note = |result: Result<(), String>| {
            if let Err(why) = result {
                unreadable.push(why);
            }
        };
        note(zkey_repository::environment_disagrees(
            &desired.zkey_repository,
        ));
        if desired.zkey_repository.is_dir() {
            note(
                self.every_zkey_key(desired)
                    .map(|keys| inventory.zkey_keys = keys),
            );
            note(kms_plugin(&desired.zkey_repository).map(|found| inventory.kms_plugin = found));
        }
        let mut notes = Vec::new();
        let declared = desired
            .stores
            .contains(&crate::model::domain_group_desired::DesiredStore::OpenCryptoki);
        let installed = OPENCRYPTOKI_PROGRAMS.into_iter().find(|p| on_path(p));
        if !desired.opencryptoki_config.exists() {
            if declared {
                // Declared tokens, and no openCryptoki folder where the group says: a wrong
                // path, not evidence that no token exists.
                note(Err(format!(
                    "the group declares `opencryptoki: tokens`, but its opencryptoki_config {} does not exist, so which tokens use the group's APQNs is not known; set opencryptoki_config to openCryptoki's config folder (the one holding opencryptoki.conf)",
                    crate::quote::path(&desired.opencryptoki_config)
                )));
            } else if let Some(program) = installed {
                // openCryptoki is installed, and its folder is elsewhere (a build from source
                // keeps it in /usr/local/etc/opencryptoki): round 12z, F3.
                note(Err(format!(
                    "openCryptoki is installed here ({program} is on the PATH), but the group's opencryptoki_config {} does not exist (the group file names none, or another), so which tokens use the group's APQNs is not known; set opencryptoki_config to openCryptoki's config folder, the one holding opencryptoki.conf (a build from source keeps it in /usr/local/etc/opencryptoki)",
                    crate::quote::path(&desired.opencryptoki_config)
                )));
            }
        }
        note(
            ep11_token_dir()
                .and_then(|dir| {
                    token_configs(&desired.opencryptoki_config, dir.as_deref(), &mut notes)
                })
                .map(|tokens| inventory.tokens = tokens),
        );
        inventory.notes = notes;
        if !inventory.tokens.is_empty() {
            note(
                self.machine_apqns()
                    .map(|apqns| inventory.machine_apqns = apqns),
            );
        }
        if on_path("pkcshsm_mk_change") {
            note(
                self.listing(
                    desired,
                    "pkcshsm_mk_change",
                    super::ock_list::parse_ock_list,
                )
                .map(|operations| {
                    inventory.operations = operations
                        .into_iter()
                        .map(super::ock_list::OckOperation::found)
                        .collect();
                }),
            );
        }
        let volumes = desired.stores.iter().any(|s| {
            matches!(
                s,
                crate::model::domain_group_desired::DesiredStore::Luks2Volume { .. }
            )
        });
        if volumes {
            note(
                self.other_apqns(desired)
                    .map(|apqns| inventory.other_apqns = apqns),
            );
        }
        inventory.unreadable = unreadable;
        inventory
    }

    /// The registers of every APQN of the machine outside the group that shows `mkvps`.
    fn other_apqns(
        &self,
        desired: &DesiredGroup,
    ) -> Result<Vec<(Apqn, crate::model::registers::ApqnRegisters)>, String> {
        let cards = super::sysfs::Sysfs::new(self.root())
            .cards()
            .map_err(|e| e.to_string())?;
        let mut found = Vec::new();
        for queue in cards.iter().flat_map(|c| &c.queues) {
            if desired.apqns.contains(&queue.apqn) {
                continue;
            }
            if let Some(shown) = &queue.mkvps {
                found.push((queue.apqn, super::group::registers_of(shown)?));
            }
        }
        Ok(found)
    }

    /// Every APQN of the machine's usable CCA and EP11 cards, with the card's mode, whether
    /// the queue itself is online or not (openCryptoki's rule, see `Inventory::machine_apqns`).
    fn machine_apqns(&self) -> Result<Vec<(Apqn, GroupMode)>, String> {
        let cards = super::sysfs::Sysfs::new(self.root())
            .cards()
            .map_err(|e| e.to_string())?;
        let mut found = Vec::new();
        for card in cards.iter().filter(|c| c.usable()) {
            let mode = match card.mode {
                super::sysfs::CardMode::Ep11 => GroupMode::Ep11,
                super::sysfs::CardMode::Cca => GroupMode::Cca,
                _ => continue,
            };
            found.extend(card.queues.iter().map(|q| (q.apqn, mode)));
        }
        Ok(found)
    }

    /// Every key of the repository, as `zkey list` shows them: a warning it printed, or a key
    /// file of the repository it did not show, is the reason (`zkey_repository`).
    fn every_zkey_key(&self, desired: &DesiredGroup) -> Result<Vec<FoundZkeyKey>, String> {
        let output = self.listed(desired, "zkey")?;
        zkey_repository::listing_warnings(&output.stderr)?;
        let keys = super::zkey_list::parse_list(&output.stdout)?;
        zkey_repository::unlisted_key_files(&desired.zkey_repository, &keys)?;
        Ok(keys)
    }

    /// `PROGRAM list`, read by `parse`; a failed run or an unreadable output is the reason.
    fn listing<T>(
        &self,
        desired: &DesiredGroup,
        program: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<T, String> {
        parse(&self.listed(desired, program)?.stdout)
    }

    /// What `PROGRAM list` printed; a failed run is the reason.
    fn listed(&self, desired: &DesiredGroup, program: &str) -> Result<ToolOutput, String> {
        let call = self.call(desired, program, vec!["list".into()]);
        let output = self.run(&call)?;
        if !output.success() {
            return Err(format!("{} failed: {}", call.shown(), output.last_words()));
        }
        Ok(output)
    }
}
