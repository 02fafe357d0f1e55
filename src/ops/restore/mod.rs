//! Restore as the command line sees it: which set, what it replaces, the pre-restore set
//! taken first, and undeleting a customer from a backup; the file swap lives in
//! `crate::backup::restore`. Tenant restores are in `tenants`, catalog (and everything)
//! restores in `catalog`, the pre-restore set in `pre_restore`, staging and swapping the
//! copies in `staging`, and `customer undelete --from-backup` in `undelete`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::Actor;
use crate::backup::create::TenantSource;
use crate::backup::restore::StagingRun;
use crate::backup::states::{EntryScope, RestoreStatus, SaveStatus};
use crate::backup::{BackupSet, Entry, Manifest, find_set, list_sets, restore as swap};
use crate::catalog::Catalog;
use crate::catalog::model::NewAuditEvent;
use crate::catalog::states::TenantMigrationStatus;
use crate::engine::TenantDatabase;
use crate::error::{Error, Result};
use crate::fan_out::{Load, default_jobs, fan_out_all};
use crate::lock::HomeLock;
use crate::migrations::MigrationId;
use crate::time;

mod catalog;
mod pre_restore;
mod staging;
mod tenants;
mod undelete;

use catalog::restore_catalog;
use staging::{StagedCopy, Target};
use tenants::restore_tenants;
pub use undelete::{UndeletedFromBackup, undelete_from_backup};

/// What `restore` puts back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreScope {
    Customers(Vec<String>),
    Catalog,
    Everything,
}

#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub set: Option<String>,
    pub at: Option<String>,
    pub scope: RestoreScope,
    pub confirm: Option<String>,
    pub into: Option<String>,
    pub if_missing: bool,
    /// Plan only: which set, what would be replaced and saved first; change nothing.
    pub dry_run: bool,
    pub jobs: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub scope: EntryScope,
    pub customer: Option<String>,
    pub from_customer: Option<String>,
    pub file: String,
    pub target: String,
    pub schema_version: i64,
    /// `skipped` comes with a reason.
    pub status: RestoreStatus,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub set: String,
    /// When the set was finished (to the microsecond when the set records it).
    pub set_finished_at: String,
    /// True when nothing was changed: the rows say what would be done.
    pub dry_run: bool,
    /// The pre-restore set taken; none in a dry run, whose `pre_restore` says what
    /// it would hold, and none when not one file could be saved (`pre_restore` then
    /// lists them as `not-saved`).
    pub pre_restore_set: Option<String>,
    /// What the pre-restore set holds of the files that are replaced.
    pub pre_restore: Vec<Saved>,
    pub restored: Vec<Restored>,
    /// Tenant databases in the home that the restored catalog has no customer for
    /// (created after the set was taken): `doctor --fix --adopt` or `--trash` deals
    /// with them. Only a catalog restore can leave any.
    pub unowned_tenants: Vec<String>,
    /// What killed restores had left and this one removed first: staging folders and
    /// unfinished pre-restore sets.
    pub cleaned_up: Vec<String>,
    /// Operations killed commands left half done that this one finished first (a
    /// restore's swaps on a server, above all), one line each.
    pub finished_interrupted: Vec<String>,
}

/// A live file saved in the pre-restore set before it is replaced.
#[derive(Debug, Clone, Serialize)]
pub struct Saved {
    pub scope: EntryScope,
    pub customer: Option<String>,
    /// The live file.
    pub source: String,
    pub status: SaveStatus,
    pub reason: Option<String>,
}

/// One file to put back, and where.
struct Planned {
    entry: Entry,
    /// The id of the set the entry is from.
    set_id: String,
    source: PathBuf,
    target: Target,
    customer_id: Option<i64>,
    customer: Option<String>,
}

pub fn restore(
    home_catalog: &Path,
    actor: Actor<'_>,
    backup_dir: &Path,
    lock_timeout: Duration,
    request: &RestoreRequest,
) -> Result<RestoreReport> {
    let needed = match request.scope {
        RestoreScope::Catalog => Some("catalog"),
        RestoreScope::Everything => Some("everything"),
        RestoreScope::Customers(_) => None,
    };
    if let Some(word) = needed
        && !request.dry_run
        && request.confirm.as_deref() != Some(word)
    {
        return Err(Error::refused(format!("restoring the {word} replaces it"))
            .with_hint(format!("pass --confirm {word}")));
    }
    if request.into.is_some() && !matches!(request.scope, RestoreScope::Customers(_)) {
        return Err(Error::usage("--into goes with --customer"));
    }
    if request.if_missing && request.scope == RestoreScope::Catalog {
        return Err(Error::usage(
            "--if-missing is for tenant databases, not the catalog alone",
        ));
    }
    match &request.scope {
        // A tenant restore needs a working catalog: say so before anything else.
        RestoreScope::Customers(_) => drop(Catalog::open_ready(home_catalog)?),
        // A dry run changes nothing: no folders, no lock.
        RestoreScope::Catalog | RestoreScope::Everything if request.dry_run => {}
        // Disaster recovery may start from an empty home.
        RestoreScope::Catalog | RestoreScope::Everything => {
            crate::files::create_private_dir(actor.home.root())?;
            crate::files::create_private_dir(&actor.home.tenants_dir())?;
        }
    }
    let lock = if request.dry_run {
        None
    } else {
        Some(HomeLock::acquire(&actor.home.lock_file(), lock_timeout)?)
    };
    // A restore killed part way through its swaps is finished first: what it left on
    // the servers is then no longer needed, and this one starts from tenants that are
    // whole.
    let (finished, cleaned_up) = match &lock {
        Some(held) => {
            let (finished, all_done) = finish_interrupted(home_catalog, actor.home);
            (
                finished,
                remove_restore_leftovers(held, actor.home, backup_dir, all_done),
            )
        }
        None => (Vec::new(), Vec::new()),
    };
    // Declared after the lock, so dropped (its folders removed) while the lock is held.
    let run = StagingRun::new();
    let mut report = match &request.scope {
        RestoreScope::Customers(references) => {
            restore_tenants(home_catalog, actor, backup_dir, request, references, &run)
        }
        RestoreScope::Catalog | RestoreScope::Everything => {
            restore_catalog(home_catalog, actor, backup_dir, request, &run)
        }
    }?;
    report.cleaned_up = cleaned_up;
    report.finished_interrupted = finished;
    Ok(report)
}

/// What killed restores left in this home and its backup folder, removed; see
/// [`swap::remove_leftovers`].
/// With `on_servers`, the copies on the home's database servers too: only once no
/// interrupted swap still needs them.
fn remove_restore_leftovers(
    held: &HomeLock,
    home: &crate::home::Home,
    backup_dir: &Path,
    on_servers: bool,
) -> Vec<String> {
    let mut removed =
        swap::remove_leftovers(held, &[home.root().to_path_buf(), home.tenants_dir()], backup_dir);
    if on_servers {
        removed.extend(remove_server_leftovers(held, home));
    }
    removed
}

/// Finishes what killed commands left in the ledger (a restore's swaps above all):
/// one line for each, and whether all of it could be finished. A home without a
/// readable catalog has nothing to finish.
fn finish_interrupted(home_catalog: &Path, home: &crate::home::Home) -> (Vec<String>, bool) {
    let Ok(mut catalog) = Catalog::open_ready(home_catalog) else {
        return (Vec::new(), true);
    };
    match crate::ops::recovery::finish_abandoned(&mut catalog, home) {
        Ok(done) => (done.iter().map(|d| d.line()).collect(), true),
        Err(_) => (Vec::new(), false),
    }
}

/// The copies killed restores left on the home's database servers, dropped; a server
/// that cannot be reached (or a home without a catalog yet) keeps its own for later.
fn remove_server_leftovers(_held: &HomeLock, home: &crate::home::Home) -> Vec<String> {
    let engines = crate::engine::Engines::new(home);
    let Ok(servers) = engines.database_servers() else {
        return Vec::new();
    };
    servers
        .iter()
        .filter_map(|server| server.restore_leftovers(true).ok())
        .flatten()
        .collect()
}

/// A copy goes back only into a tenant of the engine it was taken of: carrying data
/// across engines is `customer move`'s work.
pub(super) fn refuse_other_engine(entry: &Entry, target: &crate::engine::Placement) -> Result<()> {
    if entry.engine() == target.engine {
        return Ok(());
    }
    Err(Error::refused(format!(
        "{} is a backup of a {} tenant and cannot be restored into a {} tenant",
        entry.file,
        entry.engine(),
        target.engine
    ))
    .with_hint(
        "to carry a tenant's data to another engine, use 'tenantctl customer move CUSTOMER --to SERVER'",
    ))
}

/// The set named by id, the newest one finished at or before `--at` that `holds`, or
/// with neither the newest set that `holds`.
fn choose_set(
    backup_dir: &Path,
    request: &RestoreRequest,
    holds: impl Fn(&Manifest) -> bool,
) -> Result<BackupSet> {
    match (&request.set, &request.at) {
        (Some(id), None) => find_set(backup_dir, id),
        (None, None) => list_sets(backup_dir)?
            .into_iter()
            .rev()
            .find(|s| holds(&s.manifest))
            .ok_or_else(|| {
                Error::not_found(format!(
                    "no backup set in {} holds what is to be restored",
                    backup_dir.display()
                ))
                .with_hint("see 'tenantctl backup list'")
            }),
        (None, Some(at)) => {
            // To the microsecond: a set counts only when it was finished by then.
            let moment = time::parse_moment(at)?;
            list_sets(backup_dir)?
                .into_iter()
                .filter(|s| s.manifest.finished().is_some_and(|f| f <= moment) && holds(&s.manifest))
                .max_by(|a, b| {
                    (a.manifest.finished(), &a.manifest.id).cmp(&(b.manifest.finished(), &b.manifest.id))
                })
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "no backup set finished at or before {} holds what is to be restored",
                        time::format_exact(moment)
                    ))
                    .with_hint("see 'tenantctl backup list'")
                })
        }
        _ => Err(Error::usage("give a backup id or --at TIME, not both")),
    }
}

impl RestoreReport {
    /// Exit 8 when some tenant could not be put back while the rest were.
    pub fn failure(&self) -> Option<Error> {
        let failed: Vec<&Restored> = self
            .restored
            .iter()
            .filter(|r| r.status == RestoreStatus::Failed)
            .collect();
        let first = failed.first()?;
        Some(Error::partial(format!(
            "{} of {} tenants could not be restored, first {}: {}",
            failed.len(),
            self.restored.iter().filter(|r| r.scope == EntryScope::Tenant).count(),
            first.customer.as_deref().unwrap_or("?"),
            first.reason.as_deref().unwrap_or("failed")
        ))
        .with_hint("see 'tenantctl doctor'; restore those tenants with 'tenantctl restore ID --customer …' once their server answers"))
    }

    /// A line for each plan put back and each left as it was.
    fn add_lines(&mut self, restored: &[Planned], skipped: &[Planned], if_missing: bool) {
        for plan in restored {
            let version = plan.entry.schema_version;
            self.restored
                .push(restored_line(plan, RestoreStatus::Restored, None, version));
        }
        for plan in skipped {
            let reason = skip_reason(plan, if_missing);
            let version = plan.entry.schema_version;
            self.restored
                .push(restored_line(plan, RestoreStatus::Skipped, reason, version));
        }
    }

    fn new(set: &BackupSet) -> Self {
        let m = &set.manifest;
        RestoreReport {
            set: m.id.clone(),
            set_finished_at: m
                .finished_at_exact
                .clone()
                .unwrap_or_else(|| m.finished_at.clone()),
            dry_run: false,
            pre_restore_set: None,
            pre_restore: Vec::new(),
            restored: Vec::new(),
            unowned_tenants: Vec::new(),
            cleaned_up: Vec::new(),
            finished_interrupted: Vec::new(),
        }
    }
}

/// What a restore would do, for `--dry-run`: each file it would replace or create, and
/// what its pre-restore set would save first (the live catalog, when it is replaced
/// and readable, and each live tenant file).
fn planned_report(
    mut report: RestoreReport,
    to_do: &[Planned],
    skipped: &[Planned],
    request: &RestoreRequest,
    live_catalog: Option<&Path>,
    replaced: &[TenantSource],
) -> RestoreReport {
    report.dry_run = true;
    for plan in to_do {
        let status = if plan.target.exists() {
            RestoreStatus::WouldReplace
        } else {
            RestoreStatus::WouldCreate
        };
        report
            .restored
            .push(restored_line(plan, status, None, plan.entry.schema_version));
    }
    for plan in skipped {
        let reason = skip_reason(plan, request.if_missing);
        report.restored.push(restored_line(
            plan,
            RestoreStatus::Skipped,
            reason,
            plan.entry.schema_version,
        ));
    }
    let would_save = |scope: EntryScope, customer: Option<String>, source: String| Saved {
        scope,
        customer,
        source,
        status: SaveStatus::WouldSave,
        reason: None,
    };
    report.pre_restore = live_catalog
        .map(|path| would_save(EntryScope::Catalog, None, path.display().to_string()))
        .into_iter()
        .chain(replaced.iter().map(|t| {
            would_save(
                EntryScope::Tenant,
                Some(t.customer_slug.clone()),
                t.database.describe(),
            )
        }))
        .collect();
    report
}

/// Why a planned file is left as it is: `--if-missing` and the file is there, or the
/// set holds only a damaged copy (kept before an earlier restore).
fn skip_reason(plan: &Planned, if_missing: bool) -> Option<&'static str> {
    if plan.entry.damaged.is_some() {
        Some("the set holds only a damaged copy, kept before a restore")
    } else if if_missing && plan.target.exists() {
        Some("its database file exists (--if-missing)")
    } else {
        None
    }
}

fn restored_line(plan: &Planned, status: RestoreStatus, reason: Option<&str>, version: i64) -> Restored {
    Restored {
        scope: plan.entry.scope,
        customer: plan.customer.clone(),
        from_customer: plan.entry.customer_slug.clone(),
        file: plan.entry.file.clone(),
        target: plan.target.describe(),
        schema_version: version,
        status,
        reason: reason.map(str::to_string),
    }
}

/// In one catalog transaction: each restored tenant's record follows its file (the
/// schema version it really has), and the restore is audited. `staged` are the copies
/// just swapped in: they carry their migrations, read when they were staged.
fn record_tenants_and_audit(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    report: &mut RestoreReport,
    request: &RestoreRequest,
    tenants_now: &[(i64, Arc<dyn TenantDatabase>)],
    staged: &[StagedCopy],
    swaps: Option<i64>,
) -> Result<()> {
    let applied = applied_now(tenants_now, staged);
    let versions: HashMap<&str, i64> = applied
        .iter()
        .map(|(_, name, list)| (name.as_str(), newest(list)))
        .collect();
    for line in report
        .restored
        .iter_mut()
        .filter(|r| r.status == RestoreStatus::Restored && r.scope == EntryScope::Tenant)
    {
        if let Some(version) = versions.get(line.target.as_str()) {
            line.schema_version = *version;
        }
    }
    let scope = match &request.scope {
        RestoreScope::Customers(_) => "customers",
        RestoreScope::Catalog => "catalog",
        RestoreScope::Everything => "everything",
    };
    catalog.write_audited(actor.name, |tx| {
        if let Some(op) = swaps {
            crate::catalog::operations::close(tx, op)?;
        }
        for (id, _, list) in &applied {
            crate::catalog::tenants::record_applied(tx, *id, list)?;
            crate::catalog::tenants::record_run(tx, *id, newest(list), TenantMigrationStatus::Ok, None)?;
        }
        let event = NewAuditEvent::new(
            "backup.restore",
            "backup",
            report.set.clone(),
            None,
            json!({"scope": scope, "pre_restore_set": report.pre_restore_set,
                "restored": report.restored.iter().filter(|r| r.status == RestoreStatus::Restored).map(|r| &r.file).collect::<Vec<_>>(),
                "kept_damaged": report.pre_restore.iter().filter(|s| s.status == SaveStatus::KeptDamaged).map(|s| &s.source).collect::<Vec<_>>(),
                "into": request.into}),
        );
        Ok(((), [event]))
    })
}

/// Records the swaps that take several steps on a server (see
/// [`crate::engine::Staged::kept_as`]) in the operation ledger before any begins, so
/// that a crash part way is finished by the next restore or `doctor --fix`; `None`
/// when every swap is one rename.
fn record_swaps(
    catalog: &mut Catalog,
    set_id: &str,
    owner: &crate::lock::Owner,
    staged: &[StagedCopy],
    tenants: &[(i64, Arc<dyn TenantDatabase>)],
) -> Result<Option<i64>> {
    let steps: Vec<serde_json::Value> = staged
        .iter()
        .filter_map(|copy| match copy {
            StagedCopy::Tenant(tenant, swap) if swap.kept_as.is_some() => {
                let customer = tenants
                    .iter()
                    .find(|(_, t)| t.describe() == tenant.describe())
                    .map(|(id, _)| *id);
                Some(crate::ops::recovery::swap_step(customer, swap))
            }
            _ => None,
        })
        .collect();
    if steps.is_empty() {
        return Ok(None);
    }
    let op = catalog.write(|tx| {
        crate::catalog::operations::open(
            tx,
            &crate::catalog::operations::NewOperation {
                kind: crate::ops::recovery::SWAP,
                subject: set_id,
                customer_id: None,
                owner: owner.token(),
                steps: json!({ "tenants": steps }),
            },
        )
    })?;
    crate::ops::recovery::crash_point("restore:recorded");
    Ok(Some(op))
}

fn newest(applied: &[MigrationId]) -> i64 {
    applied.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The migrations each tenant in `tenants_now` has applied, with its description; one
/// whose file cannot be read is left out. A tenant swapped in from `staged` is not
/// opened again (at fleet size each open creates and removes side files in the one
/// folder); the others are read many at once.
fn applied_now(
    tenants_now: &[(i64, Arc<dyn TenantDatabase>)],
    staged: &[StagedCopy],
) -> Vec<(i64, String, Vec<MigrationId>)> {
    let known: HashMap<String, &[MigrationId]> =
        staged.iter().filter_map(StagedCopy::tenant_applied).collect();
    fan_out_all(tenants_now, default_jobs(Load::Fsync), |(id, tenant)| {
        let name = tenant.describe();
        let list = match known.get(&name) {
            Some(list) => Ok(list.to_vec()),
            None => tenant.applied(),
        };
        list.ok().map(|list| (*id, name, list))
    })
    .into_iter()
    .flatten()
    .collect()
}
