//! The desired state of a domain group (docs/zcrypt.md): its APQNs, the master key types to
//! change and the verification pattern each must end at, the procedure, and every key store
//! that depends on them. A file whose first key is `domain_group:` is one of these; a file
//! starting `version:` is an HPCS desired file. Parsing is pure and strict: an unknown key, a
//! wrong pattern length or a store the group cannot use is an error at its line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::domain_group::{Apqn, GroupMode};
use super::domain_group_selector::{
    ApqnSelection, ApqnSelector, GroupApqns, RawApqns, SeenCard, parse_apqns, select,
};
use super::registers::{MkType, Mkvp};
use super::{InputError, KeyWords};
use crate::quote::quote;

/// The first key that makes a YAML file a domain group's desired state.
pub const DOMAIN_GROUP_FIRST_KEY: &str = "domain_group";
/// APQNs of one group at most (cards × domains a Linux image can see is far less).
pub const GROUP_APQNS_MAX: usize = 256;
/// Stores a group declares at most.
pub const GROUP_STORES_MAX: usize = 10_000;
/// Words of a declared command at most.
pub const COMMAND_WORDS_MAX: usize = 64;
/// Longest group name.
pub const GROUP_NAME_LEN_MAX: usize = 64;
/// zkey's repository when none is named (zkey.1).
pub const ZKEY_REPOSITORY_DEFAULT: &str = "/etc/zkey/repository";
/// openCryptoki's configuration folder when none is named (its token configs live there).
pub const OPENCRYPTOKI_CONFIG_DEFAULT: &str = "/etc/opencryptoki";

const KEY_WORDS: KeyWords = &[
    ("domain_group", "the group's name: letters, digits, - and _"),
    ("version", "the format version, `1`"),
    ("backend", "one value: zcrypt:SYSFS_ROOT, e.g. zcrypt:/"),
    (
        "apqns",
        "a list of APQNs, card.domain in hex: [03.0006, 04.0006], or a selector: { domain: \"0006\" }",
    ),
    (
        "domain",
        "the usage domain, 4 hex digits as lszcrypt prints it: \"0006\"",
    ),
    ("cards", "the cards, 2 hex digits each: [\"03\", \"04\"]"),
    ("procedure", "reencipher_then_set or set_then_from_old"),
    (
        "master_keys",
        "a list of `- type: WK|AES|APKA|ASYM` with verification_pattern:",
    ),
    ("type", "WK (EP11), or AES, APKA, ASYM (CCA)"),
    (
        "verification_pattern",
        "the new master key's verification pattern in hex",
    ),
    (
        "zkey_repository",
        "the path of zkey's repository, e.g. /etc/zkey/repository",
    ),
    (
        "opencryptoki_config",
        "the folder of openCryptoki's token configs, e.g. /etc/opencryptoki",
    ),
    (
        "stores",
        "a list of key stores, e.g. `- zkey_keys: associated`",
    ),
    (
        "opencryptoki_user_pins",
        "a list of `- {slot: N, file: PATH}` or `- {slot: N, env: NAME}`",
    ),
    (
        "cca_token_asym_keys",
        "`none`: no CCA token keeps keys under ASYM (`pkcscca -m oldrsakeys` run)",
    ),
];

/// The order of a change (zcrypt.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Procedure {
    /// Load, stage every store under NEW, set, complete every store (EP11 always).
    ReencipherThenSet,
    /// CCA: load, set (CURRENT moves to OLD), re-encipher every store from OLD.
    SetThenFromOld,
}

/// A store the group's keys live in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DesiredStore {
    /// Every zkey key associated with one of the group's APQNs.
    ZkeyAssociated,
    /// One zkey key by name.
    ZkeyKey(String),
    /// The volume key in a LUKS2 header, with the file holding its passphrase.
    Luks2Volume { device: String, key_file: PathBuf },
    /// The openCryptoki tokens on the group's APQNs (`pkcshsm_mk_change`).
    OpenCryptoki,
    /// A key an application keeps: `check` prints `active: VP` and, while staged,
    /// `staged: VP`; `stage` and `complete` move it.
    Application {
        name: String,
        mk_type: MkType,
        check: Vec<String>,
        stage: Vec<String>,
        complete: Vec<String>,
    },
}

/// A domain group's desired state.
#[derive(Clone, Debug)]
pub struct DesiredGroup {
    pub name: String,
    pub backend: Option<String>,
    pub backend_at: Option<(u64, u64)>,
    /// The group's APQNs: as listed, or as the selector resolved them on the machine (empty
    /// until [`DesiredGroup::resolve`]; the pre-checks refuse an empty group).
    pub apqns: Vec<Apqn>,
    /// The selector, when the file selects the APQNs rather than listing them.
    pub selector: Option<ApqnSelector>,
    /// What the selector resolved to, shown in the plan.
    pub selection: Option<ApqnSelection>,
    pub mode: GroupMode,
    pub procedure: Procedure,
    pub master_keys: BTreeMap<MkType, Mkvp>,
    pub zkey_repository: PathBuf,
    /// Where the token configs (`ep11tok*.conf`, `ccatok*.conf`) are found.
    pub opencryptoki_config: PathBuf,
    pub stores: Vec<DesiredStore>,
    /// Where each openCryptoki slot's USER PIN is read from (`opencryptoki_user_pins:`).
    pub user_pins: super::domain_group_pins::UserPinSources,
    /// `cca_token_asym_keys: none`: the operator's statement that no CCA token on the group's
    /// APQNs keeps keys under the ASYM master key. openCryptoki up to 3.14 kept RSA private
    /// keys as RSA-CRT tokens under ASYM (`pkcscca -m oldrsakeys` converts them), which
    /// pkcshsm_mk_change cannot move; a change of ASYM with CCA tokens needs this statement.
    pub cca_token_asym_keys_none: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    domain_group: Spanned<String>,
    version: Spanned<u32>,
    #[serde(default)]
    backend: Option<Spanned<String>>,
    apqns: Spanned<RawApqns>,
    #[serde(default)]
    procedure: Option<Spanned<String>>,
    master_keys: Spanned<Vec<RawMasterKey>>,
    #[serde(default)]
    zkey_repository: Option<Spanned<String>>,
    #[serde(default)]
    opencryptoki_config: Option<Spanned<String>>,
    stores: Spanned<Vec<Spanned<RawStore>>>,
    #[serde(default)]
    opencryptoki_user_pins: Option<Spanned<Vec<Spanned<super::domain_group_pins::RawUserPin>>>>,
    #[serde(default)]
    cca_token_asym_keys: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMasterKey {
    #[serde(rename = "type")]
    mk_type: Spanned<String>,
    verification_pattern: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default)]
    zkey_keys: Option<Spanned<String>>,
    #[serde(default)]
    zkey_key: Option<Spanned<String>>,
    #[serde(default)]
    luks2_volume: Option<RawLuks2>,
    #[serde(default)]
    opencryptoki: Option<Spanned<String>>,
    #[serde(default)]
    application: Option<RawApplication>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLuks2 {
    device: Spanned<String>,
    key_file: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    name: Spanned<String>,
    #[serde(default, rename = "type")]
    mk_type: Option<Spanned<String>>,
    check: Spanned<Vec<String>>,
    stage: Spanned<Vec<String>>,
    complete: Spanned<Vec<String>>,
}

pub(super) fn at<T>(spanned: &Spanned<T>) -> (u64, u64) {
    (spanned.referenced.line(), spanned.referenced.column())
}

/// Whether `text` is a domain group's desired file (its first key is `domain_group:`).
pub fn is_domain_group(text: &str) -> bool {
    super::yaml_top(text).is_first_key(&[DOMAIN_GROUP_FIRST_KEY])
}

/// Reads a domain group's desired state. `folder` is where relative paths start.
pub fn parse_domain_group(
    file: &str,
    text: &str,
    folder: &Path,
) -> Result<DesiredGroup, InputError> {
    let raw: RawGroup = super::from_yaml_str(text).map_err(|e| {
        InputError::from_yaml(
            file,
            text,
            &e,
            KEY_WORDS,
            "correct the domain group file at that place; its format is in docs/zcrypt.md",
        )
    })?;
    let error = |at: (u64, u64), message: String, fix: &str| {
        InputError::new(file, message).at(text, at.0, at.1).fix(fix)
    };
    let name = raw.domain_group.value.clone();
    if name.is_empty()
        || name.len() > GROUP_NAME_LEN_MAX
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(error(
            at(&raw.domain_group),
            format!("{} is not a group name", quote(&name)),
            "name the group with 1 to 64 letters, digits, - and _",
        ));
    }
    if raw.version.value != 1 {
        return Err(error(
            at(&raw.version),
            format!("unsupported version {}", raw.version.value),
            "this mkplan reads `version: 1`",
        ));
    }
    let (apqns, selector) = match parse_apqns(&raw.apqns, &error)? {
        GroupApqns::Listed(apqns) => (apqns, None),
        GroupApqns::Selected(selector) => (Vec::new(), Some(selector)),
    };
    let (master_keys, mode) = parse_master_keys(&raw.master_keys, &error)?;
    let procedure = match &raw.procedure {
        None => Procedure::ReencipherThenSet,
        Some(word) => match word.value.as_str() {
            "reencipher_then_set" => Procedure::ReencipherThenSet,
            "set_then_from_old" if mode == GroupMode::Cca => Procedure::SetThenFromOld,
            "set_then_from_old" => {
                return Err(error(
                    at(word),
                    "set_then_from_old needs an OLD register, and EP11 has none".into(),
                    "use procedure: reencipher_then_set for EP11",
                ));
            }
            other => {
                return Err(error(
                    at(word),
                    format!("unknown procedure {}", quote(other)),
                    "write reencipher_then_set or set_then_from_old",
                ));
            }
        },
    };
    let zkey_repository = raw.zkey_repository.as_ref().map_or_else(
        || PathBuf::from(ZKEY_REPOSITORY_DEFAULT),
        |path| relative(folder, &path.value),
    );
    let opencryptoki_config = raw.opencryptoki_config.as_ref().map_or_else(
        || PathBuf::from(OPENCRYPTOKI_CONFIG_DEFAULT),
        |path| relative(folder, &path.value),
    );
    let stores = parse_stores(&raw.stores, &master_keys, folder, &error)?;
    let user_pins = super::domain_group_pins::UserPinSources {
        file: file.to_string(),
        slots: match &raw.opencryptoki_user_pins {
            Some(pins) => super::domain_group_pins::parse_user_pins(
                pins,
                &|path| relative(folder, path),
                &error,
            )?,
            None => BTreeMap::new(),
        },
    };
    let cca_token_asym_keys_none = match &raw.cca_token_asym_keys {
        None => false,
        Some(word) if word.value == "none" && mode == GroupMode::Cca => true,
        Some(word) => {
            return Err(error(
                at(word),
                format!(
                    "cca_token_asym_keys: {} (the group's mode is {mode})",
                    quote(&word.value)
                ),
                "write cca_token_asym_keys: none in a CCA group, once no CCA token keeps keys under the ASYM master key (`pkcscca -m oldrsakeys` converts the RSA-CRT keys of tokens made by openCryptoki 3.14 or older); leave it out otherwise",
            ));
        }
    };
    Ok(DesiredGroup {
        name,
        backend_at: raw.backend.as_ref().map(at),
        backend: raw.backend.map(|b| b.value),
        apqns,
        selector,
        selection: None,
        mode,
        procedure,
        master_keys,
        zkey_repository,
        opencryptoki_config,
        stores,
        user_pins,
        cca_token_asym_keys_none,
    })
}

impl DesiredGroup {
    /// Resolves the selector over the cards the backend read (a listed group is left as it
    /// is). Every plan and apply resolves it again.
    pub fn resolve(&mut self, cards: &[SeenCard]) {
        if let Some(selector) = &self.selector {
            let selection = select(selector, self.mode, cards);
            self.apqns = selection.selected.clone();
            self.selection = Some(selection);
        }
    }
}

fn relative(folder: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_relative() {
        folder.join(path)
    } else {
        path.to_path_buf()
    }
}

pub(super) type ErrorAt<'a> = &'a dyn Fn((u64, u64), String, &str) -> InputError;

fn parse_master_keys(
    raw: &Spanned<Vec<RawMasterKey>>,
    error: ErrorAt,
) -> Result<(BTreeMap<MkType, Mkvp>, GroupMode), InputError> {
    let mut keys = BTreeMap::new();
    let mut mode = None;
    for key in &raw.value {
        let mk_type = MkType::parse(&key.mk_type.value)
            .filter(|t| t.visible_in_sysfs())
            .ok_or_else(|| {
                error(
                    at(&key.mk_type),
                    format!("{} is not a master key type mkplan can verify from Linux", quote(&key.mk_type.value)),
                    "write WK (EP11), AES, APKA or ASYM (CCA); SYM shows only through the CCA library or the TKE",
                )
            })?;
        let this = if mk_type.is_ep11() {
            GroupMode::Ep11
        } else {
            GroupMode::Cca
        };
        if *mode.get_or_insert(this) != this {
            return Err(error(
                at(&key.mk_type),
                "EP11 (WK) and CCA (AES, APKA, ASYM) master keys in one group".into(),
                "a domain group is one mode: make one group per mode",
            ));
        }
        let vp = Mkvp::parse(mk_type, &key.verification_pattern.value).map_err(|why| {
            error(
                at(&key.verification_pattern),
                why,
                "copy the pattern from the key parts' ceremony record or the TKE",
            )
        })?;
        if keys.insert(mk_type, vp).is_some() {
            return Err(error(
                at(&key.mk_type),
                format!("{mk_type} is listed twice"),
                "list each type once",
            ));
        }
    }
    let Some(mode) = mode else {
        return Err(error(
            at(raw),
            "no master key is named".into(),
            "name each type to change: - type: WK, verification_pattern: \"…\"",
        ));
    };
    Ok((keys, mode))
}

fn parse_stores(
    raw: &Spanned<Vec<Spanned<RawStore>>>,
    master_keys: &BTreeMap<MkType, Mkvp>,
    folder: &Path,
    error: ErrorAt,
) -> Result<Vec<DesiredStore>, InputError> {
    if raw.value.len() > GROUP_STORES_MAX {
        return Err(error(
            at(raw),
            format!("more than {GROUP_STORES_MAX} stores"),
            "split the group's stores",
        ));
    }
    let mut stores = Vec::new();
    for store in &raw.value {
        let place = at(store);
        let s = &store.value;
        let given = [
            s.zkey_keys.is_some(),
            s.zkey_key.is_some(),
            s.luks2_volume.is_some(),
            s.opencryptoki.is_some(),
            s.application.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(error(
                place,
                "each store is one of zkey_keys, zkey_key, luks2_volume, opencryptoki, application"
                    .into(),
                "write one kind of store per list entry",
            ));
        }
        let parsed = if let Some(word) = &s.zkey_keys {
            if word.value != "associated" {
                return Err(error(
                    at(word),
                    format!("zkey_keys: {}", quote(&word.value)),
                    "write zkey_keys: associated",
                ));
            }
            DesiredStore::ZkeyAssociated
        } else if let Some(name) = &s.zkey_key {
            check_word(name, error, "a zkey key name")?;
            DesiredStore::ZkeyKey(name.value.clone())
        } else if let Some(volume) = &s.luks2_volume {
            check_word(&volume.device, error, "a device path")?;
            DesiredStore::Luks2Volume {
                device: volume.device.value.clone(),
                key_file: relative(folder, &volume.key_file.value),
            }
        } else if let Some(word) = &s.opencryptoki {
            if word.value != "tokens" {
                return Err(error(
                    at(word),
                    format!("opencryptoki: {}", quote(&word.value)),
                    "write opencryptoki: tokens",
                ));
            }
            DesiredStore::OpenCryptoki
        } else if let Some(app) = &s.application {
            check_word(&app.name, error, "an application key name")?;
            let mk_type = match &app.mk_type {
                Some(word) => MkType::parse(&word.value)
                    .filter(|t| master_keys.contains_key(t))
                    .ok_or_else(|| {
                        error(
                            at(word),
                            format!("{} is not a type this group changes", quote(&word.value)),
                            "name one of the group's master_keys types",
                        )
                    })?,
                None if master_keys.len() == 1 => *master_keys.keys().next().expect("one"),
                None => {
                    return Err(error(
                        at(&app.name),
                        "the group changes several types".into(),
                        "add type: to the application key",
                    ));
                }
            };
            let command = |c: &Spanned<Vec<String>>| {
                if c.value.is_empty() || c.value.len() > COMMAND_WORDS_MAX {
                    Err(error(
                        at(c),
                        format!("a command is 1 to {COMMAND_WORDS_MAX} words"),
                        "write it as a list: [program, arg, …]",
                    ))
                } else {
                    Ok(c.value.clone())
                }
            };
            DesiredStore::Application {
                name: app.name.value.clone(),
                mk_type,
                check: command(&app.check)?,
                stage: command(&app.stage)?,
                complete: command(&app.complete)?,
            }
        } else {
            unreachable!("one kind was given")
        };
        if stores.contains(&parsed) {
            return Err(error(
                place,
                "this store is listed twice".into(),
                "list each store once",
            ));
        }
        stores.push(parsed);
    }
    Ok(stores)
}

fn check_word(word: &Spanned<String>, error: ErrorAt, what: &str) -> Result<(), InputError> {
    let value = &word.value;
    if value.is_empty()
        || value.len() > 256
        || value.starts_with('-')
        || value.chars().any(crate::quote::is_control_like)
    {
        return Err(error(
            at(word),
            format!("{} is not {what}", quote(value)),
            "write it as the tool shows it, not starting with -",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "domain_group_desired_tests.rs"]
mod tests;
