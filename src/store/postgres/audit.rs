//! The audit trail in the database: the same hash-chained lines as `audit.jsonl`, appended
//! under a lease. The executor's step entries wait in an `AuditQueue` and go out with the
//! journal's next batch, in the same round trip (`PgJournal::append`): the journal, not the
//! audit trail, is what must be durable before a request leaves.

use std::sync::{Arc, Mutex};

use tokio_postgres::types::{ToSql, Type};

use super::Connection;
use super::journal::{batch_id, with_retries, write_failed};
use super::lease::Lease;
use crate::apply::audit::SharedAudit;
use crate::apply::journal::AuditHead;

/// The audit trail of `scope`, with the lines as written.
pub fn read_audit(connection: &Connection, scope: &str) -> Result<String, String> {
    let key = scope.to_string();
    let rows = connection
        .call(move |client| {
            Box::pin(async move {
                client
                    .query(
                        "SELECT line FROM mkplan_audit WHERE scope = $1 ORDER BY seq",
                        &[&key],
                    )
                    .await
            })
        })
        .map_err(|e| {
            format!(
                "cannot read the audit trail of {scope} in {}: {e}",
                connection.shown()
            )
        })?;
    let mut text = String::new();
    for row in &rows {
        text += row.get::<_, &str>(0);
        text.push('\n');
    }
    Ok(text)
}

/// One batch of audit entries, numbered for idempotent retries, waiting to be appended.
pub struct Pending {
    scope: String,
    lease: Option<String>,
    fence: Option<i64>,
    batch: String,
    time: i64,
    events: Vec<String>,
}

/// The audit entries a writer deferred, shared by its journal (which sends them with its next
/// batch) and its audit trail (which sends what is left when it syncs), and the trail's head
/// after the last batch sent.
#[derive(Default)]
pub struct Queued {
    pub pending: Vec<Pending>,
    pub head: Option<AuditHead>,
}

pub type AuditQueue = Arc<Mutex<Queued>>;

/// The statement that appends one batch of audit entries; one row: the trail's new head.
const APPEND: &str = "SELECT entries, head FROM mkplan_audit_append($1, $2, $3, $4, $5, $6)";

/// Appends `pending` with the client, in order, and returns the head after the last batch. The
/// statements are sent together (pipelined): one round trip for all of them.
pub async fn append_pending(
    client: &tokio_postgres::Client,
    pending: &[Pending],
) -> Result<Option<AuditHead>, tokio_postgres::Error> {
    let appends = pending.iter().map(|p| async move {
        let params: [(&(dyn ToSql + Sync), Type); 6] = [
            (&p.scope, Type::TEXT),
            (&p.lease, Type::TEXT),
            (&p.fence, Type::INT8),
            (&p.batch, Type::TEXT),
            (&p.time, Type::INT8),
            (&p.events, Type::TEXT_ARRAY),
        ];
        client.query_typed(APPEND, &params).await
    });
    let mut head = None;
    for rows in futures_util::future::join_all(appends).await {
        head = rows?.first().map(|row| AuditHead {
            entries: u64::try_from(row.get::<_, i64>(0)).unwrap_or_default(),
            head: row.get(1),
        });
    }
    Ok(head)
}

/// The audit trail of `scope`, written under a lease.
pub struct PgAudit {
    connection: Arc<Connection>,
    scope: String,
    lease: Option<(String, i64)>,
    queue: AuditQueue,
}

impl PgAudit {
    pub fn new(
        connection: Arc<Connection>,
        scope: &str,
        lease: Option<&Lease>,
        queue: AuditQueue,
    ) -> Self {
        Self {
            connection,
            scope: scope.to_string(),
            lease: lease.map(Lease::fence),
            queue,
        }
    }

    fn pending(&self, events: Vec<String>, time: u64) -> Pending {
        let (lease, fence) = self.lease.clone().unzip();
        Pending {
            scope: self.scope.clone(),
            lease,
            fence,
            batch: batch_id(),
            time: i64::try_from(time).unwrap_or(i64::MAX),
            events,
        }
    }

    /// Sends `pending` now, retrying a lost connection (each batch is written once).
    fn send(&self, pending: Vec<Pending>) -> Result<Option<AuditHead>, String> {
        let pending = Arc::new(pending);
        with_retries(|| {
            let pending = pending.clone();
            self.connection.call(move |client| {
                Box::pin(async move { append_pending(&client, &pending).await })
            })
        })
        .map_err(|failed| write_failed("audit entries", failed))
    }
}

impl SharedAudit for PgAudit {
    fn describe(&self) -> String {
        format!(
            "the audit trail of {} in {}",
            self.scope,
            self.connection.shown()
        )
    }

    fn defer(&mut self, events: Vec<String>, time: u64) {
        let pending = self.pending(events, time);
        lock(&self.queue).pending.push(pending);
    }

    fn flush(&mut self) -> Result<Option<AuditHead>, String> {
        let pending = std::mem::take(&mut lock(&self.queue).pending);
        let sent = if pending.is_empty() {
            None
        } else {
            self.send(pending)?
        };
        Ok(sent.or_else(|| lock(&self.queue).head.take()))
    }

    fn head(&mut self) -> Result<AuditHead, String> {
        let scope = self.scope.clone();
        self.connection
            .call(move |client| {
                Box::pin(async move {
                    let row = client
                        .query_opt(
                            "SELECT audit_entries, audit_head FROM mkplan_scopes WHERE scope = $1",
                            &[&scope],
                        )
                        .await?;
                    Ok(match row {
                        Some(row) => AuditHead {
                            entries: u64::try_from(row.get::<_, i64>(0)).unwrap_or_default(),
                            head: row.get(1),
                        },
                        None => AuditHead {
                            entries: 0,
                            head: crate::apply::audit::CHAIN_START.into(),
                        },
                    })
                })
            })
            .map_err(|e| format!("cannot read the audit trail's head: {e}"))
    }
}

pub fn lock(queue: &AuditQueue) -> std::sync::MutexGuard<'_, Queued> {
    queue
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
