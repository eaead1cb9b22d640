//! The `zcrypt:` backend: one Linux image's Crypto Express APQNs below a sysfs root, and the
//! key stores of a domain group, read through their tools. It reads registers from `mkvps`
//! (never through a tool), runs `zkey`, `zkey-cryptsetup`, `pkcshsm_mk_change` and declared
//! application commands with `SYSFS_ROOT` and `ZKEY_REPOSITORY` set and the group's APQNs
//! named explicitly (zkey's own discovery would read the real `/sys`, zcrypt.md §2.6).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::mkvps::{self, Mkvps, State};
use super::ock_list::{OckOperation, parse_ock_list};
use super::sysfs::{CardMode, Sysfs};
use super::tools::{ToolCall, ToolOutput, ToolRunner};
use super::{luks2, stores};
use crate::model::domain_group::{
    GroupMode, KeyCopies, LiveApqn, LiveGroup, LiveStore, StoreId, StoreKind, StoreState,
};
use crate::model::domain_group_desired::{DesiredGroup, DesiredStore, Procedure};
use crate::model::domain_group_inventory::{FoundOperation, Inventory};
use crate::model::domain_group_selector::SeenCard;
use crate::model::ock_tokens::{GroupTokens, NotShown, token_changing};
use crate::model::registers::{ApqnRegisters, HeldMk, MkType, Mkvp, NewMk, TypeRegisters};

/// Bytes of a `.renc` file read at most (an XTS EP11 pair is 672).
const TOKEN_FILE_BYTES_MAX: u64 = 4096;

pub struct ZcryptBackend {
    /// The sysfs root, canonical: `/sys` for this machine.
    root: PathBuf,
    own_machine: bool,
    runner: Arc<dyn ToolRunner>,
}

impl ZcryptBackend {
    /// `zcrypt:/` is this machine (`/sys`); `zcrypt:PATH` a sysfs tree at PATH, as
    /// `SYSFS_ROOT` names one.
    pub fn open(spec_path: &Path, runner: Arc<dyn ToolRunner>) -> Result<Self, String> {
        let own_machine = spec_path == Path::new("/");
        let given = if own_machine {
            Path::new("/sys")
        } else {
            spec_path
        };
        let root = std::fs::canonicalize(given).map_err(|e| {
            format!(
                "zcrypt:{}: {e}: name the sysfs root (zcrypt:/ for this machine's /sys)",
                spec_path.display()
            )
        })?;
        if !root.join("devices/ap").is_dir() {
            return Err(format!(
                "zcrypt:{}: {} has no devices/ap: not a sysfs tree with the AP bus (is the zcrypt module loaded?)",
                spec_path.display(),
                crate::quote::path(&root)
            ));
        }
        Ok(Self {
            root,
            own_machine,
            runner,
        })
    }

    pub fn describe(&self) -> String {
        if self.own_machine {
            "zcrypt:/".into()
        } else {
            format!("zcrypt:{}", self.root.display())
        }
    }

    /// What the journal binds to: the canonical sysfs root and zkey repository.
    pub fn identity(&self, desired: &DesiredGroup) -> String {
        let repository = std::fs::canonicalize(&desired.zkey_repository)
            .unwrap_or_else(|_| desired.zkey_repository.clone());
        format!(
            "zcrypt:{}#zkey={}#group={}",
            self.root.display(),
            repository.display(),
            desired.name
        )
    }

    /// The sysfs root this backend reads.
    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    fn env(&self, desired: &DesiredGroup) -> Vec<(String, String)> {
        let mut env = vec![(
            "ZKEY_REPOSITORY".to_string(),
            desired.zkey_repository.display().to_string(),
        )];
        if !self.own_machine {
            env.push(("SYSFS_ROOT".into(), self.root.display().to_string()));
        }
        env
    }

    pub fn apqn_list(desired: &DesiredGroup) -> String {
        desired
            .apqns
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn call(&self, desired: &DesiredGroup, program: &str, args: Vec<String>) -> ToolCall {
        ToolCall {
            program: program.into(),
            args,
            env: self.env(desired),
            user_pins: None,
        }
    }

    pub fn run(&self, call: &ToolCall) -> Result<ToolOutput, String> {
        self.runner.run(call)
    }

    /// Resolves the group's APQN selector over every card this sysfs shows (a listed group
    /// is left as it is): done before every plan and every apply.
    pub fn resolve_apqns(&self, desired: &mut DesiredGroup) -> Result<(), ReadError> {
        if desired.selector.is_none() {
            return Ok(());
        }
        let cards = Sysfs::new(&self.root).cards().map_err(|e| e.to_string())?;
        let seen: Vec<SeenCard> = cards
            .iter()
            .map(|card| SeenCard {
                number: card.number,
                kind: card.kind.clone(),
                mode: group_mode(&card.mode),
                accelerator: card.mode == CardMode::Accelerator,
                domains: card.queues.iter().map(|q| q.apqn.domain).collect(),
            })
            .collect();
        desired.resolve(&seen);
        Ok(())
    }

    /// The group's APQNs and stores, as the machine shows them now.
    pub fn read(&self, desired: &DesiredGroup) -> Result<LiveGroup, ReadError> {
        let apqns = self.read_apqns(desired)?;
        let inventory = self.inventory(desired);
        Ok(LiveGroup {
            stores: self.read_stores(desired, &apqns, &inventory)?,
            apqns,
            inventory,
        })
    }

    pub fn read_apqns(&self, desired: &DesiredGroup) -> Result<Vec<LiveApqn>, ReadError> {
        let cards = Sysfs::new(&self.root).cards().map_err(|e| e.to_string())?;
        let mut apqns = Vec::new();
        for apqn in &desired.apqns {
            let card = cards.iter().find(|c| c.number == apqn.card);
            let queue = card.and_then(|c| c.queues.iter().find(|q| q.apqn == *apqn));
            let (Some(card), Some(queue)) = (card, queue) else {
                apqns.push(LiveApqn {
                    apqn: *apqn,
                    usable: false,
                    mode: None,
                    card_serial: None,
                    registers: None,
                });
                continue;
            };
            if let Some(contradiction) = &queue.contradiction {
                return Err(ReadError::Contradicts {
                    message: format!(
                        "APQN {apqn}: its {} contradicts itself: {}",
                        crate::quote::path(&contradiction.path),
                        contradiction.why
                    ),
                    settle: format!(
                        "the registers of APQN {apqn} read another way that agrees with itself: `lszcrypt -c {apqn}` and `zkey`'s view of the APQN on the machine, or the TKE's view of domain {:04x} of card {:02x}. If the sysfs tree is a copy of another machine's, copy it again; if the kernel itself prints this, report it to your Linux distributor. mkplan plans again once this mkvps agrees with itself",
                        apqn.domain, apqn.card
                    ),
                });
            }
            let mode = group_mode(&card.mode);
            apqns.push(LiveApqn {
                apqn: *apqn,
                usable: card.usable() && queue.online,
                mode,
                card_serial: card.serial.clone(),
                registers: queue.mkvps.as_ref().map(registers_of).transpose()?,
            });
        }
        Ok(apqns)
    }

    fn read_stores(
        &self,
        desired: &DesiredGroup,
        apqns: &[LiveApqn],
        inventory: &Inventory,
    ) -> Result<Vec<LiveStore>, String> {
        let mut found = Vec::new();
        let mut seen = BTreeSet::new();
        for store in &desired.stores {
            let observed = match store {
                DesiredStore::ZkeyAssociated => self.zkey_keys(
                    desired,
                    vec!["--apqns".into(), Self::apqn_list(desired)],
                    None,
                ),
                DesiredStore::ZkeyKey(name) => {
                    self.zkey_keys(desired, vec!["--name".into(), name.clone()], Some(name))
                }
                DesiredStore::Luks2Volume { device, key_file } => {
                    vec![self.luks2_volume(desired, device, key_file)]
                }
                DesiredStore::OpenCryptoki => vec![self.ock_tokens(desired, apqns, inventory)],
                DesiredStore::Application {
                    name,
                    mk_type,
                    check,
                    ..
                } => vec![self.application(desired, name, *mk_type, check)],
            };
            for store in observed {
                if seen.insert(store.id.clone()) {
                    found.push(store);
                }
            }
        }
        Ok(found)
    }

    fn zkey_keys(
        &self,
        desired: &DesiredGroup,
        filter: Vec<String>,
        one: Option<&String>,
    ) -> Vec<LiveStore> {
        let mut args = vec!["validate".to_string()];
        args.extend(filter);
        let call = self.call(desired, "zkey", args);
        let unknown = |name: &str, why: String| LiveStore {
            id: StoreId {
                kind: StoreKind::ZkeyKey,
                name: name.into(),
            },
            state: StoreState::Unknown {
                why,
                settle: format!("`{}` listing the key with its MKVP", call.shown()),
            },
            handle: None,
        };
        let output = match self.runner.run(&call) {
            Ok(output) => output,
            Err(why) => return vec![unknown(one.map_or("(associated keys)", |n| n), why)],
        };
        let keys = match stores::parse_validate(&output.stdout) {
            Ok(keys) => keys,
            Err(why) => return vec![unknown(one.map_or("(associated keys)", |n| n), why)],
        };
        if let Some(name) = one
            && !keys.iter().any(|k| &k.name == name)
        {
            return vec![unknown(
                name,
                format!("zkey validate does not show it ({})", output.last_words()),
            )];
        }
        keys.into_iter()
            .map(|key| match self.zkey_copies(desired, &key) {
                Ok(copies) => LiveStore {
                    id: StoreId {
                        kind: StoreKind::ZkeyKey,
                        name: key.name.clone(),
                    },
                    state: StoreState::Known(copies),
                    handle: None,
                },
                Err(why) => unknown(&key.name, why),
            })
            .collect()
    }

    fn zkey_copies(
        &self,
        desired: &DesiredGroup,
        key: &stores::ZkeyKeyView,
    ) -> Result<BTreeMap<MkType, KeyCopies>, String> {
        let mk_type = stores::mk_type_of(&key.key_type)
            .ok_or_else(|| format!("key type {} is not one mkplan knows", key.key_type))?;
        let active = Mkvp::parse(mk_type, &key.mkvp)?;
        let staged = if key.pending {
            let path = desired.zkey_repository.join(format!("{}.renc", key.name));
            let bytes = crate::bounded_read::read(&path, TOKEN_FILE_BYTES_MAX)
                .map_err(|e| format!("{}: {e}", crate::quote::path(&path)))?;
            let hex = stores::token_mkvp(&key.key_type, &bytes).ok_or_else(|| {
                format!(
                    "{} is not a {} token mkplan can read (too short, or a layout or version other than those zkey writes: EP11-AES version 0x06 with its 16-byte header or 0x03 without; CCA AESDATA, AESCIPHER), so the staged copy's master key is not known; `zkey validate --name {}` shows what zkey makes of the key",
                    crate::quote::path(&path),
                    key.key_type,
                    key.name
                )
            })?;
            Some(Mkvp::parse(mk_type, &hex)?)
        } else {
            None
        };
        Ok(BTreeMap::from([(mk_type, KeyCopies { active, staged })]))
    }

    /// A LUKS2 header's copy, read by `zkey-cryptsetup validate DEVICE --key-file F` (the
    /// passphrase stays in its file: only the path is an argument).
    fn luks2_volume(&self, desired: &DesiredGroup, device: &str, key_file: &Path) -> LiveStore {
        let call = self.call(
            desired,
            "zkey-cryptsetup",
            luks2_args("validate", device, key_file, &[]),
        );
        let id = StoreId {
            kind: StoreKind::Luks2Volume,
            name: device.into(),
        };
        let unknown = |why: String| LiveStore {
            id: id.clone(),
            state: StoreState::Unknown {
                why,
                settle: format!(
                    "`{}` showing the volume key's MKVP: the key file must hold the passphrase of a keyslot of {device} (its whole content is the passphrase, a final newline included)",
                    call.shown()
                ),
            },
            handle: None,
        };
        let output = match self.runner.run(&call) {
            Ok(output) => output,
            Err(why) => return unknown(why),
        };
        // Exit 1 with the validation printed: the key is not valid (under no register).
        let view = match stores::parse_luks2_validate(&output.stdout) {
            Ok(view) => view,
            Err(_) if !output.success() => {
                return unknown(format!("{} failed: {}", call.shown(), output.last_words()));
            }
            Err(why) => return unknown(why),
        };
        let active = stores::mk_type_of(&view.key_type)
            .ok_or_else(|| format!("key type {} is not one mkplan knows", view.key_type))
            .and_then(|t| Ok((t, Mkvp::parse(t, &view.mkvp)?)));
        let (mk_type, active) = match active {
            Ok(found) => found,
            Err(why) => return unknown(why),
        };
        let state = if view.pending {
            match self.luks2_staged(desired, device, key_file, mk_type, &view.key_type) {
                Ok(staged) => StoreState::Known(BTreeMap::from([(
                    mk_type,
                    KeyCopies {
                        active,
                        staged: Some(staged),
                    },
                )])),
                Err((why, settle)) => StoreState::Unknown { why, settle },
            }
        } else {
            StoreState::Known(BTreeMap::from([(
                mk_type,
                KeyCopies {
                    active,
                    staged: None,
                },
            )]))
        };
        LiveStore {
            id,
            state,
            handle: None,
        }
    }

    /// The master key of a LUKS2 volume's staged copy, which `zkey-cryptsetup validate` does
    /// not show, read from the header's unbound key slot with `cryptsetup` ([`luks2`]). On
    /// failure: why, and what would settle it.
    fn luks2_staged(
        &self,
        desired: &DesiredGroup,
        device: &str,
        key_file: &Path,
        mk_type: MkType,
        key_type: &str,
    ) -> Result<Mkvp, (String, String)> {
        let metadata = self.call(desired, "cryptsetup", luks2::metadata_args(device));
        let settle = |call: &ToolCall| {
            format!(
                "`{}` showing the staged key slot's key (cryptsetup 2.5 or later, and a key file that opens that key slot: zkey-cryptsetup staged it with the passphrase of the active one), or `zkey-cryptsetup reencipher {device} --complete` or a staging canceled by hand, after which the header holds no staged copy",
                call.shown()
            )
        };
        let run = |call: &ToolCall| match self.runner.run(call) {
            Ok(output) if output.success() => Ok(output.stdout),
            Ok(output) => Err(format!("{} failed: {}", call.shown(), output.last_words())),
            Err(why) => Err(why),
        };
        let why = |what: String| {
            format!(
                "{device} has a staged copy of its key, and mkplan cannot tell which master key it is under: {what}"
            )
        };
        let slot = run(&metadata)
            .and_then(|json| luks2::unbound_keyslot(&json))
            .map_err(|e| (why(e), settle(&metadata)))?;
        let dump = self.call(
            desired,
            "cryptsetup",
            luks2::unbound_key_args(device, slot, key_file),
        );
        let token = run(&dump)
            .and_then(|out| luks2::unbound_key(&out))
            .map_err(|e| (why(e), settle(&dump)))?;
        let hex = stores::token_mkvp(key_type, &token).ok_or_else(|| {
            (
                why(format!(
                    "key slot {slot} holds {} bytes, too few for a {key_type} token",
                    token.len()
                )),
                settle(&dump),
            )
        })?;
        Mkvp::parse(mk_type, &hex).map_err(|e| (why(e), settle(&dump)))
    }

    /// The openCryptoki tokens on the group's APQNs, as one store (one `pkcshsm_mk_change`
    /// operation moves them all), their state told slot by slot from the token configs that
    /// `inventory` read and the open operation ([`GroupTokens`]).
    fn ock_tokens(
        &self,
        desired: &DesiredGroup,
        apqns: &[LiveApqn],
        inventory: &Inventory,
    ) -> LiveStore {
        let call = self.call(desired, "pkcshsm_mk_change", vec!["list".into()]);
        let id = StoreId {
            kind: StoreKind::OpenCryptoki,
            name: Self::apqn_list(desired),
        };
        let unknown = |why: String, settle: String| LiveStore {
            id: id.clone(),
            state: StoreState::Unknown { why, settle },
            handle: None,
        };
        let listed = match self.runner.run(&call) {
            Ok(output) if output.success() => parse_ock_list(&output.stdout),
            Ok(output) => Err(format!("{} failed: {}", call.shown(), output.last_words())),
            Err(why) => Err(why),
        };
        let operations: Vec<FoundOperation> = match listed {
            Ok(operations) => operations.into_iter().map(OckOperation::found).collect(),
            Err(why) => {
                return unknown(
                    why,
                    "`pkcshsm_mk_change list` succeeding: it shows whether an operation is open on the group's APQNs and what it moved".into(),
                );
            }
        };
        let group = GroupTokens::of(&inventory.tokens, &operations, &desired.apqns, desired.mode);
        let changing = token_changing(desired.mode, desired.master_keys.keys().copied());
        let mut currents: BTreeMap<MkType, BTreeSet<Mkvp>> = BTreeMap::new();
        for registers in apqns.iter().filter_map(|a| a.registers.as_ref()) {
            for (mk_type, register) in registers {
                if let Some(vp) = register.current.vp() {
                    currents.entry(*mk_type).or_default().insert(vp.clone());
                }
            }
        }
        let from_old = desired.procedure == Procedure::SetThenFromOld;
        match group.copies(&changing, &currents, from_old) {
            Ok((copies, handle)) => LiveStore {
                id,
                state: StoreState::Known(copies),
                handle,
            },
            Err(NotShown { why, settle }) => unknown(why, settle),
        }
    }

    fn application(
        &self,
        desired: &DesiredGroup,
        name: &str,
        mk_type: MkType,
        check: &[String],
    ) -> LiveStore {
        let call = self.call(desired, &check[0], check[1..].to_vec());
        let id = StoreId {
            kind: StoreKind::Application,
            name: name.into(),
        };
        let state = match self.runner.run(&call) {
            Ok(output) if output.success() => {
                match stores::parse_application_check(mk_type, &output.stdout) {
                    Ok(copies) => StoreState::Known(BTreeMap::from([(mk_type, copies)])),
                    Err(why) => StoreState::Unknown {
                        why,
                        settle: format!(
                            "`{}` printing one `active: VP` line, and at most one `staged: VP` line",
                            call.shown()
                        ),
                    },
                }
            }
            Ok(output) => StoreState::Unknown {
                why: format!("{} failed: {}", call.shown(), output.last_words()),
                settle: format!("`{}` succeeding", call.shown()),
            },
            Err(why) => StoreState::Unknown {
                why,
                settle: format!("`{}` succeeding", call.shown()),
            },
        };
        LiveStore {
            id,
            state,
            handle: None,
        }
    }
}

fn group_mode(mode: &CardMode) -> Option<GroupMode> {
    match mode {
        CardMode::Ep11 => Some(GroupMode::Ep11),
        CardMode::Cca => Some(GroupMode::Cca),
        _ => None,
    }
}

/// A LUKS2 volume's stage step: CURRENT → NEW into an unbound keyslot.
pub const LUKS2_STAGE_FLAGS: &[&str] = &["--to-new", "--staged"];

/// A LUKS2 volume's complete step, after the set: the staged key slot becomes the active one
/// (zkey-cryptsetup.c `reencipher_complete`, `activate_unbound_keyslot`). Every key slot of the
/// old key is then unbound, and still holds the volume's key enciphered under the old master
/// key: whoever has that key and a passphrase recovers the clear volume key from the header,
/// so a change that retires a key it no longer trusts would leave the volume exposed. The tool
/// removes them only when its question is answered yes: the apply adds `--batch-mode`. With
/// that the tool removes every unbound key slot but the new one, those of other passphrases
/// too (it warns). The yes also answers its other question, which comes only when the staged
/// key is under OLD (the MK was changed again after this change's set): the key is then
/// re-enciphered to CURRENT before it is activated, which loses nothing.
pub const LUKS2_COMPLETE_FLAGS: &[&str] = &["--complete"];

/// A LUKS2 volume's from-OLD step (CCA, after the set): OLD → CURRENT, in place. The tool
/// re-enciphers only a key that some APQN's OLD holds, so on a volume already moved it fails
/// with nothing changed. `--in-place` is explicit: without it, a staging pending on the
/// volume would turn the command into `--complete` (zkey-cryptsetup.c `command_reencipher`);
/// with it, the tool asks to cancel that staging, and with no `--batch-mode` leaves the
/// device unchanged.
pub const LUKS2_FROM_OLD_FLAGS: &[&str] = &["--from-old", "--in-place"];

/// `zkey-cryptsetup COMMAND DEVICE FLAGS --key-file F`: the arguments mkplan runs, and the
/// words its journal records for a LUKS2 volume's steps.
pub fn luks2_args(command: &str, device: &str, key_file: &Path, flags: &[&str]) -> Vec<String> {
    let mut args = vec![command.to_string(), device.to_string()];
    args.extend(flags.iter().map(ToString::to_string));
    args.push("--key-file".into());
    args.push(key_file.display().to_string());
    args
}

/// `mkvps` in the model's words: VPs cut to the compared length.
pub(super) fn registers_of(shown: &Mkvps) -> Result<ApqnRegisters, String> {
    let mut registers = ApqnRegisters::new();
    for kernel_type in shown.types() {
        let mk_type = match kernel_type {
            mkvps::MkType::Wk => MkType::Wk,
            mkvps::MkType::Aes => MkType::Aes,
            mkvps::MkType::Apka => MkType::Apka,
            mkvps::MkType::Asym => MkType::Asym,
        };
        let get = |register| {
            shown
                .get(kernel_type, register)
                .expect("complete, checked at parse")
        };
        let vp = |r: &mkvps::RegisterState| {
            r.pattern
                .as_deref()
                .map(|p| Mkvp::parse(mk_type, p))
                .transpose()
        };
        let new = get(mkvps::Register::New);
        let new = match new.state {
            State::Empty => NewMk::Empty,
            State::Partial => NewMk::Partial,
            State::Uncommitted => NewMk::Uncommitted(vp(new)?.ok_or("no VP")?),
            State::Committed | State::Full => NewMk::Ready(vp(new)?.ok_or("no VP")?),
            _ => NewMk::Unknown,
        };
        let held = |r: &mkvps::RegisterState| -> Result<HeldMk, String> {
            Ok(match r.state {
                State::Valid => HeldMk::Valid(vp(r)?.ok_or("no VP")?),
                State::Invalid => HeldMk::Invalid,
                _ => HeldMk::Unknown,
            })
        };
        let current = held(get(mkvps::Register::Current))?;
        let old = if mk_type.has_old() {
            Some(held(get(mkvps::Register::Old))?)
        } else {
            None
        };
        registers.insert(mk_type, TypeRegisters { new, current, old });
    }
    Ok(registers)
}

/// Why a group could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// A file or a tool could not be read or run: an error.
    Failed(String),
    /// What the machine shows contradicts itself (an APQN's `mkvps`): a refusal for safety,
    /// with the evidence that would settle it.
    Contradicts { message: String, settle: String },
}

impl From<String> for ReadError {
    fn from(why: String) -> Self {
        Self::Failed(why)
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(why) => f.write_str(why),
            Self::Contradicts { message, settle } => {
                write!(f, "{message}\nEvidence that would settle it: {settle}")
            }
        }
    }
}
