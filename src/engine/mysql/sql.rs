//! The operator's statements on one MySQL tenant, as its own user: in a read-only
//! session unless asked to write, under a statement timeout. MySQL ends a transaction
//! before any DDL statement, so a `START TRANSACTION READ ONLY` alone would let a
//! `CREATE TABLE` through; the session itself is made read-only, again before every
//! statement of a script, and statements that could lift it (`SET`, `PREPARE`,
//! `EXECUTE`, `CALL`) need `--write`. The server's grants keep the user inside its
//! database.

use std::time::Duration;

use mysql::consts::ColumnType;
use mysql::prelude::Queryable;
use mysql::{Conn, Value as MyValue};
use serde_json::Value;

use crate::engine::{Finished, RowSink, ScriptOutcome};
use crate::error::{Error, Result};
use crate::sql_text::{mysql_statements, transaction_control};

/// What the session gets before the operator's statements: the timeout (MariaDB
/// counts seconds in `max_statement_time`, MySQL milliseconds in
/// `max_execution_time`) and read-only-ness.
fn prepare(conn: &mut Conn, mariadb: bool, write: bool, timeout: Duration) -> Result<(), StatementError> {
    let limit = match mariadb {
        true => format!(
            "SET SESSION max_statement_time = {}",
            timeout.as_secs_f64().max(0.001)
        ),
        false => format!("SET SESSION max_execution_time = {}", timeout.as_millis().max(1)),
    };
    conn.query_drop(limit)?;
    conn.query_drop(read_mode(write))?;
    Ok(())
}

fn read_mode(write: bool) -> &'static str {
    match write {
        true => "SET SESSION TRANSACTION READ WRITE",
        false => "SET SESSION TRANSACTION READ ONLY",
    }
}

/// Refuses what a read-only run must not do and transaction control anywhere.
fn check(statement: &str, write: bool) -> Result<()> {
    if let Some(keyword) = transaction_control(statement) {
        return Err(Error::usage(format!("the statement is {keyword}"))
            .with_hint("each statement runs in a transaction that tenantctl opens and ends"));
    }
    let first = statement
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| !w.is_empty())
        .unwrap_or_default()
        .to_ascii_uppercase();
    if !write
        && matches!(
            first.as_str(),
            "SET" | "PREPARE" | "EXECUTE" | "CALL" | "LOCK" | "XA"
        )
    {
        return Err(
            Error::refused(format!("{first} may change what a read-only run allows"))
                .with_hint("pass --write to run it"),
        );
    }
    Ok(())
}

/// Runs one statement, feeding its rows to `sink` as they arrive.
pub fn stream(
    conn: &mut Conn,
    mariadb: bool,
    statement: &str,
    write: bool,
    timeout: Duration,
    sink: &mut dyn RowSink,
) -> Result<Finished, StatementError> {
    let statements = mysql_statements(statement);
    match statements.len() {
        0 => return Err(Error::usage("the SQL statement is empty").into()),
        1 => {}
        _ => {
            return Err(Error::usage("db sql runs one statement at a time")
                .with_hint("run a script of several statements with -f FILE (or -f - for stdin)")
                .into());
        }
    }
    check(&statements[0], write)?;
    prepare(conn, mariadb, write, timeout)?;
    conn.query_drop("START TRANSACTION")?;
    let mut result = conn.query_iter(&statements[0])?;
    let columns = result.columns();
    let kinds: Vec<ColumnType> = columns.as_ref().iter().map(|c| c.column_type()).collect();
    let names: Vec<String> = columns
        .as_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    let finished = if names.is_empty() {
        let changed = result.affected_rows();
        drop(result);
        Finished::Changed(changed)
    } else {
        sink.columns(&names)?;
        let mut rows = 0;
        for row in result.by_ref() {
            let values = row?
                .unwrap()
                .into_iter()
                .zip(&kinds)
                .map(|(value, kind)| json_value(value, *kind))
                .collect();
            sink.row(values)?;
            rows += 1;
        }
        drop(result);
        Finished::Rows(rows)
    };
    conn.query_drop(if write { "COMMIT" } else { "ROLLBACK" })?;
    Ok(finished)
}

/// Runs a script of statements in one transaction. MySQL commits DDL on its own, so
/// a script that mixes DDL with data changes is not all-or-nothing there.
pub fn run_script(
    conn: &mut Conn,
    mariadb: bool,
    script: &str,
    write: bool,
    timeout: Duration,
) -> Result<ScriptOutcome, StatementError> {
    let statements = mysql_statements(script);
    if statements.is_empty() {
        return Err(Error::usage("the SQL script holds no statement").into());
    }
    if let Some(keyword) = transaction_control(script) {
        return Err(Error::usage(format!("the SQL script contains {keyword}"))
            .with_hint("a script runs in one transaction that tenantctl opens and commits; leave transaction control out")
            .into());
    }
    for statement in &statements {
        check(statement, write)?;
    }
    prepare(conn, mariadb, write, timeout)?;
    conn.query_drop("START TRANSACTION")?;
    let mut outcome = ScriptOutcome {
        statements: 0,
        changes: 0,
    };
    for statement in &statements {
        if !write {
            conn.query_drop(read_mode(false))?;
        }
        let result = conn.query_iter(statement)?;
        outcome.changes += result.affected_rows();
        drop(result);
        outcome.statements += 1;
    }
    conn.query_drop(if write { "COMMIT" } else { "ROLLBACK" })?;
    Ok(outcome)
}

/// A value as JSON: numbers and JSON documents as themselves, text as text, bytes
/// that are not UTF-8 as `0x…` hex.
fn json_value(value: MyValue, kind: ColumnType) -> Value {
    let bytes = match value {
        MyValue::NULL => return Value::Null,
        MyValue::Int(n) => return Value::from(n),
        MyValue::UInt(n) => return Value::from(n),
        MyValue::Float(f) => return float(f64::from(f)),
        MyValue::Double(f) => return float(f),
        MyValue::Bytes(bytes) => bytes,
        other => return Value::String(other.as_sql(true).trim_matches('\'').to_string()),
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Value::Null;
    };
    use ColumnType::*;
    let parsed = match kind {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_LONGLONG | MYSQL_TYPE_INT24
        | MYSQL_TYPE_YEAR => text
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| text.parse::<u64>().map(Value::from))
            .ok(),
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => text.parse::<f64>().ok().map(float),
        MYSQL_TYPE_JSON => serde_json::from_str(&text).ok(),
        _ => None,
    };
    parsed.unwrap_or(Value::String(text))
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// What can stop an operator's statement: our own refusal, or the server's.
#[derive(Debug)]
pub enum StatementError {
    Ours(Error),
    Server(mysql::Error),
}

impl From<Error> for StatementError {
    fn from(err: Error) -> Self {
        StatementError::Ours(err)
    }
}

impl From<mysql::Error> for StatementError {
    fn from(err: mysql::Error) -> Self {
        StatementError::Server(err)
    }
}

impl StatementError {
    /// The exit code the server's refusal deserves, as for the other engines.
    pub fn into_error(self, server: &str, timeout: Duration) -> Error {
        let err = match self {
            StatementError::Ours(err) => return err,
            StatementError::Server(err) => err,
        };
        let mysql::Error::MySqlError(db) = &err else {
            return super::unreachable(server, &err);
        };
        let message = &db.message;
        match db.code {
            1792 => Error::refused(format!("the transaction is read-only: {message}"))
                .with_hint("pass --write to change data"),
            1044 | 1045 | 1142 | 1143 | 1227 | 1370 => {
                Error::refused(format!("statement refused: {message}"))
                    .with_hint("the tenant's user reaches only its own database")
            }
            1969 | 3024 => Error::unexpected(format!(
                "the statement ran longer than {} s and was stopped",
                timeout.as_secs()
            ))
            .with_hint("raise --timeout, or narrow the query"),
            1046 | 1049 | 1054 | 1064 | 1109 | 1146 | 1149 | 1305 => {
                Error::usage(format!("MySQL: {message}"))
                    .with_hint("the statement itself is wrong; fix it and run it again")
            }
            _ => Error::unexpected(format!("MySQL: {message}")),
        }
    }
}
