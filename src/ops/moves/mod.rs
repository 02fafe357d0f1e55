//! `customer move`: a tenant's data to another server or engine, verified, with the
//! tenant's writes frozen while it is copied (SPEC section 7).
//!
//! The target is built from the target engine's migrations under a staging name,
//! the source frozen, every table copied in key order, sequences set past the
//! highest ids, each table compared on both sides, the target published under the
//! tenant's name, and the placement flipped in one catalog transaction with its
//! audit event. The source stays, frozen, until `--finish` drops it.
//!
//! Until the flip the move is an entry of the operation ledger naming the staging
//! copy, the target and whether the source's login was shut: a move whose command
//! died is undone by the next command that recovers the ledger (`customer move`,
//! `doctor --fix`), so a tenant is never placed in two places or none.

mod copy;
mod online;

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::{Actor, customers, placement};
use crate::catalog::model::NewAuditEvent;
use crate::catalog::operations::{self, NewOperation, Operation};
use crate::catalog::states::CustomerStatus;
use crate::catalog::{Catalog, moves, servers, tenants};
use crate::engine::postgres::role_identity;
use crate::engine::transfer::Digest;
use crate::engine::{Engine, Engines, Placement, PlacementView, Provisioned, TenantDatabase};
use crate::error::{Error, Result};
use crate::lock::{HomeLock, Owner};
use crate::ops::recovery::{self, crash_point};
use crate::secrets::{MasterKey, Secret};

pub use copy::TableCopied;

/// The ledger's kind for a move before its flip.
pub const KIND: &str = "customer.move";

#[derive(Debug, Clone)]
pub struct MoveRequest {
    pub customer: String,
    /// `local` or a server name.
    pub to: String,
    /// Logical replication while the tenant keeps writing (PostgreSQL to PostgreSQL).
    pub online: bool,
    pub dry_run: bool,
    pub lock_timeout: Duration,
}

/// What `customer move` did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct MoveReport {
    pub customer: String,
    pub customer_id: i64,
    /// `planned`, `moved`, `finished` or `aborted`.
    pub outcome: &'static str,
    pub dry_run: bool,
    pub online: bool,
    /// How the rows travel: `table-copy` (each table streamed in key order).
    pub method: Option<&'static str>,
    pub from: PlacementView,
    pub to: Option<PlacementView>,
    pub tables: Vec<TableCopied>,
    pub rows: u64,
    pub size_bytes: u64,
    /// How long the tenant could not write; with `--dry-run`, what it will be.
    pub freeze_ms: Option<u64>,
    pub expected_freeze: Option<&'static str>,
    pub duration_ms: u64,
    /// The old copy, kept frozen until `customer move CUSTOMER --finish`.
    pub source_kept: Option<PlacementView>,
}

const OFFLINE_FREEZE: &str =
    "the whole copy and its verification: the tenant cannot write until the move ends";
const ONLINE_FREEZE: &str =
    "the final catch-up, the sequences, a row count of each table and the flip: seconds, whatever the size";

/// Moves a customer's tenant to `request.to`.
pub fn run(catalog: &mut Catalog, actor: Actor<'_>, request: &MoveRequest) -> Result<MoveReport> {
    let started = Instant::now();
    let engines = Engines::new(actor.home);
    let before = customers::resolve(catalog.conn(), &request.customer)?;
    refuse_unmovable(catalog, &before)?;
    let target = placement::choose_server(catalog, &engines, Some(&request.to))?;
    if target.name == before.placement.server {
        return Err(Error::refused(format!(
            "customer {} already lives on server {}",
            before.slug, target.name
        )));
    }
    let _lock = match request.dry_run {
        true => None,
        false => Some(HomeLock::acquire(&actor.home.lock_file(), request.lock_timeout)?),
    };
    // Read again under the lock: a command that ran meanwhile may have changed it.
    let customer = customers::resolve(catalog.conn(), &before.id.to_string())?;
    refuse_unmovable(catalog, &customer)?;
    let source_engine = engines.engine(&customer.placement)?;
    let target_engine = engines.server(&target.name)?;
    let source = source_engine.tenant(&customer.placement);
    if !source.presence()? {
        return Err(Error::not_found(format!(
            "the database of customer {} is missing ({})",
            customer.slug,
            source.describe()
        ))
        .with_hint("restore it first: tenantctl restore --customer …"));
    }
    // A dry run builds the target too (to learn its tables), so the server's
    // template is brought up to date for it as for a move: a cache, not the tenant.
    let migrations = placement::migrations_for(catalog, actor, &target)?;
    let newest = crate::migrations::newest_version(&migrations);
    if customer.schema_version != newest {
        return Err(Error::refused(format!(
            "customer {} is at tenant migration V{}, and the target is built at V{newest}",
            customer.slug, customer.schema_version
        ))
        .with_hint(format!(
            "bring it up to date first: tenantctl db migrate {}",
            customer.slug
        )));
    }
    let target_placement = target_engine.placement_for(&customer.slug)?;
    target_engine.refuse_taken(&target_placement)?;
    if request.online {
        online::check(
            source.as_ref(),
            target_engine.tenant(&target_placement).as_ref(),
            &source.tables()?,
        )?;
    }

    let owner = Owner::new(&actor.home.run_dir())?;
    // Between two databases of one engine and layout the engine's own dump and
    // restore carries the tenant whole (every object, not only the migrations');
    // otherwise the target is built from the migrations and filled table by table.
    let whole = !request.online && target_engine.can_copy_whole(source.as_ref());
    let mut built = match whole {
        true => target_engine.provision_empty(owner.token())?,
        false => target_engine.provision(&migrations, owner.token())?,
    };
    crash_point("customer.move:provisioned");
    let staging = Placement {
        engine: target.engine,
        server: target.name.clone(),
        location: built.staging.clone(),
    };
    let staged = target_engine.tenant(&staging);
    let same_engine = customer.placement.engine == target.engine;
    let planned = match whole {
        true => plan_whole(source.as_ref(), request.dry_run),
        false => plan(source.as_ref(), staged.as_ref(), same_engine, request.dry_run),
    };
    let method = match (request.online, whole) {
        (true, _) => "logical-replication",
        (false, true) => "dump-restore",
        (false, false) => "table-copy",
    };
    let (pairs, counts) = match planned {
        Ok(planned) => planned,
        Err(err) => {
            target_engine.discard(&built);
            return Err(err);
        }
    };
    let mut report = MoveReport {
        customer: customer.slug.clone(),
        customer_id: customer.id,
        outcome: "planned",
        dry_run: request.dry_run,
        online: request.online,
        method: Some(method),
        from: engines.view(&customer.placement),
        to: Some(target_engine.view(&target_placement)),
        tables: Vec::new(),
        rows: counts.iter().sum(),
        size_bytes: source.measured_bytes().unwrap_or(0),
        freeze_ms: None,
        expected_freeze: Some(if request.online {
            ONLINE_FREEZE
        } else {
            OFFLINE_FREEZE
        }),
        duration_ms: 0,
        source_kept: None,
    };
    if request.dry_run {
        target_engine.discard(&built);
        report.tables = pairs
            .iter()
            .zip(&counts)
            .map(|(pair, rows)| TableCopied {
                table: pair.target.name.clone(),
                rows: *rows,
                digest: String::new(),
            })
            .collect();
        report.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    // The application's password goes with it, so only the host in its URL changes.
    if built.role_password.is_some()
        && let Some(password) = current_role_password(catalog, actor, customer.id)?
    {
        built.role_password = Some(password);
    }
    let ledger = Ledger {
        from: customer.placement.clone(),
        to: target_placement.clone(),
        staging: built.staging.clone(),
        login: customer.status == CustomerStatus::Active,
        replication: request.online.then(|| online::replication_name(customer.id)),
    };
    let op = catalog.write(|tx| {
        operations::open(
            tx,
            &NewOperation {
                kind: KIND,
                subject: &customer.slug,
                customer_id: Some(customer.id),
                owner: owner.token(),
                steps: ledger.steps("building"),
            },
        )
    });
    let op = match op {
        Ok(op) => op,
        Err(err) => {
            target_engine.discard(&built);
            return Err(err);
        }
    };
    crash_point("customer.move:recorded");
    let work = Work {
        customer: &customer,
        source: source.as_ref(),
        staged: staged.as_ref(),
        target_engine,
        built: &built,
        ledger: &ledger,
        op,
        same_engine,
        whole,
        method,
    };
    let moved = match &ledger.replication {
        Some(name) => online::copy_and_flip(catalog, actor, &work, &pairs, name),
        None => copy_and_flip(catalog, actor, &work, &pairs),
    };
    match moved {
        Ok((tables, freeze)) => {
            report.outcome = "moved";
            report.rows = tables.iter().map(|t| t.rows).sum();
            report.tables = tables;
            report.freeze_ms = Some(freeze.as_millis() as u64);
            report.expected_freeze = None;
            report.source_kept = Some(report.from.clone());
            report.duration_ms = started.elapsed().as_millis() as u64;
            Ok(report)
        }
        Err(err) => {
            // Undone while this command still owns it; if even that fails, the ledger
            // lets the next command do it.
            // As far as the ledger says it got.
            let steps = operations::get(catalog.conn(), op)
                .ok()
                .flatten()
                .map_or_else(|| ledger.steps("failed"), |open| open.steps);
            let _ = undo(catalog, &engines, op, &steps);
            Err(err)
        }
    }
}

/// Deleted customers stay where their data waits; a customer whose previous move
/// still keeps its old copy is finished first.
fn refuse_unmovable(catalog: &Catalog, customer: &crate::catalog::model::Customer) -> Result<()> {
    if customer.status == CustomerStatus::Deleted {
        return Err(Error::refused(format!(
            "customer {} is deleted: undelete it before moving it",
            customer.slug
        )));
    }
    if let Some(kept) = moves::of_customer(catalog.conn(), customer.id)? {
        return Err(Error::refused(format!(
            "customer {} was moved on {}; its old copy on server {} is kept until the move is finished",
            customer.slug, kept.moved_at, kept.placement.server
        ))
        .with_hint(format!(
            "check the tenant where it is now, then: tenantctl customer move {} --finish",
            customer.slug
        )));
    }
    Ok(())
}

/// Refuses (exit 6) what would change a tenant's login under a move that is under
/// way: the move carries the login state and password it read at its start.
pub fn refuse_if_moving(
    conn: &rusqlite::Connection,
    customer: &crate::catalog::model::Customer,
) -> Result<()> {
    if is_moving(conn, customer.id)? {
        return Err(
            Error::refused(format!("customer {} is being moved", customer.slug)).with_hint(
                "wait for the move to end, or stop it and run 'tenantctl customer move … --abort'",
            ),
        );
    }
    Ok(())
}

/// The customers a move is under way for.
pub fn moving_customers(conn: &rusqlite::Connection) -> Result<Vec<i64>> {
    if !operations::any_open(conn)? {
        return Ok(Vec::new());
    }
    Ok(operations::list(conn)?
        .into_iter()
        .filter(|op| op.kind == KIND)
        .filter_map(|op| op.customer_id)
        .collect())
}

pub fn is_moving(conn: &rusqlite::Connection, customer_id: i64) -> Result<bool> {
    Ok(operations::list(conn)?
        .iter()
        .any(|op| op.kind == KIND && op.customer_id == Some(customer_id)))
}

/// Refuses (exit 6) to delete a customer while a move of it is under way or keeps
/// its old copy: the data would be in two places, one of them forgotten.
pub fn refuse_while_moving(catalog: &Catalog, customer: &crate::catalog::model::Customer) -> Result<()> {
    let engines = Engines::of_catalog(catalog.conn());
    match state_of(catalog, &engines, customer.id)? {
        Some(state) if state.state == "moving" => Err(Error::refused(format!(
            "customer {} is being moved",
            customer.slug
        ))
        .with_hint("wait for the move to end, or stop it and run 'tenantctl customer move … --abort'")),
        Some(_) => Err(Error::refused(format!(
            "customer {} was moved and its old copy is still kept",
            customer.slug
        ))
        .with_hint(format!(
            "finish the move first: tenantctl customer move {} --finish",
            customer.slug
        ))),
        None => Ok(()),
    }
}

/// Pairs the tables and, across engines, checks that every value converts before
/// anything is frozen; the rows of each table.
/// Rows are counted for a dry run's plan only: a move reports what it copied.
fn plan(
    source: &dyn TenantDatabase,
    staged: &dyn TenantDatabase,
    same_engine: bool,
    count: bool,
) -> Result<(Vec<copy::TablePair>, Vec<u64>)> {
    let pairs = copy::pair_tables(source.tables()?, staged.tables()?)?;
    let counts = match same_engine {
        true => count_rows(source, &pairs, count)?,
        false => copy::check_conversions(source, &pairs)?,
    };
    Ok((pairs, counts))
}

fn count_rows(source: &dyn TenantDatabase, pairs: &[copy::TablePair], count: bool) -> Result<Vec<u64>> {
    match count {
        true => pairs.iter().map(|pair| row_count(source, &pair.source)).collect(),
        false => Ok(vec![0; pairs.len()]),
    }
}

/// A whole copy takes every table as it is: each pairs with itself.
fn plan_whole(source: &dyn TenantDatabase, count: bool) -> Result<(Vec<copy::TablePair>, Vec<u64>)> {
    let pairs: Vec<copy::TablePair> = source
        .tables()?
        .into_iter()
        .map(|table| copy::TablePair {
            source: table.clone(),
            target: table,
        })
        .collect();
    let counts = count_rows(source, &pairs, count)?;
    Ok((pairs, counts))
}

fn row_count(source: &dyn TenantDatabase, table: &crate::engine::transfer::TableShape) -> Result<u64> {
    source.count_rows(table)
}

/// The tenant role's password as the catalog keeps it, decrypted.
fn current_role_password(catalog: &Catalog, actor: Actor<'_>, customer_id: i64) -> Result<Option<Secret>> {
    match servers::role_of_customer(catalog.conn(), customer_id)? {
        Some(stored) => Ok(Some(
            MasterKey::require(actor.home)?.decrypt(&stored, &role_identity(customer_id))?,
        )),
        None => Ok(None),
    }
}

/// What the ledger says about a move, in its steps.
struct Ledger {
    from: Placement,
    to: Placement,
    staging: String,
    /// Whether the source's login is let in again when the move is undone.
    login: bool,
    /// The name of an online move's publication, subscription, slot and mark tables.
    replication: Option<String>,
}

impl Ledger {
    fn steps(&self, step: &str) -> Value {
        json!({
            "step": step,
            "from": recovery::placement_json(&self.from),
            "to": recovery::placement_json(&self.to),
            "staging": self.staging,
            "login": self.login,
            "replication": self.replication,
            // From here on something sits under the tenant's name at the target
            // (an online move publishes its target first).
            "published": step == "publishing" || step == "failed" || step.starts_with("online-"),
        })
    }
}

struct Work<'a> {
    customer: &'a crate::catalog::model::Customer,
    source: &'a dyn TenantDatabase,
    staged: &'a dyn TenantDatabase,
    target_engine: &'a dyn Engine,
    built: &'a Provisioned,
    ledger: &'a Ledger,
    op: i64,
    same_engine: bool,
    /// Copied whole by the engine's dump and restore, not table by table.
    whole: bool,
    method: &'static str,
}

impl Work<'_> {
    fn step(&self, catalog: &mut Catalog, step: &str) -> Result<()> {
        catalog.write(|tx| operations::set_steps(tx, self.op, &self.ledger.steps(step)))?;
        crash_point(&format!("customer.move:{step}"));
        Ok(())
    }
}

/// Freeze, copy, verify, publish, flip; the tables copied and how long the tenant
/// could not write.
fn copy_and_flip(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    work: &Work<'_>,
    pairs: &[copy::TablePair],
) -> Result<(Vec<TableCopied>, Duration)> {
    let freeze_started = Instant::now();
    let frozen = work.source.freeze()?;
    work.step(catalog, "frozen")?;
    let (read, applied) = match work.whole {
        true => {
            work.staged.copy_whole_from(work.source)?;
            // Compared by the servers' own digests; the dump carried the sequences
            // and the migration history.
            (vec![Digest::default(); pairs.len()], work.staged.applied()?)
        }
        false => {
            let read = copy::copy_tables(work.source, work.staged, pairs)?;
            work.staged.advance_sequences()?;
            (read, work.built.applied.to_vec())
        }
    };
    work.step(catalog, "copied")?;
    let tables = copy::verify(work.source, work.staged, pairs, &read, work.same_engine)?;
    work.step(catalog, "publishing")?;
    work.target_engine.publish(work.built, &work.ledger.to)?;
    if !work.ledger.login {
        work.target_engine.tenant(&work.ledger.to).set_login(false)?;
    }
    crash_point("customer.move:published");
    flip(catalog, actor, work, &tables, &applied, freeze_started.elapsed())?;
    // The move is done whatever happens here: a file left unsealed by a failure
    // just now takes writes nobody reads, as any copy would.
    let _ = frozen.seal();
    let freeze = freeze_started.elapsed();
    crash_point("customer.move:flipped");
    Ok((tables, freeze))
}

/// The one transaction after which the tenant lives at the target: placement,
/// migration ledger and role, the old copy noted as kept, the ledger entry closed,
/// the audit event written.
fn flip(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    work: &Work<'_>,
    tables: &[TableCopied],
    applied: &[crate::migrations::MigrationId],
    frozen_for: Duration,
) -> Result<()> {
    let customer = work.customer;
    let key = match &work.built.role_password {
        Some(_) => Some(MasterKey::require(actor.home)?),
        None => None,
    };
    catalog.write_audited(actor.name, |tx| {
        crate::catalog::customers::set_placement(tx, customer.id, &work.ledger.to)?;
        tenants::record_applied(tx, customer.id, applied)?;
        match (&work.built.role_password, &key) {
            (Some(password), Some(key)) => {
                let encrypted = key.encrypt(password, &role_identity(customer.id));
                servers::delete_role(tx, customer.id)?;
                servers::insert_role(tx, customer.id, &work.ledger.to.location, &encrypted)?;
            }
            _ => servers::delete_role(tx, customer.id)?,
        }
        moves::record(tx, customer.id, &work.ledger.from)?;
        operations::close(tx, work.op)?;
        let event = NewAuditEvent::customer(
            "customer.move",
            customer,
            json!({
                "from": recovery::placement_json(&work.ledger.from),
                "to": recovery::placement_json(&work.ledger.to),
                "method": work.method,
                "rows": tables.iter().map(|t| t.rows).sum::<u64>(),
                "tables": tables.len(),
                "freeze_ms": frozen_for.as_millis() as u64,
            }),
        );
        Ok(((), [event]))
    })
}

/// Undoes a move that did not flip: the target and the staging copy are dropped, the
/// source's login let in again (when it was in before), the ledger entry closed.
pub fn undo(catalog: &mut Catalog, engines: &Engines, op: i64, steps: &Value) -> Result<()> {
    let from = recovery::placement_of(&steps["from"])?;
    let to = recovery::placement_of(&steps["to"])?;
    // The source first: whatever else fails, the tenant must take writes again.
    let source = engines.tenant(&from)?;
    source.thaw()?;
    if steps["login"].as_bool() == Some(true) {
        source.set_login(true)?;
    }
    // Then what was made for the target. What cannot be dropped now (its server
    // down, say) stays for doctor, which finds each by its name: the staging copy
    // by its dead owner, the tenant's name as no customer's, `tenantctl_*`
    // replication as no open move's.
    let target_left = undo_target(engines, &from, &to, steps).err();
    let open = operations::get(catalog.conn(), op)?;
    catalog.write_audited("tenantctl", |tx| {
        operations::close(tx, op)?;
        let event = NewAuditEvent::new(
            "customer.move.undo",
            "customer",
            open.as_ref().map(|o| o.subject.clone()).unwrap_or_default(),
            open.as_ref().and_then(|o| o.customer_id),
            json!({
                "from": recovery::placement_json(&from),
                "to": recovery::placement_json(&to),
                "step": steps["step"],
                "target_left_for_doctor": target_left.map(|e| e.to_string()),
            }),
        );
        Ok(((), [event]))
    })
}

fn undo_target(engines: &Engines, from: &Placement, to: &Placement, steps: &Value) -> Result<()> {
    let target_engine = engines.engine(to)?;
    if let Some(name) = steps["replication"].as_str() {
        undo_replication(engines, from, to, name)?;
    }
    if let Some(staging) = steps.get("staging").and_then(Value::as_str) {
        target_engine.discard(&Provisioned {
            staging: staging.to_string(),
            schema_version: 0,
            applied: Default::default(),
            role_password: None,
        });
    }
    // Only a move that got as far as publishing made anything under the tenant's own
    // name there; before the move began nothing was (`refuse_taken`).
    if steps["published"].as_bool() == Some(true) {
        target_engine.destroy(to)?;
    }
    Ok(())
}

/// Drops what an online move made for replicating: the subscription first (it holds
/// the slot on the source), then the publication, mark table and slot.
fn undo_replication(engines: &Engines, from: &Placement, to: &Placement, name: &str) -> Result<()> {
    let target = engines.tenant(to)?;
    if let Some(replication) = target.replication()
        && target.presence()?
    {
        replication.unsubscribe(name)?;
    }
    let source = engines.tenant(from)?;
    if let Some(replication) = source.replication() {
        replication.unpublish(name)?;
    }
    Ok(())
}

/// Where open moves are building their tenants on `server`: doctor must not take
/// them for databases nobody owns.
pub fn targets_on(catalog: &Catalog, server: &str) -> Result<Vec<Placement>> {
    Ok(operations::list(catalog.conn())?
        .into_iter()
        .filter(|op| op.kind == KIND)
        .filter_map(|op| recovery::placement_of(&op.steps["to"]).ok())
        .filter(|to| to.server == server)
        .collect())
}

/// The replication objects open moves own, which doctor must not call leftovers.
pub fn replication_in_use(catalog: &Catalog) -> Result<Vec<String>> {
    Ok(operations::list(catalog.conn())?
        .into_iter()
        .filter(|op| op.kind == KIND)
        .filter_map(|op| op.steps["replication"].as_str().map(str::to_string))
        .collect())
}

/// Recovery's way in: undoes the move a killed command left.
pub fn undo_abandoned(catalog: &mut Catalog, engines: &Engines, op: &Operation) -> Result<&'static str> {
    undo(catalog, engines, op.id, &op.steps)?;
    Ok("undone")
}

/// `customer move CUSTOMER --finish`: drops the old copy a move kept.
pub fn finish(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: &str,
    lock_timeout: Duration,
) -> Result<MoveReport> {
    let started = Instant::now();
    let customer = customers::resolve(catalog.conn(), reference)?;
    let Some(kept) = moves::of_customer(catalog.conn(), customer.id)? else {
        return Err(Error::refused(format!(
            "customer {} has no finished move whose old copy waits to be dropped",
            customer.slug
        )));
    };
    let _lock = HomeLock::acquire(&actor.home.lock_file(), lock_timeout)?;
    let engines = Engines::new(actor.home);
    let from = engines.view(&kept.placement);
    engines.engine(&kept.placement)?.destroy(&kept.placement)?;
    catalog.write_audited(actor.name, |tx| {
        moves::forget(tx, customer.id)?;
        let event = NewAuditEvent::customer(
            "customer.move.finish",
            &customer,
            json!({"dropped": recovery::placement_json(&kept.placement)}),
        );
        Ok(((), [event]))
    })?;
    Ok(MoveReport {
        customer: customer.slug.clone(),
        customer_id: customer.id,
        outcome: "finished",
        dry_run: false,
        online: false,
        method: None,
        from,
        to: Some(engines.view(&customer.placement)),
        tables: Vec::new(),
        rows: 0,
        size_bytes: 0,
        freeze_ms: None,
        expected_freeze: None,
        duration_ms: started.elapsed().as_millis() as u64,
        source_kept: None,
    })
}

/// `customer move CUSTOMER --abort`: what the recovery before it undid of this
/// customer's move is reported; a move still running, or one already flipped, is
/// refused with what to do instead.
pub fn abort(
    catalog: &Catalog,
    actor: Actor<'_>,
    reference: &str,
    undone: &[recovery::Recovered],
) -> Result<MoveReport> {
    let customer = customers::resolve(catalog.conn(), reference)?;
    let engines = Engines::new(actor.home);
    if let Some(done) = undone
        .iter()
        .find(|r| r.kind == KIND && r.customer_id == Some(customer.id))
    {
        let to = recovery::placement_of(&done.steps["to"]).ok();
        return Ok(MoveReport {
            customer: customer.slug.clone(),
            customer_id: customer.id,
            outcome: "aborted",
            dry_run: false,
            online: false,
            method: None,
            from: engines.view(&customer.placement),
            to: to.map(|to| engines.view(&to)),
            tables: Vec::new(),
            rows: 0,
            size_bytes: 0,
            freeze_ms: None,
            expected_freeze: None,
            duration_ms: 0,
            source_kept: None,
        });
    }
    let running = operations::list(catalog.conn())?
        .into_iter()
        .any(|op| op.kind == KIND && op.customer_id == Some(customer.id));
    if running {
        return Err(Error::refused(format!(
            "a running tenantctl is moving customer {}; stop it first (its move is undone then)",
            customer.slug
        )));
    }
    if moves::of_customer(catalog.conn(), customer.id)?.is_some() {
        return Err(Error::refused(format!(
            "the move of customer {} is complete: it lives on server {} now",
            customer.slug, customer.placement.server
        ))
        .with_hint(format!(
            "to go back, finish it (tenantctl customer move {} --finish) and move it again",
            customer.slug
        )));
    }
    Err(Error::refused(format!(
        "no move of customer {} is under way",
        customer.slug
    )))
}

/// A customer's move as `customer show` tells it: under way (its target), or done
/// with the old copy still kept.
#[derive(Debug, Clone, Serialize)]
pub struct MoveState {
    /// `moving` or `moved`.
    pub state: &'static str,
    pub to: Option<PlacementView>,
    pub source_kept: Option<PlacementView>,
    pub since: String,
}

pub fn state_of(catalog: &Catalog, engines: &Engines, customer_id: i64) -> Result<Option<MoveState>> {
    if let Some(kept) = moves::of_customer(catalog.conn(), customer_id)? {
        return Ok(Some(MoveState {
            state: "moved",
            to: None,
            source_kept: Some(engines.view(&kept.placement)),
            since: kept.moved_at,
        }));
    }
    let moving = operations::list(catalog.conn())?
        .into_iter()
        .find(|op| op.kind == KIND && op.customer_id == Some(customer_id));
    Ok(moving.map(|op| MoveState {
        state: "moving",
        to: recovery::placement_of(&op.steps["to"])
            .ok()
            .map(|to| engines.view(&to)),
        source_kept: None,
        since: op.started_at,
    }))
}
