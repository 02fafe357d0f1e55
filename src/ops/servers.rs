//! `server add|list|show|test|update|remove`: the database servers tenants can live
//! on (SPEC section 7). The built-in server `local` is the home's tenants folder.

use serde::Serialize;
use serde_json::json;

use super::Actor;
use super::config::tenant_migrations_dir;
use crate::catalog::Catalog;
use crate::catalog::model::NewAuditEvent;
use crate::catalog::servers::{self, ServerRow};
use crate::catalog::states::{ServerMode, ServerStatus};
use crate::engine::servers::ServerUrl;
use crate::engine::{EngineKind, LOCAL_SERVER};
use crate::error::{Error, Result};
use crate::home::Home;
use crate::migrations;
use crate::secrets::{MasterKey, Secret};
use crate::validate;

/// A server as commands show it: the URL with its password as `***`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerView {
    pub name: String,
    pub engine: EngineKind,
    pub url: String,
    pub mode: ServerMode,
    pub capacity: Option<i64>,
    pub status: ServerStatus,
    pub version: String,
    pub tenants: i64,
    /// Tenants it may still take; `None` when its capacity is unlimited.
    pub free_capacity: Option<i64>,
    pub builtin: bool,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl ServerView {
    fn of(row: &ServerRow) -> Self {
        let mut url = row.url.clone();
        if let (Some(_), Ok(mut parsed)) = (&row.password, url::Url::parse(&row.url)) {
            let _ = parsed.set_password(Some("***"));
            url = parsed.to_string();
        }
        ServerView {
            name: row.name.clone(),
            engine: row.engine,
            url,
            mode: row.mode,
            capacity: row.capacity,
            status: row.status,
            version: row.version.clone(),
            tenants: row.tenants,
            free_capacity: row.capacity.map(|c| (c - row.tenants).max(0)),
            builtin: false,
            created_at: Some(row.created_at.clone()),
            updated_at: Some(row.updated_at.clone()),
        }
    }

    fn local(catalog: &Catalog, home: &Home) -> Result<Self> {
        Ok(ServerView {
            name: LOCAL_SERVER.to_string(),
            engine: EngineKind::Sqlite,
            url: home.tenants_dir().display().to_string(),
            mode: ServerMode::Database,
            capacity: None,
            status: ServerStatus::Active,
            version: rusqlite::version().to_string(),
            tenants: servers::local_tenants(catalog.conn())?,
            free_capacity: None,
            builtin: true,
            created_at: None,
            updated_at: None,
        })
    }
}

/// What `server add` is asked to do.
#[derive(Debug)]
pub struct AddServer<'a> {
    pub name: &'a str,
    pub url: &'a str,
    /// The password when the URL carries none (`--password-stdin`).
    pub password: Option<Secret>,
    pub mode: ServerMode,
    pub capacity: Option<i64>,
}

/// Connects, checks the login's rights and the local dump tools, builds the template
/// and records the server with its password encrypted.
pub fn add(catalog: &mut Catalog, actor: Actor<'_>, request: AddServer<'_>) -> Result<ServerView> {
    let name = validate::server_name(request.name)?;
    let mut url = parse_url(request.url)?;
    if url.password().is_none() {
        url.set_password(request.password);
    }
    if servers::get(catalog.conn(), name)?.is_some() {
        return Err(Error::conflict(format!("server {name} already exists"))
            .with_hint(format!("see it with 'tenantctl server show {name}'")));
    }
    let facts = url.check_for_tenants(name, request.mode)?;
    let migrations = engine_migrations(catalog, actor.home, url.engine())?;
    // A missing key with passwords already stored is a lost or unset key, not a first
    // server: a new one would leave the home's secrets under two keys.
    let key = match servers::holds_secrets(catalog.conn())? {
        true => MasterKey::require(actor.home)?,
        false => MasterKey::load_or_create(actor.home)?,
    };
    let template = url.prepare(name, request.mode, &migrations)?;
    let row = ServerRow {
        name: name.to_string(),
        engine: url.engine(),
        url: url.without_password().to_string(),
        password: url.password().map(|p| key.encrypt(p, &identity(name))),
        mode: request.mode,
        capacity: request.capacity,
        status: ServerStatus::Active,
        version: facts.version.clone(),
        template,
        tenants: 0,
        created_at: String::new(),
        updated_at: String::new(),
    };
    let saved = catalog.write_audited(actor.name, |tx| {
        if servers::get(tx, name)?.is_some() {
            return Err(Error::conflict(format!("server {name} already exists")));
        }
        let saved = servers::insert(tx, &row)?;
        let event = NewAuditEvent::new("server.add", "server", name, None, audit_details(&saved));
        Ok((saved, [event]))
    })?;
    Ok(ServerView::of(&saved))
}

pub fn list(catalog: &Catalog, home: &Home) -> Result<Vec<ServerView>> {
    let mut views = vec![ServerView::local(catalog, home)?];
    views.extend(servers::list(catalog.conn())?.iter().map(ServerView::of));
    Ok(views)
}

pub fn show(catalog: &Catalog, home: &Home, name: &str) -> Result<ServerView> {
    if name == LOCAL_SERVER {
        return ServerView::local(catalog, home);
    }
    Ok(ServerView::of(&find(catalog, name)?))
}

/// A server at a glance, for `status`: its load and whether it answers now.
#[derive(Debug, Clone, Serialize)]
pub struct ServerHealth {
    pub name: String,
    pub engine: EngineKind,
    pub status: ServerStatus,
    pub tenants: i64,
    pub capacity: Option<i64>,
    pub free_capacity: Option<i64>,
    pub reachable: bool,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// Every server with a quick connection attempt each (the local folder always
/// answers); a home without servers costs nothing.
pub fn health(catalog: &Catalog, home: &Home) -> Result<Vec<ServerHealth>> {
    let mut lines = Vec::new();
    for view in list(catalog, home)? {
        let probe = match view.builtin {
            true => Ok(()),
            false => servers::get(catalog.conn(), &view.name)?
                .ok_or_else(|| Error::not_found("server vanished"))
                .and_then(|row| stored_url(&row, home))
                .and_then(|url| url.with_timeout(PROBE_TIMEOUT).inspect(&view.name).map(|_| ())),
        };
        lines.push(ServerHealth {
            name: view.name,
            engine: view.engine,
            status: view.status,
            tenants: view.tenants,
            capacity: view.capacity,
            free_capacity: view.free_capacity,
            reachable: probe.is_ok(),
            error: probe.err().map(|e| e.to_string()),
        });
    }
    Ok(lines)
}

/// How long `status` waits for a server before calling it unreachable.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// What `server test` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ServerTest {
    pub name: String,
    pub reachable: bool,
    pub latency_ms: f64,
    pub version: String,
    pub tenants: i64,
    pub capacity: Option<i64>,
    pub free_capacity: Option<i64>,
    /// Whether the template holds the current engine migrations (database mode).
    pub template_current: Option<bool>,
}

/// Connects and measures; exit 1 naming the server when it is down.
pub fn test(catalog: &Catalog, home: &Home, name: &str) -> Result<ServerTest> {
    let row = find(catalog, name)?;
    let url = stored_url(&row, home)?;
    let facts = url.inspect(name)?;
    let migrations = engine_migrations(catalog, home, row.engine)?;
    let template_current = url.template_current(row.mode, row.template.as_deref(), &migrations);
    Ok(ServerTest {
        name: row.name.clone(),
        reachable: true,
        latency_ms: (facts.latency.as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
        version: facts.version,
        tenants: row.tenants,
        capacity: row.capacity,
        free_capacity: row.capacity.map(|c| (c - row.tenants).max(0)),
        template_current,
    })
}

/// What `server update` changes; `None` keeps the current value.
#[derive(Debug, Default)]
pub struct UpdateServer<'a> {
    pub url: Option<&'a str>,
    pub password: Option<Secret>,
    pub capacity: Option<i64>,
    pub status: Option<ServerStatus>,
}

/// Changes a server's login, capacity or status. A new login is checked against the
/// server before it is saved, so a typo cannot lock the home out of its tenants.
pub fn update(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    name: &str,
    change: UpdateServer<'_>,
) -> Result<ServerView> {
    let mut row = find(catalog, name)?;
    if change.url.is_none()
        && change.password.is_none()
        && change.capacity.is_none()
        && change.status.is_none()
    {
        return Err(Error::usage("nothing to change")
            .with_hint("pass --url, --password-stdin, --capacity or --status"));
    }
    let mut changed = Vec::new();
    if change.url.is_some() || change.password.is_some() {
        let mut url = match change.url {
            Some(text) => parse_url(text)?,
            None => stored_url(&row, actor.home)?,
        };
        if url.engine() != row.engine {
            return Err(Error::usage(format!(
                "server {name} is a {} server; the new URL is {}'s",
                row.engine,
                url.engine()
            ))
            .with_hint("add a server of the other engine under a new name, and move tenants to it"));
        }
        if change.password.is_some() {
            url.set_password(change.password);
        }
        let facts = url.check_for_tenants(name, row.mode)?;
        let key = MasterKey::load_or_create(actor.home)?;
        row.url = url.without_password().to_string();
        row.password = url.password().map(|p| key.encrypt(p, &identity(name)));
        row.version = facts.version;
        changed.push("url");
    }
    if let Some(capacity) = change.capacity {
        row.capacity = Some(capacity);
        changed.push("capacity");
    }
    if let Some(status) = change.status {
        row.status = status;
        changed.push("status");
    }
    let saved = catalog.write_audited(actor.name, |tx| {
        let saved = servers::update(tx, &row)?;
        let mut details = audit_details(&saved);
        details["changed"] = json!(changed);
        Ok((
            saved,
            [NewAuditEvent::new("server.update", "server", name, None, details)],
        ))
    })?;
    Ok(ServerView::of(&saved))
}

/// Forgets a server that hosts no tenant. Its databases, roles and template stay on
/// the server: they are the operator's to drop.
pub fn remove(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    name: &str,
    confirm: Option<&str>,
) -> Result<ServerView> {
    let row = find(catalog, name)?;
    if confirm != Some(row.name.as_str()) {
        let message = match confirm {
            None => format!("removing server {name} needs confirmation"),
            Some(other) => format!(
                "--confirm '{}' does not name server {name}",
                validate::printable(other)
            ),
        };
        return Err(Error::refused(message).with_hint(format!("pass --confirm {name}")));
    }
    let view = ServerView::of(&row);
    catalog.write_audited(actor.name, |tx| {
        if !servers::remove_if_empty(tx, name)? {
            let hosted = servers::get(tx, name)?.map_or(0, |r| r.tenants);
            if hosted == 0 {
                return Err(
                    Error::refused(format!("server {name} keeps the old copy of a moved tenant"))
                        .with_hint("finish that move first: tenantctl customer move CUSTOMER --finish"),
                );
            }
            return Err(Error::refused(format!("server {name} hosts {hosted} tenants"))
                .with_hint("move or purge them first (customer list shows each customer's server)"));
        }
        Ok((
            (),
            [NewAuditEvent::new(
                "server.remove",
                "server",
                name,
                None,
                audit_details(&row),
            )],
        ))
    })?;
    Ok(view)
}

fn find(catalog: &Catalog, name: &str) -> Result<ServerRow> {
    if name == LOCAL_SERVER {
        return Err(Error::usage(
            "'local' is the built-in server; it cannot be changed or tested",
        ));
    }
    servers::get(catalog.conn(), name)?.ok_or_else(|| {
        Error::not_found(format!("no server named '{}'", validate::printable(name)))
            .with_hint("list them with 'tenantctl server list'")
    })
}

fn parse_url(text: &str) -> Result<ServerUrl> {
    ServerUrl::parse(text)
}

/// The stored URL with its password decrypted by the master key.
pub fn stored_url(row: &ServerRow, home: &Home) -> Result<ServerUrl> {
    let password = match &row.password {
        Some(stored) => Some(MasterKey::require(home)?.decrypt(stored, &identity(&row.name))?),
        None => None,
    };
    ServerUrl::from_stored(row.engine, &row.url, password)
}

/// The associated data that ties a server's encrypted password to its row.
fn identity(name: &str) -> String {
    format!("server:{name}")
}

/// The engine's own migration files, checked version for version against SQLite's.
pub fn engine_migrations(
    catalog: &Catalog,
    home: &Home,
    engine: EngineKind,
) -> Result<Vec<refinery::Migration>> {
    let dir = tenant_migrations_dir(catalog, home)?;
    migrations::load_engine_migrations(&dir, engine, &[EngineKind::Sqlite])
}

fn audit_details(row: &ServerRow) -> serde_json::Value {
    json!({
        "engine": row.engine,
        "url": row.url,
        "mode": row.mode,
        "capacity": row.capacity,
        "status": row.status,
    })
}
