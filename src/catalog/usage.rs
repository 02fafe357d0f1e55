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
