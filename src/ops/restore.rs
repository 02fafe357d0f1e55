//! Restore as the command line sees it: which set, what it replaces, the pre-restore set
//! taken first, and undeleting a customer from a backup; the file swap lives in
//! `crate::backup::restore`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::backup::entry_names;
use super::{Actor, customers};
use crate::backup::create::{Created, SetRequest, TenantSource, create_set};
use crate::backup::restore::StagingRun;
use crate::backup::states::{BackupKind, EntryScope, RestoreStatus, SaveStatus, SetScope};
use crate::backup::{BackupSet, Entry, Manifest, Skipped, find_set, list_sets, restore as swap};
use crate::catalog::Catalog;
use crate::catalog::model::NewAuditEvent;
use crate::catalog::states::{CustomerStatus, TenantMigrationStatus};
use crate::catalog::tenants;
use crate::engine::{self, Engines, TenantDatabase};
use crate::error::{Error, Result};
use crate::lock::HomeLock;
use crate::{time, validate};

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
    source: PathBuf,
    target: Target,
    customer_id: Option<i64>,
    customer: Option<String>,
}

/// What a restore replaces: the home's catalog file, or a tenant database wherever it
/// lives.
#[derive(Clone)]
enum Target {
    Catalog(PathBuf),
    Tenant(Arc<dyn TenantDatabase>),
}

impl Target {
    fn exists(&self) -> bool {
        match self {
            Target::Catalog(path) => path.is_file(),
            Target::Tenant(tenant) => tenant.exists(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Catalog(path) => path.display().to_string(),
            Target::Tenant(tenant) => tenant.describe(),
        }
    }

    fn refuse_if_in_use(&self) -> Result<()> {
        match self {
            Target::Catalog(path) => swap::refuse_if_open(path),
            Target::Tenant(tenant) => tenant.refuse_if_in_use(),
        }
    }

    fn stage(&self, run: &StagingRun, backup_file: &Path, sha256: &str) -> Result<StagedCopy> {
        match self {
            Target::Catalog(path) => swap::stage(
                &swap::ToStage {
                    backup_file: backup_file.to_path_buf(),
                    sha256: sha256.to_string(),
                    target: path.clone(),
                },
                run,
            )
            .map(StagedCopy::Catalog),
            Target::Tenant(tenant) => tenant
                .stage_restore(run, backup_file, sha256)
                .map(|staged| StagedCopy::Tenant(tenant.clone(), staged)),
        }
    }
}

/// A checked copy waiting to replace its target.
enum StagedCopy {
    Catalog(swap::Staged),
    Tenant(Arc<dyn TenantDatabase>, engine::Staged),
}

impl StagedCopy {
    fn swap_in(&self) -> Result<()> {
        match self {
            StagedCopy::Catalog(staged) => swap::swap_in(staged),
            StagedCopy::Tenant(tenant, staged) => tenant.swap_in(staged),
        }
    }

    fn discard(&self) {
        match self {
            StagedCopy::Catalog(staged) => swap::discard(std::slice::from_ref(staged)),
            StagedCopy::Tenant(tenant, staged) => tenant.discard_staged(staged),
        }
    }
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
    let cleaned_up = lock
        .as_ref()
        .map(|held| remove_restore_leftovers(held, actor.home, backup_dir))
        .unwrap_or_default();
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
    Ok(report)
}

/// What killed restores left in this home and its backup folder, removed; see
/// [`swap::remove_leftovers`].
fn remove_restore_leftovers(held: &HomeLock, home: &crate::home::Home, backup_dir: &Path) -> Vec<String> {
    swap::remove_leftovers(held, &[home.root().to_path_buf(), home.tenants_dir()], backup_dir)
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

fn restore_tenants(
    home_catalog: &Path,
    actor: Actor<'_>,
    backup_dir: &Path,
    request: &RestoreRequest,
    references: &[String],
    run: &StagingRun,
) -> Result<RestoreReport> {
    let mut catalog = Catalog::open_ready(home_catalog)?;
    let engines = Engines::new(actor.home);
    if request.into.is_some() && references.len() != 1 {
        return Err(Error::usage("--into copies exactly one --customer"));
    }
    let into = request
        .into
        .as_deref()
        .map(|r| super::tenants::live_customer(&catalog, r))
        .transpose()?;
    // The customers whose data is wanted: live ones by reference; with --into the
    // source may be gone from the catalog, so its slug or id as written also counts.
    let sources: Vec<(Option<crate::catalog::model::Customer>, String)> = references
        .iter()
        .map(|r| match customers::resolve(catalog.conn(), r) {
            Ok(customer) => Ok((Some(customer), r.clone())),
            Err(_) if into.is_some() => Ok((None, r.clone())),
            Err(err) => Err(err),
        })
        .collect::<Result<Vec<_>>>()?;
    // By the customer's id; with --into, the set's entry named as written also counts,
    // since the data is knowingly copied into someone else.
    let find_entry =
        |manifest: &Manifest, source: &(Option<crate::catalog::model::Customer>, String)| -> Option<Entry> {
            let by_id = source
                .0
                .as_ref()
                .and_then(|c| manifest.tenant_entry(c.id).cloned());
            match (by_id, &into) {
                (Some(entry), _) => Some(entry),
                (None, Some(_)) => manifest
                    .entries
                    .iter()
                    .find(|e| e.damaged.is_none() && entry_names(e, &source.1))
                    .cloned(),
                (None, None) => None,
            }
        };
    let set = choose_set(backup_dir, request, |m| {
        sources.iter().all(|s| find_entry(m, s).is_some())
    })?;
    let mut planned = Vec::new();
    for source in &sources {
        let Some(entry) = find_entry(&set.manifest, source) else {
            if let Some(damaged) = set.manifest.entries.iter().find(|e| {
                e.damaged.is_some()
                    && match &source.0 {
                        Some(customer) => e.customer_id == Some(customer.id),
                        None => entry_names(e, &source.1),
                    }
            }) {
                return Err(Error::verification(format!(
                    "set {} holds only a damaged copy of {}, kept before a restore",
                    set.manifest.id, damaged.file
                ))
                .with_hint("pick another set: 'tenantctl backup list --customer …'"));
            }
            // The same slug under another id is another customer's data.
            if let Some(customer) = &source.0
                && let Some(other) = set
                    .manifest
                    .entries
                    .iter()
                    .find(|e| entry_names(e, &customer.slug))
            {
                return Err(Error::refused(format!(
                    "set {} holds {} of customer id {}, not of {} (id {})",
                    set.manifest.id,
                    other.file,
                    other.customer_id.unwrap_or(0),
                    customer.slug,
                    customer.id
                ))
                .with_hint("to copy it into this customer anyway, use --into"));
            }
            return Err(Error::not_found(format!(
                "set {} has no backup of '{}'",
                set.manifest.id,
                validate::printable(&source.1)
            )));
        };
        // Without --into every source resolved to a live customer above.
        let Some(target) = into.clone().or_else(|| source.0.clone()) else {
            return Err(Error::unexpected("a restore source without a customer"));
        };
        if target.status == CustomerStatus::Deleted {
            // Without its file in the trash, undelete itself takes it from a backup.
            let how = if engines.tenant(&target.placement)?.exists() {
                format!("run 'tenantctl customer undelete {}' first", target.slug)
            } else {
                format!(
                    "its database is gone from the trash: run 'tenantctl customer undelete {} --from-backup [ID]' (or --at TIME)",
                    target.slug
                )
            };
            return Err(Error::refused(format!("customer {} is deleted", target.slug)).with_hint(how));
        }
        planned.push(Planned {
            source: set.file(&entry)?,
            target: Target::Tenant(engines.tenant(&target.placement)?),
            customer_id: Some(target.id),
            customer: Some(target.slug.clone()),
            entry,
        });
    }
    let mut report = RestoreReport::new(&set);
    let (to_do, skipped): (Vec<Planned>, Vec<Planned>) = planned
        .into_iter()
        .partition(|p| skip_reason(p, request.if_missing).is_none());
    let replaced: Vec<TenantSource> = to_do
        .iter()
        .filter_map(|p| {
            Some(TenantSource {
                customer_id: p.customer_id.unwrap_or(0),
                customer_slug: p.customer.clone().unwrap_or_default(),
                database: p.replaced_tenant()?,
            })
        })
        .collect();
    if request.dry_run {
        return Ok(planned_report(report, &to_do, &skipped, request, None, &replaced));
    }
    for plan in to_do.iter().filter(|p| p.target.exists()) {
        plan.target.refuse_if_in_use()?;
    }
    let (staged, saved) = stage_and_save(run, &to_do, || {
        if replaced.is_empty() {
            return Ok(None);
        }
        pre_restore(&catalog, backup_dir, &set, replaced, false, request.jobs).map(Some)
    })?;
    if let Some((id, lines)) = saved {
        report.pre_restore_set = id;
        report.pre_restore = lines;
    }
    swap_all_in(&staged)?;
    report.add_lines(&to_do, &skipped, request.if_missing);
    let live: Vec<(i64, Arc<dyn TenantDatabase>)> = to_do
        .iter()
        .filter_map(|p| match (&p.target, p.customer_id) {
            (Target::Tenant(tenant), Some(id)) => Some((id, tenant.clone())),
            _ => None,
        })
        .collect();
    record_tenants_and_audit(&mut catalog, actor, &mut report, request, &live)?;
    Ok(report)
}

/// The live tenant files that `plans` would replace, each labelled with the live
/// catalog's customer of that slug (not the backup's).
fn replaced_by_owner(live: &Catalog, plans: &[Planned]) -> Vec<TenantSource> {
    let mut replaced = Vec::new();
    for plan in plans {
        let Some(database) = plan.replaced_tenant() else {
            continue;
        };
        let slug = plan.customer.clone().unwrap_or_default();
        if let Ok(Some(owner)) = crate::catalog::customers::by_slug(live.conn(), &slug) {
            replaced.push(TenantSource {
                customer_id: owner.id,
                customer_slug: owner.slug,
                database,
            });
        }
    }
    replaced
}

impl Planned {
    /// The live tenant database this plan would replace, if one is there.
    fn replaced_tenant(&self) -> Option<Arc<dyn TenantDatabase>> {
        match &self.target {
            Target::Tenant(tenant) if tenant.exists() => Some(tenant.clone()),
            _ => None,
        }
    }
}

/// The live tenant files a restore would replace, labelled with the set's customers:
/// for when the live catalog cannot be read.
fn replaced_by_plan(plans: &[Planned]) -> Vec<TenantSource> {
    plans
        .iter()
        .filter_map(|p| {
            Some(TenantSource {
                customer_id: p.customer_id?,
                customer_slug: p.customer.clone()?,
                database: p.replaced_tenant()?,
            })
        })
        .collect()
}

impl RestoreReport {
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

/// Stages the restored files (checksum, integrity_check, copy), then writes the
/// pre-restore set; if that fails, the staged files are removed. One after the other
/// on purpose: run side by side, the two cold reads of a large tenant and its backup
/// contend for the disk and the page cache and end later than in turn (measured on a
/// 1 GiB tenant: 3.1-3.5 s side by side, 2.9-3.1 s in turn). A restore that fails its
/// checks has then written no pre-restore set either.
fn stage_and_save<'a, T>(
    run: &StagingRun,
    planned: impl IntoIterator<Item = &'a Planned>,
    save: impl FnOnce() -> Result<T>,
) -> Result<(Vec<StagedCopy>, T)> {
    let staged = stage_all(run, planned)?;
    crate::ops::recovery::crash_point("restore:staged");
    match save() {
        Ok(saved) => {
            crate::ops::recovery::crash_point("restore:saved");
            Ok((staged, saved))
        }
        Err(err) => {
            staged.iter().for_each(StagedCopy::discard);
            Err(err)
        }
    }
}

/// Stages every copy or none: on the first failure the staged ones are removed.
fn stage_all<'a>(
    run: &StagingRun,
    planned: impl IntoIterator<Item = &'a Planned>,
) -> Result<Vec<StagedCopy>> {
    let mut staged = Vec::new();
    for plan in planned {
        match plan.target.stage(run, &plan.source, &plan.entry.sha256) {
            Ok(copy) => staged.push(copy),
            Err(err) => {
                staged.iter().for_each(StagedCopy::discard);
                return Err(err);
            }
        }
    }
    Ok(staged)
}

/// Puts each staged copy in place of its target; on a failure the rest are thrown away.
fn swap_all_in(staged: &[StagedCopy]) -> Result<()> {
    for (position, one) in staged.iter().enumerate() {
        if let Err(err) = one.swap_in() {
            staged[position..].iter().for_each(StagedCopy::discard);
            return Err(err);
        }
    }
    Ok(())
}

/// The pre-restore set taken, if any (none when not one file could be saved), and a
/// line for every file it saved, kept damaged or could not save.
type PreRestore = (Option<String>, Vec<Saved>);

/// A `pre-restore` set of what is about to be replaced. A live tenant file that fails
/// its check is kept as it is, marked damaged: restoring a broken tenant is what
/// restore is most often for, and the broken file may still hold data worth digging out.
fn pre_restore(
    catalog: &Catalog,
    backup_dir: &Path,
    set: &BackupSet,
    tenants: Vec<TenantSource>,
    with_catalog: bool,
    jobs: usize,
) -> Result<PreRestore> {
    let request = pre_restore_request(set, catalog.schema_version().unwrap_or(0), tenants, jobs);
    let created = create_set(backup_dir, with_catalog.then(|| catalog.conn()), &request)?;
    Ok(pre_restore_taken(created, &request.tenants, catalog.path()))
}

fn pre_restore_taken(created: Created, tenants: &[TenantSource], catalog_path: &Path) -> PreRestore {
    match created {
        Created::Set(pre) => (
            Some(pre.manifest.id.clone()),
            saved_lines(
                &pre.manifest.entries,
                &pre.manifest.skipped,
                tenants,
                catalog_path,
            ),
        ),
        Created::Nothing { skipped } => (None, saved_lines(&[], &skipped, tenants, catalog_path)),
    }
}

/// The pre-restore set of a catalog restore when SQLite cannot open the live catalog:
/// its raw bytes are kept, marked damaged, beside the tenant files about to be replaced
/// (labelled with the backup's customers, the only ones that can be read).
fn pre_restore_unreadable_catalog(
    home_catalog: &Path,
    reason: String,
    backup_dir: &Path,
    set: &BackupSet,
    plans: &[Planned],
    jobs: usize,
) -> Result<Option<PreRestore>> {
    let tenants = replaced_by_plan(plans);
    if tenants.is_empty() && !home_catalog.is_file() {
        return Ok(None);
    }
    let mut request = pre_restore_request(set, 0, tenants, jobs);
    if home_catalog.is_file() {
        request.unreadable_catalog = Some((home_catalog.to_path_buf(), reason));
    }
    let created = create_set(backup_dir, None, &request)?;
    Ok(Some(pre_restore_taken(created, &request.tenants, home_catalog)))
}

fn pre_restore_request(
    set: &BackupSet,
    catalog_schema_version: i64,
    tenants: Vec<TenantSource>,
    jobs: usize,
) -> SetRequest {
    SetRequest {
        label: Some(format!("before restoring {}", set.manifest.id)),
        kind: BackupKind::PreRestore,
        scope: SetScope::Replaced,
        catalog_schema_version,
        tenants,
        jobs,
        keep_damaged: true,
        unreadable_catalog: None,
    }
}

/// One line per file a pre-restore set saved, kept damaged, or could not save.
fn saved_lines(
    entries: &[Entry],
    skipped: &[Skipped],
    tenants: &[TenantSource],
    catalog_path: &Path,
) -> Vec<Saved> {
    let path_of = |id: Option<i64>| {
        tenants
            .iter()
            .find(|t| Some(t.customer_id) == id)
            .map(|t| t.database.describe())
            .unwrap_or_default()
    };
    let mut lines: Vec<Saved> = entries
        .iter()
        .map(|entry| Saved {
            scope: entry.scope,
            customer: entry.customer_slug.clone(),
            source: if entry.scope == EntryScope::Tenant {
                path_of(entry.customer_id)
            } else {
                catalog_path.display().to_string()
            },
            status: if entry.damaged.is_some() {
                SaveStatus::KeptDamaged
            } else {
                SaveStatus::Saved
            },
            reason: entry.damaged.clone(),
        })
        .collect();
    lines.extend(skipped.iter().map(|left| Saved {
        scope: EntryScope::Tenant,
        customer: Some(left.customer.clone()),
        source: path_of(Some(left.customer_id)),
        status: SaveStatus::NotSaved,
        reason: Some(left.reason.clone()),
    }));
    lines
}

/// In one catalog transaction: each restored tenant's record follows its file (the
/// schema version it really has), and the restore is audited.
fn record_tenants_and_audit(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    report: &mut RestoreReport,
    request: &RestoreRequest,
    tenants_now: &[(i64, Arc<dyn TenantDatabase>)],
) -> Result<()> {
    let mut applied = Vec::with_capacity(tenants_now.len());
    for (id, tenant) in tenants_now {
        if let Ok(list) = tenant.applied() {
            applied.push((*id, tenant.describe(), list));
        }
    }
    for line in report
        .restored
        .iter_mut()
        .filter(|r| r.status == RestoreStatus::Restored && r.scope == EntryScope::Tenant)
    {
        if let Some((_, _, list)) = applied.iter().find(|(_, name, _)| *name == line.target) {
            line.schema_version = list.iter().map(|m| m.version).max().unwrap_or(0);
        }
    }
    let scope = match &request.scope {
        RestoreScope::Customers(_) => "customers",
        RestoreScope::Catalog => "catalog",
        RestoreScope::Everything => "everything",
    };
    catalog.write_audited(actor.name, |tx| {
        for (id, _, list) in &applied {
            tenants::record_applied(tx, *id, list)?;
            tenants::record_run(tx, *id, list.iter().map(|m| m.version).max().unwrap_or(0), TenantMigrationStatus::Ok, None)?;
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

fn restore_catalog(
    home_catalog: &Path,
    actor: Actor<'_>,
    backup_dir: &Path,
    request: &RestoreRequest,
    run: &StagingRun,
) -> Result<RestoreReport> {
    let everything = request.scope == RestoreScope::Everything;
    let set = choose_set(backup_dir, request, |m| m.catalog_entry().is_some())?;
    let catalog_entry = set.manifest.catalog_entry().cloned().ok_or_else(|| {
        Error::not_found(format!("set {} holds no catalog", set.manifest.id))
            .with_hint("see 'tenantctl backup list'")
    })?;
    let engines = Engines::new(actor.home);
    let catalog_plan = Planned {
        source: set.file(&catalog_entry)?,
        target: Target::Catalog(home_catalog.to_path_buf()),
        customer_id: None,
        customer: None,
        entry: catalog_entry,
    };
    let mut tenant_plans = Vec::new();
    if everything {
        for entry in set
            .manifest
            .entries
            .iter()
            .filter(|e| e.scope == EntryScope::Tenant)
        {
            let slug = entry.customer_slug.clone().unwrap_or_default();
            tenant_plans.push(Planned {
                source: set.file(entry)?,
                target: Target::Tenant(engines.tenant(&engines.default_engine().placement_for(&slug)?)?),
                customer_id: entry.customer_id,
                customer: entry.customer_slug.clone(),
                entry: entry.clone(),
            });
        }
    }
    let (tenant_plans, skipped): (Vec<Planned>, Vec<Planned>) = tenant_plans
        .into_iter()
        .partition(|p| skip_reason(p, request.if_missing).is_none());
    if request.dry_run {
        let report = RestoreReport::new(&set);
        let to_do: Vec<Planned> = std::iter::once(catalog_plan).chain(tenant_plans).collect();
        // As the real run: owners from the live catalog, else from the set.
        let replaced = match Catalog::open(home_catalog) {
            Ok(live) => replaced_by_owner(&live, &to_do[1..]),
            Err(_) => replaced_by_plan(&to_do[1..]),
        };
        let live_catalog = home_catalog.is_file().then_some(home_catalog);
        return Ok(planned_report(
            report,
            &to_do,
            &skipped,
            request,
            live_catalog,
            &replaced,
        ));
    }
    for target in std::iter::once(&catalog_plan)
        .chain(&tenant_plans)
        .map(|p| &p.target)
        .filter(|t| t.exists())
    {
        target.refuse_if_in_use()?;
    }
    let mut report = RestoreReport::new(&set);
    let (staged, saved) = stage_and_save(run, std::iter::once(&catalog_plan).chain(&tenant_plans), || {
        // Save what is there now, if the live catalog can still be read; the files are
        // labelled with the live catalog's customers, not the backup's.
        match Catalog::open(home_catalog) {
            Ok(live) => {
                let replaced = replaced_by_owner(&live, &tenant_plans);
                pre_restore(&live, backup_dir, &set, replaced, true, request.jobs).map(Some)
            }
            Err(err) => pre_restore_unreadable_catalog(
                home_catalog,
                err.to_string(),
                backup_dir,
                &set,
                &tenant_plans,
                request.jobs,
            ),
        }
    })?;
    if let Some((id, lines)) = saved {
        report.pre_restore_set = id;
        report.pre_restore = lines;
    }
    swap_all_in(&staged)?;
    report.restored.push(restored_line(
        &catalog_plan,
        RestoreStatus::Restored,
        None,
        catalog_plan.entry.schema_version,
    ));
    report.add_lines(&tenant_plans, &skipped, request.if_missing);
    let mut catalog = Catalog::open(home_catalog)?;
    // A catalog backed up by an earlier version is brought forward first, as `migrate`
    // would: the rest of the restore reads it with today's schema.
    catalog.apply_migrations()?;
    // The restored catalog may come from another home or another time: its paths are
    // rebuilt for this home and its tenants' records re-read from their files.
    let live = normalise_placements(&mut catalog, &engines)?;
    let owned = crate::catalog::customers::all_placements(catalog.conn())?;
    report.unowned_tenants = engines
        .default_engine()
        .unowned(&owned)?
        .into_iter()
        .map(|(slug, _)| slug)
        .collect();
    record_tenants_and_audit(&mut catalog, actor, &mut report, request, &live)?;
    Ok(report)
}

/// Points every customer's placement at this home's engine (where deleted tenants wait,
/// for deleted ones) and returns the live tenants whose database is there.
fn normalise_placements(
    catalog: &mut Catalog,
    engines: &Engines,
) -> Result<Vec<(i64, Arc<dyn TenantDatabase>)>> {
    let engine = engines.default_engine();
    let everyone = crate::catalog::customers::list(catalog.conn(), &Default::default())?;
    let mut placements = Vec::with_capacity(everyone.len());
    for customer in &everyone {
        let deleted = customer.status == CustomerStatus::Deleted;
        let placement = if deleted {
            engine.retired_placement(&customer.slug, customer.id)?
        } else {
            engine.placement_for(&customer.slug)?
        };
        placements.push((customer.id, deleted, placement));
    }
    catalog.write(|tx| {
        for (id, _, placement) in &placements {
            crate::catalog::customers::set_placement(tx, *id, placement)?;
        }
        Ok(())
    })?;
    Ok(placements
        .into_iter()
        .filter(|(_, deleted, _)| !deleted)
        .map(|(id, _, placement)| (id, engine.tenant(&placement)))
        .filter(|(_, tenant)| tenant.exists())
        .collect())
}

/// What [`undelete_from_backup`] did.
#[derive(Debug)]
pub struct UndeletedFromBackup {
    pub customer: crate::catalog::model::Customer,
    pub set: String,
    /// As [`RestoreReport::cleaned_up`].
    pub cleaned_up: Vec<String>,
}

/// Brings back a deleted customer whose database is gone from the trash: its copy in a
/// backup set (`set`, else the newest finished by `at`, else the newest holding it) is
/// checked and put in place, and the customer is undeleted with it, in one step.
/// Returns the customer as it is now, the set used and what killed restores had left.
pub fn undelete_from_backup(
    home_catalog: &Path,
    actor: Actor<'_>,
    backup_dir: &Path,
    lock_timeout: Duration,
    reference: &str,
    set: Option<String>,
    at: Option<String>,
) -> Result<UndeletedFromBackup> {
    let mut catalog = Catalog::open_ready(home_catalog)?;
    let customer = customers::resolve(catalog.conn(), reference)?;
    if customer.status != CustomerStatus::Deleted {
        return Err(
            Error::refused(format!("customer {} is not deleted", customer.slug)).with_hint(format!(
                "to put back its database, run 'tenantctl restore --at TIME --customer {}'",
                customer.slug
            )),
        );
    }
    let engines = Engines::new(actor.home);
    let engine = engines.engine(&customer.placement)?;
    let trashed = engine.tenant(&customer.placement);
    let target = engine.tenant(&engine.placement_for(&customer.slug)?);
    if let Some(present) = [&trashed, &target].into_iter().find(|t| t.exists()) {
        return Err(Error::refused(format!(
            "the database of {} is still there ({})",
            customer.slug,
            present.describe()
        ))
        .with_hint(format!(
            "run 'tenantctl customer undelete {}' without --from-backup, then restore it if need be",
            customer.slug
        )));
    }
    let lock = HomeLock::acquire(&actor.home.lock_file(), lock_timeout)?;
    let cleaned_up = remove_restore_leftovers(&lock, actor.home, backup_dir);
    let run = StagingRun::new();
    let which = RestoreRequest {
        set,
        at,
        scope: RestoreScope::Customers(vec![customer.slug.clone()]),
        confirm: None,
        into: None,
        if_missing: false,
        dry_run: false,
        jobs: 1,
    };
    let chosen = choose_set(backup_dir, &which, |m| m.tenant_entry(customer.id).is_some())?;
    let entry = chosen
        .manifest
        .tenant_entry(customer.id)
        .cloned()
        .ok_or_else(|| {
            Error::not_found(format!(
                "set {} has no backup of {} (id {})",
                chosen.manifest.id, customer.slug, customer.id
            ))
            .with_hint(format!("see 'tenantctl backup list --customer {}'", customer.id))
        })?;
    let staged = target.stage_restore(&run, &chosen.file(&entry)?, &entry.sha256)?;
    crate::ops::recovery::crash_point("restore:staged");
    let applied = &staged.applied;
    let target_text = target.placement().location.clone();
    let set_id = chosen.manifest.id.clone();
    let done = catalog.write_with_files_audited(
        actor.name,
        |tx| {
            // Checked again under the write lock: another undelete may have won.
            let now = customers::resolve(tx, &customer.id.to_string())?;
            if now.status != CustomerStatus::Deleted || target.exists() {
                return Err(Error::refused(format!(
                    "customer {} was undeleted meanwhile",
                    now.slug
                )));
            }
            crate::catalog::customers::undelete(tx, now.id, target.placement())?;
            let version = applied.iter().map(|m| m.version).max().unwrap_or(0);
            tenants::record_applied(tx, now.id, applied)?;
            tenants::record_run(tx, now.id, version, TenantMigrationStatus::Ok, None)?;
            let restored = crate::catalog::customers::by_id(tx, now.id)?
                .ok_or_else(|| Error::unexpected(format!("customer {} vanished", now.slug)))?;
            let event = NewAuditEvent::customer(
                "customer.undelete",
                &now,
                json!({"db_path": target_text, "status": restored.status,
                       "from_backup": set_id, "file": entry.file}),
            );
            Ok((restored, [event]))
        },
        |_| target.swap_in(&staged),
        |_| {
            let _ = engine.destroy(target.placement());
        },
    );
    match done {
        Ok(customer) => Ok(UndeletedFromBackup {
            customer,
            set: chosen.manifest.id,
            cleaned_up,
        }),
        Err(err) => {
            target.discard_staged(&staged);
            Err(err)
        }
    }
}
