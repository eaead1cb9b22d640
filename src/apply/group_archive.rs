//! A domain group's journal as an archive: the copy `state push` leaves in the folder it
//! pushed from, ending with its `pushed` record, and the copy `state pull` writes from a
//! database, ending with its `pulled` record. Both are sealed with this user's journal key and
//! keep their head among its heads, as a live journal does, so that `audit verify` can vouch
//! for them (every seal, the chain, and that the file was not cut back); neither is ever
//! planned or applied with: the group's journal goes on in the database.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use super::group_journal::{GroupJournal, GroupRecord};
use super::journal;
use super::journal_key::{self, Head, JournalKey};

/// A journal `write_pulled` wrote, whose head `store_pulled_head` records once its folder is
/// where it stays.
pub struct Pulled {
    pub file: String,
    pub records: usize,
    seal: String,
}

/// Writes `records` (a database's journal of `identity`, checked) into `dir` as a group journal
/// file named as a state folder names it, each record sealed with `key` and chained, then a
/// sealed `pulled` record naming `from`: an archive, fsynced.
pub fn write_pulled(
    dir: &Path,
    identity: &str,
    records: &[GroupRecord],
    from: &str,
    key: &JournalKey,
) -> Result<Pulled, String> {
    let mut all = records.to_vec();
    all.push(GroupRecord::Pulled {
        identity: identity.to_string(),
        at: crate::timestamp::utc_now(),
        from: from.to_string(),
    });
    let (text, seal) = journal::sealed_lines(key, "", &all);
    let file = GroupJournal::file_name(identity);
    let path = dir.join(&file);
    let cannot = |e: std::io::Error| format!("cannot write {}: {e}", crate::quote::path(&path));
    let mut out = super::state_dir::open(&path, OpenOptions::new().write(true)).map_err(cannot)?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(cannot)?;
    Ok(Pulled {
        file,
        records: all.len(),
        seal,
    })
}

/// Records the head of a pulled journal, now in `dir` for good: a copy cut back is then seen.
pub fn store_pulled_head(dir: &Path, pulled: &Pulled, key: &JournalKey) -> Result<(), String> {
    let Some(head) = key.head_path_of(dir, &pulled.file) else {
        return Ok(());
    };
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    journal_key::store_head(
        &head,
        &Head {
            state_dir: canonical.display().to_string(),
            records: pulled.records as u64,
            seal: pulled.seal.clone(),
            rewraps: None,
        },
    )
    .map_err(|e| format!("{}: {e}", crate::quote::path(&head)))
}

/// `audit verify` of a state folder's group journals, one line each: every seal with `key`,
/// the chain, and the head among the key's heads; an archive (pushed or pulled) too. A failure names
/// the file and the line.
pub fn verify_folder(dir: &Path, key: Option<&JournalKey>) -> Vec<Result<String, String>> {
    if !dir.exists() {
        return Vec::new(); // no folder, no journal: the audit trail's check says so
    }
    let identities = match GroupJournal::identities_in(dir) {
        Ok(identities) => identities,
        Err(why) => return vec![Err(format!("domain group journals in {why}"))],
    };
    identities
        .iter()
        .map(|identity| {
            let path = GroupJournal::path_for(dir, identity);
            let read = GroupJournal::load(dir, &path, identity, key)?;
            let head = key.and_then(|k| {
                let head = k.head_path_of(dir, &GroupJournal::file_name(identity))?;
                k.read_head(&head).ok().flatten()
            });
            let ends = match read.records.last() {
                Some(GroupRecord::Pushed { to, .. }) => format!(
                    "; an archive, pushed to {}",
                    crate::quote::bare(to)
                ),
                Some(GroupRecord::Pulled { from, .. }) => format!(
                    "; an archive, pulled from {}",
                    crate::quote::bare(from)
                ),
                _ => String::new(),
            };
            Ok(format!(
                "Domain group journal {} ({}) is intact: {} records, each sealed with your journal key and chained to the one before; {}{ends}.",
                crate::quote::path(&path),
                crate::quote::bare(identity),
                read.records.len(),
                match head {
                    Some(_) => "it extends the head mkplan keeps of it among your journal heads",
                    None => "no head of it is kept among your journal heads (another user's or machine's folder), so a cut at its end would not show",
                }
            ))
        })
        .collect()
}

/// No record says the journal is an archive: pushed into a database, where the group's journal
/// goes on (a record after `pushed` was written by a run that had the journal open while the
/// push ran: the database never got it); or pulled out of one, where it goes on.
pub(super) fn not_pushed(named: &str, records: &[GroupRecord]) -> Result<(), String> {
    for record in records {
        let (how, database, at) = match record {
            GroupRecord::Pushed { to, at, .. } => ("was pushed to", to, at),
            GroupRecord::Pulled { from, at, .. } => ("is a copy pulled from", from, at),
            _ => continue,
        };
        let command = match record {
            GroupRecord::Pushed { .. } => "mkplan state push",
            _ => "mkplan state pull",
        };
        return Err(format!(
            "the domain group journal {named} {how} {} at {} (`{command}`): the group's journal goes on there, and this one is an archive. Nothing was done; name the database with --state (or MKPLAN_STATE)",
            crate::quote::bare(database),
            crate::quote::bare(at)
        ));
    }
    Ok(())
}
