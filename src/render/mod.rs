//! The only code that writes to stdout and stderr: tables, JSON, NDJSON and CSV for
//! data; one-line messages (and JSON error objects) for errors and warnings.

use std::io::{self, BufWriter, IsTerminal, Seek, Write};
use std::sync::{Arc, Mutex};

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;
use serde_json::{Map, Value};
// Columns line up by the columns a cell takes on a terminal, not its characters: a
// CJK character or an emoji takes two. (comfy-table, for key/value tables, measures
// the same way.)
use unicode_width::UnicodeWidthStr;

use crate::context::OutputFormat;

/// Where a run writes: the process's stdout or stderr, or any writer (a buffer in
/// tests). Clones share one writer, so the renderer and the messages of a run can
/// each hold one; every write takes the lock on its own, so a listing being streamed
/// never blocks a message.
#[derive(Clone)]
pub struct Sink {
    writer: Arc<Mutex<Box<dyn Write + Send>>>,
    terminal: bool,
    styled: bool,
}

impl Sink {
    /// Any writer; not a terminal, so it gets no colours, styling or progress bars.
    pub fn new(writer: impl Write + Send + 'static) -> Self {
        Sink {
            writer: Arc::new(Mutex::new(Box::new(writer))),
            terminal: false,
            styled: false,
        }
    }

    /// The process's stdout; styled as clap would style it (a terminal, NO_COLOR...).
    pub fn stdout() -> Self {
        Sink {
            terminal: io::stdout().is_terminal(),
            styled: anstream::AutoStream::choice(&io::stdout()) != anstream::ColorChoice::Never,
            ..Sink::new(io::stdout())
        }
    }

    /// The process's stderr.
    pub fn stderr() -> Self {
        Sink {
            terminal: io::stderr().is_terminal(),
            ..Sink::new(io::stderr())
        }
    }

    /// Whether a person is watching: decides colour with `--color auto`, and progress.
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// Whether help text written here keeps clap's styling.
    pub fn styled(&self) -> bool {
        self.styled
    }

    /// Bytes that are already the output, such as a completion script or help text.
    pub fn raw(&self, bytes: &[u8]) -> io::Result<()> {
        let mut out = self.lock();
        out.write_all(bytes)?;
        out.flush()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Box<dyn Write + Send>> {
        // A panic mid-write leaves nothing to protect: the bytes are out already.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.lock().write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.lock().flush()
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("styled", &self.styled)
            .finish_non_exhaustive()
    }
}

/// Writes command results to the stdout sink in the chosen format.
#[derive(Debug, Clone)]
pub struct Renderer {
    format: OutputFormat,
    stdout: Sink,
}

impl Renderer {
    pub fn new(format: OutputFormat, stdout: Sink) -> Self {
        Renderer { format, stdout }
    }

    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// One entity: an object in JSON, a key/value table for people.
    pub fn object<T: Serialize>(&self, value: &T) -> io::Result<()> {
        let mut out = BufWriter::new(self.stdout.clone());
        write_object(&mut out, self.format, &to_value(value)?)?;
        out.flush()
    }

    /// A listing. `columns` picks what a table shows; the other formats carry every field.
    pub fn list<T, I>(&self, columns: &[&str], rows: I) -> io::Result<()>
    where
        T: Serialize,
        I: IntoIterator<Item = T>,
    {
        let mut out = BufWriter::new(self.stdout.clone());
        write_list(&mut out, self.format, columns, rows)?;
        out.flush()
    }

    /// A listing fed row by row, for results too big to collect.
    pub fn list_writer(&self, columns: &[&str]) -> ListWriter<BufWriter<Sink>> {
        ListWriter::new(
            BufWriter::with_capacity(64 * 1024, self.stdout.clone()),
            self.format,
            columns,
        )
    }

    /// A listing fed row by row but held back (in memory, past 8 MiB in a temporary
    /// file) until [`Renderer::commit_spooled`], so a command that fails halfway leaves
    /// stdout empty.
    pub fn spooled_list_writer(&self, columns: &[&str]) -> SpooledList {
        ListWriter::new(
            BufWriter::with_capacity(64 * 1024, tempfile::spooled_tempfile(8 << 20)),
            self.format,
            columns,
        )
    }

    /// Closes a held-back listing and copies it to stdout.
    pub fn commit_spooled(&self, list: SpooledList) -> io::Result<()> {
        let mut spool = list.finish_into()?.into_inner().map_err(|e| e.into_error())?;
        spool.seek(io::SeekFrom::Start(0))?;
        let mut out = self.stdout.clone();
        io::copy(&mut spool, &mut out)?;
        out.flush()
    }

    /// One value for scripts (`config get`, `db path`): in a table just the text of
    /// `field`, nothing when it is null; a JSON document otherwise.
    pub fn scalar<T: Serialize>(&self, value: &T, field: &str) -> io::Result<()> {
        let mut out = BufWriter::new(self.stdout.clone());
        let value = to_value(value)?;
        match self.format {
            OutputFormat::Table => match value.get(field) {
                None | Some(Value::Null) => {}
                Some(text) => writeln!(out, "{}", cell_text(text))?,
            },
            _ => write_object(&mut out, self.format, &value)?,
        }
        out.flush()
    }

    /// A report with a summary and rows: JSON gets the whole document, NDJSON and CSV
    /// the rows, a table the summary line and then the rows.
    pub fn report<D, T>(&self, line: &str, document: &D, columns: &[&str], rows: &[T]) -> io::Result<()>
    where
        D: Serialize,
        T: Serialize,
    {
        let mut out = BufWriter::new(self.stdout.clone());
        match self.format {
            OutputFormat::Json => write_object(&mut out, self.format, &to_value(document)?)?,
            OutputFormat::Table => {
                writeln!(out, "{line}")?;
                if !rows.is_empty() {
                    writeln!(out)?;
                    write_list(&mut out, self.format, columns, rows)?;
                }
            }
            OutputFormat::Ndjson | OutputFormat::Csv => write_list(&mut out, self.format, columns, rows)?,
        }
        out.flush()
    }
}

fn to_value<T: Serialize>(value: &T) -> io::Result<Value> {
    serde_json::to_value(value).map_err(io::Error::other)
}

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
fn write_object_table(out: &mut impl Write, value: &Value) -> io::Result<()> {
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

/// A progress bar on stderr, or nothing when progress is off (not a terminal,
/// `--quiet`, `--no-progress`).
pub fn progress(enabled: bool) -> Box<dyn crate::ops::Progress> {
    if enabled {
        Box::new(Bar(indicatif::ProgressBar::hidden()))
    } else {
        Box::new(crate::ops::NoProgress)
    }
}

struct Bar(indicatif::ProgressBar);

impl crate::ops::Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        self.0.set_length(total);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tenants {elapsed} (eta {eta})")
        {
            self.0.set_style(style);
        }
    }
    fn advance(&self, done: u64) {
        self.0.inc(done);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// One executed SQL statement on stderr, for `-vv`.
pub fn sql_profile(sql: &str, took: std::time::Duration) {
    let _ = writeln!(
        io::stderr().lock(),
        "sql: {}: {}",
        short_duration(took),
        one_line(sql)
    );
}

/// `412 µs` below a millisecond (most catalog statements), `3.217 ms` above.
fn short_duration(took: std::time::Duration) -> String {
    if took < std::time::Duration::from_millis(1) {
        format!("{} µs", took.as_micros())
    } else {
        format!("{:.3} ms", took.as_secs_f64() * 1000.0)
    }
}

/// Messages to the operator on the stderr sink.
#[derive(Debug, Clone)]
pub struct Messages {
    pub color: bool,
    pub quiet: bool,
    pub verbose: u8,
    pub stderr: Sink,
}

impl Messages {
    /// `error: <what> (<hint>)`, and with JSON output also the error object.
    pub fn error(&self, code: &str, exit_code: u8, message: &str, hint: Option<&str>, json: bool) {
        let label = if self.color {
            "\x1b[1;31merror:\x1b[0m"
        } else {
            "error:"
        };
        let line = one_line(message);
        match hint {
            Some(hint) => self.line(&format!("{label} {line} ({})", one_line(hint))),
            None => self.line(&format!("{label} {line}")),
        }
        if json {
            let object = serde_json::json!({"error": {"code": code, "message": line, "exit_code": exit_code, "hint": hint}});
            self.line(&object.to_string());
        }
    }

    pub fn warning(&self, message: &str) {
        if self.quiet {
            return;
        }
        let label = if self.color {
            "\x1b[1;33mwarning:\x1b[0m"
        } else {
            "warning:"
        };
        self.line(&format!("{label} {}", one_line(message)));
    }

    /// Status talk for people (`created customer acme`); silent with `--quiet`.
    pub fn note(&self, message: &str) {
        if !self.quiet {
            self.line(&one_line(message));
        }
    }

    /// Detail for support, shown with `-v`.
    pub fn debug(&self, message: &str) {
        if self.verbose > 0 {
            self.line(&format!("debug: {}", one_line(message)));
        }
    }

    /// One whole line in one write, so lines from threads never interleave. A
    /// message that cannot be written has nowhere else to go.
    fn line(&self, text: &str) {
        let _ = self.stderr.clone().write_all(format!("{text}\n").as_bytes());
    }
}

fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Builds an object from ordered pairs, for small results that have no struct.
pub fn fields(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map<_, _>>(),
    )
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

    #[test]
    fn sql_timings_show_microseconds_below_a_millisecond() {
        use std::time::Duration;
        assert_eq!(short_duration(Duration::from_nanos(41_900)), "41 µs");
        assert_eq!(short_duration(Duration::from_nanos(999_999)), "999 µs");
        assert_eq!(short_duration(Duration::from_micros(3_217)), "3.217 ms");
    }

    #[test]
    fn error_lines_fold_newlines() {
        assert_eq!(one_line("a\n  b\r\nc"), "a b c");
    }
}
