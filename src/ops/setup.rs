//! Setting up and inspecting a home: `init`, catalog `migrate`, `status`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::json;

use super::{Actor, config};
use crate::backup::states::{BackupKind, EntryScope, SetScope};
use crate::catalog::customers::{self, CountColumn};
use crate::catalog::model::NewAuditEvent;
use crate::catalog::states::CatalogMigrationStatus;
use crate::catalog::{Catalog, MigrationRecord};
use crate::engine::Engines;
use crate::error::{Error, Result};
use crate::home::Home;
use crate::lock::HomeLock;
use crate::{files, migrations};

#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    pub home: String,
    pub catalog: String,
    /// Whether this run created the catalog (false on a second run).
    pub created: bool,
    pub catalog_schema_version: i64,
    pub applied_migrations: Vec<MigrationRecord>,
    pub tenant_migrations_dir: String,
    pub starter_migrations_installed: usize,
}

/// Creates the home (0700), its folders, the catalog (0600, WAL) and the starter tenant
/// migrations, and applies catalog migrations. Running it again changes nothing.
pub fn init(
    actor: Actor<'_>,
    tenant_migrations: Option<&Path>,
    lock_timeout: std::time::Duration,
) -> Result<InitReport> {
    let home = actor.home;
    if home.root().exists() && !home.root().is_dir() {
        return Err(Error::usage(format!(
            "{} exists and is not a folder",
            home.root().display()
        )));
    }
    files::create_private_dir(home.root())?;
    files::restrict_mode(home.root(), files::PRIVATE_DIR_MODE)?;
    let _lock = HomeLock::acquire(&home.lock_file(), lock_timeout)?;
    files::create_private_dir(&home.tenants_dir())?;
    files::create_private_dir(&home.trash_dir())?;
    let (mut catalog, created) = Catalog::create(&home.catalog())?;
    files::restrict_mode(&home.catalog(), files::PRIVATE_FILE_MODE)?;
    let before = catalog.migrations()?;
    let after = catalog.apply_migrations()?;
    let applied_migrations: Vec<MigrationRecord> = after
        .iter()
        .filter(|m| {
            before
                .iter()
                .any(|b| b.version == m.version && b.status == CatalogMigrationStatus::Pending)
        })
        .cloned()
        .collect();
    if let Some(dir) = tenant_migrations {
        let dir = std::path::absolute(dir)
            .map_err(|e| Error::usage(format!("invalid path '{}': {e}", dir.display())))?;
        if created {
            files::create_private_dir(&dir)?;
            config::remember_tenant_migrations_dir(&mut catalog, actor, &dir)?;
        } else {
            refuse_other_migrations_dir(&catalog, home, &dir)?;
        }
    }
    let migrations_dir = config::tenant_migrations_dir(&catalog, home)?;
    // Only into an empty folder (a home restored from a backup gets the set back); a
    // later init cannot name another folder, so the set never lands beside the fleet.
    let starter_migrations_installed = migrations::install_starter_set(&migrations_dir)?;
    if created {
        let event = NewAuditEvent::new(
            "home.init",
            "home",
            text(home.root()),
            None,
            json!({"starter_migrations_installed": starter_migrations_installed}),
        );
        catalog.write_audited(actor.name, |_| Ok(((), [event])))?;
    }
    Ok(InitReport {
        home: text(home.root()),
        catalog: text(&home.catalog()),
        created,
        catalog_schema_version: catalog.schema_version()?,
        applied_migrations,
        tenant_migrations_dir: text(&migrations_dir),
        starter_migrations_installed,
    })
}

/// A second `init` changes nothing: naming another tenant migrations folder for a home
/// that has one would put new customers behind the fleet, so it is refused.
fn refuse_other_migrations_dir(catalog: &Catalog, home: &Home, wanted: &Path) -> Result<()> {
    let current = config::tenant_migrations_dir(catalog, home)?;
    if current == wanted {
        return Ok(());
    }
    Err(Error::refused(format!(
        "this home keeps its tenant migrations in {}, not {}",
        current.display(),
        wanted.display()
    ))
    .with_hint(format!(
        "init changes nothing in an existing home; to move the folder run 'tenantctl config set tenant_migrations_dir {}'",
        wanted.display()
    )))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrateMode {
    Apply,
    DryRun,
    Status,
}

/// Catalog migrations: list them, show what would run, or apply the pending ones under
/// the home lock. Returns every migration with its state afterwards.
pub fn migrate(
    home: &Home,
    mode: MigrateMode,
    lock_timeout: std::time::Duration,
) -> Result<Vec<MigrationRecord>> {
    let mut catalog = Catalog::open(&home.catalog())?;
    match mode {
        MigrateMode::Status | MigrateMode::DryRun => catalog.migrations(),
        MigrateMode::Apply => {
            let _lock = HomeLock::acquire(&home.lock_file(), lock_timeout)?;
            catalog.apply_migrations()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub home: String,
    pub initialized: bool,
    pub catalog: String,
    pub backup_dir: String,
    pub catalog_schema_version: i64,
    pub pending_migrations: Vec<String>,
    pub customers: GroupCounts,
    pub customers_by_plan: BTreeMap<String, i64>,
    pub sites: GroupCounts,
    pub tenant_migrations_dir: Option<String>,
    pub newest_tenant_migration: Option<i64>,
    pub tenants_behind: i64,
    pub tenant_storage_bytes: u64,
    /// Every server with its tenants, room and whether it answers now.
    pub servers: Vec<super::servers::ServerHealth>,
    /// The newest complete `backup --all` set.
    pub newest_backup: Option<NewestBackup>,
    /// The newest set of any scope or kind (a one-tenant or pre-restore set, say).
    pub newest_any_backup: Option<NewestBackup>,
    pub disk_free_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewestBackup {
    pub id: String,
    pub kind: BackupKind,
    pub scope: SetScope,
    pub created_at: String,
    pub age_seconds: i64,
    pub tenants: usize,
    /// Tenants the set had to leave out (missing or damaged files).
    pub skipped: usize,
}

impl NewestBackup {
    fn of(set: crate::backup::BackupSet) -> Self {
        let m = set.manifest;
        NewestBackup {
            age_seconds: m.created().map_or(0, |c| (chrono::Utc::now() - c).num_seconds()),
            scope: m.scope(),
            tenants: m.entries.iter().filter(|e| e.scope == EntryScope::Tenant).count(),
            skipped: m.skipped.len(),
            id: m.id,
            kind: m.kind,
            created_at: m.created_at,
        }
    }
}

/// The newest complete backup of the whole home (`backup --all`), and the newest set
/// of any kind, which may hold one tenant before a restore.
fn newest_backups(backup_dir: &Path) -> (Option<NewestBackup>, Option<NewestBackup>) {
    let sets = crate::backup::list_sets(backup_dir).unwrap_or_default();
    let whole = sets
        .iter()
        .rev()
        .find(|s| s.manifest.scope() == SetScope::All)
        .cloned();
    (
        whole.map(NewestBackup::of),
        sets.into_iter().last().map(NewestBackup::of),
    )
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupCounts {
    pub total: i64,
    pub by_status: BTreeMap<String, i64>,
}

impl GroupCounts {
    fn from_pairs(pairs: Vec<(String, i64)>) -> Self {
        GroupCounts {
            total: pairs.iter().map(|(_, n)| n).sum(),
            by_status: pairs.into_iter().collect(),
        }
    }
}

/// A quick look at the home: nothing here scans a tenant database.
pub fn status(home: &Home, backup_dir: &Path) -> Result<StatusReport> {
    let disk_free_bytes = fs4::available_space(if home.root().exists() {
        home.root()
    } else {
        Path::new("/")
    })
    .ok();
    let (newest_backup, newest_any_backup) = newest_backups(backup_dir);
    let mut report = StatusReport {
        home: text(home.root()),
        initialized: home.catalog().is_file(),
        catalog: text(&home.catalog()),
        backup_dir: text(backup_dir),
        catalog_schema_version: 0,
        pending_migrations: Vec::new(),
        customers: GroupCounts::default(),
        customers_by_plan: BTreeMap::new(),
        sites: GroupCounts::default(),
        tenant_migrations_dir: None,
        newest_tenant_migration: None,
        tenants_behind: 0,
        tenant_storage_bytes: 0,
        servers: Vec::new(),
        newest_backup,
        newest_any_backup,
        disk_free_bytes,
    };
    if !report.initialized {
        return Ok(report);
    }
    let catalog = Catalog::open(&home.catalog())?;
    report.catalog_schema_version = catalog.schema_version()?;
    report.pending_migrations = catalog
        .migrations()?
        .into_iter()
        .filter(|m| m.status == CatalogMigrationStatus::Pending)
        .map(|m| format!("V{}__{}", m.version, m.name))
        .collect();
    if !report.pending_migrations.is_empty() {
        // The tables this report reads may not exist yet.
        return Ok(report);
    }
    let conn = catalog.conn();
    report.customers = GroupCounts::from_pairs(customers::count_by(conn, CountColumn::Status)?);
    report.customers_by_plan = customers::count_by(conn, CountColumn::Plan)?
        .into_iter()
        .collect();
    report.sites = GroupCounts::from_pairs(customers::site_count_by_status(conn)?);
    let dir = config::tenant_migrations_dir(&catalog, home)?;
    report.tenant_migrations_dir = Some(text(&dir));
    if let Ok(migrations) = migrations::load_migrations(&dir) {
        let newest = migrations::newest_version(&migrations);
        report.newest_tenant_migration = Some(newest);
        report.tenants_behind = customers::count_behind(conn, newest)?;
    }
    let engines = Engines::new(home);
    report.tenant_storage_bytes = customers::live_placements(conn)?
        .iter()
        .filter_map(|p| engines.tenant(p).ok())
        .map(|tenant| tenant.size_bytes())
        .sum();
    report.servers = super::servers::health(&catalog, home)?;
    Ok(report)
}

fn text(path: &Path) -> String {
    path.display().to_string()
}
