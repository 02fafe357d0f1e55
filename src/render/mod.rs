//! The only code that writes to stdout and stderr: tables, JSON, NDJSON and CSV for
//! data; one-line messages (and JSON error objects) for errors and warnings.

use std::io::{self, BufWriter, IsTerminal, Seek, Write};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

use crate::context::OutputFormat;

mod formats;
mod messages;
mod progress;
mod table;

pub use formats::{ListWriter, SpooledList, TABLE_SAMPLE, write_list, write_object};
pub use messages::{Messages, fields};
pub use progress::{progress, sql_profile};
pub use table::cell_text;

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
            // Written as it is serialized: an import of 100,000 files would otherwise
            // hold its report twice, once as a JSON value. The same bytes as
            // `write_object` while no report holds a `RawValue` (a site's config),
            // which that path would re-indent.
            OutputFormat::Json => {
                serde_json::to_writer_pretty(&mut out, document)?;
                writeln!(out)?;
            }
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

pub(super) fn to_value<T: Serialize>(value: &T) -> io::Result<Value> {
    serde_json::to_value(value).map_err(io::Error::other)
}
