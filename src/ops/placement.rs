//! Where a new tenant goes (`--server NAME|auto`, the `default_server` setting) and
//! the migrations it is built at: the SQLite set for `local`, the engine's own set
//! for a database server, whose template is rebuilt first when that set changed.

use serde_json::json;

use super::{Actor, config};
use crate::catalog::Catalog;
use crate::catalog::model::NewAuditEvent;
use crate::catalog::servers::{self, ServerRow};
use crate::catalog::states::ServerStatus;
use crate::engine::{EngineKind, Engines, LOCAL_SERVER};
use crate::error::{Error, Result};
use crate::{migrations, validate};

/// The server chosen for a new tenant.
#[derive(Debug)]
pub struct Target {
    pub name: String,
    pub engine: EngineKind,
    /// Whether its tenants get a login role, whose password needs the master key.
    pub needs_key: bool,
    row: Option<ServerRow>,
}

/// `asked` (`local`, a server name or `auto`), else the `default_server` setting.
pub fn choose_server(catalog: &Catalog, engines: &Engines, asked: Option<&str>) -> Result<Target> {
    let asked = match asked {
        Some(asked) => asked.to_string(),
        None => {
            config::stored_or_default(catalog, "default_server")?.unwrap_or_else(|| LOCAL_SERVER.to_string())
        }
    };
    if asked == LOCAL_SERVER {
        return Ok(Target {
            name: LOCAL_SERVER.to_string(),
            engine: EngineKind::Sqlite,
            needs_key: false,
            row: None,
        });
    }
    let row = if asked == "auto" {
        most_free(catalog)?
    } else {
        let name = validate::server_name(&asked)?;
        let row = servers::get(catalog.conn(), name)?.ok_or_else(|| {
            Error::not_found(format!("no server named '{name}'"))
                .with_hint("list them with 'tenantctl server list'")
        })?;
        refuse_full_or_draining(&row)?;
        row
    };
    // The engine registry must know it too (it reads the same catalog).
    engines.server(&row.name)?;
    Ok(Target {
        name: row.name.clone(),
        engine: row.engine,
        needs_key: true,
        row: Some(row),
    })
}

fn free(row: &ServerRow) -> i64 {
    row.capacity.map_or(i64::MAX, |c| c - row.tenants)
}

/// `auto`: the active database server with the most room; the local folder is not a
/// candidate (it has no capacity to compare; name it to use it).
fn most_free(catalog: &Catalog) -> Result<ServerRow> {
    servers::list(catalog.conn())?
        .into_iter()
        .filter(|row| row.status == ServerStatus::Active && free(row) > 0)
        .max_by_key(free)
        .ok_or_else(|| {
            Error::refused("--server auto: no active database server has room for another tenant")
                .with_hint("add one with 'tenantctl server add', raise a capacity, or name a server")
        })
}

fn refuse_full_or_draining(row: &ServerRow) -> Result<()> {
    if row.status == ServerStatus::Draining {
        return Err(Error::refused(format!(
            "server {} is draining: it takes no new tenants",
            row.name
        ))
        .with_hint(format!(
            "choose another server, or 'tenantctl server update {} --status active'",
            row.name
        )));
    }
    if free(row) <= 0 {
        return Err(Error::refused(format!(
            "server {} is full ({} of {} tenants)",
            row.name,
            row.tenants,
            row.capacity.unwrap_or_default()
        ))
        .with_hint("choose another server, or raise its --capacity"));
    }
    Ok(())
}

/// The migrations a new tenant on `target` is built at. On a database server they
/// are the engine's own set, checked against the SQLite set version for version,
/// and the server's template is brought up to them first.
pub fn migrations_for(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    target: &Target,
) -> Result<Vec<refinery::Migration>> {
    let dir = config::tenant_migrations_dir(catalog, actor.home)?;
    let Some(row) = &target.row else {
        return migrations::load_migrations(&dir);
    };
    let set = migrations::load_engine_migrations(&dir, target.engine, &[EngineKind::Sqlite])?;
    let url = super::servers::stored_url(row, actor.home)?;
    if url.template_current(row.mode, row.template.as_deref(), &set) == Some(false) {
        let built = url.prepare(&row.name, row.mode, &set)?.unwrap_or_default();
        catalog.write_audited(actor.name, |tx| {
            servers::set_template(tx, &row.name, &built)?;
            let event = NewAuditEvent::new(
                "server.template",
                "server",
                row.name.clone(),
                None,
                json!({"newest_migration": migrations::newest_version(&set)}),
            );
            Ok(((), [event]))
        })?;
    }
    Ok(set)
}
