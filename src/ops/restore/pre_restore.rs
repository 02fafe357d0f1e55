//! The pre-restore set: what a restore is about to replace, saved first.

use std::path::Path;

use super::staging::StagedCopy;
use super::tenants::replaced_by_plan;
use super::{Planned, Saved};
use crate::backup::create::{Created, SetRequest, TenantSource, create_set};
use crate::backup::states::{BackupKind, EntryScope, SaveStatus, SetScope};
use crate::backup::{BackupSet, Entry, Skipped};
use crate::catalog::Catalog;
use crate::error::Result;

/// The pre-restore set taken, if any (none when not one file could be saved), and a
/// line for every file it saved, kept damaged or could not save.
type PreRestore = (Option<String>, Vec<Saved>);

/// A `pre-restore` set of what is about to be replaced. A live tenant file that fails
/// its check is kept as it is, marked damaged: restoring a broken tenant is what
/// restore is most often for, and the broken file may still hold data worth digging out.
pub(super) fn pre_restore(
    catalog: &Catalog,
    backup_dir: &Path,
    set: &BackupSet,
    tenants: Vec<TenantSource>,
    with_catalog: bool,
    jobs: usize,
    staged: &[StagedCopy],
) -> Result<PreRestore> {
    let (kept, copied) = split_kept(staged, &tenants);
    let mut request = pre_restore_request(set, catalog.schema_version().unwrap_or(0), copied, jobs);
    request.kept = kept;
    let created = create_set(backup_dir, with_catalog.then(|| catalog.conn()), &request)?;
    Ok(pre_restore_taken(created, &tenants, catalog.path()))
}

/// The replaced tenants whose swap keeps their data on their server (an entry each
/// for the set, which copies nothing of them), and the others, to be copied.
fn split_kept(staged: &[StagedCopy], tenants: &[TenantSource]) -> (Vec<Entry>, Vec<TenantSource>) {
    let mut kept = Vec::new();
    let mut copied = Vec::new();
    for tenant in tenants {
        let entry = staged.iter().find_map(|copy| match copy {
            StagedCopy::Tenant(live, swap)
                if swap.kept_as.is_some() && live.describe() == tenant.database.describe() =>
            {
                live.kept_copy(swap, tenant.customer_id, &tenant.customer_slug)
            }
            _ => None,
        });
        match entry {
            Some(entry) => kept.push(entry),
            None => copied.push(tenant.clone()),
        }
    }
    (kept, copied)
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
pub(super) fn pre_restore_unreadable_catalog(
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
    let tenants = request.tenants.clone();
    let created = create_set(backup_dir, None, &request)?;
    Ok(Some(pre_restore_taken(created, &tenants, home_catalog)))
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
        lanes: None,
        kept: Vec::new(),
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
            reason: entry.damaged.clone().or_else(|| {
                entry
                    .kept_as
                    .as_ref()
                    .map(|kept| format!("kept on its server as {kept}"))
            }),
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
