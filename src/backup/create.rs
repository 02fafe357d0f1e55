//! Writing a backup set: online-backup copies (consistent while others write), each
//! checked and hashed, unchanged tenants hard-linked from an earlier set, the manifest
//! written last, and the folder renamed into place only when all of it is durable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::states::{BackupKind, EntryScope, SetScope};
use super::{BackupSet, CopyStamp, Entry, Fingerprint, MANIFEST, Manifest, Skipped, list_sets, new_id};
use crate::engine::{BackedUp, BackupTarget, TenantDatabase, sqlite};
use crate::error::{Error, ErrorKind, IoContext, NamingFullDisk, Result};
use crate::fan_out::{Lanes, fan_out_all_in_lanes};
use crate::files::{PARALLEL_FROM_BYTES, beside, copy_hashed, sha256_file};
use crate::{files, time};

/// A tenant database to back up.
#[derive(Clone)]
pub struct TenantSource {
    pub customer_id: i64,
    pub customer_slug: String,
    pub database: Arc<dyn TenantDatabase>,
}

impl std::fmt::Debug for TenantSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantSource")
            .field("customer_id", &self.customer_id)
            .field("customer_slug", &self.customer_slug)
            .field("database", &self.database.describe())
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct SetRequest {
    pub label: Option<String>,
    pub kind: BackupKind,
    /// Recorded in the manifest.
    pub scope: SetScope,
    pub catalog_schema_version: i64,
    pub tenants: Vec<TenantSource>,
    pub jobs: usize,
    /// How the tenants share out: each database server's in a lane of its own,
    /// bounded by its connections. `None`: all in one lane of `jobs`.
    pub lanes: Option<crate::fan_out::Lanes>,
    /// Entries of copies already made elsewhere (replaced server tenants a restore
    /// keeps on their server), put into the manifest as they are.
    pub kept: Vec<Entry>,
    /// Keep a damaged live database (tenant or catalog) as its raw bytes, marked
    /// damaged, instead of leaving it out or failing: what a pre-restore set needs,
    /// since the damage is usually what the restore is for.
    pub keep_damaged: bool,
    /// A live catalog that SQLite cannot open at all, with the reason: its raw bytes
    /// go into the set, marked damaged (a catalog restore is what mends it).
    pub unreadable_catalog: Option<(PathBuf, String)>,
}

/// What [`create_set`] did.
#[derive(Debug)]
pub enum Created {
    Set(Box<BackupSet>),
    /// Not one database could be copied, so no set was written: a set holding nothing
    /// restores nothing and would only look like a backup to `restore --at` and prune.
    Nothing {
        skipped: Vec<Skipped>,
    },
}

/// Writes a new set into `backup_dir`. `catalog` is backed up when given. Tenants whose
/// file is missing, unreadable or damaged are left out and listed in the manifest's
/// `skipped` (or, with `keep_damaged`, kept raw); when that leaves nothing, no set is
/// written. Anything else that fails removes the unfinished set and returns the error.
pub fn create_set(backup_dir: &Path, catalog: Option<&Connection>, request: &SetRequest) -> Result<Created> {
    files::create_private_dir(backup_dir)?;
    let started = Utc::now();
    let id = new_id(started);
    let (tmp, in_progress) = start_set_folder(backup_dir, &super::tmp_name(&id, request.kind))?;
    let result = fill_set(backup_dir, &tmp, &id, started, catalog, request);
    if !matches!(result, Ok(Created::Set(_))) {
        // Still locked, so that no cleanup removes the same folder alongside.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    drop(in_progress);
    result
}

/// Makes the folder a set is written in, `backup_dir/<tmp_name>`, and returns it with
/// the lock that marks it as being written. It is made under a `.new-` name that no
/// cleanup touches for minutes, locked, and only then renamed (the lock stays with the
/// open folder): so a `.tmp-` folder nobody holds locked is always a dead writer's.
fn start_set_folder(backup_dir: &Path, tmp_name: &str) -> Result<(PathBuf, std::fs::File)> {
    let unique = tmp_name.strip_prefix(super::TMP_PREFIX).unwrap_or(tmp_name);
    let new = backup_dir.join(format!("{}{unique}", super::NEW_PREFIX));
    let tmp = backup_dir.join(tmp_name);
    files::create_private_dir(&new)?;
    let locked = (|| -> Result<std::fs::File> {
        files::restrict_mode(&new, files::PRIVATE_DIR_MODE)?;
        let folder = std::fs::File::open(&new).io_context(|| format!("opening {}", new.display()))?;
        folder
            .lock()
            .io_context(|| format!("locking {}", new.display()))?;
        std::fs::rename(&new, &tmp)
            .io_context(|| format!("renaming {} to {}", new.display(), tmp.display()))?;
        Ok(folder)
    })();
    let folder = match locked {
        Ok(folder) => folder,
        Err(err) => {
            let _ = std::fs::remove_dir_all(&new);
            return Err(err);
        }
    };
    if let Err(err) = files::create_private_dir(&tmp.join("tenants")) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(err);
    }
    Ok((tmp, folder))
}

fn fill_set(
    backup_dir: &Path,
    tmp: &Path,
    id: &str,
    started: chrono::DateTime<Utc>,
    catalog: Option<&Connection>,
    request: &SetRequest,
) -> Result<Created> {
    let mut entries = Vec::new();
    if let Some(catalog) = catalog {
        entries.push(catalog_entry(tmp, catalog, request.keep_damaged)?);
    } else if let Some((path, reason)) = &request.unreadable_catalog {
        entries.push(raw_entry(
            path,
            &tmp.join("catalog.db"),
            "catalog.db",
            None,
            reason.clone(),
        )?);
    }
    let previous = previous_entries(backup_dir, &request.tenants)?;
    let (tenant_entries, skipped) = backup_tenants(tmp, request, &previous)?;
    entries.extend(tenant_entries);
    entries.extend(request.kept.iter().cloned());
    if entries.is_empty() {
        return Ok(Created::Nothing { skipped });
    }
    files::fsync_dir(&tmp.join("tenants"))?;
    let finished = Utc::now();
    let manifest = Manifest {
        id: id.to_string(),
        created_at: time::format(started),
        finished_at: time::format(finished),
        finished_at_exact: Some(time::format_exact(finished)),
        scope: Some(request.scope),
        label: request.label.clone(),
        kind: request.kind,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        catalog_schema_version: request.catalog_schema_version,
        entries,
        skipped,
    };
    let text = serde_json::to_vec_pretty(&manifest)?;
    crate::ops::recovery::crash_point("backup:copied");
    files::write_atomic(&tmp.join(MANIFEST), &text)?;
    let dir = backup_dir.join(id);
    std::fs::rename(tmp, &dir).io_context(|| format!("moving the finished set to {}", dir.display()))?;
    files::fsync_dir(backup_dir)?;
    Ok(Created::Set(Box::new(BackupSet { dir, manifest })))
}

/// The catalog's part of a set: an online-backup copy, checked. With `keep_damaged`, a
/// live catalog that fails its check is kept as its raw bytes instead.
fn catalog_entry(tmp: &Path, catalog: &Connection, keep_damaged: bool) -> Result<Entry> {
    let dest = tmp.join("catalog.db");
    let copied = snapshot(catalog, &dest)
        .and_then(|()| checked_entry(&dest, "catalog.db", EntryScope::Catalog, None, None, None, None));
    let err = match copied {
        Ok(entry) => return Ok(entry),
        Err(err) if !keep_damaged => return Err(err),
        Err(err) => err,
    };
    let live = catalog.path().filter(|p| !p.is_empty()).map(PathBuf::from);
    match live.and_then(|path| source_damage(&path, &err).map(|reason| (path, reason))) {
        Some((path, reason)) => {
            let _ = std::fs::remove_file(&dest);
            raw_entry(&path, &dest, "catalog.db", None, reason)
        }
        None => Err(err),
    }
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
            if let Some(id) = entry.customer_id.filter(|id| {
                entry.scope == EntryScope::Tenant && entry.damaged.is_none() && wanted.contains(id)
            }) && let Ok(file) = set.file(entry)
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
    request: &SetRequest,
    previous: &HashMap<i64, (Entry, PathBuf, String)>,
) -> Result<(Vec<Entry>, Vec<Skipped>)> {
    let lanes = request
        .lanes
        .clone()
        .unwrap_or_else(|| Lanes::single(request.tenants.len(), request.jobs));
    let results = fan_out_all_in_lanes(&request.tenants, &lanes, |tenant| {
        tenant.database.back_up(&BackupTarget {
            set_dir: tmp,
            file: &format!(
                "tenants/{}.{}",
                tenant.customer_slug,
                tenant.database.copy_extension()
            ),
            customer_id: tenant.customer_id,
            customer_slug: &tenant.customer_slug,
            previous: previous.get(&tenant.customer_id),
            keep_damaged: request.keep_damaged,
        })
    });
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    for (tenant, result) in request.tenants.iter().zip(results) {
        match result? {
            BackedUp::Entry(entry) => entries.push(*entry),
            BackedUp::Failed(reason) => skipped.push(Skipped {
                customer: tenant.customer_slug.clone(),
                customer_id: tenant.customer_id,
                reason,
            }),
        }
    }
    Ok((entries, skipped))
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

/// Why a copy failed because of its source: the source cannot be read as a database,
/// or a check failed and the source itself fails quick_check (a copy that fails its
/// check from a healthy source is a fault on the writing side). `None` otherwise.
fn source_damage(source: &Path, err: &Error) -> Option<String> {
    if unreadable_source(err) {
        return Some(err.to_string());
    }
    if err.kind() != ErrorKind::VerificationFailed {
        return None;
    }
    sqlite::quick_check(source)
        .err()
        .map(|check| check.to_string().replace('\n', "; "))
}

/// A failure while writing a copy, said so that the operator knows where to look: a
/// lack of space names the file and the space left (with the hint about space).
fn writing_failed(dest: &Path, err: Error) -> Error {
    if err.is_disk_full() {
        return err.naming_full_disk(dest);
    }
    Error::unexpected(format!(
        "writing the backup copy {} failed: {err}",
        dest.display()
    ))
}

/// A local tenant file's part of a set (the SQLite engine's backup): an unchanged
/// file shares the previous set's copy, a changed one is copied and checked. A file
/// that is missing, a link, unreadable or damaged is left out and reported (or kept
/// raw with `keep_damaged`); a copy that cannot be written fails the set.
pub fn back_up_tenant_file(path: &Path, target: &BackupTarget<'_>) -> Result<BackedUp> {
    if let Err(err) = sqlite::refuse_symlink(path) {
        return Ok(BackedUp::Failed(err.to_string()));
    }
    if !path.is_file() {
        return Ok(BackedUp::Failed(format!("{} is missing", path.display())));
    }
    let relative = target.file;
    let dest = target.set_dir.join(relative);
    let previous = target.previous;
    let keep_damaged = target.keep_damaged;
    let fingerprint = Fingerprint::of(path);
    // Unchanged since the previous set (same file, size and change times): share its copy.
    // The earlier copy must itself be as it was written, and may vanish under a prune.
    if let Some((entry, file, set_id)) = previous
        && fingerprint.is_some()
        && entry.source == fingerprint
        && entry.copy.is_some()
        && entry.copy == CopyStamp::of(file)
        && std::fs::hard_link(file, &dest).is_ok()
    {
        return Ok(BackedUp::Entry(Box::new(Entry {
            file: relative.to_string(),
            linked_from: Some(entry.linked_from.clone().unwrap_or_else(|| set_id.clone())),
            ..entry.clone()
        })));
    }
    let mut entry = match copy_tenant(path, target, &dest, fingerprint) {
        Ok(entry) => entry,
        Err(err) => {
            let _ = std::fs::remove_file(&dest);
            return match source_damage(path, &err) {
                Some(reason) if keep_damaged => raw_entry(path, &dest, relative, Some(target), reason)
                    .map(|e| BackedUp::Entry(Box::new(e))),
                Some(reason) => Ok(BackedUp::Failed(reason)),
                None => Err(writing_failed(&dest, err)),
            };
        }
    };
    // Every tenant is provisioned at some migration: a database with none applied (an
    // emptied or replaced file) is no tenant's data, however healthy SQLite finds it.
    if entry.schema_version == 0 {
        let _ = std::fs::remove_file(&dest);
        let reason = format!(
            "{} holds no tenant schema (no migration applied): emptied or replaced",
            path.display()
        );
        return if keep_damaged {
            raw_entry(path, &dest, relative, Some(target), reason).map(|e| BackedUp::Entry(Box::new(e)))
        } else {
            Ok(BackedUp::Failed(reason))
        };
    }
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
    Ok(BackedUp::Entry(Box::new(entry)))
}

/// A checked copy of a live tenant database: the quick byte copy when its WAL is quiet,
/// else SQLite's online backup.
fn copy_tenant(
    path: &Path,
    target: &BackupTarget<'_>,
    dest: &Path,
    fingerprint: Option<Fingerprint>,
) -> Result<Entry> {
    let source = open_source(path)?;
    let mut keep_open = Vec::new();
    let (known, fingerprint) = match copy_consistent(&source, path, dest, &mut keep_open)? {
        Some((checked, at_snapshot)) => (Some(checked), at_snapshot.or(fingerprint)),
        None => {
            snapshot(&source, dest)?;
            (None, fingerprint)
        }
    };
    drop(source);
    drop(keep_open);
    checked_entry(
        dest,
        target.file,
        EntryScope::Tenant,
        Some(target.customer_id),
        Some(target.customer_slug.to_string()),
        fingerprint,
        known,
    )
}

/// A damaged live database kept as it is (for a pre-restore set): its raw bytes and
/// their SHA-256, marked damaged so that nothing expects it to pass quick_check and it
/// is never shared with a later set.
fn raw_entry(
    source: &Path,
    dest: &Path,
    relative: &str,
    tenant: Option<&BackupTarget<'_>>,
    reason: String,
) -> Result<Entry> {
    let real = std::fs::canonicalize(source).io_context(|| format!("reading {}", source.display()))?;
    let input = std::fs::File::open(&real).io_context(|| format!("reading {}", real.display()))?;
    let output = files::create_for_copy(dest)?;
    let sha256 = copy_hashed(&input, &real, &output, dest, |_| {})
        .and_then(|sum| {
            output
                .sync_all()
                .io_context(|| format!("syncing {}", dest.display()))?;
            Ok(sum)
        })
        .map_err(|err| writing_failed(dest, err))?;
    Ok(Entry {
        scope: if tenant.is_some() {
            EntryScope::Tenant
        } else {
            EntryScope::Catalog
        },
        customer_id: tenant.map(|t| t.customer_id),
        customer_slug: tenant.map(|t| t.customer_slug.to_string()),
        file: relative.to_string(),
        bytes: std::fs::metadata(dest)
            .io_context(|| format!("reading {}", dest.display()))?
            .len(),
        sha256,
        schema_version: 0,
        source: None,
        linked_from: None,
        copy: None,
        damaged: Some(reason),
        engine: Some(crate::engine::EngineKind::Sqlite),
        server: Some(crate::engine::LOCAL_SERVER.to_string()),
        format: Some(super::CopyFormat::Sqlite),
        rows: None,
        kept_as: None,
    })
}

/// Opens a live database for reading a snapshot without checkpointing it on close, so
/// that backing up does not itself change the file it fingerprints.
///
/// When no other process has the database open, it is taken in exclusive locking mode
/// (as `db migrate` does): the WAL index then lives in this process's memory, so the
/// `-shm` file is never opened, and never truncated as its first opener would. That
/// open and truncate happen under SQLite's process-wide lock, so across a fleet they
/// serialise the workers. Whoever opens the database meanwhile waits (busy timeout)
/// until this tenant is copied. If someone opened it between the check and the lock,
/// the shared mode is used instead.
fn open_source(path: &Path) -> Result<Connection> {
    if !crate::lock::sqlite_in_use(path).unwrap_or(true)
        && let Ok(conn) = open_source_exclusively(path)
    {
        return Ok(conn);
    }
    let conn = open_source_unlocked(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    Ok(conn)
}

fn open_source_exclusively(path: &Path) -> Result<Connection> {
    let conn = open_source_unlocked(path)?;
    conn.busy_timeout(Duration::ZERO)?;
    // Must precede the first read: only then does SQLite keep the WAL index in memory.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    // The first read takes the lock (and reads any WAL in), or fails at once when
    // someone holds it.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))?;
    conn.busy_timeout(Duration::from_secs(30))?;
    Ok(conn)
}

fn open_source_unlocked(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    // Pages are read straight from the mapped file instead of into a page cache.
    conn.pragma_update(None, "mmap_size", 1i64 << 40)?;
    Ok(conn)
}

/// The fast path for a quiet database: when its WAL can be folded in and stays empty
/// while a read transaction is held, no checkpoint can touch the main file (none may
/// pass a reader's mark), so a plain byte copy of it is that transaction's snapshot.
/// The copy is hashed as it is written. Returns the check with the source's
/// fingerprint as copied (see [`fingerprint_in_snapshot`]), or `None` when the WAL is
/// in use; the caller then takes the online backup.
fn copy_consistent(
    source: &Connection,
    source_path: &Path,
    dest: &Path,
    keep_open: &mut Vec<std::fs::File>,
) -> Result<Option<(Checked, Option<Fingerprint>)>> {
    // SQLite follows a symlinked database to its real name, and so must we: its WAL
    // sits beside the real file.
    let Ok(real) = std::fs::canonicalize(source_path) else {
        return Ok(None);
    };
    if !fold_wal_in(source, &real)? || source.execute_batch("BEGIN").is_err() {
        return Ok(None);
    }
    let result = (|| -> Result<Option<(Checked, Option<Fingerprint>)>> {
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
        let at_snapshot = fingerprint_in_snapshot(source_path);
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
        Ok(Some((
            Checked {
                sha256: sum,
                schema_version,
            },
            at_snapshot,
        )))
    })();
    let _ = source.execute_batch("COMMIT");
    if !matches!(result, Ok(Some(_))) {
        let _ = std::fs::remove_file(dest);
    }
    result
}

/// Folds the WAL of `source` (whose real file is `real`) into the main file; false
/// when it could not be emptied (the live app holds it). An empty or missing WAL needs
/// no checkpoint: the caller checks again inside its read transaction anyway, and a
/// checkpoint costs lock calls and a truncate for nothing.
fn fold_wal_in(source: &Connection, real: &Path) -> Result<bool> {
    let wal = &files::sqlite_side_files(real)[0];
    if std::fs::metadata(wal).map_or_else(|e| e.kind() == std::io::ErrorKind::NotFound, |m| m.len() == 0) {
        return Ok(true);
    }
    // Folding the WAL in must not hold the live app's writers up for long.
    source.busy_timeout(Duration::from_millis(200))?;
    let checkpoint = source.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0));
    source.busy_timeout(Duration::from_secs(30))?;
    Ok(matches!(checkpoint, Ok(0)))
}

/// The fingerprint of a source whose WAL was just found empty inside a read
/// transaction: the main file then cannot change until the transaction ends, so this
/// describes exactly the bytes copied. The one taken before the copy may not: when the
/// WAL held writes (after `db migrate`, say), folding them in changed the file, and the
/// next backup would find every such tenant changed and copy it again. `None` when
/// the WAL is no longer empty: the earlier fingerprint is then the safe one.
fn fingerprint_in_snapshot(path: &Path) -> Option<Fingerprint> {
    Fingerprint::of(path).filter(|f| f.wal_size == 0)
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
        .io_context(|| format!("syncing {}", dest.display()))
        .naming_full_disk(dest)?;
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
    snapshot_into(source, dest).naming_full_disk(dest)
}

fn snapshot_into(source: &Connection, dest: &Path) -> Result<()> {
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
    Ok(sqlite::applied_migrations(conn)?
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
    scope: EntryScope,
    customer_id: Option<i64>,
    customer_slug: Option<String>,
    source: Option<Fingerprint>,
    known: Option<Checked>,
) -> Result<Entry> {
    let checked = match known {
        Some(checked) => checked,
        None => Checked {
            schema_version: inspect(&sqlite::open_tenant(path)?, path)?,
            sha256: sha256_file(path)?,
        },
    };
    Ok(Entry {
        scope,
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
        damaged: None,
        engine: Some(crate::engine::EngineKind::Sqlite),
        server: Some(crate::engine::LOCAL_SERVER.to_string()),
        format: Some(super::CopyFormat::Sqlite),
        rows: None,
        kept_as: None,
    })
}
