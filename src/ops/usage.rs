//! Metered usage, quotas against it, and platform statistics.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use super::{Actor, Reported, customers, quota};
use crate::catalog::customers::CountColumn;
use crate::catalog::model::{Customer, NewAuditEvent};
use crate::catalog::states::CustomerStatus;
use crate::catalog::{Catalog, usage};
use crate::engine::Engines;
use crate::error::{Error, Result};
use crate::{time, validate};

/// Metrics recorded by `usage record`; `storage_mb` is measured, never recorded.
pub const METRICS: &[&str] = &["bandwidth_mb", "api_calls"];

/// A month as `YYYY-MM`; exit 2 otherwise.
pub fn check_month(text: &str) -> Result<String> {
    let valid = text.len() == 7
        && chrono::NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").is_ok()
        && text.as_bytes()[4] == b'-';
    if valid {
        Ok(text.to_string())
    } else {
        Err(
            Error::usage(format!("invalid month '{}'", validate::printable(text)))
                .with_hint("use YYYY-MM, such as 2026-11"),
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub customer: String,
    pub metric: String,
    pub month: String,
    pub amount: i64,
    pub month_total: i64,
}

pub fn record(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: &str,
    metric: &str,
    amount: u64,
    at: Option<&str>,
) -> Result<Recorded> {
    if !METRICS.contains(&metric) {
        return Err(
            Error::usage(format!("unknown metric '{}'", validate::printable(metric)))
                .with_hint("record bandwidth_mb or api_calls; storage is measured from the tenant database"),
        );
    }
    let amount = i64::try_from(amount).map_err(|_| Error::usage("the amount is too large"))?;
    let moment = at
        .map(time::parse_moment)
        .transpose()?
        .unwrap_or_else(chrono::Utc::now);
    let month = moment.format("%Y-%m").to_string();
    catalog.write_audited(actor.name, |tx| {
        let customer = customers::resolve(tx, reference)?;
        if customer.status == CustomerStatus::Deleted {
            return Err(Error::refused(format!("customer {} is deleted", customer.slug)));
        }
        let total = usage::add(tx, customer.id, metric, &month, amount, &time::now())?;
        let event = NewAuditEvent::new(
            "usage.record",
            "usage",
            format!("{}/{metric}/{month}", customer.slug),
            Some(customer.id),
            json!({"metric": metric, "amount": amount, "month": month}),
        );
        let recorded = Recorded {
            customer: customer.slug,
            metric: metric.to_string(),
            month,
            amount,
            month_total: total,
        };
        Ok((recorded, [event]))
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct UsageLine {
    pub customer: String,
    pub month: String,
    pub bandwidth_mb: i64,
    pub api_calls: i64,
    /// Measured now from the tenant database file, in decimal MiB.
    pub storage_mb: f64,
    pub storage_bytes: u64,
}

fn chosen(catalog: &Catalog, reference: Option<&str>) -> Result<Vec<Customer>> {
    match reference {
        Some(r) => Ok(vec![customers::resolve(catalog.conn(), r)?]),
        None => Ok(
            crate::catalog::customers::list(catalog.conn(), &Default::default())?
                .into_iter()
                .filter(|c| c.status != CustomerStatus::Deleted)
                .collect(),
        ),
    }
}

pub fn report(catalog: &Catalog, reference: Option<&str>, month: Option<&str>) -> Result<Vec<UsageLine>> {
    let month = month
        .map(check_month)
        .transpose()?
        .unwrap_or_else(time::current_month);
    let engines = Engines::of_catalog(catalog.conn());
    chosen(catalog, reference)?
        .into_iter()
        .map(|c| {
            let storage = quota::Storage::of(&engines, &c)?;
            Ok(UsageLine {
                bandwidth_mb: usage::amount(catalog.conn(), c.id, "bandwidth_mb", &month)?,
                api_calls: usage::amount(catalog.conn(), c.id, "api_calls", &month)?,
                storage_mb: storage.used_mb,
                storage_bytes: storage.used_bytes,
                customer: c.slug,
                month: month.clone(),
            })
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct QuotaRow {
    pub customer: String,
    pub plan: String,
    pub resource: String,
    pub used: serde_json::Number,
    /// Exact bytes for `storage_mb`; null for the other resources.
    pub used_bytes: Option<u64>,
    pub limit: i64,
    pub percent: f64,
    pub over: bool,
}

/// Usage against the effective limits, per customer and resource; any row over its
/// limit makes the outcome fail with exit 5, naming each one. A customer whose server
/// did not answer has its storage shown as unknown (`used_bytes` null) and makes the
/// outcome partial, exit 8, unless something is over quota.
pub fn check(catalog: &Catalog, reference: Option<&str>) -> Result<Reported<Vec<QuotaRow>>> {
    let mut rows = Vec::new();
    let mut unmeasured = Vec::new();
    let engines = Engines::of_catalog(catalog.conn());
    for customer in chosen(catalog, reference)? {
        let plan = quota::plan_of(catalog.conn(), &customer)?;
        let limits = quota::effective(&plan, customer.overrides());
        let down = engines.tenant(&customer.placement)?.measured_bytes().err();
        let used = quota::measure(catalog.conn(), &engines, &customer)?;
        let rows_before = rows.len();
        for line in quota::lines(&used, &limits) {
            rows.push(QuotaRow {
                customer: customer.slug.clone(),
                plan: customer.plan.clone(),
                resource: line.resource,
                used: line.used,
                used_bytes: line.used_bytes,
                limit: line.limit,
                percent: line.percent,
                over: line.over,
            });
        }
        if let Some(err) = down {
            for row in rows[rows_before..]
                .iter_mut()
                .filter(|r| r.resource == "storage_mb")
            {
                row.used_bytes = None;
            }
            unmeasured.push(format!("{}: {err}", customer.slug));
        }
    }
    let over: Vec<String> = rows
        .iter()
        .filter(|r| r.over)
        .map(|r| format!("{} {}", r.customer, r.resource))
        .collect();
    let failure = if !over.is_empty() {
        Some(Error::quota(format!("over quota: {}", over.join(", "))))
    } else {
        unmeasured_failure(&unmeasured)
    };
    Ok(Reported::new(rows, failure))
}

#[derive(Debug, Clone, Serialize)]
pub struct Enforcement {
    pub customer: String,
    pub resource: String,
    /// Decimal MiB.
    pub used: serde_json::Number,
    pub used_bytes: Option<u64>,
    pub limit: i64,
    pub percent: f64,
    pub action: EnforcementAction,
}

crate::words::word_enum! {
    /// What `quota enforce` did about a customer near or over its storage limit.
    pub enum EnforcementAction ("enforcement action") {
        Warned = "warned",
        Suspended = "suspended",
        /// With --dry-run, instead of `suspended`.
        WouldSuspend = "would_suspend",
        /// Its server did not answer: neither warned nor suspended, and exit 8.
        Unmeasured = "unmeasured",
    }
}

/// Percent of the storage limit at which `quota enforce` warns, and suspends.
pub const WARN_PERCENT: f64 = 80.0;
pub const SUSPEND_PERCENT: f64 = 100.0;

/// For cron: warns about active customers at 80 % of their storage limit and suspends
/// those at 100 %, recording why. Suspended customers are left alone, so a second run
/// changes nothing.
pub fn enforce(catalog: &mut Catalog, actor: Actor<'_>, dry_run: bool) -> Result<Reported<Vec<Enforcement>>> {
    let mut actions = Vec::new();
    let active: Vec<Customer> = chosen(catalog, None)?
        .into_iter()
        .filter(|c| c.status == CustomerStatus::Active)
        .collect();
    let engines = Engines::of_catalog(catalog.conn());
    let mut unmeasured = Vec::new();
    for customer in active {
        let plan = quota::plan_of(catalog.conn(), &customer)?;
        let limits = quota::effective(&plan, customer.overrides());
        if let Err(err) = engines.tenant(&customer.placement)?.measured_bytes() {
            unmeasured.push(format!("{}: {err}", customer.slug));
            actions.push(Enforcement {
                customer: customer.slug,
                resource: "storage_mb".to_string(),
                used: serde_json::Number::from(0),
                used_bytes: None,
                limit: limits.max_storage_mb,
                percent: 0.0,
                action: EnforcementAction::Unmeasured,
            });
            continue;
        }
        let used = quota::measure(catalog.conn(), &engines, &customer)?;
        let Some(storage) = quota::lines(&used, &limits)
            .into_iter()
            .find(|l| l.resource == "storage_mb")
        else {
            continue;
        };
        // The exact share decides, never the rounded percent shown.
        let percent_used = storage.share * 100.0;
        if percent_used < WARN_PERCENT {
            continue;
        }
        let suspend = percent_used >= SUSPEND_PERCENT;
        let action = match (suspend, dry_run) {
            (false, _) => EnforcementAction::Warned,
            (true, true) => EnforcementAction::WouldSuspend,
            (true, false) => EnforcementAction::Suspended,
        };
        if suspend && !dry_run {
            let reason = format!(
                "storage quota exceeded: {} of {} MB ({} %)",
                storage.used, storage.limit, storage.percent
            );
            catalog.write_with_files_audited(
                actor.name,
                |tx| {
                    let current = customers::resolve(tx, &customer.id.to_string())?;
                    if current.status != CustomerStatus::Active {
                        return Ok((None, None));
                    }
                    crate::catalog::customers::set_status(
                        tx,
                        current.id,
                        CustomerStatus::Suspended,
                        Some(&reason),
                    )?;
                    let event = NewAuditEvent::customer(
                        "customer.suspend",
                        &current,
                        json!({"reason": reason, "source": "quota enforce"}),
                    );
                    Ok((Some(current), Some(event)))
                },
                |suspended| match suspended {
                    Some(current) => customers::set_login(actor, current, false),
                    None => Ok(()),
                },
                |suspended| {
                    if let Some(current) = suspended {
                        let _ = customers::set_login(actor, current, true);
                    }
                },
            )?;
        }
        actions.push(Enforcement {
            customer: customer.slug,
            resource: storage.resource,
            used: storage.used,
            used_bytes: storage.used_bytes,
            limit: storage.limit,
            percent: storage.percent,
            action,
        });
    }
    Ok(Reported::new(actions, unmeasured_failure(&unmeasured)))
}

/// Exit 8 naming the customers (`slug: why`) whose storage could not be measured
/// because their servers did not answer.
fn unmeasured_failure(unmeasured: &[String]) -> Option<Error> {
    (!unmeasured.is_empty()).then(|| {
        Error::partial(format!(
            "the storage of {} customers could not be measured: {}",
            unmeasured.len(),
            unmeasured.join("; ")
        ))
        .with_hint("their servers did not answer; run 'tenantctl server test', then again")
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub customers: Groups,
    pub customers_by_plan: BTreeMap<String, i64>,
    /// Customers on each server (`local` is the home's own folder).
    pub customers_by_server: BTreeMap<String, i64>,
    pub sites: Groups,
    pub deployments_last_30_days: i64,
    pub storage_bytes: u64,
    pub usage_this_month: BTreeMap<String, i64>,
    pub top_customers_by_storage: Vec<StorageRank>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Groups {
    pub total: i64,
    pub by_status: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StorageRank {
    pub customer: String,
    pub plan: String,
    pub storage_bytes: u64,
}

pub fn stats(catalog: &Catalog) -> Result<Stats> {
    let conn = catalog.conn();
    let groups = |pairs: Vec<(String, i64)>| Groups {
        total: pairs.iter().map(|(_, n)| n).sum(),
        by_status: pairs.into_iter().collect(),
    };
    let month = time::current_month();
    let engines = Engines::of_catalog(conn);
    let mut ranks: Vec<StorageRank> = chosen(catalog, None)?
        .into_iter()
        .map(|c| {
            Ok(StorageRank {
                storage_bytes: quota::Storage::of(&engines, &c)?.used_bytes,
                customer: c.slug,
                plan: c.plan,
            })
        })
        .collect::<Result<_>>()?;
    ranks.sort_by(|a, b| {
        b.storage_bytes
            .cmp(&a.storage_bytes)
            .then(a.customer.cmp(&b.customer))
    });
    let storage_bytes = ranks.iter().map(|r| r.storage_bytes).sum();
    ranks.truncate(10);
    Ok(Stats {
        customers: groups(crate::catalog::customers::count_by(conn, CountColumn::Status)?),
        customers_by_plan: crate::catalog::customers::count_by(conn, CountColumn::Plan)?
            .into_iter()
            .collect(),
        customers_by_server: crate::catalog::customers::count_by(conn, CountColumn::Server)?
            .into_iter()
            .collect(),
        sites: groups(crate::catalog::customers::site_count_by_status(conn)?),
        deployments_last_30_days: usage::deployments_since(
            conn,
            &time::format(chrono::Utc::now() - chrono::Duration::days(30)),
        )?,
        storage_bytes,
        usage_this_month: METRICS
            .iter()
            .map(|m| Ok((m.to_string(), usage::total(conn, m, &month)?)))
            .collect::<Result<BTreeMap<_, _>>>()?,
        top_customers_by_storage: ranks,
    })
}

#[cfg(test)]
mod tests {
    use super::check_month;

    #[test]
    fn months_are_year_dash_month() {
        assert!(check_month("2026-11").is_ok());
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "november", ""] {
            assert!(check_month(bad).is_err(), "{bad}");
        }
    }
}
