//! Server tenants in backup sets, through the server's own tools: `pg_dump -Fc` of one
//! tenant, read back whole with its rows counted (so the manifest's counts are the
//! archive's own), and `pg_restore` of an archive into a fresh database. The tools
//! get the login through their environment (`PGPASSWORD`), never their arguments,
//! which any user can read.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use postgres::Client;
use sha2::{Digest, Sha256};

use super::{DumpTools, sql};
use crate::error::{Error, IoContext, NamingFullDisk, Result};
use crate::files;

/// The `PG*` variables a tool connects with (see [`super::PgUrl::tool_env`]).
pub type ToolEnv = Vec<(&'static str, String)>;

/// A tool that failed, with what it said: the tenant's failure, not the set's.
#[derive(Debug)]
pub struct ToolFailed(pub String);

/// The rows of each table that holds them (a partitioned table's are its partitions',
/// as in an archive): every table of the database outside the system schemas,
/// or with `only_own` those of schema `own` alone. A table in `own` is keyed by its
/// name, any other by `schema.name`, so that the keys of a tenant's tables do not
/// depend on what its schema is called.
pub fn row_counts(
    client: &mut Client,
    own: &str,
    only_own: bool,
) -> std::result::Result<BTreeMap<String, u64>, postgres::Error> {
    let tables = client.query(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND n.nspname <> 'information_schema'
           AND n.nspname NOT LIKE 'pg\\_%' AND (NOT $2 OR n.nspname = $1)
         ORDER BY 1, 2",
        &[&own, &only_own],
    )?;
    let names: Vec<(String, String)> = tables.iter().map(|row| (row.get(0), row.get(1))).collect();
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    // One round trip for every table.
    let query = names
        .iter()
        .enumerate()
        .map(|(i, (schema, table))| {
            format!(
                "SELECT {i}, count(*) FROM {}.{}",
                sql::ident(schema),
                sql::ident(table)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let mut counts = BTreeMap::new();
    for row in client.query(&query, &[])? {
        let (at, count): (i32, i64) = (row.get(0), row.get(1));
        let (schema, table) = &names[usize::try_from(at).unwrap_or(0)];
        let key = match schema == own {
            true => table.clone(),
            false => format!("{schema}.{table}"),
        };
        counts.insert(key, u64::try_from(count).unwrap_or(0));
    }
    Ok(counts)
}

/// Where counts differ, said as one line; `None` when they agree.
pub fn compare_rows(expected: &BTreeMap<String, u64>, found: &BTreeMap<String, u64>) -> Option<String> {
    let mut differences = Vec::new();
    for (table, rows) in expected {
        match found.get(table) {
            Some(seen) if seen == rows => {}
            Some(seen) => differences.push(format!("{table}: {seen} rows, the backup had {rows}")),
            None => differences.push(format!("{table} is missing")),
        }
    }
    differences.extend(
        found
            .keys()
            .filter(|t| !expected.contains_key(*t))
            .map(|t| format!("{t} was not in the backup")),
    );
    (!differences.is_empty()).then(|| differences.join("; "))
}

fn tool(program: &Path, env: &ToolEnv) -> Command {
    let mut command = Command::new(program);
    // Only the login given here: none of the caller's own connection settings.
    for name in [
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGHOSTADDR",
        "PGPASSFILE",
        "PGDATABASE",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    command.stdin(Stdio::null());
    command
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

/// `pg_dump -Fc` of the database the environment names (one snapshot of it), only
/// schema `schema` when given. Writes the archive to `dest` (0600, synced) while
/// hashing it; returns its SHA-256 and size. A write that fails is the error; pg_dump
/// failing is [`ToolFailed`], and `dest` is removed either way.
pub fn dump(
    tools: &DumpTools,
    env: &ToolEnv,
    schema: Option<&str>,
    dest: &Path,
) -> Result<std::result::Result<(String, u64), ToolFailed>> {
    let mut command = tool(&tools.pg_dump, env);
    // Level 1: on a million-row table half the default's time for 4 % more bytes; a
    // nightly fleet backup is bound by the CPU, not the disk. Grants are left out (a
    // restore makes every object the tenant role's and applies none), and so are
    // publications, subscriptions and security labels, which no tenant's data is:
    // each costs pg_dump catalog queries, and together they were a tenth of its work
    // on a small tenant.
    command.args([
        "--format=custom",
        "--compress=1",
        "--no-password",
        "--no-acl",
        "--no-publications",
        "--no-subscriptions",
        "--no-security-labels",
    ]);
    if let Some(schema) = schema {
        // Quoted, so that it is the one schema of that exact name, not a pattern.
        command.arg(format!("--schema=\"{schema}\""));
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .io_context(|| format!("starting {}", tools.pg_dump.display()))?;
    let stderr = collect_stderr(&mut child);
    let written = match child.stdout.take() {
        Some(stdout) => write_hashed(stdout, dest),
        None => Err(Error::unexpected("pg_dump gave no output pipe")),
    };
    if written.is_err() {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .io_context(|| format!("waiting for {}", tools.pg_dump.display()));
    let stderr = stderr.join().unwrap_or_default();
    let outcome = match (written, status) {
        (Err(err), _) | (_, Err(err)) => Err(err),
        (Ok(_), Ok(status)) if !status.success() => {
            Ok(Err(ToolFailed(format!("pg_dump failed: {}", said(&stderr)))))
        }
        (Ok(done), Ok(_)) => Ok(Ok(done)),
    };
    if !matches!(outcome, Ok(Ok(_))) {
        let _ = std::fs::remove_file(dest);
    }
    outcome
}

fn write_hashed(mut input: impl Read, dest: &Path) -> Result<(String, u64)> {
    files::create_private_file(dest)?;
    let mut output = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dest)
        .io_context(|| format!("opening {}", dest.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("reading pg_dump's output".to_string(), e)),
        };
        hasher.update(&buffer[..n]);
        output
            .write_all(&buffer[..n])
            .io_context(|| format!("writing {}", dest.display()))
            .naming_full_disk(dest)?;
        bytes += n as u64;
    }
    output
        .sync_all()
        .io_context(|| format!("syncing {}", dest.display()))
        .naming_full_disk(dest)?;
    Ok((files::hex(&hasher.finalize()), bytes))
}

/// What an archive holds, read back through `pg_restore`: the rows of each table's
/// data, by schema and table, and the first column (the version) of each row of
/// every `refinery_schema_history` table, by schema.
#[derive(Debug, Default)]
pub struct ReadBack {
    rows: BTreeMap<(String, String), u64>,
    versions: BTreeMap<String, Vec<i64>>,
}

impl ReadBack {
    /// Row counts keyed as [`row_counts`] keys them.
    pub fn rows_keyed_for(&self, own: &str) -> BTreeMap<String, u64> {
        self.rows
            .iter()
            .map(|((schema, table), rows)| {
                let key = match schema == own {
                    true => table.clone(),
                    false => format!("{schema}.{table}"),
                };
                (key, *rows)
            })
            .collect()
    }

    /// The newest migration the history table in schema `own` records.
    pub fn newest_version(&self, own: &str) -> i64 {
        self.versions
            .get(own)
            .and_then(|versions| versions.iter().max().copied())
            .unwrap_or(0)
    }

    /// Takes one line of `pg_restore --data-only` output. A table's data is a `COPY`
    /// line, one line per row (a newline inside a value is written `\n`), then `\.`.
    fn line(&mut self, line: &str, table: &mut Option<(String, String)>) {
        match table {
            Some(_) if line == "\\." => *table = None,
            Some(current) => {
                *self.rows.entry(current.clone()).or_default() += 1;
                if current.1 == HISTORY_TABLE
                    && let Some(version) = line.split('\t').next().and_then(|v| v.parse().ok())
                {
                    self.versions.entry(current.0.clone()).or_default().push(version);
                }
            }
            None => {
                if let Some(named) = line.strip_prefix("COPY ").and_then(copy_target) {
                    self.rows.entry(named.clone()).or_default();
                    *table = Some(named);
                }
            }
        }
    }
}

/// The history table refinery keeps, in every tenant.
const HISTORY_TABLE: &str = "refinery_schema_history";

/// `schema.table` of a `COPY schema.table (…) FROM stdin;` line, after `COPY `; each
/// part quoted when it needs to be, as pg_dump writes it.
fn copy_target(rest: &str) -> Option<(String, String)> {
    let (schema, rest) = identifier(rest)?;
    let (table, _) = identifier(rest.strip_prefix('.')?)?;
    Some((schema, table))
}

/// One SQL identifier at the start of `text`, unquoted, and what follows it.
fn identifier(text: &str) -> Option<(String, &str)> {
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text.find(['.', ' ', '(']).unwrap_or(text.len());
        return (end > 0).then(|| (text[..end].to_string(), &text[end..]));
    };
    let mut name = String::new();
    let mut chars = quoted.char_indices();
    while let Some((at, c)) = chars.next() {
        if c != '"' {
            name.push(c);
            continue;
        }
        match quoted[at + 1..].starts_with('"') {
            true => {
                name.push('"');
                chars.next();
            }
            false => return Some((name, &quoted[at + 1..])),
        }
    }
    None
}

/// Reads the whole archive back (`pg_restore --data-only` to a pipe: every block of
/// data decompressed), counting each table's rows as it goes. pg_restore failing is
/// [`ToolFailed`]: the archive is not whole.
pub fn read_back(tools: &DumpTools, archive: &Path) -> Result<std::result::Result<ReadBack, ToolFailed>> {
    use std::io::BufRead;
    let mut command = tool(&tools.pg_restore, &Vec::new());
    command.args(["--data-only", "--file=-"]).arg(archive);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .io_context(|| format!("starting {}", tools.pg_restore.display()))?;
    let stderr = collect_stderr(&mut child);
    let mut read = ReadBack::default();
    let mut table = None;
    if let Some(stdout) = child.stdout.take() {
        let mut lines = std::io::BufReader::with_capacity(1 << 20, stdout);
        let mut line = Vec::new();
        while matches!(lines.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line));
            read.line(&text, &mut table);
            line.clear();
        }
    }
    let status = child
        .wait()
        .io_context(|| format!("waiting for {}", tools.pg_restore.display()))?;
    let stderr = stderr.join().unwrap_or_default();
    Ok(match status.success() {
        true => Ok(read),
        false => Err(ToolFailed(format!("pg_restore failed: {}", said(&stderr)))),
    })
}

/// `pg_restore` of `archive` into `database`, every object made by and belonging to
/// `role` (whatever role owned it when dumped: `--into` copies another tenant's data),
/// in one transaction that stops at the first error; with `list`, only what that
/// table of contents names.
pub fn restore(
    tools: &DumpTools,
    env: &ToolEnv,
    archive: &Path,
    database: &str,
    role: &str,
    list: Option<&Path>,
) -> Result<std::result::Result<(), ToolFailed>> {
    let mut command = tool(&tools.pg_restore, env);
    command.args([
        "--no-owner",
        "--no-acl",
        "--exit-on-error",
        "--single-transaction",
        "--no-password",
    ]);
    command.arg(format!("--role={role}"));
    command.arg(format!("--dbname={database}"));
    if let Some(list) = list {
        command.arg(format!("--use-list={}", list.display()));
    }
    command.arg(archive);
    run(command, &tools.pg_restore)
}

/// `pg_dump -Fc` of one database piped straight into `pg_restore` of another (on
/// another server, say), nothing written to disk: every object made by `role`, in
/// one transaction that stops at the first error. Uncompressed: the pipe is local.
pub fn pipe(
    pg_dump: &Path,
    from: &ToolEnv,
    restore_tools: &DumpTools,
    to: &ToolEnv,
    database: &str,
    role: &str,
) -> Result<std::result::Result<(), ToolFailed>> {
    let mut dump = tool(pg_dump, from);
    dump.args([
        "--format=custom",
        "--compress=0",
        "--no-password",
        "--no-acl",
        "--no-publications",
        "--no-subscriptions",
        "--no-security-labels",
    ]);
    dump.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut dumping = dump
        .spawn()
        .io_context(|| format!("starting {}", pg_dump.display()))?;
    let dump_said = collect_stderr(&mut dumping);
    let archive = dumping
        .stdout
        .take()
        .ok_or_else(|| Error::unexpected("pg_dump gave no output pipe"))?;
    let mut restore = tool(&restore_tools.pg_restore, to);
    restore.args([
        "--no-owner",
        "--no-acl",
        "--exit-on-error",
        "--single-transaction",
        "--no-password",
    ]);
    restore.arg(format!("--role={role}"));
    restore.arg(format!("--dbname={database}"));
    restore
        .stdin(Stdio::from(archive))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let restored = restore
        .spawn()
        .io_context(|| format!("starting {}", restore_tools.pg_restore.display()));
    let mut restoring = match restored {
        Ok(child) => child,
        Err(err) => {
            let _ = dumping.kill();
            let _ = dumping.wait();
            return Err(err);
        }
    };
    let restore_said = collect_stderr(&mut restoring);
    let restore_status = restoring
        .wait()
        .io_context(|| format!("waiting for {}", restore_tools.pg_restore.display()))?;
    if !restore_status.success() {
        // pg_dump may be blocked on a pipe nobody reads any more.
        let _ = dumping.kill();
    }
    let dump_status = dumping
        .wait()
        .io_context(|| format!("waiting for {}", pg_dump.display()))?;
    let (dump_said, restore_said) = (
        dump_said.join().unwrap_or_default(),
        restore_said.join().unwrap_or_default(),
    );
    Ok(match (dump_status.success(), restore_status.success()) {
        (true, true) => Ok(()),
        (_, false) => Err(ToolFailed(format!("pg_restore failed: {}", said(&restore_said)))),
        (false, true) => Err(ToolFailed(format!("pg_dump failed: {}", said(&dump_said)))),
    })
}

/// The archive's table of contents (`pg_restore --list`), which pg_restore can only
/// print when the archive's header and table of contents are whole.
pub fn contents(tools: &DumpTools, archive: &Path) -> Result<std::result::Result<String, ToolFailed>> {
    let mut command = tool(&tools.pg_restore, &Vec::new());
    command.arg("--list").arg(archive);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let output = command
        .output()
        .io_context(|| format!("running {}", tools.pg_restore.display()))?;
    Ok(match output.status.success() {
        true => Ok(String::from_utf8_lossy(&output.stdout).into_owned()),
        false => Err(ToolFailed(format!(
            "pg_restore --list failed: {}",
            said(&String::from_utf8_lossy(&output.stderr))
        ))),
    })
}

/// `pg_dump -Fc` of schema `schema` of the environment's database straight into a
/// file, outside any snapshot (a scratch database nobody else writes).
pub fn dump_schema(
    tools: &DumpTools,
    env: &ToolEnv,
    schema: &str,
    dest: &Path,
) -> Result<std::result::Result<(), ToolFailed>> {
    let mut command = tool(&tools.pg_dump, env);
    command.args(["--format=custom", "--no-password"]);
    command.arg(format!("--schema=\"{schema}\""));
    command.arg(format!("--file={}", dest.display()));
    run(command, &tools.pg_dump)
}

fn run(mut command: Command, program: &Path) -> Result<std::result::Result<(), ToolFailed>> {
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    let output = command
        .output()
        .io_context(|| format!("running {}", program.display()))?;
    let name = program.file_name().map_or_else(
        || program.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(match output.status.success() {
        true => Ok(()),
        false => Err(ToolFailed(format!(
            "{name} failed: {}",
            said(&String::from_utf8_lossy(&output.stderr))
        ))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&str]) -> ReadBack {
        let mut read = ReadBack::default();
        let mut table = None;
        for line in lines {
            read.line(line, &mut table);
        }
        read
    }

    #[test]
    fn rows_are_counted_per_table_and_the_history_gives_the_version() {
        let read = read(&[
            "--",
            "COPY public.refinery_schema_history (version, name, applied_on, checksum) FROM stdin;",
            "1\tinitial\t2026-12-01\t1",
            "3\tthird\t2026-12-01\t3",
            "\\.",
            "COPY public.\"Odd \"\"name\" (id) FROM stdin;",
            "1",
            "\\.",
            "COPY public.empty (id) FROM stdin;",
            "\\.",
            "COPY audit.log (id) FROM stdin;",
            "a\\nb",
            "\\.",
        ]);
        let rows = read.rows_keyed_for("public");
        assert_eq!(rows["refinery_schema_history"], 2);
        assert_eq!(rows["Odd \"name"], 1);
        assert_eq!(rows["empty"], 0);
        assert_eq!(rows["audit.log"], 1);
        assert_eq!(read.newest_version("public"), 3);
        assert_eq!(read.newest_version("audit"), 0);
    }
}
