//! The file swap of a restore as a whole: every planned copy staged (checked) or none,
//! the pre-restore set written after, then each copy put in place of its target.

use std::path::PathBuf;
use std::sync::Arc;

use super::Planned;
use crate::backup::restore as swap;
use crate::backup::restore::StagingRun;
use crate::engine::{self, RestoreSource, TenantDatabase};
use crate::error::Result;
use crate::fan_out::{Flow, Load, Stop, default_jobs, fan_out};
use crate::files;
use crate::migrations::MigrationId;
use crate::ops::NoProgress;

/// What a restore replaces: the home's catalog file, or a tenant database wherever it
/// lives.
#[derive(Clone)]
pub(super) enum Target {
    Catalog(PathBuf),
    Tenant(Arc<dyn TenantDatabase>),
}

impl Target {
    pub(super) fn exists(&self) -> bool {
        match self {
            Target::Catalog(path) => path.is_file(),
            Target::Tenant(tenant) => tenant.exists(),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Target::Catalog(path) => path.display().to_string(),
            Target::Tenant(tenant) => tenant.describe(),
        }
    }

    pub(super) fn refuse_if_in_use(&self) -> Result<()> {
        match self {
            Target::Catalog(path) => swap::refuse_if_open(path),
            Target::Tenant(tenant) => tenant.refuse_if_in_use(),
        }
    }

    fn stage(&self, run: &StagingRun, source: &RestoreSource<'_>) -> Result<StagedCopy> {
        match self {
            Target::Catalog(path) => swap::stage(
                &swap::ToStage {
                    backup_file: source.file.to_path_buf(),
                    sha256: source.entry.sha256.clone(),
                    target: path.clone(),
                },
                run,
            )
            .map(StagedCopy::Catalog),
            Target::Tenant(tenant) => tenant
                .stage_restore(run, source)
                .map(|staged| StagedCopy::Tenant(tenant.clone(), staged)),
        }
    }
}

/// A checked copy waiting to replace its target.
pub(super) enum StagedCopy {
    Catalog(swap::Staged),
    Tenant(Arc<dyn TenantDatabase>, engine::Staged),
}

impl StagedCopy {
    /// Puts the copy in place; returns the folder whose sync makes that durable.
    pub(super) fn swap_in_unsynced(&self) -> Result<Option<PathBuf>> {
        match self {
            StagedCopy::Catalog(staged) => swap::swap_in_unsynced(staged).map(Some),
            StagedCopy::Tenant(tenant, staged) => tenant.swap_in_unsynced(staged),
        }
    }

    /// A tenant copy's description and the migrations it was staged with.
    pub(super) fn tenant_applied(&self) -> Option<(String, &[MigrationId])> {
        match self {
            StagedCopy::Catalog(_) => None,
            StagedCopy::Tenant(tenant, staged) => Some((tenant.describe(), staged.applied.as_slice())),
        }
    }

    /// The tenant a tenant copy replaces.
    pub(super) fn tenant(&self) -> Option<Arc<dyn TenantDatabase>> {
        match self {
            StagedCopy::Catalog(_) => None,
            StagedCopy::Tenant(tenant, _) => Some(tenant.clone()),
        }
    }

    /// The same copy, described again (a staged copy is a name, not a resource).
    pub(super) fn clone_copy(&self) -> StagedCopy {
        match self {
            StagedCopy::Catalog(staged) => StagedCopy::Catalog(swap::Staged {
                staging: staged.staging.clone(),
                target: staged.target.clone(),
            }),
            StagedCopy::Tenant(tenant, staged) => StagedCopy::Tenant(
                tenant.clone(),
                engine::Staged {
                    staging: staged.staging.clone(),
                    target: staged.target.clone(),
                    applied: staged.applied.clone(),
                    kept_as: staged.kept_as.clone(),
                },
            ),
        }
    }

    pub(super) fn discard(&self) {
        match self {
            StagedCopy::Catalog(staged) => swap::discard(std::slice::from_ref(staged)),
            StagedCopy::Tenant(tenant, staged) => tenant.discard_staged(staged),
        }
    }
}

/// Stages the restored files (checksum, integrity_check, copy), then writes the
/// pre-restore set; if that fails, the staged files are removed. One after the other
/// on purpose: run side by side, the two cold reads of a large tenant and its backup
/// contend for the disk and the page cache and end later than in turn (measured on a
/// 1 GiB tenant: 3.1-3.5 s side by side, 2.9-3.1 s in turn). A restore that fails its
/// checks has then written no pre-restore set either.
pub(super) fn stage_and_save<'a, T>(
    run: &StagingRun,
    planned: impl IntoIterator<Item = &'a Planned>,
    save: impl FnOnce(&[StagedCopy]) -> Result<T>,
) -> Result<(Vec<StagedCopy>, T)> {
    let staged = stage_all(run, planned)?;
    crate::ops::recovery::crash_point("restore:staged");
    match save(&staged) {
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

/// Stages every copy or none, many at once: copying, hashing and checking a fleet is
/// mostly waiting on the disk, as a migration is. No copy starts after one fails, and
/// then every staged one is removed. The error is the first plan's that failed, as
/// staging one after the other would give: plans start in order, so every earlier
/// one ran.
fn stage_all<'a>(
    run: &StagingRun,
    planned: impl IntoIterator<Item = &'a Planned>,
) -> Result<Vec<StagedCopy>> {
    let planned: Vec<&Planned> = planned.into_iter().collect();
    let results = fan_out(
        &planned,
        default_jobs(Load::Fsync),
        Stop::OnFirstError(Result::is_err),
        &NoProgress,
        |plan| {
            plan.target.stage(
                run,
                &RestoreSource {
                    file: &plan.source,
                    entry: &plan.entry,
                    set_id: &plan.set_id,
                },
            )
        },
        |_| Flow::Continue,
    );
    let mut staged = Vec::with_capacity(results.len());
    let mut first_error = None;
    for result in results.into_iter().flatten() {
        match result {
            Ok(copy) => staged.push(copy),
            Err(err) => first_error = first_error.or(Some(err)),
        }
    }
    match first_error {
        None => Ok(staged),
        Some(err) => {
            staged.iter().for_each(StagedCopy::discard);
            Err(err)
        }
    }
}

/// Puts each staged copy in place of its target; on a failure the rest are thrown
/// away. Each rename is made durable by one sync of its folder at the end (a whole
/// fleet shares `tenants/`), not one sync per file; the swaps done are synced on a
/// failure too. A crash before that sync leaves each target old or new, whole, as a
/// crash between two swaps always has: what is staged was synced when staged. One
/// after the other on purpose: the swaps share a folder, whose lock each removal and
/// rename takes, and many at once were measured no faster at 10,000 tenants.
pub(super) fn swap_all_in(staged: &[StagedCopy]) -> Result<()> {
    let mut folders: Vec<PathBuf> = Vec::new();
    let mut swapped = Ok(());
    for (position, one) in staged.iter().enumerate() {
        match one.swap_in_unsynced() {
            Ok(folder) => {
                if let Some(folder) = folder.filter(|f| !folders.contains(f)) {
                    folders.push(folder);
                }
                crate::ops::recovery::crash_point("restore:swapping");
            }
            Err(err) => {
                staged[position..].iter().for_each(StagedCopy::discard);
                swapped = Err(err);
                break;
            }
        }
    }
    let synced = folders.iter().try_for_each(|folder| files::fsync_dir(folder));
    swapped.and(synced)
}
