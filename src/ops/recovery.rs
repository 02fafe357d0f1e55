//! Finishing or undoing what a killed command left half done. Every command that
//! changes files as well as catalog rows records its intent in the operation ledger
//! first ([`crate::catalog::operations`]); a ledger row whose owner lock is free
//! belongs to a run that died. What is done with it depends on how far a run of that
//! kind gets before its result is decided:
//!
//! - `customer.create`: undone. The customer never became visible; its row, its
//!   published or staged database go, so the same create can simply run again.
//! - `import`: finished. Its transaction already changed plans, sites and existing
//!   customers, which cannot be taken back, so the new customers' databases are put
//!   in place and the customers made visible.
//! - `customer.delete` / `customer.undelete`: finished. The row already says where
//!   the database belongs; it is moved there.
//! - `customer.purge`: finished. The database is removed, then the row.
//! - `restore.swap`: finished. The restored copies were checked and the pre-restore
//!   set written before it was recorded; each swap is taken to its end from whatever
//!   step it reached, and the tenants' migrations are read from what is now live.
//! - `customer.move`: undone. Until its flip the tenant lives at the source; the
//!   target and staging copies go and the source's login is let in again.

use serde::Deserialize as _;
use serde_json::{Value, json};

use crate::catalog::Catalog;
use crate::catalog::customers;
use crate::catalog::operations::{self, Operation};
use crate::catalog::states::CustomerStatus;
use crate::engine::{Engines, Placement, Provisioned};
use crate::error::{Error, Result};
use crate::home::Home;
use crate::lock;

pub const CREATE: &str = "customer.create";
pub const IMPORT: &str = "import";
pub const DELETE: &str = "customer.delete";
pub const UNDELETE: &str = "customer.undelete";
pub const PURGE: &str = "customer.purge";
pub const SWAP: &str = "restore.swap";

/// One half-done operation and what was done about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    pub kind: String,
    pub subject: String,
    pub customer_id: Option<i64>,
    /// What the operation had recorded it would do.
    pub steps: Value,
    /// `finished` or `undone`.
    pub outcome: &'static str,
}

impl Recovered {
    /// The one line a command prints about it.
    pub fn line(&self) -> String {
        format!(
            "{} an interrupted {} of '{}' left by a killed run",
            self.outcome, self.kind, self.subject
        )
    }
}

/// The open operations whose command is gone.
pub fn abandoned(catalog: &Catalog, home: &Home) -> Result<Vec<Operation>> {
    if !operations::any_open(catalog.conn())? {
        return Ok(Vec::new());
    }
    let run_dir = home.run_dir();
    Ok(operations::list(catalog.conn())?
        .into_iter()
        .filter(|op| !lock::owner_alive(&run_dir, &op.owner))
        .collect())
}

/// Finishes or undoes every abandoned operation; what a live command is doing is left
/// to it. The first that cannot be resolved stops the rest with its error. Then the
/// lock files of commands killed before they recorded anything go too.
pub fn finish_abandoned(catalog: &mut Catalog, home: &Home) -> Result<Vec<Recovered>> {
    let engines = Engines::new(home);
    let mut done = Vec::new();
    for listed in abandoned(catalog, home)? {
        // A lock file that is gone may also mean its command finished and closed the
        // operation after it was listed: only what is still open is left over.
        let Some(op) = operations::get(catalog.conn(), listed.id)? else {
            continue;
        };
        let outcome = resolve(catalog, &engines, &op)?;
        if lock::is_token(&op.owner) {
            let _ = std::fs::remove_file(home.run_dir().join(format!("{}.lock", op.owner)));
        }
        done.push(Recovered {
            kind: op.kind,
            subject: op.subject,
            customer_id: op.customer_id,
            steps: op.steps,
            outcome,
        });
    }
    // Commands killed before they recorded anything leave only their staging and
    // their lock: both go, now that nobody can be using them.
    let run_dir = home.run_dir();
    lock::remove_unmade(&run_dir);
    let dead = lock::dead_owner_tokens(&run_dir);
    if !dead.is_empty() {
        engines.default_engine().sweep_abandoned(&dead)?;
        // A server that cannot be reached now keeps its leftovers, and the dead
        // owners' locks stay so that a later command sweeps it again.
        let mut swept_everywhere = true;
        for server in engines.database_servers()? {
            swept_everywhere &= server.sweep_abandoned(&dead).is_ok();
        }
        if swept_everywhere {
            for token in &dead {
                lock::remove_dead_owner_lock(&run_dir, token);
            }
        }
    }
    Ok(done)
}

/// Finishes or undoes one operation whose owner is gone: `finished` or `undone`.
pub fn resolve(catalog: &mut Catalog, engines: &Engines, op: &Operation) -> Result<&'static str> {
    match op.kind.as_str() {
        CREATE => undo_create(catalog, engines, op),
        IMPORT => finish_import(catalog, engines, op.id, &ImportSteps::of(&op.steps)?),
        DELETE | UNDELETE => finish_move(catalog, engines, op),
        PURGE => finish_purge(catalog, engines, op),
        SWAP => finish_swaps(catalog, engines, op),
        crate::ops::moves::KIND => crate::ops::moves::undo_abandoned(catalog, engines, op),
        other => Err(Error::unexpected(format!(
            "the operation ledger holds an operation of unknown kind '{other}' (id {})",
            op.id
        ))
        .with_hint("a newer tenantctl may have written it; upgrade")),
    }
}

/// The placement recorded in a ledger step, as [`placement_json`] wrote it.
pub fn placement_of(step: &Value) -> Result<Placement> {
    let text = |key: &str| step.get(key).and_then(Value::as_str).map(str::to_string);
    match (
        text("engine").and_then(|e| crate::engine::EngineKind::parse(&e)),
        text("server"),
        text("location"),
    ) {
        (Some(engine), Some(server), Some(location)) => Ok(Placement {
            engine,
            server,
            location,
        }),
        _ => Err(Error::unexpected(format!(
            "a ledger step names no placement: {step}"
        ))),
    }
}

pub fn placement_json(placement: &Placement) -> Value {
    json!({"engine": placement.engine, "server": placement.server, "location": placement.location})
}

/// A staged database named in a ledger step, as the engine's own staging name.
fn staged(step: &Value) -> Option<Provisioned> {
    step.get("staging")
        .and_then(Value::as_str)
        .map(Provisioned::staged)
}

fn undo_create(catalog: &mut Catalog, engines: &Engines, op: &Operation) -> Result<&'static str> {
    let placement = placement_of(&op.steps["placement"])?;
    let engine = engines.engine(&placement)?;
    if let Some(id) = op.customer_id {
        // The slug was the provisioning row's alone, so whatever sits at its
        // placement is this create's database.
        if customers::any_by_id(catalog.conn(), id)?.is_some_and(|c| c.status == CustomerStatus::Provisioning)
        {
            engine.destroy(&placement)?;
        }
    }
    if let Some(staging) = staged(&op.steps) {
        engine.discard(&staging);
    }
    catalog.write(|tx| {
        if let Some(id) = op.customer_id {
            customers::remove_provisioning(tx, id)?;
        }
        operations::close(tx, op.id)
    })?;
    Ok("undone")
}

/// One new customer in an import's ledger: its staged database, where that goes, and
/// the reason to suspend it once in place, when its file said so. Typed rather than
/// JSON: an import of 10,000 customers would otherwise hold 10,000 JSON objects.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ImportStep {
    pub customer_id: i64,
    pub staging: String,
    #[serde(with = "placement_fields")]
    pub placement: Placement,
    pub suspend: Option<String>,
}

/// A placement in a ledger: its three fields, as [`placement_json`] writes them
/// (its own `Serialize` shows only the location).
mod placement_fields {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::engine::{EngineKind, Placement};

    #[derive(Serialize)]
    struct Fields<'a> {
        engine: EngineKind,
        server: &'a str,
        location: &'a str,
    }

    #[derive(Deserialize)]
    struct Owned {
        engine: EngineKind,
        server: String,
        location: String,
    }

    pub fn serialize<S: Serializer>(placement: &Placement, serializer: S) -> Result<S::Ok, S::Error> {
        Fields {
            engine: placement.engine,
            server: &placement.server,
            location: &placement.location,
        }
        .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Placement, D::Error> {
        let Owned {
            engine,
            server,
            location,
        } = Owned::deserialize(deserializer)?;
        Ok(Placement {
            engine,
            server,
            location,
        })
    }
}

/// The steps of an import's ledger row.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ImportSteps {
    pub customers: Vec<ImportStep>,
}

impl ImportSteps {
    fn of(steps: &Value) -> Result<ImportSteps> {
        ImportSteps::deserialize(steps)
            .map_err(|e| Error::unexpected(format!("an import's ledger steps cannot be read: {e}")))
    }
}

/// Puts every new customer of an import in place and makes it visible (suspended,
/// where its file said so); a customer whose database is gone is removed. Closes the
/// operation. Used by the import itself and for an import a kill interrupted.
pub fn finish_import(
    catalog: &mut Catalog,
    engines: &Engines,
    op: i64,
    steps: &ImportSteps,
) -> Result<&'static str> {
    let mut published = Vec::with_capacity(steps.customers.len());
    for step in &steps.customers {
        let engine = engines.engine(&step.placement)?;
        let in_place = engine.tenant(&step.placement).exists()
            || engine
                .publish(&Provisioned::staged(&step.staging), &step.placement)
                .is_ok();
        published.push((step.customer_id, in_place, step.suspend.as_deref()));
    }
    catalog.write(|tx| {
        for &(id, in_place, suspend) in &published {
            if !in_place {
                // Its database is gone for good: the customer cannot be finished.
                customers::remove_provisioning(tx, id)?;
                continue;
            }
            customers::activate(tx, id)?;
            if let Some(reason) = suspend {
                customers::set_status(tx, id, CustomerStatus::Suspended, Some(reason))?;
            }
        }
        operations::close(tx, op)
    })?;
    Ok("finished")
}

fn finish_move(catalog: &mut Catalog, engines: &Engines, op: &Operation) -> Result<&'static str> {
    let from = placement_of(&op.steps["from"])?;
    let to = placement_of(&op.steps["to"])?;
    let engine = engines.engine(&from)?;
    if engine.tenant(&from).exists() && !engine.tenant(&to).exists() {
        engine.relocate(&from, &to)?;
    }
    catalog.write(|tx| operations::close(tx, op.id))?;
    Ok("finished")
}

fn finish_purge(catalog: &mut Catalog, engines: &Engines, op: &Operation) -> Result<&'static str> {
    let placement = placement_of(&op.steps["placement"])?;
    engines.engine(&placement)?.purge_retired(&placement)?;
    catalog.write(|tx| {
        if let Some(id) = op.customer_id {
            customers::purge(tx, id)?;
        }
        operations::close(tx, op.id)
    })?;
    Ok("finished")
}

/// The steps of a restore's server swaps, one per tenant, as [`finish_swaps`] reads them.
pub fn swap_step(customer_id: Option<i64>, staged: &crate::engine::Staged) -> Value {
    json!({"customer_id": customer_id, "placement": placement_json(&staged.target),
           "staging": staged.staging, "kept_as": staged.kept_as})
}

/// Takes every swap of a killed restore to its end, lets each tenant log in again when
/// its customer is active, and records what each has applied now.
fn finish_swaps(catalog: &mut Catalog, engines: &Engines, op: &Operation) -> Result<&'static str> {
    let empty = Vec::new();
    let mut applied = Vec::new();
    for step in op.steps["tenants"].as_array().unwrap_or(&empty) {
        let placement = placement_of(&step["placement"])?;
        let staged = crate::engine::Staged {
            staging: step["staging"].as_str().unwrap_or_default().to_string(),
            target: placement.clone(),
            applied: Vec::new(),
            kept_as: step["kept_as"].as_str().map(str::to_string),
        };
        let customer = match step["customer_id"].as_i64() {
            Some(id) => customers::any_by_id(catalog.conn(), id)?,
            None => None,
        };
        let login = customer
            .as_ref()
            .is_some_and(|c| c.status == CustomerStatus::Active);
        let tenant = engines.tenant(&placement)?;
        tenant.finish_swap(&staged, login)?;
        if let (Some(customer), Ok(list)) = (customer, tenant.applied()) {
            applied.push((customer.id, list));
        }
    }
    catalog.write(|tx| {
        for (id, list) in &applied {
            let version = list.iter().map(|m| m.version).max().unwrap_or(0);
            crate::catalog::tenants::record_applied(tx, *id, list)?;
            crate::catalog::tenants::record_run(
                tx,
                *id,
                version,
                crate::catalog::states::TenantMigrationStatus::Ok,
                None,
            )?;
        }
        operations::close(tx, op.id)
    })?;
    Ok("finished")
}

/// Where tests kill a command: `TENANTCTL_CRASH_AT=<step>` makes a debug build kill
/// itself with SIGKILL on reaching that step, as an operator's `kill -9` or a power
/// cut would stop it. Release builds compile this to nothing.
#[inline]
pub fn crash_point(step: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("TENANTCTL_CRASH_AT").is_some_and(|at| at == step) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}
