//! Plans: the built-in starter/pro/enterprise and any the operator adds.

use serde_json::json;

use rusqlite::Connection;

use super::{Actor, quota};
use crate::catalog::customers::{self, CustomerFilter};
use crate::catalog::model::{NewAuditEvent, Plan};
use crate::catalog::states::CustomerStatus;
use crate::catalog::{Catalog, plans};
use crate::error::{Error, Result};
use crate::validate;

pub fn list(catalog: &Catalog) -> Result<Vec<Plan>> {
    plans::list(catalog.conn())
}

/// New quota values for a plan; `None` keeps the current one.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanValues {
    pub max_sites: Option<i64>,
    pub max_storage_mb: Option<i64>,
    pub max_bandwidth_gb: Option<i64>,
    pub max_api_calls: Option<i64>,
}

/// A plan as saved, and the customers a forced change put over quota.
#[derive(Debug, Clone)]
pub struct PlanChange {
    pub plan: Plan,
    /// `slug: resource used > limit`, one entry per customer and resource.
    pub over_quota: Vec<String>,
}

/// Creates a plan (every value required) or changes an existing one. A change that
/// would put customers on the plan over a quota it lowers is refused (exit 5) unless
/// `force`, as `customer update --plan` is.
pub fn set(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    name: &str,
    values: PlanValues,
    force: bool,
) -> Result<PlanChange> {
    let name = validate::plan_name(name)?;
    let current = plans::get(catalog.conn(), name)?;
    let pick = |new: Option<i64>, old: Option<i64>, flag: &str| -> Result<i64> {
        new.or(old).ok_or_else(|| {
            Error::usage(format!("new plan '{name}' needs {flag}")).with_hint(
                "a new plan needs --max-sites, --max-storage-mb, --max-bandwidth-gb and --max-api-calls",
            )
        })
    };
    let plan = Plan {
        name: name.to_string(),
        max_sites: pick(
            values.max_sites,
            current.as_ref().map(|p| p.max_sites),
            "--max-sites",
        )?,
        max_storage_mb: pick(
            values.max_storage_mb,
            current.as_ref().map(|p| p.max_storage_mb),
            "--max-storage-mb",
        )?,
        max_bandwidth_gb: pick(
            values.max_bandwidth_gb,
            current.as_ref().map(|p| p.max_bandwidth_gb),
            "--max-bandwidth-gb",
        )?,
        max_api_calls: pick(
            values.max_api_calls,
            current.as_ref().map(|p| p.max_api_calls),
            "--max-api-calls",
        )?,
        builtin: false,
        customers: 0,
        created_at: String::new(),
        updated_at: String::new(),
    };
    let unchanged = current.as_ref().is_some_and(|c| {
        (c.max_sites, c.max_storage_mb, c.max_bandwidth_gb, c.max_api_calls)
            == (
                plan.max_sites,
                plan.max_storage_mb,
                plan.max_bandwidth_gb,
                plan.max_api_calls,
            )
    });
    if unchanged {
        return Ok(PlanChange {
            plan: current.unwrap_or(plan),
            over_quota: Vec::new(),
        });
    }
    catalog.write_audited(actor.name, |tx| {
        let (change, event) = save(tx, current.as_ref(), &plan, force, None)?;
        Ok((change, [event]))
    })
}

/// Writes a plan's values and returns the audit event describing the change, refusing
/// (exit 5, unless `force`) a change that puts customers over quota. Runs inside the
/// caller's transaction, so no customer changes between the check and the write.
/// `source` names a command other than `plan set` (`import`) in the audit event.
pub(crate) fn save(
    tx: &Connection,
    current: Option<&Plan>,
    plan: &Plan,
    force: bool,
    source: Option<&str>,
) -> Result<(PlanChange, NewAuditEvent)> {
    let name = &plan.name;
    let over_quota = match current {
        Some(old) => customers_put_over(tx, old, plan)?,
        None => Vec::new(),
    };
    if !over_quota.is_empty() && !force {
        return Err(Error::quota(format!(
            "the change to plan {name} would put customers over quota: {}",
            over_quota.join(", ")
        ))
        .with_hint("lower their usage or move them to another plan first, or pass --force"));
    }
    let saved = plans::upsert(tx, plan)?;
    let from = current.map(|c| {
        json!({"max_sites": c.max_sites, "max_storage_mb": c.max_storage_mb,
               "max_bandwidth_gb": c.max_bandwidth_gb, "max_api_calls": c.max_api_calls})
    });
    let mut details = json!({"from": from, "to": {"max_sites": saved.max_sites, "max_storage_mb": saved.max_storage_mb,
        "max_bandwidth_gb": saved.max_bandwidth_gb, "max_api_calls": saved.max_api_calls},
        "forced_over_quota": over_quota});
    if let Some(source) = source {
        details["source"] = json!(source);
    }
    let action = if current.is_some() {
        "plan.update"
    } else {
        "plan.create"
    };
    let event = NewAuditEvent::new(action, "plan", saved.name.clone(), None, details);
    let change = PlanChange {
        plan: saved,
        over_quota,
    };
    Ok((change, event))
}

/// The customers on `old` (deleted ones aside) whom `new` puts over a quota it lowers;
/// their own overrides still apply.
pub(crate) fn customers_put_over(conn: &Connection, old: &Plan, new: &Plan) -> Result<Vec<String>> {
    let on_plan = customers::list(
        conn,
        &CustomerFilter {
            plan: Some(old.name.clone()),
            ..Default::default()
        },
    )?;
    let mut over = Vec::new();
    for customer in on_plan.iter().filter(|c| c.status != CustomerStatus::Deleted) {
        let before = quota::effective(old, customer.overrides());
        let after = quota::effective(new, customer.overrides());
        for breach in quota::breaches(conn, customer, &before, &after)? {
            over.push(format!("{}: {breach}", customer.slug));
        }
    }
    Ok(over)
}
