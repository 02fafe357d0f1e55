//! Tenant databases across the fleet: `db migrate` fanned out over a bounded pool with
//! a catalog ledger, `db status`, `db path`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use refinery::Migration;
use serde::Serialize;

use super::{Actor, Progress, Reported, config, customers};
use crate::catalog::Catalog;
use crate::catalog::model::Customer;
use crate::catalog::model::NewAuditEvent;
use crate::catalog::states::{CustomerStatus, MigrationAction, TenantMigrationStatus};
use crate::catalog::tenants::{self, TenantRow};
use crate::engine::{EngineKind, Engines, Outcome, Placement, PlacementView, TenantDatabase, TenantRun};
use crate::error::{Error, Result};
use crate::fan_out::{Flow, Load, Stop, default_jobs, fan_out_in_lanes};
use crate::home::Home;
use crate::lock::HomeLock;
use crate::migrations::{self, MigrationId};
use crate::validate;

/// A customer whose tenant database may be worked on: exit 6 when deleted.
pub fn live_customer(catalog: &Catalog, reference: &str) -> Result<Customer> {
    let customer = customers::resolve(catalog.conn(), reference)?;
    if customer.status == CustomerStatus::Deleted {
        return Err(
            Error::refused(format!("customer {} is deleted", customer.slug)).with_hint(format!(
                "run 'tenantctl customer undelete {}' first",
                customer.slug
            )),
        );
    }
    Ok(customer)
}

/// `db path`: the tenant database's absolute path.
#[derive(Debug, Clone, Serialize)]
pub struct DbPath {
    pub customer: String,
    /// The file for SQLite; on a server, the tenant role's URL without its password.
    pub path: String,
    pub placement: PlacementView,
}

pub fn path(catalog: &Catalog, home: &Home, reference: &str) -> Result<DbPath> {
    let customer = live_customer(catalog, reference)?;
    // A path that is a link would send `sqlite3` to another tenant's file.
    let engines = Engines::new(home);
    engines.tenant(&customer.placement)?.check_own()?;
    let placement = engines.view(&customer.placement);
    Ok(DbPath {
        customer: customer.slug,
        path: placement.path.clone().unwrap_or_else(|| placement.url(None)),
        placement,
    })
}

pub(super) fn load_migrations(catalog: &Catalog, home: &Home) -> Result<(PathBuf, Vec<Migration>)> {
    let dir = config::tenant_migrations_dir(catalog, home)?;
    let migrations = migrations::load_migrations(&dir)?;
    Ok((dir, migrations))
}

/// The migration files of each engine the chosen tenants live on: SQLite's always,
/// each server engine's when a tenant is on one, checked version for version against
/// SQLite's first (exit 9 before anything runs).
pub(super) struct EngineSets {
    pub sqlite: Vec<Migration>,
    pub servers: Vec<(EngineKind, Vec<Migration>)>,
}

impl EngineSets {
    pub fn load(dir: &Path, sqlite: Vec<Migration>, tenants: &[TenantRow]) -> Result<Self> {
        let mut servers = Vec::new();
        for engine in [EngineKind::Postgres, EngineKind::Mysql] {
            if tenants.iter().any(|t| t.placement.engine == engine) {
                let set = migrations::load_engine_migrations(dir, engine, &[EngineKind::Sqlite])?;
                servers.push((engine, set));
            }
        }
        Ok(EngineSets { sqlite, servers })
    }

    pub fn of(&self, engine: EngineKind) -> &[Migration] {
        self.servers
            .iter()
            .find(|(kind, _)| *kind == engine)
            .map_or(&self.sqlite, |(_, set)| set)
    }
}

#[derive(Debug, Clone, Default)]
pub struct MigrateRequest {
    /// Customers to migrate; empty means all that are not deleted.
    pub customers: Vec<String>,
    pub dry_run: bool,
    pub target: Option<i64>,
    pub jobs: usize,
    /// Connections held at once on each database server.
    pub jobs_per_server: usize,
    pub continue_on_error: bool,
    pub canary: Option<usize>,
}

/// One tenant's line in the `db migrate` report.
#[derive(Debug, Clone, Serialize)]
pub struct TenantResult {
    pub customer: String,
    pub customer_id: i64,
    pub from: i64,
    pub to: i64,
    pub status: Outcome,
    pub pending: Vec<i64>,
    pub error: Option<String>,
    pub ms: f64,
    /// It failed because its server did not answer.
    #[serde(skip)]
    pub server_down: bool,
}

impl TenantResult {
    pub(super) fn new(tenant: &TenantRow, run: &TenantRun) -> Self {
        TenantResult {
            customer: tenant.slug.clone(),
            customer_id: tenant.customer_id,
            from: run.from,
            to: run.to,
            status: run.outcome,
            pending: run.pending.clone(),
            error: run.error.clone(),
            ms: run.millis,
            server_down: run.server_down,
        }
    }

    pub fn failed(&self) -> bool {
        matches!(self.status, Outcome::Failed | Outcome::Drift)
    }
}

/// The ids of the customers `references` name (exit 6 for a deleted one); empty
/// when none is named, which means every live tenant.
pub(super) fn chosen_ids(catalog: &Catalog, references: &[String]) -> Result<Vec<i64>> {
    references
        .iter()
        .map(|r| live_customer(catalog, r).map(|c| c.id))
        .collect()
}

/// The home lock one `db migrate` or `db rollback` holds at a time; none for a dry
/// run, which changes nothing.
pub(super) fn rollout_lock(actor: Actor<'_>, timeout: Duration, dry_run: bool) -> Result<Option<HomeLock>> {
    match dry_run {
        true => Ok(None),
        false => HomeLock::acquire(&actor.home.lock_file(), timeout).map(Some),
    }
}

/// Applies tenant migrations to every chosen tenant, in parallel, each tenant in its
/// own transaction. Current tenants are skipped from the catalog's ledger without
/// opening their files. Results come back in customer order.
pub fn migrate(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    lock_timeout: Duration,
    request: &MigrateRequest,
    progress: &dyn Progress,
) -> Result<Reported<Vec<TenantResult>>> {
    let ids = chosen_ids(catalog, &request.customers)?;
    let (dir, migrations) = load_migrations(catalog, actor.home)?;
    let newest = migrations::newest_version(&migrations);
    match request.target {
        Some(t) if t < 0 => return Err(Error::usage("--target must be 0 or more")),
        Some(t) if t > newest => {
            return Err(
                Error::usage(format!("--target {t} is beyond the newest tenant migration")).with_hint(
                    format!("the newest is V{newest}; leave --target out to migrate to it"),
                ),
            );
        }
        _ => {}
    }
    let _lock = rollout_lock(actor, lock_timeout, request.dry_run)?;
    let chosen = tenants::live_tenants(catalog.conn(), (!ids.is_empty()).then_some(ids.as_slice()))?;
    let sets = EngineSets::load(&dir, migrations, &chosen)?;
    let downs = down_checksums(&dir, &sets)?;
    let files: Vec<MigrationId> = sets.sqlite.iter().map(MigrationId::of).collect();
    let goal = request.target.unwrap_or(newest);
    // Each tenant's ledger is compared with its own engine's files.
    let mut drifted = tenants::drifted_tenants(catalog.conn(), &files)?;
    for (engine, set) in &sets.servers {
        let engine_files: Vec<MigrationId> = set.iter().map(MigrationId::of).collect();
        let drifted_there = tenants::drifted_tenants(catalog.conn(), &engine_files)?;
        let on_engine: HashSet<i64> = chosen
            .iter()
            .filter(|t| t.placement.engine == *engine)
            .map(|t| t.customer_id)
            .collect();
        drifted.retain(|id| !on_engine.contains(id));
        drifted.extend(drifted_there.into_iter().filter(|id| on_engine.contains(id)));
    }
    let engines = Engines::new(actor.home);
    let ledger = tenants::ledger_counts(catalog.conn())?;

    let mut results: HashMap<i64, TenantResult> = HashMap::new();
    let mut to_run = Vec::new();
    for tenant in &chosen {
        let expected = files
            .iter()
            .filter(|f| f.version <= tenant.schema_version)
            .count() as i64;
        let current = tenant.migration_status == TenantMigrationStatus::Ok
            && tenant.schema_version == goal
            && !drifted.contains(&tenant.customer_id)
            && ledger.get(&tenant.customer_id).copied().unwrap_or(0) == expected
            // One lstat: a tenant path turned into a symbolic link fails, not passes.
            && engines.tenant(&tenant.placement).is_ok_and(|db| db.check_own().is_ok());
        if current {
            let run = TenantRun {
                from: tenant.schema_version,
                to: tenant.schema_version,
                outcome: Outcome::Current,
                error: None,
                pending: Vec::new(),
                applied: None,
                millis: 0.0,
                server_down: false,
            };
            results.insert(tenant.customer_id, TenantResult::new(tenant, &run));
        } else {
            to_run.push(tenant.clone());
        }
    }

    let plan = FanOut {
        engines: &engines,
        dry_run: request.dry_run,
        jobs: request.jobs,
        jobs_per_server: request.jobs_per_server,
        stop_on_failure: !request.continue_on_error,
        canary: request.canary,
        action: MigrationAction::Migrate,
        actor: actor.name,
    };
    let migrate_one = |tenant: &TenantRow| match engines.tenant(&tenant.placement) {
        Ok(db) => db.migrate(sets.of(tenant.placement.engine), request.target, request.dry_run),
        Err(err) => TenantRun::failed_with(tenant.schema_version, &err, Instant::now()),
    };
    // What a tenant not started still lacks: a stopped rollout shows what is left.
    let left = |tenant: &TenantRow| -> Vec<i64> {
        files
            .iter()
            .map(|f| f.version)
            .filter(|v| *v > tenant.schema_version && *v <= goal)
            .collect()
    };
    let (done, mut unrecorded) = plan.roll_out(catalog, &to_run, progress, &migrate_one, &left);
    results.extend(done);
    if !request.dry_run {
        // Down scripts first seen now are what a later rollback is judged against.
        record_down_scripts(catalog, &downs, &mut unrecorded);
    }
    let in_order: Vec<TenantResult> = chosen
        .iter()
        .filter_map(|t| results.remove(&t.customer_id))
        .collect();
    let failure = migrate_failure(&in_order, unrecorded, "migrate");
    Ok(Reported::new(in_order, failure))
}

/// Each engine's down scripts, as (version, checksum).
pub(super) type DownChecksums = Vec<(EngineKind, Vec<(i64, String)>)>;

/// The down scripts of each engine in `sets`: loaded before anything runs, so that a
/// down script without its migration is refused (exit 9) before any tenant is touched.
pub(super) fn down_checksums(dir: &Path, sets: &EngineSets) -> Result<DownChecksums> {
    let mut all = vec![(EngineKind::Sqlite, sets.sqlite.as_slice())];
    all.extend(sets.servers.iter().map(|(engine, set)| (*engine, set.as_slice())));
    all.into_iter()
        .map(|(engine, set)| {
            let downs = migrations::load_down_scripts(&migrations::engine_dir(dir, engine), set)?;
            Ok((
                engine,
                downs.into_iter().map(|d| (d.version, d.checksum)).collect(),
            ))
        })
        .collect()
}

/// Records, for every tenant that has applied a migration with no down script on
/// record, the one its engine's folder holds now. A catalog that cannot take it makes
/// the run's `unrecorded`, as for its results.
pub(super) fn record_down_scripts(
    catalog: &mut Catalog,
    found: &DownChecksums,
    unrecorded: &mut Option<String>,
) {
    if unrecorded.is_some() {
        return;
    }
    let written = catalog.write(|tx| {
        for (engine, downs) in found {
            tenants::record_down_scripts(tx, *engine, downs)?;
        }
        Ok(())
    });
    if let Err(err) = written {
        *unrecorded = Some(err.to_string());
    }
}

/// A rollout that did not finish everywhere is a partial failure, exit 8: a tenant
/// failed (or was not started after one did), or the catalog could not record every
/// result, though the tenant files are right.
pub(super) fn migrate_failure(
    results: &[TenantResult],
    unrecorded: Option<String>,
    command: &str,
) -> Option<Error> {
    if let Some(error) = unrecorded {
        return Some(
            Error::partial(format!("the catalog could not record every result: {error}")).with_hint(
                "the tenant files are right; run 'tenantctl doctor --fix' to bring the catalog along",
            ),
        );
    }
    let failed = results.iter().filter(|r| r.failed()).count();
    let skipped = results.iter().filter(|r| r.status == Outcome::Skipped).count();
    let down = results.iter().filter(|r| r.server_down).count();
    (failed > 0).then(|| {
        let (unreachable, hint) = match down {
            0 => (
                String::new(),
                format!(
                    "fix the {} and run 'tenantctl db {command}' again",
                    if command == "rollback" {
                        "down script"
                    } else {
                        "migration"
                    }
                ),
            ),
            _ => (
                format!(" ({down} on servers that did not answer)"),
                format!(
                    "bring the server back ('tenantctl server test NAME') and run 'tenantctl db {command}' again"
                ),
            ),
        };
        Error::partial(format!(
            "{failed} of {} tenants failed{unreachable}, {skipped} not started",
            results.len()
        ))
        .with_hint(format!("see the error column; {hint}"))
    })
}

/// The settings of one fan-out over tenants, forward or back.
pub(super) struct FanOut<'a> {
    pub engines: &'a Engines,
    pub dry_run: bool,
    pub jobs: usize,
    pub jobs_per_server: usize,
    pub stop_on_failure: bool,
    pub canary: Option<usize>,
    pub action: MigrationAction,
    pub actor: &'a str,
}

/// One tenant's run, on a worker thread.
pub(super) type Work<'w> = dyn Fn(&TenantRow) -> TenantRun + Sync + 'w;

impl FanOut<'_> {
    /// Runs `work` on `to_run`, the canary first when asked, recording each result in
    /// the catalog as it comes. Returns every tenant's result by customer id (those
    /// never started as skipped, with `left` as what they still have pending) and,
    /// when the catalog could not record a result, why.
    pub fn roll_out(
        &self,
        catalog: &mut Catalog,
        to_run: &[TenantRow],
        progress: &dyn Progress,
        work: &Work<'_>,
        left: &dyn Fn(&TenantRow) -> Vec<i64>,
    ) -> (HashMap<i64, TenantResult>, Option<String>) {
        progress.start(to_run.len() as u64);
        let canary = self.canary.unwrap_or(0).min(to_run.len());
        let (first, rest) = to_run.split_at(canary);
        let mut unrecorded = None;
        let mut done = self.run(catalog, first, true, progress, &mut unrecorded, work);
        let canary_failed = done.iter().any(|(_, r)| r.failed());
        if !canary_failed && unrecorded.is_none() {
            done.extend(self.run(catalog, rest, false, progress, &mut unrecorded, work));
        }
        progress.finish();
        let mut results: HashMap<i64, TenantResult> = done
            .into_iter()
            .map(|(tenant, result)| (tenant.customer_id, result))
            .collect();
        for tenant in to_run {
            results.entry(tenant.customer_id).or_insert_with(|| TenantResult {
                customer: tenant.slug.clone(),
                customer_id: tenant.customer_id,
                from: tenant.schema_version,
                to: tenant.schema_version,
                status: Outcome::Skipped,
                pending: left(tenant),
                error: Some(
                    if canary_failed {
                        "a canary tenant failed"
                    } else {
                        "an earlier tenant failed"
                    }
                    .to_string(),
                ),
                ms: 0.0,
                server_down: false,
            });
        }
        (results, unrecorded)
    }

    /// Runs `work` on `tenants` on `jobs` threads while this thread records each
    /// result in the catalog, batched, so an interrupted run resumes where it stopped.
    /// With `all_must_finish` (the canary) every tenant runs even after a failure.
    fn run(
        &self,
        catalog: &mut Catalog,
        tenants: &[TenantRow],
        all_must_finish: bool,
        progress: &dyn Progress,
        unrecorded: &mut Option<String>,
        work: &Work<'_>,
    ) -> Vec<(TenantRow, TenantResult)> {
        // A server that is down fails its own tenants, not the rollout elsewhere.
        let stop = if self.stop_on_failure && !all_must_finish {
            Stop::OnFirstError(|run: &TenantRun| {
                matches!(run.outcome, Outcome::Failed | Outcome::Drift) && !run.server_down
            })
        } else {
            Stop::Never
        };
        let one = |tenant: &TenantRow| {
            let mut run = work(tenant);
            if run.applied.is_none() && run.outcome == Outcome::Failed {
                // It could not even be read: it is where the catalog last saw it.
                (run.from, run.to) = (tenant.schema_version, tenant.schema_version);
            }
            run
        };
        let lanes = self.engines.lanes(
            tenants.iter().map(|t| &t.placement),
            self.jobs.max(1),
            self.jobs_per_server.max(1),
        );
        let runs = fan_out_in_lanes(tenants, &lanes, stop, progress, one, |batch| {
            if !self.dry_run
                && unrecorded.is_none()
                && let Err(err) = record(catalog, tenants, batch, self.action, self.actor)
            {
                // Keep the report of what the workers did; start no new tenant.
                *unrecorded = Some(err.to_string());
                return Flow::Stop;
            }
            Flow::Continue
        });
        tenants
            .iter()
            .zip(runs)
            .filter_map(|(tenant, run)| Some((tenant.clone(), TenantResult::new(tenant, &run?))))
            .collect()
    }
}

/// Writes a batch of results to the catalog in one transaction; each tenant a
/// rollback took back is an audited `db.rollback`.
fn record(
    catalog: &mut Catalog,
    tenants: &[TenantRow],
    batch: &[(usize, TenantRun)],
    action: MigrationAction,
    actor: &str,
) -> Result<()> {
    catalog.write_audited(actor, |tx| {
        let mut events = Vec::new();
        for (index, run) in batch {
            let tenant = &tenants[*index];
            let status = match run.outcome {
                Outcome::Failed => TenantMigrationStatus::Failed,
                Outcome::Drift => TenantMigrationStatus::Drift,
                _ => TenantMigrationStatus::Ok,
            };
            let version = match &run.applied {
                Some(applied) => {
                    tenants::record_applied(tx, tenant.customer_id, applied)?;
                    applied.iter().map(|m| m.version).max().unwrap_or(0)
                }
                None => tenant.schema_version,
            };
            tenants::record_run_of(
                tx,
                tenant.customer_id,
                version,
                status,
                run.error.as_deref(),
                action,
            )?;
            if action == MigrationAction::Rollback && run.from != version {
                events.push(NewAuditEvent::new(
                    "db.rollback",
                    "customer",
                    tenant.slug.clone(),
                    Some(tenant.customer_id),
                    serde_json::json!({
                        "from": run.from,
                        "to": version,
                        "undone": run.pending,
                        "status": run.outcome,
                        "error": run.error,
                    }),
                ));
            }
        }
        Ok(((), events))
    })
}

#[derive(Debug, Clone, Default)]
pub struct StatusRequest {
    pub customers: Vec<String>,
    pub behind: bool,
    pub failed: bool,
    pub check: bool,
    /// Only the tenants on this server.
    pub server: Option<String>,
    /// Connections `--check` holds at once on each database server.
    pub jobs_per_server: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DbStatus {
    pub summary: DbSummary,
    pub tenants: Vec<TenantStatus>,
}

/// Tenants by where their migrations stand, and the bytes they take.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub tenants: usize,
    pub current: usize,
    pub behind: usize,
    pub failed: usize,
    pub total_bytes: u64,
}

impl Tally {
    fn count(&mut self, failed: bool, pending: usize, bytes: u64) {
        self.tenants += 1;
        self.total_bytes += bytes;
        if failed {
            self.failed += 1;
        } else if pending > 0 {
            self.behind += 1;
        } else {
            self.current += 1;
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DbSummary {
    #[serde(flatten)]
    pub counts: Tally,
    pub newest_migration: i64,
    /// With `--check`: tenants whose file failed the check.
    pub check_failed: usize,
    /// The same counts for each server the tenants live on.
    pub servers: Vec<ServerSummary>,
}

/// One server's tenants in the `db status` summary.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSummary {
    pub server: String,
    pub engine: EngineKind,
    #[serde(flatten)]
    pub counts: Tally,
    /// Why the server could not be asked for its tenants' sizes, if it could not.
    pub unreachable: Option<String>,
}

impl DbSummary {
    pub fn line(&self) -> String {
        let checks = if self.check_failed > 0 {
            format!(", {} failed the check", self.check_failed)
        } else {
            String::new()
        };
        let mut line = format!(
            "{} tenants: {} current, {} behind, {} failed{checks} (newest migration V{}, {} bytes)",
            self.counts.tenants,
            self.counts.current,
            self.counts.behind,
            self.counts.failed,
            self.newest_migration,
            self.counts.total_bytes
        );
        // Per server only when there is more than one to tell apart.
        if self.servers.len() > 1 {
            for server in &self.servers {
                line.push_str(&format!(
                    "\n  {}: {} tenants, {} current, {} behind, {} failed",
                    server.server,
                    server.counts.tenants,
                    server.counts.current,
                    server.counts.behind,
                    server.counts.failed
                ));
            }
        }
        for server in self.servers.iter().filter(|s| s.unreachable.is_some()) {
            line.push_str(&format!(
                "\n  {}",
                server.unreachable.as_deref().unwrap_or_default()
            ));
        }
        line
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantStatus {
    pub customer: String,
    pub customer_id: i64,
    pub status: CustomerStatus,
    pub engine: EngineKind,
    pub server: String,
    pub path: String,
    pub size_bytes: u64,
    pub schema_version: i64,
    pub pending: usize,
    pub migration_status: TenantMigrationStatus,
    pub last_migrated_at: Option<String>,
    pub last_error: Option<String>,
    /// With `--check`: `ok`, or what is wrong with the file.
    pub check: Option<String>,
}

/// Per-tenant state from the catalog; with `check`, each database is opened and
/// checked too (a bounded number at once per server), and one that fails its check
/// makes the outcome a verification failure, exit 7.
pub fn status(catalog: &Catalog, home: &Home, request: &StatusRequest) -> Result<Reported<DbStatus>> {
    let ids = request
        .customers
        .iter()
        .map(|r| live_customer(catalog, r).map(|c| c.id))
        .collect::<Result<Vec<_>>>()?;
    let (_, migrations) = load_migrations(catalog, home)?;
    let newest = migrations::newest_version(&migrations);
    let engines = Engines::new(home);
    if let Some(name) = &request.server {
        engines.server(name)?;
    }
    let rows: Vec<TenantRow> =
        tenants::live_tenants(catalog.conn(), (!ids.is_empty()).then_some(ids.as_slice()))?
            .into_iter()
            .filter(|row| {
                request
                    .server
                    .as_ref()
                    .is_none_or(|name| row.placement.server == *name)
            })
            .collect();
    let mut summary = DbSummary {
        newest_migration: newest,
        ..Default::default()
    };
    let mut shown = Vec::new();
    for row in rows {
        let pending = migrations
            .iter()
            .filter(|m| i64::from(m.version()) > row.schema_version)
            .count();
        let failed = row.migration_status != TenantMigrationStatus::Ok;
        let (size_bytes, unreachable) = match engines.tenant(&row.placement)?.measured_bytes() {
            Ok(bytes) => (bytes, None),
            Err(err) if err.is_server_down() => (0, Some(err.to_string())),
            Err(_) => (0, None),
        };
        summary.counts.count(failed, pending, size_bytes);
        let on_server = server_summary(&mut summary.servers, &row);
        on_server.counts.count(failed, pending, size_bytes);
        on_server.unreachable = on_server.unreachable.take().or(unreachable);
        if (request.behind && pending == 0) || (request.failed && !failed) {
            continue;
        }
        shown.push(TenantStatus {
            check: None,
            customer: row.slug,
            customer_id: row.customer_id,
            status: row.status,
            engine: row.placement.engine,
            server: row.placement.server.clone(),
            path: row.placement.location.clone(),
            size_bytes,
            schema_version: row.schema_version,
            pending,
            migration_status: row.migration_status,
            last_migrated_at: row.migrated_at,
            last_error: row.migration_error,
        });
    }
    let mut unchecked = 0;
    if request.check {
        unchecked = check_all(&engines, &mut shown, request.jobs_per_server);
        summary.check_failed = shown
            .iter()
            .filter(|t| t.check.as_deref().is_some_and(|c| c != "ok"))
            .count()
            - unchecked;
    }
    let check_failed = summary.check_failed;
    // Damage found outranks tenants that could not be asked.
    let failure = if check_failed > 0 {
        Some(
            Error::verification(format!(
                "{check_failed} tenant database{} failed the check",
                if check_failed == 1 { "" } else { "s" }
            ))
            .with_hint("see the check column; 'tenantctl doctor' says more"),
        )
    } else {
        (unchecked > 0).then(|| {
            Error::partial(format!(
                "{unchecked} tenant database{} could not be checked: {} server did not answer",
                if unchecked == 1 { "" } else { "s" },
                if unchecked == 1 { "its" } else { "their" }
            ))
            .with_hint("see the check column; 'tenantctl server test NAME' says more")
        })
    };
    Ok(Reported::new(
        DbStatus {
            summary,
            tenants: shown,
        },
        failure,
    ))
}

/// The summary of the server `row` lives on, added the first time it is met.
fn server_summary<'s>(servers: &'s mut Vec<ServerSummary>, row: &TenantRow) -> &'s mut ServerSummary {
    let at = match servers.iter().position(|s| s.server == row.placement.server) {
        Some(at) => at,
        None => {
            servers.push(ServerSummary {
                server: row.placement.server.clone(),
                engine: row.placement.engine,
                counts: Tally::default(),
                unreachable: None,
            });
            servers.len() - 1
        }
    };
    &mut servers[at]
}

/// Opens and checks every shown tenant, the local files on a core's worth of workers
/// and at most `per_server` at once on each database server. Returns how many could
/// not be checked because their server did not answer.
fn check_all(engines: &Engines, shown: &mut [TenantStatus], per_server: usize) -> usize {
    let placements: Vec<Placement> = shown
        .iter()
        .map(|t| Placement {
            engine: t.engine,
            server: t.server.clone(),
            location: t.path.clone(),
        })
        .collect();
    let lanes = engines.lanes(&placements, default_jobs(Load::Compute), per_server);
    let versions: Vec<i64> = shown.iter().map(|t| t.schema_version).collect();
    let indexes: Vec<usize> = (0..shown.len()).collect();
    let checks = fan_out_in_lanes(
        &indexes,
        &lanes,
        Stop::Never,
        &super::NoProgress,
        |&i| match engines.tenant(&placements[i]) {
            Ok(tenant) => check_tenant(tenant.as_ref(), versions[i]),
            Err(err) => Ok(err.to_string()),
        },
        |_| Flow::Continue,
    );
    let mut unchecked = 0;
    for (tenant, check) in shown.iter_mut().zip(checks) {
        tenant.check = check.map(|check| {
            check.unwrap_or_else(|down| {
                unchecked += 1;
                down.to_string()
            })
        });
    }
    unchecked
}

/// Opens a tenant database: `ok`, or what is wrong with it; an error when its server
/// did not answer, which says nothing of the tenant.
pub fn check_tenant(tenant: &dyn TenantDatabase, recorded_version: i64) -> Result<String> {
    let found = match tenant.presence() {
        Ok(true) => tenant.check().and_then(|()| tenant.applied()),
        Ok(false) => return Ok("missing".to_string()),
        Err(err) => Err(err),
    };
    Ok(match found {
        Ok(applied) => {
            let actual = applied.iter().map(|m| m.version).max().unwrap_or(0);
            if actual == recorded_version {
                "ok".to_string()
            } else {
                format!("file is at V{actual}, catalog says V{recorded_version}")
            }
        }
        Err(err) if err.is_server_down() => return Err(err),
        Err(err) => err.to_string(),
    })
}

/// A slug or reference list for messages.
pub fn describe(names: &[String]) -> String {
    names
        .iter()
        .map(|n| validate::printable(n))
        .collect::<Vec<_>>()
        .join(", ")
}
