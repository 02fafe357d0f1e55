//! `restore --customer`: tenant databases put back from a set, each under its live
//! customer (or `--into` another one).

use std::path::Path;
use std::sync::Arc;

use super::pre_restore::pre_restore;
use super::staging::{Target, stage_and_save, swap_all_in};
use super::{
    Planned, RestoreReport, RestoreRequest, choose_set, planned_report, record_swaps,
    record_tenants_and_audit, skip_reason,
};
use crate::backup::create::TenantSource;
use crate::backup::restore::StagingRun;
use crate::backup::{Entry, Manifest};
use crate::catalog::Catalog;
use crate::catalog::states::CustomerStatus;
use crate::engine::{Engines, TenantDatabase};
use crate::error::{Error, Result};
use crate::ops::backup::entry_names;
use crate::ops::{Actor, customers};
use crate::validate;

pub(super) fn restore_tenants(
    home_catalog: &Path,
    actor: Actor<'_>,
    backup_dir: &Path,
    request: &RestoreRequest,
    references: &[String],
    run: &StagingRun,
) -> Result<RestoreReport> {
    let mut catalog = Catalog::open_ready(home_catalog)?;
    let owner = crate::lock::Owner::new(&actor.home.run_dir())?;
    let engines = Engines::new(actor.home);
    if request.into.is_some() && references.len() != 1 {
        return Err(Error::usage("--into copies exactly one --customer"));
    }
    let into = request
        .into
        .as_deref()
        .map(|r| crate::ops::tenants::live_customer(&catalog, r))
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
            // An entry under this id but another slug is another customer's data (an id
            // handed out again, say): only --into copies across customers.
            let by_id = source.0.as_ref().and_then(|c| {
                manifest
                    .tenant_entry(c.id)
                    .filter(|e| into.is_some() || e.customer_slug.as_deref() == Some(c.slug.as_str()))
                    .cloned()
            });
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
        super::refuse_other_engine(&entry, &target.placement)?;
        planned.push(Planned {
            set_id: set.manifest.id.clone(),
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
    let (staged, saved) = stage_and_save(run, &to_do, |staged| {
        if replaced.is_empty() {
            return Ok(None);
        }
        pre_restore(&catalog, backup_dir, &set, replaced, false, request.jobs, staged).map(Some)
    })?;
    if let Some((id, lines)) = saved {
        report.pre_restore_set = id;
        report.pre_restore = lines;
    }
    let live: Vec<(i64, Arc<dyn TenantDatabase>)> = to_do
        .iter()
        .filter_map(|p| match (&p.target, p.customer_id) {
            (Target::Tenant(tenant), Some(id)) => Some((id, tenant.clone())),
            _ => None,
        })
        .collect();
    let swaps = record_swaps(&mut catalog, &set.manifest.id, &owner, &staged, &live)?;
    if let Err(err) = swap_all_in(&staged) {
        // Each swap either happened or was undone: settle the ledger now, as a later
        // command would, rather than leave it for one.
        if let Some(op) = swaps
            && let Ok(Some(open)) = crate::catalog::operations::get(catalog.conn(), op)
        {
            let _ = crate::ops::recovery::resolve(&mut catalog, &engines, &open);
        }
        return Err(err);
    }
    report.add_lines(&to_do, &skipped, request.if_missing);
    record_tenants_and_audit(&mut catalog, actor, &mut report, request, &live, &staged, swaps)?;
    Ok(report)
}

/// The live tenant files that `plans` would replace, each labelled with the live
/// catalog's customer of that slug (not the backup's).
pub(super) fn replaced_by_owner(live: &Catalog, plans: &[Planned]) -> Vec<TenantSource> {
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
pub(super) fn replaced_by_plan(plans: &[Planned]) -> Vec<TenantSource> {
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
