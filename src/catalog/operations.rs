//! The operation ledger: what a command that changes files as well as rows is about
//! to do, recorded before it touches a file and removed when the result is visible.

use rusqlite::{Connection, Row, params};
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::time;

/// One open operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub customer_id: Option<i64>,
    /// The token of the owner lock its command holds while it runs.
    pub owner: String,
    pub steps: Value,
    pub started_at: String,
}

/// What a command records before it starts; `steps` is anything that serialises to
/// the JSON its finisher reads.
#[derive(Debug, Clone)]
pub struct NewOperation<'a, S: Serialize = Value> {
    pub kind: &'a str,
    pub subject: &'a str,
    pub customer_id: Option<i64>,
    pub owner: &'a str,
    pub steps: S,
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Operation> {
    let steps: String = row.get(5)?;
    Ok(Operation {
        id: row.get(0)?,
        kind: row.get(1)?,
        subject: row.get(2)?,
        customer_id: row.get(3)?,
        owner: row.get(4)?,
        steps: serde_json::from_str(&steps).unwrap_or(Value::Null),
        started_at: row.get(6)?,
    })
}

pub fn open<S: Serialize>(conn: &Connection, new: &NewOperation<'_, S>) -> Result<i64> {
    conn.execute(
        "INSERT INTO operations (kind, subject, customer_id, owner, steps, started_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            new.kind,
            new.subject,
            new.customer_id,
            new.owner,
            serde_json::to_string(&new.steps)?,
            time::now()
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Closes an operation: its result is visible, nothing is left to finish.
pub fn close(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM operations WHERE id = ?1", [id])?;
    Ok(())
}

/// Records how far an open operation has got.
pub fn set_steps(conn: &Connection, id: i64, steps: &Value) -> Result<()> {
    conn.execute(
        "UPDATE operations SET steps = ?2 WHERE id = ?1",
        params![id, steps.to_string()],
    )?;
    Ok(())
}

/// Every open operation, oldest first.
pub fn list(conn: &Connection) -> Result<Vec<Operation>> {
    let mut stmt = conn.prepare(
        "SELECT id, kind, subject, customer_id, owner, steps, started_at FROM operations ORDER BY id",
    )?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The operation with this id, if it is still open.
pub fn get(conn: &Connection, id: i64) -> Result<Option<Operation>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT id, kind, subject, customer_id, owner, steps, started_at FROM operations WHERE id = ?1",
            [id],
            from_row,
        )
        .optional()?)
}

/// Whether any operation is open; the common answer, no, costs one lookup.
pub fn any_open(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row("SELECT EXISTS (SELECT 1 FROM operations)", [], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::in_memory;

    #[test]
    fn operations_open_list_and_close() {
        let catalog = in_memory();
        let conn = catalog.conn();
        assert!(!any_open(conn).unwrap());
        let id = open(
            conn,
            &NewOperation {
                kind: "customer.purge",
                subject: "acme",
                customer_id: Some(7),
                owner: "1-0000abcd",
                steps: serde_json::json!({"remove": "x"}),
            },
        )
        .unwrap();
        let all = list(conn).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].steps["remove"], "x");
        assert_eq!(all[0].customer_id, Some(7));
        close(conn, id).unwrap();
        assert!(!any_open(conn).unwrap());
    }
}
