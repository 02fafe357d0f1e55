//! A MySQL tenant's tables and rows as a move reads and writes them, on admin
//! connections with the session's time zone set to UTC (a `TIMESTAMP` reads and
//! writes as UTC; a `DATETIME`, which has no zone, is taken as UTC). Rows are read
//! with the text protocol, streamed in key order, and written with prepared
//! multi-row `INSERT`s in one transaction, so no value is ever spliced into SQL.

use std::collections::HashMap;

use mysql::prelude::Queryable;
use mysql::{Conn, Statement, Value};

use super::migrate::is_bookkeeping;
use super::names::{ident, literal};
use super::tenant::MyTenant;
use crate::engine::transfer::{self, Cell, Column, ColumnKind, TableShape};
use crate::error::{Error, Result};

/// How a session reads and writes rows the same on every server: UTC, strict, an
/// explicit 0 kept as 0 in an `AUTO_INCREMENT` column.
const SESSION: &str = "SET time_zone = '+00:00', \
     sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'";

/// Rows per `INSERT`, at most; fewer when the table is wide (a statement takes at
/// most 65535 parameters) or its values are large.
const BATCH_ROWS: usize = 1000;
const BATCH_BYTES: usize = 4 << 20;
const MAX_PARAMS: usize = 65_535;

impl MyTenant {
    pub(super) fn shapes(&self) -> Result<Vec<TableShape>> {
        let mut admin = self.server.admin()?;
        let fail = |e: mysql::Error| self.server.fail(&e);
        let columns: Vec<mysql::Row> = admin
            .exec(
                "SELECT table_name, column_name, data_type, column_type, is_nullable, \
                        CAST(character_maximum_length AS UNSIGNED), extra \
                 FROM information_schema.columns c \
                 WHERE table_schema = ? AND table_name IN \
                    (SELECT table_name FROM information_schema.tables \
                     WHERE table_schema = c.table_schema AND table_type = 'BASE TABLE') \
                 ORDER BY table_name, ordinal_position",
                (self.name(),),
            )
            .map_err(fail)?;
        let keys: Vec<(String, String)> = admin
            .exec(
                "SELECT table_name, column_name FROM information_schema.key_column_usage \
                 WHERE table_schema = ? AND constraint_name = 'PRIMARY' \
                 ORDER BY table_name, ordinal_position",
                (self.name(),),
            )
            .map_err(fail)?;
        let references: Vec<(String, String)> = admin
            .exec(
                "SELECT DISTINCT table_name, referenced_table_name FROM information_schema.key_column_usage \
                 WHERE table_schema = ? AND referenced_table_name IS NOT NULL \
                   AND referenced_table_schema = table_schema",
                (self.name(),),
            )
            .map_err(fail)?;
        // MariaDB's JSON is LONGTEXT checked by json_valid(); MySQL's check
        // constraints name no table, so none is found there (its JSON is a type).
        let json_checks: Vec<(String, String)> = match self.server.mariadb() {
            true => admin
                .exec(
                    "SELECT table_name, check_clause FROM information_schema.check_constraints \
                     WHERE constraint_schema = ?",
                    (self.name(),),
                )
                .unwrap_or_default(),
            false => Vec::new(),
        };
        let mut tables: Vec<TableShape> = Vec::new();
        for row in columns {
            let text = |i: usize| -> String {
                row.get_opt::<Option<String>, _>(i)
                    .and_then(std::result::Result::ok)
                    .flatten()
                    .unwrap_or_default()
            };
            let (table, name, data_type, column_type) = (text(0), text(1), text(2), text(3));
            if is_bookkeeping(&table) {
                continue;
            }
            let extra = text(6).to_ascii_uppercase();
            // Generated columns are computed again on the other side.
            if extra.contains("VIRTUAL") || extra.contains("STORED") || extra.contains("PERSISTENT") {
                continue;
            }
            if tables.last().is_none_or(|t| t.name != table) {
                tables.push(TableShape {
                    name: table.clone(),
                    columns: Vec::new(),
                    key: keys
                        .iter()
                        .filter(|(t, _)| *t == table)
                        .map(|(_, c)| c.clone())
                        .collect(),
                    references: references
                        .iter()
                        .filter(|(t, _)| *t == table)
                        .map(|(_, r)| r.clone())
                        .collect(),
                });
            }
            let json_checked = json_checks
                .iter()
                .any(|(t, clause)| *t == table && clause.contains(&format!("json_valid(`{name}`)")));
            let max_length = row
                .get_opt::<Option<u64>, _>(5)
                .and_then(std::result::Result::ok)
                .flatten();
            let kind = match json_checked {
                true => ColumnKind::Json,
                false => kind_of(&data_type, &column_type),
            };
            tables.last_mut().expect("pushed above").columns.push(Column {
                name,
                kind,
                max_bytes: byte_limit(&data_type, max_length),
                declared: column_type,
                required: text(4) == "NO",
            });
        }
        Ok(tables)
    }

    fn qualified(&self, table: &str) -> String {
        format!("{}.{}", ident(self.name()), ident(table))
    }

    /// An admin connection with the move's session settings; never pooled again.
    fn session(&self) -> Result<super::pool::Pooled<'_>> {
        let mut admin = self.server.admin()?;
        if let Err(err) = admin.query_drop(SESSION) {
            admin.discard();
            return Err(self.server.fail(&err));
        }
        Ok(admin)
    }

    pub(super) fn rows_out(
        &self,
        table: &TableShape,
        each: &mut dyn FnMut(Vec<Cell>) -> Result<()>,
    ) -> Result<()> {
        let order = match table.key.is_empty() {
            true => String::new(),
            false => format!(
                " ORDER BY {}",
                table.key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ")
            ),
        };
        let statement = format!(
            "SELECT {} FROM {}{order}",
            column_list(table),
            self.qualified(&table.name)
        );
        let kinds: Vec<ColumnKind> = table.columns.iter().map(|c| c.kind).collect();
        let mut admin = self.session()?;
        let result = (|| {
            let rows = admin.query_iter(&statement).map_err(|e| self.server.fail(&e))?;
            for row in rows {
                let row = row.map_err(|e| self.server.fail(&e))?;
                let cells = row
                    .unwrap()
                    .into_iter()
                    .zip(&kinds)
                    .map(|(value, kind)| cell_of(value, *kind))
                    .collect::<Result<Vec<_>>>()?;
                each(cells)?;
            }
            Ok(())
        })();
        // A read stopped part way leaves rows on the wire; the session changed anyway.
        admin.discard();
        result
    }

    pub(super) fn rows_in(
        &self,
        table: &TableShape,
        next: &mut dyn FnMut() -> Result<Option<Vec<Cell>>>,
    ) -> Result<u64> {
        let mut admin = self.session()?;
        let width = table.columns.len().max(1);
        let most = BATCH_ROWS.min(MAX_PARAMS / width).max(1);
        let head = format!(
            "INSERT INTO {} ({}) VALUES ",
            self.qualified(&table.name),
            column_list(table)
        );
        let one = format!("({})", vec!["?"; table.columns.len()].join(", "));
        let kinds: Vec<ColumnKind> = table.columns.iter().map(|c| c.kind).collect();
        let result = (|| {
            let conn: &mut Conn = &mut admin;
            let run = |conn: &mut Conn, statement: &str| conn.query_drop(statement);
            // Unique checks stay: two values one engine keeps apart may be equal under
            // the target's collation, which must fail the load, not slip in twice.
            run(conn, "SET foreign_key_checks = 0")
                .and_then(|()| run(conn, "START TRANSACTION"))
                .map_err(|e| self.server.fail(&e))?;
            let mut prepared: HashMap<usize, Statement> = HashMap::new();
            let mut params: Vec<Value> = Vec::with_capacity(most * width);
            let mut rows = 0usize;
            let mut bytes = 0usize;
            let mut written = 0u64;
            let mut flush = |conn: &mut Conn, params: &mut Vec<Value>, rows: usize| -> Result<()> {
                if rows == 0 {
                    return Ok(());
                }
                let statement = match prepared.entry(rows) {
                    std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
                    std::collections::hash_map::Entry::Vacant(new) => {
                        let text = format!("{head}{}", vec![one.as_str(); rows].join(", "));
                        new.insert(conn.prep(text).map_err(|e| self.server.fail(&e))?)
                    }
                };
                conn.exec_drop(&*statement, std::mem::take(params))
                    .map_err(|e| self.load_failed(table, &e))
            };
            while let Some(row) = next()? {
                for (cell, kind) in row.into_iter().zip(&kinds) {
                    bytes += cell_size(&cell);
                    params.push(value_of(cell, *kind));
                }
                rows += 1;
                written += 1;
                if rows == most || bytes >= BATCH_BYTES {
                    flush(conn, &mut params, rows)?;
                    (rows, bytes) = (0, 0);
                }
            }
            flush(conn, &mut params, rows)?;
            for statement in prepared.into_values() {
                let _ = conn.close(statement);
            }
            run(conn, "COMMIT").map_err(|e| self.server.fail(&e))?;
            Ok(written)
        })();
        admin.discard();
        result
    }

    fn load_failed(&self, table: &TableShape, err: &mysql::Error) -> Error {
        match self.server.fail(err) {
            down @ Error::ServerDown { .. } => down,
            _ => Error::unexpected(format!(
                "loading table {} into {} on server {}: {}",
                table.name,
                self.name(),
                self.server.name(),
                super::describe(err)
            )),
        }
    }

    pub(super) fn exact_count(&self, table: &TableShape) -> Result<u64> {
        let mut admin = self.server.admin()?;
        let count: Option<u64> = admin
            .query_first(format!("SELECT COUNT(*) FROM {}", self.qualified(&table.name)))
            .map_err(|e| self.server.fail(&e))?;
        Ok(count.unwrap_or(0))
    }

    /// Each `AUTO_INCREMENT` counter goes past the highest id its column holds (InnoDB
    /// moves it on explicit ids already; this says so rather than trusting it).
    pub(super) fn move_counters_past_ids(&self) -> Result<()> {
        let mut admin = self.server.admin()?;
        let counted: Vec<(String, String)> = admin
            .exec(
                "SELECT table_name, column_name FROM information_schema.columns \
                 WHERE table_schema = ? AND extra LIKE '%auto_increment%'",
                (self.name(),),
            )
            .map_err(|e| self.server.fail(&e))?;
        for (table, column) in counted {
            let top: Option<Option<i64>> = admin
                .query_first(format!(
                    "SELECT CAST(MAX({}) AS SIGNED) FROM {}",
                    ident(&column),
                    self.qualified(&table)
                ))
                .map_err(|e| self.server.fail(&e))?;
            if let Some(top) = top.flatten().filter(|top| *top > 0) {
                self.server.run(
                    &mut admin,
                    &format!(
                        "ALTER TABLE {} AUTO_INCREMENT = {}",
                        self.qualified(&table),
                        top.saturating_add(1)
                    ),
                )?;
            }
        }
        Ok(())
    }

    /// Count and the sum of the first 60 bits of an MD5 of each row, each value as
    /// its length in bytes and its text (so no value spills into the next), NULL as
    /// a mark no value has: computed by the server, nothing crosses the network.
    /// Comparable between two servers of the MySQL family only.
    pub(super) fn server_digest(&self, table: &TableShape) -> Result<String> {
        let values: Vec<String> = table
            .columns
            .iter()
            .map(|c| {
                let column = ident(&c.name);
                format!("IF({column} IS NULL, 'N', CONCAT(LENGTH({column}), ':', {column}))")
            })
            .collect();
        let row = match values.is_empty() {
            true => literal(""),
            false => format!("CONCAT_WS(',', {})", values.join(", ")),
        };
        let statement = format!(
            "SELECT CONCAT(COUNT(*), ':', COALESCE(SUM(CAST(CONV(LEFT(MD5({row}), 15), 16, 10) AS UNSIGNED)), 0)) \
             FROM {}",
            self.qualified(&table.name)
        );
        let mut admin = self.session()?;
        let digest: Option<String> = admin.query_first(statement).map_err(|e| self.server.fail(&e))?;
        admin.discard();
        Ok(digest.unwrap_or_default())
    }
}

fn column_list(table: &TableShape) -> String {
    table
        .columns
        .iter()
        .map(|c| ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kind of a MySQL column, by its `data_type` and `column_type`.
fn kind_of(data_type: &str, column_type: &str) -> ColumnKind {
    let column_type = column_type.to_ascii_lowercase();
    match data_type.to_ascii_lowercase().as_str() {
        "tinyint" if column_type.starts_with("tinyint(1)") => ColumnKind::Boolean,
        "bool" | "boolean" => ColumnKind::Boolean,
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" | "bit" => {
            ColumnKind::Integer
        }
        "decimal" | "numeric" => ColumnKind::Numeric,
        "float" | "double" | "real" => ColumnKind::Real,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" => {
            ColumnKind::Text
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => ColumnKind::Blob,
        "datetime" | "timestamp" => ColumnKind::Timestamp,
        "date" => ColumnKind::Date,
        "json" => ColumnKind::Json,
        "uuid" => ColumnKind::Uuid,
        _ => ColumnKind::Other,
    }
}

/// The bytes a text or binary column holds at most, beyond its characters.
fn byte_limit(data_type: &str, max_length: Option<u64>) -> Option<u64> {
    match data_type.to_ascii_lowercase().as_str() {
        "tinytext" | "tinyblob" => Some(255),
        "text" | "blob" => Some(65_535),
        "mediumtext" | "mediumblob" => Some(16_777_215),
        "binary" | "varbinary" => max_length,
        _ => None,
    }
}

/// One value of the text protocol as a cell of the column's kind.
fn cell_of(value: Value, kind: ColumnKind) -> Result<Cell> {
    let bytes = match value {
        Value::NULL => return Ok(Cell::Null),
        Value::Bytes(bytes) => bytes,
        Value::Int(n) => return Ok(Cell::Int(n)),
        Value::UInt(n) => return Ok(i64::try_from(n).map_or_else(|_| Cell::Text(n.to_string()), Cell::Int)),
        Value::Float(x) => return Ok(Cell::Float(f64::from(x))),
        Value::Double(x) => return Ok(Cell::Float(x)),
        other => other.as_sql(true).trim_matches('\'').as_bytes().to_vec(),
    };
    if kind == ColumnKind::Blob {
        return Ok(Cell::Bytes(bytes));
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return Ok(Cell::Bytes(e.into_bytes())),
    };
    Ok(match kind {
        // BIT(n) comes as its bytes, big-endian; anything wider than an i64 stays text.
        ColumnKind::Integer | ColumnKind::Boolean => match text.parse::<i64>() {
            Ok(n) => Cell::Int(n),
            Err(_) => Cell::Text(text),
        },
        ColumnKind::Real => match text.parse::<f64>() {
            Ok(x) => Cell::Float(x),
            Err(_) => Cell::Text(text),
        },
        // A zero date ('0000-00-00 …') stays text, which no timestamp column takes.
        ColumnKind::Timestamp => match transfer::parse_timestamp(&text) {
            Some(micros) => Cell::Time(micros),
            None => Cell::Text(text),
        },
        _ => Cell::Text(text),
    })
}

/// A cell as a parameter of a prepared statement.
fn value_of(cell: Cell, kind: ColumnKind) -> Value {
    match cell {
        Cell::Null => Value::NULL,
        Cell::Int(n) => Value::Int(n),
        Cell::Float(x) => Value::Double(x),
        Cell::Bool(b) => Value::Int(i64::from(b)),
        Cell::Text(t) => Value::Bytes(t.into_bytes()),
        Cell::Bytes(b) => Value::Bytes(b),
        Cell::Time(micros) => match chrono::DateTime::from_timestamp_micros(micros) {
            Some(time) if kind != ColumnKind::Date => {
                use chrono::{Datelike, Timelike};
                Value::Date(
                    time.year() as u16,
                    time.month() as u8,
                    time.day() as u8,
                    time.hour() as u8,
                    time.minute() as u8,
                    time.second() as u8,
                    time.timestamp_subsec_micros(),
                )
            }
            _ => Value::Bytes(transfer::timestamp_text(micros).into_bytes()),
        },
    }
}

fn cell_size(cell: &Cell) -> usize {
    match cell {
        Cell::Text(t) => t.len(),
        Cell::Bytes(b) => b.len(),
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_types_have_the_kinds_other_engines_know() {
        assert_eq!(kind_of("tinyint", "tinyint(1)"), ColumnKind::Boolean);
        assert_eq!(kind_of("tinyint", "tinyint(4)"), ColumnKind::Integer);
        assert_eq!(kind_of("bigint", "bigint(20) unsigned"), ColumnKind::Integer);
        assert_eq!(kind_of("decimal", "decimal(10,2)"), ColumnKind::Numeric);
        assert_eq!(kind_of("datetime", "datetime(6)"), ColumnKind::Timestamp);
        assert_eq!(kind_of("varbinary", "varbinary(16)"), ColumnKind::Blob);
        assert_eq!(kind_of("longtext", "longtext"), ColumnKind::Text);
        assert_eq!(byte_limit("text", None), Some(65_535));
        assert_eq!(byte_limit("varbinary", Some(16)), Some(16));
    }

    #[test]
    fn text_protocol_values_read_as_cells() {
        let bytes = |t: &str| Value::Bytes(t.as_bytes().to_vec());
        assert_eq!(
            cell_of(bytes("2026-12-03 10:00:00.250000"), ColumnKind::Timestamp).unwrap(),
            Cell::Time(transfer::parse_timestamp("2026-12-03T10:00:00.25Z").unwrap())
        );
        assert_eq!(
            cell_of(bytes("0000-00-00 00:00:00"), ColumnKind::Timestamp).unwrap(),
            Cell::Text("0000-00-00 00:00:00".into())
        );
        assert_eq!(cell_of(bytes("1"), ColumnKind::Boolean).unwrap(), Cell::Int(1));
        assert_eq!(
            cell_of(bytes("18446744073709551615"), ColumnKind::Integer).unwrap(),
            Cell::Text("18446744073709551615".into())
        );
        assert_eq!(
            cell_of(Value::Bytes(vec![0, 0xff]), ColumnKind::Blob).unwrap(),
            Cell::Bytes(vec![0, 0xff])
        );
    }

    #[test]
    fn mysql_limits_refuse_what_would_fail_or_be_rounded() {
        let column = |declared: &str, max_bytes: Option<u64>| Column {
            name: "c".into(),
            kind: ColumnKind::Other,
            declared: declared.into(),
            required: false,
            max_bytes,
        };
        assert!(transfer::fits(Cell::Int(300), &column("tinyint(4)", None)).is_err());
        assert!(transfer::fits(Cell::Int(-1), &column("int(10) unsigned", None)).is_err());
        assert!(transfer::fits(Cell::Int(-1), &column("bigint(20)", None)).is_ok());
        assert!(transfer::fits(Cell::Text("123.456".into()), &column("decimal(10,2)", None)).is_err());
        assert!(transfer::fits(Cell::Text("12345678.5".into()), &column("decimal(10,2)", None)).is_ok());
        assert!(transfer::fits(Cell::Text("123456789.5".into()), &column("decimal(10,2)", None)).is_err());
        assert!(transfer::fits(Cell::Bytes(vec![0; 17]), &column("varbinary(16)", Some(16))).is_err());
        let year_3000 = transfer::parse_timestamp("3000-01-01T00:00:00Z").unwrap();
        assert!(transfer::fits(Cell::Time(year_3000), &column("timestamp", None)).is_err());
        assert!(transfer::fits(Cell::Time(year_3000), &column("datetime(6)", None)).is_ok());
        let fraction = transfer::parse_timestamp("2026-01-01T00:00:00.5Z").unwrap();
        assert!(transfer::fits(Cell::Time(fraction), &column("datetime", None)).is_err());
        assert!(transfer::fits(Cell::Time(fraction), &column("timestamp with time zone", None)).is_ok());
    }
}
