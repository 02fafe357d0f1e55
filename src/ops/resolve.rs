//! `resolve HOST`: which customer serves a hostname. Indexed lookups only: it sits on
//! request paths.

use serde::Serialize;

use crate::catalog::customers;
use crate::catalog::states::CustomerStatus;
use crate::catalog::{Catalog, settings, sites};
use crate::engine::{Engines, PlacementView};
use crate::error::{Error, Result};
use crate::validate::printable;

#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    pub host: String,
    /// `site_domain` or `platform_subdomain`.
    pub matched_by: String,
    pub customer_id: i64,
    pub customer: String,
    pub customer_status: CustomerStatus,
    pub site_id: Option<i64>,
    pub site_domain: Option<String>,
    pub db_path: String,
    /// Where the tenant lives: engine, server, and path or host, port, database,
    /// schema and role.
    pub placement: PlacementView,
}

/// Lowercased, without a trailing dot or a `:port`.
fn normalise(host: &str) -> String {
    let host = host.trim();
    let host = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

pub fn resolve(catalog: &Catalog, host: &str) -> Result<Resolution> {
    let conn = catalog.conn();
    let name = normalise(host);
    if name.is_empty() {
        return Err(Error::usage("an empty hostname resolves to nothing"));
    }
    // A site of a customer still being provisioned serves nothing yet.
    if let Some(site) = sites::by_domain(conn, &name)?
        && let Some(customer) = customers::by_id(conn, site.customer_id)?
    {
        refuse_deleted(host, &customer)?;
        return Ok(Resolution {
            host: name,
            matched_by: "site_domain".to_string(),
            customer_id: customer.id,
            customer: customer.slug,
            customer_status: customer.status,
            site_id: Some(site.id),
            site_domain: Some(site.domain),
            placement: Engines::of_catalog(conn).view(&customer.placement),
            db_path: customer.placement.location,
        });
    }
    if let Some((platform, _)) = settings::get(conn, "platform_domain")?
        && let Some(label) = name
            .strip_suffix(&platform)
            .and_then(|rest| rest.strip_suffix('.'))
        && !label.contains('.')
        && let Some(customer) = customers::by_slug(conn, label)?
    {
        refuse_deleted(host, &customer)?;
        return Ok(Resolution {
            host: name,
            matched_by: "platform_subdomain".to_string(),
            customer_id: customer.id,
            customer: customer.slug,
            customer_status: customer.status,
            site_id: None,
            site_domain: None,
            placement: Engines::of_catalog(conn).view(&customer.placement),
            db_path: customer.placement.location,
        });
    }
    Err(
        Error::not_found(format!("no customer serves '{}'", printable(host)))
            .with_hint("no site has that domain and it is not <slug>.<platform_domain>"),
    )
}

/// A deleted customer serves nothing: exit 3, as for an unknown host, so request paths
/// that look only at the exit code never reach a trashed database.
fn refuse_deleted(host: &str, customer: &crate::catalog::model::Customer) -> Result<()> {
    if customer.status == CustomerStatus::Deleted {
        return Err(Error::not_found(format!(
            "'{}' belonged to customer {}, which is deleted",
            printable(host),
            customer.slug
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(normalise("Shop.Example.COM."), "shop.example.com");
        assert_eq!(normalise("shop.example.com:8443"), "shop.example.com");
        assert_eq!(normalise(" a.b "), "a.b");
    }
}
