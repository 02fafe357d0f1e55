//! `db sql`: one statement on one tenant, or the same read-only query across the fleet,
//! every run recorded in the query history.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use super::Actor;
use super::tenants::live_customer;
use crate::catalog::Catalog;
use crate::catalog::tenants::{self, QueryRecord, TenantRow};
use crate::error::{Error, Result};
use crate::tenantdb::sql::{self, Finished, QueryOutput, RowSink};
use crate::tenantdb::{self as tenant_files};

/// Runs one statement on one tenant, streaming rows to `sink`. The run is in the query
/// history before it starts; after a `--write` the catalog's record of the tenant's
/// schema is read again from the file, since the statement may have changed it.
pub fn run_one(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: &str,
    statement: &str,
    write: bool,
    timeout: Duration,
    sink: &mut dyn RowSink,
) -> Result<(String, Finished)> {
    let customer = live_customer(catalog, reference)?;
    let record = QueryRecord {
        actor: actor.name,
        customer_id: customer.id,
        customer_slug: &customer.slug,
        sql: statement,
        write,
        duration_ms: 0.0,
        row_count: 0,
        error: None,
    };
    let history_id = catalog.write(|tx| tenants::start_query(tx, &record))?;
    let started = Instant::now();
    let path = Path::new(&customer.db_path);
    let result = sql::stream(path, statement, write, timeout, sink);
    let applied = if write {
        tenant_files::open_tenant(path)
            .and_then(|c| tenant_files::applied_migrations(&c))
            .ok()
    } else {
        None
    };
    let rows = match &result {
        Ok(Finished::Rows(n) | Finished::Changed(n)) => *n,
        Err(_) => 0,
    };
    let error = result.as_ref().err().map(ToString::to_string);
    catalog.write(|tx| {
        tenants::finish_query(tx, history_id, millis(started), rows, error.as_deref())?;
        if let Some(applied) = &applied {
            tenants::record_applied(tx, customer.id, applied)?;
            let version = applied.iter().map(|m| m.version).max().unwrap_or(0);
            tenants::record_run(tx, customer.id, version, "ok", None)?;
        }
        Ok(())
    })?;
    Ok((customer.slug, result?))
}

fn millis(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0
}

/// A tenant the fleet-wide query could not run on.
#[derive(Debug, Clone, Serialize)]
pub struct FleetFailure {
    pub customer: String,
    pub error: String,
}

/// Rows from every active tenant, each prefixed with its customer's slug, and the
/// tenants it failed on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetResult {
    pub tenants: usize,
    #[serde(skip)]
    pub columns: Vec<String>,
    pub rows: Vec<Map<String, Value>>,
    pub failures: Vec<FleetFailure>,
}

/// Runs one read-only statement on every active tenant, `jobs` at a time.
pub fn run_all(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    statement: &str,
    jobs: usize,
    timeout: Duration,
) -> Result<FleetResult> {
    if statement.trim().trim_matches(';').trim().is_empty() {
        return Err(Error::usage("the SQL statement is empty"));
    }
    let active: Vec<TenantRow> = tenants::live_tenants(catalog.conn(), None)?
        .into_iter()
        .filter(|t| t.status == "active")
        .collect();
    let outcomes: Mutex<Vec<(usize, f64, Result<QueryOutput>)>> =
        Mutex::new(Vec::with_capacity(active.len()));
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(active.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(tenant) = active.get(index) else { break };
                    let started = Instant::now();
                    let result = sql::run(Path::new(&tenant.db_path), statement, false, timeout);
                    if let Ok(mut all) = outcomes.lock() {
                        all.push((index, millis(started), result));
                    }
                }
            });
        }
    });
    let mut outcomes = outcomes
        .into_inner()
        .map_err(|_| Error::unexpected("a query worker panicked"))?;
    outcomes.sort_by_key(|(index, _, _)| *index);
    catalog.write(|tx| {
        for (index, duration_ms, result) in &outcomes {
            let tenant = &active[*index];
            tenants::record_query(
                tx,
                &QueryRecord {
                    actor: actor.name,
                    customer_id: tenant.customer_id,
                    customer_slug: &tenant.slug,
                    sql: statement,
                    write: false,
                    duration_ms: *duration_ms,
                    row_count: result.as_ref().map_or(0, |o| o.rows.len() as u64),
                    error: result.as_ref().err().map(ToString::to_string),
                },
            )?;
        }
        Ok(())
    })?;
    let mut fleet = FleetResult {
        tenants: active.len(),
        ..Default::default()
    };
    for (index, _, result) in outcomes {
        let tenant = &active[index];
        match result {
            Ok(output) => {
                if fleet.columns.is_empty() {
                    fleet.columns = std::iter::once("customer".to_string())
                        .chain(output.unique_columns())
                        .collect();
                }
                for row in output.objects() {
                    let mut prefixed = Map::new();
                    prefixed.insert("customer".to_string(), Value::String(tenant.slug.clone()));
                    prefixed.extend(row);
                    fleet.rows.push(prefixed);
                }
            }
            Err(err) => fleet.failures.push(FleetFailure {
                customer: tenant.slug.clone(),
                error: err.to_string(),
            }),
        }
    }
    Ok(fleet)
}
