//! Rows of the catalog as the rest of the program sees them. Field names and order
//! are the JSON contract.

use serde::Serialize;
use serde_json::{Map, Value};

use super::states::{CustomerStatus, SiteStatus, SnapshotKind};

use crate::engine::Placement;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plan {
    pub name: String,
    pub max_sites: i64,
    pub max_storage_mb: i64,
    pub max_bandwidth_gb: i64,
    pub max_api_calls: i64,
    pub builtin: bool,
    pub customers: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// Per-customer quota values; in a customer row `None` means "the plan's value".
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Limits {
    pub max_sites: Option<i64>,
    pub max_storage_mb: Option<i64>,
    pub max_bandwidth_gb: Option<i64>,
    pub max_api_calls: Option<i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Customer {
    pub id: i64,
    pub slug: String,
    pub email: String,
    pub name: String,
    pub company_name: Option<String>,
    pub plan: String,
    pub status: CustomerStatus,
    pub status_reason: Option<String>,
    pub max_sites: Option<i64>,
    pub max_storage_mb: Option<i64>,
    pub max_bandwidth_gb: Option<i64>,
    pub max_api_calls: Option<i64>,
    pub metadata: Map<String, Value>,
    /// Shown as `db_path`, the name the JSON has always had for where the data lives.
    #[serde(rename = "db_path")]
    pub placement: Placement,
    pub schema_version: i64,
    pub created_at: String,
    pub updated_at: String,
    pub suspended_at: Option<String>,
    pub deleted_at: Option<String>,
}

impl Customer {
    pub fn overrides(&self) -> Limits {
        Limits {
            max_sites: self.max_sites,
            max_storage_mb: self.max_storage_mb,
            max_bandwidth_gb: self.max_bandwidth_gb,
            max_api_calls: self.max_api_calls,
        }
    }
}

/// What `customer create` inserts.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    /// The id to take: `None` for the next one; an adopted tenant keeps the id its
    /// backups and ledger entries carry.
    pub id: Option<i64>,
    pub slug: String,
    pub email: String,
    pub name: String,
    pub company_name: Option<String>,
    pub plan: String,
    pub metadata: Map<String, Value>,
    pub placement: Placement,
    pub schema_version: i64,
}

/// A customer's site in short, as listed under `customer show`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SiteSummary {
    pub id: i64,
    pub name: String,
    pub domain: String,
    pub port: Option<i64>,
    pub status: SiteStatus,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEvent {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target: String,
    pub customer_id: Option<i64>,
    pub details: Value,
}

/// What an operation writes to the audit log together with its change. The actor is
/// not here: [`Catalog::write_audited`](super::Catalog::write_audited) adds it.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub action: &'static str,
    pub target_type: &'static str,
    pub target: String,
    pub customer_id: Option<i64>,
    pub details: Value,
}

impl NewAuditEvent {
    pub fn new(
        action: &'static str,
        target_type: &'static str,
        target: impl Into<String>,
        customer_id: Option<i64>,
        details: Value,
    ) -> Self {
        Self {
            action,
            target_type,
            target: target.into(),
            customer_id,
            details,
        }
    }

    /// An event about a customer, named by its slug.
    pub fn customer(action: &'static str, customer: &Customer, details: Value) -> Self {
        Self::new(
            action,
            "customer",
            customer.slug.clone(),
            Some(customer.id),
            details,
        )
    }

    /// An event about a site, named by its domain and filed under its customer.
    pub fn site(action: &'static str, site: &Site, details: Value) -> Self {
        Self::new(
            action,
            "site",
            site.domain.clone(),
            Some(site.customer_id),
            details,
        )
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Setting {
    pub key: String,
    pub value: Option<String>,
    pub default: Option<String>,
    pub description: String,
    pub updated_at: Option<String>,
    /// Nothing is stored: `value` is the default (or null when there is none).
    pub is_default: bool,
}

/// A customer's website or app. `config` is kept as the JSON text stored, so big
/// listings stream without re-parsing it.
#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub id: i64,
    pub customer_id: i64,
    pub customer_slug: String,
    pub name: String,
    pub domain: String,
    pub port: Option<i64>,
    pub business_type: Option<String>,
    pub status: SiteStatus,
    pub config: Box<serde_json::value::RawValue>,
    pub created_at: String,
    pub updated_at: String,
    pub deployed_at: Option<String>,
    /// The `siteId` of the legacy config file it was imported from, its identity there.
    pub legacy_id: Option<String>,
}

impl Site {
    /// The config as a JSON value; the catalog stores only valid JSON objects.
    pub fn config_value(&self) -> crate::error::Result<Value> {
        serde_json::from_str(self.config.get()).map_err(|e| {
            crate::error::Error::unexpected(format!(
                "site {} has a config that does not parse: {e}",
                self.domain
            ))
        })
    }
}

/// What `site create` inserts.
#[derive(Debug, Clone)]
pub struct NewSite {
    pub customer_id: i64,
    pub name: String,
    pub domain: String,
    pub port: Option<i64>,
    pub business_type: Option<String>,
    pub status: SiteStatus,
    pub config: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub id: i64,
    pub site_id: i64,
    pub number: i64,
    pub port: Option<i64>,
    pub status: String,
    pub log: String,
    pub actor: String,
    pub created_at: String,
    pub config: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub id: i64,
    pub site_id: i64,
    pub kind: SnapshotKind,
    pub name: Option<String>,
    pub actor: String,
    pub created_at: String,
    pub config: Value,
}
