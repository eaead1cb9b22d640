//! Leases: one writer at a time per (scope, service instance), across every machine that
//! reaches the database. A lease is renewed while its process runs; one that stops being
//! renewed (its process was killed, or paused) expires and is reclaimed by the next writer.
//! Each lease takes a new, larger fencing token, and every journal and audit write names its
//! lease and token: a writer whose lease was reclaimed cannot write again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Connection, DbError};

/// The shortest send window (`Lease::send_window`).
pub const SEND_WINDOW_MIN: Duration = Duration::from_secs(10);

/// A lease's holder and terms, as `status` and refusals show them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LeaseInfo {
    pub id: String,
    pub fence: i64,
    pub command: String,
    pub holder: String,
    pub host: String,
    pub pid: i32,
    pub started: String,
    pub expires: String,
    pub instances: Vec<String>,
    /// The holder's machine and boot (`host_id()`).
    #[serde(skip)]
    pub host_id: String,
}

impl LeaseInfo {
    fn from_row(row: &tokio_postgres::Row, at: usize) -> Self {
        Self {
            id: row.get(at),
            fence: row.get(at + 1),
            command: row.get(at + 2),
            holder: row.get(at + 3),
            host: row.get(at + 4),
            pid: row.get(at + 5),
            started: row.get(at + 6),
            expires: row.get(at + 7),
            instances: row.get(at + 8),
            host_id: row.get(at + 9),
        }
    }

    /// True when the holder ran on this machine and its process is gone.
    pub fn holder_gone(&self) -> bool {
        let here = host_id();
        !here.is_empty() && self.host_id == here && !process_alive(self.pid)
    }

    /// "lease ID (apply by USER on HOST, process PID, since T, expires T) on INSTANCES".
    pub fn describe(&self) -> String {
        format!(
            "lease {} ({} by {} on {}, process {}, since {}; expires {} unless renewed) on {}",
            self.id,
            self.command,
            crate::quote::bare(&self.holder),
            crate::quote::bare(&self.host),
            self.pid,
            self.started,
            self.expires,
            self.instances.join(", ")
        )
    }
}

/// The columns of a lease, times as RFC 3339 UTC.
const COLUMNS: &str = "id, fence, command, holder, host, pid, \
    to_char(started AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
    to_char(expires AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), instances, host_id";

/// A lease this process holds; released when dropped.
pub struct Lease {
    connection: Arc<Connection>,
    pub info: LeaseInfo,
    /// Leases this one reclaimed: their holders stopped renewing them.
    pub reclaimed: Vec<LeaseInfo>,
    /// Its term: renewed every third of it.
    pub ttl: Duration,
    /// Set when a renewal found the lease gone.
    lost: Arc<AtomicBool>,
    /// Dropping it stops the renewals.
    _renewing: tokio::sync::oneshot::Sender<()>,
}

pub struct Request<'a> {
    pub id: &'a str,
    pub scope: &'a str,
    pub instances: Vec<String>,
    pub command: &'a str,
    pub holder: String,
    pub host: String,
    pub pid: u32,
    pub ttl: Duration,
}

impl Lease {
    /// Takes the lease, or says who holds the instances. A lease held by a process that is
    /// gone from this very machine (it crashed, or was killed) is reclaimed at once.
    pub fn take(connection: &Arc<Connection>, request: Request<'_>) -> Result<Self, String> {
        let mut reclaimed = Vec::new();
        let mut attempt = 0;
        let info = loop {
            attempt += 1;
            let outcome = take_once(connection, &request)?;
            for expired in &outcome.reclaimed {
                if expired.holder_gone() {
                    writer_gone(connection, request.scope, expired.fence).map_err(|e| {
                        format!("cannot take a lease in {}: {e}", connection.shown())
                    })?;
                }
            }
            reclaimed.extend(outcome.reclaimed);
            if let Some(info) = outcome.taken {
                break info;
            }
            let gone: Vec<LeaseInfo> = outcome
                .held
                .iter()
                .filter(|h| h.holder_gone())
                .cloned()
                .collect();
            if attempt == 1 && !gone.is_empty() && gone.len() == outcome.held.len() {
                for lease in gone {
                    release(connection, &lease, true).map_err(|e| {
                        format!("cannot take a lease in {}: {e}", connection.shown())
                    })?;
                    reclaimed.push(lease);
                }
                continue;
            }
            let holders: Vec<String> = outcome.held.iter().map(LeaseInfo::describe).collect();
            return Err(format!(
                "another writer holds instances of {} in {}: {}. Wait for it to finish. If its process is gone, its lease is reclaimed once it expires (it is renewed only while the process runs), or release it now with `mkplan unlock {} --state {}`",
                request.scope,
                connection.shown(),
                holders.join("; "),
                outcome.held.first().map_or("ID", |h| h.id.as_str()),
                connection.shown()
            ));
        };
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        connection.spawn(renew(
            connection.clone(),
            info.id.clone(),
            info.fence,
            request.ttl,
            lost.clone(),
            stopped,
        ));
        Ok(Self {
            connection: connection.clone(),
            info,
            reclaimed,
            ttl: request.ttl,
            lost,
            _renewing: stop,
        })
    }

    /// The lease and fencing token that every write names.
    pub fn fence(&self) -> (String, i64) {
        (self.info.id.clone(), self.info.fence)
    }

    /// How long after its intent this writer may still send an operation: twice the lease's
    /// term, and at least `SEND_WINDOW_MIN` (time for the read before a rewrap, and a retry).
    pub fn send_window(&self) -> Duration {
        (self.ttl * 2).max(SEND_WINDOW_MIN)
    }

    /// True once a renewal found the lease gone: another writer holds the instances.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Best effort: a lease not released expires (and its writer is then not known to
        // have stopped sending: takers wait out its intents' send windows).
        let _ = release(&self.connection, &self.info, false);
    }
}

struct Taken {
    taken: Option<LeaseInfo>,
    held: Vec<LeaseInfo>,
    reclaimed: Vec<LeaseInfo>,
}

fn take_once(connection: &Arc<Connection>, request: &Request<'_>) -> Result<Taken, String> {
    let mut instances: Vec<String> = request.instances.iter().map(|i| i.to_lowercase()).collect();
    instances.sort();
    instances.dedup();
    let ttl_ms = i64::try_from(request.ttl.as_millis()).unwrap_or(i64::MAX);
    let (id, scope, command, holder, host) = (
        request.id.to_string(),
        request.scope.to_string(),
        request.command.to_string(),
        request.holder.clone(),
        request.host.clone(),
    );
    let pid = i32::try_from(request.pid).unwrap_or(i32::MAX);
    let here = host_id();
    let rows = connection
        .call(move |client| {
            Box::pin(async move {
                client
                    .query(
                        &format!(
                            "SELECT outcome, {COLUMNS} FROM mkplan_lease_take($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                        ),
                        &[&id, &scope, &instances, &command, &holder, &host, &here, &pid, &ttl_ms],
                    )
                    .await
            })
        })
        .map_err(|e| format!("cannot take a lease in {}: {e}", connection.shown()))?;
    let mut taken = Taken {
        taken: None,
        held: Vec::new(),
        reclaimed: Vec::new(),
    };
    for row in &rows {
        let info = LeaseInfo::from_row(row, 1);
        match row.get::<_, &str>(0) {
            "reclaimed" => taken.reclaimed.push(info),
            "held" => taken.held.push(info),
            _ => taken.taken = Some(info),
        }
    }
    Ok(taken)
}

/// Ends one lease, if it still has that fence, and records that its writer sends nothing
/// more: it released the lease itself, or its process is `gone` from this machine.
fn release(connection: &Connection, lease: &LeaseInfo, gone: bool) -> Result<i32, DbError> {
    let (id, fence) = (lease.id.clone(), lease.fence);
    connection.call(move |client| {
        Box::pin(async move {
            Ok(client
                .query_one(
                    "SELECT mkplan_lease_release($1, $2, $3)",
                    &[&id, &fence, &gone],
                )
                .await?
                .get(0))
        })
    })
}

/// Records that the writer of an expired lease, reclaimed already, is gone from this machine.
fn writer_gone(connection: &Connection, scope: &str, fence: i64) -> Result<(), DbError> {
    let scope = scope.to_string();
    connection.call(move |client| {
        Box::pin(async move {
            client
                .execute("SELECT mkplan_writer_gone($1, $2)", &[&scope, &fence])
                .await
                .map(|_| ())
        })
    })
}

/// Removes one lease, if it still has that fence; its writer is not known to have stopped.
fn remove(connection: &Connection, lease: &LeaseInfo) -> Result<u64, DbError> {
    let (id, fence) = (lease.id.clone(), lease.fence);
    connection.call(move |client| {
        Box::pin(async move {
            client
                .execute(
                    "DELETE FROM mkplan_leases WHERE id = $1 AND fence = $2",
                    &[&id, &fence],
                )
                .await
        })
    })
}

/// Where a process id names one process: this boot of this kernel (its boot id, different on
/// every machine and every boot) and this process id namespace (`/proc/self/ns/pid`: containers
/// on one kernel share a boot id, not a pid namespace, unless they share the host's). Empty when
/// either cannot be read: then no lease is taken for gone before its expiry.
pub fn host_id() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let namespace = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if boot.is_empty() || namespace.is_empty() {
        return String::new();
    }
    format!("{boot}/{namespace}")
}

/// Whether a process with this id runs on this machine (a reused id counts as running).
fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Renews the lease every third of its term until `stopped`; a renewal that finds it gone
/// marks it lost and stops.
async fn renew(
    connection: Arc<Connection>,
    id: String,
    fence: i64,
    ttl: Duration,
    lost: Arc<AtomicBool>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            () = tokio::time::sleep(ttl / 3) => {}
        }
        let (key, connection) = (id.clone(), connection.clone());
        // The blocking call runs off this runtime's only worker, which must answer it.
        let renewed = tokio::task::spawn_blocking(move || {
            connection.call(move |client| {
                Box::pin(async move {
                    client
                        .execute(
                            "UPDATE mkplan_leases SET renewed = clock_timestamp(), \
                             expires = clock_timestamp() + $3::bigint * interval '1 millisecond' \
                             WHERE id = $1 AND fence = $2 AND expires > clock_timestamp()",
                            &[&key, &fence, &ttl_ms],
                        )
                        .await
                })
            })
        })
        .await;
        match renewed {
            Ok(Ok(0)) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Ok(Ok(_)) => {}
            // A lost connection: the next renewal tries again; the lease may expire meanwhile,
            // and then this writer's next write is refused.
            Ok(Err(DbError::Lost(_))) => {}
            Ok(Err(error)) => eprintln!("warning: cannot renew lease {id}: {error}"),
            Err(_) => {}
        }
    }
}

/// The leases held on `scope`.
pub fn holders(connection: &Connection, scope: &str) -> Result<Vec<LeaseInfo>, DbError> {
    let scope = scope.to_string();
    let rows = connection.call(move |client| {
        Box::pin(async move {
            client
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM mkplan_leases WHERE scope = $1 ORDER BY started"
                    ),
                    &[&scope],
                )
                .await
        })
    })?;
    Ok(rows.iter().map(|row| LeaseInfo::from_row(row, 0)).collect())
}

/// What `unlock` found.
pub enum Unlocked {
    Released(LeaseInfo),
    /// The lease is live: renewed within its term by a process that may run elsewhere.
    Live(LeaseInfo),
    Missing,
}

/// Removes the lease `id` if it expired, or if its holder ran on this machine and is gone.
/// A live lease is never removed: its holder may have a request on its way to the service,
/// which no journal can call back, and whoever took over would settle it as not sent.
pub fn unlock(connection: &Connection, id: &str) -> Result<Unlocked, DbError> {
    let key = id.to_string();
    let rows = connection.call(move |client| {
        Box::pin(async move {
            client
                .query(
                    &format!(
                        "SELECT {COLUMNS}, expires <= clock_timestamp() FROM mkplan_leases WHERE id = $1"
                    ),
                    &[&key],
                )
                .await
        })
    })?;
    let Some(row) = rows.first() else {
        return Ok(Unlocked::Missing);
    };
    let info = LeaseInfo::from_row(row, 0);
    let expired: bool = row.get(10);
    let gone = info.holder_gone();
    if !expired && !gone {
        return Ok(Unlocked::Live(info));
    }
    if gone {
        release(connection, &info, true)?;
    } else {
        remove(connection, &info)?;
    }
    Ok(Unlocked::Released(info))
}
