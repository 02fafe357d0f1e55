//! Objects and listings in each output format: JSON, NDJSON, CSV, and tables that
//! stream once their column widths are known.

use std::io::{self, BufWriter, Write};

use serde::Serialize;
use serde_json::Value;
// Columns line up by the columns a cell takes on a terminal, not its characters: a
// CJK character or an emoji takes two. (comfy-table, for key/value tables, measures
// the same way.)
use unicode_width::UnicodeWidthStr;

use super::table::{cell_text, write_object_table};
use super::to_value;
use crate::context::OutputFormat;

pub fn write_object(out: &mut impl Write, format: OutputFormat, value: &Value) -> io::Result<()> {
    match format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, value)?;
            writeln!(out)
        }
        OutputFormat::Ndjson => {
            serde_json::to_writer(&mut *out, value)?;
            writeln!(out)
        }
        OutputFormat::Csv => {
            let fields = value.as_object().cloned().unwrap_or_default();
            write_csv_line(out, fields.keys().map(String::as_str))?;
            write_csv_line(
                out,
                fields
                    .values()
                    .map(csv_text)
                    .collect::<Vec<_>>()
                    .iter()
                    .map(String::as_str),
            )
        }
        OutputFormat::Table => write_object_table(out, value),
    }
}

pub fn write_list<T, I>(
    out: &mut impl Write,
    format: OutputFormat,
    columns: &[&str],
    rows: I,
) -> io::Result<()>
where
    T: Serialize,
    I: IntoIterator<Item = T>,
{
    let mut writer = ListWriter::new(out, format, columns);
    for row in rows {
        writer.row(&row)?;
    }
    writer.finish()
}

/// Writes a listing one row at a time, so big listings stream in flat memory. JSON is
/// an array with one compact object a line. A table sizes its columns from the first
/// [`TABLE_SAMPLE`] rows, as kubectl does, then streams the rest.
pub struct ListWriter<W: Write> {
    out: W,
    format: OutputFormat,
    columns: Vec<String>,
    /// Table rows held back until the column widths are known.
    sample: Vec<Vec<String>>,
    widths: Option<Vec<usize>>,
    rows: usize,
}

pub const TABLE_SAMPLE: usize = 500;

/// A listing held back until the command has succeeded.
pub type SpooledList = ListWriter<BufWriter<tempfile::SpooledTempFile>>;

impl<W: Write> ListWriter<W> {
    pub fn new(out: W, format: OutputFormat, columns: &[&str]) -> Self {
        ListWriter {
            out,
            format,
            columns: columns.iter().map(|c| c.to_string()).collect(),
            sample: Vec::new(),
            widths: None,
            rows: 0,
        }
    }

    /// The table columns this listing was made with.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn row<T: Serialize>(&mut self, row: &T) -> io::Result<()> {
        match self.format {
            OutputFormat::Json => {
                self.out.write_all(if self.rows == 0 { b"[\n" } else { b",\n" })?;
                serde_json::to_writer(&mut self.out, row)?;
            }
            OutputFormat::Ndjson => {
                serde_json::to_writer(&mut self.out, row)?;
                self.out.write_all(b"\n")?;
            }
            OutputFormat::Csv => {
                let value = to_value(row)?;
                let fields = value.as_object().cloned().unwrap_or_default();
                if self.rows == 0 {
                    write_csv_line(&mut self.out, fields.keys().map(String::as_str))?;
                }
                let cells: Vec<String> = fields.values().map(csv_text).collect();
                write_csv_line(&mut self.out, cells.iter().map(String::as_str))?;
            }
            OutputFormat::Table => {
                let value = to_value(row)?;
                let cells: Vec<String> = self
                    .columns
                    .iter()
                    .map(|c| cell_text(value.get(c.as_str()).unwrap_or(&Value::Null)))
                    .collect();
                if self.widths.is_some() {
                    self.write_cells(&cells)?;
                } else {
                    self.sample.push(cells);
                    if self.sample.len() >= TABLE_SAMPLE {
                        self.flush_sample()?;
                    }
                }
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Fixes the column widths from the header and the sample, and writes them.
    fn flush_sample(&mut self) -> io::Result<()> {
        let header: Vec<String> = self.columns.iter().map(|c| c.to_uppercase()).collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.width()).collect();
        for row in &self.sample {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.width());
            }
        }
        self.widths = Some(widths);
        self.write_cells(&header)?;
        for row in std::mem::take(&mut self.sample) {
            self.write_cells(&row)?;
        }
        Ok(())
    }

    fn write_cells(&mut self, cells: &[String]) -> io::Result<()> {
        let widths = self.widths.as_deref().unwrap_or_default();
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.width()) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(self.out, "{}", line.trim_end())
    }

    /// Closes the listing.
    pub fn finish(self) -> io::Result<()> {
        self.finish_into().map(drop)
    }

    /// Closes the listing and hands back where it was written.
    pub fn finish_into(mut self) -> io::Result<W> {
        match self.format {
            OutputFormat::Json if self.rows == 0 => self.out.write_all(b"[]\n")?,
            OutputFormat::Json => self.out.write_all(b"\n]\n")?,
            OutputFormat::Table if self.widths.is_none() => self.flush_sample()?,
            OutputFormat::Table | OutputFormat::Ndjson | OutputFormat::Csv => {}
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

fn csv_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn write_csv_line<'a>(out: &mut impl Write, cells: impl Iterator<Item = &'a str>) -> io::Result<()> {
    let mut line = String::new();
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            line.push(',');
        }
        if cell.contains([',', '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&cell.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(cell);
        }
    }
    writeln!(out, "{line}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list_text(format: OutputFormat, rows: &[Value]) -> String {
        let mut out = Vec::new();
        write_list(&mut out, format, &["id", "slug"], rows.iter()).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lists_in_every_format() {
        let rows = vec![
            json!({"id": 1, "slug": "a", "meta": {"k": 1}}),
            json!({"id": 2, "slug": "b,c", "meta": {}}),
        ];
        let parsed: Value = serde_json::from_str(&list_text(OutputFormat::Json, &rows)).unwrap();
        assert_eq!(parsed, Value::Array(rows.clone()));
        let nd = list_text(OutputFormat::Ndjson, &rows);
        assert_eq!(nd.lines().count(), 2);
        assert_eq!(
            serde_json::from_str::<Value>(nd.lines().next().unwrap()).unwrap(),
            rows[0]
        );
        let csv = list_text(OutputFormat::Csv, &rows);
        assert_eq!(csv, "id,slug,meta\n1,a,\"{\"\"k\"\":1}\"\n2,\"b,c\",{}\n");
        let table = list_text(OutputFormat::Table, &rows);
        assert!(table.starts_with("ID"), "{table}");
        assert!(table.contains("b,c"));
        assert!(!table.contains("meta"));
    }

    #[test]
    fn table_columns_line_up_by_display_width() {
        let rows = vec![
            json!({"id": "東京", "slug": "a"}),
            json!({"id": "😀x", "slug": "b"}),
            json!({"id": "abcde", "slug": "c"}),
        ];
        let table = list_text(OutputFormat::Table, &rows);
        let starts: Vec<usize> = table
            .lines()
            .map(|line| line[..line.rfind(' ').unwrap() + 1].width())
            .collect();
        assert_eq!(starts, [7, 7, 7, 7], "{table}");
    }

    #[test]
    fn empty_json_list_is_an_empty_array() {
        assert_eq!(list_text(OutputFormat::Json, &[]).trim(), "[]");
        assert_eq!(list_text(OutputFormat::Csv, &[]), "");
    }
}
