//! `customer undelete --from-backup`: a deleted customer brought back with its
//! database from a backup set.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::{RestoreRequest, RestoreScope, choose_set, remove_restore_leftovers};
use crate::backup::restore::StagingRun;
use crate::catalog::Catalog;
use crate::catalog::model::NewAuditEvent;
use crate::catalog::states::{CustomerStatus, TenantMigrationStatus};
use crate::catalog::tenants;
use crate::engine::Engines;
use crate::error::{Error, Result};
use crate::lock::HomeLock;
use crate::ops::{Actor, customers};

/// What [`undelete_from_backup`] did.
#[derive(Debug)]
pub struct UndeletedFromBackup {
    pub customer: crate::catalog::model::Customer,
    pub set: String,
    /// As [`RestoreReport::cleaned_up`](super::RestoreReport::cleaned_up).
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
    let cleaned_up = remove_restore_leftovers(&lock, actor.home, backup_dir, false);
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
    super::refuse_other_engine(&entry, target.placement())?;
    let staged = target.stage_restore(
        &run,
        &crate::engine::RestoreSource {
            file: &chosen.file(&entry)?,
            entry: &entry,
            set_id: &chosen.manifest.id,
        },
    )?;
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
        Ok(customer) => {
            // As a plain undelete: the login shut out at delete returns only for an
            // active customer.
            if customer.status == CustomerStatus::Active {
                target.set_login(true)?;
            }
            Ok(UndeletedFromBackup {
                customer,
                set: chosen.manifest.id,
                cleaned_up,
            })
        }
        Err(err) => {
            target.discard_staged(&staged);
            Err(err)
        }
    }
}
