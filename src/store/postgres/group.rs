//! The journals of domain groups (`zcrypt:`) in the database, with the guarantees the HPCS
//! journal has there: each record committed before `append` returns (an intent before its
//! step, the outcome after), under a lease that one apply at a time holds on the group's APQNs,
//! fenced so that a writer whose lease was taken over writes nothing more; every row checked
//! against its checksum and chain when read; and a journal that lost records (a restore from
//! an older backup, a copy, a promoted replica) refused, as a state folder's group journal is
//! when it does not extend its head.
//!
//! A group journal is kept per group scope: the group's identity (sysfs root, zkey
//! repository, group name) on this Linux image, named by its host name, since two images may
//! have the same sysfs path, repository and group name. Its lease covers the image's APQNs
//! that the group names, so that two groups sharing an APQN are not changed at once.

use std::sync::Arc;

use super::journal::{
    batch_id, chained_records, first_column, head_path_of, moved, read_head, read_scope,
    record_incarnation_with, remember_at, wait_for_windows, windows_sql, with_retries,
    write_failed,
};
use super::lease::{Lease, Request};
use super::{Connection, Database};
use crate::apply::group_journal::{
    GroupJournal, GroupRecord, GroupSink, distrusted_journal, open_intents,
};
use crate::apply::journal::unsealed_line;
use crate::error::{Error, Result};

/// The scope of the group whose identity is `identity`, on this Linux image.
pub fn group_scope(identity: &str) -> String {
    format!("{identity}#host={}", crate::store::holder().host)
}

/// The scope of a group's lease: the image's sysfs root (the identity up to its zkey
/// repository) on this host. Its instances are the APQNs.
pub fn image_scope(identity: &str) -> String {
    let root = identity.split("#zkey=").next().unwrap_or(identity);
    format!("{root}#host={}", crate::store::holder().host)
}

/// The group's journal, read without writing anything.
pub fn read_group_journal(database: &Database, identity: &str) -> Result<GroupJournal> {
    let connection = Connection::open(database).map_err(Error::Other)?;
    let read = read(&connection, &group_scope(identity), identity)?;
    GroupJournal::shared(read.named, identity, read.records, None).map_err(Error::Unsafe)
}

/// The lease an apply holds on a group's APQNs, from before it plans until it ends; released
/// when dropped.
pub struct GroupLease {
    connection: Arc<Connection>,
    lease: Lease,
}

impl GroupLease {
    /// Takes the lease on `apqns`, or says who holds them (exit 1, as the HPCS lease does).
    pub fn take(database: &Database, identity: &str, apqns: &[String]) -> Result<Self> {
        let connection = Connection::open(database).map_err(Error::Other)?;
        let holder = crate::store::holder();
        let lease = Lease::take(
            &connection,
            Request {
                id: &holder.lock_id,
                scope: &image_scope(identity),
                instances: apqns.to_vec(),
                command: "apply",
                holder: crate::store::user_name(),
                host: holder.host.clone(),
                pid: holder.pid,
                ttl: crate::store::lease_ttl()?,
            },
        )
        .map_err(Error::Other)?;
        for gone in &lease.reclaimed {
            eprintln!(
                "Reclaimed {}: its process is gone from this machine, or stopped renewing it until it expired; it can write nothing more. The steps it left unsettled are settled by reading the stores again.",
                gone.describe()
            );
        }
        let taken = Self { connection, lease };
        taken.wait_for_stopped_writers(identity)?;
        Ok(taken)
    }

    /// Waits, before the stores are read, until no tool that a writer which stopped (paused,
    /// its lease reclaimed) journaled can still be run: each open intent's send window from
    /// its commit, then `MKPLAN_RECLAIM_GRACE_S`. A writer that released its lease, or whose
    /// process is gone, runs nothing more.
    fn wait_for_stopped_writers(&self, identity: &str) -> Result<()> {
        let scope = group_scope(identity);
        let read = read(&self.connection, &scope, identity)?;
        let mut windowed = Vec::new();
        let mut unbounded = false;
        for intent in open_intents(&read.records) {
            if let GroupRecord::Intent {
                step,
                send_within_ms,
                what,
                ..
            } = intent
            {
                match send_within_ms {
                    Some(_) => windowed.push(step.clone()),
                    // A ceremony is the operator's, not the writer's; a folder's tool intent
                    // (pushed) promised no window.
                    None => unbounded |= !what.starts_with("ceremony on "),
                }
            }
        }
        let reclaimed_live = self.lease.reclaimed.iter().any(|l| !l.holder_gone());
        let wait = wait_for_windows(
            &self.connection,
            &scope,
            windows_sql("mkplan_group_journal", "record"),
            windowed,
            unbounded && reclaimed_live,
            crate::store::reclaim_grace()?,
        )
        .map_err(Error::Unsafe)?;
        if let Some(wait) = wait {
            eprintln!(
                "Waiting {} s before reading the stores: an earlier apply left a tool step unsettled, and until then it may still run the tool it journaled (each intent's send window, then MKPLAN_RECLAIM_GRACE_S).",
                wait.as_secs_f64().ceil()
            );
            std::thread::sleep(wait);
        }
        Ok(())
    }

    /// The group's journal, checked as `read_group_journal` checks it, to append to under
    /// this lease. The database and timeline it lives in, and its length, are recorded first.
    pub fn journal(&self, identity: &str) -> Result<GroupJournal> {
        let scope = group_scope(identity);
        let read = read(&self.connection, &scope, identity)?;
        record_incarnation_with(
            &self.connection,
            "SELECT mkplan_group_incarnation($1, $2, $3)",
            &scope,
            &self.lease,
        )
        .map_err(|e| Error::Other(write_failed("journal's place", (e, 1))))?;
        let count = read.records.len() as u64;
        remember(&self.connection, &scope, count, &read.chain)?;
        let sink = PgGroupSink {
            connection: self.connection.clone(),
            scope,
            fence: self.lease.fence(),
            send_window: self.lease.send_window(),
        };
        GroupJournal::shared(read.named, identity, read.records, Some(Box::new(sink)))
            .map_err(Error::Unsafe)
    }
}

/// Appends to a group's journal under a lease.
struct PgGroupSink {
    connection: Arc<Connection>,
    scope: String,
    fence: (String, i64),
    send_window: std::time::Duration,
}

impl GroupSink for PgGroupSink {
    fn append(&mut self, record: &GroupRecord, _count: usize) -> std::result::Result<(), String> {
        let (line, sha256) = unsealed_line(record);
        let batch = batch_id();
        let (records, chain) = with_retries(|| {
            let (scope, batch) = (self.scope.clone(), batch.clone());
            let (lease, fence) = self.fence.clone();
            let (lines, sums) = (vec![line.clone()], vec![sha256.clone()]);
            self.connection.call(move |client| {
                Box::pin(async move {
                    let row = client
                        .query_one(
                            "SELECT records, chain FROM mkplan_group_append($1, $2, $3, $4, $5, $6)",
                            &[&scope, &lease, &fence, &batch, &lines, &sums],
                        )
                        .await?;
                    Ok((row.get::<_, i64>(0), row.get::<_, String>(1)))
                })
            })
        })
        .map_err(|failed| write_failed("journal records", failed))?;
        let records = u64::try_from(records).unwrap_or(0);
        remember(&self.connection, &self.scope, records, &chain).map_err(|e| e.to_string())
    }

    fn send_window(&self) -> Option<std::time::Duration> {
        Some(self.send_window)
    }
}

/// Keeps, among the journal heads, the length and chain hash this machine last saw the
/// journal of `scope` reach: a database restored from an older backup lacks them.
fn remember(connection: &Connection, scope: &str, records: u64, chain: &str) -> Result<()> {
    let Some(path) = group_head_path(scope) else {
        return Ok(());
    };
    let named = format!("{} {scope}", connection.shown());
    remember_at(&path, &named, records, chain).map_err(|e| {
        Error::Other(format!(
            "cannot record the head of the domain group journal of {scope} among your journal heads: {e}"
        ))
    })
}

/// Where this machine keeps the head of a group scope's journal. Named by the scope alone,
/// not by the database's URL: the journal found under another URL (a copy, a restore on
/// another server) is compared with what this machine last saw it hold.
fn group_head_path(scope: &str) -> Option<std::path::PathBuf> {
    head_path_of(&format!("domain group\n{scope}"))
}

/// A group's journal as read, checked.
struct Read {
    named: String,
    records: Vec<GroupRecord>,
    /// The chain hash after its last record.
    chain: String,
}

/// Every record of `scope`, each checked against its checksum and chain, the scope's head, this
/// machine's head of it, and the database and timeline it was last written in.
fn read(connection: &Connection, scope: &str, identity: &str) -> Result<Read> {
    let named = format!("of {identity} in {}", connection.shown());
    let (rows, head) = read_scope(
        connection,
        scope,
        "SELECT seq, line, sha256, chain FROM mkplan_group_journal WHERE scope = $1 ORDER BY seq",
        "SELECT records, chain, incarnation, mkplan_incarnation() FROM mkplan_group_scopes WHERE scope = $1",
    )
    .map_err(|e| Error::Other(format!("cannot read the journal {named}: {e}")))?;
    let checked: Vec<(GroupRecord, String)> = chained_records(
        &rows,
        head.as_ref().map(|row| (row.get(0), row.get(1))),
        &format!("the domain group journal {named}"),
    )
    .map_err(Error::Unsafe)?;
    let (records, chains): (Vec<GroupRecord>, Vec<String>) = checked.into_iter().unzip();
    let incarnation = head.map_or((None, None), |row| (row.get(2), row.get(3)));
    check_not_rolled_back(scope, &named, &chains, incarnation)?;
    Ok(Read {
        named,
        records,
        chain: chains.last().cloned().unwrap_or_default(),
    })
}

/// Refuses a journal that does not extend what this machine last saw it hold (its head among
/// the journal heads: fewer records, or others in their place), or that lives in another
/// database or on another WAL timeline than it was last written in, while this machine holds a
/// head of it. Moving that head away is the operator's word that the journal as the database
/// holds it now is the group's. `named`: "of IDENTITY in DATABASE".
fn check_not_rolled_back(
    scope: &str,
    named: &str,
    chains: &[String],
    (recorded, now): (Option<String>, Option<String>),
) -> Result<()> {
    let Some(head_path) = group_head_path(scope) else {
        return Ok(());
    };
    let Some(seen) = read_head(&head_path).map_err(Error::Unsafe)? else {
        if let Some(why) = moved(recorded, now) {
            eprintln!(
                "Note: the domain group journal {named} is taken as the database holds it: {why}; this machine holds no head of it to compare with."
            );
        }
        return Ok(());
    };
    let shown = crate::quote::path(&head_path);
    let seen_at = usize::try_from(seen.records).unwrap_or(usize::MAX);
    let what = if seen_at > chains.len() {
        Some(format!(
            "it holds {} records, but mkplan last saw it hold {} (its head {shown}, among your journal heads): the database was restored from an older backup, or records were removed",
            chains.len(),
            seen.records
        ))
    } else if seen_at > 0 && !seen.seal.is_empty() && chains[seen_at - 1] != seen.seal {
        Some(format!(
            "its first {} records are not the ones mkplan last saw there (its head {shown}, among your journal heads): it was replaced",
            seen.records
        ))
    } else {
        moved(recorded, now)
    };
    match what {
        None => Ok(()),
        Some(what) => Err(Error::Unsafe(distrusted_journal(
            named,
            &what,
            "restore the database from a backup that extends what mkplan last wrote",
            &format!(
                "take the journal as the database holds it now by moving this machine's head of it away: `mv {shown} {shown}.moved`"
            ),
        ))),
    }
}

/// What `state push` brings into the database: one state folder's group journal.
pub struct GroupPush<'a> {
    pub identity: &'a str,
    pub records: &'a [GroupRecord],
}

/// Writes a state folder's group journal into its empty scope in one transaction, refused when
/// the scope holds records or a lease is held on the image; the number of records written.
pub fn push_group(
    connection: &Connection,
    push: GroupPush<'_>,
) -> std::result::Result<u64, String> {
    let scope = group_scope(push.identity);
    let lease_scope = image_scope(push.identity);
    let (lines, sums): (Vec<String>, Vec<String>) = push.records.iter().map(unsealed_line).unzip();
    let batch = batch_id();
    let key = scope.clone();
    let (records, chain) = connection
        .call(move |client| {
            Box::pin(async move {
                let records: i64 = client
                    .query_one(
                        "SELECT mkplan_group_push($1, $2, $3, $4, $5)",
                        &[&key, &lease_scope, &batch, &lines, &sums],
                    )
                    .await?
                    .get(0);
                let chain: String = client
                    .query_one(
                        "SELECT chain FROM mkplan_group_scopes WHERE scope = $1",
                        &[&key],
                    )
                    .await?
                    .get(0);
                Ok((records, chain))
            })
        })
        .map_err(|e| e.to_string())?;
    let records = u64::try_from(records).unwrap_or(0);
    remember(connection, &scope, records, &chain).map_err(|e| e.to_string())?;
    Ok(records)
}

/// The group scopes the database holds, each with its group's identity (`state pull`,
/// `audit verify`).
pub fn group_scopes(connection: &Connection) -> Result<Vec<(String, String)>> {
    let scopes = first_column(
        connection,
        "SELECT scope FROM mkplan_group_scopes ORDER BY scope",
    )
    .map_err(|e| {
        Error::Other(format!(
            "cannot list the domain group journals in {}: {e}",
            connection.shown()
        ))
    })?;
    Ok(scopes
        .into_iter()
        .map(|scope| {
            let identity = scope.rsplit_once("#host=").map_or(&*scope, |(i, _)| i);
            (identity.to_string(), scope.clone())
        })
        .collect())
}

/// The journal of group scope `scope`, checked as every read checks it (each row's checksum
/// and chain, the scope's head, this machine's head of it, where it was last written).
pub fn read_group_scope(
    connection: &Connection,
    scope: &str,
    identity: &str,
) -> Result<GroupJournal> {
    let read = read(connection, scope, identity)?;
    let named = format!("{} (on {})", read.named, host_of(scope));
    GroupJournal::shared(named, identity, read.records, None).map_err(Error::Unsafe)
}

/// The Linux image a group scope is on.
pub fn host_of(scope: &str) -> &str {
    scope.rsplit_once("#host=").map_or("", |(_, host)| host)
}

/// `audit verify` of the database's group journals, one line each.
pub fn verify_group_journals(
    connection: &Connection,
) -> Result<Vec<std::result::Result<String, String>>> {
    Ok(group_scopes(connection)?
        .iter()
        .map(|(identity, scope)| {
            let journal = read_group_scope(connection, scope, identity).map_err(|e| e.to_string())?;
            Ok(format!(
                "Domain group journal of {} in {} (on {}) is intact: {} records, each matching its checksum and chained to the one before; it is where it was last written, and extends the head this machine keeps of it, if any.",
                crate::quote::bare(identity),
                connection.shown(),
                host_of(scope),
                journal.records().len()
            ))
        })
        .collect())
}

/// The leases held on this image's APQNs that `apqns` names: the group's apply's, or another
/// group's that shares one of them. Either refuses an apply of the group (`status`).
pub fn group_holders(
    database: &Database,
    identity: &str,
    apqns: &[String],
) -> Result<Vec<super::LeaseInfo>> {
    let connection = Connection::open(database).map_err(Error::Other)?;
    let held = super::holders(&connection, &image_scope(identity))
        .map_err(|e| Error::Other(e.to_string()))?;
    Ok(held
        .into_iter()
        .filter(|lease| lease.instances.iter().any(|apqn| apqns.contains(apqn)))
        .collect())
}
