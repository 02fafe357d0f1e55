//! Applying a MySQL tenant's pending migrations. MySQL commits every DDL statement
//! on its own, so a migration cannot be rolled back as a whole: each statement is
//! run and then recorded in the tenant's `tenantctl_migration_progress`, and only a
//! migration whose every statement ran gets its row in refinery's history table.
//! A migration that fails leaves the tenant at the last whole migration, with the
//! failing statement named; when it runs again, the statements recorded as done are
//! skipped as long as the file still starts with them, so the operator fixes the
//! failing statement (or the database) and runs `db migrate` again.

use mysql::Conn;
use mysql::prelude::Queryable;
use refinery::Migration;
use sha2::{Digest, Sha256};

use super::names::{ident, literal};
use crate::migrations::{MigrationId, checksum_text};
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
    let statements = mysql_statements(migration.sql().unwrap_or_default());
    let fail = |message: String, error: Option<mysql::Error>| Failed {
        migration: name.clone(),
        message,
        error,
    };
    let progress: Option<(usize, String)> = conn
        .query_first(format!(
            "SELECT statements_done, done_digest FROM {db}.{PROGRESS_TABLE} WHERE version = {}",
            migration.version()
        ))
        .map_err(|e| fail(super::describe(&e), Some(e)))?;
    let start = match progress {
        None => 0,
        Some((done, digest)) if done <= statements.len() && digest_of(&statements[..done]) == digest => done,
        Some((done, _)) => {
            return Err(fail(
                format!(
                    "{done} of its statements ran before, and the file no longer starts with them; \
                     put the database right by hand, then DELETE FROM {PROGRESS_TABLE} WHERE version = {} \
                     in it and run db migrate again",
                    migration.version()
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
                    migration.version(),
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
                (migration.version(), index + 1, digest_of(&statements[..=index])),
            )
            .map_err(|e| fail(super::describe(&e), Some(e)))?;
        }
    }
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
    .and_then(|()| {
        conn.query_drop(format!(
            "DELETE FROM {db}.{PROGRESS_TABLE} WHERE version = {}",
            migration.version()
        ))
    })
    .map_err(|e| fail(super::describe(&e), Some(e)))
}

/// A statement's start, for a message: its first line, cut short.
fn first_line(statement: &str) -> String {
    let line = statement.lines().next().unwrap_or_default().trim();
    match line.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}
