//! Server tenants in backup sets, through the server's own tools: `pg_dump -Fc` of one
//! tenant inside a snapshot tenantctl exported after counting the tenant's rows in
//! it (so the manifest's counts are the archive's), and `pg_restore` of an archive
//! into a fresh database. The tools get the login through their environment
//! (`PGPASSWORD`), never their arguments, which any user can read.

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

/// The rows of each table: every table of the database outside the system schemas,
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
         WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema'
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

/// `pg_dump -Fc` of the database the environment names, in `snapshot` (exported by a
/// transaction the caller keeps open until this returns), only schema `schema` when
/// given. Writes the archive to `dest` (0600, synced) while hashing it; returns its
/// SHA-256 and size. A write that fails is the error; pg_dump failing is
/// [`ToolFailed`], and `dest` is removed either way.
pub fn dump(
    tools: &DumpTools,
    env: &ToolEnv,
    snapshot: &str,
    schema: Option<&str>,
    dest: &Path,
) -> Result<std::result::Result<(String, u64), ToolFailed>> {
    let mut command = tool(&tools.pg_dump, env);
    // Level 1: on a million-row table half the default's time for 4 % more
    // bytes; a nightly fleet backup is bound by the CPU, not the disk.
    command.args([
        "--format=custom",
        "--compress=1",
        "--no-password",
        "--snapshot",
        snapshot,
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
