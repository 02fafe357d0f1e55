//! `export DIR`: the catalog out in the customer-folder layout that `import` reads.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use crate::catalog::model::{Customer, Site};
use crate::catalog::sites::{self, SiteFilter};
use crate::catalog::states::CustomerStatus;
use crate::catalog::{Catalog, plans};
use crate::error::{Error, Result};
use crate::files;
use crate::import::EXPORT_ADDED_KEYS;
use crate::import::plans::PLANS_FILE;

/// What `export` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub dir: String,
    pub plans: usize,
    pub customers: usize,
    pub sites: usize,
}

/// Writes every plan to `DIR/plans.json` and every customer that is not deleted in
/// the customer-folder layout:
/// `DIR/<slug>/customer.json` and `DIR/<slug>/sites/<domain>.json`, each site file
/// being its config with every column laid over it. The tree is written fresh beside
/// DIR and then put in its place, so no file of an older export survives and no
/// symlink in DIR is ever followed. A DIR that is not empty needs `force`.
pub fn export(catalog: &Catalog, dir: &Path, force: bool) -> Result<ExportReport> {
    let replaces = check_export_target(dir, force)?;
    let name = dir
        .file_name()
        .ok_or_else(|| Error::usage(format!("{} cannot be an export folder", dir.display())))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    files::create_private_dir(&parent)?;
    let fresh = parent.join(format!(
        ".{}.export-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    if fresh.exists() {
        // Left by a run that crashed with the same process id; ours to clear.
        std::fs::remove_dir_all(&fresh).map_err(|e| Error::io(format!("removing {}", fresh.display()), e))?;
    }
    files::create_private_dir(&fresh)?;
    let report = write_export_tree(catalog, &fresh).and_then(|counts| {
        if replaces {
            files::replace_dir(&fresh, dir)?;
        } else {
            std::fs::rename(&fresh, dir)
                .map_err(|e| Error::io(format!("renaming {} into place", fresh.display()), e))?;
            files::fsync_dir(&parent)?;
        }
        Ok(counts)
    });
    if report.is_err() {
        let _ = std::fs::remove_dir_all(&fresh);
    }
    let (plans, customers, sites) = report?;
    Ok(ExportReport {
        dir: dir.display().to_string(),
        plans,
        customers,
        sites,
    })
}

/// Whether an existing folder will be replaced; refuses a symlink, a file, and a
/// folder with something in it unless `force`.
fn check_export_target(dir: &Path, force: bool) -> Result<bool> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    if meta.file_type().is_symlink() {
        return Err(
            Error::refused(format!("export folder {} is a symlink", dir.display()))
                .with_hint("export does not follow symlinks; give the real folder"),
        );
    }
    if !meta.is_dir() {
        return Err(Error::usage(format!("{} is not a folder", dir.display())));
    }
    let empty = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
        .next()
        .is_none();
    if !empty && !force {
        return Err(
            Error::refused(format!("export folder {} is not empty", dir.display()))
                .with_hint("pass --force to replace it with a fresh export"),
        );
    }
    Ok(true)
}

/// Writes the export into `root` (a new, private folder); returns the plan, customer
/// and site counts.
fn write_export_tree(catalog: &Catalog, root: &Path) -> Result<(usize, usize, usize)> {
    let plan_count = write_plans_file(catalog, root)?;
    let everyone = crate::catalog::customers::list(catalog.conn(), &Default::default())?;
    let (mut customers, mut site_count) = (0, 0);
    for customer in everyone.iter().filter(|c| c.status != CustomerStatus::Deleted) {
        let folder = root.join(&customer.slug);
        let sites_folder = folder.join("sites");
        files::create_private_dir(&sites_folder)?;
        files::write_new_private(
            &folder.join("customer.json"),
            &serde_json::to_vec_pretty(&customer_document(customer))?,
        )?;
        customers += 1;
        let filter = SiteFilter {
            customer_id: Some(customer.id),
            ..Default::default()
        };
        sites::for_each(catalog.conn(), &filter, |site| {
            let path = sites_folder.join(format!("{}.json", site.domain));
            files::write_new_private(&path, &serde_json::to_vec_pretty(&site_document(&site)?)?)?;
            site_count += 1;
            Ok(())
        })?;
        files::fsync_dir(&sites_folder)?;
        files::fsync_dir(&folder)?;
    }
    files::fsync_dir(root)?;
    Ok((plan_count, customers, site_count))
}

/// Every plan with its quota values, built-in ones too (their values may have been
/// changed), so that customers on any plan import into a home that lacks it.
fn write_plans_file(catalog: &Catalog, root: &Path) -> Result<usize> {
    let all = plans::list(catalog.conn())?;
    let entries: Vec<Value> = all
        .iter()
        .map(|p| {
            json!({"name": p.name, "max_sites": p.max_sites, "max_storage_mb": p.max_storage_mb,
                   "max_bandwidth_gb": p.max_bandwidth_gb, "max_api_calls": p.max_api_calls})
        })
        .collect();
    files::write_new_private(
        &root.join(PLANS_FILE),
        &serde_json::to_vec_pretty(&json!({ "plans": entries }))?,
    )?;
    Ok(all.len())
}

/// Everything `import` needs to recreate the customer as it is.
fn customer_document(customer: &Customer) -> Value {
    json!({
        "email": customer.email,
        "name": customer.name,
        "company_name": customer.company_name,
        "plan_type": customer.plan,
        "slug": customer.slug,
        "status": customer.status,
        "status_reason": customer.status_reason,
        "max_sites": customer.max_sites,
        "max_storage_mb": customer.max_storage_mb,
        "max_bandwidth_gb": customer.max_bandwidth_gb,
        "max_api_calls": customer.max_api_calls,
        "metadata": customer.metadata,
    })
}

/// A site's config with every column written over the key that holds it (in the
/// config's own spelling, else the legacy camelCase one). Keys the config did not
/// hold are listed under [`EXPORT_ADDED_KEYS`], so `import` puts the same config back.
fn site_document(site: &Site) -> Result<Value> {
    let Value::Object(mut document) = site.config_value()? else {
        return Err(Error::unexpected(format!(
            "site {} has a config that is not an object",
            site.domain
        )));
    };
    let mut columns = vec![
        (&["name"][..], json!(site.name)),
        (&["domain"][..], json!(site.domain)),
        (&["port"][..], json!(site.port)),
        (&["businessType", "business_type"][..], json!(site.business_type)),
        (&["status"][..], json!(site.status)),
    ];
    if let Some(id) = &site.legacy_id {
        columns.insert(0, (&["siteId", "site_id"][..], json!(id)));
    }
    let mut added = Vec::new();
    for (names, value) in columns {
        let key = match names.iter().find(|n| document.contains_key(**n)) {
            Some(key) => key,
            None => {
                added.push(names[0]);
                &names[0]
            }
        };
        document.insert(key.to_string(), value);
    }
    document.remove(EXPORT_ADDED_KEYS);
    if !added.is_empty() {
        document.insert(EXPORT_ADDED_KEYS.to_string(), json!(added));
    }
    Ok(Value::Object(document))
}
