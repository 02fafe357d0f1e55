//! `db sql`: one statement or script on one tenant, or the same read-only query across
//! the fleet, every run recorded in the query history; `db history` reads it back;
//! `db vacuum` compacts tenant files across the fleet.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use super::tenants::live_customer;
use super::{Actor, Reported, customers};
use crate::catalog::Catalog;
use crate::catalog::states::{CustomerStatus, TenantMigrationStatus};
use crate::catalog::tenants::{self, QueryRecord, TenantRow};
use crate::engine::{Engines, Finished, RowSink, ScriptOutcome, TenantDatabase};
use crate::error::{Error, Result};
use crate::fan_out::fan_out_all_in_lanes;
use crate::time;

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
    recorded(catalog, actor, reference, statement, write, |tenant| {
        let finished = tenant.query(statement, write, timeout, sink)?;
        let (Finished::Rows(n) | Finished::Changed(n)) = finished;
        Ok((finished, n))
    })
}

/// Runs a script of several statements on one tenant in one transaction (`db sql -f`),
/// recorded in the query history like a single statement.
pub fn run_script(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: &str,
    script: &str,
    write: bool,
    timeout: Duration,
) -> Result<(String, ScriptOutcome)> {
    recorded(catalog, actor, reference, script, write, |tenant| {
        let outcome = tenant.script(script, write, timeout)?;
        Ok((outcome, outcome.changes))
    })
}

/// Runs `work` on one live tenant's database between a `running` entry in the query history
/// and its outcome; `work` returns its result and the row count to record.
fn recorded<T>(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: &str,
    statement: &str,
    write: bool,
    work: impl FnOnce(&dyn TenantDatabase) -> Result<(T, u64)>,
) -> Result<(String, T)> {
    let customer = live_customer(catalog, reference)?;
    let tenant = Engines::new(actor.home).tenant(&customer.placement)?;
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
    let result = work(tenant.as_ref());
    let applied = if write { tenant.applied().ok() } else { None };
    let rows = result.as_ref().map_or(0, |(_, n)| *n);
    let error = result.as_ref().err().map(ToString::to_string);
    catalog.write(|tx| {
        tenants::finish_query(tx, history_id, millis(started), rows, error.as_deref())?;
        if let Some(applied) = &applied {
            tenants::record_applied(tx, customer.id, applied)?;
            let version = applied.iter().map(|m| m.version).max().unwrap_or(0);
            tenants::record_run(tx, customer.id, version, TenantMigrationStatus::Ok, None)?;
        }
        Ok(())
    })?;
    Ok((customer.slug, result?.0))
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

/// The column of a fleet-wide result that names the tenant; a query column of the same
/// name is renamed (`tenant_2`), as duplicate columns are in single-tenant results.
pub const TENANT_COLUMN: &str = "tenant";

/// Runs one read-only statement on every active tenant, `jobs` local files and
/// `per_server` tenants of each database server at a time, each as its own tenant. The
/// rows of the tenants it ran on are kept; a tenant it failed on makes the outcome
/// partial, exit 8.
pub fn run_all(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    statement: &str,
    (jobs, per_server): (usize, usize),
    timeout: Duration,
) -> Result<Reported<FleetResult>> {
    if statement.trim().trim_matches(';').trim().is_empty() {
        return Err(Error::usage("the SQL statement is empty"));
    }
    let active: Vec<TenantRow> = tenants::live_tenants(catalog.conn(), None)?
        .into_iter()
        .filter(|t| t.status == CustomerStatus::Active)
        .collect();
    let engines = Engines::new(actor.home);
    let lanes = engines.lanes(active.iter().map(|t| &t.placement), jobs, per_server);
    let outcomes = fan_out_all_in_lanes(&active, &lanes, |tenant| {
        let started = Instant::now();
        let result = engines
            .tenant(&tenant.placement)
            .and_then(|db| db.query_collected(statement, false, timeout));
        (millis(started), result)
    });
    catalog.write(|tx| {
        for (tenant, (duration_ms, result)) in active.iter().zip(&outcomes) {
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
    for (tenant, (_, result)) in active.iter().zip(outcomes) {
        match result {
            Ok(output) => {
                let names = output.unique_columns_after(&[TENANT_COLUMN]);
                if fleet.columns.is_empty() {
                    fleet.columns = names.clone();
                }
                for row in output.rows {
                    let mut prefixed = Map::new();
                    prefixed.insert(TENANT_COLUMN.to_string(), Value::String(tenant.slug.clone()));
                    prefixed.extend(names.iter().skip(1).cloned().zip(row));
                    fleet.rows.push(prefixed);
                }
            }
            Err(err) => fleet.failures.push(FleetFailure {
                customer: tenant.slug.clone(),
                error: err.to_string(),
            }),
        }
    }
    let failure = (!fleet.failures.is_empty()).then(|| {
        Error::partial(format!(
            "the query failed on {} of {} tenants",
            fleet.failures.len(),
            fleet.tenants
        ))
    });
    Ok(Reported::new(fleet, failure))
}

/// One tenant's line in the `db vacuum` report.
#[derive(Debug, Clone, Serialize)]
pub struct VacuumResult {
    pub customer: String,
    pub customer_id: i64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub reclaimed_bytes: u64,
    pub ms: f64,
    pub error: Option<String>,
}

/// What `db vacuum` records in the query history for each tenant.
const VACUUM_SQL: &str = "VACUUM; ANALYZE";

/// `VACUUM` and `ANALYZE` on the named tenants (or every one that is not deleted: a
/// customer suspended for storage is the one that needs it most), `jobs` local files
/// and `per_server` tenants of each database server at a time.
/// Each run is recorded in the query history; a tenant it failed on makes the outcome
/// partial, exit 8.
pub fn vacuum(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    references: &[String],
    jobs: usize,
    per_server: usize,
) -> Result<Reported<Vec<VacuumResult>>> {
    let ids = references
        .iter()
        .map(|r| live_customer(catalog, r).map(|c| c.id))
        .collect::<Result<Vec<_>>>()?;
    let chosen = tenants::live_tenants(catalog.conn(), (!ids.is_empty()).then_some(ids.as_slice()))?;
    let engines = Engines::new(actor.home);
    let lanes = engines.lanes(chosen.iter().map(|t| &t.placement), jobs, per_server);
    let results = fan_out_all_in_lanes(&chosen, &lanes, |tenant| {
        let started = Instant::now();
        let (outcome, size) = match engines.tenant(&tenant.placement) {
            Ok(db) => (vacuum_one(db.as_ref()), db.size_bytes()),
            Err(err) => (Err(err), 0),
        };
        VacuumResult {
            customer: tenant.slug.clone(),
            customer_id: tenant.customer_id,
            bytes_before: outcome.as_ref().map_or(size, |v| v.bytes_before),
            bytes_after: outcome.as_ref().map_or(size, |v| v.bytes_after),
            reclaimed_bytes: outcome
                .as_ref()
                .map_or(0, |v| v.bytes_before.saturating_sub(v.bytes_after)),
            ms: millis(started),
            error: outcome.err().map(|e| e.to_string()),
        }
    });
    catalog.write(|tx| {
        for result in &results {
            tenants::record_query(
                tx,
                &QueryRecord {
                    actor: actor.name,
                    customer_id: result.customer_id,
                    customer_slug: &result.customer,
                    sql: VACUUM_SQL,
                    write: true,
                    duration_ms: result.ms,
                    row_count: 0,
                    error: result.error.clone(),
                },
            )?;
        }
        Ok(())
    })?;
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    let failure = (failed > 0).then(|| {
        Error::partial(format!("vacuum failed on {failed} of {} tenants", results.len()))
            .with_hint("see the error column")
    });
    Ok(Reported::new(results, failure))
}

fn vacuum_one(tenant: &dyn TenantDatabase) -> Result<crate::engine::Vacuumed> {
    tenant.check_own()?;
    // A server that cannot be asked fails the tenant with its own cause.
    if !tenant.presence()? {
        return Err(Error::refused(format!(
            "tenant database {} is missing",
            tenant.describe()
        )));
    }
    tenant.vacuum()
}

/// `db history`: which runs to list.
#[derive(Debug, Clone, Default)]
pub struct HistoryRequest {
    pub customer: Option<String>,
    pub since: Option<String>,
    pub failed: bool,
    pub limit: Option<u64>,
}

/// The query history, newest first. A deleted customer's runs stay listed.
pub fn history(catalog: &Catalog, request: &HistoryRequest) -> Result<Vec<tenants::HistoryEntry>> {
    let customer_id = request
        .customer
        .as_deref()
        .map(|r| customers::resolve(catalog.conn(), r).map(|c| c.id))
        .transpose()?;
    let since = time::parse_since(request.since.as_deref())?;
    tenants::history(
        catalog.conn(),
        &tenants::HistoryFilter {
            customer_id,
            since,
            failed: request.failed,
            limit: request.limit,
        },
    )
}
