//! The writing side of `import`: plans, customers with their new tenant databases,
//! and sites, in one catalog transaction.

use std::collections::HashMap;

use rusqlite::Connection;
use serde_json::{Value, json};

use super::ImportRequest;
use super::plan::{CustomerPlan, PlanUpdate, SitePlan, SiteRead};
use crate::catalog::customers::CustomerChanges;
use crate::catalog::model::{Customer, NewAuditEvent, NewSite};
use crate::catalog::operations::{self, NewOperation};
use crate::catalog::sites;
use crate::catalog::states::{CustomerStatus, SiteStatus, SnapshotKind};
use crate::catalog::{Catalog, plans};
use crate::engine::{Engine, Engines, Placement, Provisioned};
use crate::error::{Error, Result};
use crate::import::{Parsed, SiteDoc, SourceFile, digest, site_config};
use crate::lock::Owner;
use crate::migrations;
use crate::ops::customers::NewTenant;
use crate::ops::recovery::{self, crash_point};
use crate::ops::{Actor, config, customers, plans as plan_ops};

/// Everything an import writes.
pub(super) struct Rows<'a> {
    pub(super) parsed: &'a [(String, Parsed)],
    pub(super) sources: &'a [SourceFile],
    pub(super) reads: &'a [Option<SiteRead>],
    pub(super) plans: &'a [PlanUpdate],
    pub(super) customers: &'a HashMap<String, CustomerPlan>,
    pub(super) sites: &'a [SitePlan],
}

/// One transaction for every row, the new customers reserved (invisible) beside the
/// ledger's note of which database goes where; then the databases are put in place
/// and the customers made visible. A kill after the transaction is finished by the
/// next command: what it changed in plans, sites and existing customers stays.
/// Plans come first: customers name them.
pub(super) fn write(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    request: &ImportRequest,
    rows: &Rows<'_>,
) -> Result<()> {
    let Rows {
        parsed,
        sources,
        reads,
        plans: plan_updates,
        customers: customer_plans,
        sites: site_plans,
    } = *rows;
    let new_customers: Vec<&String> = customer_plans
        .iter()
        .filter(|(_, p)| p.existing.is_none())
        .map(|(k, _)| k)
        .collect();
    let migrations = migrations::load_migrations(&config::tenant_migrations_dir(catalog, actor.home)?)?;
    let engines = Engines::new(actor.home);
    let engine = engines.default_engine();
    let owner = Owner::new(&actor.home.run_dir())?;
    let provisioned = engine.provision_many(&migrations, new_customers.len(), request.jobs, owner.token())?;
    crash_point("import:provisioned");
    let staged: HashMap<String, Provisioned> = new_customers
        .iter()
        .map(|k| (*k).clone())
        .zip(provisioned)
        .collect();
    let written = catalog.write_audited(actor.name, |tx| {
        let mut events = Vec::new();
        for update in plan_updates {
            // Read again inside the transaction: the guard must see the plan as it is.
            let current = plans::get(tx, &update.plan.name)?;
            let (_, event) = plan_ops::save(tx, current.as_ref(), &update.plan, false, Some("import"))?;
            events.push(event);
        }
        let mut created = Vec::new();
        let mut ids: HashMap<String, (i64, String)> = HashMap::new();
        let mut keys: Vec<&String> = customer_plans.keys().collect();
        keys.sort();
        for key in keys {
            let plan = &customer_plans[key];
            let customer = match &plan.existing {
                Some(existing) => update_customer(tx, existing, plan, &mut events)?,
                None => {
                    let built = staged
                        .get(key)
                        .ok_or_else(|| Error::unexpected("a new customer without a database"))?;
                    let (customer, suspend) = insert_customer(tx, engine, plan, built, &mut events)?;
                    created.push(json!({
                        "customer_id": customer.id,
                        "staging": built.staging,
                        "placement": recovery::placement_json(&customer.placement),
                        "suspend": suspend,
                    }));
                    customer
                }
            };
            ids.insert(key.clone(), (customer.id, customer.slug.clone()));
        }
        let mut site_events = Vec::with_capacity(site_plans.len());
        for plan in site_plans {
            let (customer_id, _) = ids[&*plan.customer_key];
            let (path, Parsed::Site(doc, _)) = &parsed[plan.file] else {
                return Err(Error::unexpected("a site plan for a file that is no site"));
            };
            let file = File {
                path,
                doc,
                source: &sources[plan.file],
                read: reads[plan.file],
            };
            site_events.extend(write_site(tx, actor, plan, customer_id, &file)?);
        }
        let events = events
            .into_iter()
            .chain(site_events.into_iter().map(SiteEvent::into_event));
        if created.is_empty() {
            return Ok((None, events));
        }
        let subject = request.dir.display().to_string();
        // The ledger's steps are kept for publishing, not copied: at 10,000 new
        // customers a copy is tens of megabytes.
        let ledger = NewOperation {
            kind: recovery::IMPORT,
            subject: &subject,
            customer_id: None,
            owner: owner.token(),
            steps: json!({ "customers": created }),
        };
        let op = operations::open(tx, &ledger)?;
        Ok((Some((op, ledger.steps)), events))
    });
    let (op, steps) = match written {
        Ok(Some(recorded)) => recorded,
        Ok(None) => return Ok(()),
        Err(err) => {
            staged.values().for_each(|built| engine.discard(built));
            return Err(err);
        }
    };
    crash_point("import:recorded");
    let pairs: Vec<(Provisioned, Placement)> = staged_pairs(&steps)?;
    let published = engine.publish_many(&pairs);
    crash_point("import:published");
    // Whatever publishing did, the import is decided: finishing puts the rest in place
    // (or, for a database that is gone, removes its customer) and shows the customers.
    recovery::finish_import(catalog, &engines, op, &steps)?;
    published
}

/// The (staged database, placement) pairs an import's ledger steps name.
fn staged_pairs(steps: &Value) -> Result<Vec<(Provisioned, Placement)>> {
    let empty = Vec::new();
    steps["customers"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|step| {
            Ok((
                Provisioned {
                    staging: step["staging"].as_str().unwrap_or_default().to_string(),
                    schema_version: 0,
                    applied: Vec::new(),
                    role_password: None,
                },
                recovery::placement_of(&step["placement"])?,
            ))
        })
        .collect()
}

fn insert_customer(
    tx: &Connection,
    engine: &dyn Engine,
    plan: &CustomerPlan,
    built: &Provisioned,
    events: &mut Vec<NewAuditEvent>,
) -> Result<(Customer, Option<String>)> {
    let doc = &plan.doc;
    let name = doc
        .name
        .clone()
        .or_else(|| doc.company_name.clone())
        .unwrap_or_else(|| doc.email.split('@').next().unwrap_or_default().to_string());
    let new = NewTenant {
        slug: doc.slug.as_deref(),
        email: &doc.email,
        name,
        company: doc.company_name.clone(),
        plan: plan.plan.clone(),
        metadata: doc.metadata.clone().unwrap_or_default(),
    };
    let customer = customers::reserve(tx, engine, &new, built)?;
    let customer = if doc.limits == Default::default() {
        customer
    } else {
        let overrides = CustomerChanges {
            limits: doc.limits,
            ..Default::default()
        };
        crate::catalog::customers::update(tx, &customer, &overrides)?
    };
    // Suspended only once its database is in place: until then it is provisioning.
    let suspend = (doc.status == Some(CustomerStatus::Suspended)).then(|| {
        doc.status_reason
            .as_deref()
            .unwrap_or("suspended when imported")
            .to_string()
    });
    events.push(NewAuditEvent::customer(
        "customer.create",
        &customer,
        json!({"source": "import", "plan": customer.plan, "status": doc.status}),
    ));
    Ok((customer, suspend))
}

fn update_customer(
    tx: &Connection,
    existing: &Customer,
    plan: &CustomerPlan,
    events: &mut Vec<NewAuditEvent>,
) -> Result<Customer> {
    if !plan.changed {
        return Ok(existing.clone());
    }
    let changes = CustomerChanges {
        name: plan.doc.name.clone(),
        company_name: plan.doc.company_name.clone().map(Some),
        plan: Some(plan.plan.clone()),
        limits: plan.doc.limits,
        metadata: plan.doc.metadata.clone(),
        ..Default::default()
    };
    // The files were checked against the catalog before this transaction; another
    // command may have changed the customer since, so the guard runs again here.
    let current = customers::resolve(tx, &existing.id.to_string())?;
    let over = customers::quota_breaches(tx, &current, &changes)?;
    if !over.is_empty() {
        return Err(Error::quota(format!(
            "the import would put {} over quota: {}",
            current.slug,
            over.join(", ")
        ))
        .with_hint("its usage changed during the import; run it again"));
    }
    let updated = crate::catalog::customers::update(tx, &current, &changes)?;
    events.push(NewAuditEvent::customer(
        "customer.update",
        &updated,
        json!({"source": "import", "plan": updated.plan}),
    ));
    Ok(updated)
}

/// A site file as the writes see it: read again, it must still be what was planned.
struct File<'a> {
    path: &'a str,
    /// Its columns; the config is read again.
    doc: &'a SiteDoc,
    source: &'a SourceFile,
    read: Option<SiteRead>,
}

impl File<'_> {
    /// The file's config, from its bytes read again; a file that changed since it was
    /// validated fails the whole import, so that nothing unchecked is written.
    fn config(&self) -> Result<Value> {
        let changed = || {
            Error::conflict(format!(
                "{} changed during the import; nothing was written",
                self.path
            ))
            .with_hint("run the import again")
        };
        let read = self
            .read
            .ok_or_else(|| Error::unexpected("a site file without its digest"))?;
        let bytes = self.source.read().map_err(|_| changed())?;
        if digest(&bytes) != read.digest {
            return Err(changed());
        }
        site_config(&bytes).map_err(|_| changed())
    }
}

/// A site's audit event, held without its JSON details until it is recorded: an
/// import of 100,000 files would otherwise hold 100,000 JSON objects at once.
/// What it borrows is the file's, which the writes gave the site.
struct SiteEvent<'a> {
    file: &'a str,
    /// The site's domain and customer once written.
    domain: &'a str,
    customer_id: i64,
    change: SiteChange<'a>,
}

enum SiteChange<'a> {
    Created { legacy_id: Option<&'a str> },
    Updated { snapshot_id: i64, domain_before: String },
}

impl SiteEvent<'_> {
    fn into_event(self) -> NewAuditEvent {
        let (action, details) = match self.change {
            SiteChange::Created { legacy_id } => (
                "site.create",
                json!({"source": "import", "file": self.file, "legacy_id": legacy_id}),
            ),
            SiteChange::Updated {
                snapshot_id,
                domain_before,
            } => (
                "site.update",
                json!({"source": "import", "file": self.file, "snapshot_id": snapshot_id,
                       "domain": {"from": domain_before, "to": self.domain}}),
            ),
        };
        NewAuditEvent::new(
            action,
            "site",
            self.domain.to_string(),
            Some(self.customer_id),
            details,
        )
    }
}

fn write_site<'a>(
    tx: &Connection,
    actor: Actor<'_>,
    plan: &SitePlan,
    customer_id: i64,
    file: &File<'a>,
) -> Result<Option<SiteEvent<'a>>> {
    let doc = file.doc;
    let event = match plan.existing {
        None => {
            let site = sites::insert(
                tx,
                &NewSite {
                    customer_id,
                    name: doc.name.clone(),
                    domain: doc.domain.clone(),
                    port: doc.port,
                    business_type: doc.business_type.clone(),
                    status: doc.status.unwrap_or(SiteStatus::Draft),
                    config: file.config()?,
                },
            )?;
            sites::set_legacy_id(tx, site.id, doc.legacy_id.as_deref())?;
            SiteEvent {
                file: file.path,
                domain: &doc.domain,
                customer_id: site.customer_id,
                change: SiteChange::Created {
                    legacy_id: doc.legacy_id.as_deref(),
                },
            }
        }
        Some(id) if plan.changed => {
            // Read again inside the transaction: the snapshot keeps the config as it is.
            let site = sites::by_id(tx, id)?.ok_or_else(|| {
                Error::conflict(format!(
                    "site {} was deleted during the import; nothing was written",
                    doc.domain
                ))
                .with_hint("run the import again")
            })?;
            let old = site.config_value()?;
            let snapshot = sites::add_snapshot(
                tx,
                site.id,
                SnapshotKind::Import,
                Some(file.path),
                &old,
                actor.name,
            )?;
            let updated = sites::update(
                tx,
                &site,
                &NewSite {
                    customer_id,
                    name: doc.name.clone(),
                    domain: doc.domain.clone(),
                    port: doc.port,
                    business_type: doc.business_type.clone(),
                    status: doc.status.unwrap_or(site.status),
                    config: file.config()?,
                },
            )?;
            if doc.legacy_id.is_some() {
                sites::set_legacy_id(tx, site.id, doc.legacy_id.as_deref())?;
            }
            SiteEvent {
                file: file.path,
                domain: &doc.domain,
                customer_id: updated.customer_id,
                change: SiteChange::Updated {
                    snapshot_id: snapshot.id,
                    domain_before: site.domain,
                },
            }
        }
        Some(_) => return Ok(None),
    };
    Ok(Some(event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::import::scan::scan;

    fn planned(dir: &std::path::Path) -> (SourceFile, SiteRead) {
        let source = scan(dir).unwrap().remove(0);
        let bytes = source.read().unwrap();
        let read = SiteRead {
            digest: digest(&bytes),
            stored: super::super::plan::stored_digest(&site_config(&bytes).unwrap()),
        };
        (source, read)
    }

    #[test]
    fn a_file_changed_after_it_was_planned_fails_the_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.json");
        std::fs::write(&path, br#"{"domain": "a.test", "name": "A", "b": 1, "a": 2}"#).unwrap();
        let (source, read) = planned(dir.path());
        let doc = SiteDoc {
            legacy_id: None,
            name: "A".into(),
            domain: "a.test".into(),
            port: None,
            business_type: None,
            status: None,
            config: None,
        };
        let file = File {
            path: "site.json",
            doc: &doc,
            source: &source,
            read: Some(read),
        };
        let config = file.config().unwrap();
        let keys: Vec<&String> = config.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["domain", "name", "b", "a"], "the file's key order is kept");

        std::fs::write(&path, br#"{"domain": "a.test", "name": "A", "b": 1, "a": 3}"#).unwrap();
        let err = file.config().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(err.to_string().contains("site.json changed during the import"));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            file.config().unwrap_err().kind(),
            ErrorKind::Conflict,
            "a file gone since"
        );
    }
}
