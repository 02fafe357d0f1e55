//! The writing side of `import`: plans, customers with their new tenant databases,
//! and sites, in one catalog transaction.

use std::collections::HashMap;
use std::thread::ScopedJoinHandle;

use rusqlite::Connection;
use serde_json::json;

use super::plan::{CustomerPlan, PlanUpdate, SitePlan};
use super::{FileResult, ImportRequest};
use crate::catalog::customers::CustomerChanges;
use crate::catalog::model::{Customer, NewAuditEvent, NewSite};
use crate::catalog::operations::{self, NewOperation};
use crate::catalog::sites::{self, ImportedSite};
use crate::catalog::states::{CustomerStatus, SiteStatus, SnapshotKind};
use crate::catalog::{Catalog, plans};
use crate::engine::{Engine, Engines, Placement, Provisioned};
use crate::error::{Error, Result};
use crate::fan_out::{Load, default_jobs, fan_out_all};
use crate::import::{Digest, SiteDoc, SourceFile, digest, site_from_bytes};
use crate::lock::Owner;
use crate::migrations;
use crate::ops::customers::NewTenant;
use crate::ops::recovery::{self, ImportStep, ImportSteps, crash_point};
use crate::ops::{Actor, config, customers, plans as plan_ops};

/// Everything an import writes. The site files are read again as they are written
/// (see [`Reread`]); the plan kept only their digests.
pub(super) struct Rows<'a> {
    pub(super) sources: &'a [SourceFile],
    /// The digest of each site file's bytes as they were planned.
    pub(super) digests: &'a [Option<Digest>],
    /// The report's lines: each site file's domain, as its event names it.
    pub(super) files: &'a [FileResult],
    pub(super) plans: &'a [PlanUpdate],
    pub(super) customers: &'a HashMap<String, CustomerPlan>,
    pub(super) sites: &'a [SitePlan],
}

/// Site files read again at once, by parallel workers, before their rows are written
/// in order: enough to keep the workers busy, few enough that their configs are held
/// for a moment, not for the whole tree.
const REREAD_CHUNK: usize = 1024;

/// New customers per ledger row of an import.
const LEDGER_ROW: usize = 1000;

/// One transaction for every row, the new customers reserved (invisible) beside the
/// ledger's note of which database goes where; then the databases are put in place
/// and the customers made visible. A kill after the transaction is finished by the
/// next command: what it changed in plans, sites and existing customers stays.
/// Plans come first: customers name them.
///
/// The new databases are copied while the rows are written: the copies wait on the
/// disk, the rows on a core. The transaction takes the copies before its ledger.
pub(super) fn write(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    request: &ImportRequest,
    rows: &Rows<'_>,
) -> Result<()> {
    let new_customers = rows.customers.values().filter(|p| p.existing.is_none()).count();
    let migrations = migrations::load_migrations(&config::tenant_migrations_dir(catalog, actor.home)?)?;
    let engines = Engines::new(actor.home);
    let engine = engines.default_engine();
    let owner = Owner::new(&actor.home.run_dir())?;
    let (written, staged) = std::thread::scope(|scope| {
        let mut provisioning = Some(
            scope.spawn(|| engine.provision_many(&migrations, new_customers, request.jobs, owner.token())),
        );
        let mut staged = Vec::new();
        let written = catalog.write_audited(actor.name, |tx| {
            let written_rows = write_rows(tx, actor, rows, engine)?;
            staged = joined(provisioning.take())?;
            crash_point("import:provisioned");
            let RowsWritten { created, events } = written_rows;
            let ledgers = write_ledger(tx, request, &owner, created, &staged)?;
            Ok((ledgers, events.into_events(rows)))
        });
        // Writes that failed before taking the copies leave them to be discarded.
        if let Some(Ok(built)) = provisioning.take().map(|handle| joined(Some(handle))) {
            staged = built;
        }
        (written, staged)
    });
    let ledgers = match written {
        Ok(ledgers) if ledgers.is_empty() => return Ok(()),
        Ok(ledgers) => ledgers,
        Err(err) => {
            staged.iter().for_each(|built| engine.discard(built));
            return Err(err);
        }
    };
    crash_point("import:recorded");
    let pairs: Vec<(Provisioned, Placement)> = ledgers
        .iter()
        .flat_map(|(_, steps)| &steps.customers)
        .map(|step| (Provisioned::staged(&step.staging), step.placement.clone()))
        .collect();
    let published = engine.publish_many(&pairs);
    crash_point("import:published");
    // Whatever publishing did, the import is decided: finishing puts the rest in place
    // (or, for a database that is gone, removes its customer) and shows the customers.
    for (op, steps) in &ledgers {
        recovery::finish_import(catalog, &engines, *op, steps)?;
    }
    published
}

/// The databases a provisioning thread built, once it is done.
fn joined(handle: Option<ScopedJoinHandle<'_, Result<Vec<Provisioned>>>>) -> Result<Vec<Provisioned>> {
    match handle {
        Some(handle) => handle
            .join()
            .map_err(|_| Error::unexpected("building the new tenant databases stopped"))?,
        None => Ok(Vec::new()),
    }
}

/// What the rows of an import wrote, beyond the rows: the ledger's step for each new
/// customer, its database still to be named, and the audit events to record.
struct RowsWritten<'r> {
    created: Vec<ImportStep>,
    events: Events<'r>,
}

/// The audit events of an import's rows, made when they are recorded.
struct Events<'r> {
    customers: Vec<CustomerEvent>,
    customer_ids: HashMap<&'r str, i64>,
    sites: SiteEvents,
}

impl<'r> Events<'r> {
    fn into_events(self, rows: &'r Rows<'_>) -> impl Iterator<Item = NewAuditEvent> + 'r {
        self.customers
            .into_iter()
            .map(CustomerEvent::into_event)
            .chain(self.sites.into_events(rows, self.customer_ids))
    }
}

/// The ledger's note of which database goes where, each new customer's migrations in
/// its tenant ledger, in rows of at most [`LEDGER_ROW`] customers: SQLite checks and
/// copies a row's text several times over, which for one row of 10,000 customers held
/// about 10 MB at once.
fn write_ledger(
    tx: &Connection,
    request: &ImportRequest,
    owner: &Owner,
    mut steps: Vec<ImportStep>,
    staged: &[Provisioned],
) -> Result<Vec<(i64, ImportSteps)>> {
    if steps.len() != staged.len() {
        return Err(Error::unexpected("not one new database per new customer"));
    }
    for (step, built) in steps.iter_mut().zip(staged) {
        customers::record_built(tx, step.customer_id, built)?;
        step.staging.clone_from(&built.staging);
    }
    let subject = request.dir.display().to_string();
    let mut ledgers = Vec::new();
    let mut steps = steps.into_iter().peekable();
    while steps.peek().is_some() {
        let ledger = NewOperation {
            kind: recovery::IMPORT,
            subject: &subject,
            customer_id: None,
            owner: owner.token(),
            steps: ImportSteps {
                customers: steps.by_ref().take(LEDGER_ROW).collect(),
            },
        };
        ledgers.push((operations::open(tx, &ledger)?, ledger.steps));
    }
    Ok(ledgers)
}

/// The plans, customers and sites, in that order: customers name plans, sites
/// customers. The new customers' databases are not needed yet.
fn write_rows<'r>(
    tx: &Connection,
    actor: Actor<'_>,
    rows: &'r Rows<'_>,
    engine: &dyn Engine,
) -> Result<RowsWritten<'r>> {
    let mut events = Vec::new();
    for update in rows.plans {
        // Read again inside the transaction: the guard must see the plan as it is.
        let current = plans::get(tx, &update.plan.name)?;
        let (_, event) = plan_ops::save(tx, current.as_ref(), &update.plan, false, Some("import"))?;
        events.push(CustomerEvent::Made(event));
    }
    let mut created = Vec::new();
    let mut customer_ids: HashMap<&str, i64> = HashMap::new();
    let mut keys: Vec<&String> = rows.customers.keys().collect();
    keys.sort();
    for key in keys {
        let plan = &rows.customers[key];
        let id = match &plan.existing {
            Some(existing) => update_customer(tx, existing, plan, &mut events)?.id,
            None => {
                let (customer, suspend) = insert_customer(tx, engine, plan, &mut events)?;
                // Only what the ledger needs is kept: an import may create thousands.
                created.push(ImportStep {
                    customer_id: customer.id,
                    staging: String::new(),
                    placement: customer.placement,
                    suspend,
                });
                customer.id
            }
        };
        customer_ids.insert(key, id);
    }
    let sites = write_sites(tx, actor, rows, &customer_ids)?;
    Ok(RowsWritten {
        created,
        events: Events {
            customers: events,
            customer_ids,
            sites,
        },
    })
}

/// Writes the sites the plan creates or changes, in file order. Their files are read
/// again a chunk at a time by parallel workers, one chunk ahead of this thread, which
/// inserts the rows: reading and writing overlap, and at most three chunks are held.
fn write_sites(
    tx: &Connection,
    actor: Actor<'_>,
    rows: &Rows<'_>,
    customer_ids: &HashMap<&str, i64>,
) -> Result<SiteEvents> {
    // Reading and parsing keep a core busy; the request's jobs are for fsyncs.
    let jobs = default_jobs(Load::Compute);
    let to_write: Vec<&SitePlan> = written(rows.sites).collect();
    let files: Vec<usize> = to_write.iter().map(|plan| plan.file).collect();
    let (sources, digests) = (rows.sources, rows.digests);
    let mut events = SiteEvents::default();
    std::thread::scope(|scope| {
        let (sender, reread) = std::sync::mpsc::sync_channel(1);
        scope.spawn(move || {
            for chunk in files.chunks(REREAD_CHUNK) {
                let read = fan_out_all(chunk, jobs, |&file| Reread::of(&sources[file], digests[file]));
                // A failed write drops the receiver: stop reading.
                if sender.send(read).is_err() {
                    break;
                }
            }
        });
        for (plans, read) in to_write.chunks(REREAD_CHUNK).zip(reread) {
            for (plan, site) in plans.iter().zip(read) {
                let file = File {
                    path: &sources[plan.file].path,
                    site: site?,
                };
                write_site(
                    tx,
                    actor,
                    plan,
                    customer_ids[&*plan.customer_key],
                    file,
                    &mut events,
                )?;
            }
        }
        Ok(events)
    })
}

fn insert_customer(
    tx: &Connection,
    engine: &dyn Engine,
    plan: &CustomerPlan,
    events: &mut Vec<CustomerEvent>,
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
    let customer = customers::reserve_row(tx, engine, &new)?;
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
    events.push(CustomerEvent::Created {
        customer_id: customer.id,
        slug: customer.slug.clone(),
        plan: customer.plan.clone(),
        status: doc.status,
    });
    Ok((customer, suspend))
}

fn update_customer(
    tx: &Connection,
    existing: &Customer,
    plan: &CustomerPlan,
    events: &mut Vec<CustomerEvent>,
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
    events.push(CustomerEvent::Made(NewAuditEvent::customer(
        "customer.update",
        &updated,
        json!({"source": "import", "plan": updated.plan}),
    )));
    Ok(updated)
}

/// A site file read again for its writes: its columns, and its config as the text
/// the catalog stores. It must still be the file that was planned.
struct Reread {
    doc: SiteDoc,
    config: String,
}

impl Reread {
    /// A file that changed since it was validated fails the whole import, so that
    /// nothing unchecked is written.
    fn of(source: &SourceFile, planned: Option<Digest>) -> Result<Reread> {
        let changed = || {
            Error::conflict(format!(
                "{} changed during the import; nothing was written",
                source.path
            ))
            .with_hint("run the import again")
        };
        let planned = planned.ok_or_else(|| Error::unexpected("a site file without its digest"))?;
        let reread = source.read_with(|bytes| {
            if digest(bytes) != planned {
                return None;
            }
            let mut doc = site_from_bytes(bytes).ok()?;
            let config = doc
                .config
                .take()
                .map_or_else(|| "{}".to_string(), |c| c.to_string());
            Some(Reread { doc, config })
        });
        reread.ok().flatten().ok_or_else(changed)
    }
}

/// A site file as its writes see it.
struct File<'a> {
    path: &'a str,
    site: Reread,
}

/// An audit event of the plans and customers; a created customer's is held without
/// its JSON until it is recorded, as an import may create thousands.
enum CustomerEvent {
    Made(NewAuditEvent),
    Created {
        customer_id: i64,
        slug: String,
        plan: String,
        status: Option<CustomerStatus>,
    },
}

impl CustomerEvent {
    fn into_event(self) -> NewAuditEvent {
        match self {
            CustomerEvent::Made(event) => event,
            CustomerEvent::Created {
                customer_id,
                slug,
                plan,
                status,
            } => NewAuditEvent::new(
                "customer.create",
                "customer",
                slug,
                Some(customer_id),
                json!({"source": "import", "plan": plan, "status": status}),
            ),
        }
    }
}

/// What the sites' audit events need beyond the plan, held until they are recorded:
/// 100,000 events as JSON would be megabytes. The events are made again from the
/// plan's sites in file order; a file's path and its site's domain are the report's,
/// its customer the writes' map.
#[derive(Default)]
struct SiteEvents {
    /// For each site created: the length of its legacy id in `legacy_ids`, or
    /// [`NO_LEGACY_ID`].
    created: Vec<u32>,
    /// The created sites' legacy ids, end to end.
    legacy_ids: String,
    /// For each site changed: the snapshot of the config it replaced, and the domain
    /// before.
    updated: Vec<(i64, String)>,
}

const NO_LEGACY_ID: u32 = u32::MAX;

impl SiteEvents {
    fn created(&mut self, legacy_id: Option<&str>) {
        // Files are at most 1 MiB: every id's length fits.
        let len = legacy_id
            .and_then(|id| u32::try_from(id.len()).ok())
            .unwrap_or(NO_LEGACY_ID);
        if len != NO_LEGACY_ID {
            self.legacy_ids.push_str(legacy_id.unwrap_or_default());
        }
        self.created.push(len);
    }

    fn updated(&mut self, snapshot_id: i64, domain_before: String) {
        self.updated.push((snapshot_id, domain_before));
    }

    /// The events, in the order the sites were written (see [`written`]).
    fn into_events<'a>(
        self,
        rows: &'a Rows<'_>,
        customer_ids: HashMap<&'a str, i64>,
    ) -> impl Iterator<Item = NewAuditEvent> + 'a {
        let SiteEvents {
            created,
            legacy_ids,
            updated,
        } = self;
        let (mut created, mut updated) = (created.into_iter(), updated.into_iter());
        let mut at = 0;
        written(rows.sites).map(move |plan| {
            let file = &*rows.sources[plan.file].path;
            let domain = rows.files[plan.file].site.as_deref().unwrap_or_default();
            let details = match plan.existing {
                None => {
                    let len = created.next().unwrap_or(NO_LEGACY_ID);
                    let legacy_id = (len != NO_LEGACY_ID).then(|| {
                        let id = &legacy_ids[at..at + len as usize];
                        at += len as usize;
                        id
                    });
                    (
                        "site.create",
                        json!({"source": "import", "file": file, "legacy_id": legacy_id}),
                    )
                }
                Some(_) => {
                    let (snapshot_id, domain_before) = updated.next().unwrap_or_default();
                    (
                        "site.update",
                        json!({"source": "import", "file": file, "snapshot_id": snapshot_id,
                               "domain": {"from": domain_before, "to": domain}}),
                    )
                }
            };
            NewAuditEvent::new(
                details.0,
                "site",
                domain.to_string(),
                Some(customer_ids[&*plan.customer_key]),
                details.1,
            )
        })
    }
}

/// The sites an import writes, in file order: the new ones and the changed ones.
fn written<'a>(sites: &'a [SitePlan]) -> impl Iterator<Item = &'a SitePlan> + 'a {
    sites
        .iter()
        .filter(|plan| plan.existing.is_none() || plan.changed)
}

fn write_site(
    tx: &Connection,
    actor: Actor<'_>,
    plan: &SitePlan,
    customer_id: i64,
    file: File<'_>,
    events: &mut SiteEvents,
) -> Result<()> {
    let Reread { doc, config } = file.site;
    match plan.existing {
        None => {
            sites::insert_imported(
                tx,
                &ImportedSite {
                    customer_id,
                    name: &doc.name,
                    domain: &doc.domain,
                    port: doc.port,
                    business_type: doc.business_type.as_deref(),
                    status: doc.status.unwrap_or(SiteStatus::Draft),
                    config: &config,
                    legacy_id: doc.legacy_id.as_deref(),
                },
            )?;
            events.created(doc.legacy_id.as_deref());
        }
        Some(id) => {
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
            sites::update(
                tx,
                &site,
                &NewSite {
                    customer_id,
                    status: doc.status.unwrap_or(site.status),
                    name: doc.name.into(),
                    domain: doc.domain.into(),
                    port: doc.port,
                    business_type: doc.business_type.map(Into::into),
                    config: serde_json::from_str(&config)?,
                },
            )?;
            if doc.legacy_id.is_some() {
                sites::set_legacy_id(tx, site.id, doc.legacy_id.as_deref())?;
            }
            events.updated(snapshot.id, site.domain);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::import::scan::scan;

    #[test]
    fn a_file_changed_after_it_was_planned_fails_the_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.json");
        std::fs::write(&path, br#"{"domain": "a.test", "name": "A", "b": 1, "a": 2}"#).unwrap();
        let source = scan(dir.path()).unwrap().remove(0);
        let bytes = source.read().unwrap();
        let read = Some(digest(&bytes));
        let site = Reread::of(&source, read).unwrap();
        assert_eq!(&*site.doc.domain, "a.test");
        assert_eq!(
            site.config, r#"{"domain":"a.test","name":"A","b":1,"a":2}"#,
            "the file's key order is kept"
        );

        std::fs::write(&path, br#"{"domain": "a.test", "name": "A", "b": 1, "a": 3}"#).unwrap();
        let err = Reread::of(&source, read).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(err.to_string().contains("site.json changed during the import"));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            Reread::of(&source, read).err().unwrap().kind(),
            ErrorKind::Conflict,
            "a file gone since"
        );
    }
}
