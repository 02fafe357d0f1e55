//! `db url CUSTOMER [--reveal]` and `db rotate-password CUSTOMER|--all`: how
//! applications connect to a tenant on a server, as its own login role.

use serde::Serialize;
use serde_json::json;

use super::Actor;
use super::tenants::live_customer;
use crate::catalog::model::{Customer, NewAuditEvent};
use crate::catalog::states::CustomerStatus;
use crate::catalog::{Catalog, customers, servers};
use crate::engine::postgres::role_identity;
use crate::engine::{EngineKind, Engines, PlacementView};
use crate::error::{Error, Result};
use crate::secrets::{MasterKey, Secret};

#[derive(Debug, Clone, Serialize)]
pub struct DbUrl {
    pub customer: String,
    /// The password as `***` unless revealed.
    pub url: String,
    pub revealed: bool,
    pub placement: PlacementView,
}

/// The URL an application connects with. `reveal` decrypts the role's password
/// into it, which the audit log records (without the password).
pub fn url(catalog: &mut Catalog, actor: Actor<'_>, reference: &str, reveal: bool) -> Result<DbUrl> {
    let customer = live_customer(catalog, reference)?;
    let placement = Engines::new(actor.home).view(&customer.placement);
    if placement.engine == EngineKind::Sqlite {
        return Ok(DbUrl {
            customer: customer.slug,
            url: placement.url(None),
            revealed: false,
            placement,
        });
    }
    if !reveal {
        return Ok(DbUrl {
            customer: customer.slug,
            url: placement.url(Some("***")).replace("%2A%2A%2A", "***"),
            revealed: false,
            placement,
        });
    }
    let password = role_password(catalog, actor, &customer)?;
    catalog.write_audited(actor.name, |_| {
        Ok((
            (),
            [NewAuditEvent::customer(
                "db.url.reveal",
                &customer,
                json!({"role": placement.role}),
            )],
        ))
    })?;
    Ok(DbUrl {
        customer: customer.slug,
        url: placement.url(Some(password.expose())),
        revealed: true,
        placement,
    })
}

fn role_password(catalog: &Catalog, actor: Actor<'_>, customer: &Customer) -> Result<Secret> {
    let (customer_id, stored) = servers::role_password(catalog.conn(), &customer.placement.location)?
        .ok_or_else(|| {
            Error::refused(format!(
                "the catalog holds no password for the role of {}",
                customer.slug
            ))
        })?;
    MasterKey::require(actor.home)?.decrypt(&stored, &role_identity(customer_id))
}

#[derive(Debug, Clone, Serialize)]
pub struct Rotated {
    pub customer: String,
    pub role: Option<String>,
    pub server: String,
}

/// Gives tenant roles new passwords: one customer's, or (`all`) every server
/// tenant's that is not deleted. The catalog's copy and the server's change together:
/// the new password is stored in a transaction that commits only once the server
/// took it.
pub fn rotate(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: Option<&str>,
    all: bool,
) -> Result<Vec<Rotated>> {
    let chosen: Vec<Customer> = match (reference, all) {
        (Some(reference), false) => {
            let customer = live_customer(catalog, reference)?;
            super::moves::refuse_if_moving(catalog.conn(), &customer)?;
            if customer.placement.engine == EngineKind::Sqlite {
                return Err(Error::refused(format!(
                    "customer {} lives in a local file, which has no login role",
                    customer.slug
                )));
            }
            vec![customer]
        }
        (None, true) => customers::list(catalog.conn(), &Default::default())?
            .into_iter()
            .filter(|c| c.placement.engine != EngineKind::Sqlite && c.status != CustomerStatus::Deleted)
            // A tenant being moved keeps its password: the move carries it over.
            .filter(|c| !super::moves::is_moving(catalog.conn(), c.id).unwrap_or(true))
            .collect(),
        _ => return Err(Error::usage("name one customer or pass --all")),
    };
    let key = MasterKey::require(actor.home)?;
    let engines = Engines::new(actor.home);
    let mut rotated = Vec::with_capacity(chosen.len());
    for customer in chosen {
        let tenant = engines.tenant(&customer.placement)?;
        let password = Secret::generate();
        let encrypted = key.encrypt(&password, &role_identity(customer.id));
        catalog.write_with_files_audited(
            actor.name,
            |tx| {
                servers::set_role_password(tx, customer.id, &encrypted)?;
                let event = NewAuditEvent::customer(
                    "db.rotate_password",
                    &customer,
                    json!({"role": customer.placement.location}),
                );
                Ok(((), [event]))
            },
            |()| tenant.set_password(&password),
            |()| {},
        )?;
        let view = engines.view(&customer.placement);
        rotated.push(Rotated {
            customer: customer.slug.clone(),
            role: view.role,
            server: view.server,
        });
    }
    Ok(rotated)
}
