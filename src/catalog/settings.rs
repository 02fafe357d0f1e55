//! Key/value settings kept in the catalog (`tenantctl config`).

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;
use crate::time;

/// The stored value and when it was set.
pub fn get(conn: &Connection, key: &str) -> Result<Option<(String, String)>> {
    Ok(conn
        .query_row(
            "SELECT value, updated_at FROM settings WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

pub fn set(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        params![key, value, time::now()],
    )?;
    Ok(())
}

/// Returns whether a value was stored.
pub fn unset(conn: &Connection, key: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM settings WHERE key = ?1", [key])? > 0)
}
