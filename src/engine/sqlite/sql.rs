//! Running an operator's SQL on one tenant database, so that no statement can reach
//! another file: read-only unless asked, and ATTACH, DETACH, VACUUM INTO and
//! load_extension refused by SQLite's authorizer. Plain VACUUM (with write access)
//! is allowed: it rebuilds the file in place through a private scratch database.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use crate::engine::{Finished, QueryOutput, RowSink, ScriptOutcome};
use crate::error::{Error, NamingFullDisk, Result};
use crate::sql_text::{statement_count, transaction_control};

/// Pragmas that would change how the file is stored or reach outside it.
const DENIED_PRAGMAS: &[&str] = &[
    "journal_mode",
    "locking_mode",
    "writable_schema",
    "temp_store_directory",
    "data_store_directory",
];

fn authorize(context: AuthContext<'_>, write: bool) -> Authorization {
    match context.action {
        // Plain VACUUM attaches a scratch database with an empty name, private to this
        // connection; VACUUM INTO and ATTACH name a file, which could be another tenant's.
        AuthAction::Attach { filename } if write && filename.is_empty() => Authorization::Allow,
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        AuthAction::Function { function_name } if function_name.eq_ignore_ascii_case("load_extension") => {
            Authorization::Deny
        }
        AuthAction::Pragma { pragma_name, .. }
            if DENIED_PRAGMAS.iter().any(|p| p.eq_ignore_ascii_case(pragma_name))
                || (!write && pragma_name.eq_ignore_ascii_case("query_only")) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

/// Runs one statement and collects its result.
pub fn run(path: &Path, sql: &str, write: bool, timeout: Duration) -> Result<QueryOutput> {
    let mut output = QueryOutput::default();
    if let Finished::Changed(n) = stream(path, sql, write, timeout, &mut output)? {
        output.changes = Some(n);
    }
    Ok(output)
}

/// Runs one statement on the tenant database at `path`, feeding rows to `sink`, and
/// interrupts it after `timeout`.
pub fn stream(
    path: &Path,
    sql: &str,
    write: bool,
    timeout: Duration,
    sink: &mut dyn RowSink,
) -> Result<Finished> {
    if sql.trim().trim_matches(';').trim().is_empty() {
        return Err(Error::usage("the SQL statement is empty"));
    }
    // Counted before SQLite sees it: preparing a later statement can fail first (on a
    // table the earlier one would create), which would hide what is really wrong.
    if statement_count(sql) > 1 {
        return Err(one_statement_at_a_time());
    }
    let conn = open_sandboxed(path, write, timeout)?;
    let result = execute(&conn, sql, sink).naming_full_disk(path);
    close_sandbox(&conn);
    result.map_err(|err| explain(err, write, timeout))
}

/// Runs a script of statements in one transaction on the tenant database at `path`:
/// all of them take effect or none. Rows that statements return are read and dropped.
pub fn run_script(path: &Path, sql: &str, write: bool, timeout: Duration) -> Result<ScriptOutcome> {
    if let Some(keyword) = transaction_control(sql) {
        return Err(Error::usage(format!("the SQL script contains {keyword}"))
            .with_hint("a script runs in one transaction that tenantctl opens and commits; leave transaction control out"));
    }
    let conn = open_sandboxed(path, write, timeout)?;
    let result = execute_script(&conn, write, sql).naming_full_disk(path);
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    close_sandbox(&conn);
    let outcome = result.map_err(|err| explain(err, write, timeout))?;
    if outcome.statements == 0 {
        return Err(Error::usage("the SQL script holds no statement"));
    }
    Ok(outcome)
}

/// Opens a tenant database for an operator's SQL: never through a symbolic link,
/// read-only unless `write`, with the authorizer and a deadline installed.
fn open_sandboxed(path: &Path, write: bool, timeout: Duration) -> Result<Connection> {
    super::refuse_symlink(path)?;
    if !path.is_file() {
        return Err(
            Error::refused(format!("tenant database {} is missing", path.display()))
                .with_hint("run 'tenantctl doctor'"),
        );
    }
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(timeout.min(Duration::from_secs(30)))?;
    if !write {
        conn.pragma_update(None, "query_only", true)?;
    }
    conn.authorizer(Some(move |context: AuthContext<'_>| authorize(context, write)));
    let deadline = Instant::now() + timeout;
    conn.progress_handler(10_000, Some(move || Instant::now() > deadline));
    Ok(conn)
}

fn close_sandbox(conn: &Connection) {
    conn.progress_handler(0, None::<fn() -> bool>);
    conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
}

fn execute_script(conn: &Connection, write: bool, sql: &str) -> Result<ScriptOutcome> {
    let mut outcome = ScriptOutcome {
        statements: 0,
        changes: 0,
    };
    // Take the write lock at the start, so a busy tenant makes the script wait, not fail halfway.
    conn.execute_batch(if write { "BEGIN IMMEDIATE" } else { "BEGIN" })?;
    use fallible_iterator::FallibleIterator;
    let mut batch = rusqlite::Batch::new(conn, sql);
    while let Some(mut stmt) = batch.next()? {
        if stmt.column_count() == 0 {
            outcome.changes += stmt.execute([])? as u64;
        } else {
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
        }
        outcome.statements += 1;
    }
    conn.execute_batch("COMMIT")?;
    Ok(outcome)
}

fn execute(conn: &Connection, sql: &str, sink: &mut dyn RowSink) -> Result<Finished> {
    let mut stmt = conn.prepare(sql)?;
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    if columns.is_empty() {
        return Ok(Finished::Changed(stmt.execute([])? as u64));
    }
    sink.columns(&columns)?;
    let mut rows = stmt.query([])?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            values.push(json_value(row.get_ref(i)?));
        }
        sink.row(values)?;
        count += 1;
    }
    Ok(Finished::Rows(count))
}

fn json_value(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(b.iter().map(|byte| format!("{byte:02x}")).collect()),
    }
}

/// Refusals by the sandbox become exit 6 with advice, a statement SQLite cannot run
/// (syntax, unknown table or column) exit 2; anything else is a broken database or
/// the machine (exit 1).
fn explain(err: Error, write: bool, timeout: Duration) -> Error {
    let Error::Sqlite(err) = err else { return err };
    let read_only = || {
        Error::refused(format!("the database is opened read-only: {err}"))
            .with_hint("pass --write to change data")
    };
    let message = err.to_string();
    let refused = || {
        Error::refused(format!("statement refused: {err}")).with_hint(
            "ATTACH, DETACH, VACUUM INTO, load_extension and storage pragmas are not allowed; each tenant's data stays in its own file",
        )
    };
    match error_code(&err) {
        Some(rusqlite::ErrorCode::AuthorizationForStatementDenied) => refused(),
        // A function the authorizer denies fails while the statement is prepared.
        Some(rusqlite::ErrorCode::Unknown) if message.contains("not authorized") => refused(),
        Some(rusqlite::ErrorCode::ReadOnly) if !write => read_only(),
        Some(rusqlite::ErrorCode::OperationInterrupted) => Error::unexpected(format!(
            "the statement ran longer than {} s and was stopped",
            timeout.as_secs()
        ))
        .with_hint("raise --timeout, or narrow the query"),
        _ if matches!(err, rusqlite::Error::MultipleStatement) => one_statement_at_a_time(),
        _ if !write && message.contains("query_only") => read_only(),
        Some(rusqlite::ErrorCode::Unknown) => Error::usage(format!("SQLite: {message}"))
            .with_hint("the statement itself is wrong; fix it and run it again"),
        _ => Error::Sqlite(err),
    }
}

fn one_statement_at_a_time() -> Error {
    Error::usage("db sql runs one statement at a time")
        .with_hint("run a script of several statements with -f FILE (or -f - for stdin)")
}

/// SQLite's error code, also for errors found while a statement was prepared.
fn error_code(err: &rusqlite::Error) -> Option<rusqlite::ErrorCode> {
    match err {
        rusqlite::Error::SqlInputError { error, .. } => Some(error.code),
        other => other.sqlite_error_code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn tenant(dir: &Path, name: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t (x, y); INSERT INTO t VALUES (1, 'a'), (2, x'ff');",
        )
        .unwrap();
        path
    }

    #[test]
    fn reads_rows_and_refuses_writes_without_permission() {
        let dir = tempfile::tempdir().unwrap();
        let db = tenant(dir.path(), "a.db");
        let out = run(&db, "SELECT x, y, x FROM t ORDER BY x", false, T).unwrap();
        assert_eq!(out.unique_columns(), ["x", "y", "x_2"]);
        assert_eq!(out.rows[1][1], Value::String("ff".into()));
        for write in [
            "INSERT INTO t VALUES (3, 'c')",
            "DELETE FROM t",
            "PRAGMA query_only = 0",
            "CREATE TABLE u (x)",
        ] {
            let err = run(&db, write, false, T).unwrap_err();
            assert_eq!(err.exit_code(), 6, "{write}: {err}");
        }
        let changed = run(&db, "UPDATE t SET y = 'z'", true, T).unwrap();
        assert_eq!(changed.changes, Some(2));
    }

    #[test]
    fn no_statement_reaches_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = tenant(dir.path(), "a.db");
        let other = tenant(dir.path(), "b.db");
        let other_text = other.display().to_string();
        let escape = dir.path().join("copy.db").display().to_string();
        for sql in [
            format!("ATTACH '{other_text}' AS o"),
            "DETACH main".to_string(),
            format!("VACUUM INTO '{escape}'"),
            "SELECT load_extension('/tmp/x.so')".to_string(),
            "PRAGMA journal_mode = DELETE".to_string(),
            "PRAGMA writable_schema = 1".to_string(),
        ] {
            for write in [false, true] {
                let err = run(&db, &sql, write, T).unwrap_err();
                assert_eq!(err.exit_code(), 6, "{sql}: {err}");
            }
        }
        assert!(!dir.path().join("copy.db").exists());
        assert_eq!(run(&db, "VACUUM", false, T).unwrap_err().exit_code(), 6);
        run(&db, "VACUUM", true, T).unwrap();
        assert_eq!(run(&db, "SELEC 1", false, T).unwrap_err().exit_code(), 2);
        let err = run(&db, "SELECT 1; SELECT 2", false, T).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        for empty in ["", " ", ";", " ; "] {
            assert_eq!(run(&db, empty, false, T).unwrap_err().exit_code(), 2, "{empty:?}");
        }
        let mode: String = Connection::open(&db)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_script_takes_effect_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let db = tenant(dir.path(), "a.db");
        let count = || run(&db, "SELECT count(*) FROM t", false, T).unwrap().rows[0][0].clone();
        let done = run_script(
            &db,
            "INSERT INTO t VALUES (3, 'c'); UPDATE t SET y = 'z'; SELECT 1;",
            true,
            T,
        )
        .unwrap();
        assert_eq!(
            done,
            ScriptOutcome {
                statements: 3,
                changes: 4
            }
        );
        let err = run_script(&db, "DELETE FROM t; INSERT INTO nowhere VALUES (1);", true, T).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert_eq!(count(), Value::from(3), "the DELETE was rolled back");
        assert_eq!(
            run_script(&db, "DELETE FROM t;", false, T)
                .unwrap_err()
                .exit_code(),
            6
        );
        assert_eq!(
            run_script(&db, "BEGIN; DELETE FROM t; COMMIT;", true, T)
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            run_script(&db, " ; -- nothing\n", true, T)
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(count(), Value::from(3));
    }

    #[test]
    fn a_runaway_statement_is_stopped_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let db = tenant(dir.path(), "a.db");
        let endless =
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
        let err = run(&db, endless, false, Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
    }
}
