//! Where mkplan keeps its journal, its lock and its audit trail (`--state`, `MKPLAN_STATE`):
//! a state folder on this machine (the file store), or a PostgreSQL database that a team
//! shares (`postgres://…`). Every command works on both; the records and their meaning are
//! the same. A database keys everything by the backend's identity (a scope) and locks per
//! service instance, so one database serves many fleets and applies on different instances
//! run at once.

pub mod files;
pub mod postgres;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::apply::audit::{self, Audit};
use crate::apply::group_archive;
use crate::apply::journal::{Journal, Record};
use crate::apply::lock::{self, Holder, StateLock};
use crate::error::{Error, Result};
use postgres::{Connection, Database, Lease, LeaseInfo};

/// The state store named by `--state`.
#[derive(Clone, Debug)]
pub enum Store {
    /// A state folder (the default `.mkplan`).
    Files(PathBuf),
    /// A PostgreSQL database.
    Postgres(Box<Database>),
}

/// How long a database lease lasts without renewal, unless `MKPLAN_LEASE_TTL_S` says.
const LEASE_TTL_DEFAULT: Duration = Duration::from_secs(60);

/// libpq's connection keywords, for telling a `key=value` connection string from a folder.
const CONNINFO_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "sslmode",
    "service",
    "application_name",
    "connect_timeout",
    "options",
    "target_session_attrs",
];

/// The keywords of `text` when it is a libpq `key=value …` connection string (its first
/// word a libpq keyword followed by `=`), joined for a message; `None` for anything else.
fn conninfo_keys(text: &str) -> Option<String> {
    let keys: Vec<&str> = text
        .split_whitespace()
        .filter_map(|word| word.split_once('=').map(|(key, _)| key.trim()))
        .filter(|key| CONNINFO_KEYWORDS.contains(key))
        .collect();
    let first = text.trim_start().split(['=', ' ']).next()?.trim();
    CONNINFO_KEYWORDS.contains(&first).then(|| {
        keys.iter()
            .map(|k| format!("{k}=…"))
            .collect::<Vec<_>>()
            .join(" ")
    })
}

impl Store {
    /// `postgres://…` or `postgresql://…` is a database; a libpq `key=value` connection string
    /// is refused; anything else is a folder.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Database::parse(text, |name| std::env::var(name).ok())
                .map(|db| Self::Postgres(Box::new(db)))
        } else if lower.starts_with("postgres:") || lower.starts_with("postgresql:") {
            // A URL that lost its slashes is a typo, never a folder to make.
            Err(format!(
                "--state {}: a PostgreSQL URL begins postgres:// (postgres://USER@HOST:PORT/DATABASE)",
                postgres::redacted(&text.replacen(':', "://", 1))
            ))
        } else if let Some(keys) = conninfo_keys(text) {
            // libpq's other form: never a folder (its name would carry the password into
            // messages and journal heads), and never shown.
            Err(format!(
                "--state: a libpq connection string ({keys}), which mkplan does not read (its value is not shown: it may hold a password). Write it as postgres://USER@HOST:PORT/DATABASE, the password in PGPASSWORD or ~/.pgpass"
            ))
        } else if lower.contains("://") {
            Err(format!(
                "--state {}: mkplan keeps its state in a folder or in PostgreSQL (postgres://USER@HOST:PORT/DATABASE)",
                postgres::redacted(text)
            ))
        } else {
            Ok(Self::Files(PathBuf::from(text)))
        }
    }

    /// The store as a command line names it (`--state …`), never with a password.
    pub fn shown(&self) -> String {
        match self {
            Self::Files(dir) => dir.display().to_string(),
            Self::Postgres(database) => database.shown(),
        }
    }

    /// The state folder, for the file store.
    pub fn folder(&self) -> Option<&Path> {
        match self {
            Self::Files(dir) => Some(dir),
            Self::Postgres(_) => None,
        }
    }

    /// Where the journal about `scope` is, as messages name it.
    pub fn journal_named(&self, scope: &str) -> String {
        match self {
            Self::Files(dir) => format!("the journal in {}", dir.display()),
            Self::Postgres(database) => {
                format!("the journal of {scope} in {}", database.shown())
            }
        }
    }

    fn connect(database: &Database) -> Result<Arc<Connection>> {
        Connection::open(database).map_err(Error::Other)
    }

    /// The records about `scope` (the backend's identity), read without writing anything;
    /// with `instances`, a database gives those about them and the runs' own.
    pub fn read_journal(&self, scope: &str, instances: Option<&[String]>) -> Result<Vec<Record>> {
        match self {
            Self::Files(dir) => files::read_journal(dir),
            Self::Postgres(database) => {
                let connection = Self::connect(database)?;
                let mut records =
                    postgres::read_journal(&connection, scope, instances).map_err(Error::Unsafe)?;
                if let Some(record) = rolled_back(&connection, scope)? {
                    records.push(record);
                }
                Ok(records)
            }
        }
    }

    /// A database's other scopes as witnesses, added to `found`: one service instance reached
    /// another way (another endpoint of the service) is another backend identity, and so
    /// another scope, whose rewraps `scope`'s journal never heard of. Per instance, the
    /// rewraps each other scope's records say were sent and never answered, or completed, in a
    /// rotation not closed there; a scope that cannot be read is named (it may hold one).
    /// Nothing for a folder: its one journal holds every backend's records.
    pub fn other_scopes(&self, scope: &str, found: &mut crate::model::OtherFolders) {
        let Self::Postgres(database) = self else {
            return;
        };
        let read = Self::connect(database)
            .map_err(|e| e.to_string())
            .and_then(|connection| postgres::other_scopes(&connection, scope));
        let shown = self.shown();
        match read {
            Ok(scopes) => {
                for (other, records) in scopes {
                    for (instance, rewraps) in
                        crate::apply::evidence::rewraps_on_any_backend(&records)
                    {
                        found
                            .rewraps
                            .entry(instance)
                            .or_default()
                            .extend(rewraps.into_iter().map(|(backend, rewrap)| {
                                crate::model::FolderRewrap {
                                    state_dir: shown.clone(),
                                    scope: Some(other.clone()),
                                    backend,
                                    rewrap,
                                }
                            }));
                    }
                }
            }
            Err(why) => found.unread.push(crate::model::UnreadFolder {
                state_dir: format!("{shown} (its scopes other than {scope})"),
                head: "(none: the database's own records)".into(),
                why,
                instances: None,
            }),
        }
    }

    /// Takes the lock (a folder's) or the lease (the database's, on `instances` of `scope`)
    /// and opens the journal for appending: what every command that writes starts with.
    pub fn writer(&self, scope: &str, instances: &[String], command: &str) -> Result<Writer> {
        let holder = holder();
        match self {
            Self::Files(dir) => {
                // A folder others could write is unsafe evidence (exit 3), as on every read.
                crate::apply::state_dir::prepare(dir).map_err(Error::Unsafe)?;
                let lock = lock::acquire(dir, &holder).map_err(Error::Other)?;
                let journal = files::open_journal(dir)?;
                Ok(Writer {
                    journal,
                    held: Held::Folder(dir.clone(), lock),
                })
            }
            Self::Postgres(database) => {
                let connection = Self::connect(database)?;
                let lease = Lease::take(
                    &connection,
                    postgres::LeaseRequest {
                        id: &holder.lock_id,
                        scope,
                        instances: instances.to_vec(),
                        command,
                        holder: user_name(),
                        host: holder.host.clone(),
                        pid: holder.pid,
                        ttl: lease_ttl()?,
                    },
                )
                .map_err(Error::Other)?;
                for gone in &lease.reclaimed {
                    eprintln!(
                        "Reclaimed {}: its process is gone from this machine, or stopped renewing it until it expired (killed, paused or cut off); it can write nothing more. What it left unsettled is settled from the live state.",
                        gone.describe()
                    );
                }
                let records = postgres::read_journal(&connection, scope, Some(instances))
                    .map_err(Error::Unsafe)?;
                // A writer that stopped (paused, cut off) may still send what it journaled,
                // within each intent's send window, and a request sent may take a while to
                // arrive: wait until none can, so that the live state read next shows what
                // it did. A writer that released its lease, or whose process is gone from this
                // machine, sends nothing more.
                let reclaimed_live = lease.reclaimed.iter().any(|l| !l.holder_gone());
                let wait = postgres::settle_wait(
                    &connection,
                    scope,
                    &records,
                    reclaim_grace()?,
                    reclaimed_live,
                )
                .map_err(Error::Unsafe)?;
                if let Some(wait) = wait {
                    eprintln!(
                        "Waiting {} s before reading the live state: an earlier writer left operations unsettled, and until then one it journaled may still be sent or on its way to the service (each intent's send window, then MKPLAN_RECLAIM_GRACE_S).",
                        wait.as_secs_f64().ceil()
                    );
                    std::thread::sleep(wait);
                }
                let rolled_back = rolled_back(&connection, scope)?;
                let audit_queue = postgres::AuditQueue::default();
                let mut journal = Journal::shared(
                    records,
                    Box::new(postgres::PgJournal::new(
                        connection.clone(),
                        scope,
                        Some(&lease),
                        audit_queue.clone(),
                    )),
                );
                // Journaled, so that every later read of the database knows too: nothing
                // before it is evidence. Then the journal's new home is recorded.
                if let Some(record) = rolled_back {
                    journal
                        .append(record)
                        .map_err(|e| Error::Unsafe(e.to_string()))?;
                }
                postgres::record_incarnation(&connection, scope, &lease).map_err(Error::Unsafe)?;
                Ok(Writer {
                    journal,
                    held: Held::Lease {
                        connection,
                        scope: scope.to_string(),
                        lease: Box::new(lease),
                        audit_queue,
                    },
                })
            }
        }
    }

    /// Releases a lock or lease left by a process that is gone, by its exact id.
    pub fn unlock(&self, id: &str) -> Result<String> {
        match self {
            Self::Files(dir) => {
                lock::release(dir, id).map_err(Error::Other)?;
                Ok(format!("Lock {id} on {} released.", dir.display()))
            }
            Self::Postgres(database) => {
                let connection = Self::connect(database)?;
                match postgres::unlock(&connection, id).map_err(|e| Error::Other(e.to_string()))? {
                    postgres::Unlocked::Released(gone) => Ok(format!(
                        "Released {} in {}: it had expired, or its process is gone from this machine.",
                        gone.describe(),
                        connection.shown()
                    )),
                    postgres::Unlocked::Live(live) => Err(Error::Other(format!(
                        "{} in {} is live: its process renews it, so it may still have a request on its way to the service, and whoever took over would settle that request as never sent. mkplan never releases a live lease. Stop that process; its lease then expires by itself (or, on this machine, is reclaimed at once)",
                        live.describe(),
                        connection.shown()
                    ))),
                    postgres::Unlocked::Missing => Err(Error::Other(format!(
                        "no lease {id} in {}: it was released or reclaimed already (`mkplan status` shows the leases held)",
                        connection.shown()
                    ))),
                }
            }
        }
    }

    /// The leases held on `scope` (a folder has one lock, shown by its holder file).
    pub fn holders(&self, scope: &str) -> Result<Vec<LeaseInfo>> {
        match self {
            Self::Files(dir) => Ok(lock::holder_of(dir)
                .into_iter()
                .map(|h| LeaseInfo {
                    id: h.lock_id,
                    fence: 0,
                    command: "apply".into(),
                    holder: String::new(),
                    host: h.host,
                    pid: i32::try_from(h.pid).unwrap_or(i32::MAX),
                    started: h.started,
                    expires: "when its process ends".into(),
                    instances: vec!["every instance".into()],
                    host_id: String::new(),
                })
                .collect()),
            Self::Postgres(database) => {
                let connection = Self::connect(database)?;
                postgres::holders(&connection, scope).map_err(|e| Error::Other(e.to_string()))
            }
        }
    }

    /// Checks every audit trail the store holds, and that none lost what its journal
    /// anchored; then every domain group journal (its seals or checksums, its chain, its
    /// head): one line per trail and per group journal.
    pub fn audit_verify(&self) -> Result<Vec<std::result::Result<String, String>>> {
        match self {
            Self::Files(dir) => {
                let key = files::for_reading(dir)?;
                let mut results = group_archive::verify_folder(dir, key.as_ref());
                // A folder of domain group journals alone (a pulled one, say) has no HPCS
                // journal to anchor a trail: unless mkplan left one there (its head says).
                let hpcs = ["journal.jsonl", "audit.jsonl"]
                    .iter()
                    .any(|file| dir.join(file).exists())
                    || key
                        .as_ref()
                        .and_then(|k| k.head_path(dir))
                        .is_some_and(|head| head.exists());
                if hpcs || results.is_empty() {
                    let path = dir.join("audit.jsonl");
                    let records = files::read_journal(dir)?;
                    results.insert(
                        0,
                        verify_one(
                            &format!("audit trail {}", path.display()),
                            audit::verify_anchored(&path, &records),
                            &records,
                        ),
                    );
                }
                Ok(results)
            }
            Self::Postgres(database) => {
                let connection = Self::connect(database)?;
                let scopes =
                    postgres::scopes(&connection).map_err(|e| Error::Other(e.to_string()))?;
                let mut results = Vec::new();
                for scope in scopes {
                    let named = format!("audit trail of {scope} in {}", connection.shown());
                    // A database holds a journal per scope; each anchors its own trail.
                    let outcome =
                        postgres::read_journal(&connection, &scope, None).and_then(|records| {
                            let text = postgres::read_audit(&connection, &scope)?;
                            Ok((audit::verify_text_anchored(&text, &records), records))
                        });
                    results.push(match outcome {
                        Ok((verified, records)) => verify_one(&named, verified, &records),
                        Err(why) => Err(format!("{named}: {why}")),
                    });
                }
                results.extend(postgres::verify_group_journals(&connection)?);
                Ok(results)
            }
        }
    }
}

/// The record that says `scope`'s journal may have lost records: it holds fewer than this
/// machine saw it hold, or it lives in another database or on another WAL timeline than it was
/// last written in (a restore from an older backup, a copy, a replica promoted after a
/// failover). Nothing before it is evidence.
fn rolled_back(connection: &Connection, scope: &str) -> Result<Option<Record>> {
    let found = postgres::scope_records(connection, scope).map_err(Error::Unsafe)?;
    let at = Some(crate::apply::journal::utc_now());
    if let Some(seen) = postgres::seen(connection, scope).map_err(Error::Unsafe)?
        && found < seen
    {
        return Ok(Some(Record::RolledBack {
            expected: seen,
            found,
            at,
            why: None,
        }));
    }
    let moved = postgres::incarnation_changed(connection, scope).map_err(Error::Unsafe)?;
    Ok(moved.map(|why| Record::RolledBack {
        expected: found,
        found,
        at,
        why: Some(why),
    }))
}

fn verify_one(
    named: &str,
    verified: std::result::Result<(audit::Verified, audit::Anchored), String>,
    records: &[Record],
) -> std::result::Result<String, String> {
    // The journal that anchors the trail was itself cut back: the trail may have been cut
    // with it, and nothing here can tell.
    if let Some(Record::RolledBack {
        expected,
        found,
        why,
        ..
    }) = records.last()
    {
        return Err(format!(
            "{named}: cannot be vouched for: the journal that anchors it was cut back or replaced ({}). Keep both for investigation",
            why.clone().unwrap_or_else(|| format!(
                "mkplan had left it with {expected} records and found {found}"
            ))
        ));
    }
    match verified {
        Ok((verified, anchored)) if anchored.unauthenticated > 0 => Err(format!(
            "{named}: its chain holds ({} entries), but {} of the journal's anchors of it are not authenticated (see `mkplan plan` for why), so the trail cannot be vouched for: it may have been replaced",
            verified.entries, anchored.unauthenticated
        )),
        Ok((verified, anchored)) => {
            let mut shown = named.to_string();
            shown[..1].make_ascii_uppercase();
            Ok(format!(
                "{shown} is intact: {} entries, each linked to the one before; the journal's records anchor the first {} of them.",
                verified.entries, anchored.entries,
            ))
        }
        Err(broken) => Err(format!("{named} is broken: {broken}")),
    }
}

/// How long a request may take to reach the service and take effect, unless
/// `MKPLAN_RECLAIM_GRACE_S` says: the HTTP client's timeout for a command.
pub(crate) fn reclaim_grace() -> Result<Duration> {
    let default = Duration::from_millis(crate::backend::http::COMMAND_TIMEOUT_MS);
    match std::env::var("MKPLAN_RECLAIM_GRACE_S") {
        Err(_) => Ok(default),
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(seconds) if seconds <= 3_600 => Ok(Duration::from_secs(seconds)),
            _ => Err(Error::Other(format!(
                "MKPLAN_RECLAIM_GRACE_S={}: give whole seconds from 0 to 3600 (how long a request the previous holder sent may still take to reach the service)",
                crate::quote::bare(&text)
            ))),
        },
    }
}

/// `MKPLAN_LEASE_TTL_S`, else a minute.
pub(crate) fn lease_ttl() -> Result<Duration> {
    match std::env::var("MKPLAN_LEASE_TTL_S") {
        Err(_) => Ok(LEASE_TTL_DEFAULT),
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(seconds) if (1..=86_400).contains(&seconds) => Ok(Duration::from_secs(seconds)),
            _ => Err(Error::Other(format!(
                "MKPLAN_LEASE_TTL_S={}: give whole seconds from 1 to 86400 (how long a lease outlives its last renewal)",
                crate::quote::bare(&text)
            ))),
        },
    }
}

/// Who runs this process: `USER`, else `LOGNAME`, else the password database's name for the
/// effective user id, else `uid N`.
pub(crate) fn user_name() -> String {
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(name) = from_env("USER").or_else(|| from_env("LOGNAME")) {
        return name;
    }
    // SAFETY: geteuid cannot fail; getpwuid returns null or a pointer to a static entry whose
    // name is a NUL-terminated string, read at once (no other thread here calls getpw*).
    unsafe {
        let uid = libc::geteuid();
        let entry = libc::getpwuid(uid);
        if !entry.is_null() && !(*entry).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*entry).pw_name)
                .to_string_lossy()
                .into_owned();
        }
        format!("uid {uid}")
    }
}

/// This process as a lock's or lease's holder.
pub fn holder() -> Holder {
    let mut id = [0u8; 8];
    let _ = getrandom::fill(&mut id);
    Holder {
        lock_id: hex::encode(id),
        host: host_name().unwrap_or_else(|| "unknown host".into()),
        pid: std::process::id(),
        started: crate::apply::journal::utc_now(),
    }
}

/// The kernel's name for this machine (`uname -n`), which is what other holders see; a
/// container's `/etc/hostname` may say something else.
fn host_name() -> Option<String> {
    let mut name = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length, which is what is passed.
    let result = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) };
    if result != 0 {
        return None;
    }
    let end = name.iter().position(|&b| b == 0)?;
    let name = String::from_utf8_lossy(&name[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// What a command that writes holds while it runs: the journal, open for appending, and the
/// folder's lock or the database lease that lets it write. Dropping it releases the lock.
pub struct Writer {
    pub journal: Journal,
    held: Held,
}

enum Held {
    Folder(PathBuf, #[allow(dead_code)] StateLock),
    Lease {
        connection: Arc<Connection>,
        scope: String,
        lease: Box<Lease>,
        /// Audit entries that go out with the journal's next batch.
        audit_queue: postgres::AuditQueue,
    },
}

impl Writer {
    /// The audit trail, opened for appending once it is checked against what the journal
    /// anchored: a trail whose anchored entries were removed is not extended.
    pub fn audit(&self) -> Result<Audit> {
        let (named, text) = match &self.held {
            Held::Folder(dir, _) => {
                let path = dir.join("audit.jsonl");
                (
                    format!("audit trail {}", path.display()),
                    audit::verify_anchored(&path, self.journal.records()),
                )
            }
            Held::Lease {
                connection, scope, ..
            } => (
                format!("the audit trail of {scope} in {}", connection.shown()),
                postgres::read_audit(connection, scope)
                    .and_then(|text| audit::verify_text_anchored(&text, self.journal.records())),
            ),
        };
        text.map_err(|broken| {
            Error::Unsafe(format!(
                "{named}: {broken}. Keep it and the journal for investigation (`mkplan audit verify`); nothing was sent"
            ))
        })?;
        match &self.held {
            Held::Folder(dir, _) => Audit::open(dir),
            Held::Lease {
                connection,
                scope,
                lease,
                audit_queue,
            } => Audit::shared(Box::new(postgres::PgAudit::new(
                connection.clone(),
                scope,
                Some(lease),
                audit_queue.clone(),
            ))),
        }
        .map_err(|e| Error::Unsafe(e.to_string()))
    }

    /// The lease, on a database.
    pub fn lease(&self) -> Option<&LeaseInfo> {
        match &self.held {
            Held::Folder(..) => None,
            Held::Lease { lease, .. } => Some(&lease.info),
        }
    }
}
