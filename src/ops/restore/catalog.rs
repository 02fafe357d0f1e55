//! `restore --catalog` and `--everything`: the catalog (with every tenant, for
//! `--everything`) put back, then made to fit this home.

use std::path::Path;
use std::sync::Arc;

use super::pre_restore::{pre_restore, pre_restore_unreadable_catalog};
use super::staging::{Target, stage_and_save, swap_all_in};
use super::tenants::{replaced_by_owner, replaced_by_plan};
use super::{
    Planned, RestoreReport, RestoreRequest, RestoreScope, choose_set, planned_report,
    record_tenants_and_audit, restored_line, skip_reason,
};
use crate::backup::restore::StagingRun;
use crate::backup::states::{EntryScope, RestoreStatus};
use crate::catalog::Catalog;
use crate::catalog::states::CustomerStatus;
use crate::engine::{Engines, TenantDatabase};
use crate::error::{Error, Result};
use crate::ops::Actor;

pub(super) fn restore_catalog(
    home_catalog: &Path,
    actor: Actor<'_>,
    backup_dir: &Path,
    request: &RestoreRequest,
    run: &StagingRun,
) -> Result<RestoreReport> {
    let everything = request.scope == RestoreScope::Everything;
    let set = choose_set(backup_dir, request, |m| m.catalog_entry().is_some())?;
    let id_floor = ids_handed_out(home_catalog, backup_dir);
    let catalog_entry = set.manifest.catalog_entry().cloned().ok_or_else(|| {
        Error::not_found(format!("set {} holds no catalog", set.manifest.id))
            .with_hint("see 'tenantctl backup list'")
    })?;
    let engines = Engines::new(actor.home);
    let catalog_plan = Planned {
        set_id: set.manifest.id.clone(),
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
                set_id: set.manifest.id.clone(),
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
    let (staged, saved) = stage_and_save(
        run,
        std::iter::once(&catalog_plan).chain(&tenant_plans),
        |staged| {
            // Save what is there now, if the live catalog can still be read; the files are
            // labelled with the live catalog's customers, not the backup's.
            match Catalog::open(home_catalog) {
                Ok(live) => {
                    let replaced = replaced_by_owner(&live, &tenant_plans);
                    pre_restore(&live, backup_dir, &set, replaced, true, request.jobs, staged).map(Some)
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
        },
    )?;
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
    // An older catalog's id counter is behind: a new customer must never get the id of
    // one created since, whose backups and ledger entries carry that id.
    catalog.write(|tx| crate::catalog::customers::raise_id_floor(tx, id_floor))?;
    // The restored catalog may come from another home or another time: its paths are
    // rebuilt for this home and its tenants' records made to follow their files.
    let live = normalise_placements(&mut catalog, &engines)?;
    report.unowned_tenants = crate::ops::adopt::unowned_tenants(catalog.conn(), engines.default_engine())?
        .into_iter()
        .map(|(slug, _)| slug)
        .collect();
    record_tenants_and_audit(&mut catalog, actor, &mut report, request, &live, &staged, None)?;
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

/// The highest customer id the live catalog or any backup set has seen.
fn ids_handed_out(home_catalog: &Path, backup_dir: &Path) -> i64 {
    let live = Catalog::open(home_catalog)
        .and_then(|c| crate::catalog::customers::id_high_water(c.conn()))
        .unwrap_or(0);
    let backed_up = crate::backup::list_sets(backup_dir)
        .unwrap_or_default()
        .iter()
        .flat_map(|set| set.manifest.entries.iter().filter_map(|e| e.customer_id))
        .max()
        .unwrap_or(0);
    live.max(backed_up)
}
