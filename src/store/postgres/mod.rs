//! The PostgreSQL store: one journal, one audit trail and one set of leases per backend
//! identity (a scope), shared by every operator and CI runner that reaches the database.
//!
//! The rest of mkplan is synchronous about its journal (an append returns once the record is
//! durable), so the database client runs on a runtime of its own, on one thread: a call
//! blocks its caller until the database has answered, from any thread, inside or outside the
//! command's own runtime.

mod audit;
mod connect;
mod group;
mod journal;
mod lease;
mod transfer;
pub mod witness;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::Client;

pub use audit::{AuditQueue, PgAudit, read_audit};
pub use connect::{Database, WITHHELD, redacted};
pub use group::{
    GroupLease, GroupPush, group_holders, group_scope, group_scopes, host_of, push_group,
    read_group_journal, read_group_scope, verify_group_journals,
};
pub use journal::{
    PgJournal, incarnation_changed, other_scopes, read_journal, record_incarnation, remember,
    scope_records, scopes, seen, settle_wait,
};
pub use lease::{Lease, LeaseInfo, Request as LeaseRequest, Unlocked, holders, unlock};
pub use transfer::{Push, journal_lines, push};

/// The schema versions this mkplan knows, in order; each entry is applied in one transaction.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("schema.sql")),
    (2, include_str!("schema_v2.sql")),
    (3, include_str!("schema_v3.sql")),
    (4, include_str!("schema_v4.sql")),
];

/// The schema version this mkplan writes.
pub const SCHEMA_VERSION: i32 = 4;

/// How long one call may take before it counts as a lost connection.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong with a call.
#[derive(Debug)]
pub enum DbError {
    /// The connection broke, or the call timed out: it may or may not have taken effect.
    Lost(String),
    /// This writer's lease is gone: another writer holds the instances now.
    Fenced(String),
    /// The database refused the call.
    Refused(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Lost(why) => write!(f, "the connection to the database was lost: {why}"),
            Self::Fenced(why) => write!(f, "{why}"),
            Self::Refused(why) => write!(f, "{why}"),
        }
    }
}

impl DbError {
    fn from_pg(error: &tokio_postgres::Error) -> Self {
        if let Some(db) = error.as_db_error() {
            let message = db.message().to_string();
            return if db.code().code() == "MKP01" {
                Self::Fenced(message)
            } else {
                Self::Refused(match db.hint() {
                    Some(hint) => format!("{message} ({hint})"),
                    None => message,
                })
            };
        }
        // Anything but the server's own answer: the socket, TLS, a closed client.
        Self::Lost(error.to_string())
    }
}

/// A connection to the store's database, with the runtime its client runs on.
pub struct Connection {
    runtime: Option<tokio::runtime::Runtime>,
    database: Database,
    client: Mutex<Option<Arc<Client>>>,
}

impl Connection {
    /// Connects and brings the schema up to date (refusing a newer one).
    pub fn open(database: &Database) -> Result<Arc<Self>, String> {
        let connection = Self::open_to_read(database)?;
        connection.migrate()?;
        Ok(connection)
    }

    /// Connects, leaving the schema as it is: to read a database this command does not keep
    /// its journal in (a witness, `witness`), which its users may run an older mkplan on. The
    /// journal's tables are the first schema version's.
    pub fn open_to_read(database: &Database) -> Result<Arc<Self>, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mkplan-postgres")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the database client: {e}"))?;
        let connection = Arc::new(Self {
            runtime: Some(runtime),
            database: database.clone(),
            client: Mutex::new(None),
        });
        connection
            .call(|client| Box::pin(async move { Ok(client.is_closed()) }))
            .map_err(|e| format!("cannot reach {}: {e}", database.shown()))?;
        Ok(connection)
    }

    /// The database, as messages show it (never with its password).
    pub fn shown(&self) -> String {
        self.database.shown()
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the connection")
    }

    /// The client, connecting (again) when there is none or it closed.
    fn client(&self) -> Result<Arc<Client>, DbError> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let database = self.database.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime().spawn(async move {
            let _ = tx.send(database.connect().await);
        });
        let client = Arc::new(
            rx.recv()
                .map_err(|_| DbError::Lost("the database client stopped".into()))?
                .map_err(DbError::Lost)?,
        );
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs `work` with the client on the database runtime and waits for it.
    pub fn call<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(
                Arc<Client>,
            ) -> std::pin::Pin<
                Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send>,
            > + Send
            + 'static,
    {
        let client = self.client()?;
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime().spawn(async move {
            let result = match tokio::time::timeout(CALL_TIMEOUT, work(client)).await {
                Ok(result) => result.map_err(|e| DbError::from_pg(&e)),
                Err(_) => Err(DbError::Lost(format!(
                    "no answer within {} s",
                    CALL_TIMEOUT.as_secs()
                ))),
            };
            let _ = tx.send(result);
        });
        rx.recv()
            .map_err(|_| DbError::Lost("the database client stopped".into()))?
    }

    /// Spawns `work` on the database runtime without waiting (the lease's renewals).
    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.runtime().spawn(work);
    }

    /// Applies the migrations the database lacks; refuses a database whose schema is newer
    /// than this mkplan knows.
    fn migrate(&self) -> Result<(), String> {
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        let shown = self.shown();
        let result = self.call(move |client| {
            Box::pin(async move {
                // One migrator at a time, whoever else starts at once.
                client
                    .batch_execute("SELECT pg_advisory_lock(7250414170541209)")
                    .await?;
                let result = migrate_locked(&client).await;
                client
                    .batch_execute("SELECT pg_advisory_unlock(7250414170541209)")
                    .await?;
                result
            })
        });
        match result {
            Ok(version) if version > known => Err(format!(
                "the database {shown} holds mkplan schema version {version}, newer than this mkplan knows ({known}): a newer mkplan wrote it. Use that version of mkplan; this one changes nothing there"
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("cannot prepare the database {shown}: {e}")),
        }
    }
}

/// The schema's version after migrating (or the newer one found, untouched).
async fn migrate_locked(client: &Client) -> Result<i32, tokio_postgres::Error> {
    let exists = client
        .query_one("SELECT to_regclass('mkplan_schema') IS NOT NULL", &[])
        .await?
        .get::<_, bool>(0);
    let mut version: i32 = if exists {
        client
            .query_one("SELECT coalesce(max(version), 0) FROM mkplan_schema", &[])
            .await?
            .get(0)
    } else {
        0
    };
    for (number, sql) in MIGRATIONS {
        if *number <= version {
            continue;
        }
        if let Err(error) = client
            .batch_execute(&format!("BEGIN; {sql}; COMMIT;"))
            .await
        {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(error);
        }
        version = *number;
    }
    Ok(version)
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Dropping a runtime inside another's context would panic; this one ends on its own.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
