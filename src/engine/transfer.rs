//! Rows on their way between engines, for `customer move`: each engine describes its
//! tables as [`TableShape`]s, reads rows as [`Cell`]s and writes them back, and this
//! module, which knows no engine, converts a value to the kind of column it goes into
//! and reduces rows to a [`Digest`] both sides can compute.
//!
//! A value converts only when it means the same on the other side: an integer stays
//! an integer, `0`/`1` become booleans, text that reads as a timestamp becomes one,
//! JSON must parse, text must be UTF-8 without NUL. Anything else is refused with the
//! table, column and row named, before any data moves.

use sha2::{Digest as _, Sha256};

/// The logical type of a column, the same word whatever engine declared it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    Integer,
    Real,
    Numeric,
    Boolean,
    Text,
    Blob,
    Timestamp,
    Date,
    Json,
    Uuid,
    /// A type this module does not interpret: its text goes through as it is.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
    /// The type as the engine declares it: its width, and for messages.
    pub declared: String,
    /// NOT NULL.
    pub required: bool,
    /// The most bytes a value may take, where the engine limits it apart from its
    /// declared type's characters (MySQL's `TEXT` and `BLOB` kinds, `VARBINARY(n)`).
    pub max_bytes: Option<u64>,
}

/// One table of a tenant: its columns in order, and the columns of its primary key
/// (empty when it has none, then rows come in the engine's own order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    pub name: String,
    pub columns: Vec<Column>,
    pub key: Vec<String>,
    /// The tables its foreign keys point at, which must be filled first.
    pub references: Vec<String>,
}

impl TableShape {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The same table with only `names`, in that order (each must exist).
    pub fn with_columns(&self, names: &[&str]) -> TableShape {
        TableShape {
            columns: names
                .iter()
                .filter_map(|name| self.column(name).cloned())
                .collect(),
            ..self.clone()
        }
    }
}

/// One value as it travels.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    /// Microseconds since 1970-01-01T00:00:00Z.
    Time(i64),
}

/// A row that cannot go where it is asked to: exit 9 names table, column and row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unconvertible {
    pub table: String,
    pub column: String,
    /// The row's key values (or its position when the table has no key).
    pub row: String,
    pub why: String,
}

impl std::fmt::Display for Unconvertible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "table {}, column {}, row {}: {}",
            self.table, self.column, self.row, self.why
        )
    }
}

/// `cell` as a value of a `kind` column, or why it cannot be one.
pub fn convert(cell: Cell, kind: ColumnKind) -> Result<Cell, String> {
    use ColumnKind as K;
    match (cell, kind) {
        (Cell::Null, _) => Ok(Cell::Null),
        (Cell::Int(n), K::Integer) => Ok(Cell::Int(n)),
        (Cell::Float(x), K::Integer) if x.fract() == 0.0 && x.abs() < 9.0e15 => Ok(Cell::Int(x as i64)),
        (Cell::Bool(b), K::Integer) => Ok(Cell::Int(i64::from(b))),
        (Cell::Text(t), K::Integer) => t
            .trim()
            .parse()
            .map(Cell::Int)
            .map_err(|_| format!("'{}' is not an integer", shown(&t))),
        (Cell::Int(n), K::Real) => Ok(Cell::Float(n as f64)),
        (Cell::Float(x), K::Real) => Ok(Cell::Float(x)),
        (Cell::Text(t), K::Real) => t
            .trim()
            .parse()
            .map(Cell::Float)
            .map_err(|_| format!("'{}' is not a number", shown(&t))),
        (Cell::Int(n), K::Numeric) => Ok(Cell::Text(n.to_string())),
        (Cell::Float(x), K::Numeric) if x.is_finite() => Ok(Cell::Text(float_text(x))),
        (Cell::Text(t), K::Numeric) if is_decimal(t.trim()) => Ok(Cell::Text(t.trim().to_string())),
        (Cell::Bool(b), K::Boolean) => Ok(Cell::Bool(b)),
        (Cell::Int(n @ (0 | 1)), K::Boolean) => Ok(Cell::Bool(n == 1)),
        (Cell::Text(t), K::Boolean) => boolean_text(&t)
            .map(Cell::Bool)
            .ok_or_else(|| format!("'{}' is not a boolean (0/1, true/false)", shown(&t))),
        (Cell::Time(t), K::Timestamp) => Ok(Cell::Time(t)),
        (Cell::Text(t), K::Timestamp) => parse_timestamp(&t).map(Cell::Time).ok_or_else(|| {
            format!(
                "'{}' is not a timestamp (ISO 8601, e.g. 2026-12-03T10:00:00Z)",
                shown(&t)
            )
        }),
        (Cell::Text(t), K::Date) => chrono::NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d")
            .map(|d| Cell::Text(d.format("%Y-%m-%d").to_string()))
            .map_err(|_| format!("'{}' is not a date (YYYY-MM-DD)", shown(&t))),
        (Cell::Time(t), K::Date) => Ok(Cell::Text(timestamp_text(t)[..10].to_string())),
        (Cell::Text(t), K::Json) => serde_json::from_str::<serde_json::Value>(&t)
            .map(|_| Cell::Text(t))
            .map_err(|e| format!("not valid JSON ({e})")),
        (Cell::Text(t), K::Uuid) => uuid_text(&t)
            .map(Cell::Text)
            .ok_or_else(|| format!("'{}' is not a UUID", shown(&t))),
        (Cell::Bytes(b), K::Blob) => Ok(Cell::Bytes(b)),
        (Cell::Text(t), K::Blob) => Ok(Cell::Bytes(t.into_bytes())),
        (Cell::Bytes(b), K::Text | K::Json | K::Other) => match String::from_utf8(b) {
            Ok(t) => convert(Cell::Text(t), kind),
            Err(_) => Err("bytes that are not UTF-8 text".to_string()),
        },
        (Cell::Text(t), K::Text | K::Other) => text(t),
        (Cell::Int(n), K::Text | K::Other) => Ok(Cell::Text(n.to_string())),
        (Cell::Float(x), K::Text | K::Other) => Ok(Cell::Text(float_text(x))),
        (Cell::Bool(b), K::Text | K::Other) => Ok(Cell::Text(b.to_string())),
        (Cell::Time(t), K::Text | K::Other) => Ok(Cell::Text(timestamp_text(t))),
        (cell, kind) => Err(format!(
            "{} cannot be stored in a {} column",
            describe(&cell),
            kind_word(kind)
        )),
    }
}

/// `cell` checked against what its column declares beyond its kind: NOT NULL, the
/// width of an integer (`integer`, `smallint`, MySQL's `int(11) unsigned` and the
/// rest), of text (`varchar(n)`, `char(n)`, a byte limit), the digits of a
/// `decimal(p,s)`, the range and fraction of a MySQL `timestamp` or `datetime(n)`.
/// Each would only fail, or be rounded, once the tenant is frozen.
pub fn fits(cell: Cell, column: &Column) -> Result<Cell, String> {
    if cell == Cell::Null && column.required {
        return Err("NULL in a NOT NULL column".to_string());
    }
    let declared = column.declared.as_str();
    if let (Cell::Text(text), Some(limit)) = (&cell, text_limit(declared)) {
        let length = text.chars().count();
        if length > limit {
            return Err(format!("{length} characters do not fit a {declared} column"));
        }
    }
    let bytes = match &cell {
        Cell::Text(t) => Some(t.len() as u64),
        Cell::Bytes(b) => Some(b.len() as u64),
        _ => None,
    };
    if let (Some(bytes), Some(limit)) = (bytes, column.max_bytes)
        && bytes > limit
    {
        return Err(format!(
            "{bytes} bytes do not fit a {declared} column (at most {limit})"
        ));
    }
    match (&cell, integer_range(declared)) {
        (Cell::Int(n), Some((low, high))) if i128::from(*n) < low || i128::from(*n) > high => {
            return Err(format!("{n} is out of range for a {declared} column"));
        }
        _ => {}
    }
    if let (Cell::Text(text), Some((precision, scale))) = (&cell, decimal_digits(declared)) {
        let digits = text.trim().trim_start_matches(['-', '+']);
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let whole = whole.trim_start_matches('0').len();
        let fraction = fraction.trim_end_matches('0').len();
        if whole + scale > precision || fraction > scale {
            return Err(format!(
                "{} does not fit a {declared} column without rounding",
                shown(text)
            ));
        }
    }
    if let Cell::Time(micros) = &cell {
        check_mysql_time(*micros, declared)?;
    }
    Ok(cell)
}

/// The values an integer column takes, by its declared type: PostgreSQL's names,
/// and MySQL's with their display width and `unsigned`.
fn integer_range(declared: &str) -> Option<(i128, i128)> {
    let lower = declared.to_ascii_lowercase();
    let unsigned = lower.contains("unsigned");
    let name = lower
        .split(['(', ' '])
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let bits: u32 = match name.as_str() {
        "integer" | "int" | "int4" => 32,
        "smallint" | "int2" => 16,
        "tinyint" => 8,
        "mediumint" => 24,
        "bigint" => 64,
        _ => return None,
    };
    Some(match unsigned {
        true => (0, (1i128 << bits) - 1),
        false => (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1),
    })
}

/// `(p, s)` of a `decimal(p,s)` or `numeric(p,s)` (`s` 0 when left out).
fn decimal_digits(declared: &str) -> Option<(usize, usize)> {
    let lower = declared.to_ascii_lowercase();
    let (name, rest) = lower.split_once('(')?;
    if !matches!(name.trim(), "decimal" | "numeric") {
        return None;
    }
    let inside = rest.split(')').next()?;
    let (precision, scale) = inside.split_once(',').unwrap_or((inside, "0"));
    Some((precision.trim().parse().ok()?, scale.trim().parse().ok()?))
}

/// MySQL's `timestamp` holds 1970-01-01 00:00:01 to 2038-01-19 03:14:07 UTC, its
/// `datetime` the years 1000 to 9999; `(n)` says how many fraction digits stay.
fn check_mysql_time(micros: i64, declared: &str) -> Result<(), String> {
    let lower = declared.to_ascii_lowercase();
    let (name, digits) = match lower.split_once('(') {
        Some((name, rest)) => (
            name.trim().to_string(),
            rest.trim_end_matches(')').trim().parse::<u32>().ok(),
        ),
        None => (lower.trim().to_string(), Some(0)),
    };
    let range = match name.as_str() {
        // MySQL's information_schema spells them in lower case; other engines' may be
        // the operator's own spelling.
        _ if lower != declared || digits.is_none() => return Ok(()),
        "timestamp" => (1_000_000, 2_147_483_647_999_999),
        "datetime" => (-30_610_224_000_000_000, 253_402_300_799_999_999),
        _ => return Ok(()),
    };
    if micros < range.0 || micros > range.1 {
        return Err(format!(
            "{} is out of range for a {declared} column",
            timestamp_text(micros)
        ));
    }
    let kept = 10i64.pow(6 - digits.unwrap_or(0).min(6));
    if micros.rem_euclid(kept) != 0 {
        return Err(format!(
            "{} has more fraction digits than a {declared} column keeps",
            timestamp_text(micros)
        ));
    }
    Ok(())
}

/// The length `character varying(n)`, `varchar(n)` or `character(n)` allows.
fn text_limit(declared: &str) -> Option<usize> {
    let lower = declared.to_ascii_lowercase();
    let (name, rest) = lower.split_once('(')?;
    matches!(
        name.trim(),
        "character varying" | "varchar" | "character" | "char"
    )
    .then(|| rest.trim_end_matches(')').trim().parse().ok())
    .flatten()
}

/// Text a server can store: no NUL character, which PostgreSQL refuses in text.
fn text(t: String) -> Result<Cell, String> {
    match t.contains('\0') {
        true => Err("text holding a NUL character".to_string()),
        false => Ok(Cell::Text(t)),
    }
}

fn describe(cell: &Cell) -> &'static str {
    match cell {
        Cell::Null => "NULL",
        Cell::Int(_) => "an integer",
        Cell::Float(_) => "a real number",
        Cell::Bool(_) => "a boolean",
        Cell::Text(_) => "text",
        Cell::Bytes(_) => "a blob",
        Cell::Time(_) => "a timestamp",
    }
}

fn kind_word(kind: ColumnKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// At most 40 characters of a value, for a message.
fn shown(text: &str) -> String {
    let mut shown: String = text.chars().take(40).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    crate::validate::printable(&shown)
}

fn is_decimal(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    !(whole.is_empty() && fraction.is_empty())
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

fn boolean_text(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "yes" | "y" | "on" => Some(true),
        "0" | "f" | "false" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

fn uuid_text(text: &str) -> Option<String> {
    let lower = text.trim().to_ascii_lowercase();
    let hex: String = lower.chars().filter(|c| *c != '-').collect();
    let grouped = [8, 4, 4, 4, 12];
    let dashes_right = lower.len() == 32 || lower.split('-').map(str::len).eq(grouped.iter().copied());
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && dashes_right).then(|| {
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    })
}

/// A real number as both engines print it back: integral values keep one decimal
/// place so they stay real.
pub fn float_text(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_string()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        format!("{x:?}")
    }
}

/// Reads the timestamps SQLite tenants store as text (`2026-12-03T10:00:00Z`,
/// `2026-12-03 10:00:00`, with fractions or an offset) and PostgreSQL prints
/// (`2026-12-03 10:00:00.5+00`). Without an offset the time is UTC.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    let with_offset = [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%#z",
    ];
    for format in with_offset {
        if let Ok(t) = chrono::DateTime::parse_from_str(text, format) {
            return Some(t.timestamp_micros());
        }
    }
    let naive = text.strip_suffix('Z').unwrap_or(text);
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(naive, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    chrono::NaiveDate::parse_from_str(naive, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

/// A timestamp as SQLite tenants keep it: `2026-12-03T10:00:00Z`, with a fraction
/// only when there is one.
pub fn timestamp_text(micros: i64) -> String {
    let Some(time) = chrono::DateTime::from_timestamp_micros(micros) else {
        return micros.to_string();
    };
    match micros.rem_euclid(1_000_000) {
        0 => time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        _ => time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    }
}

/// Rows reduced to a count and a sum of per-row hashes: equal on both sides exactly
/// when the same rows are there, in whatever order each engine returns them (text
/// keys sort differently on each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest {
    pub rows: u64,
    sum: u128,
}

impl Digest {
    /// Adds one row, its values already converted to the columns' kinds.
    pub fn add(&mut self, row: &[Cell], kinds: &[ColumnKind]) {
        let mut hasher = Sha256::new();
        for (cell, kind) in row.iter().zip(kinds) {
            // Each value as its length and bytes, after a mark for NULL: no value can
            // pass for another, nor spill into the next (text `\N`, a separator).
            let mut value = Sha256::new();
            canonical(cell, *kind, &mut value);
            hasher.update([u8::from(*cell == Cell::Null)]);
            hasher.update(value.finalize());
        }
        let hash = hasher.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&hash[..16]);
        self.rows += 1;
        self.sum = self.sum.wrapping_add(u128::from_le_bytes(first));
    }

    pub fn hex(&self) -> String {
        format!("{:032x}", self.sum)
    }
}

/// The canonical text form of one value: what it means, not how an engine spells it.
fn canonical(cell: &Cell, kind: ColumnKind, out: &mut Sha256) {
    match cell {
        Cell::Null => {}
        Cell::Int(n) => out.update(n.to_string()),
        Cell::Float(x) => out.update(float_text(*x)),
        Cell::Bool(b) => out.update(if *b { "t" } else { "f" }),
        Cell::Time(t) => out.update(t.to_string()),
        Cell::Bytes(b) => out.update(b),
        Cell::Text(t) if kind == ColumnKind::Json => match serde_json::from_str(t) {
            Ok(value) => out.update(sorted_json(value).to_string()),
            Err(_) => out.update(t),
        },
        Cell::Text(t) if kind == ColumnKind::Numeric => out.update(numeric_canonical(t)),
        Cell::Text(t) => out.update(t),
    }
}

/// JSON with object keys sorted, as `jsonb` keeps it.
fn sorted_json(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted_json(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted_json).collect())
        }
        other => other,
    }
}

/// A decimal without the trailing zeros that only say how it was written.
fn numeric_canonical(text: &str) -> String {
    let text = text.trim().trim_start_matches('+');
    match text.split_once('.') {
        Some((whole, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            match fraction.is_empty() {
                true => whole.to_string(),
                false => format!("{whole}.{fraction}"),
            }
        }
        None => text.to_string(),
    }
}

/// Orders tables so that each comes after those its foreign keys point at (a cycle
/// keeps the order it had).
pub fn fill_order(tables: &mut [TableShape]) {
    let mut ordered: Vec<TableShape> = Vec::with_capacity(tables.len());
    let mut left: Vec<TableShape> = tables.to_vec();
    while !left.is_empty() {
        let ready = left.iter().position(|t| {
            t.references.iter().all(|r| {
                r == &t.name || ordered.iter().any(|o| &o.name == r) || !left.iter().any(|l| &l.name == r)
            })
        });
        ordered.push(left.remove(ready.unwrap_or(0)));
    }
    tables.clone_from_slice(&ordered);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_values_convert_to_the_kinds_of_postgres_columns() {
        assert_eq!(convert(Cell::Int(1), ColumnKind::Boolean), Ok(Cell::Bool(true)));
        assert!(convert(Cell::Int(2), ColumnKind::Boolean).is_err());
        assert_eq!(
            convert(Cell::Text("2026-12-03T10:00:00Z".into()), ColumnKind::Timestamp),
            convert(Cell::Text("2026-12-03 10:00:00+00".into()), ColumnKind::Timestamp)
        );
        assert!(convert(Cell::Text("yesterday".into()), ColumnKind::Timestamp).is_err());
        assert!(convert(Cell::Text("{\"a\":".into()), ColumnKind::Json).is_err());
        assert!(convert(Cell::Bytes(vec![0xff, 0xfe]), ColumnKind::Text).is_err());
        assert!(convert(Cell::Text("a\0b".into()), ColumnKind::Text).is_err());
        assert_eq!(
            convert(Cell::Text("x".into()), ColumnKind::Blob),
            Ok(Cell::Bytes(b"x".to_vec()))
        );
    }

    #[test]
    fn values_too_wide_or_missing_for_their_column_are_refused() {
        let column = |declared: &str, required: bool| Column {
            name: "c".into(),
            kind: ColumnKind::Other,
            declared: declared.into(),
            required,
            max_bytes: None,
        };
        assert!(fits(Cell::Int(3_000_000_000), &column("integer", false)).is_err());
        assert!(fits(Cell::Int(3_000_000_000), &column("bigint", false)).is_ok());
        assert!(fits(Cell::Int(40_000), &column("smallint", false)).is_err());
        assert!(fits(Cell::Int(-5), &column("INTEGER", false)).is_ok());
        assert!(fits(Cell::Text("abcd".into()), &column("character varying(3)", false)).is_err());
        assert!(fits(Cell::Text("äbc".into()), &column("character varying(3)", false)).is_ok());
        assert!(fits(Cell::Null, &column("text", true)).is_err());
        assert!(fits(Cell::Null, &column("text", false)).is_ok());
    }

    #[test]
    fn timestamps_go_back_to_the_text_they_came_from() {
        for text in ["2026-12-03T10:00:00Z", "2026-12-03T10:00:00.250000Z"] {
            let micros = parse_timestamp(text).unwrap();
            assert_eq!(timestamp_text(micros), text);
        }
        assert_eq!(
            parse_timestamp("2026-12-03 11:00:00+01"),
            parse_timestamp("2026-12-03T10:00:00Z")
        );
    }

    #[test]
    fn digests_ignore_row_order_and_spelling_but_not_values() {
        let kinds = [ColumnKind::Integer, ColumnKind::Json];
        let rows = [
            vec![Cell::Int(1), Cell::Text("{\"b\":1,\"a\":2}".into())],
            vec![Cell::Int(2), Cell::Null],
        ];
        let (mut forward, mut backward) = (Digest::default(), Digest::default());
        rows.iter().for_each(|r| forward.add(r, &kinds));
        rows.iter().rev().for_each(|r| backward.add(r, &kinds));
        assert_eq!(forward, backward);
        let mut respelt = Digest::default();
        respelt.add(&[Cell::Int(1), Cell::Text("{\"a\": 2, \"b\": 1}".into())], &kinds);
        respelt.add(&rows[1], &kinds);
        assert_eq!(forward, respelt);
        let mut changed = Digest::default();
        changed.add(&[Cell::Int(1), Cell::Text("{\"a\": 3, \"b\": 1}".into())], &kinds);
        changed.add(&rows[1], &kinds);
        assert_ne!(forward, changed);
        let (mut null, mut text) = (Digest::default(), Digest::default());
        null.add(
            &[Cell::Int(1), Cell::Null],
            &kinds[..1]
                .iter()
                .chain([&ColumnKind::Text])
                .copied()
                .collect::<Vec<_>>(),
        );
        text.add(
            &[Cell::Int(1), Cell::Text("\\N".into())],
            &[ColumnKind::Integer, ColumnKind::Text],
        );
        assert_ne!(null, text, "NULL and the text \\N differ");
    }

    #[test]
    fn tables_are_filled_after_the_tables_they_reference() {
        let table = |name: &str, refs: &[&str]| TableShape {
            name: name.into(),
            columns: vec![],
            key: vec![],
            references: refs.iter().map(|s| s.to_string()).collect(),
        };
        let mut tables = vec![
            table("order_items", &["orders", "products"]),
            table("orders", &["users"]),
            table("products", &[]),
            table("users", &["users"]),
        ];
        fill_order(&mut tables);
        let names: Vec<_> = tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["products", "users", "orders", "order_items"]);
    }
}
