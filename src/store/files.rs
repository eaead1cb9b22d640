//! The file store: a state folder on this machine, its journal sealed with this user's
//! journal key. Commands that append to the journal make the key on first use (and say
//! where); commands that only read take it if it is there.

use std::path::Path;

use crate::apply::attest::OtherJournal;
use crate::apply::journal::{Journal, JournalError, Record};
use crate::apply::journal_key::{self, JournalKey};
use crate::error::{Error, Result};

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

/// Other journals this user's mkplan wrote on this machine: every state folder whose head
/// lies beside the journal key, other than `this` and folders since removed, with their
/// records (read without writing anything). A folder whose journal ends with its `pushed`
/// record is left out when attesting into that database (`database`, as `pushed` names it):
/// it received all of it. A journal that cannot be read (a folder others can write, one
/// renamed since its head was written) is left out too: this is a second look, and the
/// journal attested into is still the one that must vouch.
pub fn other_journals(this: Option<&Path>, database: Option<&str>) -> Vec<OtherJournal> {
    let Ok(path) = journal_key::key_path(|name| std::env::var(name).ok()) else {
        return Vec::new();
    };
    let Ok(Some(key)) = JournalKey::load(&path) else {
        return Vec::new();
    };
    let Some(heads) = path.parent().map(|p| p.join("heads")) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&heads) else {
        return Vec::new();
    };
    let this = this.and_then(|dir| dir.canonicalize().ok());
    let folders: std::collections::BTreeSet<std::path::PathBuf> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with("chain-"))
        .filter_map(|entry| journal_key::load_head(&entry.path()).ok().flatten())
        .filter_map(|head| std::path::PathBuf::from(head.state_dir).canonicalize().ok())
        .filter(|dir| Some(dir) != this.as_ref())
        .collect();
    folders
        .into_iter()
        .filter(|dir| dir.join("journal.jsonl").is_file())
        .filter_map(|dir| {
            let records = Journal::read(&dir, Some(&key)).ok()?;
            // Pushed whole into the database attested into: it holds them.
            if let Some(Record::Pushed { to, .. }) = records.last()
                && database == Some(to.as_str())
            {
                return None;
            }
            Some(OtherJournal {
                named: format!("the journal in {}", crate::quote::path(&dir)),
                folder: dir.display().to_string(),
                records,
            })
        })
        .collect()
}

fn unsafe_journal(error: JournalError) -> Error {
    Error::Unsafe(error.to_string())
}
