//! API keys and portal sessions: only hashes of their secrets are stored.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::Filtered;
use super::states::{CustomerStatus, KeyStatus, SessionStatus};
use crate::error::Result;

/// An API key as listed: never its secret.
#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub customer_id: i64,
    pub customer: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    pub status: KeyStatus,
}

const KEY_COLUMNS: &str = "k.id, k.customer_id, c.slug, k.name, k.scopes, k.created_at, k.expires_at, k.last_used_at, \
    k.revoked_at, CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked' \
    WHEN k.expires_at IS NOT NULL AND k.expires_at <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now') THEN 'expired' ELSE 'active' END";

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    let scopes: String = row.get(4)?;
    Ok(ApiKey {
        id: row.get(0)?,
        customer_id: row.get(1)?,
        customer: row.get(2)?,
        name: row.get(3)?,
        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        last_used_at: row.get(7)?,
        revoked_at: row.get(8)?,
        status: row.get(9)?,
    })
}

pub struct NewKey<'a> {
    pub id: &'a str,
    pub customer_id: i64,
    pub name: &'a str,
    pub scopes: &'a [String],
    pub secret_hash: &'a str,
    pub created_at: &'a str,
    pub expires_at: Option<&'a str>,
}

pub fn insert_key(conn: &Connection, key: &NewKey<'_>) -> Result<ApiKey> {
    conn.execute(
        "INSERT INTO api_keys (id, customer_id, name, scopes, secret_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![key.id, key.customer_id, key.name, serde_json::to_string(key.scopes)?, key.secret_hash, key.created_at, key.expires_at],
    )?;
    Ok(key_by_id(conn, key.id)?.expect("a key just inserted"))
}

pub fn key_by_id(conn: &Connection, id: &str) -> Result<Option<ApiKey>> {
    Ok(conn
        .query_row(&format!("SELECT {KEY_COLUMNS} FROM api_keys k JOIN customers c ON c.id = k.customer_id WHERE k.id = ?1"), [id], key_from_row)
        .optional()?)
}

/// The stored hash of a key's token.
pub fn key_hash(conn: &Connection, id: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT secret_hash FROM api_keys WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?)
}

pub fn list_keys(conn: &Connection, customer_id: Option<i64>) -> Result<Vec<ApiKey>> {
    let mut query = Filtered::new(format!(
        "SELECT {KEY_COLUMNS} FROM api_keys k JOIN customers c ON c.id = k.customer_id WHERE 1 = 1"
    ));
    if let Some(id) = customer_id {
        query.and("k.customer_id = ?", id);
    }
    query.finish("ORDER BY k.created_at, k.id", None);
    let mut stmt = conn.prepare(&query.sql)?;
    let rows = stmt.query_map(query.params(), key_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub fn revoke_key(conn: &Connection, id: &str, at: &str) -> Result<()> {
    conn.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, at],
    )?;
    Ok(())
}

pub fn touch_key(conn: &Connection, id: &str, at: &str) -> Result<()> {
    conn.execute(
        "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
        params![id, at],
    )?;
    Ok(())
}

/// A portal session as listed: never its token.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub id: String,
    pub customer_id: i64,
    pub customer: String,
    pub device: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub last_seen_at: Option<String>,
    pub revoked_at: Option<String>,
    pub status: SessionStatus,
}

const SESSION_COLUMNS: &str = "s.id, s.customer_id, c.slug, s.device, s.created_at, s.expires_at, s.last_seen_at, s.revoked_at, \
    CASE WHEN s.revoked_at IS NOT NULL THEN 'revoked' \
    WHEN s.expires_at <= strftime('%Y-%m-%dT%H:%M:%SZ', 'now') THEN 'expired' \
    WHEN c.status <> 'active' THEN 'blocked' ELSE 'active' END";

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: row.get(0)?,
        customer_id: row.get(1)?,
        customer: row.get(2)?,
        device: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        last_seen_at: row.get(6)?,
        revoked_at: row.get(7)?,
        status: row.get(8)?,
    })
}

pub struct NewSession<'a> {
    pub id: &'a str,
    pub customer_id: i64,
    pub token_hash: &'a str,
    pub device: Option<&'a str>,
    pub created_at: &'a str,
    pub expires_at: &'a str,
}

pub fn insert_session(conn: &Connection, session: &NewSession<'_>) -> Result<Session> {
    conn.execute(
        "INSERT INTO sessions (id, customer_id, token_hash, device, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![session.id, session.customer_id, session.token_hash, session.device, session.created_at, session.expires_at],
    )?;
    Ok(session_by_id(conn, session.id)?.expect("a session just inserted"))
}

pub fn session_by_id(conn: &Connection, id: &str) -> Result<Option<Session>> {
    Ok(conn
        .query_row(&format!("SELECT {SESSION_COLUMNS} FROM sessions s JOIN customers c ON c.id = s.customer_id WHERE s.id = ?1"), [id], session_from_row)
        .optional()?)
}

pub fn list_sessions(conn: &Connection, customer_id: Option<i64>, active_only: bool) -> Result<Vec<Session>> {
    let mut query = Filtered::new(format!(
        "SELECT {SESSION_COLUMNS} FROM sessions s JOIN customers c ON c.id = s.customer_id WHERE 1 = 1"
    ));
    if let Some(id) = customer_id {
        query.and("s.customer_id = ?", id);
    }
    if active_only {
        query.and(
            "s.revoked_at IS NULL AND s.expires_at > strftime('%Y-%m-%dT%H:%M:%SZ', 'now') AND c.status = ?",
            CustomerStatus::Active,
        );
    }
    query.finish("ORDER BY s.created_at, s.id", None);
    let mut stmt = conn.prepare(&query.sql)?;
    let rows = stmt.query_map(query.params(), session_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Revokes one session or all of a customer's; returns how many changed.
pub fn revoke_sessions(
    conn: &Connection,
    id: Option<&str>,
    customer_id: Option<i64>,
    at: &str,
) -> Result<usize> {
    Ok(conn.execute(
        "UPDATE sessions SET revoked_at = ?3 WHERE revoked_at IS NULL AND (id = ?1 OR customer_id = ?2)",
        params![id, customer_id, at],
    )?)
}

/// Deletes sessions that have expired; returns how many.
pub fn prune_sessions(conn: &Connection, now: &str) -> Result<usize> {
    Ok(conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?)
}
