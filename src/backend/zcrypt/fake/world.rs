//! The fake platform's truth, `DIR/world.json`: every card and APQN with its registers, every
//! store's copies and the master key each is enciphered under, the open openCryptoki
//! operations, the keys already lost, and the history of actions. The sysfs tree and the
//! zkey repository under `DIR` are views of it, written after every change.
//!
//! A master key is named by its verification pattern (VP) as the register shows it: EP11 64
//! hex, CCA AES, APKA and SYM 16, ASYM 32. A store's copy names the MK by the pattern its
//! token carries, which may be shorter (an EP11 blob carries 16 bytes); two patterns name the
//! same MK when the shorter is a prefix of the longer.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The truth's file name under the world folder.
pub const WORLD_FILE: &str = "world.json";
/// Taken exclusively by every tool and ceremony action while it works.
pub const WORLD_LOCK: &str = "world.lock";
/// Largest world.json read.
const WORLD_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// A master key type. SYM is not shown in sysfs (no kernel prints it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mk {
    Wk,
    Aes,
    Apka,
    Asym,
    Sym,
}

impl Mk {
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_uppercase().as_str() {
            "WK" | "EP11" => Self::Wk,
            "AES" => Self::Aes,
            "APKA" => Self::Apka,
            "ASYM" => Self::Asym,
            "SYM" => Self::Sym,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Wk => "WK",
            Self::Aes => "AES",
            Self::Apka => "APKA",
            Self::Asym => "ASYM",
            Self::Sym => "SYM",
        }
    }

    pub fn is_ep11(self) -> bool {
        self == Self::Wk
    }

    /// Hex digits of the VP a register shows.
    pub fn vp_hex_len(self) -> usize {
        match self {
            Self::Wk => 64,
            Self::Aes | Self::Apka | Self::Sym => 16,
            Self::Asym => 32,
        }
    }

    /// Hex digits of the VP a tool shows and a token's objects are compared by: EP11's and
    /// ASYM's 16 bytes, the other CCA types' 8.
    pub fn compared_hex_len(self) -> usize {
        self.vp_hex_len().min(32)
    }
}

/// The NEW register. EP11 loads to `Uncommitted` and commits; CCA loads parts (`Partial`) to
/// `Full`, with no commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum NewRegister {
    #[default]
    Empty,
    Partial,
    Uncommitted(String),
    Committed(String),
    Full(String),
}

impl NewRegister {
    /// The VP of a whole key held, committed or not.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Uncommitted(vp) | Self::Committed(vp) | Self::Full(vp) => Some(vp),
            Self::Empty | Self::Partial => None,
        }
    }

    /// Ready to be set: committed (EP11) or full (CCA).
    pub fn ready(&self) -> Option<&str> {
        match self {
            Self::Committed(vp) | Self::Full(vp) => Some(vp),
            _ => None,
        }
    }
}

/// One master key type's registers on one APQN. `current`/`old` are `Some(vp)` when valid.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registers {
    #[serde(default)]
    pub new: NewRegister,
    #[serde(default)]
    pub current: Option<String>,
    #[serde(default)]
    pub old: Option<String>,
}

impl Registers {
    /// Whether any register holds the MK `vp` names (OLD only for CCA).
    pub fn holds(&self, mk: Mk, vp: &str) -> bool {
        self.new.key().is_some_and(|k| same_mk(k, vp))
            || self.current.as_deref().is_some_and(|k| same_mk(k, vp))
            || (!mk.is_ep11() && self.old.as_deref().is_some_and(|k| same_mk(k, vp)))
    }
}

/// One domain of a card.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Domain {
    pub domain: u16,
    pub online: bool,
    pub registers: BTreeMap<Mk, Registers>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Card {
    pub card: u8,
    /// `CEX8P`, `CEX7C`, `CEX7A`.
    #[serde(rename = "type")]
    pub kind: String,
    pub serialnr: String,
    pub online: bool,
    pub config: bool,
    pub chkstop: bool,
    pub domains: Vec<Domain>,
}

impl Card {
    pub fn is_ep11(&self) -> bool {
        self.kind.ends_with('P')
    }

    pub fn is_cca(&self) -> bool {
        self.kind.ends_with('C')
    }

    pub fn generation(&self) -> u8 {
        self.kind
            .as_bytes()
            .get(3)
            .and_then(|b| (*b as char).to_digit(10))
            .map_or(0, |g| g as u8)
    }
}

/// A zkey secure key's type, as in `key-type` of its `.info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    #[serde(rename = "CCA-AESDATA")]
    CcaAesData,
    #[serde(rename = "CCA-AESCIPHER")]
    CcaAesCipher,
    #[serde(rename = "EP11-AES")]
    Ep11Aes,
}

impl KeyType {
    pub fn name(self) -> &'static str {
        match self {
            Self::CcaAesData => "CCA-AESDATA",
            Self::CcaAesCipher => "CCA-AESCIPHER",
            Self::Ep11Aes => "EP11-AES",
        }
    }

    /// The MK type the key is enciphered under: zkey's CCA keys use AES only.
    pub fn mk(self) -> Mk {
        match self {
            Self::Ep11Aes => Mk::Wk,
            _ => Mk::Aes,
        }
    }

    /// Hex digits of the MKVP the token carries: EP11 16 bytes, CCA 8.
    pub fn mkvp_hex_len(self) -> usize {
        match self {
            Self::Ep11Aes => 32,
            _ => 16,
        }
    }
}

/// A LUKS2 or plain volume a zkey key is associated with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Volume {
    pub device: String,
    pub dm_name: String,
    pub luks2: bool,
}

/// A key of the zkey repository: the MK of its `.skey`, and of its `.renc` if staged.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ZkeyKey {
    pub name: String,
    pub key_type: KeyType,
    /// Associated APQNs, `03.0006`; empty: all APQNs of the type (discovered under `/sys`).
    pub apqns: Vec<String>,
    pub xts: bool,
    /// EP11-AES: its tokens have the 16-byte `ep11kblob_header` in front (zkey since
    /// s390-tools 2.30.0); false: a key made before, or by zkey's PKEY_TYPE_EP11 fallback,
    /// which re-enciphering keeps so. Unused for CCA keys.
    #[serde(default = "with_header")]
    pub ep11_header: bool,
    pub description: String,
    pub volume: Option<Volume>,
    pub skey: String,
    pub renc: Option<String>,
    pub verification_pattern: String,
    pub creation_time: String,
    pub reencipher_time: Option<String>,
}

fn with_header() -> bool {
    true
}

/// The copy of a LUKS2 volume's secure key in its header: the active keyslot's MK and a
/// staged (unbound) keyslot's, and the SHA-256 of the passphrase that opens its keyslots
/// (the passphrase itself is kept nowhere in the world).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Luks2Header {
    pub device: String,
    pub key_name: String,
    pub active: String,
    pub staged: Option<String>,
    pub passphrase_sha256: String,
    /// The MKs of the older copies of the volume key still in the header: the key slots that
    /// were active before a re-enciphering was activated, now unbound, which the tool removes
    /// only when its question is answered yes (`--batch-mode`). Each is the volume's key,
    /// enciphered under a master key the volume no longer uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unbound: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Ep11,
    Cca,
}

impl TokenKind {
    /// Whether a token of this kind uses `mk` (openCryptoki: EP11 the WK; CCA SYM, AES and
    /// APKA, never ASYM, its RSA, EC and QSA keys being under APKA).
    pub fn uses(self, mk: Mk) -> bool {
        match self {
            Self::Ep11 => mk == Mk::Wk,
            Self::Cca => matches!(mk, Mk::Sym | Mk::Aes | Mk::Apka),
        }
    }
}

/// An openCryptoki token: the MK its key objects are enciphered under, per type, and the
/// re-enciphered copies an open `pkcshsm_mk_change` operation holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Token {
    pub slot: u32,
    pub kind: TokenKind,
    /// Its config's name in `opencryptoki/`, as `opencryptoki.conf` names it (`confname`);
    /// `None`: `ep11tok<SLOT>.conf` / `ccatok<SLOT>.conf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confname: Option<String>,
    pub apqns: Vec<String>,
    pub objects: BTreeMap<Mk, String>,
    pub staged: BTreeMap<Mk, String>,
    /// The SHA-256 of the token's USER PIN; `None`: any PIN that is not empty logs in
    /// (worlds written before PINs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_pin_sha256: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    Reenciphered,
    Errored,
    /// A finalize stopped between its two passes (pkcshsm_mk_change.c saves this state before
    /// the second): neither finalize nor cancel takes it again.
    Finalizing,
}

/// An open `pkcshsm_mk_change` operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    pub state: OperationState,
    pub apqns: Vec<String>,
    pub new: BTreeMap<Mk, String>,
    pub slots: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The tool performs and records its effect, then is killed before it prints: the
    /// outcome is lost.
    CrashAfterEffect,
    /// The tool fails before any effect, with an error.
    FailBeforeEffect,
    /// The APQN goes offline before the tool runs.
    ApqnOffline,
    /// The process that ran the tool (mkplan's apply) is killed as the tool starts; the
    /// tool then fails with nothing changed.
    KillCallerBeforeEffect,
    /// The tool records its effect, then the process that ran it and the tool are killed:
    /// the effect is there, no outcome was seen by anyone.
    KillCallerAfterEffect,
}

/// A fault armed in the world: fires on the next `times` runs of `tool` (any tool if none),
/// after `skip` matching runs have gone by untouched.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub kind: FaultKind,
    /// `zkey`, `zkey reencipher`, `zkey-cryptsetup`, `pkcshsm_mk_change finalize`…
    #[serde(default)]
    pub tool: Option<String>,
    #[serde(default)]
    pub apqn: Option<String>,
    #[serde(default = "once")]
    pub times: u32,
    #[serde(default)]
    pub skip: u32,
}

fn once() -> u32 {
    1
}

/// A declared application key: the MK it is under, and a staged copy's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplicationKey {
    pub name: String,
    pub mk: Mk,
    pub apqns: Vec<String>,
    pub mkvp: String,
    pub staged: Option<String>,
}

/// The whole truth.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct World {
    /// The mkplan binary the fake tools exec, recorded at init.
    pub mkplan: PathBuf,
    pub latency_ms: u64,
    /// The kernel whose sysfs is shown, (major, minor): what `mkvps` and the card attributes
    /// hold depends on it (zcrypt.md §2.5).
    #[serde(default = "newest_kernel")]
    pub kernel: (u32, u32),
    pub faults: Vec<Fault>,
    pub cards: Vec<Card>,
    pub keys: Vec<ZkeyKey>,
    pub luks2: Vec<Luks2Header>,
    pub tokens: Vec<Token>,
    pub operations: Vec<Operation>,
    #[serde(default)]
    pub applications: Vec<ApplicationKey>,
    /// Stores' copies already recorded as lost (so each loss is recorded once).
    pub lost: BTreeSet<String>,
    pub next_operation: u64,
    pub history: Vec<String>,
    /// Every key lost, in order: recorded with the effect that lost it, in one write.
    #[serde(default)]
    pub incidents: Vec<super::incidents::Incident>,
    #[serde(default)]
    pub warnings: Vec<super::incidents::Incident>,
}

/// The kernel shown when the world file names none: every attribute.
pub fn newest_kernel() -> (u32, u32) {
    (6, 12)
}

/// Two VPs name the same MK when the shorter is a prefix of the longer (case-insensitive).
pub fn same_mk(a: &str, b: &str) -> bool {
    let n = a.len().min(b.len());
    n > 0 && a[..n].eq_ignore_ascii_case(&b[..n])
}

/// `03.0006`.
pub fn apqn_name(card: u8, domain: u16) -> String {
    format!("{card:02x}.{domain:04x}")
}

impl World {
    /// The zkey key named `name`, which a filter selected from this world's keys.
    pub fn selected_key(&self, name: &str) -> &ZkeyKey {
        self.keys.iter().find(|k| k.name == name).expect("selected")
    }

    /// Every APQN: its name, card and domain.
    pub fn apqns(&self) -> impl Iterator<Item = (String, &Card, &Domain)> {
        self.cards.iter().flat_map(|card| {
            card.domains
                .iter()
                .map(move |d| (apqn_name(card.card, d.domain), card, d))
        })
    }

    pub fn find(&self, apqn: &str) -> Option<(&Card, &Domain)> {
        self.apqns()
            .find(|(name, _, _)| name == apqn)
            .map(|(_, c, d)| (c, d))
    }

    pub fn find_mut(&mut self, apqn: &str) -> Option<(&mut Card, usize)> {
        let apqn = apqn.to_ascii_lowercase();
        for card in &mut self.cards {
            if let Some(index) = card
                .domains
                .iter()
                .position(|d| apqn_name(card.card, d.domain) == apqn)
            {
                return Some((card, index));
            }
        }
        None
    }

    /// Registers of `mk` on `apqn`, if the APQN exists and has that type.
    pub fn registers(&self, apqn: &str, mk: Mk) -> Option<&Registers> {
        self.find(apqn).and_then(|(_, d)| d.registers.get(&mk))
    }

    /// Usable as zkey decides: card online, configured, not check-stopped, a coprocessor of
    /// the right mode, and the queue online.
    pub fn usable(&self, apqn: &str, mk: Mk) -> bool {
        self.find(apqn).is_some_and(|(card, domain)| {
            card.online
                && card.config
                && !card.chkstop
                && domain.online
                && if mk.is_ep11() {
                    card.is_ep11()
                } else {
                    card.is_cca()
                }
        })
    }

    /// The NEW master key a re-encipherment CURRENT → NEW of a copy under `mkvp` uses: that of
    /// the first usable APQN of `apqns` whose CURRENT is `mkvp` and whose NEW is ready
    /// (committed or full), as zkey selects it (zcrypt.md §4.1).
    pub fn new_for(&self, apqns: &[String], mk: Mk, mkvp: &str) -> Option<String> {
        apqns
            .iter()
            .filter(|a| self.usable(a, mk))
            .find_map(|apqn| {
                let regs = self.registers(apqn, mk)?;
                regs.current
                    .as_deref()
                    .filter(|c| same_mk(c, mkvp))
                    .and(regs.new.ready().map(str::to_string))
            })
    }

    /// Every APQN of a mode: what a key with no associated APQNs is kept on (for the loss
    /// rule; zkey's own discovery looks at the machine's `/sys`, not at this world).
    pub fn apqns_of(&self, mk: Mk) -> Vec<String> {
        self.apqns()
            .filter(|(_, card, _)| {
                if mk.is_ep11() {
                    card.is_ep11()
                } else {
                    card.is_cca()
                }
            })
            .map(|(name, _, _)| name)
            .collect()
    }

    pub fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join(WORLD_FILE);
        let text = crate::bounded_read::read_to_string(&path, WORLD_BYTES_MAX).map_err(|e| {
            format!(
                "{}: cannot read the fake platform's world ({e}); create it with `mkplan sim zcrypt init DIR --world WORLD.yaml`",
                crate::quote::path(&path)
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: not a world this mkplan wrote ({e})",
                crate::quote::path(&path)
            )
        })
    }

    /// Writes the truth durably: a temporary file, fsync, rename, fsync of the folder.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).expect("a world serializes");
        write_durably(&dir.join(WORLD_FILE), text.as_bytes())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder, so a reader sees the
/// old or the new content, never a part; durable before it returns.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let fail = |e: std::io::Error| format!("{}: cannot write it: {e}", crate::quote::path(path));
    let mut temp = tempfile::NamedTempFile::new_in(folder).map_err(fail)?;
    temp.write_all(bytes).map_err(fail)?;
    temp.as_file().sync_all().map_err(fail)?;
    temp.persist(path).map_err(|e| fail(e.error))?;
    if let Ok(folder) = File::open(folder) {
        let _ = folder.sync_all();
    }
    Ok(())
}

/// An exclusive lock on a file, held until dropped.
pub struct Lock(#[allow(dead_code)] File);

/// Takes the exclusive lock on `path` (waits for another holder), creating it if missing.
pub fn lock(path: &Path) -> Result<Lock, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: cannot open the lock: {e}", crate::quote::path(path)))?;
    file.lock()
        .map_err(|e| format!("{}: cannot lock it: {e}", crate::quote::path(path)))?;
    Ok(Lock(file))
}
