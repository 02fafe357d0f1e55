//! Tables for people: an object as `key  value` lines with titled sections, and the
//! text of one cell.

use std::io::{self, Write};

use comfy_table::{ContentArrangement, Table, presets};
use serde_json::{Map, Value};

/// Columns two spaces apart, no margin, no trailing blanks.
fn table_text(table: &mut Table) -> String {
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table.trim_fmt()
}

fn new_table() -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .force_no_tty();
    table
}

/// Scalars as `key  value` lines; nested objects and lists as titled sections below.
pub(super) fn write_object_table(out: &mut impl Write, value: &Value) -> io::Result<()> {
    let Some(fields) = value.as_object() else {
        return writeln!(out, "{}", cell_text(value));
    };
    let mut table = new_table();
    let mut sections: Vec<(&String, &Value)> = Vec::new();
    for (key, field) in fields {
        if is_section(field) {
            sections.push((key, field));
        } else {
            table.add_row(vec![key.clone(), cell_text(field)]);
        }
    }
    if !table.is_empty() {
        writeln!(out, "{}", table_text(&mut table))?;
    }
    for (key, field) in sections {
        writeln!(out)?;
        write_section(out, key, field)?;
    }
    Ok(())
}

fn is_section(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => items.iter().all(Value::is_object),
        _ => false,
    }
}

fn write_section(out: &mut impl Write, title: &str, value: &Value) -> io::Result<()> {
    match value {
        Value::Object(map) => {
            writeln!(out, "{title}:")?;
            let mut table = new_table();
            let mut rows = Vec::new();
            flatten("", map, &mut rows);
            for (key, text) in rows {
                table.add_row(vec![format!("  {key}"), text]);
            }
            writeln!(out, "{}", table_text(&mut table))
        }
        Value::Array(items) if items.is_empty() => writeln!(out, "{title}: none"),
        Value::Array(items) => {
            writeln!(out, "{title}:")?;
            let columns: Vec<String> = items[0]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            let mut table = new_table();
            table.set_header(
                columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{}{}", if i == 0 { "  " } else { "" }, c.to_uppercase()))
                    .collect::<Vec<_>>(),
            );
            for item in items {
                let cells = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let text = cell_text(item.get(c).unwrap_or(&Value::Null));
                        if i == 0 { format!("  {text}") } else { text }
                    })
                    .collect::<Vec<_>>();
                table.add_row(cells);
            }
            writeln!(out, "{}", table_text(&mut table))
        }
        other => writeln!(out, "{title}: {}", cell_text(other)),
    }
}

/// Text with control characters escaped, so stored data cannot drive the terminal.
fn visible(text: &str) -> String {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        text.to_string()
    }
}

/// Nested objects as `outer.inner` keys, so a section stays two columns wide.
fn flatten(prefix: &str, map: &Map<String, Value>, rows: &mut Vec<(String, String)>) {
    for (key, value) in map {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) if !inner.is_empty() => flatten(&key, inner, rows),
            other => rows.push((key, cell_text(other))),
        }
    }
}

/// How one value reads in a table cell.
pub fn cell_text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => visible(s),
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            if items.is_empty() {
                "-".to_string()
            } else {
                items.iter().map(cell_text).collect::<Vec<_>>().join(", ")
            }
        }
        Value::Object(map) if map.is_empty() => "-".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::write_object;
    use crate::context::OutputFormat;
    use serde_json::json;

    #[test]
    fn object_table_has_sections() {
        let mut out = Vec::new();
        let value = json!({"slug": "acme", "tags": ["a", "b"], "limits": {"max_sites": 3}, "sites": [{"id": 1, "domain": "x.com"}], "keys": []});
        write_object(&mut out, OutputFormat::Table, &value).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("slug"));
        assert!(text.contains("a, b"));
        assert!(text.contains("limits:"));
        assert!(text.contains("sites:"));
        assert!(text.contains("keys: none"));
    }
}
