//! The file store: a state folder on this machine, its journal sealed with this user's
//! journal key. Commands that append to the journal make the key on first use (and say
//! where); commands that only read take it if it is there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::apply::evidence::rewraps_on_any_backend;
use crate::apply::journal::{Journal, JournalError, Record};
use crate::apply::journal_key::{self, JournalKey};
use crate::error::{Error, Result};
use crate::model::{FolderRewrap, OtherFolders, UnreadFolder};

use super::postgres::witness::DatabaseHead;

fn path(state_dir: &Path) -> Result<std::path::PathBuf> {
    let path = journal_key::key_path(|name| std::env::var(name).ok()).map_err(Error::Other)?;
    journal_key::check_outside(&path, state_dir).map_err(Error::Other)?;
    Ok(path)
}

/// The key that seals what this command appends, made (0600) when there is none yet.
pub fn for_writing(state_dir: &Path) -> Result<JournalKey> {
    let (key, made) = JournalKey::load_or_create(&path(state_dir)?).map_err(Error::Other)?;
    if made {
        eprintln!(
            "Made a journal key at {} ({}): it seals the journal's records, and only records it sealed are evidence. Keep it with your user, never in the state folder; back it up where you back up the state folder's machine.",
            key.path()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            key.id()
        );
    }
    Ok(key)
}

/// This user's journal key, for a command that only reads: `None` when there is none yet.
pub fn for_reading(state_dir: &Path) -> Result<Option<JournalKey>> {
    JournalKey::load(&path(state_dir)?).map_err(Error::Other)
}

/// The journal's records, read without writing anything; with no journal key here, none is
/// authenticated.
pub fn read_journal(state_dir: &Path) -> Result<Vec<Record>> {
    let key = for_reading(state_dir)?;
    let records = Journal::read(state_dir, key.as_ref()).map_err(unsafe_journal)?;
    not_pushed(state_dir, &records)?;
    Ok(records)
}

/// Opens the journal for appending, sealed with this user's journal key.
pub fn open_journal(state_dir: &Path) -> Result<Journal> {
    // A state folder that is refused makes no key either.
    crate::apply::state_dir::prepare(state_dir).map_err(Error::Unsafe)?;
    let key = for_writing(state_dir)?;
    let journal = Journal::open(state_dir, &key).map_err(unsafe_journal)?;
    not_pushed(state_dir, journal.records())?;
    Ok(journal)
}

/// A folder whose journal `state push` moved into a database is an archive: its journal goes
/// on there, and a run or an attestation here would start a second journal of the same fleet,
/// each missing what the other saw (an attestation used twice, a rewrap sent twice). Only a
/// sealed record counts: whoever can only write the folder cannot retire it.
///
/// A record after `pushed` was written by a run that had this folder's journal open while the
/// push ran (an older mkplan's push took no lock): the database never received it, so the
/// database's journal misses an operation that may have reached the service (a rewrap, say).
fn not_pushed(state_dir: &Path, records: &[Record]) -> Result<()> {
    for (index, record) in records.iter().enumerate() {
        if let Record::Pushed { to, at } = record {
            let after = &records[index + 1..];
            if !after.is_empty() {
                return Err(Error::Unsafe(written_after_push(state_dir, to, at, after)));
            }
            return Err(Error::Unsafe(format!(
                "the state folder {} was pushed to {} at {} (`mkplan state push`): its journal goes on there, and this folder is an archive. Nothing was done; name the database with --state (or MKPLAN_STATE), as every operator of this fleet now does",
                crate::quote::path(state_dir),
                crate::quote::bare(to),
                crate::quote::bare(at)
            )));
        }
    }
    Ok(())
}

/// The refusal for a folder whose journal goes on after its `pushed` record.
fn written_after_push(state_dir: &Path, to: &str, at: &str, after: &[Record]) -> String {
    let named: Vec<String> = after
        .iter()
        .map(|record| match record.written() {
            Record::Intent {
                step,
                action,
                instance,
                unit,
                ..
            } => format!(
                "intent of {step} ({action}) on service instance {instance}{}",
                unit.as_deref()
                    .map(|u| format!(", crypto unit {u}"))
                    .unwrap_or_default()
            ),
            Record::Outcome { step, .. } => format!("outcome of {step}"),
            other => other.kind().to_string(),
        })
        .collect();
    format!(
        "the state folder {} was pushed to {} at {} (`mkplan state push`), and its journal has {} record(s) written after the push: {}. A run that had this folder's journal open kept writing after the push, and the database does not have these records: it does not know of these operations, which may have reached the service. Nothing was done. Do not settle anything on the strength of the database alone (never `mkplan attest rewrap --not-run` for a rewrap named here): read the service's rewrap status and every crypto unit's registers, and attest what the service shows with --service-evidence against the database; keep this folder as the record of what was sent",
        crate::quote::path(state_dir),
        crate::quote::bare(to),
        crate::quote::bare(at),
        after.len(),
        named.join("; ")
    )
}

/// What the other state folders of this machine say to a command using `store`
/// (`other_folders`), and with a database, what its other scopes say of the same instances
/// (`Store::other_scopes`): `scope` is the backend identity the command acts through.
pub fn other_folders_of(store: &super::Store, scope: &str) -> OtherFolders {
    let database = store.folder().is_none().then(|| store.shown());
    let own = match store {
        super::Store::Postgres(database) => Some(database.as_ref()),
        super::Store::Files(_) => None,
    };
    let mut found = other_folders(store.folder(), database.as_deref(), own);
    store.other_scopes(scope, &mut found);
    found
}

/// The other state folders as `apply` asks them again before a rewrap, with what they said
/// when its plan was made.
pub struct FolderWitness<'a> {
    at_plan: OtherFolders,
    store: &'a super::Store,
    scope: String,
}

impl<'a> FolderWitness<'a> {
    pub fn new(store: &'a super::Store, scope: &str, at_plan: OtherFolders) -> Self {
        Self {
            at_plan,
            store,
            scope: scope.to_string(),
        }
    }
}

impl crate::apply::other_folders::OtherFolderWitness for FolderWitness<'_> {
    fn at_plan(&self) -> &OtherFolders {
        &self.at_plan
    }

    fn now(&self) -> OtherFolders {
        other_folders_of(self.store, &self.scope)
    }
}

/// The state folders this user's mkplan wrote with an earlier journal key (one replaced after
/// a suspected leak): their heads are kept under that key's id, beside this key's heads. This
/// key cannot verify their records, but a rewrap their head says they may hold is enough to
/// refuse, as records that no longer verify are (adversarial round 11, F2). Skipped: this
/// folder (its own journal refuses on its own), a folder written with this key since (read
/// with the others: `current` names this key's heads), chains', domain group journals' and
/// databases' heads, and heads that say their folder holds no rewrap.
fn earlier_keys(
    key: &JournalKey,
    this_head: Option<&std::ffi::OsStr>,
    current: &std::collections::BTreeSet<std::ffi::OsString>,
    found: &mut OtherFolders,
    databases: &mut Vec<DatabaseHead>,
) {
    let Some(heads) = key.heads() else { return };
    // Only where heads are kept per key id (`journal_key::heads_folder`).
    if heads.file_name().and_then(|n| n.to_str()) != Some(key.id()) {
        return;
    }
    let Some(all) = heads.parent() else { return };
    let verifier = format!("which this key ({}) cannot verify", key.id());
    let kept = Kept { this_head, current };
    unverifiable_heads(all, Some(heads), &verifier, &kept, found, databases);
}

/// The heads `unverifiable_heads` leaves to others: this folder's own (`this_head`), and
/// those of the key in use (`current`), read with it.
struct Kept<'a> {
    this_head: Option<&'a std::ffi::OsStr>,
    current: &'a std::collections::BTreeSet<std::ffi::OsString>,
}

/// The heads under `root` (one folder per journal key id) of keys that cannot be checked
/// (`verifier` says why: an earlier key, or no key at all), but `skip`: a folder head that
/// says it may hold a rewrap is named unread, for the instances it lists (`earlier_keys`).
/// A team database's head met there (a database command run with that key) goes to
/// `databases`, to be asked with the others: each head under the key ids is read once.
fn unverifiable_heads(
    root: &Path,
    skip: Option<&Path>,
    verifier: &str,
    kept: &Kept,
    found: &mut OtherFolders,
    databases: &mut Vec<DatabaseHead>,
) {
    let Ok(keys) = std::fs::read_dir(root) else {
        return;
    };
    let mut folders = keys
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|dir| Some(dir.as_path()) != skip && dir.is_dir())
        .collect::<Vec<_>>();
    folders.sort();
    for dir in folders {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for file in files {
            let name = file.file_name().map(std::ffi::OsStr::to_os_string);
            if file.extension().is_some_and(|e| e == "new")
                || is_chain_head(&file)
                || name.as_deref() == kept.this_head
                || name.as_ref().is_some_and(|n| kept.current.contains(n))
            {
                continue;
            }
            let Some(head) = head_or_unread(&file, ", kept for an earlier journal key,", found)
            else {
                continue;
            };
            if head.records == 0 || head.rewraps.as_ref().is_some_and(Vec::is_empty) {
                continue;
            }
            if let Some(written) = super::postgres::witness::journal_head(&file, &head) {
                databases.push(written);
                continue;
            }
            let state_dir = PathBuf::from(&head.state_dir);
            let own_name = journal_key::head_file_name(&state_dir, None).map(Into::into);
            if head.rewraps.is_none() && own_name != name {
                continue;
            }
            let id = dir
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            found.unread.push(UnreadFolder {
                state_dir: head.state_dir.clone(),
                head: file.display().to_string(),
                why: format!(
                    "{} ({id}), {verifier}: its head says it may hold a rewrap mkplan sent",
                    UnreadFolder::EARLIER_KEY,
                ),
                instances: head.rewraps.clone(),
            });
        }
    }
}

/// The head in `file`; `None` when there is none, or when it cannot be read: then whose head
/// it was cannot be told, and the folder it names may hold anything (named as unread).
/// `kept` says where it was kept, for the message (", kept for an earlier journal key,").
fn head_or_unread(file: &Path, kept: &str, found: &mut OtherFolders) -> Option<journal_key::Head> {
    match journal_key::load_head(file) {
        Ok(head) => head,
        Err(why) => {
            found.unread.push(UnreadFolder {
                state_dir: UnreadFolder::UNKNOWN.into(),
                head: file.display().to_string(),
                why: format!("its head{kept} cannot be read: {why}"),
                instances: None,
            });
            None
        }
    }
}

/// A head kept for a journal's first record (`JournalKey::chain_head_path`), wherever its
/// folder lies: the folder's own head stands for it.
fn is_chain_head(file: &Path) -> bool {
    file.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("chain-"))
}

/// `other_folders` with no journal key at `key` (or no place for one): every folder head
/// this user's mkplan kept, under any key id, is one no key here can verify. Where they are
/// kept cannot be told without XDG_STATE_HOME or HOME: then every folder may hold a rewrap.
fn without_key(
    key: Option<&Path>,
    this: Option<&Path>,
    found: &mut OtherFolders,
    databases: &mut Vec<DatabaseHead>,
) {
    let verifier = match key {
        Some(key) => format!(
            "and no journal key is here to verify it (none at {})",
            crate::quote::path(key)
        ),
        None => "and no journal key is here to verify it".to_string(),
    };
    match journal_key::heads_root(|name| std::env::var(name).ok()) {
        Some(root) => {
            let this_head = this.and_then(|dir| journal_key::head_file_name(dir, None));
            let this_head = this_head.map(std::ffi::OsString::from);
            let none = std::collections::BTreeSet::new();
            let kept = Kept {
                this_head: this_head.as_deref(),
                current: &none,
            };
            unverifiable_heads(&root, None, &verifier, &kept, found, databases);
        }
        None => found.unread.push(UnreadFolder {
            state_dir: UnreadFolder::HEADS.into(),
            head: UnreadFolder::NO_HOME.into(),
            why: "neither XDG_STATE_HOME nor HOME is set, so where they are kept cannot be told: any of those folders may hold a rewrap mkplan sent".into(),
            instances: None,
        }),
    }
}

/// What the other state folders this user's mkplan wrote on this machine say: every folder
/// with a head among the journal key's heads (`JournalKey::head_files`), other than `this`,
/// and other than a folder whose journal ends with its `pushed` record into `database` (the
/// store read now: it received all of it). They are witnesses this journal never heard: a rewrap one of them sent may
/// still be queued at the service, or have run. So are the other team databases this user
/// wrote from here (`postgres::witness`).
///
/// A folder that cannot be read (one others can write, a journal whose seals fail) is named,
/// never skipped: it may hold such a rewrap. So is a folder gone from where its head says it
/// is (removed, or moved and not written since), unless a journal that is read holds the
/// record its head ends at (moved, and written at its new place since). Its head keeps it
/// asked about until the operator removes that head.
///
/// `own`, the database the command uses, is not asked again under another spelling
/// (`postgres::witness::ask`).
fn other_folders(
    this: Option<&Path>,
    database: Option<&str>,
    own: Option<&super::postgres::Database>,
) -> OtherFolders {
    let mut found = OtherFolders::default();
    let lookup = |name: &str| std::env::var(name).ok();
    let Ok(path) = journal_key::key_path(lookup) else {
        // No key, and no place for one: the folders this user wrote with a key kept their
        // heads under XDG_STATE_HOME or HOME, which are not set either.
        without_key(None, this, &mut found, &mut Vec::new());
        return found;
    };
    let key = match JournalKey::load(&path) {
        Ok(Some(key)) => key,
        // No key where this command looks (moved away after a suspected leak, another
        // MKPLAN_JOURNAL_KEY, a database command that never made one): the folders sealed
        // with a key have heads under that key's id all the same (adversarial round 13, F3).
        // A database's heads are kept beside the place the key would be
        // (`postgres::journal::head_path_of`).
        Ok(None) => {
            let mut databases = Vec::new();
            without_key(Some(&path), this, &mut found, &mut databases);
            database_heads_anywhere(&path, database, &mut databases);
            super::postgres::witness::ask(&databases, own, &mut found);
            return found;
        }
        // The heads cannot be trusted or found: every folder they name may hold a rewrap.
        Err(why) => {
            found.unread.push(UnreadFolder {
                state_dir: UnreadFolder::HEADS.into(),
                head: path.display().to_string(),
                why,
                instances: None,
            });
            return found;
        }
    };
    // Heads are named by the folder's path: compared by name, wherever they are kept.
    let head_name = |dir: &Path| {
        key.head_path(dir)
            .and_then(|p| p.file_name().map(Into::into))
    };
    // This folder, even when it is gone itself (removed with its journal): its own head.
    let this_head: Option<std::ffi::OsString> = this.and_then(head_name);
    let this = this.and_then(|dir| dir.canonicalize().ok());
    // A state folder's own head (`JournalKey::head_path`): not a chain's, a domain group
    // journal's or a database's, and with records in it.
    let mut folders: BTreeMap<PathBuf, (PathBuf, journal_key::Head)> = BTreeMap::new();
    let mut databases = Vec::new();
    let head_files = key.head_files();
    let current = head_files
        .iter()
        .filter_map(|f| f.file_name().map(Into::into))
        .collect();
    for file in head_files {
        // A head being written by another run (`store_head`'s `….new`) is read once renamed.
        if file.extension().is_some_and(|e| e == "new") {
            continue;
        }
        let Some(head) = head_or_unread(&file, "", &mut found) else {
            continue;
        };
        let dir = PathBuf::from(&head.state_dir);
        let name: Option<std::ffi::OsString> = file.file_name().map(Into::into);
        if head.records == 0 || this_head == name || is_chain_head(&file) {
            continue;
        }
        // Another team database this user wrote from here (the database the command uses
        // has its other scopes read by `Store::other_scopes`).
        if let Some(written) = super::postgres::witness::journal_head(&file, &head) {
            if database != Some(written.shown.as_str()) {
                databases.push(written);
            }
            continue;
        }
        // A folder's own head says which rewraps it may hold; a domain group journal's and a
        // database's say nothing, and are told apart by their names. A folder's head whose
        // name the path it records no longer gives (a folder above it moved, with a symlink
        // left at its old place; a path that is not UTF-8) is still a folder's: read where it
        // says, or named as gone, never skipped.
        if head.rewraps.is_none() && head_name(&dir) != name {
            continue;
        }
        let dir = dir.canonicalize().unwrap_or(dir);
        if Some(&dir) != this.as_ref() {
            folders.insert(dir, (file, head));
        }
    }
    earlier_keys(
        &key,
        this_head.as_deref(),
        &current,
        &mut found,
        &mut databases,
    );
    let mut gone = Vec::new();
    // The journals read, this one included: where a moved folder's old head ends.
    let mut read: Vec<PathBuf> = this.iter().cloned().collect();
    for (dir, (head_file, head)) in folders {
        let unread = |why: String| UnreadFolder {
            state_dir: dir.display().to_string(),
            head: head_file.display().to_string(),
            why,
            instances: head.rewraps.clone(),
        };
        // A journal that cannot be read is asked about what its head says it may hold:
        // nothing, when the head lists no rewrap (every rotation that sent one was closed).
        let holds_none = head.rewraps.as_ref().is_some_and(Vec::is_empty);
        if !dir.join("journal.jsonl").is_file() {
            if holds_none {
                continue;
            }
            gone.push((unread(format!(
                "its journal is gone (removed, or the folder moved and was not written since); mkplan last wrote {} record(s) there",
                head.records
            )), head.seal.clone()));
            continue;
        }
        let records = match Journal::read(&dir, Some(&key)) {
            Ok(records) => records,
            Err(why) => {
                if !holds_none {
                    found.unread.push(unread(why.to_string()));
                }
                continue;
            }
        };
        read.push(dir.clone());
        // Cut back or replaced by an older copy since mkplan last wrote it: what it lost is
        // asked of its head, and what is left of it is read as well.
        if let Some(Record::RolledBack {
            expected,
            found: now,
            ..
        }) = records.last()
            && !holds_none
        {
            found.unread.push(unread(format!(
                "its journal holds {now} record(s), but mkplan last wrote {expected} there: it was cut back or replaced by an older copy, and what it lost may be a rewrap"
            )));
        }
        // Pushed whole into the database read now: it holds them.
        if let Some(Record::Pushed { to, .. }) = records.last()
            && database == Some(to.as_str())
        {
            continue;
        }
        for (instance, rewraps) in rewraps_on_any_backend(&records) {
            found
                .rewraps
                .entry(instance)
                .or_default()
                .extend(rewraps.into_iter().map(|(backend, rewrap)| FolderRewrap {
                    state_dir: dir.display().to_string(),
                    scope: None,
                    backend,
                    rewrap,
                }));
        }
    }
    // A folder moved and written at its new place since: that journal holds the record its
    // old head ends at. Read as text only when some folder is gone.
    let texts: Vec<String> = if gone.is_empty() {
        Vec::new()
    } else {
        read.iter()
            .filter_map(|dir| std::fs::read_to_string(dir.join("journal.jsonl")).ok())
            .collect()
    };
    found
        .unread
        .extend(gone.into_iter().filter_map(|(unread, seal)| {
            let written = format!("\"seal\":\"{seal}\"");
            (seal.is_empty() || !texts.iter().any(|text| text.contains(&written))).then_some(unread)
        }));
    database_heads_anywhere(&path, database, &mut databases);
    super::postgres::witness::ask(&databases, own, &mut found);
    found
}

/// The heads of the team databases this user wrote from this machine, added to those found
/// among the journal heads (`found`, read under every key id): also those a command kept
/// beside the place of the key it looked for (a database command never makes a key, and
/// keeps its heads beside that place, `postgres::journal::head_path_of`), and beside the
/// key's default places (`$XDG_CONFIG_HOME/mkplan`, `~/.config/mkplan`). A command whose key
/// is elsewhere (`MKPLAN_JOURNAL_KEY` on removable media, another XDG_CONFIG_HOME) asks them
/// all (adversarial round 14, F1, F2: a database's unanswered rewrap went unseen by a folder
/// whose key was elsewhere, which rewrapped again). `key` is the key's place for this
/// command; `database`, the one it uses, is left out, and each head file counts once.
fn database_heads_anywhere(key: &Path, database: Option<&str>, found: &mut Vec<DatabaseHead>) {
    let lookup = |name: &str| std::env::var(name).ok();
    let absolute = |name: &str| {
        lookup(name)
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let mut folders: Vec<PathBuf> = key
        .parent()
        .map(|dir| dir.join("heads"))
        .into_iter()
        .collect();
    folders.extend(absolute("XDG_CONFIG_HOME").map(|c| c.join("mkplan/heads")));
    folders.extend(absolute("HOME").map(|h| h.join(".config/mkplan/heads")));
    let place = |file: &Path| file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
    let mut seen = std::collections::BTreeSet::new();
    found.retain(|head| database != Some(head.shown.as_str()) && seen.insert(place(&head.file)));
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for file in entries.filter_map(Result::ok).map(|entry| entry.path()) {
            let Ok(Some(head)) = journal_key::load_head(&file) else {
                continue;
            };
            let Some(written) = super::postgres::witness::journal_head(&file, &head) else {
                continue;
            };
            if written.records > 0
                && database != Some(written.shown.as_str())
                && seen.insert(place(&file))
            {
                found.push(written);
            }
        }
    }
}

fn unsafe_journal(error: JournalError) -> Error {
    Error::Unsafe(error.to_string())
}
