//! A customer's limits (plan values with per-customer overrides) and usage against them.

use std::path::Path;

use rusqlite::Connection;
use serde::Serialize;

use crate::catalog::model::{Customer, Limits, Plan};
use crate::catalog::{customers, plans, usage};
use crate::error::{Error, Result};
use crate::{files, time};

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

/// One resource measured against its limit, in the limit's unit.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QuotaLine {
    pub resource: String,
    pub used: i64,
    pub limit: i64,
    pub percent: f64,
    pub over: bool,
}

impl QuotaLine {
    fn new(resource: &str, used: i64, limit: i64) -> Self {
        let percent = if limit > 0 {
            (used as f64 * 1000.0 / limit as f64).round() / 10.0
        } else if used > 0 {
            100.0
        } else {
            0.0
        };
        QuotaLine {
            resource: resource.to_string(),
            used,
            limit,
            percent,
            over: used > limit,
        }
    }
}

/// What a customer uses now: sites, storage (measured from the tenant database file),
/// and this month's bandwidth and API calls.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub sites: i64,
    pub storage_bytes: u64,
    pub bandwidth_mb: i64,
    pub api_calls: i64,
}

pub fn measure(conn: &Connection, customer: &Customer) -> Result<Usage> {
    let month = time::current_month();
    Ok(Usage {
        sites: customers::site_count(conn, customer.id)?,
        storage_bytes: files::database_size(Path::new(&customer.db_path)),
        bandwidth_mb: usage::amount(conn, customer.id, "bandwidth_mb", &month)?,
        api_calls: usage::amount(conn, customer.id, "api_calls", &month)?,
    })
}

pub fn lines(used: &Usage, limits: &EffectiveLimits) -> Vec<QuotaLine> {
    let storage_mb = used.storage_bytes.div_ceil(1024 * 1024) as i64;
    vec![
        QuotaLine::new("sites", used.sites, limits.max_sites),
        QuotaLine::new("storage_mb", storage_mb, limits.max_storage_mb),
        QuotaLine::new(
            "bandwidth_mb",
            used.bandwidth_mb,
            limits.max_bandwidth_gb.saturating_mul(1024),
        ),
        QuotaLine::new("api_calls", used.api_calls, limits.max_api_calls),
    ]
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
            storage_bytes: 1024 * 1024 + 1,
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
        assert_eq!(lines[1].used, 2);
        assert_eq!(lines[2].limit, 1024);
        assert_eq!(lines[2].percent, 50.0);
        assert!(!lines[3].over);
        assert_eq!(lines[3].percent, 0.0);
    }
}
