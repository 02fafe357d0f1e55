//! `doctor --fix --adopt`: giving a tenant database that no customer owns (most
//! often after a catalog restore from an older backup) its customer again. Who the
//! customer was comes from the newest backup set whose catalog knew the slug; without
//! one, placeholders say so, and the customer waits suspended until someone checks.

use std::path::Path;

use serde_json::{Map, json};

use super::{Actor, config};
use crate::backup::list_sets;
use crate::catalog::customers::{self, Remembered};
use crate::catalog::model::{NewAuditEvent, NewCustomer};
use crate::catalog::states::{CustomerStatus, TenantMigrationStatus};
use crate::catalog::{Catalog, plans, tenants};
use crate::engine::{Engine, Engines, Placement};
use crate::error::Result;

/// The tenant databases that no customer owns. One named for a slug a customer row
/// still has (a deleted customer whose database is back in `tenants/`) is not among
/// them: it is that customer's, and doctor's `tenant.trashed` check moves it back.
pub fn unowned_tenants(conn: &rusqlite::Connection, engine: &dyn Engine) -> Result<Vec<(String, Placement)>> {
    let owned = customers::all_placements(conn)?;
    let mut unowned = Vec::new();
    for (slug, placement) in engine.unowned(&owned)? {
        if !customers::slug_taken(conn, &slug)? {
            unowned.push((slug, placement));
        }
    }
    Ok(unowned)
}

/// Inserts the customer of the tenant database at `placement`, named `slug`, and
/// says where its details came from.
pub fn adopt(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    backup_dir: &Path,
    slug: &str,
    placement: &Placement,
) -> Result<String> {
    let tenant = Engines::new(actor.home).tenant(placement)?;
    tenant.check()?;
    let applied = tenant.applied()?;
    let version = applied.iter().map(|m| m.version).max().unwrap_or(0);
    let found = remembered_in_backups(backup_dir, slug);
    let default_plan = config::default_plan(catalog)?;
    let adopted = catalog.write_audited(actor.name, |tx| {
        let (details, source) = match &found {
            Some((remembered, set)) => (remembered.clone(), Some(set.clone())),
            None => (placeholder(slug, &default_plan), None),
        };
        // Another customer may have the email or plan name no longer exists since.
        let email = if customers::by_email(tx, &details.email)?.is_some() {
            placeholder(slug, &default_plan).email
        } else {
            details.email
        };
        let plan = if plans::get(tx, &details.plan)?.is_some() {
            details.plan
        } else {
            default_plan.clone()
        };
        // The id its backups and ledger entries carry, unless someone has it now.
        let id = match found.as_ref().map(|(r, _)| r.id) {
            Some(id) if customers::any_by_id(tx, id)?.is_none() => Some(id),
            _ => None,
        };
        let customer = customers::insert(
            tx,
            &NewCustomer {
                id,
                slug: slug.to_string(),
                email,
                name: details.name,
                company_name: details.company_name,
                plan,
                metadata: details.metadata,
                placement: placement.clone(),
                schema_version: version,
            },
        )?;
        tenants::record_applied(tx, customer.id, &applied)?;
        tenants::record_run(tx, customer.id, version, TenantMigrationStatus::Ok, None)?;
        customers::activate(tx, customer.id)?;
        if source.is_none() {
            customers::set_status(
                tx,
                customer.id,
                CustomerStatus::Suspended,
                Some("adopted without details: check its email and name, then reactivate"),
            )?;
        }
        let event = NewAuditEvent::new(
            "customer.adopt",
            "customer",
            slug,
            Some(customer.id),
            json!({"from_backup": source, "schema_version": version}),
        );
        Ok(((customer.id, source), [event]))
    })?;
    Ok(match adopted {
        (id, Some(set)) => format!("adopted as customer {id}, with its details from set {set}"),
        (id, None) => format!(
            "adopted as customer {id}, suspended: no backup knew it, so its email and name are placeholders"
        ),
    })
}

/// The customer's details in the newest set whose catalog has the slug.
fn remembered_in_backups(backup_dir: &Path, slug: &str) -> Option<(Remembered, String)> {
    let sets = list_sets(backup_dir).ok()?;
    sets.iter().rev().find_map(|set| {
        let entry = set.manifest.catalog_entry()?;
        let conn = Catalog::open_frozen(&set.file(entry).ok()?).ok()?;
        let remembered = customers::remembered(&conn, slug).ok()??;
        Some((remembered, set.manifest.id.clone()))
    })
}

fn placeholder(slug: &str, plan: &str) -> Remembered {
    Remembered {
        id: 0,
        email: format!("{slug}@adopted.invalid"),
        name: slug.to_string(),
        company_name: None,
        plan: plan.to_string(),
        metadata: Map::new(),
    }
}
