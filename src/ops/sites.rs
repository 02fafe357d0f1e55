//! Sites: create within the plan's limits, list (streamed), show, update with config
//! snapshots, deploy, roll back, snapshot and restore.

use rusqlite::Connection;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Actor, customers, quota};
use crate::catalog::model::{Customer, Deployment, NewAuditEvent, NewSite, Site, Snapshot};
use crate::catalog::sites::{self, SiteFilter};
use crate::catalog::states::{CustomerStatus, SiteStatus, SnapshotKind};
use crate::catalog::{Catalog, is_unique_violation, settings};
use crate::error::{Error, Result};
use crate::site_config::{apply_assignment, check_document, with_columns};
use crate::validate::{self, printable};

/// Finds a site by numeric id or domain; exit 3 when none matches.
pub fn resolve(conn: &Connection, reference: &str) -> Result<Site> {
    let found = if !reference.is_empty() && reference.bytes().all(|b| b.is_ascii_digit()) {
        reference
            .parse()
            .ok()
            .map(|id| sites::by_id(conn, id))
            .transpose()?
            .flatten()
    } else {
        let domain = reference
            .strip_suffix('.')
            .unwrap_or(reference)
            .to_ascii_lowercase();
        sites::by_domain(conn, &domain)?
    };
    found.ok_or_else(|| {
        Error::not_found(format!("no site '{}'", printable(reference)))
            .with_hint("give a site id or domain; see 'tenantctl site list'")
    })
}

fn check_port(port: i64) -> Result<i64> {
    if (1..=65535).contains(&port) {
        Ok(port)
    } else {
        Err(Error::usage(format!("port {port} is outside 1-65535")))
    }
}

/// Refuses work on a site whose customer may not have it: deleted always; suspended
/// too when `active_only`.
fn require_customer_state(customer: &Customer, active_only: bool, what: &str) -> Result<()> {
    let refused = customer.status == CustomerStatus::Deleted
        || (active_only && customer.status != CustomerStatus::Active);
    if refused {
        return Err(Error::refused(format!(
            "customer {} is {}; cannot {what}",
            customer.slug, customer.status
        ))
        .with_hint(format!("see 'tenantctl customer show {}'", customer.slug)));
    }
    Ok(())
}

/// Exit 4 when another site holds the domain or the port.
fn require_free(conn: &Connection, domain: &str, port: Option<i64>, except: Option<i64>) -> Result<()> {
    if let Some(owner) = sites::domain_owner(conn, domain, except)? {
        return Err(Error::conflict(format!(
            "domain {domain} is taken by site {} ({})",
            owner.id, owner.customer_slug
        )));
    }
    if let Some(port) = port
        && let Some(owner) = sites::port_owner(conn, port, except)?
    {
        return Err(Error::conflict(format!(
            "port {port} is taken by site {} ({})",
            owner.domain, owner.customer_slug
        )));
    }
    Ok(())
}

fn conflict_on_unique(err: Error) -> Error {
    match err {
        Error::Sqlite(e) if is_unique_violation(&e) => {
            Error::conflict("the domain or port was taken meanwhile")
        }
        other => other,
    }
}

#[derive(Debug, Clone, Default)]
pub struct CreateSite {
    pub customer: String,
    pub name: String,
    pub domain: Option<String>,
    pub port: Option<i64>,
    pub business_type: Option<String>,
    pub config: Option<Value>,
}

pub fn create(catalog: &mut Catalog, actor: Actor<'_>, request: &CreateSite) -> Result<Site> {
    let name = validate::display_text("name", &request.name)?;
    let business_type = request
        .business_type
        .as_deref()
        .map(|t| validate::display_text("business type", t))
        .transpose()?;
    let port = request.port.map(check_port).transpose()?;
    let config = request
        .config
        .clone()
        .unwrap_or_else(|| Value::Object(Map::new()));
    check_document(&config)?;
    catalog
        .write_audited(actor.name, |tx| {
            // Everything is checked inside the transaction, so concurrent creates cannot
            // both pass the limit and a customer suspended meanwhile gets no site.
            let customer = customers::resolve(tx, &request.customer)?;
            require_customer_state(&customer, true, "add sites")?;
            let domain = match &request.domain {
                Some(domain) => validate::hostname(domain)?,
                None => default_domain(tx, &name, &customer)?,
            };
            let limits = quota::effective(&quota::plan_of(tx, &customer)?, customer.overrides());
            let count = sites::count_for_customer(tx, customer.id)?;
            if count >= limits.max_sites {
                return Err(Error::quota(format!(
                    "customer {} has {count} of {} sites its plan ({}) allows",
                    customer.slug, limits.max_sites, customer.plan
                ))
                .with_hint(
                    "raise the limit with 'tenantctl customer update --max-sites' or change the plan",
                ));
            }
            require_free(tx, &domain, port, None)?;
            let site = sites::insert(
                tx,
                &NewSite {
                    customer_id: customer.id,
                    name: name.clone(),
                    domain,
                    port,
                    business_type: business_type.clone(),
                    status: SiteStatus::Draft,
                    config: config.clone(),
                },
            )?;
            let event = NewAuditEvent::site(
                "site.create",
                &site,
                json!({"name": site.name, "port": site.port}),
            );
            Ok((site, [event]))
        })
        .map_err(conflict_on_unique)
}

/// `<site name>.<customer slug>.<platform_domain>` when no domain is given.
fn default_domain(conn: &Connection, name: &str, customer: &Customer) -> Result<String> {
    let Some((platform, _)) = settings::get(conn, "platform_domain")? else {
        return Err(Error::usage("no --domain given and platform_domain is not set")
            .with_hint("pass --domain, or run 'tenantctl config set platform_domain example.com'"));
    };
    let label = validate::slugify(name);
    let label = if label.is_empty() {
        "site".to_string()
    } else {
        label
    };
    validate::hostname(&format!("{label}.{}.{platform}", customer.slug))
}

#[derive(Debug, Clone, Default)]
pub struct ListSites {
    pub customer: Option<String>,
    pub status: Option<SiteStatus>,
    pub domain: Option<String>,
    pub limit: Option<u64>,
}

/// Streams matching sites to `each`, in id order.
pub fn list(catalog: &Catalog, request: &ListSites, each: impl FnMut(Site) -> Result<()>) -> Result<()> {
    let customer_id = request
        .customer
        .as_deref()
        .map(|c| customers::resolve(catalog.conn(), c))
        .transpose()?
        .map(|c| c.id);
    let filter = SiteFilter {
        customer_id,
        status: request.status,
        domain_contains: request.domain.clone(),
        limit: request.limit.filter(|n| *n > 0),
    };
    sites::for_each(catalog.conn(), &filter, each)
}

/// A site with how many deployments and snapshots it has.
#[derive(Debug, Clone, Serialize)]
pub struct SiteDetails {
    #[serde(flatten)]
    pub site: Site,
    pub deployment_count: i64,
    pub snapshot_count: i64,
}

pub fn show(catalog: &Catalog, reference: &str) -> Result<SiteDetails> {
    let site = resolve(catalog.conn(), reference)?;
    Ok(SiteDetails {
        deployment_count: sites::deployment_count(catalog.conn(), site.id)?,
        snapshot_count: sites::snapshot_count(catalog.conn(), site.id)?,
        site,
    })
}

#[derive(Debug, Clone, Default)]
pub struct UpdateSite {
    pub name: Option<String>,
    pub domain: Option<String>,
    /// `Some(None)` removes the port.
    pub port: Option<Option<i64>>,
    pub status: Option<SiteStatus>,
    pub config: Option<Value>,
    /// `json.path=value` assignments applied to the config.
    pub set: Vec<String>,
}

impl UpdateSite {
    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.domain.is_none()
            && self.port.is_none()
            && self.status.is_none()
            && self.config.is_none()
            && self.set.is_empty()
    }
}

pub fn update(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: &str,
    request: &UpdateSite,
) -> Result<Site> {
    if request.is_empty() {
        return Err(Error::usage("nothing to update")
            .with_hint("pass --name, --domain, --port, --status, --config or --set"));
    }
    if let Some(config) = &request.config {
        check_document(config)?;
    }
    catalog
        .write_audited(actor.name, |tx| {
            // Read, change and write in one transaction, so concurrent updates compose.
            let site = resolve(tx, reference)?;
            require_customer_state(&customer_of(tx, &site)?, false, "change its sites")?;
            let old_config = site.config_value()?;
            let mut next = NewSite {
                config: request.config.clone().unwrap_or_else(|| old_config.clone()),
                ..current_state(&site, &old_config)
            };
            if let Some(name) = &request.name {
                next.name = validate::display_text("name", name)?;
            }
            if let Some(domain) = &request.domain {
                next.domain = validate::hostname(domain)?;
            }
            if let Some(port) = request.port {
                next.port = port.map(check_port).transpose()?;
            }
            if let Some(status) = request.status {
                next.status = status;
            }
            for assignment in &request.set {
                apply_assignment(&mut next.config, assignment)?;
            }
            if !request.set.is_empty() {
                check_document(&next.config).map_err(|e| Error::usage(format!("after --set: {e}")))?;
            }
            require_free(tx, &next.domain, next.port, Some(site.id))?;
            next.config = with_columns(&next.config, &next, false);
            let snapshot = sites::add_snapshot(tx, site.id, SnapshotKind::Manual, Some("before update"), &old_config, actor.name)?;
            let updated = sites::update(tx, &site, &next)?;
            let mut changes = Map::new();
            for (field, before, after) in [
                ("name", json!(site.name), json!(updated.name)),
                ("domain", json!(site.domain), json!(updated.domain)),
                ("port", json!(site.port), json!(updated.port)),
                ("status", json!(site.status), json!(updated.status)),
            ] {
                if before != after {
                    changes.insert(field.to_string(), json!({"from": before, "to": after}));
                }
            }
            let event = NewAuditEvent::site(
                                "site.update",
                &updated,
                json!({"changes": changes, "config_changed": old_config != next.config, "snapshot_id": snapshot.id}),
            );
            Ok((updated, [event]))
        })
        .map_err(conflict_on_unique)
}

fn customer_of(conn: &Connection, site: &Site) -> Result<Customer> {
    customers::resolve(conn, &site.customer_id.to_string())
}

/// A site's row as it is, with `config` as its config, ready to be changed.
fn current_state(site: &Site, config: &Value) -> NewSite {
    NewSite {
        customer_id: site.customer_id,
        name: site.name.clone(),
        domain: site.domain.clone(),
        port: site.port,
        business_type: site.business_type.clone(),
        status: site.status,
        config: config.clone(),
    }
}

fn require_confirm(site: &Site, confirm: Option<&str>) -> Result<()> {
    let ok = confirm.is_some_and(|c| c.eq_ignore_ascii_case(&site.domain) || c == site.id.to_string());
    if ok {
        return Ok(());
    }
    let message = match confirm {
        None => format!("deleting site {} needs confirmation", site.domain),
        Some(other) => format!(
            "--confirm '{}' does not name site {}",
            printable(other),
            site.domain
        ),
    };
    Err(Error::refused(message).with_hint(format!("pass --confirm {}", site.domain)))
}

/// Deletes a site with its deployments and snapshots; returns it as it was.
pub fn delete(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: &str,
    confirm: Option<&str>,
) -> Result<Site> {
    catalog.write_audited(actor.name, |tx| {
        let site = resolve(tx, reference)?;
        require_confirm(&site, confirm)?;
        let event = NewAuditEvent::site(
            "site.delete",
            &site,
            json!({"name": site.name, "config": site.config_value()?}),
        );
        sites::delete(tx, site.id)?;
        Ok((site, [event]))
    })
}

/// Records deployment N+1 of the site's current config and marks it deployed, after a
/// `pre-deploy` snapshot.
pub fn deploy(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: &str,
    port: Option<i64>,
) -> Result<Deployment> {
    let requested_port = port.map(check_port).transpose()?;
    catalog
        .write_audited(actor.name, |tx| {
            let site = resolve(tx, reference)?;
            require_customer_state(&customer_of(tx, &site)?, true, "deploy its sites")?;
            let port = requested_port.or(site.port);
            require_free(tx, &site.domain, port, Some(site.id))?;
            let current = site.config_value()?;
            let snapshot =
                sites::add_snapshot(tx, site.id, SnapshotKind::PreDeploy, None, &current, actor.name)?;
            let deployed = NewSite {
                port,
                status: SiteStatus::Deployed,
                ..current_state(&site, &current)
            };
            let config = with_columns(&current, &deployed, false);
            let log = format!(
                "deployed {} on port {}",
                site.domain,
                port.map_or("-".to_string(), |p| p.to_string())
            );
            let deployment = sites::add_deployment(tx, site.id, &config, port, &log, actor.name)?;
            sites::mark_deployed(tx, site.id, &config, port)?;
            let event = NewAuditEvent::site(
                "site.deploy",
                &site,
                json!({"number": deployment.number, "port": port, "snapshot_id": snapshot.id}),
            );
            Ok((deployment, [event]))
        })
        .map_err(conflict_on_unique)
}

pub fn deployments(catalog: &Catalog, reference: &str) -> Result<Vec<Deployment>> {
    let site = resolve(catalog.conn(), reference)?;
    sites::deployments(catalog.conn(), site.id)
}

/// Puts the config of deployment `to` (default: the one before the newest) back and
/// records it as a new deployment. The site keeps its current port: a rollback is of
/// the config, and the old port may belong to another site by now.
pub fn rollback(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: &str,
    to: Option<i64>,
) -> Result<Deployment> {
    catalog.write_audited(actor.name, |tx| {
        let site = resolve(tx, reference)?;
        require_customer_state(&customer_of(tx, &site)?, true, "deploy its sites")?;
        let history = sites::deployments(tx, site.id)?;
        let newest = history.last().map(|d| d.number);
        let target = match to {
            Some(number) => history.iter().find(|d| d.number == number).ok_or_else(|| {
                Error::not_found(format!("site {} has no deployment {number}", site.domain))
                    .with_hint(format!("see 'tenantctl site deployments {}'", site.domain))
            })?,
            None if history.len() < 2 => {
                return Err(Error::refused(format!(
                    "site {} has {} deployment{}; nothing to roll back to",
                    site.domain,
                    history.len(),
                    if history.len() == 1 { "" } else { "s" }
                )));
            }
            None => &history[history.len() - 2],
        };
        if Some(target.number) == newest {
            return Err(Error::refused(format!(
                "deployment {} is already the newest",
                target.number
            )));
        }
        let snapshot = sites::add_snapshot(
            tx,
            site.id,
            SnapshotKind::PreDeploy,
            None,
            &site.config_value()?,
            actor.name,
        )?;
        let log = format!("rolled back to deployment {}", target.number);
        let deployed = NewSite {
            status: SiteStatus::Deployed,
            ..current_state(&site, &target.config)
        };
        let config = with_columns(&target.config, &deployed, false);
        let deployment = sites::add_deployment(tx, site.id, &config, site.port, &log, actor.name)?;
        sites::mark_deployed(tx, site.id, &config, site.port)?;
        let event = NewAuditEvent::site(
            "site.rollback",
            &site,
            json!({"to": target.number, "number": deployment.number, "snapshot_id": snapshot.id}),
        );
        Ok((deployment, [event]))
    })
}

pub fn snapshot(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: &str,
    name: Option<&str>,
) -> Result<Snapshot> {
    let name = name
        .map(|n| validate::display_text("snapshot name", n))
        .transpose()?;
    catalog.write_audited(actor.name, |tx| {
        let site = resolve(tx, reference)?;
        let snapshot = sites::add_snapshot(
            tx,
            site.id,
            SnapshotKind::Manual,
            name.as_deref(),
            &site.config_value()?,
            actor.name,
        )?;
        let event = NewAuditEvent::site(
            "site.snapshot",
            &site,
            json!({"snapshot_id": snapshot.id, "name": name}),
        );
        Ok((snapshot, [event]))
    })
}

pub fn snapshots(catalog: &Catalog, reference: &str) -> Result<Vec<Snapshot>> {
    let site = resolve(catalog.conn(), reference)?;
    sites::snapshots(catalog.conn(), site.id)
}

/// Puts a snapshot's config back, after a `pre-restore` snapshot of the current one.
pub fn restore(catalog: &mut Catalog, actor: Actor<'_>, reference: &str, snapshot_id: i64) -> Result<Site> {
    catalog.write_audited(actor.name, |tx| {
        let site = resolve(tx, reference)?;
        require_customer_state(&customer_of(tx, &site)?, false, "change its sites")?;
        let snapshot = sites::snapshot(tx, snapshot_id)?
            .filter(|s| s.site_id == site.id)
            .ok_or_else(|| {
                Error::not_found(format!("site {} has no snapshot {snapshot_id}", site.domain))
                    .with_hint(format!("see 'tenantctl site snapshots {}'", site.domain))
            })?;
        let current = site.config_value()?;
        let safety = sites::add_snapshot(tx, site.id, SnapshotKind::PreRestore, None, &current, actor.name)?;
        let mut state = current_state(&site, &snapshot.config);
        state.config = with_columns(&snapshot.config, &state, false);
        let restored = sites::update(tx, &site, &state)?;
        let event = NewAuditEvent::site(
            "site.restore",
            &site,
            json!({"snapshot_id": snapshot.id, "pre_restore_snapshot_id": safety.id}),
        );
        Ok((restored, [event]))
    })
}
