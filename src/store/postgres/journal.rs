//! The journal and the audit trail of one scope in the database: appended in batches that
//! name their lease and fence, retried (without being written twice) when the connection is
//! lost, and read back with every checksum and chain link checked.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};

use super::audit::{self, AuditQueue};
use super::lease::Lease;
use super::{Connection, DbError};
use crate::apply::journal::{Record, SharedJournal, SharedLine, unsealed_record};

/// Attempts at one write when the connection is lost, and the pause before the first retry
/// (doubled each time): about 8 s in all, then the write fails.
const ATTEMPTS: u32 = 6;
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// The journal of `scope`, written under `lease` (none: `state push`, which holds no lease
/// but refuses a scope that has records).
pub struct PgJournal {
    connection: Arc<Connection>,
    scope: String,
    lease: Option<(String, i64)>,
    send_window: Option<Duration>,
    /// The audit entries that go out with the next batch.
    audit: AuditQueue,
}

impl PgJournal {
    pub fn new(
        connection: Arc<Connection>,
        scope: &str,
        lease: Option<&Lease>,
        audit: AuditQueue,
    ) -> Self {
        Self {
            connection,
            scope: scope.to_string(),
            lease: lease.map(Lease::fence),
            send_window: lease.map(Lease::send_window),
            audit,
        }
    }
}

/// Where this machine's user keeps the length it last saw a scope's journal reach, among the
/// journal heads (as the file store keeps its heads): a database restored from an older
/// backup holds fewer records, and that is seen. `None` when no journal key place is known.
pub fn head_path(connection: &Connection, scope: &str) -> Option<std::path::PathBuf> {
    head_path_of(&format!("{}\n{scope}", connection.shown()))
}

/// Where the head of the journal that `name` names is kept: among the heads of your journal
/// key (`JournalKey::heads`), else, while there is no key that can be read, beside the place
/// the key would be; and wherever it is found already (kept beside the key before the key was
/// made, or by an older mkplan), there: one place per scope, which messages name.
pub(super) fn head_path_of(name: &str) -> Option<std::path::PathBuf> {
    use crate::apply::journal_key::{self, JournalKey};
    let key = journal_key::key_path(|name| std::env::var(name).ok()).ok()?;
    let file = head_file_name(name);
    let beside = key.parent()?.join("heads").join(&file);
    match JournalKey::load(&key) {
        Ok(Some(key)) => Some(key.head_file(&key.heads()?.join(&file))),
        _ => Some(beside),
    }
}

/// The name of the file that keeps the head of the journal `name` names (`head_path_of`).
pub(super) fn head_file_name(name: &str) -> String {
    let digest = sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        name,
    ));
    hex::encode(&digest[..16])
}

/// The head at `path` (from `head_path_of`).
pub(super) fn read_head(
    path: &std::path::Path,
) -> Result<Option<crate::apply::journal_key::Head>, String> {
    crate::apply::journal_key::load_head(path)
}

/// The records this machine last saw `scope`'s journal hold, if it wrote or read any.
pub fn seen(connection: &Connection, scope: &str) -> Result<Option<u64>, String> {
    let Some(path) = head_path(connection, scope) else {
        return Ok(None);
    };
    Ok(read_head(&path)?.map(|h| h.records))
}

/// Records that `scope`'s journal held `records` when this machine last saw it.
pub fn remember(connection: &Connection, scope: &str, records: u64) {
    if let Some(path) = head_path(connection, scope) {
        let _ = remember_at(
            &path,
            &format!("{} {scope}", connection.shown()),
            records,
            "",
        );
    }
}

/// Records in the head at `path` that the journal `named` held `records`, the last with the
/// chain hash `chain` ('' for a journal whose head keeps only its length).
pub(super) fn remember_at(
    path: &std::path::Path,
    named: &str,
    records: u64,
    chain: &str,
) -> std::io::Result<()> {
    crate::apply::journal_key::store_head(
        path,
        &crate::apply::journal_key::Head {
            state_dir: named.to_string(),
            records,
            seal: chain.to_string(),
            rewraps: None,
        },
    )
}

/// A scope's rows read in order, each linked to the one before: the chain hash is
/// sha256(previous chain || the row's checksum), so a row edited or removed breaks every link
/// after it.
#[derive(Default)]
struct Chain {
    /// The chain hash after the last row read ('' before the first).
    last: String,
    rows: i64,
}

impl Chain {
    /// The row numbered `seq` comes next.
    fn expect(&self, seq: i64) -> Result<(), &'static str> {
        if seq == self.rows + 1 {
            Ok(())
        } else {
            Err("records before it are missing")
        }
    }

    /// The next row, of checksum `sha256`, says its chain hash is `link`.
    fn link(&mut self, sha256: &str, link: &str) -> Result<(), &'static str> {
        self.last = hex::encode(sha2::Digest::finalize(sha2::Digest::chain_update(
            <sha2::Sha256 as sha2::Digest>::new(),
            format!("{}{sha256}", self.last),
        )));
        self.rows += 1;
        if self.last == link {
            Ok(())
        } else {
            Err("it does not link to the record before it")
        }
    }
}

/// The refusal for a scope's journal (`named`) whose rows or head do not hold together.
fn damaged(named: &str, seq: i64, why: &str) -> String {
    format!(
        "{named} is damaged at record {seq}: {why}. It cannot be trusted to settle what happened; keep the database as it is for investigation, compare the live state (`mkplan status`) with the audit trail, and ask for help before acting"
    )
}

/// What the scope's head (its length and last chain hash) not matching its rows means.
const HEAD_MISMATCH: &str =
    "the scope's head does not match its records (records were removed or added outside mkplan)";

pub(super) fn batch_id() -> String {
    let mut id = [0u8; 16];
    let _ = getrandom::fill(&mut id);
    hex::encode(id)
}

/// Runs an idempotent write, retrying while the connection is lost.
pub(super) fn with_retries<T>(
    mut write: impl FnMut() -> Result<T, DbError>,
) -> Result<T, (DbError, u32)> {
    let mut pause = FIRST_PAUSE;
    for attempt in 1..=ATTEMPTS {
        match write() {
            Err(DbError::Lost(why)) if attempt < ATTEMPTS => {
                eprintln!(
                    "warning: the database connection was lost ({why}); writing again in {} ms (attempt {} of {ATTEMPTS})",
                    pause.as_millis(),
                    attempt + 1
                );
                std::thread::sleep(pause);
                pause *= 2;
            }
            Err(error) => return Err((error, attempt)),
            Ok(value) => return Ok(value),
        }
    }
    unreachable!("the last attempt returns")
}

pub(super) fn write_failed(what: &str, (error, attempts): (DbError, u32)) -> String {
    match error {
        DbError::Fenced(why) => format!(
            "{why}. This process no longer holds its lease, so it writes and sends nothing more: another writer took the instances over (the lease expired while this process was stopped or cut off). The {what} not written leave their operations unknown; the writer that holds the lease now settles them from the live state"
        ),
        DbError::Lost(why) => format!(
            "the {what} could not be written after {attempts} attempts ({why}). Nothing new was started; operations in flight whose outcome was not written are left unknown, and the next apply settles them from the live state"
        ),
        DbError::Refused(why) => format!("the database refused the {what}: {why}"),
    }
}

impl SharedJournal for PgJournal {
    fn describe(&self) -> String {
        format!(
            "the journal of {} in {}",
            self.scope,
            self.connection.shown()
        )
    }

    fn append(&mut self, lines: Vec<SharedLine>) -> Result<(), String> {
        let batch = batch_id();
        let (lease, fence) = self.lease.clone().unzip();
        let mut texts = Vec::with_capacity(lines.len());
        let mut sums = Vec::with_capacity(lines.len());
        let mut instances = Vec::with_capacity(lines.len());
        for line in lines {
            texts.push(line.line);
            sums.push(line.sha256);
            instances.push(line.instance);
        }
        let scope = self.scope.clone();
        // The audit entries queued since the last batch go with this one, after it, in the
        // same round trip (the statements are pipelined; each batch is written once).
        let audit = Arc::new(std::mem::take(&mut audit::lock(&self.audit).pending));
        let (records, head) = with_retries(|| {
            let (scope, lease, batch) = (scope.clone(), lease.clone(), batch.clone());
            let (texts, sums, instances) = (texts.clone(), sums.clone(), instances.clone());
            let audit = audit.clone();
            self.connection.call(move |client| {
                Box::pin(async move {
                    let journal = async {
                        let params: [(&(dyn ToSql + Sync), Type); 7] = [
                            (&scope, Type::TEXT),
                            (&lease, Type::TEXT),
                            (&fence, Type::INT8),
                            (&batch, Type::TEXT),
                            (&texts, Type::TEXT_ARRAY),
                            (&sums, Type::TEXT_ARRAY),
                            (&instances, Type::TEXT_ARRAY),
                        ];
                        client
                            .query_typed(
                                "SELECT mkplan_journal_append($1, $2, $3, $4, $5, $6, $7)",
                                &params,
                            )
                            .await
                    };
                    let (journal, head) =
                        futures_util::future::join(journal, audit::append_pending(&client, &audit))
                            .await;
                    let records: i64 = journal?.first().map_or(0, |row| row.get(0));
                    Ok((records, head?))
                })
            })
        })
        .map_err(|failed| write_failed("journal records", failed))?;
        if head.is_some() {
            audit::lock(&self.audit).head = head;
        }
        remember(
            &self.connection,
            &self.scope,
            u64::try_from(records).unwrap_or(0),
        );
        Ok(())
    }

    fn send_window(&self) -> Option<Duration> {
        self.send_window
    }

    fn next_run(&mut self) -> Result<u32, String> {
        let scope = self.scope.clone();
        let (lease, fence) = self.lease.clone().unzip();
        let run: i32 = with_retries(|| {
            let (scope, lease) = (scope.clone(), lease.clone());
            self.connection.call(move |client| {
                Box::pin(async move {
                    Ok(client
                        .query_one(
                            "SELECT mkplan_next_run($1, $2, $3)",
                            &[&scope, &lease, &fence],
                        )
                        .await?
                        .get(0))
                })
            })
        })
        .map_err(|failed| write_failed("run number", failed))?;
        u32::try_from(run).map_err(|_| format!("run number {run} out of range"))
    }
}

/// The scopes the database holds, in order.
pub fn scopes(connection: &Connection) -> Result<Vec<String>, DbError> {
    first_column(connection, "SELECT scope FROM mkplan_scopes ORDER BY scope")
}

/// The first column of every row `sql` (which takes no parameter) selects.
pub(super) fn first_column(
    connection: &Connection,
    sql: &'static str,
) -> Result<Vec<String>, DbError> {
    connection.call(move |client| {
        Box::pin(async move {
            Ok(client
                .query(sql, &[])
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect())
        })
    })
}

/// Every record of `scope`, each checked against its checksum and chain; with `instances`,
/// only those about them and the runs' own. A break anywhere is an error that names the row.
pub fn read_journal(
    connection: &Connection,
    scope: &str,
    instances: Option<&[String]>,
) -> Result<Vec<Record>, String> {
    let (rows, head) = read_scope(
        connection,
        scope,
        "SELECT seq, line, sha256, chain, instance FROM mkplan_journal WHERE scope = $1 ORDER BY seq",
        "SELECT journal_records, journal_chain FROM mkplan_scopes WHERE scope = $1",
    )
    .map_err(|e| format!("cannot read the journal of {scope} in {}: {e}", connection.shown()))?;
    let named = format!("the journal of {scope} in {}", connection.shown());
    let head = head.map(|row| (row.get(0), row.get(1)));
    let checked = chained_records::<Record>(&rows, head, &named)?;
    let wanted: Option<Vec<String>> =
        instances.map(|ids| ids.iter().map(|i| i.to_lowercase()).collect());
    let mut records = Vec::new();
    for (row, (record, _)) in rows.iter().zip(checked) {
        let instance: Option<&str> = row.get(4);
        let about_wanted = match (&wanted, instance) {
            (Some(ids), Some(instance)) => ids.iter().any(|i| i == instance),
            _ => true,
        };
        if about_wanted {
            records.push(record);
        }
    }
    Ok(records)
}

/// Every other scope of the journal table, read whole and checked like `scope`'s: the records
/// this database holds of other backend identities, among them the same instance reached
/// another way (another endpoint of the service). A scope that does not read is an error.
pub fn other_scopes(
    connection: &Connection,
    scope: &str,
) -> Result<Vec<(String, Vec<Record>)>, String> {
    scopes_read(connection, Some(scope))
}

/// Every scope of the journal table, read whole and checked: what a database says to a
/// journal kept elsewhere (a state folder of the same user). A scope that does not read is an
/// error.
pub fn every_scope(connection: &Connection) -> Result<Vec<(String, Vec<Record>)>, String> {
    scopes_read(connection, None)
}

/// Each scope but `except`, with its records.
fn scopes_read(
    connection: &Connection,
    except: Option<&str>,
) -> Result<Vec<(String, Vec<Record>)>, String> {
    scopes(connection)
        .map_err(|e| {
            format!(
                "cannot list the journal's scopes in {}: {e}",
                connection.shown()
            )
        })?
        .into_iter()
        .filter(|other| Some(other.as_str()) != except)
        .map(|other| read_journal(connection, &other, None).map(|records| (other, records)))
        .collect()
}

/// How often a scope that another writer keeps appending to is read again before its rows
/// and head are returned as they are (and then found not to match).
const READ_SCOPE_TRIES: usize = 20;

/// A scope's rows (`rows_sql`) and its head (`head_sql`, whose first two columns are the
/// length and the last chain hash), read in one call, as of one moment: the head is read
/// before and after the rows, and again while another writer's append (rows and head in one
/// transaction) committed between the two. Each statement sees its own snapshot, so rows
/// read while a writer appends to the same scope (another instance's apply) would otherwise
/// not match the head read after them, and the journal would look damaged.
pub(super) fn read_scope(
    connection: &Connection,
    scope: &str,
    rows_sql: &'static str,
    head_sql: &'static str,
) -> Result<(Vec<tokio_postgres::Row>, Option<tokio_postgres::Row>), DbError> {
    let key = scope.to_string();
    connection.call(move |client| {
        Box::pin(async move {
            let head_of = |row: &Option<tokio_postgres::Row>| {
                row.as_ref()
                    .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
            };
            let mut before = client.query_opt(head_sql, &[&key]).await?;
            let mut tries = 0;
            loop {
                let rows = client.query(rows_sql, &[&key]).await?;
                let after = client.query_opt(head_sql, &[&key]).await?;
                tries += 1;
                if head_of(&before) == head_of(&after) || tries == READ_SCOPE_TRIES {
                    return Ok((rows, after));
                }
                before = after;
            }
        })
    })
}

/// Each row's record (columns `seq, line, sha256, chain`), checked against its checksum and
/// linked to the row before, with the chain hash after it; and the scope's `head` (length,
/// last chain hash) checked against them. A break anywhere is an error that names the row of
/// the journal `named`.
pub(super) fn chained_records<R: serde::Serialize + serde::de::DeserializeOwned>(
    rows: &[tokio_postgres::Row],
    head: Option<(i64, String)>,
    named: &str,
) -> Result<Vec<(R, String)>, String> {
    let mut chain = Chain::default();
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.get(0);
        chain.expect(seq).map_err(|why| damaged(named, seq, why))?;
        let (line, sha256, link): (&str, &str, &str) = (row.get(1), row.get(2), row.get(3));
        let record = unsealed_record(line, sha256).map_err(|why| damaged(named, seq, &why))?;
        chain
            .link(sha256, link)
            .map_err(|why| damaged(named, seq, why))?;
        records.push((record, chain.last.clone()));
    }
    match head {
        Some((count, last)) if count != rows.len() as i64 || last != chain.last => {
            Err(damaged(named, count, HEAD_MISMATCH))
        }
        _ => Ok(records),
    }
}

/// How many records `scope`'s journal holds.
pub fn scope_records(connection: &Connection, scope: &str) -> Result<u64, String> {
    let key = scope.to_string();
    let count: i64 = connection
        .call(move |client| {
            Box::pin(async move {
                Ok(client
                    .query_one(
                        "SELECT count(*) FROM mkplan_journal WHERE scope = $1",
                        &[&key],
                    )
                    .await?
                    .get(0))
            })
        })
        .map_err(|e| format!("cannot read the journal of {scope}: {e}"))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// How long a writer that just took `scope` over must wait before it reads the live state to
/// settle the intents its journal holds open (`records`): until no operation they promise can
/// still be sent (each intent's send window, from the moment the database committed it) and
/// arrive (`grace`). A writer known to have stopped (`mkplan_writers_ended`: it released its
/// lease, or its process was found gone) sends nothing more. An open intent without a send
/// window (written before windows existed, or pushed from a folder) waits `grace` from now when
/// `reclaimed_live`: a lease was reclaimed from a holder that may still run. None: no wait.
pub fn settle_wait(
    connection: &Connection,
    scope: &str,
    records: &[Record],
    grace: Duration,
    reclaimed_live: bool,
) -> Result<Option<Duration>, String> {
    let mut windowed = Vec::new();
    let mut unbounded = false;
    for (_, record) in crate::apply::evidence::unsettled(records) {
        if let Record::Intent {
            step,
            by_hand: false,
            send_within_ms,
            ..
        } = record
        {
            match send_within_ms {
                Some(_) => windowed.push(step.clone()),
                None => unbounded = true,
            }
        }
    }
    wait_for_windows(
        connection,
        scope,
        windows_sql("mkplan_journal", "kind"),
        windowed,
        unbounded && reclaimed_live,
        grace,
    )
}

/// The latest end of the send windows of the intents in `table` (records tagged by `tag`) of
/// scope `$1` and steps `$2` whose writer is not known to have stopped, in ms from now, on the
/// database's clock (the commit time and now).
pub(super) fn windows_sql(table: &str, tag: &str) -> String {
    format!(
        "SELECT max(ceil(extract(epoch FROM written_at - clock_timestamp()) * 1000) \
             + (line::json->'record'->>'send_within_ms')::bigint)::bigint \
         FROM {table} WHERE scope = $1 \
         AND line::json->'record'->>'{tag}' = 'intent' \
         AND line::json->'record'->>'step' = ANY($2) \
         AND NOT EXISTS (SELECT 1 FROM mkplan_writers_ended e WHERE e.fence = {table}.fence)"
    )
}

/// How long to wait until the open intents of steps `windowed` are past their send windows
/// (`windows_sql`) and `grace`; at least `grace` when `unbounded` (an open
/// intent without a window, from a writer that may still run). None: no wait.
pub(super) fn wait_for_windows(
    connection: &Connection,
    scope: &str,
    windows_sql: String,
    windowed: Vec<String>,
    unbounded: bool,
    grace: Duration,
) -> Result<Option<Duration>, String> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let mut wait_ms: i64 = if unbounded { grace_ms } else { 0 };
    if !windowed.is_empty() {
        let key = scope.to_string();
        let row = connection
            .call(move |client| {
                Box::pin(async move { client.query_one(&windows_sql, &[&key, &windowed]).await })
            })
            .map_err(|e| format!("cannot read the journal of {scope}: {e}"))?;
        // None: every open intent's writer is known to have stopped.
        let open_for: Option<i64> = row.get(0);
        if let Some(open_for) = open_for {
            wait_ms = wait_ms.max(open_for.saturating_add(grace_ms));
        }
    }
    Ok((wait_ms > 0).then(|| Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))))
}

/// Why `scope`'s journal is not where it was last written (another database, or another WAL
/// timeline: a restore, a copy, a promoted replica), or None when it is, or nothing was
/// recorded yet, or this server cannot say (a standby).
pub fn incarnation_changed(connection: &Connection, scope: &str) -> Result<Option<String>, String> {
    let key = scope.to_string();
    let row = connection
        .call(move |client| {
            Box::pin(async move {
                client
                    .query_opt(
                        "SELECT incarnation, mkplan_incarnation() FROM mkplan_scopes WHERE scope = $1",
                        &[&key],
                    )
                    .await
            })
        })
        .map_err(|e| format!("cannot read the journal of {scope}: {e}"))?;
    let Some(row) = row else { return Ok(None) };
    Ok(moved(row.get(0), row.get(1)))
}

/// Why a journal last written in incarnation `recorded` is not where it was, now that the
/// database is `now` (see `incarnation_changed`).
pub(super) fn moved(recorded: Option<String>, now: Option<String>) -> Option<String> {
    match (recorded, now) {
        (Some(recorded), Some(now)) if recorded != now => Some(format!(
            "the database holding it is not the one it was last written in (database and WAL timeline {recorded}, now {now}): a restore from a backup, a copy, or a replica promoted after a failover, which may lack the latest records"
        )),
        _ => None,
    }
}

/// Records, under `lease`, that `scope`'s journal now lives in this database and timeline.
pub fn record_incarnation(
    connection: &Connection,
    scope: &str,
    lease: &Lease,
) -> Result<(), String> {
    record_incarnation_with(
        connection,
        "SELECT mkplan_scope_incarnation($1, $2, $3)",
        scope,
        lease,
    )
    .map_err(|e| format!("cannot write the journal of {scope}: {e}"))
}

/// Runs `sql`, which records under a lease where the journal of a scope lives, on `scope`
/// and `lease`'s id and fence.
pub(super) fn record_incarnation_with(
    connection: &Connection,
    sql: &'static str,
    scope: &str,
    lease: &Lease,
) -> Result<(), DbError> {
    let key = scope.to_string();
    let (id, fence) = lease.fence();
    connection.call(move |client| {
        Box::pin(async move { client.execute(sql, &[&key, &id, &fence]).await.map(|_| ()) })
    })
}
