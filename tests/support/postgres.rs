//! The PostgreSQL store in tests: `MKPLAN_TEST_POSTGRES` names a server where the tests may
//! create databases (`scripts/with-postgres` starts a throwaway one and sets it; the README's
//! test command and `.ci/run` run under it). Each test that needs one gets a database of its
//! own. Without the variable the PostgreSQL tests are skipped with a message, except in CI,
//! where that fails.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

thread_local! {
    /// The store of workspaces created on this thread from now on (`None`: their folder).
    static STORE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The database URL workspaces created on this thread use, if any.
pub fn store() -> Option<String> {
    STORE.with(|s| s.borrow().clone())
}

/// Runs `scenario` with workspaces whose state is a fresh database; skipped without one.
pub fn run_on_postgres(scenario: fn()) {
    let Some(url) = database() else {
        return;
    };
    STORE.with(|s| *s.borrow_mut() = Some(url));
    let ran = std::panic::catch_unwind(scenario);
    STORE.with(|s| *s.borrow_mut() = None);
    if let Err(panic) = ran {
        std::panic::resume_unwind(panic);
    }
}

/// The server's URL, or `None` after saying once that the PostgreSQL tests are skipped.
fn server() -> Option<String> {
    match std::env::var("MKPLAN_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs the PostgreSQL tests: run them under scripts/with-postgres (MKPLAN_TEST_POSTGRES is unset)"
            );
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                // Straight to the process's stderr, past the test harness's capture.
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "PostgreSQL tests skipped: MKPLAN_TEST_POSTGRES is unset. Run `scripts/with-postgres cargo test` (it starts a throwaway cluster from Debian's postgresql package)"
                );
            });
            None
        }
    }
}

/// A new, empty database on the test server, as a URL; `None` when there is no server.
pub fn database() -> Option<String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let server = server()?;
    let name = format!(
        "mkplan_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    execute(&server, &format!("CREATE DATABASE {name}"));
    let (base, _) = server.rsplit_once('/').expect("a URL with a database");
    Some(format!("{base}/{name}"))
}

/// Runs `sql` (statements without results) on the database at `url`.
pub fn execute(url: &str, sql: &str) {
    try_column(url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The first column of every row of `sql`, as text.
pub fn column(url: &str, sql: &str) -> Vec<String> {
    try_column(url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `column`, or the database's error (a table mkplan has not made yet).
pub fn try_column(url: &str, sql: &str) -> Result<Vec<String>, String> {
    let sql = sql.to_string();
    let url = url.to_string();
    runtime().block_on(async move {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        let task = tokio::spawn(connection);
        let rows = client.simple_query(&sql).await;
        drop(client);
        let _ = task.await;
        Ok(rows
            .map_err(|e| e.to_string())?
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
            .collect())
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}
