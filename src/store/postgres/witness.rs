//! The team databases this user's mkplan wrote from this machine, as witnesses to a command
//! whose journal is a state folder. One operator may keep an instance's journal in a database
//! one day and in a state folder the next (same machine, same journal key): a rewrap recorded
//! in the database and never answered may still be queued at the service, and the folder's
//! journal never heard of it (round 7, A1b). Every scope the user wrote leaves a head among
//! the journal heads (`journal::remember`), naming the database as shown (never with its
//! password) and the scope: each such database is reached again and every scope of it read,
//! as a database's own other scopes are (`Store::other_scopes`). One that cannot be reached
//! is named, never skipped, as a state folder that cannot be read is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Connection, Database};
use crate::apply::evidence::rewraps_on_any_backend;
use crate::apply::journal::Record;
use crate::apply::journal_key::Head;
use crate::model::{FolderRewrap, OtherFolders, UnreadFolder};

/// Every scope of a database, with its records.
type Scopes = Vec<(String, Vec<Record>)>;

/// A head this user keeps for one scope of a database (`journal::head_path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseHead {
    /// The database as shown: `postgres://USER@HOST:PORT/DATABASE`.
    pub shown: String,
    pub scope: String,
    /// The head file.
    pub file: PathBuf,
    /// The records the scope held when mkplan last wrote it from here.
    pub records: u64,
}

/// The database head `file` is, when it is one: its head names a database as shown and a
/// scope (`"URL SCOPE"`), and its file is named after them as `journal::head_path` names it.
/// A folder's, a domain group journal's or a chain's head is not.
pub fn journal_head(file: &Path, head: &Head) -> Option<DatabaseHead> {
    if !head.state_dir.starts_with("postgres://") || head.rewraps.is_some() {
        return None;
    }
    let name = file.file_name()?.to_str()?;
    // The scope holds spaces ("tke:us-south (https://…)"), and so may a socket folder's path:
    // the split is the one the file's name was made from.
    head.state_dir
        .match_indices(' ')
        .map(|(at, _)| (&head.state_dir[..at], &head.state_dir[at + 1..]))
        .find(|(shown, scope)| super::journal::head_file_name(&format!("{shown}\n{scope}")) == name)
        .map(|(shown, scope)| DatabaseHead {
            shown: shown.to_string(),
            scope: scope.to_string(),
            file: file.to_path_buf(),
            records: head.records,
        })
}

/// What the databases `heads` name say, added to `found`: per instance, the rewraps any scope
/// records as sent (never answered, or completed) in a rotation not closed there. A database
/// that cannot be reached (down, this user's password gone), or a scope found shorter than
/// mkplan last wrote it (restored from an older backup: what it lost may be a rewrap), is
/// named with its heads, as holding any instance.
///
/// `own` is the database the command uses, if any: a head that names it under another
/// spelling (`localhost` for `127.0.0.1`) reads the same journals, and is no other witness.
/// It is told apart by what it holds: a database whose every scope holds exactly the records
/// `own`'s does holds no rewrap the command does not already see.
pub fn ask(heads: &[DatabaseHead], own: Option<&Database>, found: &mut OtherFolders) {
    let mut databases: BTreeMap<&str, Vec<&DatabaseHead>> = BTreeMap::new();
    for head in heads.iter().filter(|h| !is_drill(&h.scope)) {
        databases.entry(&head.shown).or_default().push(head);
    }
    // Read once, when another database is to be compared with it.
    let mut own_scopes: Option<Option<Scopes>> = None;
    for (shown, heads) in databases {
        let unread = |why: String| UnreadFolder {
            state_dir: shown.to_string(),
            head: heads
                .iter()
                .map(|h| h.file.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            why,
            instances: None,
        };
        let scopes = match read(shown) {
            Ok(scopes) => scopes,
            Err(why) => {
                found.unread.push(unread(why));
                continue;
            }
        };
        if let Some(own) = own {
            let mine = own_scopes.get_or_insert_with(|| {
                Connection::open_to_read(own)
                    .and_then(|c| super::journal::every_scope(&c))
                    .ok()
            });
            if mine.as_ref() == Some(&scopes) {
                continue;
            }
        }
        for head in &heads {
            let now = scopes
                .iter()
                .find(|(scope, _)| *scope == head.scope)
                .map_or(0, |(_, records)| records.len() as u64);
            if now < head.records {
                found.unread.push(unread(format!(
                    "the journal of {} there holds {now} record(s), but mkplan last wrote {} there: it was cut back or restored from an older backup, and what it lost may be a rewrap",
                    head.scope, head.records
                )));
            }
        }
        for (_, records) in scopes.iter().filter(|(scope, _)| !is_drill(scope)) {
            for (instance, rewraps) in rewraps_on_any_backend(records) {
                found
                    .rewraps
                    .entry(instance)
                    .or_default()
                    // Another store, named as `--state` names it: not another scope of the
                    // store read now.
                    .extend(rewraps.into_iter().map(|(backend, rewrap)| FolderRewrap {
                        state_dir: shown.to_string(),
                        scope: None,
                        backend,
                        rewrap,
                    }));
            }
        }
    }
}

/// A scope `mkplan drill --shared-state` wrote (`drill::actors::run_cast` names them `drill
/// …`): simulated runs against a copy of the fleet in a scratch database, never the service.
/// A backend identity never begins so.
fn is_drill(scope: &str) -> bool {
    scope.starts_with("drill ")
}

/// Every scope of the database `shown`, reached as `psql` would reach it, its schema left as
/// it is (its team may run an older mkplan).
fn read(shown: &str) -> Result<Scopes, String> {
    let database = Database::from_shown(shown, |name| std::env::var(name).ok())?;
    let connection = Connection::open_to_read(&database)?;
    super::journal::every_scope(&connection)
}
