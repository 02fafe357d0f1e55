//! Writing a backup set: online-backup copies (consistent while others write), each
//! checked and hashed, unchanged tenants hard-linked from an earlier set, the manifest
//! written last, and the folder renamed into place only when all of it is durable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::{
    BackupSet, CopyStamp, Entry, Fingerprint, MANIFEST, Manifest, PARALLEL_FROM_BYTES, TMP_PREFIX, beside,
    copy_hashed, list_sets, new_id, sha256_file,
};
use crate::error::{Error, IoContext, Result};
use crate::{files, tenantdb, time};

/// A tenant database to back up.
#[derive(Debug, Clone)]
pub struct TenantSource {
    pub customer_id: i64,
    pub customer_slug: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct SetRequest<'a> {
    pub label: Option<String>,
    pub kind: &'a str,
    pub catalog_schema_version: i64,
    pub tenants: Vec<TenantSource>,
    pub jobs: usize,
}

/// A tenant left out of a set, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub customer: String,
    pub reason: String,
}

/// Writes a new set into `backup_dir`. `catalog` is backed up when given. Tenants whose
/// file is missing or unreadable are left out and reported; anything else that fails
/// removes the unfinished set and returns the error.
pub fn create_set(
    backup_dir: &Path,
    catalog: Option<&Connection>,
    request: &SetRequest<'_>,
) -> Result<(BackupSet, Vec<Skipped>)> {
    files::create_private_dir(backup_dir)?;
    let started = Utc::now();
    let id = new_id(started);
    let tmp = backup_dir.join(format!("{TMP_PREFIX}{id}"));
    files::create_private_dir(&tmp.join("tenants"))?;
    files::restrict_mode(&tmp, files::PRIVATE_DIR_MODE)?;
    // Held while the set is written, so that prune never removes it as a leftover.
    let in_progress = std::fs::File::open(&tmp).io_context(|| format!("opening {}", tmp.display()))?;
    in_progress
        .lock()
        .io_context(|| format!("locking {}", tmp.display()))?;
    let result = fill_set(backup_dir, &tmp, &id, started, catalog, request);
    drop(in_progress);
    match result {
        Ok(done) => Ok(done),
        Err(err) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(err)
        }
    }
}

fn fill_set(
    backup_dir: &Path,
    tmp: &Path,
    id: &str,
    started: chrono::DateTime<Utc>,
    catalog: Option<&Connection>,
    request: &SetRequest<'_>,
) -> Result<(BackupSet, Vec<Skipped>)> {
    let mut entries = Vec::new();
    if let Some(catalog) = catalog {
        let dest = tmp.join("catalog.db");
        snapshot(catalog, &dest)?;
        entries.push(checked_entry(
            &dest,
            "catalog.db",
            "catalog",
            None,
            None,
            None,
            None,
        )?);
    }
    let previous = previous_entries(backup_dir, &request.tenants)?;
    let (tenant_entries, skipped) = backup_tenants(tmp, request, &previous)?;
    entries.extend(tenant_entries);
    files::fsync_dir(&tmp.join("tenants"))?;
    let manifest = Manifest {
        id: id.to_string(),
        created_at: time::format(started),
        finished_at: time::now(),
        label: request.label.clone(),
        kind: request.kind.to_string(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        catalog_schema_version: request.catalog_schema_version,
        entries,
    };
    let text = serde_json::to_vec_pretty(&manifest)?;
    files::write_atomic(&tmp.join(MANIFEST), &text)?;
    let dir = backup_dir.join(id);
    std::fs::rename(tmp, &dir).io_context(|| format!("moving the finished set to {}", dir.display()))?;
    files::fsync_dir(backup_dir)?;
    Ok((BackupSet { dir, manifest }, skipped))
}

/// For each tenant, the newest earlier entry of it and the file it can be linked from.
fn previous_entries(
    backup_dir: &Path,
    tenants: &[TenantSource],
) -> Result<HashMap<i64, (Entry, PathBuf, String)>> {
    let mut wanted: std::collections::HashSet<i64> = tenants.iter().map(|t| t.customer_id).collect();
    let mut found = HashMap::new();
    for set in list_sets(backup_dir)?.into_iter().rev() {
        if wanted.is_empty() {
            break;
        }
        for entry in &set.manifest.entries {
            if let Some(id) = entry
                .customer_id
                .filter(|id| entry.scope == "tenant" && wanted.contains(id))
                && let Ok(file) = set.file(entry)
            {
                wanted.remove(&id);
                found.insert(id, (entry.clone(), file, set.manifest.id.clone()));
            }
        }
    }
    Ok(found)
}

fn backup_tenants(
    tmp: &Path,
    request: &SetRequest<'_>,
    previous: &HashMap<i64, (Entry, PathBuf, String)>,
) -> Result<(Vec<Entry>, Vec<Skipped>)> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<Copied>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..request.jobs.max(1).min(request.tenants.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(tenant) = request.tenants.get(index) else {
                        break;
                    };
                    let result = backup_tenant(tmp, tenant, previous.get(&tenant.customer_id));
                    if let Ok(mut all) = results.lock() {
                        all.push((index, result));
                    }
                }
            });
        }
    });
    let mut results = results
        .into_inner()
        .map_err(|_| Error::unexpected("a backup worker panicked"))?;
    results.sort_by_key(|(index, _)| *index);
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    for (index, result) in results {
        match result? {
            Copied::Entry(entry) => entries.push(*entry),
            Copied::Unreadable(reason) => skipped.push(Skipped {
                customer: request.tenants[index].customer_slug.clone(),
                reason,
            }),
        }
    }
    Ok((entries, skipped))
}

/// A tenant's part of a set: its entry, or why its database could not be read. A
/// tenant we cannot read is left out and reported; one we cannot write fails the set.
enum Copied {
    Entry(Box<Entry>),
    Unreadable(String),
}

fn unreadable_source(err: &Error) -> bool {
    match err {
        Error::Sqlite(e) => matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
        ),
        _ => false,
    }
}

/// A failure while writing a copy, said so that the operator knows where to look.
fn writing_failed(dest: &Path, err: Error) -> Error {
    let full =
        matches!(&err, Error::Sqlite(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull));
    let why = if full {
        "the disk is full".to_string()
    } else {
        err.to_string()
    };
    Error::unexpected(format!(
        "writing the backup copy {} failed: {why}",
        dest.display()
    ))
    .with_hint("check free space and limits where the backups go (--backup-dir)")
}

fn backup_tenant(
    tmp: &Path,
    tenant: &TenantSource,
    previous: Option<&(Entry, PathBuf, String)>,
) -> Result<Copied> {
    if let Err(err) = tenantdb::refuse_symlink(&tenant.path) {
        return Ok(Copied::Unreadable(err.to_string()));
    }
    if !tenant.path.is_file() {
        return Ok(Copied::Unreadable(format!(
            "{} is missing",
            tenant.path.display()
        )));
    }
    let relative = format!("tenants/{}.db", tenant.customer_slug);
    let dest = tmp.join(&relative);
    let fingerprint = Fingerprint::of(&tenant.path);
    // Unchanged since the previous set (same file, size and change times): share its copy.
    // The earlier copy must itself be as it was written, and may vanish under a prune.
    if let Some((entry, file, set_id)) = previous
        && fingerprint.is_some()
        && entry.source == fingerprint
        && entry.copy.is_some()
        && entry.copy == CopyStamp::of(file)
        && std::fs::hard_link(file, &dest).is_ok()
    {
        return Ok(Copied::Entry(Box::new(Entry {
            file: relative,
            linked_from: Some(entry.linked_from.clone().unwrap_or_else(|| set_id.clone())),
            ..entry.clone()
        })));
    }
    let source = match open_source(&tenant.path) {
        Ok(source) => source,
        Err(err) if unreadable_source(&err) => return Ok(Copied::Unreadable(err.to_string())),
        Err(err) => return Err(err),
    };
    let mut keep_open = Vec::new();
    let copied = match copy_consistent(&source, &tenant.path, &dest, &mut keep_open) {
        Ok(Some(checked)) => Ok(Some(checked)),
        Ok(None) => snapshot(&source, &dest).map(|()| None),
        Err(err) => Err(err),
    };
    let known = match copied {
        Ok(sum) => sum,
        Err(err) => {
            let _ = std::fs::remove_file(&dest);
            return if unreadable_source(&err) {
                Ok(Copied::Unreadable(err.to_string()))
            } else {
                Err(writing_failed(&dest, err))
            };
        }
    };
    drop(source);
    drop(keep_open);
    let mut entry = checked_entry(
        &dest,
        &relative,
        "tenant",
        Some(tenant.customer_id),
        Some(tenant.customer_slug.clone()),
        fingerprint,
        known,
    )?;
    // Changed metadata but the same bytes (a checkpoint, say): keep one copy on disk.
    if let Some((old, file, set_id)) = previous
        && old.sha256 == entry.sha256
        && old.copy.is_some()
        && old.copy == CopyStamp::of(file)
    {
        let shared = dest.with_extension("link");
        if std::fs::hard_link(file, &shared).is_ok() {
            std::fs::rename(&shared, &dest).io_context(|| format!("replacing {}", dest.display()))?;
            entry.linked_from = Some(old.linked_from.clone().unwrap_or_else(|| set_id.clone()));
            entry.copy = old.copy.clone();
        }
    }
    Ok(Copied::Entry(Box::new(entry)))
}

/// Opens a live database for reading a snapshot without checkpointing it on close, so
/// that backing up does not itself change the file it fingerprints.
fn open_source(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    // Pages are read straight from the mapped file instead of into a page cache.
    conn.pragma_update(None, "mmap_size", 1i64 << 40)?;
    Ok(conn)
}

/// The fast path for a quiet database: when its WAL can be folded in and stays empty
/// while a read transaction is held, no checkpoint can touch the main file (none may
/// pass a reader's mark), so a plain byte copy of it is that transaction's snapshot.
/// The copy is hashed as it is written. Returns `None` when the WAL is in use; the
/// caller then takes the online backup.
fn copy_consistent(
    source: &Connection,
    source_path: &Path,
    dest: &Path,
    keep_open: &mut Vec<std::fs::File>,
) -> Result<Option<Checked>> {
    // SQLite follows a symlinked database to its real name, and so must we: its WAL
    // sits beside the real file.
    let Ok(real) = std::fs::canonicalize(source_path) else {
        return Ok(None);
    };
    // Folding the WAL in must not hold the live app's writers up for long.
    source.busy_timeout(Duration::from_millis(200))?;
    let checkpoint = source.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0));
    source.busy_timeout(Duration::from_secs(30))?;
    if !matches!(checkpoint, Ok(0)) || source.execute_batch("BEGIN").is_err() {
        return Ok(None);
    }
    let result = (|| -> Result<Option<Checked>> {
        if source
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))
            .is_err()
        {
            return Ok(None);
        }
        let wal = &files::sqlite_side_files(&real)[0];
        match std::fs::metadata(wal) {
            Ok(meta) if meta.len() == 0 => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            _ => return Ok(None),
        }
        // Closing a descriptor of the database would drop this process's POSIX locks
        // on it, SQLite's included: it stays open until the connection is gone,
        // whatever happens to the copy.
        keep_open.push(std::fs::File::open(&real).io_context(|| format!("reading {}", real.display()))?);
        let input = &keep_open[keep_open.len() - 1];
        // The snapshot is checked through the transaction (while its bytes are copied,
        // for a large file): the copy is those bytes, and reading it back would cost
        // another pass.
        let parallel = input.metadata().is_ok_and(|m| m.len() >= PARALLEL_FROM_BYTES);
        let (sum, schema_version) = beside(
            parallel,
            || copy_around_cache(input, &real, dest),
            || inspect(source, dest),
        );
        let sum = sum?;
        let schema_version = schema_version?;
        Ok(Some(Checked {
            sha256: sum,
            schema_version,
        }))
    })();
    let _ = source.execute_batch("COMMIT");
    if !matches!(result, Ok(Some(_))) {
        let _ = std::fs::remove_file(dest);
    }
    result
}

/// Copies a quiet database file through this process (read, hash, O_DIRECT write),
/// around the page cache: a backup is not read again soon, and a fleet's worth of
/// copies would push out the pages the live databases need (and on some machines
/// allocating those pages costs more than writing them).
fn copy_around_cache(input: &std::fs::File, real: &Path, dest: &Path) -> Result<String> {
    let output = files::create_for_copy(dest)?;
    let sum = copy_hashed(input, real, &output, dest, as_standalone)?;
    output
        .sync_all()
        .io_context(|| format!("syncing {}", dest.display()))?;
    Ok(sum)
}

/// A byte copy of a WAL database whose WAL is empty is a standalone file: its header
/// says rollback journal (bytes 18 and 19), as the online backup's copies do.
fn as_standalone(header: &mut [u8]) {
    if header.len() >= 20 && header[18] == 2 && header[19] == 2 {
        header[18] = 1;
        header[19] = 1;
    }
}

/// Copies `source` to a new single-file database at `dest` (mode 0600, rollback
/// journal, synced) with SQLite's online backup: one step, so the copy is one
/// consistent snapshot even while other processes write.
pub fn snapshot(source: &Connection, dest: &Path) -> Result<()> {
    files::create_private_file(dest)?;
    let mut target = Connection::open_with_flags(
        dest,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // A half-written copy is thrown away, never recovered: no journal, one fsync at the end.
    target.pragma_update(None, "journal_mode", "OFF")?;
    target.pragma_update(None, "synchronous", "OFF")?;
    {
        let backup = Backup::new(source, &mut target)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    return Err(Error::refused(format!(
                        "the source of {} stayed locked",
                        dest.display()
                    )));
                }
            }
        }
    }
    target.pragma_update(None, "journal_mode", "DELETE")?;
    target.close().map_err(|(_, e)| e)?;
    files::fsync_file(dest)
}

/// What checking a copy found: its SHA-256 and the schema version it holds.
struct Checked {
    sha256: String,
    schema_version: i64,
}

/// Runs quick_check through `conn` and reads its schema version; `copy` names the
/// file in the error.
fn inspect(conn: &Connection, copy: &Path) -> Result<i64> {
    let verdict: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if verdict != "ok" {
        return Err(Error::verification(format!(
            "the copy {} fails quick_check: {verdict}",
            copy.display()
        )));
    }
    // Catalog and tenant databases both record their migrations with refinery.
    Ok(tenantdb::applied_migrations(conn)?
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0))
}

/// Describes a fresh copy for the manifest, checking it with quick_check first unless
/// `known` says it was checked as it was made.
fn checked_entry(
    path: &Path,
    relative: &str,
    scope: &str,
    customer_id: Option<i64>,
    customer_slug: Option<String>,
    source: Option<Fingerprint>,
    known: Option<Checked>,
) -> Result<Entry> {
    let checked = match known {
        Some(checked) => checked,
        None => Checked {
            schema_version: inspect(&tenantdb::open_tenant(path)?, path)?,
            sha256: sha256_file(path)?,
        },
    };
    Ok(Entry {
        scope: scope.to_string(),
        customer_id,
        customer_slug,
        file: relative.to_string(),
        bytes: std::fs::metadata(path)
            .io_context(|| format!("reading {}", path.display()))?
            .len(),
        sha256: checked.sha256,
        schema_version: checked.schema_version,
        source,
        linked_from: None,
        copy: CopyStamp::of(path),
    })
}
