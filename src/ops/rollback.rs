//! `db rollback`: tenant migrations undone by the operator's down scripts
//! (`V<n>__<name>.down.sql`), fanned out like `db migrate` with the same lock, ledger,
//! canary and failure rules. Every tenant's path down is checked against the down
//! scripts before any tenant is touched.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use refinery::Migration;

use super::tenants::{
    DownChecksums, EngineSets, FanOut, TenantResult, chosen_ids, load_migrations, migrate_failure,
    record_down_scripts, rollout_lock,
};
use super::{Actor, Progress, Reported};
use crate::catalog::Catalog;
use crate::catalog::states::MigrationAction;
use crate::catalog::tenants::{self, TenantRow};
use crate::engine::{EngineKind, Engines, Outcome, TenantRun};
use crate::error::{Error, Result};
use crate::migrations::{self, DownScript, MigrationId};

/// What `--confirm` must say for `--to 0`, which empties every chosen tenant.
pub const CONFIRM_ALL_DATA: &str = "all-data";

#[derive(Debug, Clone, Default)]
pub struct RollbackRequest {
    /// Customers to roll back; empty means all that are not deleted.
    pub customers: Vec<String>,
    /// The version every chosen tenant above it is taken back to.
    pub to: i64,
    pub dry_run: bool,
    pub jobs: usize,
    pub jobs_per_server: usize,
    pub continue_on_error: bool,
    pub canary: Option<usize>,
    pub confirm: Option<String>,
}

/// Each engine's down scripts, loaded beside its migrations.
struct DownSets {
    dir: std::path::PathBuf,
    by_engine: Vec<(EngineKind, Vec<DownScript>)>,
}

impl DownSets {
    fn load(dir: &Path, sets: &EngineSets) -> Result<Self> {
        let mut by_engine = vec![(
            EngineKind::Sqlite,
            migrations::load_down_scripts(dir, &sets.sqlite)?,
        )];
        for (engine, set) in &sets.servers {
            let own = migrations::engine_dir(dir, *engine);
            by_engine.push((*engine, migrations::load_down_scripts(&own, set)?));
        }
        Ok(DownSets {
            dir: dir.to_path_buf(),
            by_engine,
        })
    }

    fn checksums(&self) -> DownChecksums {
        self.by_engine
            .iter()
            .map(|(engine, downs)| {
                (
                    *engine,
                    downs.iter().map(|d| (d.version, d.checksum.clone())).collect(),
                )
            })
            .collect()
    }

    fn of(&self, engine: EngineKind) -> &[DownScript] {
        self.by_engine
            .iter()
            .find(|(kind, _)| *kind == engine)
            .map_or(&[], |(_, downs)| downs)
    }

    fn expected_path(&self, engine: EngineKind, version: i64, name: &str) -> String {
        migrations::engine_dir(&self.dir, engine)
            .join(format!("V{version}__{name}{}", migrations::DOWN_SUFFIX))
            .display()
            .to_string()
    }
}

/// Takes every chosen tenant above `request.to` back to it. Tenants at or below it
/// are reported current without being opened. Results come back in customer order.
pub fn rollback(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    lock_timeout: Duration,
    request: &RollbackRequest,
    progress: &dyn Progress,
) -> Result<Reported<Vec<TenantResult>>> {
    let ids = chosen_ids(catalog, &request.customers)?;
    let (dir, migrations) = load_migrations(catalog, actor.home)?;
    check_target(request, &migrations)?;
    // The same lock as `db migrate`: one of them at a time per home.
    let _lock = rollout_lock(actor, lock_timeout, request.dry_run)?;
    let chosen = tenants::live_tenants(catalog.conn(), (!ids.is_empty()).then_some(ids.as_slice()))?;
    let sets = EngineSets::load(&dir, migrations, &chosen)?;
    let downs = DownSets::load(&dir, &sets)?;
    let ledgers = tenants::ledgers(catalog.conn())?;
    let recorded_downs = tenants::down_checksums(catalog.conn())?;
    let to = request.to;

    let mut results: HashMap<i64, TenantResult> = HashMap::new();
    let mut to_run = Vec::new();
    for tenant in &chosen {
        let ledger = ledgers.get(&tenant.customer_id).map_or(&[][..], Vec::as_slice);
        if tenant.schema_version <= to && ledger.iter().all(|m| m.version <= to) {
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
            refuse_missing_down(tenant, ledger, &sets, &downs, to)?;
            to_run.push(tenant.clone());
        }
    }

    let engines = Engines::new(actor.home);
    let plan = FanOut {
        engines: &engines,
        dry_run: request.dry_run,
        jobs: request.jobs,
        jobs_per_server: request.jobs_per_server,
        stop_on_failure: !request.continue_on_error,
        canary: request.canary,
        action: MigrationAction::Rollback,
        actor: actor.name,
    };
    let roll_back_one = |tenant: &TenantRow| {
        let started = Instant::now();
        let engine = tenant.placement.engine;
        let recorded = recorded_downs
            .get(&tenant.customer_id)
            .map_or(&[][..], Vec::as_slice);
        if let Some(problem) = edited_down(recorded, downs.of(engine), to) {
            let mut run = TenantRun::failed(tenant.schema_version, Outcome::Drift, problem, started);
            run.pending = undo_path(tenant, ledgers.get(&tenant.customer_id), to);
            return run;
        }
        match engines.tenant(&tenant.placement) {
            Ok(db) => db.roll_back(sets.of(engine), downs.of(engine), to, request.dry_run),
            Err(err) => TenantRun::failed_with(tenant.schema_version, &err, started),
        }
    };
    let left = |tenant: &TenantRow| undo_path(tenant, ledgers.get(&tenant.customer_id), to);
    let (done, mut unrecorded) = plan.roll_out(catalog, &to_run, progress, &roll_back_one, &left);
    results.extend(done);
    if !request.dry_run {
        record_down_scripts(catalog, &downs.checksums(), &mut unrecorded);
    }
    let in_order: Vec<TenantResult> = chosen
        .iter()
        .filter_map(|t| results.remove(&t.customer_id))
        .collect();
    let failure = migrate_failure(&in_order, unrecorded, "rollback");
    Ok(Reported::new(in_order, failure))
}

/// `--to` must name a migration below the newest, or be 0 with `--confirm all-data`.
fn check_target(request: &RollbackRequest, migrations: &[Migration]) -> Result<()> {
    let newest = migrations::newest_version(migrations);
    let to = request.to;
    let exists = migrations.iter().any(|m| i64::from(m.version()) == to);
    if to < 0 || (to > 0 && !exists) {
        return Err(
            Error::usage(format!("--to {to} is not a tenant migration version")).with_hint(format!(
                "the versions are {}",
                migrations
                    .iter()
                    .map(|m| format!("V{}", m.version()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
    }
    if to >= newest {
        return Err(Error::usage(format!(
            "--to {to} is not below the newest tenant migration (V{newest}): there is nothing to undo"
        ))
        .with_hint("name an older version"));
    }
    if to == 0 && request.confirm.as_deref() != Some(CONFIRM_ALL_DATA) {
        let message = match &request.confirm {
            None => "--to 0 undoes every migration and drops every table with its rows".to_string(),
            Some(other) => format!(
                "--confirm '{}' does not confirm --to 0",
                crate::validate::printable(other)
            ),
        };
        return Err(Error::refused(message).with_hint(format!("pass --confirm {CONFIRM_ALL_DATA}")));
    }
    Ok(())
}

/// The versions a tenant has applied above `to`, newest first: from the catalog's
/// ledger, or, without one, every version up to the one the catalog records.
fn undo_path(tenant: &TenantRow, ledger: Option<&Vec<MigrationId>>, to: i64) -> Vec<i64> {
    let mut versions: Vec<i64> = match ledger {
        Some(ledger) if !ledger.is_empty() => ledger.iter().map(|m| m.version).collect(),
        _ => (1..=tenant.schema_version).collect(),
    };
    versions.retain(|v| *v > to);
    versions.sort_unstable_by(|a, b| b.cmp(a));
    versions
}

/// Refuses (exit 9), before any tenant is touched, a tenant whose way down to `to`
/// needs a down script its engine's folder lacks.
fn refuse_missing_down(
    tenant: &TenantRow,
    ledger: &[MigrationId],
    sets: &EngineSets,
    downs: &DownSets,
    to: i64,
) -> Result<()> {
    let engine = tenant.placement.engine;
    let ups = sets.of(engine);
    let path = undo_path(tenant, (!ledger.is_empty()).then(|| ledger.to_vec()).as_ref(), to);
    for version in path {
        if downs.of(engine).iter().any(|d| d.version == version) {
            continue;
        }
        let name = ups
            .iter()
            .find(|m| i64::from(m.version()) == version)
            .map(|m| m.name().to_string())
            .or_else(|| {
                ledger
                    .iter()
                    .find(|m| m.version == version)
                    .map(|m| m.name.clone())
            })
            .unwrap_or_default();
        return Err(Error::invalid_input(format!(
            "V{version}__{name} has no down script: {} is missing, and {} is at V{} ({engine}); nothing was rolled back",
            downs.expected_path(engine, version, &name),
            tenant.slug,
            tenant.schema_version
        ))
        .with_hint(format!(
            "write the down script, or roll back no further than --to {version}"
        )));
    }
    Ok(())
}

/// Why a tenant's rollback is refused as drift: a down script it would run differs
/// from the one recorded when it applied the migration.
fn edited_down(recorded: &[(i64, String)], downs: &[DownScript], to: i64) -> Option<String> {
    recorded
        .iter()
        .filter(|(version, _)| *version > to)
        .find_map(|(version, checksum)| {
            let file = downs.iter().find(|d| d.version == *version)?;
            (file.checksum != *checksum).then(|| {
                format!(
                    "{} changed after V{version} was applied; nothing was run \
                     (review the change; 'tenantctl doctor --fix' accepts it)",
                    file.file_name()
                )
            })
        })
}
