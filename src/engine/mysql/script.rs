//! A MySQL tenant's backup is the SQL script `mariadb-dump` writes of its database:
//! run with the admin login in a 0600 option file (`--defaults-extra-file`), never on
//! the command line or in the environment; streamed through tenantctl into the set
//! while it is hashed and read, so that the rows the manifest records for each table
//! are the script's own (its `INSERT` tuples counted) and so is the schema version
//! (the versions in its `refinery_schema_history` rows). A script is whole when it
//! ends with the dump tool's completion marker. The `mariadb` client loads a script
//! back into any database.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use sha2::{Digest, Sha256};

use super::MyUrl;
use super::migrate::HISTORY_TABLE;
use super::tools::MyTools;
use crate::error::{Error, IoContext, NamingFullDisk, Result};

/// The last line of every whole script `mariadb-dump` (and `mysqldump`) writes;
/// with `--skip-dump-date` nothing follows it.
pub const COMPLETION_MARKER: &str = "-- Dump completed";

/// A tool that failed, with what it said: the tenant's failure, not the set's.
#[derive(Debug)]
pub struct ToolFailed(pub String);

/// The admin login in an option file the tools read (`--defaults-extra-file`), mode
/// 0600 in the home; removed when dropped.
pub struct LoginFile(tempfile::NamedTempFile);

impl LoginFile {
    pub fn new(url: &MyUrl, home: &Path) -> Result<LoginFile> {
        let mut file = tempfile::Builder::new()
            .prefix(".tenantctl-mysql-login-")
            .tempfile_in(home)
            .io_context(|| format!("making an option file in {}", home.display()))?;
        file.write_all(url.client_options(None).as_bytes())
            .io_context(|| format!("writing {}", file.path().display()))?;
        file.flush()
            .io_context(|| format!("writing {}", file.path().display()))?;
        Ok(LoginFile(file))
    }

    /// The option that names it: always the first a tool is given.
    fn option(&self) -> String {
        format!("--defaults-extra-file={}", self.0.path().display())
    }
}

/// What a script written into a set holds, read as it was written.
#[derive(Debug)]
pub struct Dumped {
    pub sha256: String,
    pub bytes: u64,
    /// The rows of each table, every table the script makes (none left out).
    pub rows: BTreeMap<String, u64>,
    /// The newest version its history table records.
    pub schema_version: i64,
}

/// `mariadb-dump` of `database` (one consistent snapshot, InnoDB) into `dest`: 0600,
/// synced, hashed and counted on the way. A write that fails is the error; the tool
/// failing, or a script without its completion marker, is [`ToolFailed`]; `dest` is
/// removed either way.
pub fn dump(
    tools: &MyTools,
    login: &LoginFile,
    database: &str,
    dest: &Path,
) -> Result<std::result::Result<Dumped, ToolFailed>> {
    let mut command = Command::new(&tools.dump);
    // Events are left out: they are not moved with a restore's swap, and one would
    // fire in the copy a restore checks before it swaps it in.
    command
        .arg(login.option())
        .args([
            "--single-transaction",
            "--routines",
            "--triggers",
            "--skip-events",
            "--hex-blob",
            "--skip-dump-date",
            "--no-create-db",
            "--no-tablespaces",
            "--default-character-set=utf8mb4",
            "--",
            database,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .io_context(|| format!("starting {}", tools.dump.display()))?;
    let stderr = collect_stderr(&mut child);
    let written = match child.stdout.take() {
        Some(stdout) => write_counted(stdout, dest),
        None => Err(Error::unexpected("mariadb-dump gave no output pipe")),
    };
    if written.is_err() {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .io_context(|| format!("waiting for {}", tools.dump.display()));
    let stderr = stderr.join().unwrap_or_default();
    let outcome = match (written, status) {
        (Err(err), _) | (_, Err(err)) => Err(err),
        (Ok(_), Ok(status)) if !status.success() => Ok(Err(ToolFailed(format!(
            "{} failed: {}",
            tool_name(&tools.dump),
            said(&stderr)
        )))),
        (Ok((_, false)), Ok(_)) => Ok(Err(ToolFailed(format!(
            "{} ended without its completion marker: {}",
            tool_name(&tools.dump),
            said(&stderr)
        )))),
        (Ok((dumped, true)), Ok(_)) => Ok(Ok(dumped)),
    };
    if !matches!(outcome, Ok(Ok(_))) {
        let _ = std::fs::remove_file(dest);
    }
    outcome
}

/// Loads the script `file` into `database` with the `mariadb` client. With
/// `definer` `(from, to)`, the views, triggers and routines the script makes as
/// user `from` are made as user `to` (a copy into another tenant: its objects must
/// run as that tenant's user, who alone has rights on its tables); rows are never
/// rewritten.
pub fn load(
    tools: &MyTools,
    login: &LoginFile,
    database: &str,
    file: &Path,
    definer: Option<(&str, &str)>,
) -> Result<std::result::Result<(), ToolFailed>> {
    let input = std::fs::File::open(file).io_context(|| format!("opening {}", file.display()))?;
    let mut command = Command::new(&tools.client);
    command
        .arg(login.option())
        .args(["--batch", "--default-character-set=utf8mb4"])
        .arg(format!("--database={database}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let Some((from, to)) = definer else {
        let output = command
            .stdin(input)
            .output()
            .io_context(|| format!("running {}", tools.client.display()))?;
        return Ok(tool_outcome(
            tools,
            output.status,
            &String::from_utf8_lossy(&output.stderr),
        ));
    };
    let mut child = command
        .stdin(Stdio::piped())
        .spawn()
        .io_context(|| format!("starting {}", tools.client.display()))?;
    let stderr = collect_stderr(&mut child);
    let written = match child.stdin.take() {
        Some(stdin) => copy_with_definer(input, stdin, from, to),
        None => Ok(()),
    };
    let status = child
        .wait()
        .io_context(|| format!("waiting for {}", tools.client.display()))?;
    let stderr = stderr.join().unwrap_or_default();
    // A client that stopped reading (it failed) breaks the pipe: its own words tell.
    if let Err(err) = written
        && status.success()
    {
        return Err(Error::io(
            format!("feeding {} to the client", file.display()),
            err,
        ));
    }
    Ok(tool_outcome(tools, status, &stderr))
}

fn tool_outcome(
    tools: &MyTools,
    status: std::process::ExitStatus,
    stderr: &str,
) -> std::result::Result<(), ToolFailed> {
    match status.success() {
        true => Ok(()),
        false => Err(ToolFailed(format!(
            "{} failed: {}",
            tool_name(&tools.client),
            said(stderr)
        ))),
    }
}

/// Copies a script line by line, `DEFINER=`from`@` made `DEFINER=`to`@` outside the
/// rows of its `INSERT`s.
fn copy_with_definer(input: impl Read, output: impl Write, from: &str, to: &str) -> std::io::Result<()> {
    let quote = |user: &str| format!("DEFINER=`{}`@", user.replace('`', "``")).into_bytes();
    let (from, to) = (quote(from), quote(to));
    let mut input = BufReader::with_capacity(1 << 20, input);
    let mut output = std::io::BufWriter::with_capacity(1 << 20, output);
    let mut counter = Counter::default();
    let mut line = Vec::with_capacity(1 << 16);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let in_rows = counter.inserting.is_some() || line.starts_with(b"INSERT INTO `");
        counter.line(&line);
        match in_rows {
            true => output.write_all(&line)?,
            false => output.write_all(&replace_all(&line, &from, &to))?,
        }
    }
    output.flush()
}

fn replace_all(line: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut at = 0;
    while at < line.len() {
        if line[at..].starts_with(from) {
            out.extend_from_slice(to);
            at += from.len();
        } else {
            out.push(line[at]);
            at += 1;
        }
    }
    out
}

/// Whether the script at `path` ends with the dump tool's completion marker: one cut
/// short (a full disk, a killed dump) does not.
pub fn is_complete(path: &Path) -> std::result::Result<(), String> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let length = file.metadata().map_err(|e| e.to_string())?.len();
    let start = length.saturating_sub(256);
    file.seek(SeekFrom::Start(start)).map_err(|e| e.to_string())?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&tail);
    let last = text.lines().rev().find(|line| !line.trim().is_empty());
    match last.is_some_and(|line| line.starts_with(COMPLETION_MARKER)) {
        true => Ok(()),
        false => Err(format!(
            "the script does not end with '{COMPLETION_MARKER}': it was cut short"
        )),
    }
}

fn tool_name(program: &Path) -> String {
    program.file_name().map_or_else(
        || program.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The last lines a tool wrote to stderr, as one line.
fn said(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    match tail.is_empty() {
        true => "it said nothing".to_string(),
        false => tail.join("; "),
    }
}

/// Reads a child's stderr on a thread of its own, so that neither pipe can fill up
/// and stall it.
fn collect_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut stderr = child.stderr.take();
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    })
}

/// Writes the script to `dest` line by line, hashing and counting it; returns what it
/// holds and whether its last line is the completion marker.
fn write_counted(input: impl Read, dest: &Path) -> Result<(Dumped, bool)> {
    crate::files::create_private_file(dest)?;
    let mut output = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dest)
        .io_context(|| format!("opening {}", dest.display()))?;
    let mut output = std::io::BufWriter::with_capacity(1 << 20, &mut output);
    let mut input = BufReader::with_capacity(1 << 20, input);
    let mut hasher = Sha256::new();
    let mut counter = Counter::default();
    let mut line = Vec::with_capacity(1 << 16);
    let mut bytes = 0u64;
    let mut last_line = Vec::new();
    loop {
        line.clear();
        let n = match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("reading mariadb-dump's output".to_string(), e)),
        };
        hasher.update(&line);
        output
            .write_all(&line)
            .io_context(|| format!("writing {}", dest.display()))
            .naming_full_disk(dest)?;
        counter.line(&line);
        bytes += n as u64;
        if !line.trim_ascii().is_empty() {
            last_line.clone_from(&line);
        }
    }
    let output = output
        .into_inner()
        .map_err(|e| Error::io(format!("writing {}", dest.display()), e.into_error()))
        .naming_full_disk(dest)?;
    output
        .sync_all()
        .io_context(|| format!("syncing {}", dest.display()))
        .naming_full_disk(dest)?;
    let complete = last_line.starts_with(COMPLETION_MARKER.as_bytes());
    Ok((
        Dumped {
            sha256: crate::files::hex(&hasher.finalize()),
            bytes,
            schema_version: counter.versions.iter().copied().max().unwrap_or(0),
            rows: counter.rows,
        },
        complete,
    ))
}

/// Reads a script as it goes by: every `CREATE TABLE` makes a table with no rows yet,
/// every tuple of an `INSERT INTO … VALUES (…),(…);` is one row of its table. Strings
/// are quoted with `'` and escaped with `\` (a newline in a value is written `\n`), so
/// the state carries over lines: the dump tool writes one tuple per line, or all of
/// them on one.
#[derive(Debug, Default)]
struct Counter {
    rows: BTreeMap<String, u64>,
    versions: Vec<i64>,
    /// The table whose `INSERT` is being read.
    inserting: Option<String>,
    in_string: bool,
    escaped: bool,
    depth: u32,
    /// The first value of a history row, being read.
    version: Option<String>,
}

impl Counter {
    fn line(&mut self, line: &[u8]) {
        if self.inserting.is_some() {
            self.scan(line);
            return;
        }
        if let Some(rest) = line.strip_prefix(b"CREATE TABLE `")
            && let Some((name, _)) = quoted_name(rest)
        {
            self.rows.entry(name).or_default();
        } else if let Some(rest) = line.strip_prefix(b"INSERT INTO `")
            && let Some((name, after)) = quoted_name(rest)
        {
            self.rows.entry(name.clone()).or_default();
            self.inserting = Some(name);
            self.scan(after);
        }
    }

    fn scan(&mut self, bytes: &[u8]) {
        let history = self.inserting.as_deref() == Some(HISTORY_TABLE);
        for &b in bytes {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'\'' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'\'' => self.in_string = true,
                b'(' => {
                    if self.depth == 0 {
                        if let Some(table) = &self.inserting {
                            *self.rows.entry(table.clone()).or_default() += 1;
                        }
                        if history {
                            self.version = Some(String::new());
                        }
                    }
                    self.depth += 1;
                }
                b')' | b',' if self.depth == 1 && self.version.is_some() => {
                    if let Some(version) = self.version.take().and_then(|v| v.trim().parse().ok()) {
                        self.versions.push(version);
                    }
                    if b == b')' {
                        self.depth -= 1;
                    }
                }
                b')' => self.depth = self.depth.saturating_sub(1),
                b';' if self.depth == 0 => {
                    self.inserting = None;
                    return;
                }
                other => {
                    if let Some(version) = &mut self.version {
                        version.push(char::from(other));
                    }
                }
            }
        }
    }
}

/// A name quoted with backticks (a backtick in it doubled), after the opening one,
/// and what follows it.
fn quoted_name(text: &[u8]) -> Option<(String, &[u8])> {
    let mut name = Vec::new();
    let mut at = 0;
    while at < text.len() {
        if text[at] == b'`' {
            if text.get(at + 1) == Some(&b'`') {
                name.push(b'`');
                at += 2;
                continue;
            }
            return Some((String::from_utf8_lossy(&name).into_owned(), &text[at + 1..]));
        }
        name.push(text[at]);
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(script: &str) -> Counter {
        let mut counter = Counter::default();
        for line in script.split_inclusive('\n') {
            counter.line(line.as_bytes());
        }
        counter
    }

    #[test]
    fn tuples_are_counted_whatever_their_strings_hold() {
        let counter = count(
            "CREATE TABLE `a` (\n  `id` int\n);\nCREATE TABLE `e``x` (\n);\n\
             INSERT INTO `a` VALUES\n(1,'x\\'y\\n(z),',0x62),\n(2,NULL,'a;b');\n\
             INSERT INTO `a` VALUES (3,'\\\\'),(4,')');\n\
             INSERT INTO `refinery_schema_history` VALUES (1,'V1__users','x','1'),(3,'V3__o','y','2');\n\
             -- Dump completed\n",
        );
        assert_eq!(counter.rows["a"], 4);
        assert_eq!(counter.rows["e`x"], 0);
        assert_eq!(counter.rows[HISTORY_TABLE], 2);
        assert_eq!(counter.versions, [1, 3]);
        assert!(counter.inserting.is_none());
    }

    #[test]
    fn definers_are_rewritten_outside_the_rows() {
        let script = "/*!50003 CREATE*/ /*!50017 DEFINER=`tenant_a`@`localhost`*/ /*!50003 TRIGGER t */;;\n\
                      INSERT INTO `notes` VALUES\n('DEFINER=`tenant_a`@`%`');\n\
                      /*!50013 DEFINER=`tenant_a`@`%` SQL SECURITY DEFINER */\n";
        let mut out = Vec::new();
        copy_with_definer(script.as_bytes(), &mut out, "tenant_a", "tenant_b").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            script
                .replace("DEFINER=`tenant_a`@`localhost`", "DEFINER=`tenant_b`@`localhost`")
                .replace("50013 DEFINER=`tenant_a`", "50013 DEFINER=`tenant_b`")
        );
    }
}
