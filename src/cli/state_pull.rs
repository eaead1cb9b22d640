//! `state pull --to DIR`: a team's database, exported to a new folder for archiving. Every
//! journal is checked before anything is written, and the folder appears whole or not at all
//! (written beside it, then renamed), so a pull that stopped is simply run again.

use std::path::{Path, PathBuf};

use super::state::database;
use crate::apply::group_archive::{self, Pulled};
use crate::apply::group_journal::GroupJournal;
use crate::apply::journal_key::JournalKey;
use crate::error::{Error, Result};
use crate::store::postgres::{self, Connection};
use crate::store::{Store, files};

/// One HPCS scope as read: its folder's name, journal lines and audit trail.
struct Scope {
    name: String,
    folder: String,
    lines: Vec<String>,
    audit: String,
}

/// One domain group's journal as read, and the folder it goes to.
struct Group {
    scope: String,
    folder: String,
    journal: GroupJournal,
}

/// `state pull --to DIR`: `index.json`, and a numbered folder per journal. An HPCS scope's
/// holds `journal.jsonl` (records as the database keeps them, unsealed: an archive is no
/// evidence for a rerun) and `audit.jsonl`. A domain group's holds its journal named as a
/// state folder names it, sealed with this user's journal key (its head among its heads) and
/// ending with a sealed `pulled` record: `audit verify` vouches for it, and no plan or apply
/// takes it, as with a folder that `state push` retired.
pub fn pull(store: &Store, to: &Path) -> Result<u8> {
    let connection = database(store, "pull")?;
    if to.exists() {
        return Err(Error::Other(format!(
            "{} exists: pull writes a new folder, never over one. Name a folder that does not exist",
            to.display()
        )));
    }
    // Checked first: a damaged journal is reported, not archived as if sound.
    let scopes = read_scopes(&connection)?;
    let groups = read_groups(&connection, scopes.len())?;
    let key = match groups.is_empty() {
        true => None,
        false => Some(files::for_writing(to)?),
    };
    let writing = beside(to);
    let written = write(&writing, &connection, &scopes, &groups, key.as_ref()).and_then(|pulled| {
        std::fs::rename(&writing, to).map(|()| pulled).map_err(|e| {
            Error::Other(format!(
                "cannot rename {} to {}: {e}",
                writing.display(),
                to.display()
            ))
        })
    });
    let pulled = match written {
        Ok(pulled) => pulled,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&writing);
            return Err(Error::Other(format!(
                "{e}. Nothing was pulled ({} was not made); pull again once that is fixed",
                to.display()
            )));
        }
    };
    if let Some(key) = &key {
        for (group, pulled) in groups.iter().zip(&pulled) {
            group_archive::store_pulled_head(&to.join(&group.folder), pulled, key).map_err(|e| {
                Error::Other(format!(
                    "pulled into {}, but cannot record the head of its domain group journals among your journal heads ({e}): `mkplan audit verify` of them then cannot show a cut at their end",
                    to.display()
                ))
            })?;
        }
    }
    eprintln!(
        "Pulled {} scope(s) and {} domain group journal(s) from {} into {} (index.json lists them). The copy is an archive: its HPCS journals' records carry no seal, and its domain group journals end with a sealed `pulled` record, so no plan or apply takes them as evidence; `mkplan audit verify --state {}/N` vouches for a group journal's seals and chain.",
        scopes.len(),
        groups.len(),
        connection.shown(),
        to.display(),
        to.display()
    );
    Ok(0)
}

/// Every HPCS scope's journal (checked) and audit trail.
fn read_scopes(connection: &Connection) -> Result<Vec<Scope>> {
    let names = postgres::scopes(connection).map_err(|e| Error::Other(e.to_string()))?;
    let mut scopes = Vec::new();
    for (number, scope) in names.iter().enumerate() {
        postgres::read_journal(connection, scope, None).map_err(Error::Unsafe)?;
        let lines =
            postgres::journal_lines(connection, scope).map_err(|e| Error::Other(e.to_string()))?;
        let audit = postgres::read_audit(connection, scope).map_err(Error::Other)?;
        scopes.push(Scope {
            name: scope.clone(),
            folder: (number + 1).to_string(),
            lines,
            audit,
        });
    }
    Ok(scopes)
}

/// Every domain group's journal, checked as a plan checks it; numbered after the `after`
/// HPCS scopes.
fn read_groups(connection: &Connection, after: usize) -> Result<Vec<Group>> {
    let mut groups = Vec::new();
    for (number, (identity, scope)) in postgres::group_scopes(connection)?.iter().enumerate() {
        let journal = postgres::read_group_scope(connection, scope, identity)
            .map_err(|e| Error::Unsafe(format!("{e}. Nothing was pulled")))?;
        groups.push(Group {
            scope: scope.clone(),
            folder: (after + number + 1).to_string(),
            journal,
        });
    }
    Ok(groups)
}

/// The folder a pull is written in before it is renamed to `to`: beside it, hidden.
fn beside(to: &Path) -> PathBuf {
    let name = to.file_name().unwrap_or_default().to_string_lossy();
    to.with_file_name(format!(".{name}.pulling-{}", std::process::id()))
}

/// Writes the pull into `dir`: each scope's and group's folder, then `index.json`.
fn write(
    dir: &Path,
    connection: &Connection,
    scopes: &[Scope],
    groups: &[Group],
    key: Option<&JournalKey>,
) -> Result<Vec<Pulled>> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |e: std::io::Error| Error::Other(format!("cannot write {path}: {e}"))
    };
    crate::apply::state_dir::prepare(dir).map_err(Error::Other)?;
    let mut index = Vec::new();
    for scope in scopes {
        let folder = dir.join(&scope.folder);
        crate::apply::state_dir::prepare(&folder).map_err(Error::Other)?;
        let mut text = scope.lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(folder.join("journal.jsonl"), text).map_err(io(&folder))?;
        std::fs::write(folder.join("audit.jsonl"), &scope.audit).map_err(io(&folder))?;
    }
    let mut pulled = Vec::new();
    for group in groups {
        let folder = dir.join(&group.folder);
        crate::apply::state_dir::prepare(&folder).map_err(Error::Other)?;
        let key = key.expect("a key is made when there are group journals");
        let journal = &group.journal;
        let file = group_archive::write_pulled(
            &folder,
            journal.identity(),
            journal.records(),
            &connection.shown(),
            key,
        )
        .map_err(Error::Other)?;
        index.push(serde_json::json!({
            "group": journal.identity(), "host": postgres::host_of(&group.scope),
            "folder": group.folder, "journal": file.file,
            "journal_records": journal.records().len(),
        }));
        pulled.push(file);
    }
    let index = serde_json::json!({
        "database": connection.shown(),
        "pulled_at": crate::timestamp::utc_now(),
        "scopes": scopes.iter().map(|scope| serde_json::json!({
            "scope": scope.name, "folder": scope.folder, "journal_records": scope.lines.len(),
            "audit_entries": scope.audit.lines().count(),
        })).collect::<Vec<_>>(),
        "domain_groups": index,
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_string_pretty(&index).expect("json") + "\n",
    )
    .map_err(io(dir))?;
    Ok(pulled)
}
