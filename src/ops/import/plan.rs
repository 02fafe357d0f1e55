//! The pure side of `import`: the files parsed and checked against the catalog, and
//! what each one would do. Nothing here writes.

use std::collections::HashMap;

use rusqlite::Connection;
use serde_json::Value;

use super::FileResult;
use crate::catalog::model::{Customer, Plan, Site};
use crate::catalog::sites;
use crate::catalog::states::CustomerStatus;
use crate::error::Result;
use crate::import::plans::{PlanDoc, is_plans_file, parse_plans};
use crate::import::scan::is_customer_file;
use crate::import::{CustomerDoc, ImportAction, Parsed, Problem, SiteDoc, parse};
use crate::ops::{plans as plan_ops, quota};

/// What the catalog must do for one customer of the import.
#[derive(Debug, Clone)]
pub(super) struct CustomerPlan {
    pub(super) doc: CustomerDoc,
    pub(super) plan: String,
    pub(super) existing: Option<Customer>,
    /// Fields to change on an existing customer.
    pub(super) changed: bool,
    /// The limits in force once the import is written.
    pub(super) limits: quota::EffectiveLimits,
}

/// A plan that the plans file creates (`current` is `None`) or changes.
#[derive(Debug, Clone)]
pub(super) struct PlanUpdate {
    pub(super) plan: Plan,
    pub(super) current: Option<Plan>,
}

/// What the catalog must do for one site file.
#[derive(Debug, Clone)]
pub(super) struct SitePlan {
    pub(super) file: usize,
    pub(super) doc: SiteDoc,
    pub(super) customer_key: String,
    pub(super) existing: Option<Site>,
}

/// Customer files first, so the sites in their folders know their customer.
pub(super) fn parse_all(sources: &[crate::import::SourceFile]) -> Vec<(String, Parsed)> {
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
pub(super) fn plans_from_file(
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
pub(super) fn plan_against_catalog(
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
pub(super) fn enforce_site_limits(
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

pub(super) fn site_changed(site: &Site, doc: &SiteDoc) -> Result<bool> {
    Ok(site.name != doc.name
        || site.domain != doc.domain
        || doc.legacy_id.is_some() && doc.legacy_id != site.legacy_id
        || site.port != doc.port
        || site.business_type != doc.business_type
        || doc.status.as_ref().is_some_and(|s| *s != site.status)
        || without_columns(&site.config_value()?) != without_columns(&doc.config))
}

pub(super) fn describe_actions(
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
