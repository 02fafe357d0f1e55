//! A customer's limits (plan values with per-customer overrides) and usage against them.

use rusqlite::Connection;
use serde::Serialize;

use crate::catalog::model::{Customer, Limits, Plan};
use crate::catalog::{customers, plans, usage};
use crate::engine::Engines;
use crate::error::{Error, Result};
use crate::time;

/// The limits in force for a customer.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct EffectiveLimits {
    pub max_sites: i64,
    pub max_storage_mb: i64,
    pub max_bandwidth_gb: i64,
    pub max_api_calls: i64,
}

pub fn effective(plan: &Plan, overrides: Limits) -> EffectiveLimits {
    EffectiveLimits {
        max_sites: overrides.max_sites.unwrap_or(plan.max_sites),
        max_storage_mb: overrides.max_storage_mb.unwrap_or(plan.max_storage_mb),
        max_bandwidth_gb: overrides.max_bandwidth_gb.unwrap_or(plan.max_bandwidth_gb),
        max_api_calls: overrides.max_api_calls.unwrap_or(plan.max_api_calls),
    }
}

const MIB: u64 = 1024 * 1024;

/// One resource measured against its limit. `used` is in the limit's unit: a count,
/// or for storage decimal MiB (2 places) with the exact bytes in `used_bytes`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QuotaLine {
    pub resource: String,
    pub used: serde_json::Number,
    /// Exact bytes for `storage_mb`; null for the other resources.
    pub used_bytes: Option<u64>,
    pub limit: i64,
    pub percent: f64,
    pub over: bool,
    /// The exact fraction of the limit in use (1.0 = at the limit), which decisions
    /// use; `percent` is rounded for people.
    #[serde(skip)]
    pub share: f64,
}

impl QuotaLine {
    /// A counted resource: sites, bandwidth MB, API calls.
    fn count(resource: &str, used: i64, limit: i64) -> Self {
        Self::measured(resource, used.into(), None, used as f64, limit as f64, limit)
    }

    /// Storage: exact bytes against `limit_mb` × 1 MiB, never rounded before comparing.
    fn storage(storage: Storage, limit_mb: i64) -> Self {
        let used = serde_json::Number::from_f64(storage.used_mb).unwrap_or_else(|| 0.into());
        let limit_bytes = limit_mb.max(0) as f64 * MIB as f64;
        Self::measured(
            "storage_mb",
            used,
            Some(storage.used_bytes),
            storage.used_bytes as f64,
            limit_bytes,
            limit_mb,
        )
    }

    fn measured(
        resource: &str,
        used: serde_json::Number,
        used_bytes: Option<u64>,
        exact_used: f64,
        exact_limit: f64,
        limit: i64,
    ) -> Self {
        let share = if exact_limit > 0.0 {
            exact_used / exact_limit
        } else if exact_used > 0.0 {
            1.0
        } else {
            0.0
        };
        let over = exact_used > exact_limit;
        let mut percent = (share * 1000.0).round() / 10.0;
        // 99.96 % must not read as a full quota.
        if percent >= 100.0 && share < 1.0 {
            percent = 99.9;
        }
        QuotaLine {
            resource: resource.to_string(),
            used,
            used_bytes,
            limit,
            percent,
            over,
            share,
        }
    }
}

/// A tenant's storage: exact bytes on disk (side files included) and the same in
/// decimal MiB. The one figure every command reports.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Storage {
    pub used_bytes: u64,
    pub used_mb: f64,
}

impl Storage {
    pub fn of_bytes(used_bytes: u64) -> Self {
        Storage {
            used_bytes,
            used_mb: (used_bytes as f64 * 100.0 / MIB as f64).round() / 100.0,
        }
    }

    /// Measured now from the customer's tenant database (0 when its server does not
    /// answer); one `engines` for many customers asks each server on one connection.
    pub fn of(engines: &Engines, customer: &Customer) -> Result<Self> {
        let tenant = engines.tenant(&customer.placement)?;
        Ok(Self::of_bytes(tenant.size_bytes()))
    }
}

/// What a customer uses now: sites, storage (measured from the tenant database file),
/// and this month's bandwidth and API calls.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub sites: i64,
    pub storage: Storage,
    pub bandwidth_mb: i64,
    pub api_calls: i64,
}

pub fn measure(conn: &Connection, engines: &Engines, customer: &Customer) -> Result<Usage> {
    let month = time::current_month();
    Ok(Usage {
        sites: customers::site_count(conn, customer.id)?,
        storage: Storage::of(engines, customer)?,
        bandwidth_mb: usage::amount(conn, customer.id, "bandwidth_mb", &month)?,
        api_calls: usage::amount(conn, customer.id, "api_calls", &month)?,
    })
}

pub fn lines(used: &Usage, limits: &EffectiveLimits) -> Vec<QuotaLine> {
    vec![
        QuotaLine::count("sites", used.sites, limits.max_sites),
        QuotaLine::storage(used.storage, limits.max_storage_mb),
        QuotaLine::count(
            "bandwidth_mb",
            used.bandwidth_mb,
            limits.max_bandwidth_gb.saturating_mul(1024),
        ),
        QuotaLine::count("api_calls", used.api_calls, limits.max_api_calls),
    ]
}

/// Resources over a limit that going from `before` to `after` lowers, as
/// `resource used > limit`: what a plan or quota change must not do unforced.
pub fn breaches(
    conn: &Connection,
    customer: &Customer,
    before: &EffectiveLimits,
    after: &EffectiveLimits,
) -> Result<Vec<String>> {
    if after == before {
        return Ok(Vec::new());
    }
    let used = measure(conn, &Engines::of_catalog(conn), customer)?;
    Ok(lines(&used, after)
        .into_iter()
        .zip(lines(&used, before))
        .filter(|(new, old)| new.over && new.limit < old.limit)
        .map(|(new, _)| format!("{} {} > {}", new.resource, new.used, new.limit))
        .collect())
}

pub fn plan_of(conn: &Connection, customer: &Customer) -> Result<Plan> {
    plans::get(conn, &customer.plan)?.ok_or_else(|| {
        Error::unexpected(format!(
            "customer {} has unknown plan '{}'",
            customer.slug, customer.plan
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_convert_units_and_flag_overage() {
        let used = Usage {
            sites: 4,
            storage: Storage::of_bytes(1024 * 1024 + 1),
            bandwidth_mb: 512,
            api_calls: 0,
        };
        let limits = EffectiveLimits {
            max_sites: 3,
            max_storage_mb: 10,
            max_bandwidth_gb: 1,
            max_api_calls: 0,
        };
        let lines = lines(&used, &limits);
        assert!(lines[0].over);
        assert_eq!(lines[1].used.as_f64(), Some(1.0));
        assert_eq!(lines[1].used_bytes, Some(1024 * 1024 + 1));
        assert!(!lines[1].over);
        assert_eq!(lines[2].limit, 1024);
        assert_eq!(lines[2].percent, 50.0);
        assert!(!lines[3].over);
        assert_eq!(lines[3].percent, 0.0);
    }

    #[test]
    fn storage_compares_exact_bytes_with_the_limit() {
        let limits = |mb| EffectiveLimits {
            max_sites: 1,
            max_storage_mb: mb,
            max_bandwidth_gb: 1,
            max_api_calls: 1,
        };
        let storage = |bytes, mb| {
            let used = Usage {
                sites: 0,
                storage: Storage::of_bytes(bytes),
                bandwidth_mb: 0,
                api_calls: 0,
            };
            lines(&used, &limits(mb)).swap_remove(1)
        };
        let small = storage(48 * 1024, 1);
        assert_eq!((small.percent, small.over), (4.7, false));
        assert_eq!(small.used.as_f64(), Some(0.05));
        let mid = storage(2_453_667, 3);
        assert_eq!((mid.percent, mid.over), (78.0, false));
        let almost = storage(MIB - 100, 1);
        assert_eq!((almost.percent, almost.over), (99.9, false));
        let full = storage(MIB, 1);
        assert_eq!((full.percent, full.over, full.share), (100.0, false, 1.0));
        assert!(storage(MIB + 1, 1).over);
        assert!(storage(1, 0).over);
    }
}
