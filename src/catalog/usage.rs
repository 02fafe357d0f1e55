//! Metered usage per customer, metric and month.

use rusqlite::Connection;

use crate::error::Result;

/// The amount recorded for one customer, metric and month (`YYYY-MM`); 0 when none.
pub fn amount(conn: &Connection, customer_id: i64, metric: &str, month: &str) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(amount), 0) FROM usage WHERE customer_id = ?1 AND metric = ?2 AND month = ?3",
        rusqlite::params![customer_id, metric, month],
        |r| r.get(0),
    )?)
}

/// Adds `amount` to a customer's metric for a month; returns the month's total.
pub fn add(
    conn: &Connection,
    customer_id: i64,
    metric: &str,
    month: &str,
    added: i64,
    at: &str,
) -> Result<i64> {
    conn.execute(
        "INSERT INTO usage (customer_id, metric, month, amount, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (customer_id, metric, month) DO UPDATE SET amount = amount + excluded.amount, updated_at = excluded.updated_at",
        rusqlite::params![customer_id, metric, month, added, at],
    )?;
    amount(conn, customer_id, metric, month)
}

/// Totals of a metric over all customers for a month.
pub fn total(conn: &Connection, metric: &str, month: &str) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(amount), 0) FROM usage WHERE metric = ?1 AND month = ?2",
        rusqlite::params![metric, month],
        |r| r.get(0),
    )?)
}

/// Deployments recorded since `since` (RFC 3339).
pub fn deployments_since(conn: &Connection, since: &str) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM deployments WHERE created_at >= ?1",
        [since],
        |r| r.get(0),
    )?)
}
