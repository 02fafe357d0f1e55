//! The copies `customer move` keeps where a moved customer used to live, until the
//! move is finished.

use rusqlite::{Connection, OptionalExtension, params};

use crate::engine::Placement;
use crate::error::Result;
use crate::time;

/// A moved customer's old copy and when the move flipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedSource {
    pub customer_id: i64,
    pub placement: Placement,
    pub moved_at: String,
}

pub fn record(conn: &Connection, customer_id: i64, placement: &Placement) -> Result<()> {
    conn.execute(
        "INSERT INTO moved_sources (customer_id, engine, server, location, moved_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            customer_id,
            placement.engine,
            placement.server,
            placement.location,
            time::now()
        ],
    )?;
    Ok(())
}

pub fn of_customer(conn: &Connection, customer_id: i64) -> Result<Option<MovedSource>> {
    Ok(conn
        .query_row(
            "SELECT customer_id, engine, server, location, moved_at FROM moved_sources WHERE customer_id = ?1",
            [customer_id],
            from_row,
        )
        .optional()?)
}

/// Every kept copy, oldest move first.
pub fn all(conn: &Connection) -> Result<Vec<MovedSource>> {
    let mut stmt = conn.prepare(
        "SELECT customer_id, engine, server, location, moved_at FROM moved_sources ORDER BY moved_at",
    )?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub fn forget(conn: &Connection, customer_id: i64) -> Result<()> {
    conn.execute("DELETE FROM moved_sources WHERE customer_id = ?1", [customer_id])?;
    Ok(())
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MovedSource> {
    Ok(MovedSource {
        customer_id: row.get(0)?,
        placement: Placement {
            engine: row.get(1)?,
            server: row.get(2)?,
            location: row.get(3)?,
        },
        moved_at: row.get(4)?,
    })
}
