//! A tenant file's tables and rows as a move reads and writes them.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};

use crate::engine::transfer::{Cell, Column, ColumnKind, TableShape};
use crate::engine::{HeldWrites, WriteFreeze};
use crate::error::Result;

/// Holds the file's write lock: applications' writes wait (up to their own busy
/// timeout) until the guard is dropped; their reads go on.
pub fn freeze(path: &Path) -> Result<WriteFreeze> {
    let conn = super::open_tenant(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    Ok(WriteFreeze::held(Box::new(HeldFile(conn))))
}

/// The write lock on a tenant file, in its open transaction.
struct HeldFile(Connection);

/// The triggers that seal a moved tenant's old copy carry this prefix.
const SEAL_PREFIX: &str = "tenantctl_moved_";

impl HeldWrites for HeldFile {
    /// Adds, in the transaction that holds the lock, a trigger on every table that
    /// aborts any insert, update or delete, and commits: the lock is let go in the
    /// same instant the seal takes effect, so a writer that waited for it fails
    /// instead of writing into a copy nobody reads any more.
    fn seal(self: Box<Self>) -> Result<()> {
        let conn = &self.0;
        let tables: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for table in tables {
            for (n, event) in ["INSERT", "UPDATE", "DELETE"].iter().enumerate() {
                conn.execute_batch(&format!(
                    "CREATE TRIGGER IF NOT EXISTS {} BEFORE {event} ON {} BEGIN
                       SELECT RAISE(ABORT, 'this tenant has moved: see tenantctl customer show');
                     END",
                    quoted(&format!("{SEAL_PREFIX}{table}_{n}")),
                    quoted(&table)
                ))?;
            }
        }
        conn.execute_batch("COMMIT")?;
        Ok(())
    }
}

/// Drops the seal of an undone move: the file takes writes again.
pub fn thaw(path: &Path) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let conn = super::open_tenant(path)?;
    let seals: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'trigger' AND name LIKE 'tenantctl\\_moved\\_%' ESCAPE '\\'")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for seal in seals {
        conn.execute_batch(&format!("DROP TRIGGER IF EXISTS {}", quoted(&seal)))?;
    }
    Ok(())
}

fn open_read_only(path: &Path) -> Result<Connection> {
    super::refuse_symlink(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(30))?;
    Ok(conn)
}

pub fn tables(path: &Path) -> Result<Vec<TableShape>> {
    let conn = open_read_only(path)?;
    let mut names = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
           AND name <> 'refinery_schema_history' ORDER BY name",
    )?;
    let names = names
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    names.iter().map(|name| shape(&conn, name)).collect()
}

fn shape(conn: &Connection, table: &str) -> Result<TableShape> {
    let mut columns = Vec::new();
    let mut key: Vec<(i64, String)> = Vec::new();
    let mut info =
        conn.prepare("SELECT name, type, pk, hidden, \"notnull\" FROM pragma_table_xinfo(?1) ORDER BY cid")?;
    let mut rows = info.query([table])?;
    while let Some(row) = rows.next()? {
        let (name, declared, pk, hidden): (String, String, i64, i64) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        let required = row.get::<_, i64>(4)? != 0;
        // Generated columns are computed again on the other side.
        if hidden != 0 {
            continue;
        }
        if pk > 0 {
            key.push((pk, name.clone()));
        }
        columns.push(Column {
            kind: kind_of(&declared),
            name,
            declared,
            required,
            max_bytes: None,
        });
    }
    key.sort();
    let mut refs = conn.prepare("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list(?1)")?;
    let references = refs
        .query_map([table], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(TableShape {
        name: table.to_string(),
        columns,
        key: key.into_iter().map(|(_, name)| name).collect(),
        references,
    })
}

/// The kind a declared type stands for, by SQLite's own affinity rules first and
/// the usual names for booleans, timestamps, JSON and UUIDs after.
pub fn kind_of(declared: &str) -> ColumnKind {
    let upper = declared.to_ascii_uppercase();
    let has = |part: &str| upper.contains(part);
    if has("BOOL") {
        ColumnKind::Boolean
    } else if has("INT") {
        ColumnKind::Integer
    } else if has("JSON") {
        ColumnKind::Json
    } else if has("UUID") {
        ColumnKind::Uuid
    } else if has("TIMESTAMP") || has("DATETIME") {
        ColumnKind::Timestamp
    } else if upper.trim() == "DATE" {
        ColumnKind::Date
    } else if has("CHAR") || has("CLOB") || has("TEXT") {
        ColumnKind::Text
    } else if has("BLOB") || has("BYTEA") {
        ColumnKind::Blob
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        ColumnKind::Real
    } else if has("NUMERIC") || has("DECIMAL") {
        ColumnKind::Numeric
    } else {
        ColumnKind::Other
    }
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn column_list(table: &TableShape) -> String {
    table
        .columns
        .iter()
        .map(|c| quoted(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn read_rows(
    path: &Path,
    table: &TableShape,
    each: &mut dyn FnMut(Vec<Cell>) -> Result<()>,
) -> Result<()> {
    let conn = open_read_only(path)?;
    let order = match table.key.is_empty() {
        true => "rowid".to_string(),
        false => table.key.iter().map(|k| quoted(k)).collect::<Vec<_>>().join(", "),
    };
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {order}",
        column_list(table),
        quoted(&table.name)
    );
    let mut statement = conn.prepare(&sql)?;
    let width = table.columns.len();
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let cells = (0..width)
            .map(|i| row.get_ref(i).map(cell_of))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        each(cells)?;
    }
    Ok(())
}

fn cell_of(value: ValueRef<'_>) -> Cell {
    match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(n) => Cell::Int(n),
        ValueRef::Real(x) => Cell::Float(x),
        // Text that is not UTF-8 travels as bytes; only a blob column takes it.
        ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Cell::Text(text.to_string()),
            Err(_) => Cell::Bytes(bytes.to_vec()),
        },
        ValueRef::Blob(bytes) => Cell::Bytes(bytes.to_vec()),
    }
}

fn value_of(cell: Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Int(n) => Value::Integer(n),
        Cell::Float(x) => Value::Real(x),
        Cell::Bool(b) => Value::Integer(i64::from(b)),
        Cell::Text(t) => Value::Text(t),
        Cell::Bytes(b) => Value::Blob(b),
        Cell::Time(t) => Value::Text(crate::engine::transfer::timestamp_text(t)),
    }
}

/// Writes in one transaction; the file is a staging copy no application knows yet.
pub fn write_rows(
    path: &Path,
    table: &TableShape,
    next: &mut dyn FnMut() -> Result<Option<Vec<Cell>>>,
) -> Result<u64> {
    let mut conn = super::open_tenant(path)?;
    let tx = conn.transaction()?;
    let placeholders = vec!["?"; table.columns.len()].join(", ");
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({placeholders})",
        quoted(&table.name),
        column_list(table)
    );
    let mut written = 0;
    {
        let mut insert = tx.prepare(&sql)?;
        while let Some(row) = next()? {
            let values: Vec<Value> = row.into_iter().map(value_of).collect();
            insert.execute(rusqlite::params_from_iter(values))?;
            written += 1;
        }
    }
    tx.commit()?;
    Ok(written)
}
