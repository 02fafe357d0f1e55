//! Plans and their quota values.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::model::Plan;
use crate::error::Result;
use crate::time;

const SELECT: &str = "SELECT p.name, p.max_sites, p.max_storage_mb, p.max_bandwidth_gb, p.max_api_calls, \
    p.builtin, (SELECT count(*) FROM customers c WHERE c.plan = p.name), p.created_at, p.updated_at FROM plans p";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Plan> {
    Ok(Plan {
        name: row.get(0)?,
        max_sites: row.get(1)?,
        max_storage_mb: row.get(2)?,
        max_bandwidth_gb: row.get(3)?,
        max_api_calls: row.get(4)?,
        builtin: row.get(5)?,
        customers: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    })
}

pub fn list(conn: &Connection) -> Result<Vec<Plan>> {
    let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY p.max_sites, p.name"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub fn get(conn: &Connection, name: &str) -> Result<Option<Plan>> {
    Ok(conn
        .query_row(&format!("{SELECT} WHERE p.name = ?1"), [name], from_row)
        .optional()?)
}

/// Inserts or replaces a plan's quota values.
pub fn upsert(conn: &Connection, plan: &Plan) -> Result<Plan> {
    let now = time::now();
    conn.execute(
        "INSERT INTO plans (name, max_sites, max_storage_mb, max_bandwidth_gb, max_api_calls, builtin, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6)
         ON CONFLICT (name) DO UPDATE SET max_sites = excluded.max_sites, max_storage_mb = excluded.max_storage_mb,
             max_bandwidth_gb = excluded.max_bandwidth_gb, max_api_calls = excluded.max_api_calls,
             updated_at = excluded.updated_at",
        params![plan.name, plan.max_sites, plan.max_storage_mb, plan.max_bandwidth_gb, plan.max_api_calls, now],
    )?;
    Ok(get(conn, &plan.name)?.expect("a plan just written"))
}
