//! Backup as the command line sees it: which databases, which set, the safety rules
//! around them; the set mechanics live in `crate::backup`, restore in `super::restore`.

use std::path::Path;

use serde::Serialize;

use super::{Reported, config};
use crate::backup::create::{Created, SetRequest, TenantSource, create_set};
use crate::backup::prune::{PruneReport, Retention};
use crate::backup::states::{BackupKind, CopyFormat, EntryScope, FileStatus, SetScope};
use crate::backup::verify::{FileCheck, verify_set};
use crate::backup::{BackupSet, CleanedUp, Entry, Manifest, Skipped, find_set, list_sets, prune};
use crate::catalog::Catalog;
use crate::catalog::tenants;
use crate::engine::Engines;
use crate::error::{Error, Result};
use crate::validate;

/// What `backup` copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupScope {
    /// The catalog and every tenant that is not deleted.
    All,
    Catalog,
    Customers(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub scope: BackupScope,
    pub label: Option<String>,
    pub kind: BackupKind,
    pub jobs: usize,
    /// Dumps at once on each database server.
    pub jobs_per_server: usize,
}

/// A set as `backup` and `backup show` print it.
#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    #[serde(flatten)]
    pub manifest: Manifest,
    pub path: String,
    pub copied: usize,
    pub linked: usize,
}

impl SetReport {
    fn new(set: &BackupSet) -> Self {
        let linked = set
            .manifest
            .entries
            .iter()
            .filter(|e| e.linked_from.is_some())
            .count();
        SetReport {
            path: set.dir.display().to_string(),
            copied: set.manifest.entries.len() - linked,
            linked,
            manifest: set.manifest.clone(),
        }
    }
}

/// What `backup` did: the set it wrote, or none when not one database could be copied.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum BackupReport {
    Written(SetReport),
    NothingWritten(NothingWritten),
}

/// A backup that wrote no set, shaped like a set with a null `id` and `path`, no
/// `entries`, and every tenant in `skipped`.
#[derive(Debug, Clone, Serialize)]
pub struct NothingWritten {
    pub id: Option<String>,
    pub path: Option<String>,
    pub scope: SetScope,
    pub label: Option<String>,
    pub kind: BackupKind,
    pub entries: Vec<Entry>,
    pub skipped: Vec<Skipped>,
}

impl BackupReport {
    pub fn skipped(&self) -> &[Skipped] {
        match self {
            BackupReport::Written(set) => &set.manifest.skipped,
            BackupReport::NothingWritten(nothing) => &nothing.skipped,
        }
    }
}

/// What `backup` did: the set it wrote (or not), and what interrupted backups and
/// prunes had left that it removed first.
#[derive(Debug)]
pub struct BackupDone {
    pub written: Reported<BackupReport>,
    pub cleaned_up: CleanedUp,
}

/// Removes what interrupted backups and prunes left (see [`crate::backup::clean_up`]),
/// then writes one backup set. A tenant that could not be copied is left out of the set
/// (listed as skipped) and makes the outcome a partial failure, exit 8; when that
/// leaves nothing to copy, no set is written and the outcome is still exit 8.
pub fn backup(catalog: &Catalog, backup_dir: &Path, request: &BackupRequest) -> Result<BackupDone> {
    let set_request = set_request(catalog, request)?;
    let with_catalog = !matches!(request.scope, BackupScope::Customers(_));
    // Only once the request is known to be good: a refused backup changes nothing.
    let cleaned_up = crate::backup::clean_up(backup_dir);
    let report = match create_set(backup_dir, with_catalog.then(|| catalog.conn()), &set_request)? {
        Created::Set(set) => BackupReport::Written(SetReport::new(&set)),
        Created::Nothing { skipped } => BackupReport::NothingWritten(NothingWritten {
            id: None,
            path: None,
            scope: set_request.scope,
            label: set_request.label,
            kind: request.kind,
            entries: Vec::new(),
            skipped,
        }),
    };
    Ok(BackupDone {
        written: with_verdict(report),
        cleaned_up,
    })
}

/// The databases and details of the set `request` asks for.
fn set_request(catalog: &Catalog, request: &BackupRequest) -> Result<SetRequest> {
    let engines = Engines::of_catalog(catalog.conn());
    let label = request
        .label
        .as_deref()
        .map(|l| validate::display_text("label", l))
        .transpose()?;
    let tenants = match &request.scope {
        BackupScope::Catalog => Vec::new(),
        BackupScope::All => tenants::live_tenants(catalog.conn(), None)?
            .into_iter()
            .map(|t| {
                Ok(TenantSource {
                    database: engines.tenant(&t.placement)?,
                    customer_id: t.customer_id,
                    customer_slug: t.slug,
                })
            })
            .collect::<Result<Vec<_>>>()?,
        BackupScope::Customers(references) => references
            .iter()
            .map(|r| {
                let customer = super::tenants::live_customer(catalog, r)?;
                Ok(TenantSource {
                    database: engines.tenant(&customer.placement)?,
                    customer_id: customer.id,
                    customer_slug: customer.slug,
                })
            })
            .collect::<Result<Vec<_>>>()?,
    };
    Ok(SetRequest {
        label,
        kind: request.kind,
        scope: match request.scope {
            BackupScope::All => SetScope::All,
            BackupScope::Catalog => SetScope::Catalog,
            BackupScope::Customers(_) => SetScope::Customers,
        },
        catalog_schema_version: catalog.schema_version()?,
        lanes: Some(engines.lanes(
            tenants.iter().map(|t| t.database.placement()),
            request.jobs,
            request.jobs_per_server,
        )),
        tenants,
        jobs: request.jobs,
        kept: Vec::new(),
        keep_damaged: false,
        unreadable_catalog: None,
    })
}

/// A backup that left tenants out is a partial failure, exit 8.
fn with_verdict(report: BackupReport) -> Reported<BackupReport> {
    let skipped = report.skipped().len();
    let failure = (skipped > 0).then(|| {
        let plural = if skipped == 1 { "" } else { "s" };
        let message = match &report {
            BackupReport::Written(set) => format!(
                "set {} is complete but leaves out {skipped} tenant database{plural} that could not be backed up",
                set.manifest.id
            ),
            BackupReport::NothingWritten(_) => {
                format!("no set written: the {skipped} tenant database{plural} could not be backed up")
            }
        };
        Error::partial(message).with_hint("run 'tenantctl doctor'")
    });
    Reported::new(report, failure)
}

/// One line of `backup list`.
#[derive(Debug, Clone, Serialize)]
pub struct SetSummary {
    pub id: String,
    pub created_at: String,
    pub finished_at: String,
    pub kind: BackupKind,
    pub label: Option<String>,
    pub catalog: bool,
    pub tenants: usize,
    pub linked: usize,
    /// Tenants that were to be in the set but could not be copied.
    pub skipped: usize,
    pub bytes: u64,
}

/// Sets from their manifests, oldest first; needs no catalog. `customer` matches a
/// tenant entry's slug or id.
pub fn list(backup_dir: &Path, customer: Option<&str>) -> Result<Vec<SetSummary>> {
    Ok(list_sets(backup_dir)?
        .into_iter()
        .filter(|set| customer.is_none_or(|c| set.manifest.entries.iter().any(|e| entry_names(e, c))))
        .map(|set| {
            let m = &set.manifest;
            SetSummary {
                id: m.id.clone(),
                created_at: m.created_at.clone(),
                finished_at: m.finished_at.clone(),
                kind: m.kind,
                label: m.label.clone(),
                catalog: m.catalog_entry().is_some(),
                tenants: m.entries.iter().filter(|e| e.scope == EntryScope::Tenant).count(),
                linked: m.entries.iter().filter(|e| e.linked_from.is_some()).count(),
                skipped: m.skipped.len(),
                bytes: m.bytes(),
            }
        })
        .collect())
}

/// Whether a tenant entry is the one a customer reference (slug or id) names.
pub(crate) fn entry_names(entry: &Entry, reference: &str) -> bool {
    entry.scope == EntryScope::Tenant
        && (entry
            .customer_slug
            .as_deref()
            .is_some_and(|slug| slug.eq_ignore_ascii_case(reference))
            || entry.customer_id.is_some_and(|id| id.to_string() == reference))
}

pub fn show(backup_dir: &Path, id: &str) -> Result<SetReport> {
    Ok(SetReport::new(&find_set(backup_dir, id)?))
}

/// What `backup verify --deep` restores archives with: the catalog's servers, or
/// the one named.
pub struct Deep<'a> {
    pub catalog: &'a Catalog,
    pub scratch_server: Option<&'a str>,
}

/// Checks the named sets, every set, or by default the newest one; any file that
/// fails its check makes the outcome a verification failure, exit 7. `deep` restores
/// every copy to check it (see [`Deep`]); a copy that could not be restored for want
/// of its server is `unchecked`, which alone makes the outcome exit 8.
pub fn verify(
    backup_dir: &Path,
    ids: &[String],
    all: bool,
    deep: Option<Deep<'_>>,
) -> Result<Reported<Vec<FileCheck>>> {
    let sets = if all {
        list_sets(backup_dir)?
    } else if ids.is_empty() {
        let newest = list_sets(backup_dir)?.pop().ok_or_else(|| {
            Error::not_found(format!("no backup sets in {}", backup_dir.display()))
                .with_hint("run 'tenantctl backup'")
        })?;
        vec![newest]
    } else {
        ids.iter()
            .map(|id| find_set(backup_dir, id))
            .collect::<Result<Vec<_>>>()?
    };
    if let Some(deep) = &deep
        && let Some(name) = deep.scratch_server
    {
        Engines::of_catalog(deep.catalog.conn()).server(name)?;
    }
    let mut checks: Vec<FileCheck> = sets.iter().flat_map(verify_set).collect();
    if let Some(deep) = &deep {
        check_deeply(&sets, &mut checks, deep);
    }
    let bad: Vec<&FileCheck> = checks
        .iter()
        .filter(|c| !c.ok() && c.status != FileStatus::Unchecked)
        .collect();
    let unchecked = checks
        .iter()
        .filter(|c| c.status == FileStatus::Unchecked)
        .count();
    let failure = match bad.first() {
        Some(first) => Some(Error::verification(format!(
            "{} of {} files failed verification, first {}/{}: {}",
            bad.len(),
            checks.len(),
            first.set,
            first.file,
            first.status
        ))),
        None if unchecked > 0 => Some(
            Error::partial(format!(
                "{unchecked} of {} files could not be restored to check them",
                checks.len()
            ))
            .with_hint(
                "see each file's message; 'tenantctl server test NAME' tells whether a server answers",
            ),
        ),
        None => None,
    };
    Ok(Reported::new(checks, failure))
}

/// Restores every copy that passed the quick checks: SQLite copies get a full
/// integrity_check, archives a restore into a scratch database whose rows must be the
/// manifest's, one server's archives a few at a time.
fn check_deeply(sets: &[BackupSet], checks: &mut [FileCheck], deep: &Deep<'_>) {
    let engines = Engines::of_catalog(deep.catalog.conn());
    let mut work = Vec::new();
    for set in sets {
        for entry in &set.manifest.entries {
            let Some(at) = checks
                .iter()
                .position(|c| c.set == set.manifest.id && c.file == entry.file && c.ok())
            else {
                continue;
            };
            if entry.damaged.is_some() {
                continue;
            }
            if let Ok(path) = set.file(entry) {
                work.push((at, entry.clone(), path));
            }
        }
    }
    let scratch_server = deep.scratch_server;
    let jobs = usize::from(crate::fan_out::DEFAULT_JOBS_PER_SERVER);
    let results = crate::fan_out::fan_out_all(&work, jobs, |(_, entry, path)| match entry.format() {
        CopyFormat::KeptOnServer => {
            let server = entry.server.as_deref().unwrap_or_default();
            let name = entry.kept_as.as_deref().unwrap_or_default();
            match engines.server(server).and_then(|engine| engine.kept_exists(name)) {
                Ok(true) => Ok(()),
                Ok(false) => Err(Error::not_found(format!("{name} is gone from server {server}"))),
                Err(err) => Err(err),
            }
        }
        CopyFormat::PgDumpCustom | CopyFormat::MysqlSql => {
            // The scratch server takes the copies of its own engine only.
            let scratch = scratch_server.filter(|name| engines.server_kind(name) == Some(entry.engine()));
            let server = scratch.or(entry.server.as_deref()).unwrap_or_default();
            match engines.server(server) {
                Ok(engine) => engine.check_archive(path, entry),
                Err(err) => Err(err),
            }
        }
        _ => crate::engine::sqlite::integrity_check(path),
    });
    for ((at, entry, _), result) in work.iter().zip(results) {
        let check = &mut checks[*at];
        match result {
            Ok(()) if matches!(entry.format(), CopyFormat::PgDumpCustom | CopyFormat::MysqlSql) => {
                check.message = "restored into a scratch database; every table's rows match".to_string();
            }
            Ok(()) if entry.format() == CopyFormat::KeptOnServer => {
                check.message = format!("{}; it is there", check.message);
            }
            Ok(()) => check.message = "checksum and integrity_check ok".to_string(),
            Err(err) if err.kind() == crate::error::ErrorKind::NotFound => {
                check.status = FileStatus::Missing;
                check.message = err.to_string();
            }
            Err(err) if err.kind() == crate::error::ErrorKind::VerificationFailed => {
                check.status = FileStatus::Damaged;
                check.message = err.to_string();
            }
            Err(err) => {
                check.status = FileStatus::Unchecked;
                check.message = err.to_string();
            }
        }
    }
}

/// Retention from the flags, else the catalog's `backup_keep_*` settings (their
/// defaults when unset). Without a catalog every flag must be given.
pub fn prune(
    backup_dir: &Path,
    catalog: Option<&Catalog>,
    flags: [Option<u32>; 4],
    dry_run: bool,
) -> Result<PruneReport> {
    let names = [
        "backup_keep_last",
        "backup_keep_daily",
        "backup_keep_weekly",
        "backup_keep_monthly",
    ];
    let mut values = [0u32; 4];
    for (i, name) in names.iter().enumerate() {
        values[i] = match (flags[i], catalog) {
            (Some(value), _) => value,
            (None, Some(catalog)) => config::stored_or_default(catalog, name)?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            (None, None) => {
                return Err(Error::refused(format!(
                    "the {name} setting is in the catalog, which was not read"
                ))
                .with_hint("pass every --keep-* flag to prune without the catalog"));
            }
        };
    }
    let retention = Retention {
        keep_last: values[0],
        keep_daily: values[1],
        keep_weekly: values[2],
        keep_monthly: values[3],
    };
    let engines = catalog.map(|c| Engines::of_catalog(c.conn()));
    let drop_kept = |entry: &Entry| -> Result<()> {
        let (Some(engines), Some(server), Some(name)) = (&engines, &entry.server, &entry.kept_as) else {
            return Err(Error::refused(
                "a copy kept on a database server is dropped through the catalog, which was not read",
            ));
        };
        engines.server(server)?.drop_kept(name)
    };
    prune::prune(backup_dir, retention, dry_run, &drop_kept)
}
