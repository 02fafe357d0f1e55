//! `restore --catalog` and `--everything`: the catalog (with every tenant, for
//! `--everything`) put back, then made to fit this home.

use std::path::Path;
use std::sync::Arc;

use super::pre_restore::{pre_restore, pre_restore_unreadable_catalog};
use super::staging::{StagedCopy, Target, stage_and_save, swap_all_in};
use super::tenants::{replaced_by_owner, replaced_by_plan};
use super::{
    Planned, RestoreReport, RestoreRequest, RestoreScope, choose_set, planned_report,
    record_tenants_and_audit, restored_line, skip_reason,
};
use crate::backup::restore::StagingRun;
use crate::backup::states::{EntryScope, RestoreStatus};
use crate::catalog::Catalog;
use crate::catalog::states::CustomerStatus;
use crate::engine::{EngineKind, Engines, TenantDatabase};
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
        // Tenants on database servers come back once the restored catalog says
        // which servers there are: see `restore_server_tenants`.
        for entry in set
            .manifest
            .entries
            .iter()
            .filter(|e| e.scope == EntryScope::Tenant && e.engine() == EngineKind::Sqlite)
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
        let mut report = planned_report(report, &to_do, &skipped, request, live_catalog, &replaced);
        if everything {
            report.restored.extend(
                set.manifest
                    .entries
                    .iter()
                    .filter(|e| e.scope == EntryScope::Tenant && e.engine() != EngineKind::Sqlite)
                    .map(|entry| {
                        server_line(
                            entry,
                            format!("server {}", entry.server.as_deref().unwrap_or("?")),
                            RestoreStatus::WouldReplace,
                            "put back where the restored catalog places it".to_string(),
                        )
                    }),
            );
        }
        return Ok(report);
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
    // Read afresh: the servers are the restored catalog's now.
    let engines = Engines::new(actor.home);
    let mut live = normalise_placements(&mut catalog, &engines)?;
    report.unowned_tenants = crate::ops::adopt::unowned_tenants(catalog.conn(), engines.default_engine())?
        .into_iter()
        .map(|(slug, _)| slug)
        .collect();
    let mut staged = staged;
    let mut swaps = None;
    if everything {
        let on_servers =
            restore_server_tenants(&mut catalog, actor, backup_dir, &set, request, run, &mut report)?;
        live.extend(on_servers.live);
        staged.extend(on_servers.staged);
        swaps = on_servers.swaps;
    }
    record_tenants_and_audit(&mut catalog, actor, &mut report, request, &live, &staged, swaps)?;
    Ok(report)
}

/// What [`restore_server_tenants`] put back: the tenants, their swapped copies, and
/// the ledger operation of their swaps.
struct ServerTenantsRestored {
    live: Vec<(i64, Arc<dyn TenantDatabase>)>,
    staged: Vec<StagedCopy>,
    swaps: Option<i64>,
}

/// `--everything`'s tenants on database servers, once the restored catalog is in
/// place: each from its archive into the placement that catalog gives its customer,
/// checked and swapped as a tenant restore does (ledger first, the replaced data kept
/// on the server). A tenant that cannot be put back (its server does not answer, its
/// customer is deleted) is listed failed or skipped; the others go on.
fn restore_server_tenants(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    backup_dir: &Path,
    set: &crate::backup::BackupSet,
    request: &RestoreRequest,
    run: &StagingRun,
    report: &mut RestoreReport,
) -> Result<ServerTenantsRestored> {
    let engines = Engines::new(actor.home);
    let mut plans = Vec::new();
    for entry in
        set.manifest.entries.iter().filter(|e| {
            e.scope == EntryScope::Tenant && e.engine() != EngineKind::Sqlite && e.damaged.is_none()
        })
    {
        let server = entry.server.clone().unwrap_or_default();
        let customer = match entry.customer_id {
            Some(id) => crate::catalog::customers::by_id(catalog.conn(), id)?,
            None => None,
        };
        let Some(customer) = customer.filter(|c| c.status != CustomerStatus::Deleted) else {
            report.restored.push(server_line(
                entry,
                server,
                RestoreStatus::Skipped,
                "the restored catalog has no live customer for it".into(),
            ));
            continue;
        };
        let tenant = super::refuse_other_engine(entry, &customer.placement)
            .and_then(|()| engines.tenant(&customer.placement));
        let tenant = match tenant {
            Ok(tenant) => tenant,
            Err(err) => {
                report
                    .restored
                    .push(server_line(entry, server, RestoreStatus::Failed, err.to_string()));
                continue;
            }
        };
        let present = tenant.presence();
        if request.if_missing && matches!(present, Ok(true)) {
            report.restored.push(server_line(
                entry,
                tenant.describe(),
                RestoreStatus::Skipped,
                "its database exists (--if-missing)".into(),
            ));
            continue;
        }
        let staged = tenant.stage_restore(
            run,
            &crate::engine::RestoreSource {
                file: &set.file(entry)?,
                entry,
                set_id: &set.manifest.id,
            },
        );
        match staged {
            Ok(staged) => plans.push((customer, entry, StagedCopy::Tenant(tenant, staged))),
            Err(err) => report.restored.push(server_line(
                entry,
                tenant.describe(),
                RestoreStatus::Failed,
                err.to_string(),
            )),
        }
    }
    let staged: Vec<StagedCopy> = plans.iter().map(|(_, _, copy)| copy.clone_copy()).collect();
    let live: Vec<(i64, Arc<dyn TenantDatabase>)> = plans
        .iter()
        .filter_map(|(customer, _, copy)| copy.tenant().map(|t| (customer.id, t)))
        .collect();
    let replaced: Vec<crate::backup::create::TenantSource> = plans
        .iter()
        .filter_map(|(customer, _, copy)| {
            let tenant = copy.tenant()?;
            tenant.exists().then(|| crate::backup::create::TenantSource {
                customer_id: customer.id,
                customer_slug: customer.slug.clone(),
                database: tenant,
            })
        })
        .collect();
    if !replaced.is_empty() {
        let (id, lines) = pre_restore(catalog, backup_dir, set, replaced, false, request.jobs, &staged)?;
        if report.pre_restore_set.is_none() {
            report.pre_restore_set = id;
        }
        report.pre_restore.extend(lines);
    }
    let owner = crate::lock::Owner::new(&actor.home.run_dir())?;
    let swaps = super::record_swaps(catalog, &set.manifest.id, &owner, &staged, &live)?;
    let mut swapped = Vec::new();
    for ((customer, entry, _), copy) in plans.iter().zip(staged) {
        match copy.swap_in_unsynced() {
            Ok(_) => {
                let target = copy.tenant().map(|t| t.describe()).unwrap_or_default();
                let mut line = server_line(entry, target, RestoreStatus::Restored, String::new());
                line.customer = Some(customer.slug.clone());
                line.reason = None;
                report.restored.push(line);
                swapped.push(copy);
            }
            Err(err) => {
                copy.discard();
                report.restored.push(server_line(
                    entry,
                    customer.slug.clone(),
                    RestoreStatus::Failed,
                    err.to_string(),
                ));
            }
        }
    }
    Ok(ServerTenantsRestored {
        live,
        staged: swapped,
        swaps,
    })
}

/// A report line for a server tenant's entry.
fn server_line(
    entry: &crate::backup::Entry,
    target: String,
    status: RestoreStatus,
    why: String,
) -> super::Restored {
    super::Restored {
        scope: EntryScope::Tenant,
        customer: entry.customer_slug.clone(),
        from_customer: entry.customer_slug.clone(),
        file: entry.file.clone(),
        target,
        schema_version: entry.schema_version,
        status,
        reason: Some(why),
    }
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
    let mut server_tenants = Vec::new();
    for customer in &everyone {
        let deleted = customer.status == CustomerStatus::Deleted;
        // A server tenant's placement names its server and database, the same from any
        // home; only a file's path belongs to the home it was taken in.
        if customer.placement.engine != EngineKind::Sqlite {
            if !deleted && let Ok(tenant) = engines.tenant(&customer.placement) {
                server_tenants.push((customer.id, tenant));
            }
            continue;
        }
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
        .chain(server_tenants)
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
