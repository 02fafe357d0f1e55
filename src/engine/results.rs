//! What tenant database work reports, whatever the engine: a migration run, a
//! statement's rows, a script's changes, a vacuum's sizes.

use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::migrations::MigrationId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing to apply.
    Current,
    /// Migrations were applied.
    Migrated,
    /// `--dry-run`: these would be applied.
    Pending,
    /// A migration failed; the database is at its old version.
    Failed,
    /// An applied migration's file changed or vanished; nothing was run.
    Drift,
    /// Not started, because an earlier tenant failed.
    Skipped,
    /// Already past `--target`; `db migrate` never undoes a migration.
    Ahead,
    /// `db rollback`: down scripts ran; the database is at the target version.
    RolledBack,
}

#[derive(Debug, Clone)]
pub struct TenantRun {
    pub from: i64,
    pub to: i64,
    pub outcome: Outcome,
    pub error: Option<String>,
    pub pending: Vec<i64>,
    /// What the database has applied afterwards, for the catalog's ledger; `None` when
    /// the file could not be read.
    pub applied: Option<Vec<MigrationId>>,
    pub millis: f64,
    /// The tenant's server did not answer: the tenant failed, but a rollout goes on
    /// with the tenants elsewhere.
    pub server_down: bool,
}

impl TenantRun {
    pub(crate) fn failed(from: i64, outcome: Outcome, error: String, started: Instant) -> Self {
        TenantRun {
            from,
            to: from,
            outcome,
            error: Some(error),
            pending: Vec::new(),
            applied: None,
            millis: elapsed_ms(started),
            server_down: false,
        }
    }

    /// A run that failed before it started, with `err` as the reason.
    pub(crate) fn failed_with(from: i64, err: &crate::error::Error, started: Instant) -> Self {
        TenantRun {
            server_down: err.is_server_down(),
            ..TenantRun::failed(from, Outcome::Failed, err.to_string(), started)
        }
    }
}

pub(crate) fn elapsed_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0
}

/// What a statement returned: its column names and rows, or for a statement without
/// result columns, how many rows it changed.
#[derive(Debug, Clone, Default)]
pub struct QueryOutput {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub changes: Option<u64>,
}

impl QueryOutput {
    /// The column names, a repeated name renamed (`x_2`), as rows are keyed by them.
    pub fn unique_columns(&self) -> Vec<String> {
        unique_names(&self.columns)
    }

    /// `reserved` followed by the column names, each query column renamed (`x_2`) where
    /// it would repeat a reserved or earlier name.
    pub fn unique_columns_after(&self, reserved: &[&str]) -> Vec<String> {
        let names = reserved.iter().map(|r| r.to_string()).collect();
        extend_unique(names, &self.columns)
    }
}

fn unique_names(columns: &[String]) -> Vec<String> {
    extend_unique(Vec::with_capacity(columns.len()), columns)
}

fn extend_unique(mut names: Vec<String>, columns: &[String]) -> Vec<String> {
    for column in columns {
        let mut name = column.clone();
        let mut n = 2;
        while names.contains(&name) {
            name = format!("{column}_{n}");
            n += 1;
        }
        names.push(name);
    }
    names
}

/// Receives a statement's result as it is read, so big results need no memory.
pub trait RowSink {
    fn columns(&mut self, names: &[String]) -> Result<()>;
    fn row(&mut self, values: Vec<Value>) -> Result<()>;
}

impl RowSink for QueryOutput {
    fn columns(&mut self, names: &[String]) -> Result<()> {
        self.columns = names.to_vec();
        Ok(())
    }
    fn row(&mut self, values: Vec<Value>) -> Result<()> {
        self.rows.push(values);
        Ok(())
    }
}

/// How a statement ended: rows streamed to the sink, or rows changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Rows(u64),
    Changed(u64),
}

/// What a script did: how many statements ran and how many rows they changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptOutcome {
    pub statements: u64,
    pub changes: u64,
}

/// What `VACUUM` and `ANALYZE` (or the engine's equivalent) did to one tenant database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vacuumed {
    pub bytes_before: u64,
    pub bytes_after: u64,
}
