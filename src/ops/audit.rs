//! Reading the audit log.

use super::customers;
use crate::catalog::Catalog;
use crate::catalog::audit::{self, AuditFilter};
use crate::catalog::model::AuditEvent;
use crate::error::Result;
use crate::time;

#[derive(Debug, Clone, Default)]
pub struct ListAudit {
    pub customer: Option<String>,
    pub action: Option<String>,
    pub since: Option<String>,
    pub limit: Option<u64>,
}

pub fn list(catalog: &Catalog, request: &ListAudit) -> Result<Vec<AuditEvent>> {
    let customer_id = match &request.customer {
        // A purged customer's events stay findable by id.
        Some(r) if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) => r.parse().ok(),
        Some(reference) => match customers::resolve(catalog.conn(), reference) {
            Ok(customer) => Some(customer.id),
            // A purged customer is gone from the catalog but not from its audit trail.
            Err(err) => Some(audit::customer_id_in_trail(catalog.conn(), reference)?.ok_or(err)?),
        },
        None => None,
    };
    let since = time::parse_since(request.since.as_deref())?;
    audit::list(
        catalog.conn(),
        &AuditFilter {
            customer_id,
            action: request.action.clone(),
            since,
            limit: request.limit,
        },
    )
}
