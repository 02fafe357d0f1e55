//! A server tenant's tables and rows as a move reads and writes them: `COPY … TO
//! STDOUT` and `COPY … FROM STDIN` in text format on an admin connection, with the
//! session's time zone and formats fixed so both sides of a move read alike.

use std::io::{BufRead, BufReader, BufWriter, Write};

use postgres::Client;

use super::sql::ident;
use super::tenant::PgTenant;
use crate::engine::transfer::{self, Cell, Column, ColumnKind, TableShape};
use crate::error::{Error, Result};

/// Formats that make every server print values the same way.
const SESSION: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET bytea_output = 'hex';
     SET extra_float_digits = 1; SET IntervalStyle = 'postgres'";

impl PgTenant {
    /// The schema its tables are in: `public` of its own database, or its own schema.
    pub(super) fn tables_schema(&self) -> String {
        match self.server.schema_mode() {
            true => self.name().to_string(),
            false => "public".to_string(),
        }
    }

    pub(super) fn qualified(&self, table: &str) -> String {
        format!("{}.{}", ident(&self.tables_schema()), ident(table))
    }

    /// An admin connection to its database with the session formats set; put back
    /// as it was afterwards.
    pub(super) fn with_session<T>(&self, work: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        let mut admin = self.server.admin(Some(&self.database()?))?;
        self.server.run(&mut admin, SESSION)?;
        let result = work(&mut admin);
        if admin.batch_execute("RESET ALL").is_err() {
            admin.discard();
        }
        result
    }

    pub(super) fn shapes(&self) -> Result<Vec<TableShape>> {
        let schema = self.tables_schema();
        self.with_session(|admin| {
            let columns = admin
                .query(
                    "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text,
                            array_position(i.indkey::int2[], a.attnum), a.attnotnull
                     FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                                        AND a.attgenerated = ''
                     JOIN pg_type t ON t.oid = a.atttypid
                     LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
                     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                       AND c.relname <> 'refinery_schema_history'
                     ORDER BY c.relname, a.attnum",
                    &[&schema],
                )
                .map_err(|e| self.server.fail(&e))?;
            let references = admin
                .query(
                    "SELECT DISTINCT c.relname::text, f.relname::text
                     FROM pg_constraint k
                     JOIN pg_class c ON c.oid = k.conrelid
                     JOIN pg_class f ON f.oid = k.confrelid
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE k.contype = 'f' AND n.nspname = $1",
                    &[&schema],
                )
                .map_err(|e| self.server.fail(&e))?;
            let mut tables: Vec<TableShape> = Vec::new();
            let mut keys: Vec<Vec<(i32, String)>> = Vec::new();
            for row in columns {
                let table: String = row.get(0);
                if tables.last().is_none_or(|t| t.name != table) {
                    tables.push(TableShape {
                        name: table.clone(),
                        columns: Vec::new(),
                        key: Vec::new(),
                        references: Vec::new(),
                    });
                    keys.push(Vec::new());
                }
                let name: String = row.get(1);
                if let Some(position) = row.get::<_, Option<i32>>(4) {
                    keys.last_mut().expect("pushed above").push((position, name.clone()));
                }
                let type_name: String = row.get(3);
                tables.last_mut().expect("pushed above").columns.push(Column {
                    name,
                    kind: kind_of(&type_name),
                    declared: row.get(2),
                    required: row.get(5),
                    max_bytes: None,
                });
            }
            for (table, mut key) in tables.iter_mut().zip(keys) {
                key.sort();
                table.key = key.into_iter().map(|(_, name)| name).collect();
                table.references = references
                    .iter()
                    .filter(|r| r.get::<_, String>(0) == table.name)
                    .map(|r| r.get(1))
                    .collect();
            }
            Ok(tables)
        })
    }

    fn column_list(table: &TableShape) -> String {
        table
            .columns
            .iter()
            .map(|c| ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(super) fn copy_rows_out(
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
            "COPY (SELECT {} FROM {}{order}) TO STDOUT",
            Self::column_list(table),
            self.qualified(&table.name)
        );
        let kinds: Vec<ColumnKind> = table.columns.iter().map(|c| c.kind).collect();
        self.with_session(|admin| {
            let reader = admin.copy_out(&statement).map_err(|e| self.server.fail(&e))?;
            let mut lines = BufReader::with_capacity(1 << 16, reader);
            let mut line = Vec::new();
            loop {
                line.clear();
                let read = lines.read_until(b'\n', &mut line).map_err(|e| {
                    Error::io(
                        format!("reading {} from {}", table.name, self.describe_short()),
                        e,
                    )
                })?;
                if read == 0 {
                    return Ok(());
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                each(parse_line(&line, &kinds)?)?;
            }
        })
    }

    fn describe_short(&self) -> String {
        format!("{} on server {}", self.name(), self.server.name())
    }

    pub(super) fn copy_rows_in(
        &self,
        table: &TableShape,
        next: &mut dyn FnMut() -> Result<Option<Vec<Cell>>>,
    ) -> Result<u64> {
        let statement = format!(
            "COPY {} ({}) FROM STDIN",
            self.qualified(&table.name),
            Self::column_list(table)
        );
        // The rows arrive as they were, already the work of any trigger the tenant's
        // migrations made: such a trigger must not run again (or refuse) here. Only
        // the user's triggers: the foreign-key checks still hold.
        let triggers = |on: &str| format!("ALTER TABLE {} {on} TRIGGER USER", self.qualified(&table.name));
        self.with_session(|admin| {
            self.server.run(admin, &triggers("DISABLE"))?;
            let writer = admin.copy_in(&statement).map_err(|e| self.server.fail(&e))?;
            let mut out = BufWriter::with_capacity(1 << 16, writer);
            let mut line = Vec::new();
            let mut written = 0u64;
            while let Some(row) = next()? {
                line.clear();
                format_line(&row, &mut line);
                out.write_all(&line)
                    .map_err(|e| Error::unexpected(format!("writing {}: {e}", table.name)))?;
                written += 1;
            }
            let writer = out
                .into_inner()
                .map_err(|e| Error::unexpected(format!("writing {}: {}", table.name, e.error())))?;
            writer.finish().map_err(|e| {
                Error::unexpected(format!(
                    "loading table {} into {}: {}",
                    table.name,
                    self.describe_short(),
                    super::describe(&e)
                ))
            })?;
            self.server.run(admin, &triggers("ENABLE"))?;
            Ok(written)
        })
    }

    /// Each sequence a column of the tenant's tables owns (identity or serial) goes
    /// past the highest value there.
    pub(super) fn move_sequences_past_ids(&self) -> Result<()> {
        let schema = self.tables_schema();
        self.with_session(|admin| {
            let owned = admin
                .query(
                    "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), quote_ident(a.attname),
                            pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname)
                     FROM pg_attribute a
                     JOIN pg_class c ON c.oid = a.attrelid
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
                       AND pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname)
                           IS NOT NULL",
                    &[&schema],
                )
                .map_err(|e| self.server.fail(&e))?;
            for row in owned {
                let (table, column, sequence): (String, String, String) = (row.get(0), row.get(1), row.get(2));
                admin
                    .execute(
                        &format!("SELECT setval($1::text::regclass, coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)"),
                        &[&sequence],
                    )
                    .map_err(|e| self.server.fail(&e))?;
            }
            Ok(())
        })
    }

    pub(super) fn exact_count(&self, table: &TableShape) -> Result<u64> {
        let statement = format!("SELECT count(*) FROM {}", self.qualified(&table.name));
        self.with_session(|admin| {
            admin
                .query_one(&statement, &[])
                .map(|row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
                .map_err(|e| self.server.fail(&e))
        })
    }

    /// Count and order-independent sum of a 64-bit hash of each row in PostgreSQL's
    /// own text form of the row: computed by the server, nothing crosses the network.
    /// `hashtextextended` is many times cheaper than md5, and this digest guards
    /// against a copy gone wrong, not against an adversary.
    pub(super) fn server_digest(&self, table: &TableShape) -> Result<String> {
        let statement = format!(
            "SELECT count(*)::text || ':' || coalesce(sum(hashtextextended(ROW({})::text, 0)::numeric), 0)::text
             FROM {}",
            Self::column_list(table),
            self.qualified(&table.name)
        );
        self.with_session(|admin| {
            admin
                .query_one(&statement, &[])
                .map(|row| row.get(0))
                .map_err(|e| self.server.fail(&e))
        })
    }
}

/// The kind of a PostgreSQL type, by its name in `pg_type`.
fn kind_of(type_name: &str) -> ColumnKind {
    match type_name {
        "int2" | "int4" | "int8" | "oid" => ColumnKind::Integer,
        "float4" | "float8" => ColumnKind::Real,
        "numeric" | "money" => ColumnKind::Numeric,
        "bool" => ColumnKind::Boolean,
        "text" | "varchar" | "bpchar" | "name" | "citext" => ColumnKind::Text,
        "bytea" => ColumnKind::Blob,
        "timestamp" | "timestamptz" => ColumnKind::Timestamp,
        "date" => ColumnKind::Date,
        "json" | "jsonb" => ColumnKind::Json,
        "uuid" => ColumnKind::Uuid,
        _ => ColumnKind::Other,
    }
}

/// One line of `COPY` text output as cells of the columns' kinds.
fn parse_line(line: &[u8], kinds: &[ColumnKind]) -> Result<Vec<Cell>> {
    let mut cells = Vec::with_capacity(kinds.len());
    for (field, kind) in line.split(|b| *b == b'\t').zip(kinds) {
        cells.push(parse_field(field, *kind)?);
    }
    if cells.len() != kinds.len() {
        return Err(Error::unexpected("a COPY row had fewer fields than columns"));
    }
    Ok(cells)
}

fn parse_field(field: &[u8], kind: ColumnKind) -> Result<Cell> {
    if field == b"\\N" {
        return Ok(Cell::Null);
    }
    let raw = unescape(field);
    let text =
        String::from_utf8(raw).map_err(|_| Error::unexpected("the server sent text that is not UTF-8"))?;
    let bad = || Error::unexpected(format!("the server sent '{text}' for a {kind:?} column"));
    Ok(match kind {
        ColumnKind::Integer => Cell::Int(text.parse().map_err(|_| bad())?),
        ColumnKind::Real => Cell::Float(match text.as_str() {
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            other => other.parse().map_err(|_| bad())?,
        }),
        ColumnKind::Boolean => Cell::Bool(text == "t"),
        ColumnKind::Blob => {
            Cell::Bytes(hex_bytes(text.strip_prefix("\\x").ok_or_else(bad)?).ok_or_else(bad)?)
        }
        ColumnKind::Timestamp => Cell::Time(transfer::parse_timestamp(&text).ok_or_else(bad)?),
        _ => Cell::Text(text),
    })
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

/// Undoes `COPY`'s text escapes: `\\`, `\t`, `\n` and the rest, octal and hex bytes.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] != b'\\' || i + 1 == field.len() {
            out.push(field[i]);
            i += 1;
            continue;
        }
        let next = field[i + 1];
        i += 2;
        match next {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut value = u32::from(next - b'0');
                let mut digits = 1;
                while digits < 3 && i < field.len() && (b'0'..=b'7').contains(&field[i]) {
                    value = value * 8 + u32::from(field[i] - b'0');
                    i += 1;
                    digits += 1;
                }
                out.push(value as u8);
            }
            b'x' if i < field.len() && field[i].is_ascii_hexdigit() => {
                let end = (i + 2).min(field.len());
                let digits = if field.get(i + 1).is_some_and(u8::is_ascii_hexdigit) {
                    end
                } else {
                    i + 1
                };
                let value = std::str::from_utf8(&field[i..digits])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(value.unwrap_or(0));
                i = digits;
            }
            other => out.push(other),
        }
    }
    out
}

/// One row as a line of `COPY` text input.
fn format_line(row: &[Cell], out: &mut Vec<u8>) {
    for (i, cell) in row.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match cell {
            Cell::Null => out.extend_from_slice(b"\\N"),
            Cell::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Cell::Float(x) => out.extend_from_slice(transfer::float_text(*x).as_bytes()),
            Cell::Bool(b) => out.push(if *b { b't' } else { b'f' }),
            Cell::Text(t) => escape_into(t.as_bytes(), out),
            Cell::Bytes(b) => {
                out.extend_from_slice(b"\\\\x");
                for byte in b {
                    out.extend_from_slice(format!("{byte:02x}").as_bytes());
                }
            }
            Cell::Time(t) => {
                let text = chrono::DateTime::from_timestamp_micros(*t)
                    .map(|time| time.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
                    .unwrap_or_default();
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
    out.push(b'\n');
}

fn escape_into(text: &[u8], out: &mut Vec<u8>) {
    for byte in text {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            other => out.push(*other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_round_trips_every_kind_of_cell() {
        let row = vec![
            Cell::Null,
            Cell::Int(-7),
            Cell::Float(1.5),
            Cell::Bool(true),
            Cell::Text("tab\there\nline \\ back".into()),
            Cell::Bytes(vec![0, 1, 0xff]),
            Cell::Time(1_700_000_000_123_456),
        ];
        let kinds = [
            ColumnKind::Text,
            ColumnKind::Integer,
            ColumnKind::Real,
            ColumnKind::Boolean,
            ColumnKind::Text,
            ColumnKind::Blob,
            ColumnKind::Timestamp,
        ];
        let mut line = Vec::new();
        format_line(&row, &mut line);
        line.pop();
        assert_eq!(parse_line(&line, &kinds).unwrap(), row);
    }
}
