//! `state init` and `state push`: preparing a team's database and moving a state folder into
//! it (`state pull`, exporting its records for archiving, is `state_pull`). And the store's
//! part of `status`: who holds the lock, and which rotations are open.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;

use crate::apply::audit;
use crate::apply::group_journal::{GroupJournal, GroupRecord};
use crate::apply::journal::{Record, shared_lines};
use crate::error::{Error, Result};
use crate::model::{JournalEvidence, JournalRewrap};
use crate::store::postgres::{self, Connection, Database, LeaseInfo};
use crate::store::{Store, files};

pub(super) fn database(store: &Store, command: &str) -> Result<Arc<Connection>> {
    match store {
        Store::Postgres(database) => connect(database),
        Store::Files(dir) => Err(Error::Other(format!(
            "`mkplan state {command}` works on a PostgreSQL database: name it with --state postgres://USER@HOST:PORT/DATABASE (or MKPLAN_STATE); {} is a folder",
            dir.display()
        ))),
    }
}

fn connect(database: &Database) -> Result<Arc<Connection>> {
    Connection::open(database).map_err(Error::Other)
}

/// `state init`: creates or upgrades the schema (every command also does on first use).
pub fn init(store: &Store) -> Result<u8> {
    let connection = database(store, "init")?;
    eprintln!(
        "{} holds mkplan's schema, version {}: journals, audit trails and leases, per backend. Every operator and runner now names it with --state {} (or MKPLAN_STATE).",
        connection.shown(),
        postgres::SCHEMA_VERSION,
        connection.shown()
    );
    Ok(0)
}

/// `state push --from DIR`: moves a state folder's journal and audit trail into the database,
/// refused unless the folder's journal is one this user's key vouches for, about one
/// backend, and the database holds nothing of that backend yet.
pub fn push(store: &Store, from: &Path) -> Result<u8> {
    let connection = database(store, "push")?;
    let nothing = "Nothing was pushed";
    let holds_journal = from.join("journal.jsonl").exists();
    if !holds_journal && !holds_group_journals(from) {
        return Err(Error::Other(format!(
            "{} holds no journal (journal.jsonl, or a domain group's zcrypt-….jsonl). {nothing}",
            from.display()
        )));
    }
    // The folder's lock, from reading the journal to appending `pushed`: an apply or an
    // attestation that is writing to this folder would go on writing after the push, into an
    // archive, records the database never gets (a rewrap's intent, say).
    // A folder others could write is unsafe evidence (exit 3), as on every read.
    crate::apply::state_dir::prepare(from).map_err(Error::Unsafe)?;
    let _lock = crate::apply::lock::acquire(from, &crate::store::holder()).map_err(|held| {
        Error::Other(format!(
            "state push needs the lock on {} while it copies the journal and retires the folder: {held}. {nothing}; push once that run has ended",
            crate::quote::path(from)
        ))
    })?;
    // Every journal is checked before any is pushed.
    let groups = group_journals(from).map_err(|e| Error::Unsafe(format!("{e}. {nothing}")))?;
    // A journal pushed by an earlier push that stopped before the group journals: those go on.
    if !holds_journal || (!groups.is_empty() && journal_pushed(from)) {
        return push_groups(&connection, from, &groups, None);
    }
    let records = files::read_journal(from)?;
    for record in &records {
        match record {
            Record::Unauthenticated { line, why, .. } => {
                return Err(Error::Unsafe(format!(
                    "the journal in {} has a record at line {line} that is not authenticated ({}): push moves only a journal that your journal key vouches for. {nothing}; push it as the user who wrote it",
                    from.display(),
                    why.describe()
                )));
            }
            Record::RolledBack {
                expected,
                found,
                why,
                ..
            } => {
                return Err(Error::Unsafe(format!(
                    "the journal in {} was rolled back ({}): it cannot be vouched for. {nothing}",
                    from.display(),
                    why.clone().unwrap_or_else(|| format!(
                        "mkplan had left it with {expected} records and found {found}"
                    ))
                )));
            }
            _ => {}
        }
    }
    let backends: BTreeSet<&str> = records.iter().filter_map(backend_of).collect();
    let scope = match backends.len() {
        0 => {
            return Err(Error::Other(format!(
                "the journal in {} names no backend (it records no apply). {nothing}",
                from.display()
            )));
        }
        1 => backends.first().expect("one").to_string(),
        n => {
            return Err(Error::Other(format!(
                "the journal in {} holds records of {n} backends ({}): a database keeps one journal per backend, and push moves one. {nothing}",
                from.display(),
                backends.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
    };
    let audit_path = from.join("audit.jsonl");
    let audit_text = std::fs::read_to_string(&audit_path).unwrap_or_default();
    let (verified, _) = audit::verify_text_anchored(&audit_text, &records).map_err(|broken| {
        Error::Unsafe(format!(
            "the audit trail {}: {broken}. {nothing}",
            audit_path.display()
        ))
    })?;
    let runs = records
        .iter()
        .filter(|r| matches!(r, Record::ApplyStarted { .. }))
        .count();
    let pushed = postgres::push(
        &connection,
        postgres::Push {
            scope: scope.clone(),
            lines: shared_lines(&records),
            audit: audit_text.lines().map(str::to_string).collect(),
            audit_head: verified.last_hash.clone(),
            runs: u32::try_from(runs).unwrap_or(u32::MAX),
        },
    )
    .map_err(|e| Error::Other(format!("{e}. {nothing}")))?;
    // The database's head among this user's journal heads, as a database command leaves
    // one: a folder command on this machine asks the database from then on, even once the
    // pushed folder and its head are gone (adversarial round 15, F1: the folder was removed
    // after the push, its head with it, and a second rewrap lost the key storage).
    postgres::remember(&connection, &scope, pushed);
    // The folder is retired by a sealed record, so that no run or attestation uses it again
    // (nor a copy of it made before: that copy no longer extends the journal's head).
    let retired = files::open_journal(from).and_then(|mut journal| {
        journal
            .append(Record::Pushed {
                to: connection.shown(),
                at: crate::timestamp::utc_now(),
            })
            .map_err(|e| Error::Other(e.to_string()))
    });
    if let Err(e) = retired {
        return Err(Error::Other(format!(
            "pushed {pushed} journal records into {}, but could not mark {} as pushed ({e}): move the folder away now, and apply with it no more; the database holds its journal",
            connection.shown(),
            from.display()
        )));
    }
    let pushed = format!(
        "{pushed} journal records and {} audit entries of {scope}",
        verified.entries
    );
    push_groups(&connection, from, &groups, Some(pushed))
}

/// Whether the journal of `from` ends with its (sealed) `pushed` record.
fn journal_pushed(from: &Path) -> bool {
    let key = files::for_reading(from).ok().flatten();
    crate::apply::journal::Journal::read(from, key.as_ref())
        .is_ok_and(|records| matches!(records.last(), Some(Record::Pushed { .. })))
}

/// Whether `from` holds a domain group's journal file.
fn holds_group_journals(from: &Path) -> bool {
    std::fs::read_dir(from).into_iter().flatten().any(|entry| {
        entry.is_ok_and(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.starts_with("zcrypt-") && name.ends_with(".jsonl")
        })
    })
}

/// The domain group journals of `from` not pushed yet, each checked whole with this user's
/// journal key (seals, and the head among its heads).
fn group_journals(from: &Path) -> std::result::Result<Vec<GroupJournal>, String> {
    let key = files::for_reading(from).map_err(|e| e.to_string())?;
    let mut journals = Vec::new();
    for identity in GroupJournal::identities_in(from)? {
        if let Some(journal) = GroupJournal::read_to_push(from, &identity, key.as_ref())? {
            journals.push(journal);
        }
    }
    Ok(journals)
}

/// Pushes each domain group journal of `from` into the database and retires it there with a
/// sealed `pushed` record; then says what was pushed (`pushed`: the HPCS journal, if it was).
fn push_groups(
    connection: &Connection,
    from: &Path,
    groups: &[GroupJournal],
    pushed: Option<String>,
) -> Result<u8> {
    let mut said: Vec<String> = pushed.into_iter().collect();
    for group in groups {
        let identity = group.identity();
        let done = if said.is_empty() {
            "Nothing was pushed".to_string()
        } else {
            format!("Pushed {} only", said.join(" and "))
        };
        let records = postgres::push_group(
            connection,
            postgres::GroupPush {
                identity,
                records: group.records(),
            },
        )
        .map_err(|e| {
            Error::Other(format!(
                "the domain group journal of {identity}: {e}. {done}"
            ))
        })?;
        let retired = files::for_writing(from).and_then(|key| {
            let mut journal = GroupJournal::open(from, identity, &key).map_err(Error::Unsafe)?;
            journal
                .append(GroupRecord::Pushed {
                    identity: identity.to_string(),
                    at: crate::timestamp::utc_now(),
                    to: connection.shown(),
                })
                .map_err(Error::Other)
        });
        if let Err(e) = retired {
            return Err(Error::Other(format!(
                "pushed {records} journal records of {identity} into {}, but could not mark its journal in {} as pushed ({e}): move that file away now, and apply with that folder no more; the database holds its journal",
                connection.shown(),
                from.display()
            )));
        }
        said.push(format!(
            "the {records} journal records of domain group {identity}"
        ));
    }
    if said.is_empty() {
        return Err(Error::Other(format!(
            "the journals in {} were pushed already: nothing is left to push. Name the database with --state (or MKPLAN_STATE)",
            from.display()
        )));
    }
    eprintln!(
        "Pushed {} from {} into {}. From now on name the database with --state (or MKPLAN_STATE). {} keeps its records as an archive, marked as pushed: mkplan refuses to plan, apply or attest with it (or with a copy of it), since two journals of one fleet would each miss what the other saw.",
        said.join(" and "),
        from.display(),
        connection.shown(),
        from.display()
    );
    Ok(0)
}

/// The backend a record is bound to, if it names one.
fn backend_of(record: &Record) -> Option<&str> {
    match record {
        Record::ApplyStarted { backend, .. } | Record::RotationStarted { backend, .. } => {
            backend.as_deref()
        }
        Record::Attested { backend, .. }
        | Record::RotationClosed { backend, .. }
        | Record::ForeignRewrapSeen { backend, .. } => Some(backend),
        _ => None,
    }
}

/// The lock or leases held, as `status --json` shows them (docs/json.md, `state.locks`).
pub(super) fn locks_json(holders: &[LeaseInfo]) -> Vec<serde_json::Value> {
    holders
        .iter()
        .map(|holder| {
            let mut lock = serde_json::to_value(holder).expect("a lease serializes");
            lock["holder_gone"] = holder.holder_gone().into();
            lock
        })
        .collect()
}

/// The lock or leases held, a line each, as `status` shows them.
pub(super) fn lock_lines(holders: &[LeaseInfo]) -> String {
    let mut out = String::new();
    if holders.is_empty() {
        out += "  Lock: not held.\n";
    }
    for holder in holders {
        let _ = writeln!(
            out,
            "  Lock: held by {}{}",
            holder.describe(),
            if holder.holder_gone() {
                "; its process is gone from this machine: the next writer reclaims it"
            } else {
                ""
            }
        );
    }
    out
}

/// The store's part of `status --json`: the same as `status_section`, as data
/// (docs/json.md, `state`).
pub fn status_state(
    store: &Store,
    scope: &str,
    evidence: &JournalEvidence,
) -> Result<serde_json::Value> {
    let locks = locks_json(&store.holders(scope)?);
    let rotations: Vec<serde_json::Value> = evidence
        .rotations
        .iter()
        .map(|(instance, rotation)| {
            let (rewrap, detail) = match &rotation.rewrap {
                JournalRewrap::NotSent => ("not_sent", None),
                JournalRewrap::Unsettled { sent_at, .. } => ("unknown", sent_at.clone()),
                JournalRewrap::Completed { how } => ("completed", Some(how.clone())),
                JournalRewrap::NotRun { how } => ("not_run", Some(how.clone())),
            };
            serde_json::json!({
                "instance": instance,
                "from": rotation.from.as_str(),
                "to": rotation.to.as_str(),
                "started_at": rotation.started_at,
                "crypto_units": rotation.units,
                "loaded": rotation.loaded,
                "committed": rotation.committed,
                "promoted": rotation.promoted,
                "rewrap": rewrap,
                "rewrap_detail": detail,
                "attested_not_run_at": rotation.attested_not_run.as_ref().map(|a| a.at.clone()),
                "attested_completed_at": rotation.attested_completed.as_ref().map(|a| a.at.clone()),
            })
        })
        .collect();
    let mut not_evidence: Vec<serde_json::Value> = evidence
        .unauthenticated_all
        .iter()
        .map(|why| serde_json::json!({ "instance": null, "why": why }))
        .collect();
    not_evidence.extend(
        evidence
            .unauthenticated
            .iter()
            .map(|(instance, why)| serde_json::json!({ "instance": instance, "why": why })),
    );
    let other_witnesses: Vec<serde_json::Value> = evidence
        .other_folders
        .rewraps
        .iter()
        .flat_map(|(instance, rewraps)| rewraps.iter().map(move |r| (instance, r)))
        .map(|(instance, rewrap)| {
            serde_json::json!({
                "instance": instance,
                "rewrap": if rewrap.rewrap.completed { "completed" } else { "unknown" },
                "said": crate::plan::other_stores::rewrap_described(rewrap),
                "settle_with": crate::plan::other_stores::settle_with(rewrap),
            })
        })
        .chain(evidence.other_folders.unread.iter().map(|unread| {
            serde_json::json!({
                "instance": unread.instances.as_ref().map(|i| i.join(", ")),
                "rewrap": "unread",
                "said": crate::plan::other_stores::unread_described(unread),
                "settle_with": crate::plan::other_stores::unread_remedy(unread),
            })
        }))
        .collect();
    Ok(serde_json::json!({
        "store": store.journal_named(scope),
        "locks": locks,
        "open_rotations": rotations,
        "not_evidence": not_evidence,
        "other_witnesses": other_witnesses,
    }))
}

/// The other state folders and databases of this user on this machine that say they sent a
/// rewrap of one of these instances, or cannot be read (`status`): while one of them may
/// still land, no new register may be cleared and no set immediate made by hand (adversarial
/// round 13, F1: `status` in one folder showed "Open rotations: none recorded" while another
/// folder's rewrap was never answered).
fn other_witness_lines(evidence: &JournalEvidence) -> String {
    let folders = &evidence.other_folders;
    if folders.rewraps.is_empty() && folders.unread.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "  Other witnesses (this user's other state folders and team databases on this machine):\n",
    );
    let mut may_land = false;
    for rewraps in folders.rewraps.values() {
        for rewrap in rewraps {
            may_land |= !rewrap.rewrap.completed;
            let _ = writeln!(
                out,
                "    {}; settled {}",
                crate::plan::other_stores::rewrap_described(rewrap),
                crate::plan::other_stores::settle_with(rewrap)
            );
        }
    }
    for unread in &folders.unread {
        may_land = true;
        let _ = writeln!(
            out,
            "    {}; to have it answer: {}",
            crate::plan::other_stores::unread_described(unread),
            crate::plan::other_stores::unread_remedy(unread)
        );
    }
    if may_land {
        out += "    Until each is settled, a rewrap mkplan sent may still run or have run: clear no new register and make no set immediate by hand on these instances.\n";
    }
    out
}

/// The store's part of `status`: the lock or leases held, and the open rotations of the
/// journal with what witnessed them.
pub fn status_section(store: &Store, scope: &str, evidence: &JournalEvidence) -> Result<String> {
    let mut out = format!("\nState: {}\n", store.journal_named(scope));
    out += &lock_lines(&store.holders(scope)?);
    if evidence.rotations.is_empty() {
        out += "  Open rotations: none recorded.\n";
    }
    for (instance, rotation) in &evidence.rotations {
        let _ = writeln!(
            out,
            "  Open rotation of {instance}: {} → {}, started {} on {} crypto unit(s)",
            rotation.from.short(),
            rotation.to.short(),
            rotation
                .started_at
                .as_deref()
                .unwrap_or("(time not recorded)"),
            rotation.units.len()
        );
        let _ = writeln!(
            out,
            "    witnessed: loaded on {}, committed on {}, set immediate on {} of them",
            rotation.loaded.len(),
            rotation.committed.len(),
            rotation.promoted.len()
        );
        let rewrap = match &rotation.rewrap {
            JournalRewrap::NotSent => "not sent by this journal".to_string(),
            JournalRewrap::Unsettled { sent_at, by_hand } => format!(
                "{}{}, outcome unknown",
                if *by_hand {
                    "shown as a ceremony step"
                } else {
                    "sent"
                },
                sent_at
                    .as_deref()
                    .map(|t| format!(" by the run of {t}"))
                    .unwrap_or_default()
            ),
            JournalRewrap::Completed { how } => format!("completed ({how})"),
            JournalRewrap::NotRun { how } => format!("did not run ({how})"),
        };
        let _ = writeln!(out, "    rewrap: {rewrap}");
        if let Some(attested) = &rotation.attested_not_run {
            let _ = writeln!(
                out,
                "    attested: the rewrap did not run (at {}, in force)",
                attested.at
            );
        }
        if let Some(attested) = &rotation.attested_completed {
            let _ = writeln!(
                out,
                "    attested: the rewrap completed (at {}, in force)",
                attested.at
            );
        }
    }
    if let Some(why) = &evidence.unauthenticated_all {
        let _ = writeln!(out, "  Not evidence: {why}");
    }
    for (instance, why) in &evidence.unauthenticated {
        let _ = writeln!(out, "  Not evidence about {instance}: {why}");
    }
    out += &other_witness_lines(evidence);
    Ok(out)
}
