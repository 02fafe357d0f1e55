//! The database servers that host tenants, and the tenant roles on them.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::states::{ServerMode, ServerStatus};
use crate::engine::EngineKind;
use crate::error::Result;
use crate::time;

/// A server as the catalog keeps it: the URL without its password, the password
/// encrypted.
#[derive(Debug, Clone, Serialize)]
pub struct ServerRow {
    pub name: String,
    pub engine: EngineKind,
    pub url: String,
    #[serde(skip)]
    pub password: Option<String>,
    pub mode: ServerMode,
    pub capacity: Option<i64>,
    pub status: ServerStatus,
    pub version: String,
    #[serde(skip)]
    pub template: Option<String>,
    /// Customers placed on it, whatever their status.
    pub tenants: i64,
    pub created_at: String,
    pub updated_at: String,
}

const SELECT: &str = "SELECT s.name, s.engine, s.url, s.password, s.mode, s.capacity, s.status, s.version, \
    s.template, (SELECT count(*) FROM customers c WHERE c.server = s.name), s.created_at, s.updated_at \
    FROM servers s";

fn from_row(row: &Row<'_>) -> rusqlite::Result<ServerRow> {
    Ok(ServerRow {
        name: row.get(0)?,
        engine: row.get(1)?,
        url: row.get(2)?,
        password: row.get(3)?,
        mode: row.get(4)?,
        capacity: row.get(5)?,
        status: row.get(6)?,
        version: row.get(7)?,
        template: row.get(8)?,
        tenants: row.get(9)?,
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
    })
}

pub fn list(conn: &Connection) -> Result<Vec<ServerRow>> {
    let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY s.name"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub fn get(conn: &Connection, name: &str) -> Result<Option<ServerRow>> {
    Ok(conn
        .query_row(&format!("{SELECT} WHERE s.name = ?1"), [name], from_row)
        .optional()?)
}

/// Whether any password is stored encrypted (a server's or a tenant role's): then the
/// master key they were made with exists somewhere, and a new one must not replace it.
pub fn holds_secrets(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM servers WHERE password IS NOT NULL) \
         OR EXISTS (SELECT 1 FROM tenant_roles)",
        [],
        |row| row.get(0),
    )?)
}

/// Customers the local folder holds (the built-in server `local` has no row).
pub fn local_tenants(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT count(*) FROM customers WHERE server = 'local'", [], |r| {
            r.get(0)
        })?,
    )
}

/// Adds a server; the caller has checked the name is free.
pub fn insert(conn: &Connection, server: &ServerRow) -> Result<ServerRow> {
    let now = time::now();
    conn.execute(
        "INSERT INTO servers (name, engine, url, password, mode, capacity, status, version, template, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
        params![
            server.name,
            server.engine,
            server.url,
            server.password,
            server.mode,
            server.capacity,
            server.status,
            server.version,
            server.template,
            now
        ],
    )?;
    Ok(get(conn, &server.name)?.expect("a server just written"))
}

/// Saves every changeable field of `server`.
pub fn update(conn: &Connection, server: &ServerRow) -> Result<ServerRow> {
    conn.execute(
        "UPDATE servers SET url = ?2, password = ?3, capacity = ?4, status = ?5, version = ?6, template = ?7,
             updated_at = ?8 WHERE name = ?1",
        params![
            server.name,
            server.url,
            server.password,
            server.capacity,
            server.status,
            server.version,
            server.template,
            time::now()
        ],
    )?;
    Ok(get(conn, &server.name)?.expect("a server just written"))
}

/// Removes a server that hosts no tenant; returns whether it did (a tenant placed on
/// it meanwhile keeps it).
pub fn remove_if_empty(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn.execute(
        "DELETE FROM servers WHERE name = ?1 AND NOT EXISTS (SELECT 1 FROM customers WHERE server = ?1)
           AND NOT EXISTS (SELECT 1 FROM moved_sources WHERE server = ?1)",
        [name],
    )? > 0)
}

/// Records a tenant's login role and its encrypted password.
pub fn insert_role(conn: &Connection, customer_id: i64, role: &str, encrypted: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO tenant_roles (customer_id, role, password, rotated_at) VALUES (?1, ?2, ?3, ?4)",
        params![customer_id, role, encrypted, time::now()],
    )?;
    Ok(())
}

/// Forgets a tenant's login role: its tenant now lives where there are none.
pub fn delete_role(conn: &Connection, customer_id: i64) -> Result<()> {
    conn.execute("DELETE FROM tenant_roles WHERE customer_id = ?1", [customer_id])?;
    Ok(())
}

/// The encrypted password of a customer's tenant role, if it has one.
pub fn role_of_customer(conn: &Connection, customer_id: i64) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT password FROM tenant_roles WHERE customer_id = ?1",
            [customer_id],
            |r| r.get(0),
        )
        .optional()?)
}

/// The customer and encrypted password of tenant role `role`.
pub fn role_password(conn: &Connection, role: &str) -> Result<Option<(i64, String)>> {
    Ok(conn
        .query_row(
            "SELECT customer_id, password FROM tenant_roles WHERE role = ?1",
            [role],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Records which migration set the server's template now holds.
pub fn set_template(conn: &Connection, name: &str, identity: &str) -> Result<()> {
    conn.execute(
        "UPDATE servers SET template = ?2, updated_at = ?3 WHERE name = ?1",
        params![name, identity, time::now()],
    )?;
    Ok(())
}

/// Stores a tenant role's new encrypted password.
pub fn set_role_password(conn: &Connection, customer_id: i64, encrypted: &str) -> Result<()> {
    conn.execute(
        "UPDATE tenant_roles SET password = ?2, rotated_at = ?3 WHERE customer_id = ?1",
        params![customer_id, encrypted, time::now()],
    )?;
    Ok(())
}

/// Every tenant role on `server`: customer id, role and encrypted password.
pub fn roles_on(conn: &Connection, server: &str) -> Result<Vec<(i64, String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT r.customer_id, r.role, r.password FROM tenant_roles r
         JOIN customers c ON c.id = r.customer_id WHERE c.server = ?1 ORDER BY r.customer_id",
    )?;
    let rows = stmt.query_map([server], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
