//! The journal key: a secret kept outside the state folder, with which every journal record
//! is sealed (HMAC-SHA256, chained to the record before it). Whoever can write the state
//! folder but not read the key (a repository that ships a `.mkplan/`, a shared folder, a
//! restored backup) cannot make a record that verifies, so a forged "the rewrap completed"
//! is no evidence.
//!
//! The key lives in `$MKPLAN_JOURNAL_KEY`, else `$XDG_CONFIG_HOME/mkplan/journal.key`, else
//! `~/.config/mkplan/journal.key`: one line of 64 hex digits, mode 0600, in a folder of the
//! user's. `apply`, `attest` and `journal close` create it on first use; `plan`, `status`
//! and `audit verify` only read it.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const KEY_LEN: usize = 32;
const BLOCK: usize = 64;
/// What a seal's MAC covers, before the previous seal and the record's checksum.
const DOMAIN: &[u8] = b"mkplan journal seal v1\n";

#[derive(Clone)]
pub struct JournalKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    /// Names the key in seals and messages without revealing it.
    id: String,
    /// Where it was read from (`None`: a drill's key, in memory only).
    path: Option<PathBuf>,
    /// Where this user keeps the heads of the journals it seals (`heads_folder`).
    heads: Option<PathBuf>,
}

/// Why a record's seal does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealFault {
    /// No seal (an mkplan before journal keys, or a line written by hand).
    Missing,
    /// Sealed with another journal key (another machine, user or key file).
    OtherKey { id: String, mine: String },
    /// No journal key here to verify it with.
    NoKey,
    /// The seal does not match: the record was changed, added, moved, or one before it
    /// removed, by someone without the key.
    Mismatch,
}

impl SealFault {
    pub fn describe(&self) -> String {
        match self {
            Self::Missing => "it carries no seal (written by hand, or by an mkplan older than journal keys)".into(),
            Self::OtherKey { id, mine } => format!(
                "it was sealed with another journal key ({id}) than this one ({mine}): another machine, user or MKPLAN_JOURNAL_KEY"
            ),
            Self::NoKey => "there is no journal key here to check its seal with".into(),
            Self::Mismatch => "its seal does not match: it was changed, added or moved, or a record before it removed, by someone without the journal key".into(),
        }
    }
}

impl JournalKey {
    /// A key that lives in memory only: a drill's scratch journals.
    pub fn ephemeral() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(key.as_mut()).expect("the system's random source works");
        Self::from_secret(key, None)
    }

    pub(crate) fn from_secret(key: Zeroizing<[u8; KEY_LEN]>, path: Option<PathBuf>) -> Self {
        let id = format!("jk-{}", &hex::encode(hmac(&key, &[b"key id"]))[..16]);
        // Unit tests keep heads beside their scratch keys, out of the user's home.
        let heads = path.as_deref().and_then(|path| match cfg!(test) {
            true => Some(path.parent()?.join("heads")),
            false => heads_folder(&id, path, |name| std::env::var(name).ok()),
        });
        Self {
            key,
            id,
            path,
            heads,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reads the key at `path`, or `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<Self>, String> {
        let mut options = OpenOptions::new();
        options.read(true).custom_flags(libc::O_NOFOLLOW);
        let file = match options.open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(format!(
                    "the journal key {} is a symlink: keep the key in a real file of your own",
                    path.display()
                ));
            }
            Err(e) => {
                return Err(format!(
                    "cannot read the journal key {}: {e}",
                    path.display()
                ));
            }
        };
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read the journal key {}: {e}", path.display()))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(format!(
                "the journal key {} belongs to user {}, not to you ({me}): use a key of your own (MKPLAN_JOURNAL_KEY)",
                path.display(),
                meta.uid()
            ));
        }
        if let Some(folder) = path.parent()
            && let Ok(folder_meta) = fs::metadata(folder)
            && (folder_meta.uid() != me || folder_meta.mode() & 0o022 != 0)
        {
            return Err(format!(
                "the journal key's folder {} is not yours alone (owner {}, mode {:o}): others could replace the key (or remove journal heads an older mkplan kept beside it). Fix it with `chmod go-w {}`, or keep the key in a folder of your own",
                folder.display(),
                folder_meta.uid(),
                folder_meta.mode() & 0o777,
                folder.display()
            ));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(format!(
                "the journal key {} may be read or written by others (mode {:o}): fix it with `chmod 600 {}`, and if others could read it, move it away so that a new key is made",
                path.display(),
                meta.mode() & 0o777,
                path.display()
            ));
        }
        let mut text = Zeroizing::new(String::new());
        file.take(256)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the journal key {}: {e}", path.display()))?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(text.trim(), key.as_mut()).map_err(|_| {
            format!(
                "the journal key {} is not 64 hex digits: restore it from where you keep it, or move it away so that a new key is made (records it sealed then stop being evidence)",
                path.display()
            )
        })?;
        let key = Self::from_secret(key, Some(path.to_path_buf()));
        key.check_heads_folder()?;
        Ok(Some(key))
    }

    /// Refuses a heads folder that others could write: they could remove or roll back the
    /// heads, and a journal cut back would pass. Each folder on the way from the state home
    /// down is checked, where it exists.
    fn check_heads_folder(&self) -> Result<(), String> {
        let Some(heads) = &self.heads else {
            return Ok(());
        };
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        // `…/mkplan/heads/<id>`, `…/mkplan/heads`, `…/mkplan` and the state home above them;
        // heads kept beside the key (no state home known): that folder only, the key's own
        // folder being checked with the key.
        let mkplans = if self.heads_beside_key().is_some() {
            4
        } else {
            1
        };
        for folder in heads.ancestors().take(mkplans) {
            let Ok(link) = fs::symlink_metadata(folder) else {
                continue;
            };
            // A folder kept elsewhere through a symlink (a state home on another volume, a
            // dotfiles manager's link): the link must be the user's, and the folder it leads
            // to theirs alone.
            let (meta, shown) = if link.file_type().is_symlink() {
                if link.uid() != me {
                    return Err(format!(
                        "the folder {} that keeps your journal heads is a symlink owned by another user ({}): they could point it elsewhere, and a journal cut back would no longer be seen. Replace the link with one of your own, or set XDG_STATE_HOME to a folder of your own",
                        folder.display(),
                        link.uid()
                    ));
                }
                let Ok(meta) = fs::metadata(folder) else {
                    continue;
                };
                let target = fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf());
                (meta, target)
            } else {
                (link, folder.to_path_buf())
            };
            if meta.uid() != me || meta.mode() & 0o022 != 0 || !meta.is_dir() {
                let through = if shown == folder {
                    String::new()
                } else {
                    format!(" (through {})", folder.display())
                };
                return Err(format!(
                    "the folder {}{through} that keeps your journal heads is not yours alone (owner {}, mode {:o}): others could remove the heads, and a journal cut back would no longer be seen. Fix it with `chmod go-w {}`, or set XDG_STATE_HOME to a folder of your own",
                    shown.display(),
                    meta.uid(),
                    meta.mode() & 0o777,
                    shown.display()
                ));
            }
        }
        Ok(())
    }

    /// Reads the key at `path`, making a new one (0600, in a 0700 folder) when there is none.
    /// Returns whether it was made.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), String> {
        if let Some(key) = Self::load(path)? {
            return Ok((key, false));
        }
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(folder)
                .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(key.as_mut()).map_err(|e| format!("no random source: {e}"))?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(key.as_ref())));
        let made = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                file.sync_all()
            });
        match made {
            Ok(()) => Ok((Self::from_secret(key, Some(path.to_path_buf())), true)),
            // Another mkplan made it first: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::load(path)?
                .map(|key| (key, false))
                .ok_or_else(|| format!("the journal key {} vanished", path.display())),
            Err(e) => Err(format!(
                "cannot create the journal key {}: {e}",
                path.display()
            )),
        }
    }

    /// The seal of a record whose checksum is `checksum`, written after a record sealed
    /// `previous` (empty for the first record).
    pub fn seal(&self, previous: &str, checksum: &str) -> String {
        let mac = hmac(
            &self.key,
            &[DOMAIN, previous.as_bytes(), b"\n", checksum.as_bytes()],
        );
        format!("{}:{}", self.id, hex::encode(mac))
    }

    /// Checks `seal` against the record before it, in constant time.
    pub fn verify(&self, previous: &str, checksum: &str, seal: &str) -> Result<(), SealFault> {
        let Some((id, _)) = seal.split_once(':') else {
            return Err(SealFault::Mismatch);
        };
        if id != self.id {
            return Err(SealFault::OtherKey {
                id: id.to_string(),
                mine: self.id.clone(),
            });
        }
        let expected = self.seal(previous, checksum);
        if expected.len() == seal.len()
            && expected
                .bytes()
                .zip(seal.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        {
            Ok(())
        } else {
            Err(SealFault::Mismatch)
        }
    }
}

/// How far a journal had come when this user's mkplan last wrote it: its record count and
/// the seal of its last record. Kept among the key's heads, outside the state folder, so that a
/// journal cut back or replaced by an older genuine copy (which verifies, line by line) is
/// still seen: the journal must extend its head.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// The state folder, for a human reading the file.
    pub state_dir: String,
    pub records: u64,
    pub seal: String,
    /// The service instances (lower case) whose rewrap the journal recorded as sent (or
    /// shown as a ceremony step) in a rotation not closed since, when mkplan last wrote it:
    /// what a folder gone from its place, or one that cannot be read, may still hold
    /// (`store::files::other_folders`). None: a head that does not say (a domain group's, a
    /// database's, or one an older mkplan wrote), which may hold any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewraps: Option<Vec<String>>,
}

impl JournalKey {
    /// The file that keeps the head of the journal in `state_dir`; `None` for a drill's key,
    /// which lives in memory only.
    pub fn head_path(&self, state_dir: &Path) -> Option<PathBuf> {
        self.head_named(state_dir, None)
    }

    /// The file that keeps the head of `journal`, a journal of `state_dir` other than
    /// `journal.jsonl` (a domain group's): one head per journal file.
    pub fn head_path_of(&self, state_dir: &Path, journal: &str) -> Option<PathBuf> {
        self.head_named(state_dir, Some(journal))
    }

    fn head_named(&self, state_dir: &Path, journal: Option<&str>) -> Option<PathBuf> {
        let heads = self.heads.as_ref()?;
        Some(heads.join(head_file_name(state_dir, journal)?))
    }
}

/// The name of the file that keeps the head of `state_dir`'s journal (`journal`, a domain
/// group's, or `journal.jsonl`), under whichever key's heads: known without the key.
pub fn head_file_name(state_dir: &Path, journal: Option<&str>) -> Option<String> {
    let name = std::path::absolute(state_dir).ok()?;
    // The folder itself may be gone (removed with its journal): resolve its parent.
    let name = match (name.parent(), name.file_name()) {
        (Some(parent), Some(file)) => parent
            .canonicalize()
            .map_or_else(|_| name.clone(), |p| p.join(file)),
        _ => name,
    };
    let mut hasher = Sha256::new();
    hasher.update(name.as_os_str().as_encoded_bytes());
    if let Some(journal) = journal {
        hasher.update(b"\0");
        hasher.update(journal.as_bytes());
    }
    Some(hex::encode(&hasher.finalize()[..16]))
}

/// Where this user's mkplan keeps the heads of every journal key, one folder per key id
/// (`heads_folder`): `None` when neither XDG_STATE_HOME nor HOME names an absolute place.
pub fn heads_root(lookup: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |name: &str| place(&lookup, name).filter(|p| p.is_absolute());
    let home = set("XDG_STATE_HOME").or_else(|| set("HOME").map(|home| home.join(".local/state")));
    home.map(|home| home.join("mkplan/heads"))
}

impl Head {
    /// Whether a journal of `found` records, whose record at the head's place is sealed
    /// `seal_at`, extends this head: it holds at least as many records, and the one at the
    /// head's place is the one mkplan wrote there.
    pub fn extended_by(&self, found: usize, seal_at: Option<&str>) -> bool {
        found as u64 >= self.records && seal_at == Some(self.seal.as_str())
    }
}

impl JournalKey {
    /// The file that keeps the head of the journal whose first record carries `first_seal`,
    /// wherever that journal lies: a copy of a state folder (`cp -a`, a backup restored
    /// elsewhere) shares it with the original, so that once either goes on, the other is seen
    /// cut back, and the same evidence (an attestation, a rewrap not yet sent) cannot be used
    /// twice. `None` for a drill's key.
    pub fn chain_head_path(&self, first_seal: &str) -> Option<PathBuf> {
        let heads = self.heads.as_ref()?;
        let digest = Sha256::digest([b"journal chain\n", first_seal.as_bytes()].concat());
        Some(heads.join(format!("chain-{}", hex::encode(&digest[..16]))))
    }
}

impl JournalKey {
    /// The folder where this user keeps the heads of the journals this key seals; `None`
    /// for a drill's key.
    pub fn heads(&self) -> Option<&Path> {
        self.heads.as_deref()
    }

    /// Where an mkplan before 2026-12 kept them: beside the key file (`heads/`), when that
    /// is another folder.
    fn heads_beside_key(&self) -> Option<PathBuf> {
        let beside = self.path.as_ref()?.parent()?.join("heads");
        (Some(beside.as_path()) != self.heads()).then_some(beside)
    }

    /// The head at `path`, a file of `heads()`; where there is none yet, the one an older
    /// mkplan kept beside the key under the same name. A head that cannot be read is an
    /// error, as in `load_head`.
    pub fn read_head(&self, path: &Path) -> Result<Option<Head>, String> {
        load_head(&self.head_file(path))
    }

    /// The file that holds the head `path` (a file of `heads()`) now: itself, or, while it
    /// is not there, the one an older mkplan kept beside the key under the same name, if that
    /// is there. What a message names, and what the operator moves.
    pub fn head_file(&self, path: &Path) -> PathBuf {
        let beside = match (self.heads_beside_key(), path.file_name()) {
            (Some(beside), Some(name)) if path.parent() == self.heads() => beside.join(name),
            _ => return path.to_path_buf(),
        };
        if path.symlink_metadata().is_err() && beside.symlink_metadata().is_ok() {
            beside
        } else {
            path.to_path_buf()
        }
    }

    /// Every head file this user's mkplan keeps for this key: those in `heads()`, then those
    /// an older mkplan kept beside the key that no newer one replaced (one per name).
    pub fn head_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for folder in self
            .heads()
            .map(Path::to_path_buf)
            .into_iter()
            .chain(self.heads_beside_key())
        {
            let Ok(entries) = fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                if names.insert(entry.file_name()) {
                    files.push(entry.path());
                }
            }
        }
        files
    }
}

/// Where this user keeps the heads of the journals sealed with the key `id`, read from
/// `key_path`: `$XDG_STATE_HOME/mkplan/heads/<id>`, else `~/.local/state/mkplan/heads/<id>`.
/// One place per key, not per key file: a copy of the key used from another path (a
/// backup, a second `MKPLAN_JOURNAL_KEY`) finds the same heads, so the folders it wrote
/// stay witnesses and a journal cut back is still seen. Without either variable, beside the
/// key (`heads/`).
fn heads_folder(
    id: &str,
    key_path: &Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> Option<PathBuf> {
    match heads_root(lookup) {
        Some(root) => Some(root.join(id)),
        None => Some(key_path.parent()?.join("heads")),
    }
}

/// The head recorded at `path`, if any. A head that cannot be read is an error: the caller
/// then trusts nothing the journal says.
pub fn load_head(path: &Path) -> Result<Option<Head>, String> {
    let mut options = OpenOptions::new();
    options.read(true).custom_flags(libc::O_NOFOLLOW);
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if meta.uid() != unsafe { libc::geteuid() } || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is not yours alone (owner {}, mode {:o})",
            path.display(),
            meta.uid(),
            meta.mode() & 0o777
        ));
    }
    let mut text = String::new();
    file.take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|_| format!("{} is not a journal head", path.display()))
}

/// Records `head` at `path` (write a new file, then rename over the old one). Not fsynced: a
/// head lost to a power cut is only behind the journal, which is allowed.
pub fn store_head(path: &Path, head: &Head) -> io::Result<()> {
    make_heads_folder(path)?;
    store_head_text(path, &serde_json::to_vec(head).expect("heads serialize"))
}

/// Makes the folder that keeps the head at `path`, if it is missing.
pub fn make_heads_folder(path: &Path) -> io::Result<()> {
    if let Some(folder) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)?;
    }
    Ok(())
}

/// `store_head` for a head already serialized, into a folder that exists: a journal that
/// writes its head at every append makes the folder and works out its place once.
pub fn store_head_text(path: &Path, text: &[u8]) -> io::Result<()> {
    let fresh = path.with_extension(format!("{}.new", std::process::id()));
    let _ = fs::remove_file(&fresh);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&fresh)?;
    file.write_all(text)?;
    drop(file);
    fs::rename(&fresh, path)
}

/// The path a variable names, when it is set and not blank.
fn place(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<PathBuf> {
    lookup(name)
        .filter(|v| !v.trim().is_empty())
        .map(PathBuf::from)
}

/// Where the journal key lives, from the environment (`lookup` reads a variable).
pub fn key_path(lookup: impl Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
    // Only absolute places count (as the XDG spec says): a relative one would land in
    // whatever folder mkplan runs in, a working copy someone else may have filled.
    let set = |name: &str| place(&lookup, name);
    if let Some(path) = set("MKPLAN_JOURNAL_KEY") {
        if path.is_relative() {
            return Err(format!(
                "MKPLAN_JOURNAL_KEY is a relative path ({}): give the key's absolute path, outside any working copy",
                path.display()
            ));
        }
        return Ok(path);
    }
    if let Some(config) = set("XDG_CONFIG_HOME").filter(|p| p.is_absolute()) {
        return Ok(config.join("mkplan/journal.key"));
    }
    if let Some(home) = set("HOME").filter(|p| p.is_absolute()) {
        return Ok(home.join(".config/mkplan/journal.key"));
    }
    Err("no place for the journal key: set MKPLAN_JOURNAL_KEY to a file outside the state folder (or HOME)".into())
}

/// Refuses a key kept inside the state folder: whoever can write the journal could then
/// read the key too, or plant one of their own.
pub fn check_outside(key: &Path, state_dir: &Path) -> Result<(), String> {
    let absolute = |p: &Path| {
        let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        p.canonicalize().unwrap_or(p)
    };
    let folder = key.parent().map(absolute).unwrap_or_default();
    if folder.starts_with(absolute(state_dir)) {
        return Err(format!(
            "the journal key {} is inside the state folder {}: anyone who can write the journal could forge its seals. Keep it elsewhere (MKPLAN_JOURNAL_KEY)",
            key.display(),
            state_dir.display()
        ));
    }
    Ok(())
}

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`.
fn hmac(key: &[u8; KEY_LEN], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = Zeroizing::new([0u8; BLOCK]);
    block[..KEY_LEN].copy_from_slice(key);
    let pad = |byte: u8| {
        let mut padded = Zeroizing::new([0u8; BLOCK]);
        for (p, k) in padded.iter_mut().zip(block.iter()) {
            *p = k ^ byte;
        }
        padded
    };
    let mut inner = Sha256::new();
    inner.update(pad(0x36).as_ref());
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(pad(0x5c).as_ref());
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_case_1() {
        // RFC 4231 test case 1 uses a 20-byte key of 0x0b; padded to 32 bytes with zeros it is
        // the same HMAC key (keys shorter than the block are zero-padded).
        let mut key = [0u8; KEY_LEN];
        key[..20].copy_from_slice(&[0x0b; 20]);
        assert_eq!(
            hex::encode(hmac(&key, &[b"Hi ", b"There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn a_seal_verifies_only_for_its_record_its_predecessor_and_its_key() {
        let key = JournalKey::ephemeral();
        let seal = key.seal("prev", "sum");
        assert_eq!(key.verify("prev", "sum", &seal), Ok(()));
        assert_eq!(key.verify("prev", "sun", &seal), Err(SealFault::Mismatch));
        assert_eq!(key.verify("other", "sum", &seal), Err(SealFault::Mismatch));
        let other = JournalKey::ephemeral();
        assert!(matches!(
            other.verify("prev", "sum", &seal),
            Err(SealFault::OtherKey { .. })
        ));
        let forged = format!("{}:{}", key.id(), "0".repeat(64));
        assert_eq!(key.verify("prev", "sum", &forged), Err(SealFault::Mismatch));
    }

    #[test]
    fn a_key_is_made_private_once_and_refused_when_others_may_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/mkplan/journal.key");
        let (made, fresh) = JournalKey::load_or_create(&path).unwrap();
        assert!(fresh);
        let (again, fresh) = JournalKey::load_or_create(&path).unwrap();
        assert!(!fresh);
        assert_eq!(made.id(), again.id());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = JournalKey::load(&path).err().unwrap();
        assert!(error.contains("chmod 600"), "{error}");
        let inside = dir.path().join("state/key");
        fs::create_dir_all(dir.path().join("state")).unwrap();
        assert!(check_outside(&inside, &dir.path().join("state")).is_err());
        assert!(check_outside(&path, &dir.path().join("state")).is_ok());
    }

    /// An environment of `pairs`, as `key_path` and `heads_folder` look variables up.
    fn env(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> + Copy {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    /// Only absolute places count: a relative `XDG_CONFIG_HOME` or `HOME` would put the key
    /// in whatever folder mkplan runs in (a working copy someone else filled).
    #[test]
    fn a_relative_key_place_is_never_used() {
        assert_eq!(
            key_path(env(&[("XDG_CONFIG_HOME", "cfg"), ("HOME", "/home/u")])).unwrap(),
            PathBuf::from("/home/u/.config/mkplan/journal.key")
        );
        assert!(key_path(env(&[("MKPLAN_JOURNAL_KEY", "k/journal.key")])).is_err());
        assert!(key_path(env(&[("HOME", "here")])).is_err());
    }

    /// Heads are kept per key, not per key file: two paths of one key share them (P6).
    #[test]
    fn heads_are_kept_by_the_keys_id_wherever_the_key_file_lies() {
        let both = env(&[("XDG_STATE_HOME", "/s"), ("HOME", "/home/u")]);
        let a = heads_folder("jk-1", Path::new("/keys/a/journal.key"), both);
        let b = heads_folder("jk-1", Path::new("/backup/journal.key"), both);
        assert_eq!(a, Some(PathBuf::from("/s/mkplan/heads/jk-1")));
        assert_eq!(a, b);
        assert_eq!(
            heads_folder(
                "jk-2",
                Path::new("/k/journal.key"),
                env(&[("HOME", "/home/u")])
            ),
            Some(PathBuf::from("/home/u/.local/state/mkplan/heads/jk-2"))
        );
        // Relative places are not used: beside the key, as before.
        assert_eq!(
            heads_folder(
                "jk-3",
                Path::new("/k/journal.key"),
                env(&[("XDG_STATE_HOME", "s"), ("HOME", "h")])
            ),
            Some(PathBuf::from("/k/heads"))
        );
    }

    /// A head an older mkplan kept beside the key is read until a newer one replaces it.
    #[test]
    fn a_head_kept_beside_the_key_is_read_until_one_is_kept_in_the_heads_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (mut key, _) = JournalKey::load_or_create(&dir.path().join("k/journal.key")).unwrap();
        key.heads = Some(dir.path().join("state/mkplan/heads").join(key.id()));
        let head = |records| Head {
            state_dir: "/s".into(),
            records,
            seal: String::new(),
            rewraps: None,
        };
        let place = key.head_path(Path::new("/s")).unwrap();
        let beside = dir.path().join("k/heads").join(place.file_name().unwrap());
        store_head(&beside, &head(3)).unwrap();
        assert_eq!(key.read_head(&place).unwrap(), Some(head(3)));
        assert_eq!(key.head_files(), vec![beside.clone()]);
        store_head(&place, &head(5)).unwrap();
        assert_eq!(key.read_head(&place).unwrap(), Some(head(5)));
        assert_eq!(key.head_files(), vec![place]);
    }
}
