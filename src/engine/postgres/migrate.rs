//! Applying a tenant's pending migrations in as few round trips as the work allows:
//! the advisory lock and the history in one, each migration with its history row in
//! one more, inside a single transaction as the tenant's role. The history is
//! refinery's own table and rows, so refinery, `db status --check` and doctor read it
//! as if refinery had written it; refinery itself would take a dozen round trips a
//! tenant, which over a thousand tenants is most of the time a rollout takes.

use postgres::{Client, SimpleQueryMessage};
use refinery::Migration;

use super::sql::ident;
use crate::migrations::{DownScript, MigrationId, checksum_text};

/// refinery's history table.
const HISTORY_TABLE: &str = "refinery_schema_history";

/// Where a tenant's history is: in its database's search path, or in its schema.
pub fn history_table(schema: Option<&str>) -> String {
    match schema {
        Some(schema) => format!("{}.{HISTORY_TABLE}", ident(schema)),
        None => HISTORY_TABLE.to_string(),
    }
}

/// Takes the tenant's advisory lock (unless `lock_key` is `None`) and reads its
/// history, in one round trip. `None` when it has no history table yet; the lock is
/// held either way, as session locks outlive the failed statement.
pub fn lock_and_read(
    client: &mut Client,
    lock_key: Option<&str>,
    history: &str,
) -> Result<Option<Vec<MigrationId>>, postgres::Error> {
    let mut query = String::new();
    if let Some(key) = lock_key {
        query.push_str(&format!("SELECT pg_advisory_lock(hashtext({}));", literal(key)));
    }
    query.push_str(&format!(
        "SELECT version, name, checksum FROM {history} ORDER BY version"
    ));
    let messages = match client.simple_query(&query) {
        Ok(messages) => messages,
        Err(err) if err.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => return Ok(None),
        Err(err) => return Err(err),
    };
    let applied = messages
        .iter()
        .filter_map(|message| match message {
            // The lock's row has one column; the history's three.
            SimpleQueryMessage::Row(row) if row.len() == 3 => Some(row),
            _ => None,
        })
        .map(|row| {
            let checksum = row.get(2).unwrap_or_default();
            MigrationId {
                version: row.get(0).and_then(|v| v.parse().ok()).unwrap_or(0),
                name: row.get(1).unwrap_or_default().to_string(),
                checksum: checksum
                    .parse::<u64>()
                    .map(checksum_text)
                    .unwrap_or_else(|_| checksum.to_string()),
            }
        })
        .collect();
    Ok(Some(applied))
}

/// A migration that failed, and why; the transaction was rolled back.
pub struct Failed {
    pub migration: String,
    pub error: postgres::Error,
}

/// Applies `pending` in one transaction as `role` (in schema mode with `schema`
/// first in the search path), recording each in the history as refinery does, and
/// commits it, releasing the advisory lock in the same round trip. The COMMIT goes
/// on its own, after every migration has run: a command killed while a migration
/// waits leaves a transaction the server rolls back, never one that commits later.
/// Nothing is left applied when one fails; the lock is then still held.
pub fn apply(
    client: &mut Client,
    pending: &[&Migration],
    role: &str,
    schema: Option<&str>,
    history_exists: bool,
) -> Result<(), Failed> {
    let history = history_table(schema);
    let mut opening = format!("BEGIN; SET LOCAL ROLE {};", ident(role));
    if let Some(schema) = schema {
        opening.push_str(&format!(" SET LOCAL search_path TO {};", ident(schema)));
    }
    if !history_exists {
        opening.push_str(&format!(
            " CREATE TABLE IF NOT EXISTS {history} (version INT4 PRIMARY KEY, name VARCHAR(255), \
             applied_on VARCHAR(255), checksum VARCHAR(255));"
        ));
    }
    let applied_on = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    for (index, migration) in pending.iter().enumerate() {
        let mut step = if index == 0 {
            opening.clone()
        } else {
            String::new()
        };
        step.push_str(migration.sql().unwrap_or_default());
        step.push_str(&format!(
            "\n;INSERT INTO {history} (version, name, applied_on, checksum) VALUES ({}, {}, {}, {});",
            migration.version(),
            literal(migration.name()),
            literal(&applied_on),
            literal(&migration.checksum().to_string())
        ));
        if let Err(error) = client.batch_execute(&step) {
            // Leaves the session as it was: no transaction, the role reset.
            let _ = client.batch_execute("ROLLBACK");
            return Err(Failed {
                migration: format!("V{}__{}", migration.version(), migration.name()),
                error,
            });
        }
    }
    // What a migration SET for its session goes too, so the next step on this
    // pooled connection starts clean.
    commit(client)
}

/// Runs the down scripts `steps` in one transaction as `role`, each with the removal
/// of its history row, and commits only when all ran; the lock goes with the commit.
/// Nothing is undone when one fails; the lock is then still held.
pub fn undo(
    client: &mut Client,
    steps: &[&DownScript],
    role: &str,
    schema: Option<&str>,
) -> Result<(), Failed> {
    let history = history_table(schema);
    let mut opening = format!("BEGIN; SET LOCAL ROLE {};", ident(role));
    if let Some(schema) = schema {
        opening.push_str(&format!(" SET LOCAL search_path TO {};", ident(schema)));
    }
    for (index, step) in steps.iter().enumerate() {
        let mut batch = if index == 0 {
            opening.clone()
        } else {
            String::new()
        };
        batch.push_str(&step.sql);
        batch.push_str(&format!(
            "\n;DELETE FROM {history} WHERE version = {};",
            step.version
        ));
        if let Err(error) = client.batch_execute(&batch) {
            let _ = client.batch_execute("ROLLBACK");
            return Err(Failed {
                migration: step.file_name(),
                error,
            });
        }
    }
    crate::ops::recovery::crash_point("rollback:before-commit");
    commit(client)
}

/// Commits, resets what the scripts SET for the session, and releases the lock.
fn commit(client: &mut Client) -> Result<(), Failed> {
    client
        .batch_execute("COMMIT; RESET ALL; SELECT pg_advisory_unlock_all()")
        .map_err(|error| {
            let _ = client.batch_execute("ROLLBACK");
            Failed {
                migration: "COMMIT".to_string(),
                error,
            }
        })
}

/// Releases the advisory locks this session took.
pub fn unlock(client: &mut Client) -> Result<(), postgres::Error> {
    client.batch_execute("SELECT pg_advisory_unlock_all()")
}

/// A SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_double_their_quotes_and_schemas_qualify_the_history() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(history_table(None), "refinery_schema_history");
        assert_eq!(
            history_table(Some("tenant_a")),
            "\"tenant_a\".refinery_schema_history"
        );
    }
}
