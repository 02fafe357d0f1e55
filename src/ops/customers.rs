//! Customers: create with their own tenant database, list, show, update, suspend,
//! soft delete, undelete and purge.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Actor, config, quota};
use crate::catalog::customers::{self, CustomerChanges, CustomerFilter, LimitChanges};
use crate::catalog::model::{Customer, NewAuditEvent, NewCustomer, SiteSummary};
use crate::catalog::operations::{self, NewOperation};
use crate::catalog::states::{CustomerStatus, TenantMigrationStatus};
use crate::catalog::{Catalog, is_unique_violation, plans, servers, tenants};
use crate::engine::postgres::role_identity;
use crate::engine::{Engine, Engines, Placement, PlacementView, Provisioned};
use crate::error::{Error, Result};
use crate::lock::Owner;
use crate::ops::recovery::{self, Recovered, crash_point};
use crate::secrets::MasterKey;
use crate::validate;

/// Finds a customer by slug, numeric id or email; exit 3 when none matches.
pub fn resolve(conn: &Connection, reference: &str) -> Result<Customer> {
    let found = if !reference.is_empty() && reference.bytes().all(|b| b.is_ascii_digit()) {
        match reference.parse::<i64>() {
            Ok(id) => customers::by_id(conn, id)?,
            Err(_) => None,
        }
    } else if reference.contains('@') {
        customers::by_email(conn, reference.trim())?
    } else {
        // Slugs are stored lowercase; like emails, they are found whatever the case.
        customers::by_slug(conn, &reference.to_ascii_lowercase())?
    };
    found.ok_or_else(|| {
        Error::not_found(format!("no customer '{}'", validate::printable(reference)))
            .with_hint("give a slug, id or email; see 'tenantctl customer list'")
    })
}

#[derive(Debug, Clone, Default)]
pub struct CreateCustomer {
    pub email: String,
    pub name: String,
    pub company: Option<String>,
    pub plan: Option<String>,
    pub slug: Option<String>,
    pub meta: Vec<String>,
    /// `local`, a server name or `auto`; `None`: the `default_server` setting.
    pub server: Option<String>,
}

pub fn create(catalog: &mut Catalog, actor: Actor<'_>, request: &CreateCustomer) -> Result<Customer> {
    let email = validate::email(&request.email)?;
    let name = validate::display_text("name", &request.name)?;
    let company = request
        .company
        .as_deref()
        .map(|c| validate::display_text("company", c))
        .transpose()?;
    let mut metadata = Map::new();
    validate::apply_meta(&mut metadata, &request.meta)?;
    let plan = match &request.plan {
        Some(plan) => existing_plan(catalog.conn(), plan)?,
        None => config::default_plan(catalog)?,
    };
    let explicit_slug = request
        .slug
        .as_deref()
        .map(validate::slug)
        .transpose()?
        .map(str::to_string);
    // Fail fast on obvious conflicts; choose_slug checks again inside the transaction.
    // Only the catalog is asked here: a tenant file without a customer may be a
    // concurrent create of the same slug between moving its file and committing.
    refuse_taken(catalog.conn(), explicit_slug.as_deref(), &email)?;

    let engines = Engines::new(actor.home);
    let target = super::placement::choose_server(catalog, &engines, request.server.as_deref())?;
    let engine = engines.server(&target.name)?;
    let migrations = super::placement::migrations_for(catalog, actor, &target)?;
    let role_key = target
        .needs_key
        .then(|| MasterKey::require(actor.home))
        .transpose()?;
    let owner = Owner::new(&actor.home.run_dir())?;
    let built = engine.provision(&migrations, owner.token())?;
    crash_point("customer.create:provisioned");
    // The customer is reserved, invisible, together with the ledger's note of what is
    // about to be put where; a kill from here on is undone by the next command.
    let new = NewTenant {
        slug: explicit_slug.as_deref(),
        email: &email,
        name: name.clone(),
        company: company.clone(),
        plan: plan.clone(),
        metadata: metadata.clone(),
    };
    let reserved = catalog.write(|tx| {
        let customer = reserve(tx, engine, &new, &built)?;
        if let (Some(password), Some(key)) = (&built.role_password, &role_key) {
            let encrypted = key.encrypt(password, &role_identity(customer.id));
            servers::insert_role(tx, customer.id, &customer.placement.location, &encrypted)?;
        }
        let op = operations::open(
            tx,
            &NewOperation {
                kind: recovery::CREATE,
                subject: &customer.slug,
                customer_id: Some(customer.id),
                owner: owner.token(),
                steps: json!({"staging": built.staging, "placement": recovery::placement_json(&customer.placement)}),
            },
        )?;
        Ok((customer, op))
    });
    let (customer, op) = match reserved {
        Ok(reserved) => reserved,
        Err(err) => {
            engine.discard(&built);
            return Err(err);
        }
    };
    crash_point("customer.create:reserved");
    let activated = engine.publish(&built, &customer.placement).and_then(|()| {
        crash_point("customer.create:published");
        catalog.write_audited(actor.name, |tx| {
            customers::activate(tx, customer.id)?;
            operations::close(tx, op)?;
            let customer = reread(tx, &customer)?;
            let event = NewAuditEvent::customer(
                "customer.create",
                &customer,
                json!({"email": customer.email, "plan": customer.plan, "schema_version": customer.schema_version}),
            );
            Ok((customer, [event]))
        })
    });
    if activated.is_err() {
        // Undone now while this command still owns it; if even that fails, the ledger
        // row lets the next command do it.
        let _ = engine.destroy(&customer.placement);
        engine.discard(&built);
        let _ = catalog.write(|tx| {
            customers::remove_provisioning(tx, customer.id)?;
            operations::close(tx, op)
        });
    }
    activated
}

/// What a new customer is made of, whichever command makes it.
pub(crate) struct NewTenant<'a> {
    /// The slug asked for; else one is derived.
    pub slug: Option<&'a str>,
    pub email: &'a str,
    pub name: String,
    pub company: Option<String>,
    pub plan: String,
    pub metadata: Map<String, Value>,
}

/// The one way a customer comes to be, for `customer create` and `import` alike:
/// inside the caller's transaction its slug is chosen, its row inserted as
/// `provisioning` with the placement `built` will be published to, and the migrations
/// `built` holds recorded in the tenant ledger. The caller notes the operation in the
/// ledger, publishes the database and activates the customer.
pub(crate) fn reserve(
    tx: &Connection,
    engine: &dyn Engine,
    new: &NewTenant<'_>,
    built: &Provisioned,
) -> Result<Customer> {
    let customer = reserve_row(tx, engine, new)?;
    record_built(tx, customer.id, built)?;
    Ok(customer)
}

/// The first half of [`reserve`], for a caller whose database is still being built:
/// the customer's row, at no schema version yet. [`record_built`] must follow in the
/// same transaction.
pub(crate) fn reserve_row(tx: &Connection, engine: &dyn Engine, new: &NewTenant<'_>) -> Result<Customer> {
    let slug = choose_slug(tx, engine, new.slug, new.company.as_deref(), new.email)?;
    customers::insert(
        tx,
        &NewCustomer {
            id: None,
            placement: engine.placement_for(&slug)?,
            slug,
            email: new.email.to_string(),
            name: new.name.clone(),
            company_name: new.company.clone(),
            plan: new.plan.clone(),
            metadata: new.metadata.clone(),
            schema_version: 0,
        },
    )
}

/// The second half of [`reserve`]: the migrations `built` holds, in the tenant ledger
/// of the customer it is for.
pub(crate) fn record_built(tx: &Connection, customer_id: i64, built: &Provisioned) -> Result<()> {
    tenants::record_applied(tx, customer_id, &built.applied)?;
    tenants::record_run(
        tx,
        customer_id,
        built.schema_version,
        TenantMigrationStatus::Ok,
        None,
    )
}

/// The slug for a new customer: the one asked for, which must be free, or one derived
/// from the company name, else the email's local part, with a numeric suffix when
/// that is reserved, taken, or a database already sits where its tenant would go.
/// Refuses a taken email too.
fn choose_slug(
    conn: &Connection,
    engine: &dyn Engine,
    explicit: Option<&str>,
    company: Option<&str>,
    email: &str,
) -> Result<String> {
    refuse_taken(conn, explicit, email)?;
    let occupied = |slug: &str| -> Result<Option<String>> {
        let tenant = engine.tenant(&engine.placement_for(slug)?);
        Ok(tenant.exists().then(|| tenant.describe()))
    };
    if let Some(slug) = explicit {
        if let Some(there) = occupied(slug)? {
            return Err(
                Error::conflict(format!("a tenant database already exists at {there}"))
                    .with_hint("no customer owns it; move it away or run 'tenantctl doctor'"),
            );
        }
        return Ok(slug.to_string());
    }
    let local = email.split('@').next().unwrap_or_default();
    let mut base = company
        .map(validate::slugify)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| validate::slugify(local));
    if base.is_empty() {
        base = "customer".to_string();
    } else if base.bytes().all(|b| b.is_ascii_digit()) {
        base = format!("customer-{base}");
    }
    base.truncate(59);
    let base = base.trim_end_matches('-').to_string();
    for n in 1..1000 {
        let candidate = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        if validate::slug(&candidate).is_ok()
            && !customers::slug_taken(conn, &candidate)?
            && occupied(&candidate)?.is_none()
        {
            return Ok(candidate);
        }
    }
    Err(Error::conflict(format!("no free slug near '{base}'")).with_hint("choose one with --slug"))
}

/// Refuses an email or an asked-for slug that a customer in the catalog already has.
fn refuse_taken(conn: &Connection, slug: Option<&str>, email: &str) -> Result<()> {
    if customers::by_email(conn, email)?.is_some() {
        return Err(Error::conflict(format!(
            "a customer with email {email} already exists"
        )));
    }
    if let Some(slug) = slug
        && customers::slug_taken(conn, slug)?
    {
        return Err(
            Error::conflict(format!("slug '{slug}' is taken")).with_hint("choose another with --slug")
        );
    }
    Ok(())
}

fn existing_plan(conn: &Connection, name: &str) -> Result<String> {
    let name = validate::plan_name(name)?;
    if plans::get(conn, name)?.is_none() {
        return Err(Error::usage(format!("unknown plan '{name}'")).with_hint("see 'tenantctl plan list'"));
    }
    Ok(name.to_string())
}

#[derive(Debug, Clone, Default)]
pub struct ListCustomers {
    pub plan: Option<String>,
    pub status: Option<CustomerStatus>,
    pub search: Option<String>,
    pub limit: Option<u64>,
}

pub fn list(catalog: &Catalog, request: &ListCustomers) -> Result<Vec<Customer>> {
    let plan = request
        .plan
        .as_deref()
        .map(|p| existing_plan(catalog.conn(), p))
        .transpose()?;
    let mut listed = customers::list(
        catalog.conn(),
        &CustomerFilter {
            plan,
            status: request.status,
            search: request.search.clone(),
            limit: request.limit.filter(|n| *n > 0),
        },
    )?;
    // A customer being moved shows as such here too (the status is never stored).
    let moving = super::moves::moving_customers(catalog.conn())?;
    for customer in listed.iter_mut().filter(|c| moving.contains(&c.id)) {
        customer.status = CustomerStatus::Moving;
    }
    Ok(listed)
}

/// A customer with its limits, usage against them, and sites.
#[derive(Debug, Clone, Serialize)]
pub struct CustomerDetails {
    #[serde(flatten)]
    pub customer: Customer,
    pub limits: quota::EffectiveLimits,
    pub storage_bytes: u64,
    /// The same storage in decimal MiB, as `quota check` and `usage report` give it.
    pub storage_mb: f64,
    pub quota: Vec<quota::QuotaLine>,
    pub sites_by_status: BTreeMap<String, i64>,
    pub sites: Vec<SiteSummary>,
    /// Where its database lives and how to reach it.
    pub placement: PlacementView,
    /// A move under way, or a finished one whose old copy is still kept.
    #[serde(rename = "move")]
    pub moving: Option<super::moves::MoveState>,
}

pub fn show(catalog: &Catalog, reference: &str) -> Result<CustomerDetails> {
    let conn = catalog.conn();
    let customer = resolve(conn, reference)?;
    let plan = quota::plan_of(conn, &customer)?;
    let limits = quota::effective(&plan, customer.overrides());
    let used = quota::measure(conn, &Engines::of_catalog(conn), &customer)?;
    let sites = customers::sites_of(conn, customer.id)?;
    let mut sites_by_status = BTreeMap::new();
    for site in &sites {
        *sites_by_status.entry(site.status.to_string()).or_insert(0) += 1;
    }
    let engines = Engines::of_catalog(conn);
    let moving = super::moves::state_of(catalog, &engines, customer.id)?;
    let mut customer = customer;
    if moving.as_ref().is_some_and(|m| m.state == "moving") {
        customer.status = CustomerStatus::Moving;
    }
    Ok(CustomerDetails {
        moving,
        placement: engines.view(&customer.placement),
        quota: quota::lines(&used, &limits),
        storage_bytes: used.storage.used_bytes,
        storage_mb: used.storage.used_mb,
        limits,
        customer,
        sites_by_status,
        sites,
    })
}

#[derive(Debug, Clone, Default)]
pub struct UpdateCustomer {
    pub email: Option<String>,
    pub name: Option<String>,
    pub company: Option<String>,
    pub plan: Option<String>,
    pub limits: LimitChanges,
    pub meta: Vec<String>,
    pub force: bool,
}

impl UpdateCustomer {
    fn is_empty(&self) -> bool {
        self.email.is_none()
            && self.name.is_none()
            && self.company.is_none()
            && self.plan.is_none()
            && self.limits == LimitChanges::default()
            && self.meta.is_empty()
    }
}

pub fn update(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: &str,
    request: &UpdateCustomer,
) -> Result<Customer> {
    if request.is_empty() {
        return Err(Error::usage("nothing to update").with_hint(
            "pass --email, --name, --company, --plan, --max-sites, --max-storage-mb, --max-bandwidth-gb, --max-api-calls or --meta",
        ));
    }
    // Everything is read and checked inside the write transaction, so a concurrent
    // command cannot change the customer between the check and the write.
    catalog
        .write_audited(actor.name, |tx| {
            let current = resolve(tx, reference)?;
            refuse_deleted(&current, "update")?;
            let changes = requested_changes(tx, &current, request)?;
            if changes.is_noop(&current) {
                return Ok((current, None));
            }
            let over = quota_breaches(tx, &current, &changes)?;
            if !over.is_empty() && !request.force {
                return Err(Error::quota(format!(
                    "the change would put {} over quota: {}",
                    current.slug,
                    over.join(", ")
                ))
                .with_hint("lower the usage first, or pass --force"));
            }
            let updated = customers::update(tx, &current, &changes)?;
            let mut details = json!({"changes": changed_fields(&current, &updated)?});
            if !over.is_empty() {
                details["forced_over_quota"] = json!(over);
            }
            let event = NewAuditEvent::customer("customer.update", &updated, details);
            Ok((updated, Some(event)))
        })
        .map_err(|err| match err {
            Error::Sqlite(e) if is_unique_violation(&e) => Error::conflict("that email was taken meanwhile"),
            other => other,
        })
}

/// Validates the request against the customer as it is now.
fn requested_changes(
    conn: &Connection,
    current: &Customer,
    request: &UpdateCustomer,
) -> Result<CustomerChanges> {
    let mut changes = CustomerChanges {
        limits: request.limits,
        ..Default::default()
    };
    if let Some(email) = &request.email {
        let email = validate::email(email)?;
        if let Some(other) = customers::by_email(conn, &email)?.filter(|o| o.id != current.id) {
            return Err(Error::conflict(format!(
                "email {email} belongs to customer {}",
                other.slug
            )));
        }
        changes.email = Some(email);
    }
    if let Some(name) = &request.name {
        changes.name = Some(validate::display_text("name", name)?);
    }
    if let Some(company) = &request.company {
        changes.company_name = Some(if company.trim().is_empty() {
            None
        } else {
            Some(validate::display_text("company", company)?)
        });
    }
    if let Some(plan) = &request.plan {
        changes.plan = Some(existing_plan(conn, plan)?);
    }
    if !request.meta.is_empty() {
        let mut metadata = current.metadata.clone();
        validate::apply_meta(&mut metadata, &request.meta)?;
        changes.metadata = Some(metadata);
    }
    Ok(changes)
}

/// Resources that would be over a limit the change lowers.
pub(crate) fn quota_breaches(
    conn: &Connection,
    current: &Customer,
    changes: &CustomerChanges,
) -> Result<Vec<String>> {
    if changes.plan.is_none() && changes.limits == LimitChanges::default() {
        return Ok(Vec::new());
    }
    let old_plan = quota::plan_of(conn, current)?;
    let new_plan = match &changes.plan {
        Some(name) => plans::get(conn, name)?.unwrap_or_else(|| old_plan.clone()),
        None => old_plan.clone(),
    };
    let before = quota::effective(&old_plan, current.overrides());
    let after = quota::effective(&new_plan, changes.limits.apply_to(current.overrides()));
    quota::breaches(conn, current, &before, &after)
}

fn changed_fields(before: &Customer, after: &Customer) -> Result<Map<String, Value>> {
    let (Value::Object(old), Value::Object(new)) =
        (serde_json::to_value(before)?, serde_json::to_value(after)?)
    else {
        return Ok(Map::new());
    };
    Ok(new
        .into_iter()
        .filter(|(key, value)| key != "updated_at" && old.get(key) != Some(value))
        .map(|(key, value)| {
            let from = old.get(&key).cloned().unwrap_or(Value::Null);
            (key, json!({"from": from, "to": value}))
        })
        .collect())
}

fn refuse_deleted(customer: &Customer, what: &str) -> Result<()> {
    if customer.status == CustomerStatus::Deleted {
        return Err(
            Error::refused(format!("customer {} is deleted; cannot {what} it", customer.slug)).with_hint(
                format!("run 'tenantctl customer undelete {}' first", customer.slug),
            ),
        );
    }
    Ok(())
}

fn require_confirm(customer: &Customer, confirm: Option<&str>, what: &str) -> Result<()> {
    let ok = confirm.is_some_and(|c| c == customer.slug || c == customer.id.to_string());
    if ok {
        return Ok(());
    }
    let message = match confirm {
        None => format!("{what} of customer {} needs confirmation", customer.slug),
        Some(other) => format!(
            "--confirm '{}' does not name customer {}",
            validate::printable(other),
            customer.slug
        ),
    };
    Err(Error::refused(message).with_hint(format!("pass --confirm {}", customer.slug)))
}

pub fn suspend(catalog: &mut Catalog, actor: Actor<'_>, reference: &str, reason: &str) -> Result<Customer> {
    let reason = validate::display_text("reason", reason)?;
    catalog.write_with_files_audited(
        actor.name,
        |tx| {
            let customer = resolve(tx, reference)?;
            refuse_deleted(&customer, "suspend")?;
            super::moves::refuse_if_moving(tx, &customer)?;
            if customer.status == CustomerStatus::Suspended {
                return Err(Error::refused(format!(
                    "customer {} is already suspended",
                    customer.slug
                )));
            }
            customers::set_status(tx, customer.id, CustomerStatus::Suspended, Some(&reason))?;
            let event = NewAuditEvent::customer("customer.suspend", &customer, json!({"reason": reason}));
            Ok((reread(tx, &customer)?, [event]))
        },
        |customer| set_login(actor, customer, false),
        |customer| {
            let _ = set_login(actor, customer, true);
        },
    )
}

pub fn reactivate(catalog: &mut Catalog, actor: Actor<'_>, reference: &str) -> Result<Customer> {
    catalog.write_with_files_audited(
        actor.name,
        |tx| {
            let customer = resolve(tx, reference)?;
            refuse_deleted(&customer, "reactivate")?;
            super::moves::refuse_if_moving(tx, &customer)?;
            if customer.status == CustomerStatus::Active {
                return Err(Error::refused(format!(
                    "customer {} is already active",
                    customer.slug
                )));
            }
            customers::set_status(tx, customer.id, CustomerStatus::Active, None)?;
            let event = NewAuditEvent::customer(
                "customer.reactivate",
                &customer,
                json!({"reason_was": customer.status_reason}),
            );
            Ok((reread(tx, &customer)?, [event]))
        },
        |customer| set_login(actor, customer, true),
        |customer| {
            let _ = set_login(actor, customer, false);
        },
    )
}

/// Lets a tenant's own login in or shuts it out, on engines where applications log
/// in as the tenant (a server's `NOLOGIN` refuses it more surely than any flag).
/// Runs before the status change commits, so the two never disagree for long.
pub(crate) fn set_login(actor: Actor<'_>, customer: &Customer, allowed: bool) -> Result<()> {
    Engines::new(actor.home)
        .tenant(&customer.placement)?
        .set_login(allowed)
}

fn reread(conn: &Connection, customer: &Customer) -> Result<Customer> {
    customers::by_id(conn, customer.id)?
        .ok_or_else(|| Error::unexpected(format!("customer {} vanished", customer.slug)))
}

/// A customer's database on its way to or from where deleted tenants wait.
struct Move {
    customer: Customer,
    from: Placement,
    to: Placement,
    file_present: bool,
    /// Its entry in the operation ledger.
    operation: i64,
}

/// Soft delete: status `deleted` (the suspension, if any, is kept for undelete), sites
/// stopped, keys and sessions revoked, tenant database moved to `HOME/trash/`.
pub fn delete(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: &str,
    confirm: Option<&str>,
) -> Result<Customer> {
    let before = resolve(catalog.conn(), reference)?;
    require_confirm(&before, confirm, "deletion")?;
    super::moves::refuse_while_moving(catalog, &before)?;
    let engines = Engines::new(actor.home);
    let engine = engines.engine(&before.placement)?;
    // Bringing pending writes home first lets the database move alone. One too damaged
    // to open still moves.
    let _ = engine.tenant(&before.placement).quiesce();
    let owner = Owner::new(&actor.home.run_dir())?;
    let done = catalog.write_audited(actor.name, |tx| {
        let customer = resolve(tx, &before.id.to_string())?;
        if customer.status == CustomerStatus::Deleted {
            return Err(Error::refused(format!(
                "customer {} is already deleted",
                customer.slug
            )));
        }
        let from = customer.placement.clone();
        let to = engine.retired_placement(&customer.slug, customer.id)?;
        let to_text = to.location.clone();
        let file_present = engine.tenant(&from).presence()?;
        customers::set_status(
            tx,
            customer.id,
            CustomerStatus::Deleted,
            customer.status_reason.as_deref(),
        )?;
        let (sites, keys, sessions) = customers::shut_down_access(tx, customer.id)?;
        customers::set_placement(tx, customer.id, &to)?;
        let event = NewAuditEvent::customer(
            "customer.delete",
            &customer,
            json!({"status_was": customer.status, "sites_stopped": sites, "keys_revoked": keys,
                       "sessions_revoked": sessions, "db_path": to_text, "db_file_missing": !file_present}),
        );
        let operation = record_move(tx, recovery::DELETE, &customer, &owner, &from, &to)?;
        let moved = Move {
            customer: reread(tx, &customer)?,
            from,
            to,
            file_present,
            operation,
        };
        Ok((moved, [event]))
    })?;
    finish_move(catalog, engine, &done, "customer.delete")?;
    Ok(done.customer)
}

/// Notes in the ledger, in the transaction that changes the row, that the database
/// is about to move: a kill before the move is finished by the next command.
fn record_move(
    tx: &Connection,
    kind: &str,
    customer: &Customer,
    owner: &Owner,
    from: &Placement,
    to: &Placement,
) -> Result<i64> {
    operations::open(
        tx,
        &NewOperation {
            kind,
            subject: &customer.slug,
            customer_id: Some(customer.id),
            owner: owner.token(),
            steps: json!({"from": recovery::placement_json(from), "to": recovery::placement_json(to)}),
        },
    )
}

/// Moves the database as the committed row says, then closes the ledger entry. The
/// row already tells the truth, so a failure here is finished later, not undone.
fn finish_move(catalog: &mut Catalog, engine: &dyn Engine, done: &Move, step: &str) -> Result<()> {
    crash_point(&format!("{step}:recorded"));
    if done.file_present {
        engine.relocate(&done.from, &done.to).map_err(|err| {
            Error::unexpected(format!(
                "customer {} is changed, but moving its database failed: {err}",
                done.customer.slug
            ))
            .with_hint("fix the cause; the next customer command or 'tenantctl doctor --fix' moves it")
        })?;
    }
    crash_point(&format!("{step}:moved"));
    catalog.write(|tx| operations::close(tx, done.operation))
}

/// Reverses a soft delete: the customer returns to the status it had (active, or
/// suspended with its reason), its database to `HOME/tenants/`. Sites stay stopped and
/// revoked keys stay revoked.
pub fn undelete(catalog: &mut Catalog, actor: Actor<'_>, reference: &str) -> Result<Customer> {
    let engines = Engines::new(actor.home);
    let before = resolve(catalog.conn(), reference)?;
    let engine = engines.engine(&before.placement)?;
    let owner = Owner::new(&actor.home.run_dir())?;
    let done = catalog.write_audited(
        actor.name,
        |tx| {
            let customer = resolve(tx, reference)?;
            if customer.status != CustomerStatus::Deleted {
                return Err(Error::refused(format!(
                    "customer {} is not deleted",
                    customer.slug
                )));
            }
            let from = customer.placement.clone();
            let to = engine.placement_for(&customer.slug)?;
            // After a crash between moving the file and committing, it may already be back.
            let file_present = engine.tenant(&from).presence()?;
            if !file_present && !engine.tenant(&to).presence()? {
                return Err(Error::refused(format!(
                    "the tenant database of {} is gone from {}",
                    customer.slug,
                    engine.tenant(&from).describe()
                ))
.with_hint(format!(
                    "run 'tenantctl customer undelete {} --from-backup [ID]' (or --at TIME) to bring it back from a backup",
                    customer.slug
                )));
            }
            let to_text = to.location.clone();
            customers::undelete(tx, customer.id, &to)?;
            let restored = reread(tx, &customer)?;
            let event = NewAuditEvent::customer(
                "customer.undelete",
                &customer,
                json!({"db_path": to_text, "status": restored.status}),
            );
            let operation = record_move(tx, recovery::UNDELETE, &customer, &owner, &from, &to)?;
            let moved = Move {
                customer: restored,
                from,
                to,
                file_present,
                operation,
            };
            Ok((moved, [event]))
        },
    )?;
    finish_move(catalog, engine, &done, "customer.undelete")?;
    // Its login was shut out at delete; only an active customer gets it back.
    if done.customer.status == CustomerStatus::Active {
        engine.tenant(&done.customer.placement).set_login(true)?;
    }
    Ok(done.customer)
}

/// A retried delete or undelete whose killed run the recovery before it has just
/// finished: nothing is left to do, and the retry succeeds with the customer as it is.
pub fn finished_by_recovery(
    catalog: &Catalog,
    reference: &str,
    kind: &str,
    recovered: &[Recovered],
) -> Result<Option<Customer>> {
    let Ok(customer) = resolve(catalog.conn(), reference) else {
        return Ok(None);
    };
    let finished = recovered
        .iter()
        .any(|r| r.kind == kind && r.customer_id == Some(customer.id));
    Ok(finished.then_some(customer))
}

/// A retried purge (same customer, same confirmation) whose killed run the recovery
/// before it has just finished: the report that run would have given.
pub fn purged_by_recovery(
    reference: &str,
    confirm: Option<&str>,
    recovered: &[Recovered],
) -> Option<PurgeReport> {
    let done = recovered.iter().find(|r| {
        r.kind == recovery::PURGE
            && confirm == Some(r.subject.as_str())
            && (r.subject.eq_ignore_ascii_case(reference)
                || r.customer_id.is_some_and(|id| id.to_string() == reference)
                || r.steps["email"]
                    .as_str()
                    .is_some_and(|e| e.eq_ignore_ascii_case(reference)))
    })?;
    Some(PurgeReport {
        id: done.customer_id.unwrap_or_default(),
        slug: done.subject.clone(),
        email: done.steps["email"].as_str().unwrap_or_default().to_string(),
        status: "purged".to_string(),
        removed_db_path: done.steps["placement"]["location"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        purged_at: crate::time::now(),
    })
}

/// What `customer purge` removed for good.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeReport {
    pub id: i64,
    pub slug: String,
    pub email: String,
    pub status: String,
    pub removed_db_path: String,
    pub purged_at: String,
}

pub fn purge(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: &str,
    confirm: Option<&str>,
) -> Result<PurgeReport> {
    let engines = Engines::new(actor.home);
    let owner = Owner::new(&actor.home.run_dir())?;
    let (customer, operation) = catalog.write_audited(actor.name, |tx| {
        let customer = resolve(tx, reference)?;
        if customer.status != CustomerStatus::Deleted {
            return Err(Error::refused(format!(
                "customer {} is {}, not deleted",
                customer.slug, customer.status
            ))
            .with_hint(format!(
                "run 'tenantctl customer delete {} --confirm {}' first",
                customer.slug, customer.slug
            )));
        }
        require_confirm(&customer, confirm, "purge")?;
        let event = NewAuditEvent::customer(
            "customer.purge",
            &customer,
            json!({"email": customer.email, "name": customer.name, "db_path": customer.placement.location}),
        );
        // The database goes before the row: a kill in between leaves the ledger entry,
        // and the next command removes what is left, so no purged data survives.
        let operation = operations::open(
            tx,
            &NewOperation {
                kind: recovery::PURGE,
                subject: &customer.slug,
                customer_id: Some(customer.id),
                owner: owner.token(),
                steps: json!({"placement": recovery::placement_json(&customer.placement),
                              "email": customer.email}),
            },
        )?;
        Ok(((customer, operation), [event]))
    })?;
    crash_point("customer.purge:recorded");
    engines
        .engine(&customer.placement)?
        .purge_retired(&customer.placement)?;
    crash_point("customer.purge:removed");
    catalog.write(|tx| {
        customers::purge(tx, customer.id)?;
        operations::close(tx, operation)
    })?;
    Ok(PurgeReport {
        id: customer.id,
        slug: customer.slug,
        email: customer.email,
        status: "purged".to_string(),
        removed_db_path: customer.placement.location,
        purged_at: crate::time::now(),
    })
}
