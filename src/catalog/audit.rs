//! The append-only audit log.

use rusqlite::{Connection, OptionalExtension, params};

use super::Filtered;

use super::model::{AuditEvent, NewAuditEvent};
use crate::error::Result;

/// Only [`Catalog::write_audited`](super::Catalog::write_audited) writes events, so each
/// lands in the transaction of the change it describes.
pub(super) fn record(conn: &Connection, at: &str, actor: &str, event: &NewAuditEvent) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO audit_events (at, actor, action, target_type, target, customer_id, details)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        at,
        actor,
        event.action,
        event.target_type,
        event.target,
        event.customer_id,
        event.details.to_string()
    ])?;
    Ok(conn.last_insert_rowid())
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub customer_id: Option<i64>,
    /// An exact action (`customer.create`) or a prefix ending in `.` (`customer.`).
    pub action: Option<String>,
    pub since: Option<String>,
    pub limit: Option<u64>,
}

/// Newest first.
pub fn list(conn: &Connection, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
    let mut query = Filtered::new(
        "SELECT id, at, actor, action, target_type, target, customer_id, details FROM audit_events WHERE 1 = 1",
    );
    if let Some(id) = filter.customer_id {
        query.and("customer_id = ?", id);
    }
    match &filter.action {
        Some(prefix) if prefix.ends_with('.') => {
            query.and("substr(action, 1, length(?)) = ?", prefix.clone())
        }
        Some(action) => query.and("action = ?", action.clone()),
        None => {}
    }
    if let Some(since) = &filter.since {
        query.and("at >= ?", since.clone());
    }
    query.finish("ORDER BY id DESC", filter.limit);
    let mut stmt = conn.prepare(&query.sql)?;
    let rows = stmt.query_map(query.params(), |row| {
        let details: String = row.get(7)?;
        Ok(AuditEvent {
            id: row.get(0)?,
            at: row.get(1)?,
            actor: row.get(2)?,
            action: row.get(3)?,
            target_type: row.get(4)?,
            target: row.get(5)?,
            customer_id: row.get(6)?,
            details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The id of the customer that audit events name by slug or email, newest first.
pub fn customer_id_in_trail(conn: &Connection, reference: &str) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT customer_id FROM audit_events
             WHERE target_type = 'customer' AND customer_id IS NOT NULL
               AND (target = lower(?1) OR lower(json_extract(details, '$.email')) = lower(?1))
             ORDER BY id DESC LIMIT 1",
            [reference],
            |r| r.get(0),
        )
        .optional()?)
}

pub fn count(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))?)
}
