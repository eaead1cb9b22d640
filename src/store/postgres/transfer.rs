//! `state push` and `state pull`: a state folder's journal and audit trail into the database,
//! and a scope's records out of it, for archiving.

use super::{Connection, DbError};
use crate::apply::journal::SharedLine;

/// What a push brings into an empty scope.
pub struct Push {
    pub scope: String,
    pub lines: Vec<SharedLine>,
    /// The audit trail's lines, as written.
    pub audit: Vec<String>,
    pub audit_head: String,
    pub runs: u32,
}

/// Writes `push` into its scope in one transaction, refused when the scope holds anything.
pub fn push(connection: &Connection, push: Push) -> Result<u64, DbError> {
    let Push {
        scope,
        lines,
        audit,
        audit_head,
        runs,
    } = push;
    let mut texts = Vec::new();
    let mut sums = Vec::new();
    let mut instances = Vec::new();
    for line in lines {
        texts.push(line.line);
        sums.push(line.sha256);
        instances.push(line.instance);
    }
    let runs = i32::try_from(runs).unwrap_or(i32::MAX);
    let mut batch = [0u8; 16];
    let _ = getrandom::fill(&mut batch);
    let batch = hex::encode(batch);
    connection.call(move |client| {
        Box::pin(async move {
            let row = client
                .query_one(
                    "SELECT mkplan_push($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &scope,
                        &batch,
                        &texts,
                        &sums,
                        &instances,
                        &audit,
                        &audit_head,
                        &runs,
                    ],
                )
                .await?;
            Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or_default())
        })
    })
}

/// The lines of `scope`'s journal as stored (each the record and its checksum, unsealed).
pub fn journal_lines(connection: &Connection, scope: &str) -> Result<Vec<String>, DbError> {
    let scope = scope.to_string();
    connection.call(move |client| {
        Box::pin(async move {
            Ok(client
                .query(
                    "SELECT line FROM mkplan_journal WHERE scope = $1 ORDER BY seq",
                    &[&scope],
                )
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect())
        })
    })
}
