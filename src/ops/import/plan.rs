//! The pure side of `import`: the files parsed and checked against the catalog, and
//! what each one would do. Nothing here writes.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use rusqlite::Connection;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::{FileResult, Why};
use crate::catalog::model::{Customer, Plan};
use crate::catalog::sites;
use crate::catalog::sites::Claimant;
use crate::catalog::states::CustomerStatus;
use crate::error::Result;
use crate::fan_out::fan_out_all;
use crate::import::plans::{PlanDoc, is_plans_file, parse_plans};
use crate::import::scan::is_customer_file;
use crate::import::{
    CustomerDoc, Digest, ImportAction, Parsed, Problem, SiteDoc, SourceFile, digest, parse, site_config,
};
use crate::ops::{plans as plan_ops, quota};

/// What the catalog must do for one customer of the import.
#[derive(Debug, Clone)]
pub(super) struct CustomerPlan {
    /// The parsed customer its site files share, not a copy of it.
    pub(super) doc: Arc<CustomerDoc>,
    pub(super) plan: String,
    /// Boxed: most customers of a big first import are new.
    pub(super) existing: Option<Box<Customer>>,
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
    /// The customer's email in lower case, one copy for all its files.
    pub(super) customer_key: Rc<str>,
    /// The catalog's site the file describes, by id.
    pub(super) existing: Option<i64>,
    /// Whether the file changes that existing site.
    pub(super) changed: bool,
}

/// What the plan keeps of a site file in place of its config: the digest of the bytes
/// it parsed, which the writes check when they read the file again, the digest of its
/// config as the catalog would store it, to tell without parsing whether an existing
/// site's config is the same, and the digest of its name and business type, which
/// only an existing site's are compared with.
#[derive(Debug, Clone, Copy)]
pub(super) struct SiteRead {
    pub(super) digest: Digest,
    pub(super) stored: Print,
    pub(super) named: Print,
}

/// The first half of a SHA-256: enough to tell a changed text from the same one, at
/// half the memory per file of a big tree.
pub(super) type Print = [u8; 16];

fn print_of(hasher: Sha256) -> Print {
    let full: Digest = hasher.finalize().into();
    let mut print = [0; 16];
    print.copy_from_slice(&full[..16]);
    print
}

/// The print of a site's name and business type.
fn named_digest(name: &str, business_type: Option<&str>) -> Print {
    let mut hasher = Sha256::new();
    feed_text(&mut hasher, name);
    match business_type {
        Some(text) => {
            hasher.update(b"s");
            feed_text(&mut hasher, text);
        }
        None => hasher.update(b"n"),
    }
    print_of(hasher)
}

/// A file's path and what it turned out to be.
/// Files parsed at once by the workers of [`parse_all`], then shared out in order: a
/// chunk's documents are held for a moment, never the tree's.
const PARSE_CHUNK: usize = 1024;

/// Customer files first, so the sites in their folders know their customer; then the
/// rest by `jobs` workers. Each site's config is dropped once fingerprinted: a tree
/// of 100,000 files would otherwise be held whole (see [`SiteRead`]).
/// What each of `sources` parsed to, in their order (their paths are not copied).
pub(super) fn parse_all(sources: &[SourceFile], jobs: usize) -> (Vec<Parsed>, Vec<Option<SiteRead>>) {
    let mut owners: HashMap<String, std::result::Result<CustomerDoc, Problem>> = HashMap::new();
    for source in sources.iter().filter(|s| is_customer_file(&s.path)) {
        let outcome = source
            .read_with(|bytes| match parse(bytes, true, None) {
                Parsed::Customer(doc) => Ok(*doc),
                Parsed::Failed(problem) => Err(*problem),
                _ => Err(Problem::new("file", "is not a customer file")),
            })
            .and_then(|parsed| parsed);
        owners.insert(source.path.to_string(), outcome);
    }
    // Site files of one customer usually describe it alike: one copy serves them all.
    let mut shared: HashMap<String, Arc<CustomerDoc>> = HashMap::new();
    let mut parsed = Vec::with_capacity(sources.len());
    let mut reads = Vec::with_capacity(sources.len());
    for chunk in sources.chunks(PARSE_CHUNK) {
        let done = fan_out_all(chunk, jobs, |source| parse_one(source, &owners));
        for (one, read) in done {
            let one = match one {
                Parsed::Site(site, owner) => Parsed::Site(kept(&site), share(&mut shared, owner)),
                other => other,
            };
            parsed.push(one);
            reads.push(read);
        }
    }
    (parsed, reads)
}

/// A copy of what the plan keeps of a site, made on this thread: the worker's copy
/// sits among the parse's short-lived allocations, which it would keep from being
/// reused, so a big tree's memory would grow with every chunk. Its name and business
/// type are left out: [`SiteRead::named`] stands for them.
fn kept(site: &SiteDoc) -> Box<SiteDoc> {
    Box::new(SiteDoc {
        legacy_id: site.legacy_id.clone(),
        name: Box::default(),
        domain: site.domain.clone(),
        port: site.port,
        business_type: None,
        status: site.status,
        config: None,
    })
}

fn share(shared: &mut HashMap<String, Arc<CustomerDoc>>, owner: Arc<CustomerDoc>) -> Arc<CustomerDoc> {
    match shared.get(&owner.email) {
        Some(first) if **first == *owner => Arc::clone(first),
        _ => {
            shared.insert(owner.email.clone(), Arc::clone(&owner));
            owner
        }
    }
}

fn parse_one(
    source: &SourceFile,
    owners: &HashMap<String, std::result::Result<CustomerDoc, Problem>>,
) -> (Parsed, Option<SiteRead>) {
    if is_customer_file(&source.path) {
        let parsed = match &owners[&*source.path] {
            Ok(doc) => Parsed::Customer(Box::new(doc.clone())),
            Err(problem) => Parsed::Failed(Box::new(problem.clone())),
        };
        return (parsed, None);
    }
    source
        .read_with(|bytes| parse_bytes(source, bytes, owners))
        .unwrap_or_else(|problem| (Parsed::Failed(Box::new(problem)), None))
}

fn parse_bytes(
    source: &SourceFile,
    bytes: &[u8],
    owners: &HashMap<String, std::result::Result<CustomerDoc, Problem>>,
) -> (Parsed, Option<SiteRead>) {
    if is_plans_file(&source.path, bytes) {
        let parsed = match parse_plans(bytes) {
            Ok(plans) => Parsed::Plans(plans),
            Err(problem) => Parsed::Failed(Box::new(problem)),
        };
        return (parsed, None);
    }
    let parsed = match source.customer_file.as_deref().map(|c| &owners[c]) {
        Some(Err(_)) => Parsed::Failed(Box::new(Problem::new(
            "customer",
            format!(
                "its {} is invalid",
                source.customer_file.clone().unwrap_or_default()
            ),
        ))),
        Some(Ok(owner)) => parse(bytes, false, Some(owner)),
        None => parse(bytes, false, None),
    };
    match parsed {
        Parsed::Site(mut site, owner) => {
            let read = SiteRead {
                digest: digest(bytes),
                stored: stored_digest(site.config.as_deref().unwrap_or(&Value::Null)),
                named: named_digest(&site.name, site.business_type.as_deref()),
            };
            site.config = None;
            (Parsed::Site(site, owner), Some(read))
        }
        other => (other, None),
    }
}

/// The plans file's creations and changes, each change checked with `plan set`'s
/// guard (import has no `--force`). When the file is valid its plans join
/// `known_plans`, so that the customers of the import may be on them.
pub(super) fn plans_from_file(
    conn: &Connection,
    parsed: &[Parsed],
    known_plans: &mut HashMap<String, Plan>,
    results: &mut [FileResult],
) -> Result<Vec<PlanUpdate>> {
    let Some((index, docs)) = parsed.iter().enumerate().find_map(|(i, p)| match p {
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
    result.why = Some(Box::new(Why {
        field: Some(field.to_string()),
        reason,
    }));
}

fn interned(texts: &mut HashSet<Rc<str>>, text: &str) -> Rc<str> {
    if let Some(known) = texts.get(text) {
        return Rc::clone(known);
    }
    let new: Rc<str> = Rc::from(text);
    texts.insert(Rc::clone(&new));
    new
}

/// Checks the files against the catalog: plans, slugs, and domains or ports held by
/// another customer's sites.
pub(super) fn plan_against_catalog(
    conn: &Connection,
    parsed: &[Parsed],
    known_plans: &HashMap<String, Plan>,
    default_plan: &str,
    sources: &[SourceFile],
    reads: &[Option<SiteRead>],
    results: &mut [FileResult],
) -> Result<(HashMap<String, CustomerPlan>, Vec<SitePlan>)> {
    let mut customer_plans: HashMap<String, CustomerPlan> = HashMap::new();
    let mut customer_problems: HashMap<String, Problem> = HashMap::new();
    let mut site_plans = Vec::with_capacity(reads.iter().flatten().count());
    // The customer's key and label, one copy each, not one per file.
    let mut texts: HashSet<Rc<str>> = HashSet::new();
    for (index, item) in parsed.iter().enumerate() {
        let (doc, site) = match item {
            Parsed::Customer(doc) => (doc.as_ref(), None),
            Parsed::Site(site, doc) => (doc.as_ref(), Some(site.as_ref())),
            _ => continue,
        };
        let key = doc.email.to_ascii_lowercase();
        if !customer_plans.contains_key(&key) && !customer_problems.contains_key(&key) {
            let shared = match item {
                Parsed::Site(_, doc) => Arc::clone(doc),
                _ => Arc::new(doc.clone()),
            };
            match customer_plan(conn, shared, known_plans, default_plan)? {
                Ok(plan) => {
                    customer_plans.insert(key.clone(), plan);
                }
                Err(problem) => {
                    customer_problems.insert(key.clone(), problem);
                }
            }
        }
        let label = customer_plans
            .get(&key)
            .and_then(|p| {
                p.existing
                    .as_ref()
                    .map(|c| c.slug.as_str())
                    .or(p.doc.slug.as_deref())
            })
            .unwrap_or(&doc.email);
        results[index].customer = Some(interned(&mut texts, label));
        if let Some(problem) = customer_problems.get(&key) {
            fail(&mut results[index], &problem.field, problem.reason.clone());
            continue;
        }
        let Some(site) = site else { continue };
        results[index].site = Some(site.domain.clone());
        let claimants = sites::claimants(conn, &site.domain, site.legacy_id.as_deref(), site.port)?;
        let existing = match matching_site(site, &claimants) {
            Ok(existing) => existing,
            Err(problem) => {
                fail(&mut results[index], &problem.field, problem.reason);
                continue;
            }
        };
        let owner_id = customer_plans[&key].existing.as_ref().map(|c| c.id);
        if let Some(other) = existing.filter(|s| Some(s.customer_id) != owner_id) {
            let field = if site.legacy_id.is_some() && other.legacy_id.as_deref() == site.legacy_id.as_deref()
            {
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
            && let Some(holder) = claimants
                .iter()
                .find(|c| c.holds_port && Some(c.id) != existing.map(|s| s.id))
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
        let changed = match (existing, reads[index]) {
            (Some(found), Some(read)) => site_changed(found, site, &read, &sources[index]),
            _ => false,
        };
        site_plans.push(SitePlan {
            file: index,
            customer_key: interned(&mut texts, &key),
            existing: existing.map(|s| s.id),
            changed,
        });
    }
    Ok((customer_plans, site_plans))
}

/// The catalog's site that a file describes: the one with its `siteId` when it has
/// one, else the one with its domain. A domain held by a site with another `siteId`
/// is a clash, as is a new domain that another site holds.
fn matching_site<'a>(
    site: &SiteDoc,
    claimants: &'a [Claimant],
) -> std::result::Result<Option<&'a Claimant>, Problem> {
    let by_domain = claimants.iter().find(|c| c.holds_domain && c.visible);
    if site.legacy_id.is_none() {
        return Ok(by_domain);
    }
    match (claimants.iter().find(|c| c.holds_legacy_id), by_domain) {
        (Some(found), Some(holder)) if holder.id != found.id => Err(Problem::new(
            "domain",
            format!(
                "{} belongs to another site ({})",
                site.domain, holder.customer_slug
            ),
        )),
        (Some(found), _) => Ok(Some(found)),
        (None, Some(holder)) if holder.legacy_id.is_some() => Err(Problem::new(
            "domain",
            format!(
                "{} belongs to the site with siteId '{}'",
                site.domain,
                holder.legacy_id.clone().unwrap_or_default()
            ),
        )),
        // A site known by its domain alone takes the file's siteId.
        (None, holder) => Ok(holder),
    }
}

fn customer_plan(
    conn: &Connection,
    shared: Arc<CustomerDoc>,
    known_plans: &HashMap<String, Plan>,
    default_plan: &str,
) -> Result<std::result::Result<CustomerPlan, Problem>> {
    let doc = shared.as_ref();
    let existing = crate::catalog::customers::by_email(conn, &doc.email)?.map(Box::new);
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
        .apply_to(existing.as_ref().map(|c| c.overrides()).unwrap_or_default());
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
        doc: Arc::clone(&shared),
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
        let customer = &customer_plans[&*plan.customer_key];
        let count = match counts.get_mut(&*plan.customer_key) {
            Some(count) => count,
            None => {
                let now = match &customer.existing {
                    Some(c) => sites::count_for_customer(conn, c.id)?,
                    None => 0,
                };
                counts.entry(&*plan.customer_key).or_insert(now)
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

/// A fingerprint of a config less its column keys, equal for configs that compare
/// equal as JSON values: object keys in any order, numbers by their text.
pub(super) type ConfigPrint = [u8; 32];

pub(super) fn config_print(config: &Value) -> ConfigPrint {
    let mut hasher = Sha256::new();
    match config {
        Value::Object(map) => feed_object(&mut hasher, map, |key| !COLUMN_KEYS.contains(&key)),
        other => feed(&mut hasher, other),
    }
    hasher.finalize().into()
}

fn feed(hasher: &mut Sha256, value: &Value) {
    match value {
        Value::Null => hasher.update(b"n"),
        Value::Bool(true) => hasher.update(b"t"),
        Value::Bool(false) => hasher.update(b"f"),
        Value::Number(n) => {
            hasher.update(b"#");
            feed_text(hasher, &n.to_string());
        }
        Value::String(text) => {
            hasher.update(b"s");
            feed_text(hasher, text);
        }
        Value::Array(items) => {
            hasher.update(b"[");
            hasher.update((items.len() as u64).to_le_bytes());
            items.iter().for_each(|item| feed(hasher, item));
        }
        Value::Object(map) => feed_object(hasher, map, |_| true),
    }
}

fn feed_object(hasher: &mut Sha256, map: &Map<String, Value>, keep: impl Fn(&str) -> bool) {
    let mut keys: Vec<&String> = map.keys().filter(|key| keep(key)).collect();
    keys.sort_unstable();
    hasher.update(b"{");
    hasher.update((keys.len() as u64).to_le_bytes());
    for key in keys {
        feed_text(hasher, key);
        feed(hasher, &map[key]);
    }
}

/// Length first, so that no two sequences of texts feed the same bytes.
fn feed_text(hasher: &mut Sha256, text: &str) {
    hasher.update((text.len() as u64).to_le_bytes());
    hasher.update(text.as_bytes());
}

/// The digest of a config's text as `sites::insert` stores it (serde_json's compact
/// form): equal for a file imported before and unchanged since.
pub(super) fn stored_digest(config: &Value) -> Print {
    let mut hasher = Sha256::new();
    serde_json::to_writer(&mut hasher, config).expect("hashing does not fail");
    print_of(hasher)
}

/// Whether the file changes the site: its columns, or its config.
fn site_changed(site: &Claimant, doc: &SiteDoc, read: &SiteRead, source: &SourceFile) -> bool {
    named_digest(&site.name, site.business_type.as_deref()) != read.named
        || *site.domain != *doc.domain
        || doc.legacy_id.is_some() && doc.legacy_id.as_deref() != site.legacy_id.as_deref()
        || site.port != doc.port
        || doc.status.as_ref().is_some_and(|s| *s != site.status)
        || !same_config(site, read, source)
}

/// The stored text is compared first: it is the file's config as written, unless
/// another command wrote the config since, which may order its keys otherwise. Then
/// the two are compared as values, the file read again for it; a file that is no
/// longer what was parsed counts as a change, which the writes refuse.
fn same_config(site: &Claimant, read: &SiteRead, source: &SourceFile) -> bool {
    if digest(site.config.as_bytes())[..16] == read.stored {
        return true;
    }
    let Ok(stored) = serde_json::from_str::<Value>(&site.config) else {
        return false;
    };
    source
        .read_with(|bytes| {
            digest(bytes) == read.digest
                && site_config(bytes).is_ok_and(|config| config_print(&config) == config_print(&stored))
        })
        .unwrap_or(false)
}

/// Each file's action once planned; `customer_files` are the customer files (by index)
/// with their customer's key.
pub(super) fn describe_actions(
    customer_files: &[(usize, String)],
    inline: &[bool],
    customer_plans: &HashMap<String, CustomerPlan>,
    site_plans: &[SitePlan],
    results: &mut [FileResult],
) {
    for (index, key) in customer_files {
        if results[*index].action == ImportAction::Failed {
            continue;
        }
        let plan = &customer_plans[key];
        results[*index].action = match (&plan.existing, plan.changed) {
            (None, _) => ImportAction::Created,
            (Some(_), true) => ImportAction::Updated,
            (Some(_), false) => ImportAction::Unchanged,
        };
    }
    for plan in site_plans {
        let customer = &customer_plans[&*plan.customer_key];
        // A file that describes its customer inline and changes an existing one is an
        // update, whatever it does to its site.
        let changes_customer = customer.changed && inline[plan.file];
        results[plan.file].action = match &plan.existing {
            _ if changes_customer => ImportAction::Updated,
            None => ImportAction::Created,
            Some(_) if plan.changed => ImportAction::Updated,
            Some(_) => ImportAction::Unchanged,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_stored_digest_is_of_the_text_the_catalog_stores() {
        let config = json!({"b": [1, 2.5, "x"], "a": {"z": null}, "big": 123456789012345678901234567890u128});
        assert_eq!(
            stored_digest(&config),
            digest(config.to_string().as_bytes())[..16]
        );
    }

    #[test]
    fn config_prints_are_equal_exactly_when_the_configs_less_columns_are() {
        let print = |text: &str| config_print(&serde_json::from_str(text).unwrap());
        let base = print(
            r#"{"domain": "a.test", "theme": {"x": 1, "y": [1, "2"]}, "big": 123456789012345678901234567890}"#,
        );
        assert_eq!(
            base,
            print(
                r#"{"big": 123456789012345678901234567890, "theme": {"y": [1, "2"], "x": 1}, "name": "other columns"}"#
            ),
            "key order and column keys do not count"
        );
        for different in [
            r#"{"theme": {"x": 1, "y": [1, "2"]}, "big": 123456789012345678901234567891}"#,
            r#"{"theme": {"x": 1.0, "y": [1, "2"]}, "big": 123456789012345678901234567890}"#,
            r#"{"theme": {"x": 1, "y": ["2", 1]}, "big": 123456789012345678901234567890}"#,
            r#"{"theme": {"x": 1, "y": [1, 2]}, "big": 123456789012345678901234567890}"#,
            r#"{"theme": {"x": 1, "y": [1, "2"]}}"#,
        ] {
            assert_ne!(base, print(different), "{different}");
        }
        assert_ne!(
            config_print(&json!({"a": "bc"})),
            config_print(&json!({"ab": "c"}))
        );
        assert_ne!(
            config_print(&json!({"a": [[], []]})),
            config_print(&json!({"a": [[[]]]}))
        );
    }
}
