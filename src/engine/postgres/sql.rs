//! SQL on one PostgreSQL tenant database: identifiers, its migration history, and the
//! operator's statements, run in a READ ONLY transaction unless asked to write, under
//! a statement timeout. The connection is the tenant role's own, so the server's
//! privileges, not string matching, keep the statement inside its tenant.

use std::time::Duration;

use postgres::types::Type;
use postgres::{Client, SimpleQueryMessage};
use serde_json::Value;

use crate::engine::{Finished, RowSink, ScriptOutcome};
use crate::error::{Error, Result};
use crate::sql_text::{statement_count, transaction_control};

/// A quoted identifier. Names built here come from validated slugs, so the quoting
/// is a second fence, not the first.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Opens the transaction every operator statement runs in. Its first query takes
/// the snapshot, after which PostgreSQL refuses to make a read-only transaction
/// read-write (`SET transaction_read_only = off` as a script's first line, say).
fn begin(client: &mut Client, write: bool, timeout: Duration) -> std::result::Result<(), postgres::Error> {
    let mode = if write { "READ WRITE" } else { "READ ONLY" };
    client.batch_execute(&format!(
        "BEGIN {mode}; SET LOCAL statement_timeout = {}; SELECT 1",
        timeout.as_millis().max(1)
    ))
}

/// Runs one statement, feeding its rows to `sink` as they arrive.
pub fn stream(
    client: &mut Client,
    statement: &str,
    write: bool,
    timeout: Duration,
    sink: &mut dyn RowSink,
) -> Result<Finished, StatementError> {
    if statement.trim().trim_matches(';').trim().is_empty() {
        return Err(Error::usage("the SQL statement is empty").into());
    }
    if statement_count(statement) > 1 {
        return Err(Error::usage("db sql runs one statement at a time")
            .with_hint("run a script of several statements with -f FILE (or -f - for stdin)")
            .into());
    }
    if let Some(keyword) = transaction_control(statement) {
        return Err(Error::usage(format!("the statement is {keyword}"))
            .with_hint("each statement runs in a transaction that tenantctl opens and ends")
            .into());
    }
    begin(client, write, timeout)?;
    let types: Vec<Type> = client
        .prepare(statement)?
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    let mut finished = Finished::Changed(0);
    let mut rows = 0;
    let mut named = false;
    for message in client.simple_query(statement)? {
        match message {
            SimpleQueryMessage::RowDescription(columns) => {
                let names: Vec<String> = columns.iter().map(|c| c.name().to_string()).collect();
                sink.columns(&names)?;
                named = true;
            }
            SimpleQueryMessage::Row(row) => {
                let values = (0..row.len())
                    .map(|i| json_value(row.get(i), types.get(i)))
                    .collect();
                sink.row(values)?;
                rows += 1;
            }
            SimpleQueryMessage::CommandComplete(n) => {
                finished = if named {
                    Finished::Rows(rows)
                } else {
                    Finished::Changed(n)
                };
            }
            _ => {}
        }
    }
    client.batch_execute(if write { "COMMIT" } else { "ROLLBACK" })?;
    Ok(finished)
}

/// Runs a script of statements in one transaction: all take effect or none.
pub fn run_script(
    client: &mut Client,
    script: &str,
    write: bool,
    timeout: Duration,
) -> Result<ScriptOutcome, StatementError> {
    if let Some(keyword) = transaction_control(script) {
        return Err(Error::usage(format!("the SQL script contains {keyword}"))
            .with_hint("a script runs in one transaction that tenantctl opens and commits; leave transaction control out")
            .into());
    }
    begin(client, write, timeout)?;
    let mut outcome = ScriptOutcome {
        statements: 0,
        changes: 0,
    };
    for message in client.simple_query(script)? {
        if let SimpleQueryMessage::CommandComplete(n) = message {
            outcome.statements += 1;
            outcome.changes += n;
        }
    }
    client.batch_execute(if write { "COMMIT" } else { "ROLLBACK" })?;
    if outcome.statements == 0 {
        return Err(Error::usage("the SQL script holds no statement").into());
    }
    Ok(outcome)
}

/// A value as JSON: numbers, booleans and JSON documents as themselves, the rest as
/// the server's text for them.
fn json_value(text: Option<&str>, kind: Option<&Type>) -> Value {
    let Some(text) = text else { return Value::Null };
    let parsed = match kind {
        Some(t) if [Type::INT2, Type::INT4, Type::INT8, Type::OID].contains(t) => {
            text.parse::<i64>().ok().map(Value::from)
        }
        Some(t) if [Type::FLOAT4, Type::FLOAT8].contains(t) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        Some(t) if *t == Type::BOOL => Some(Value::Bool(text == "t")),
        Some(t) if [Type::JSON, Type::JSONB].contains(t) => serde_json::from_str(text).ok(),
        _ => None,
    };
    parsed.unwrap_or_else(|| Value::String(text.to_string()))
}

/// What can stop an operator's statement: our own refusal, or the server's.
#[derive(Debug)]
pub enum StatementError {
    Ours(Error),
    Server(postgres::Error),
}

impl From<Error> for StatementError {
    fn from(err: Error) -> Self {
        StatementError::Ours(err)
    }
}

impl From<postgres::Error> for StatementError {
    fn from(err: postgres::Error) -> Self {
        StatementError::Server(err)
    }
}

impl StatementError {
    /// The exit code the server's refusal deserves, as for SQLite tenants: a wrong
    /// statement is a usage error, a write in a read-only run or a denied privilege
    /// is refused, a timeout or a lost connection is unexpected.
    pub fn into_error(self, server: &str, timeout: Duration) -> Error {
        let err = match self {
            StatementError::Ours(err) => return err,
            StatementError::Server(err) => err,
        };
        let Some(db) = err.as_db_error() else {
            return Error::unexpected(format!("server {server}: {}", super::describe(&err)));
        };
        let code = db.code().code();
        let message = db.message();
        match code {
            "25006" => Error::refused(format!("the transaction is read-only: {message}"))
                .with_hint("pass --write to change data"),
            "42501" => Error::refused(format!("statement refused: {message}"))
                .with_hint("the tenant role reaches only its own database"),
            "57014" => Error::unexpected(format!(
                "the statement ran longer than {} s and was stopped",
                timeout.as_secs()
            ))
            .with_hint("raise --timeout, or narrow the query"),
            _ if code.starts_with("42") => Error::usage(format!("PostgreSQL: {message}"))
                .with_hint("the statement itself is wrong; fix it and run it again"),
            _ => Error::unexpected(format!("PostgreSQL: {message}")),
        }
    }
}
