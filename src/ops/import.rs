//! `import DIR`: the legacy file-based configs into the catalog, all or nothing by
//! default, idempotent; `export DIR` (in `super::export`) writes the same layout back.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use rusqlite::Connection;
use serde::Serialize;
use serde_json::{Value, json};

use super::{Actor, Reported, config, customers, plans as plan_ops, quota};
use crate::catalog::customers::CustomerChanges;
use crate::catalog::model::{Customer, NewCustomer, NewSite, Plan, Site};
use crate::catalog::sites;
use crate::catalog::states::{CustomerStatus, SiteStatus, SnapshotKind, TenantMigrationStatus};
use crate::catalog::{Catalog, plans, tenants};
use crate::engine::{Engine, Engines, Placement, Provisioned};
use crate::error::{Error, Result};
use crate::import::plans::{PlanDoc, is_plans_file, parse_plans};
use crate::import::scan::{is_customer_file, scan};
use crate::import::{CustomerDoc, ImportAction, Parsed, Problem, SiteDoc, cross_check, parse};
use crate::migrations;
use crate::validate;

/// One file's line in the import report.
#[derive(Debug, Clone, Serialize)]
pub struct FileResult {
    pub path: String,
    pub action: ImportAction,
    pub customer: Option<String>,
    pub site: Option<String>,
    pub field: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub files: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub skipped: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    /// Whether anything was written to the catalog or tenant folder.
    pub written: bool,
    pub summary: Summary,
    pub files: Vec<FileResult>,
}

#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub dir: PathBuf,
    pub dry_run: bool,
    pub continue_on_error: bool,
    pub plan: Option<String>,
    pub jobs: usize,
}

/// What the catalog must do for one customer of the import.
#[derive(Debug, Clone)]
struct CustomerPlan {
    doc: CustomerDoc,
    plan: String,
    existing: Option<Customer>,
    /// Fields to change on an existing customer.
    changed: bool,
    /// The limits in force once the import is written.
    limits: quota::EffectiveLimits,
}

/// A plan that the plans file creates (`current` is `None`) or changes.
#[derive(Debug, Clone)]
struct PlanUpdate {
    plan: Plan,
    current: Option<Plan>,
}

/// What the catalog must do for one site file.
#[derive(Debug, Clone)]
struct SitePlan {
    file: usize,
    doc: SiteDoc,
    customer_key: String,
    existing: Option<Site>,
}

/// Imports the folder; the report lists every file, and any invalid file makes the
/// outcome fail: partial with `--continue-on-error`, invalid input without.
pub fn import(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    request: &ImportRequest,
) -> Result<Reported<ImportReport>> {
    let mut known_plans: HashMap<String, Plan> = plans::list(catalog.conn())?
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    if let Some(plan) = &request.plan {
        validate::plan_name(plan)?;
    }
    let sources = scan(&request.dir)?;
    let mut parsed = parse_all(&sources);
    cross_check(&mut parsed);
    let mut results: Vec<FileResult> = parsed
        .iter()
        .map(|(path, p)| FileResult {
            path: path.clone(),
            action: match p {
                Parsed::Skipped(_) => ImportAction::Skipped,
                Parsed::Failed(_) => ImportAction::Failed,
                _ => ImportAction::Unchanged,
            },
            customer: None,
            site: None,
            field: match p {
                Parsed::Failed(problem) => Some(problem.field.clone()),
                _ => None,
            },
            reason: match p {
                Parsed::Failed(problem) => Some(problem.reason.clone()),
                Parsed::Skipped(why) => Some(why.clone()),
                _ => None,
            },
        })
        .collect();
    let plan_updates = plans_from_file(catalog.conn(), &parsed, &mut known_plans, &mut results)?;
    if let Some(plan) = &request.plan
        && !known_plans.contains_key(plan)
    {
        return Err(Error::usage(format!("unknown plan '{plan}'")).with_hint("see 'tenantctl plan list'"));
    }

    let default_plan = match &request.plan {
        Some(plan) => plan.clone(),
        None => config::default_plan(catalog)?,
    };
    let (mut customer_plans, mut site_plans) =
        plan_against_catalog(catalog.conn(), &parsed, &known_plans, &default_plan, &mut results)?;
    enforce_site_limits(catalog.conn(), &customer_plans, &site_plans, &mut results)?;
    let failed = results.iter().any(|r| r.action == ImportAction::Failed);
    // A customer is written only for files that are written.
    let live_files: HashSet<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.action != ImportAction::Failed)
        .map(|(i, _)| i)
        .collect();
    site_plans.retain(|s| live_files.contains(&s.file));
    let wanted_customers: HashSet<String> = site_plans
        .iter()
        .map(|s| s.customer_key.clone())
        .chain(parsed.iter().enumerate().filter_map(|(i, (_, p))| match p {
            Parsed::Customer(doc) if live_files.contains(&i) => Some(doc.email.to_ascii_lowercase()),
            _ => None,
        }))
        .collect();
    customer_plans.retain(|key, _| wanted_customers.contains(key));
    // Which site files describe their customer inline (not through a customer.json).
    let inline: Vec<bool> = sources.iter().map(|s| s.customer_file.is_none()).collect();
    describe_actions(&parsed, &inline, &customer_plans, &site_plans, &mut results);

    let mut report = ImportReport {
        dry_run: request.dry_run,
        written: false,
        summary: Summary::default(),
        files: results,
    };
    let nothing_to_do = report.files.iter().all(|r| {
        matches!(
            r.action,
            ImportAction::Unchanged | ImportAction::Skipped | ImportAction::Failed
        )
    });
    if request.dry_run || (failed && !request.continue_on_error) || nothing_to_do {
        report.summary = summarise(&report.files);
        return Ok(with_outcome(report, request.continue_on_error));
    }
    let rows = Rows {
        parsed: &parsed,
        plans: &plan_updates,
        customers: &customer_plans,
        sites: &site_plans,
    };
    write(catalog, actor, request, &rows)?;
    report.written = true;
    report.summary = summarise(&report.files);
    Ok(with_outcome(report, request.continue_on_error))
}

/// An import with invalid files fails: exit 8 when the valid ones were (or would be)
/// imported with `--continue-on-error`, exit 9 when nothing is.
fn with_outcome(report: ImportReport, continue_on_error: bool) -> Reported<ImportReport> {
    let s = &report.summary;
    let failure = (s.failed > 0).then(|| match (report.dry_run, continue_on_error) {
        (true, true) => Error::partial(format!(
            "{} of {} files would fail (dry run: nothing written)",
            s.failed, s.files
        )),
        (true, false) => Error::invalid_input(format!(
            "{} of {} files are invalid (dry run: nothing written)",
            s.failed, s.files
        )),
        (false, true) => Error::partial(format!(
            "{} of {} files failed; the valid ones were imported",
            s.failed, s.files
        )),
        (false, false) => Error::invalid_input(format!(
            "{} of {} files are invalid; nothing was written",
            s.failed, s.files
        ))
        .with_hint("fix them, or pass --continue-on-error to import the valid ones"),
    });
    Reported::new(report, failure)
}

fn summarise(files: &[FileResult]) -> Summary {
    let count = |action: ImportAction| files.iter().filter(|f| f.action == action).count();
    Summary {
        files: files.len(),
        created: count(ImportAction::Created),
        updated: count(ImportAction::Updated),
        unchanged: count(ImportAction::Unchanged),
        skipped: count(ImportAction::Skipped),
        failed: count(ImportAction::Failed),
    }
}

/// Customer files first, so the sites in their folders know their customer.
fn parse_all(sources: &[crate::import::SourceFile]) -> Vec<(String, Parsed)> {
    let mut owners: HashMap<String, std::result::Result<CustomerDoc, Problem>> = HashMap::new();
    for source in sources.iter().filter(|s| is_customer_file(&s.path)) {
        let outcome = match &source.content {
            Ok(bytes) => match parse(bytes, true, None) {
                Parsed::Customer(doc) => Ok(*doc),
                Parsed::Failed(problem) => Err(problem),
                _ => Err(Problem::new("file", "is not a customer file")),
            },
            Err(problem) => Err(problem.clone()),
        };
        owners.insert(source.path.clone(), outcome);
    }
    sources
        .iter()
        .map(|source| {
            let parsed = match (&source.content, is_customer_file(&source.path)) {
                (Err(problem), _) => Parsed::Failed(problem.clone()),
                (Ok(bytes), false) if is_plans_file(&source.path, bytes) => match parse_plans(bytes) {
                    Ok(plans) => Parsed::Plans(plans),
                    Err(problem) => Parsed::Failed(problem),
                },
                (Ok(_), true) => match &owners[&source.path] {
                    Ok(doc) => Parsed::Customer(Box::new(doc.clone())),
                    Err(problem) => Parsed::Failed(problem.clone()),
                },
                (Ok(bytes), false) => match source.customer_file.as_ref().map(|c| &owners[c]) {
                    Some(Err(_)) => Parsed::Failed(Problem::new(
                        "customer",
                        format!(
                            "its {} is invalid",
                            source.customer_file.clone().unwrap_or_default()
                        ),
                    )),
                    Some(Ok(owner)) => parse(bytes, false, Some(owner)),
                    None => parse(bytes, false, None),
                },
            };
            (source.path.clone(), parsed)
        })
        .collect()
}

/// The plans file's creations and changes, each change checked with `plan set`'s
/// guard (import has no `--force`). When the file is valid its plans join
/// `known_plans`, so that the customers of the import may be on them.
fn plans_from_file(
    conn: &Connection,
    parsed: &[(String, Parsed)],
    known_plans: &mut HashMap<String, Plan>,
    results: &mut [FileResult],
) -> Result<Vec<PlanUpdate>> {
    let Some((index, docs)) = parsed.iter().enumerate().find_map(|(i, (_, p))| match p {
        Parsed::Plans(docs) => Some((i, docs)),
        _ => None,
    }) else {
        return Ok(Vec::new());
    };
    let mut updates = Vec::new();
    for (at, doc) in docs.iter().enumerate() {
        let current = known_plans.get(&doc.name).cloned();
        let plan = plan_of_doc(doc, current.as_ref());
        if let Some(old) = &current {
            if same_quotas(old, &plan) {
                continue;
            }
            let over = plan_ops::customers_put_over(conn, old, &plan)?;
            if !over.is_empty() {
                fail(
                    &mut results[index],
                    &format!("plans[{at}]"),
                    format!(
                        "the change to plan {} would put customers over quota: {} (see 'tenantctl plan set --force')",
                        plan.name,
                        over.join(", ")
                    ),
                );
                return Ok(Vec::new());
            }
        }
        updates.push(PlanUpdate { plan, current });
    }
    for update in &updates {
        known_plans.insert(update.plan.name.clone(), update.plan.clone());
    }
    results[index].action = if updates.iter().any(|u| u.current.is_some()) {
        ImportAction::Updated
    } else if updates.is_empty() {
        ImportAction::Unchanged
    } else {
        ImportAction::Created
    };
    Ok(updates)
}

fn plan_of_doc(doc: &PlanDoc, current: Option<&Plan>) -> Plan {
    Plan {
        name: doc.name.clone(),
        max_sites: doc.max_sites,
        max_storage_mb: doc.max_storage_mb,
        max_bandwidth_gb: doc.max_bandwidth_gb,
        max_api_calls: doc.max_api_calls,
        builtin: current.is_some_and(|c| c.builtin),
        customers: 0,
        created_at: String::new(),
        updated_at: String::new(),
    }
}

fn same_quotas(a: &Plan, b: &Plan) -> bool {
    (a.max_sites, a.max_storage_mb, a.max_bandwidth_gb, a.max_api_calls)
        == (b.max_sites, b.max_storage_mb, b.max_bandwidth_gb, b.max_api_calls)
}

fn fail(result: &mut FileResult, field: &str, reason: String) {
    result.action = ImportAction::Failed;
    result.field = Some(field.to_string());
    result.reason = Some(reason);
}

/// Checks the files against the catalog: plans, slugs, and domains or ports held by
/// another customer's sites.
fn plan_against_catalog(
    conn: &Connection,
    parsed: &[(String, Parsed)],
    known_plans: &HashMap<String, Plan>,
    default_plan: &str,
    results: &mut [FileResult],
) -> Result<(HashMap<String, CustomerPlan>, Vec<SitePlan>)> {
    let mut customer_plans: HashMap<String, CustomerPlan> = HashMap::new();
    let mut customer_problems: HashMap<String, Problem> = HashMap::new();
    let mut site_plans = Vec::new();
    for (index, (_, item)) in parsed.iter().enumerate() {
        let (doc, site) = match item {
            Parsed::Customer(doc) => (doc.as_ref(), None),
            Parsed::Site(site, doc) => (doc.as_ref(), Some(site.as_ref())),
            _ => continue,
        };
        let key = doc.email.to_ascii_lowercase();
        if !customer_plans.contains_key(&key) && !customer_problems.contains_key(&key) {
            match customer_plan(conn, doc, known_plans, default_plan)? {
                Ok(plan) => {
                    customer_plans.insert(key.clone(), plan);
                }
                Err(problem) => {
                    customer_problems.insert(key.clone(), problem);
                }
            }
        }
        results[index].customer = Some(
            customer_plans
                .get(&key)
                .and_then(|p| p.existing.as_ref().map(|c| c.slug.clone()).or(p.doc.slug.clone()))
                .unwrap_or_else(|| doc.email.clone()),
        );
        if let Some(problem) = customer_problems.get(&key) {
            fail(&mut results[index], &problem.field, problem.reason.clone());
            continue;
        }
        let Some(site) = site else { continue };
        results[index].site = Some(site.domain.clone());
        let existing = match matching_site(conn, site)? {
            Ok(existing) => existing,
            Err(problem) => {
                fail(&mut results[index], &problem.field, problem.reason);
                continue;
            }
        };
        let owner_id = customer_plans[&key].existing.as_ref().map(|c| c.id);
        if let Some(other) = existing.as_ref().filter(|s| Some(s.customer_id) != owner_id) {
            let field = if site.legacy_id.is_some() && other.legacy_id == site.legacy_id {
                "siteId"
            } else {
                "domain"
            };
            fail(
                &mut results[index],
                field,
                format!(
                    "site {} belongs to customer {}",
                    other.domain, other.customer_slug
                ),
            );
            continue;
        }
        if let Some(port) = site.port
            && let Some(holder) = sites::port_owner(conn, port, existing.as_ref().map(|s| s.id))?
        {
            fail(
                &mut results[index],
                "port",
                format!(
                    "{port} is used by site {} ({})",
                    holder.domain, holder.customer_slug
                ),
            );
            continue;
        }
        site_plans.push(SitePlan {
            file: index,
            doc: site.clone(),
            customer_key: key,
            existing,
        });
    }
    Ok((customer_plans, site_plans))
}

/// The catalog's site that a file describes: the one with its `siteId` when it has
/// one, else the one with its domain. A domain held by a site with another `siteId`
/// is a clash, as is a new domain that another site holds.
fn matching_site(conn: &Connection, site: &SiteDoc) -> Result<std::result::Result<Option<Site>, Problem>> {
    let by_domain = sites::by_domain(conn, &site.domain)?;
    let Some(legacy_id) = &site.legacy_id else {
        return Ok(Ok(by_domain));
    };
    match (sites::by_legacy_id(conn, legacy_id)?, by_domain) {
        (Some(found), Some(holder)) if holder.id != found.id => Ok(Err(Problem::new(
            "domain",
            format!(
                "{} belongs to another site ({})",
                site.domain, holder.customer_slug
            ),
        ))),
        (Some(found), _) => Ok(Ok(Some(found))),
        (None, Some(holder)) if holder.legacy_id.is_some() => Ok(Err(Problem::new(
            "domain",
            format!(
                "{} belongs to the site with siteId '{}'",
                site.domain,
                holder.legacy_id.unwrap_or_default()
            ),
        ))),
        // A site known by its domain alone takes the file's siteId.
        (None, holder) => Ok(Ok(holder)),
    }
}

fn customer_plan(
    conn: &Connection,
    doc: &CustomerDoc,
    known_plans: &HashMap<String, Plan>,
    default_plan: &str,
) -> Result<std::result::Result<CustomerPlan, Problem>> {
    let existing = crate::catalog::customers::by_email(conn, &doc.email)?;
    if let Some(customer) = &existing {
        if customer.status == CustomerStatus::Deleted {
            return Ok(Err(Problem::new(
                "customer",
                format!("{} is a deleted customer ({})", doc.email, customer.slug),
            )));
        }
        if doc.slug.as_ref().is_some_and(|s| *s != customer.slug) {
            return Ok(Err(Problem::new(
                "slug",
                format!("{} already has the slug {}", doc.email, customer.slug),
            )));
        }
    } else if let Some(slug) = &doc.slug
        && crate::catalog::customers::slug_taken(conn, slug)?
    {
        return Ok(Err(Problem::new(
            "slug",
            format!("'{slug}' belongs to another customer"),
        )));
    }
    let plan = doc
        .plan
        .clone()
        .or_else(|| existing.as_ref().map(|c| c.plan.clone()))
        .unwrap_or_else(|| default_plan.to_string());
    let Some(new_plan) = known_plans.get(&plan) else {
        return Ok(Err(Problem::new("plan", format!("unknown plan '{plan}'"))));
    };
    let overrides = doc
        .limits
        .apply_to(existing.as_ref().map(Customer::overrides).unwrap_or_default());
    let limits = quota::effective(new_plan, overrides);
    let changed = existing.as_ref().is_some_and(|c| {
        doc.name.as_ref().is_some_and(|n| *n != c.name)
            || doc
                .company_name
                .as_ref()
                .is_some_and(|n| Some(n) != c.company_name.as_ref())
            || plan != c.plan
            || overrides != c.overrides()
            || doc.metadata.as_ref().is_some_and(|m| *m != c.metadata)
    });
    if let Some(customer) = existing.as_ref().filter(|_| changed) {
        // The guard of `customer update --plan`: no change may put a customer over a
        // quota it lowers. Import has no --force; that is for the command line.
        let before = quota::effective(&quota::plan_of(conn, customer)?, customer.overrides());
        let over = quota::breaches(conn, customer, &before, &limits)?;
        if !over.is_empty() {
            return Ok(Err(Problem::new(
                "plan",
                format!(
                    "the change would put {} over quota: {} (see 'tenantctl customer update --force')",
                    customer.slug,
                    over.join(", ")
                ),
            )));
        }
    }
    Ok(Ok(CustomerPlan {
        doc: doc.clone(),
        plan,
        existing,
        changed,
        limits,
    }))
}

/// A customer's sites after the import may not exceed its `max_sites`, as `site
/// create` enforces: the new sites past the limit fail, in file order.
fn enforce_site_limits(
    conn: &Connection,
    customer_plans: &HashMap<String, CustomerPlan>,
    site_plans: &[SitePlan],
    results: &mut [FileResult],
) -> Result<()> {
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for plan in site_plans.iter().filter(|s| s.existing.is_none()) {
        let customer = &customer_plans[&plan.customer_key];
        let count = match counts.get_mut(plan.customer_key.as_str()) {
            Some(count) => count,
            None => {
                let now = match &customer.existing {
                    Some(c) => sites::count_for_customer(conn, c.id)?,
                    None => 0,
                };
                counts.entry(plan.customer_key.as_str()).or_insert(now)
            }
        };
        if results[plan.file].action == ImportAction::Failed {
            continue;
        }
        if *count >= customer.limits.max_sites {
            let who = results[plan.file].customer.clone().unwrap_or_default();
            fail(
                &mut results[plan.file],
                "max_sites",
                format!(
                    "customer {who} may have {} sites (plan {}); this would be site {}",
                    customer.limits.max_sites,
                    customer.plan,
                    *count + 1
                ),
            );
            continue;
        }
        *count += 1;
    }
    Ok(())
}

/// Keys that are columns; the rest of a document is compared as the config.
const COLUMN_KEYS: &[&str] = &[
    "siteId",
    "site_id",
    "name",
    "domain",
    "port",
    "businessType",
    "business_type",
    "status",
    "customer",
];

fn without_columns(config: &Value) -> Value {
    match config {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !COLUMN_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn site_changed(site: &Site, doc: &SiteDoc) -> Result<bool> {
    Ok(site.name != doc.name
        || site.domain != doc.domain
        || doc.legacy_id.is_some() && doc.legacy_id != site.legacy_id
        || site.port != doc.port
        || site.business_type != doc.business_type
        || doc.status.as_ref().is_some_and(|s| *s != site.status)
        || without_columns(&site.config_value()?) != without_columns(&doc.config))
}

fn describe_actions(
    parsed: &[(String, Parsed)],
    inline: &[bool],
    customer_plans: &HashMap<String, CustomerPlan>,
    site_plans: &[SitePlan],
    results: &mut [FileResult],
) {
    for (index, (_, item)) in parsed.iter().enumerate() {
        if results[index].action == ImportAction::Failed {
            continue;
        }
        if let Parsed::Customer(doc) = item {
            let plan = &customer_plans[&doc.email.to_ascii_lowercase()];
            results[index].action = match (&plan.existing, plan.changed) {
                (None, _) => ImportAction::Created,
                (Some(_), true) => ImportAction::Updated,
                (Some(_), false) => ImportAction::Unchanged,
            };
        }
    }
    for plan in site_plans {
        let customer = &customer_plans[&plan.customer_key];
        // A file that describes its customer inline and changes an existing one is an
        // update, whatever it does to its site.
        let changes_customer = customer.changed && inline[plan.file];
        results[plan.file].action = match &plan.existing {
            _ if changes_customer => ImportAction::Updated,
            None => ImportAction::Created,
            Some(site) if site_changed(site, &plan.doc).unwrap_or(true) => ImportAction::Updated,
            Some(_) => ImportAction::Unchanged,
        };
    }
}

/// Everything an import writes.
struct Rows<'a> {
    parsed: &'a [(String, Parsed)],
    plans: &'a [PlanUpdate],
    customers: &'a HashMap<String, CustomerPlan>,
    sites: &'a [SitePlan],
}

/// One transaction for every row, with the new tenants' files moved in before it
/// commits (and removed again if it does not). Plans come first: customers name them.
fn write(catalog: &mut Catalog, actor: Actor<'_>, request: &ImportRequest, rows: &Rows<'_>) -> Result<()> {
    let Rows {
        parsed,
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
    let provisioned = engine.provision_many(&migrations, new_customers.len(), request.jobs)?;
    let mut staged: HashMap<String, Provisioned> = new_customers
        .iter()
        .map(|k| (*k).clone())
        .zip(provisioned)
        .collect();
    let result = catalog.write_with_files(
        |tx| {
            for update in plan_updates {
                // Read again inside the transaction: the guard must see the plan as it is.
                let current = plans::get(tx, &update.plan.name)?;
                plan_ops::save(tx, actor, current.as_ref(), &update.plan, false, Some("import"))?;
            }
            let mut moves: Vec<(Provisioned, Placement)> = Vec::new();
            let mut ids: HashMap<String, (i64, String)> = HashMap::new();
            let mut keys: Vec<&String> = customer_plans.keys().collect();
            keys.sort();
            for key in keys {
                let plan = &customer_plans[key];
                let customer = match &plan.existing {
                    Some(existing) => update_customer(tx, actor, existing, plan)?,
                    None => {
                        let built = staged
                            .remove(key)
                            .ok_or_else(|| Error::unexpected("a new customer without a database"))?;
                        let customer = insert_customer(tx, actor, engine, plan, &built)?;
                        moves.push((built, customer.placement.clone()));
                        customer
                    }
                };
                ids.insert(key.clone(), (customer.id, customer.slug.clone()));
            }
            for plan in site_plans {
                let (customer_id, _) = ids[&plan.customer_key];
                write_site(tx, actor, plan, customer_id, &parsed[plan.file].0)?;
            }
            Ok(moves)
        },
        |moves| engine.publish_many(moves),
        |moves| {
            for (built, placement) in moves {
                let _ = engine.destroy(placement);
                engine.discard(built);
            }
        },
    );
    if result.is_err() {
        for built in staged.values() {
            engine.discard(built);
        }
    }
    result.map(|_| ())
}

fn insert_customer(
    tx: &Connection,
    actor: Actor<'_>,
    engine: &dyn Engine,
    plan: &CustomerPlan,
    built: &Provisioned,
) -> Result<Customer> {
    let doc = &plan.doc;
    let slug = customers::choose_slug(
        tx,
        actor,
        doc.slug.as_deref(),
        doc.company_name.as_deref(),
        &doc.email,
    )?;
    let placement = engine.placement_for(&slug)?;
    let name = doc
        .name
        .clone()
        .or_else(|| doc.company_name.clone())
        .unwrap_or_else(|| doc.email.split('@').next().unwrap_or_default().to_string());
    let customer = crate::catalog::customers::insert(
        tx,
        &NewCustomer {
            slug,
            email: doc.email.clone(),
            name,
            company_name: doc.company_name.clone(),
            plan: plan.plan.clone(),
            metadata: doc.metadata.clone().unwrap_or_default(),
            placement,
            schema_version: built.schema_version,
        },
    )?;
    tenants::record_applied(tx, customer.id, &built.applied)?;
    tenants::record_run(
        tx,
        customer.id,
        built.schema_version,
        TenantMigrationStatus::Ok,
        None,
    )?;
    let customer = if doc.limits == Default::default() {
        customer
    } else {
        let overrides = CustomerChanges {
            limits: doc.limits,
            ..Default::default()
        };
        crate::catalog::customers::update(tx, &customer, &overrides)?
    };
    if doc.status == Some(CustomerStatus::Suspended) {
        let reason = doc.status_reason.as_deref().unwrap_or("suspended when imported");
        crate::catalog::customers::set_status(tx, customer.id, CustomerStatus::Suspended, Some(reason))?;
    }
    customers::audit_customer(
        tx,
        actor,
        "customer.create",
        &customer,
        json!({"source": "import", "plan": customer.plan, "status": doc.status}),
    )?;
    Ok(customer)
}

fn update_customer(
    tx: &Connection,
    actor: Actor<'_>,
    existing: &Customer,
    plan: &CustomerPlan,
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
    customers::audit_customer(
        tx,
        actor,
        "customer.update",
        &updated,
        json!({"source": "import", "plan": updated.plan}),
    )?;
    Ok(updated)
}

fn write_site(
    tx: &Connection,
    actor: Actor<'_>,
    plan: &SitePlan,
    customer_id: i64,
    file: &str,
) -> Result<()> {
    let doc = &plan.doc;
    let audit_site = |site: &Site, action: &str, details: Value| {
        crate::ops::sites::audit_site(tx, actor, action, site, details)
    };
    match &plan.existing {
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
                    config: doc.config.clone(),
                },
            )?;
            sites::set_legacy_id(tx, site.id, doc.legacy_id.as_deref())?;
            audit_site(
                &site,
                "site.create",
                json!({"source": "import", "file": file, "legacy_id": doc.legacy_id}),
            )
        }
        Some(site) if site_changed(site, doc)? => {
            let old = site.config_value()?;
            let snapshot =
                sites::add_snapshot(tx, site.id, SnapshotKind::Import, Some(file), &old, actor.name)?;
            let updated = sites::update(
                tx,
                site,
                &NewSite {
                    customer_id,
                    name: doc.name.clone(),
                    domain: doc.domain.clone(),
                    port: doc.port,
                    business_type: doc.business_type.clone(),
                    status: doc.status.unwrap_or(site.status),
                    config: doc.config.clone(),
                },
            )?;
            if doc.legacy_id.is_some() {
                sites::set_legacy_id(tx, site.id, doc.legacy_id.as_deref())?;
            }
            audit_site(
                &updated,
                "site.update",
                json!({"source": "import", "file": file, "snapshot_id": snapshot.id,
                       "domain": {"from": site.domain, "to": updated.domain}}),
            )
        }
        Some(_) => Ok(()),
    }
}
