//! Applying a MySQL tenant's pending migrations. MySQL commits every DDL statement
//! on its own, so a migration cannot be rolled back as a whole: each statement is
//! run and then recorded in the tenant's `tenantctl_migration_progress`, and only a
//! migration whose every statement ran gets its row in refinery's history table.
//! A migration that fails leaves the tenant at the last whole migration, with the
//! failing statement named; when it runs again, the statements recorded as done are
//! skipped as long as the file still starts with them, so the operator fixes the
//! failing statement (or the database) and runs `db migrate` again. Down scripts
//! (`db rollback`) run the same way, recorded under the negative of their version.

use mysql::Conn;
use mysql::prelude::Queryable;
use refinery::Migration;
use sha2::{Digest, Sha256};

use super::names::{ident, literal};
use crate::migrations::{DownScript, MigrationId, checksum_text};
use crate::sql_text::mysql_statements;

/// refinery's history table, with refinery's own columns.
pub const HISTORY_TABLE: &str = "refinery_schema_history";
/// Statements done of a migration not yet whole.
pub const PROGRESS_TABLE: &str = "tenantctl_migration_progress";

/// The tables tenantctl keeps in a tenant database; a move or a row count leaves
/// them out.
pub fn is_bookkeeping(table: &str) -> bool {
    table == HISTORY_TABLE || table == PROGRESS_TABLE
}

/// The key of a tenant's migration lock (`GET_LOCK` names are at most 64 chars).
fn lock_name(database: &str) -> String {
    super::names::fit(&format!("tenantctl:{database}"), 64)
}

/// Takes the tenant's migration lock, waiting for another run to finish; `false`
/// when it waited a day in vain.
pub fn lock(conn: &mut Conn, database: &str) -> Result<bool, mysql::Error> {
    let got: Option<Option<i64>> = conn.query_first(format!(
        "SELECT GET_LOCK({}, 86400)",
        literal(&lock_name(database))
    ))?;
    Ok(got.flatten() == Some(1))
}

pub fn unlock(conn: &mut Conn, database: &str) {
    let _ = conn.query_drop(format!("DO RELEASE_LOCK({})", literal(&lock_name(database))));
}

/// The tenant's history; `None` when it has no history table yet.
pub fn read(conn: &mut Conn, database: &str) -> Result<Option<Vec<MigrationId>>, mysql::Error> {
    let query = format!(
        "SELECT version, name, checksum FROM {}.{HISTORY_TABLE} ORDER BY version",
        ident(database)
    );
    let rows: Vec<(i64, String, String)> = match conn.query(query) {
        Ok(rows) => rows,
        Err(mysql::Error::MySqlError(e)) if e.code == 1146 => return Ok(None),
        Err(err) => return Err(err),
    };
    Ok(Some(
        rows.into_iter()
            .map(|(version, name, checksum)| MigrationId {
                version,
                name,
                checksum: checksum.parse::<u64>().map(checksum_text).unwrap_or(checksum),
            })
            .collect(),
    ))
}

/// A migration that failed part way.
pub struct Failed {
    /// `V3__orders`.
    pub migration: String,
    /// What to tell: which statement, what the server said, what ran.
    pub message: String,
    pub error: Option<mysql::Error>,
}

/// Applies `pending` one migration after another into `database`; returns those
/// that became whole, and the failure that stopped the rest.
pub fn apply(conn: &mut Conn, database: &str, pending: &[&Migration]) -> (Vec<MigrationId>, Option<Failed>) {
    let mut done = Vec::new();
    if let Err(error) = prepare(conn, database) {
        return (done, Some(failed_on("setup", error)));
    }
    for migration in pending {
        match apply_one(conn, database, migration) {
            Ok(()) => done.push(MigrationId::of(migration)),
            Err(failed) => return (done, Some(failed)),
        }
    }
    (done, None)
}

fn failed_on(migration: &str, error: mysql::Error) -> Failed {
    Failed {
        migration: migration.to_string(),
        message: super::describe(&error),
        error: Some(error),
    }
}

fn prepare(conn: &mut Conn, database: &str) -> Result<(), mysql::Error> {
    let db = ident(database);
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {db}.{HISTORY_TABLE} (version INT PRIMARY KEY, name VARCHAR(255), \
         applied_on VARCHAR(255), checksum VARCHAR(255));
         CREATE TABLE IF NOT EXISTS {db}.{PROGRESS_TABLE} (version INT PRIMARY KEY, \
         statements_done INT NOT NULL, done_digest CHAR(64) NOT NULL, failed_statement TEXT, error TEXT)"
    ))
}

/// The digest of a migration's first statements, which tells whether a file still
/// starts with what ran.
fn digest_of(statements: &[String]) -> String {
    let mut hasher = Sha256::new();
    for statement in statements {
        hasher.update(statement.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn apply_one(conn: &mut Conn, database: &str, migration: &Migration) -> Result<(), Failed> {
    let name = format!("V{}__{}", migration.version(), migration.name());
    let db = ident(database);
    let key = i64::from(migration.version());
    run_recorded(conn, database, key, &name, migration.sql().unwrap_or_default())?;
    let applied_on = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    conn.exec_drop(
        format!("INSERT INTO {db}.{HISTORY_TABLE} (version, name, applied_on, checksum) VALUES (?, ?, ?, ?)"),
        (
            migration.version(),
            migration.name(),
            applied_on,
            migration.checksum().to_string(),
        ),
    )
    .and_then(|()| conn.query_drop(format!("DELETE FROM {db}.{PROGRESS_TABLE} WHERE version = {key}")))
    .map_err(|e| failed_on(&name, e))
}

/// Runs the down scripts `steps` one after another, each statement recorded as it
/// runs under the negative of its version, then its history row removed; returns the
/// versions wholly undone and the failure that stopped the rest. A tenant left with a
/// down script half run stays at that version, failed, until a rollback finishes it.
pub fn undo(conn: &mut Conn, database: &str, steps: &[&DownScript]) -> (Vec<i64>, Option<Failed>) {
    let mut undone = Vec::new();
    if let Err(error) = prepare(conn, database) {
        return (undone, Some(failed_on("setup", error)));
    }
    let db = ident(database);
    for step in steps {
        let name = step.file_name();
        if let Err(failed) = run_recorded(conn, database, -step.version, &name, &step.sql) {
            return (undone, Some(failed));
        }
        crate::ops::recovery::crash_point("rollback:my-step-done");
        // The history row first: a crash before the progress row goes leaves a stale
        // one, which the next run drops as its version is no longer applied.
        let removed = conn
            .query_drop(format!(
                "DELETE FROM {db}.{HISTORY_TABLE} WHERE version = {}",
                step.version
            ))
            .and_then(|()| {
                conn.query_drop(format!(
                    "DELETE FROM {db}.{PROGRESS_TABLE} WHERE version = {}",
                    -step.version
                ))
            });
        if let Err(error) = removed {
            return (undone, Some(failed_on(&name, error)));
        }
        undone.push(step.version);
    }
    (undone, None)
}

/// What a killed or failed run left part way, refused before another run starts: a
/// migration whose statements ran only in part blocks a rollback, and a half-run down
/// script blocks a migration. A down script's record whose version is no longer
/// applied was finished; it is dropped.
pub fn unfinished(
    conn: &mut Conn,
    database: &str,
    applied: &[MigrationId],
    rolling_back: bool,
) -> Result<Option<String>, mysql::Error> {
    let db = ident(database);
    let rows: Vec<(i64, i64)> = match conn.query(format!(
        "SELECT version, statements_done FROM {db}.{PROGRESS_TABLE} ORDER BY version"
    )) {
        Ok(rows) => rows,
        Err(mysql::Error::MySqlError(e)) if e.code == 1146 => return Ok(None),
        Err(err) => return Err(err),
    };
    for (key, done) in rows {
        let version = key.abs();
        let is_applied = applied.iter().any(|m| m.version == version);
        if key < 0 && !is_applied {
            conn.query_drop(format!("DELETE FROM {db}.{PROGRESS_TABLE} WHERE version = {key}"))?;
        } else if key < 0 && !rolling_back {
            return Ok(Some(format!(
                "the down script of V{version} ran {done} of its statements before it stopped; \
                 finish it with 'tenantctl db rollback' first"
            )));
        } else if key > 0 && rolling_back && done > 0 {
            return Ok(Some(format!(
                "V{version} ran {done} of its statements before it stopped; finish it with \
                 'tenantctl db migrate', or undo them by hand and DELETE FROM {PROGRESS_TABLE} \
                 WHERE version = {version} in the tenant's database"
            )));
        }
    }
    Ok(None)
}

/// Runs the statements of `sql` from the first not yet recorded under `key`,
/// recording each as done; a failure records which statement and why.
fn run_recorded(conn: &mut Conn, database: &str, key: i64, name: &str, sql: &str) -> Result<(), Failed> {
    let db = ident(database);
    let statements = mysql_statements(sql);
    let fail = |message: String, error: Option<mysql::Error>| Failed {
        migration: name.to_string(),
        message,
        error,
    };
    let progress: Option<(usize, String)> = conn
        .query_first(format!(
            "SELECT statements_done, done_digest FROM {db}.{PROGRESS_TABLE} WHERE version = {key}"
        ))
        .map_err(|e| fail(super::describe(&e), Some(e)))?;
    let start = match progress {
        None => 0,
        Some((done, digest)) if done <= statements.len() && digest_of(&statements[..done]) == digest => done,
        Some((done, _)) => {
            return Err(fail(
                format!(
                    "{done} of its statements ran before, and the file no longer starts with them; \
                     put the database right by hand, then DELETE FROM {PROGRESS_TABLE} WHERE version = {key} \
                     in it and run the command again"
                ),
                None,
            ));
        }
    };
    conn.query_drop(format!("USE {db}"))
        .map_err(|e| fail(super::describe(&e), Some(e)))?;
    for (index, statement) in statements.iter().enumerate().skip(start) {
        if let Err(error) = conn.query_drop(statement) {
            let message = format!(
                "statement {} of {} ({}) failed: {}; {}",
                index + 1,
                statements.len(),
                first_line(statement),
                super::describe(&error),
                match index {
                    0 => "nothing of it ran".to_string(),
                    1 => "statement 1 ran and is recorded; it is not run again".to_string(),
                    n => format!("statements 1-{n} ran and are recorded; they are not run again"),
                }
            );
            let _ = conn.exec_drop(
                format!(
                    "INSERT INTO {db}.{PROGRESS_TABLE} (version, statements_done, done_digest, failed_statement, error) \
                     VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE statements_done = VALUES(statements_done), \
                     done_digest = VALUES(done_digest), failed_statement = VALUES(failed_statement), error = VALUES(error)"
                ),
                (
                    key,
                    index,
                    digest_of(&statements[..index]),
                    statement.as_str(),
                    super::describe(&error),
                ),
            );
            return Err(fail(message, Some(error)));
        }
        if index + 1 < statements.len() {
            conn.exec_drop(
                format!(
                    "INSERT INTO {db}.{PROGRESS_TABLE} (version, statements_done, done_digest) VALUES (?, ?, ?) \
                     ON DUPLICATE KEY UPDATE statements_done = VALUES(statements_done), done_digest = VALUES(done_digest), \
                     failed_statement = NULL, error = NULL"
                ),
                (key, index + 1, digest_of(&statements[..=index])),
            )
            .map_err(|e| fail(super::describe(&e), Some(e)))?;
        }
    }
    Ok(())
}

/// A statement's start, for a message: its first line, cut short.
fn first_line(statement: &str) -> String {
    let line = statement.lines().next().unwrap_or_default().trim();
    match line.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}
