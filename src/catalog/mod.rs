//! The control-plane catalog: the only code that speaks SQL to `catalog.db`.

pub mod access;
pub mod audit;
pub mod customers;
pub mod model;
pub mod moves;
pub mod operations;
pub mod plans;
pub mod servers;
pub mod settings;
pub mod sites;
pub mod states;
pub mod tenants;
pub mod usage;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use serde::Serialize;

use crate::error::{Error, NamingFullDisk, Result};
use crate::files;
use model::NewAuditEvent;
use states::CatalogMigrationStatus;

mod embedded {
    refinery::embed_migrations!("migrations/catalog");
}

/// Receives each executed statement and how long it ran.
pub type SqlProfiler = fn(&str, Duration);

thread_local! {
    /// Where `profile_sql` sends statements; the trace hook takes a plain function.
    static PROFILE: std::cell::Cell<Option<SqlProfiler>> = const { std::cell::Cell::new(None) };
    /// When each running statement started, by its SQL text.
    static STARTED: std::cell::RefCell<std::collections::HashMap<String, std::time::Instant>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// How long a writer waits for another process's transaction before giving up
/// (then exit 6), in milliseconds; `--lock-timeout` sets it for the process.
static BUSY_TIMEOUT_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(crate::context::DEFAULT_LOCK_TIMEOUT.as_millis() as u64);

/// Sets how long catalogs opened from now on wait for another process's lock.
pub fn set_busy_timeout(timeout: Duration) {
    let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    BUSY_TIMEOUT_MS.store(millis, std::sync::atomic::Ordering::Relaxed);
}

fn busy_timeout() -> Duration {
    Duration::from_millis(BUSY_TIMEOUT_MS.load(std::sync::atomic::Ordering::Relaxed))
}

/// An open catalog database.
pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

/// The versions of the catalog migrations embedded from `migrations/catalog/`; a test
/// keeps this list equal to the files.
const EMBEDDED_VERSIONS: &[i64] = &[1, 2, 3, 4, 5, 6, 7, 8];

impl Drop for Catalog {
    /// A run that changed nothing leaves the catalog's WAL and shared-memory files in
    /// place instead of folding and removing them: the next command (a router calling
    /// `resolve` for every request, say) then opens them instead of creating both
    /// files anew, which on a busy file system costs more than its query. A run that
    /// wrote folds its WAL in, so the catalog file alone stays complete for whoever
    /// copies it.
    fn drop(&mut self) {
        if self.conn.total_changes() == 0 {
            let _ = self
                .conn
                .set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true);
        }
    }
}

/// One catalog migration and whether it has been applied.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MigrationRecord {
    pub version: i64,
    pub name: String,
    pub checksum: String,
    /// `drift` is applied with another checksum; `unknown` is applied but not built in.
    pub status: CatalogMigrationStatus,
    pub applied_at: Option<String>,
}

impl Catalog {
    /// Opens an existing catalog; exit 6 with a hint when the home is not initialised.
    pub fn open(path: &Path) -> Result<Self> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(unusable(path, "it is not a regular file".to_string())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::refused(format!("no catalog at {}", path.display()))
                    .with_hint("run 'tenantctl init' first, or pass --home"));
            }
            Err(_) => return Err(unusable(path, access_problem(path))),
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|err| explain_access(path, err.into()))?;
        // Setting the pragmas reads the schema, which opens the WAL files.
        Self::configure(conn, path).map_err(|err| explain_access(path, err))
    }

    /// Opens a catalog that must not change at all, such as the copy inside a backup
    /// set: read-only and immutable, so not even a WAL file appears beside it.
    pub fn open_frozen(path: &Path) -> Result<Connection> {
        let uri = format!("file:{}?immutable=1", path.display());
        Ok(Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?)
    }

    /// Opens the catalog for ordinary work: refuses while migrations are pending.
    pub fn open_ready(path: &Path) -> Result<Self> {
        let catalog = Self::open(path)?;
        // The first statement is where SQLite opens the WAL files and finds out
        // whether it may write: an unusable catalog fails here, with its cause.
        catalog
            .ensure_current()
            .map_err(|err| explain_access(path, err))?;
        Ok(catalog)
    }

    /// Creates the catalog file (mode 0600) in WAL mode if it is missing, then opens it.
    pub fn create(path: &Path) -> Result<(Self, bool)> {
        Self::create_here(path).naming_full_disk(path)
    }

    fn create_here(path: &Path) -> Result<(Self, bool)> {
        let created = files::create_private_file(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Setting the journal mode reads the header: a damaged catalog fails here.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|err| explain_access(path, err.into()))?;
        Ok((Self::configure(conn, path)?, created))
    }

    fn configure(conn: Connection, path: &Path) -> Result<Self> {
        conn.busy_timeout(busy_timeout())?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Import looks up every file's site and customer and writes its rows with some
        // fifteen statements; parsing each of them again per file cost more than running it.
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Catalog {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reports every statement and how long it took to `profile` (for `-vv`).
    /// Statements are passed as written, without their bound values, which may be
    /// secrets' hashes or personal data. The time is measured here, from the
    /// statement's start to its end: the one SQLite reports comes from a clock in
    /// whole milliseconds, so most catalog statements would read as 0.
    pub fn profile_sql(&mut self, profile: SqlProfiler) {
        use rusqlite::trace::{TraceEvent, TraceEventCodes};
        PROFILE.with(|slot| slot.set(Some(profile)));
        self.conn.trace_v2(
            TraceEventCodes::SQLITE_TRACE_STMT | TraceEventCodes::SQLITE_TRACE_PROFILE,
            Some(|event: TraceEvent<'_>| match event {
                // Also sent for each trigger the statement fires: the first start counts.
                TraceEvent::Stmt(statement, _) => STARTED.with(|started| {
                    started
                        .borrow_mut()
                        .entry(statement.sql().into_owned())
                        .or_insert_with(std::time::Instant::now);
                }),
                TraceEvent::Profile(statement, sqlite_took) => {
                    let sql = statement.sql();
                    let took = STARTED
                        .with(|started| started.borrow_mut().remove(sql.as_ref()))
                        .map_or(sqlite_took, |at| at.elapsed());
                    PROFILE.with(|slot| {
                        if let Some(profile) = slot.get() {
                            profile(&sql, took);
                        }
                    });
                }
                _ => {}
            }),
        );
    }

    /// What `PRAGMA integrity_check` finds: `["ok"]` for a sound catalog.
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        self.pragma_rows("PRAGMA integrity_check")
    }

    /// One line per row that `PRAGMA foreign_key_check` finds pointing nowhere.
    pub fn foreign_key_violations(&self) -> Result<Vec<String>> {
        self.pragma_rows("PRAGMA foreign_key_check")
    }

    fn pragma_rows(&self, pragma: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(pragma)?;
        let rows = stmt.query_map([], |r| {
            let value: rusqlite::types::Value = r.get(0)?;
            Ok(match value {
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Read access for queries that need no transaction.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction: all of it commits or none of it.
    pub fn write<T>(&mut self, work: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let tx = begin_write(&mut self.conn, &self.path)?;
        let value = work(&tx).map_err(|err| full_catalog(&self.path, err))?;
        tx.commit().map_err(|err| full_catalog(&self.path, err.into()))?;
        Ok(value)
    }

    /// Like [`Catalog::write`], for a change that is audited: `work` returns its value
    /// with the events that describe what it did (none when it changed nothing), and
    /// they are recorded, in order, in the same transaction. Returning the events rather
    /// than writing them keeps the audit log's one writer here, and a change cannot
    /// commit without its record.
    pub fn write_audited<T, E>(
        &mut self,
        actor: &str,
        work: impl FnOnce(&Transaction<'_>) -> Result<(T, E)>,
    ) -> Result<T>
    where
        E: IntoIterator<Item = NewAuditEvent>,
    {
        self.write(|tx| record_audited(tx, actor, work))
    }

    /// [`Catalog::write_with_files`] for an audited change, as [`Catalog::write_audited`].
    pub fn write_with_files_audited<T, E>(
        &mut self,
        actor: &str,
        work: impl FnOnce(&Transaction<'_>) -> Result<(T, E)>,
        finish: impl FnOnce(&T) -> Result<()>,
        undo: impl FnOnce(&T),
    ) -> Result<T>
    where
        E: IntoIterator<Item = NewAuditEvent>,
    {
        self.write_with_files(|tx| record_audited(tx, actor, work), finish, undo)
    }

    /// Like [`Catalog::write`], but `finish` runs after the rows are written and before
    /// the commit; when the commit fails, `undo` reverses what `finish` did to files.
    pub fn write_with_files<T>(
        &mut self,
        work: impl FnOnce(&Transaction<'_>) -> Result<T>,
        finish: impl FnOnce(&T) -> Result<()>,
        undo: impl FnOnce(&T),
    ) -> Result<T> {
        let tx = begin_write(&mut self.conn, &self.path)?;
        let value = work(&tx).map_err(|err| full_catalog(&self.path, err))?;
        finish(&value)?;
        if let Err(err) = tx.commit() {
            undo(&value);
            return Err(full_catalog(&self.path, err.into()));
        }
        Ok(value)
    }

    /// Every embedded migration with its state in this catalog.
    pub fn migrations(&self) -> Result<Vec<MigrationRecord>> {
        let applied = applied_migrations(&self.conn)?;
        let known = embedded::migrations::runner();
        let mut records = Vec::new();
        for migration in known.get_migrations() {
            let version = i64::from(migration.version());
            let checksum = format!("{:016x}", migration.checksum());
            let record = match applied.iter().find(|a| a.version == version) {
                Some(done) => MigrationRecord {
                    status: if done.checksum == checksum {
                        CatalogMigrationStatus::Applied
                    } else {
                        CatalogMigrationStatus::Drift
                    },
                    applied_at: done.applied_at.clone(),
                    ..done.clone()
                },
                None => MigrationRecord {
                    version,
                    name: migration.name().to_string(),
                    checksum,
                    status: CatalogMigrationStatus::Pending,
                    applied_at: None,
                },
            };
            records.push(record);
        }
        let unknown: Vec<MigrationRecord> = applied
            .iter()
            .filter(|a| !records.iter().any(|r| r.version == a.version))
            .map(|a| MigrationRecord {
                status: CatalogMigrationStatus::Unknown,
                ..a.clone()
            })
            .collect();
        records.extend(unknown);
        records.sort_by_key(|r| r.version);
        Ok(records)
    }

    /// The highest applied catalog migration, 0 for a new file.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(applied_migrations(&self.conn)?
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0))
    }

    /// Refuses when migrations are pending, or when a newer tenantctl wrote this catalog.
    pub fn ensure_current(&self) -> Result<()> {
        // Every command passes here: the common case is answered from the history
        // alone, without building refinery's runner (which compiles a regex and hashes
        // every migration).
        let applied: Vec<i64> = applied_migrations(&self.conn)?
            .iter()
            .map(|m| m.version)
            .collect();
        if applied == EMBEDDED_VERSIONS {
            return Ok(());
        }
        self.refuse_unknown_migrations()?;
        let pending = self
            .migrations()?
            .iter()
            .filter(|r| r.status == CatalogMigrationStatus::Pending)
            .count();
        if pending > 0 {
            return Err(Error::refused(format!(
                "the catalog has {pending} pending migration{}",
                if pending == 1 { "" } else { "s" }
            ))
            .with_hint("run 'tenantctl migrate'"));
        }
        Ok(())
    }

    /// Applies pending catalog migrations, each in its own transaction. Refuses a
    /// catalog that a newer tenantctl has migrated further.
    pub fn apply_migrations(&mut self) -> Result<Vec<MigrationRecord>> {
        self.refuse_unknown_migrations()?;
        // A migration that rebuilds a table (SQLite's only way to change a constraint)
        // drops the old one; with foreign keys on, that would delete every row pointing
        // at it. They are checked as a whole once all migrations have run.
        self.conn.pragma_update(None, "foreign_keys", "OFF")?;
        let ran = embedded::migrations::runner().run(&mut self.conn);
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        ran.naming_full_disk(&self.path)?;
        let dangling = self.foreign_key_violations()?;
        if !dangling.is_empty() {
            return Err(Error::verification(format!(
                "after migrating, {} catalog rows point at rows that do not exist",
                dangling.len()
            ))
            .with_hint("run 'tenantctl doctor'"));
        }
        self.migrations()
    }

    fn refuse_unknown_migrations(&self) -> Result<()> {
        match self
            .migrations()?
            .iter()
            .find(|r| r.status == CatalogMigrationStatus::Unknown)
        {
            Some(unknown) => Err(Error::refused(format!(
                "catalog migration V{} was applied by a newer tenantctl",
                unknown.version
            ))
            .with_hint("upgrade tenantctl")),
            None => Ok(()),
        }
    }
}

/// Runs an audited change's `work`, then records its events in the same transaction.
fn record_audited<T, E>(
    tx: &Transaction<'_>,
    actor: &str,
    work: impl FnOnce(&Transaction<'_>) -> Result<(T, E)>,
) -> Result<T>
where
    E: IntoIterator<Item = NewAuditEvent>,
{
    let (value, events) = work(tx)?;
    // The events of one change share its time: an import records thousands.
    let at = crate::time::now();
    for event in events {
        audit::record(tx, &at, actor, &event)?;
    }
    Ok(value)
}

/// `BEGIN IMMEDIATE`, refusing at once, with the reason, a catalog that SQLite could
/// open only for reading (a write-protected file or a read-only file system).
fn begin_write<'c>(conn: &'c mut Connection, path: &Path) -> Result<Transaction<'c>> {
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        let cause = access_problem(path);
        return Err(unusable(
            path,
            if cause.is_empty() {
                "it was opened read-only".to_string()
            } else {
                cause
            },
        ));
    }
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|err| explain_access(path, err.into()))
}

/// A catalog statement that found the disk full, said with the catalog's path. Only
/// SQLite's errors are the catalog's own: a file error inside a transaction's work is
/// about some other file, which its own boundary names.
fn full_catalog(path: &Path, err: Error) -> Error {
    match err {
        Error::Sqlite(_) => err.naming_full_disk(path),
        other => other,
    }
}

/// Replaces SQLite's "unable to open database file" or "attempt to write a readonly
/// database" with the catalog's path and the reason, found by asking the file system;
/// and "file is not a database" or "database disk image is malformed" with the path
/// and the ways back.
fn explain_access(path: &Path, err: Error) -> Error {
    use rusqlite::ErrorCode;
    let code = match &err {
        Error::Sqlite(sqlite) => sqlite.sqlite_error_code(),
        _ => None,
    };
    match code {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => damaged(path, &err),
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
            let cause = access_problem(path);
            let cause = if cause.is_empty() { err.to_string() } else { cause };
            unusable(path, cause)
        }
        _ => err,
    }
}

/// A catalog that SQLite cannot read. Still exit 1 (SPEC section 2: an SQLite error,
/// a broken database); exit 7 is for checks that were asked for and failed.
fn damaged(path: &Path, err: &Error) -> Error {
    let reason = err.to_string();
    let reason = reason.strip_prefix("SQLite: ").unwrap_or(&reason);
    Error::unexpected(format!("the catalog {} is damaged: {reason}", path.display())).with_hint(
        "'tenantctl doctor' shows what fails; to go back to a backup, pick one with \
         'tenantctl backup list' and run 'tenantctl restore --at TIME --catalog --confirm catalog'",
    )
}

fn unusable(path: &Path, cause: String) -> Error {
    Error::unexpected(format!("cannot use the catalog {}: {cause}", path.display()))
        .with_hint("tenantctl must read and write the catalog and create its -wal and -shm files beside it")
}

/// Why this process cannot read and write the catalog: a read-only file system,
/// missing permissions on the file or its folder, or a side file that is not a file.
/// Empty when the file system shows nothing wrong.
fn access_problem(path: &Path) -> String {
    use nix::errno::Errno;
    use nix::unistd::{AccessFlags, access};
    let folder = path.parent().unwrap_or(Path::new("."));
    let read_write = AccessFlags::R_OK | AccessFlags::W_OK;
    let explain = |target: &Path, errno: Errno| match errno {
        Errno::EROFS => format!("{} is on a read-only file system", target.display()),
        Errno::EACCES | Errno::EPERM => format!("permission denied on {}", target.display()),
        Errno::ENOENT => format!("{} does not exist", target.display()),
        other => format!("{}: {}", target.display(), other.desc()),
    };
    if let Err(errno) = access(folder, AccessFlags::X_OK) {
        return explain(folder, errno);
    }
    if let Err(errno) = access(path, read_write) {
        return explain(path, errno);
    }
    if let Err(errno) = access(folder, AccessFlags::W_OK | AccessFlags::X_OK) {
        return explain(folder, errno);
    }
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        match std::fs::symlink_metadata(&side) {
            Ok(meta) if !meta.is_file() => return format!("{} is not a regular file", side.display()),
            Ok(_) => {
                if let Err(errno) = access(&side, read_write) {
                    return explain(&side, errno);
                }
            }
            Err(_) => {}
        }
    }
    String::new()
}

fn applied_migrations(conn: &Connection) -> Result<Vec<MigrationRecord>> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'refinery_schema_history')",
        [],
        |row| row.get(0),
    )?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(
        "SELECT version, name, applied_on, checksum FROM refinery_schema_history ORDER BY version",
    )?;
    let rows = stmt.query_map([], |row| {
        let checksum: String = row.get(3)?;
        Ok(MigrationRecord {
            version: row.get(0)?,
            name: row.get(1)?,
            checksum: checksum
                .parse::<u64>()
                .map(|c| format!("{c:016x}"))
                .unwrap_or(checksum),
            status: CatalogMigrationStatus::Applied,
            applied_at: row
                .get::<_, Option<String>>(2)?
                .map(|at| crate::time::normalise(&at)),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// A SELECT with optional `AND` conditions, each bound to one value, and a limit.
pub(crate) struct Filtered {
    sql: String,
    args: Vec<Box<dyn rusqlite::ToSql>>,
}

impl Filtered {
    fn new(base: impl Into<String>) -> Self {
        Filtered {
            sql: base.into(),
            args: Vec::new(),
        }
    }

    /// Adds `AND condition`; every `?` in it is bound to `value`.
    fn and(&mut self, condition: &str, value: impl rusqlite::ToSql + 'static) {
        self.args.push(Box::new(value));
        let placeholder = format!("?{}", self.args.len());
        self.sql.push_str(" AND ");
        self.sql.push_str(&condition.replace('?', &placeholder));
    }

    fn finish(&mut self, order_by: &str, limit: Option<u64>) {
        self.sql.push(' ');
        self.sql.push_str(order_by);
        if let Some(limit) = limit {
            self.args.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
            self.sql.push_str(&format!(" LIMIT ?{}", self.args.len()));
        }
    }

    fn params(&self) -> impl rusqlite::Params + '_ {
        rusqlite::params_from_iter(self.args.iter())
    }
}

/// Whether a SQLite error is a UNIQUE or PRIMARY KEY violation.
pub fn is_unique_violation(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

#[cfg(test)]
pub(crate) fn in_memory() -> Catalog {
    let mut conn = Connection::open_in_memory().unwrap();
    embedded::migrations::runner().run(&mut conn).unwrap();
    Catalog {
        conn,
        path: PathBuf::from(":memory:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_and_report_no_pending() {
        let catalog = in_memory();
        let records = catalog.migrations().unwrap();
        assert!(!records.is_empty());
        assert!(
            records
                .iter()
                .all(|r| r.status == CatalogMigrationStatus::Applied),
            "{records:?}"
        );
        assert!(catalog.ensure_current().is_ok());
        assert_eq!(catalog.schema_version().unwrap(), records.last().unwrap().version);
    }

    #[test]
    fn the_fast_readiness_check_knows_every_embedded_migration() {
        let embedded: Vec<i64> = embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|m| i64::from(m.version()))
            .collect();
        assert_eq!(embedded, EMBEDDED_VERSIONS, "update EMBEDDED_VERSIONS");
    }

    #[test]
    fn the_legacy_id_migration_takes_site_ids_that_only_one_site_has() {
        let mut conn = Connection::open_in_memory().unwrap();
        embedded::migrations::runner()
            .set_target(refinery::Target::Version(2))
            .run(&mut conn)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO customers (slug, email, name, plan, db_path, created_at, updated_at)
                 VALUES ('a', 'a@a.test', 'A', 'starter', '/a.db', 't', 't');
             INSERT INTO sites (customer_id, name, domain, config, created_at, updated_at) VALUES
                 (1, 'one', 'one.test', '{\"siteId\": \"main\"}', 't', 't'),
                 (1, 'two', 'two.test', '{\"site_id\": 42}', 't', 't'),
                 (1, 'dup1', 'd1.test', '{\"siteId\": \"dup\"}', 't', 't'),
                 (1, 'dup2', 'd2.test', '{\"siteId\": \"dup\"}', 't', 't'),
                 (1, 'none', 'n.test', '{\"siteId\": {\"a\": 1}}', 't', 't');",
        )
        .unwrap();
        // As apply_migrations runs them: V4 rebuilds the customers table.
        conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
        embedded::migrations::runner().run(&mut conn).unwrap();
        let ids: Vec<Option<String>> = conn
            .prepare("SELECT legacy_id FROM sites ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(ids, [Some("main".into()), Some("42".into()), None, None, None]);
    }

    #[test]
    fn rebuilding_the_customers_table_keeps_their_rows_ids_and_high_water_mark() {
        let mut conn = Connection::open_in_memory().unwrap();
        embedded::migrations::runner()
            .set_target(refinery::Target::Version(3))
            .run(&mut conn)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO customers (slug, email, name, plan, db_path, created_at, updated_at) VALUES
                 ('a', 'a@a.test', 'A', 'starter', '/a.db', 't', 't'),
                 ('b', 'b@a.test', 'B', 'starter', '/b.db', 't', 't'),
                 ('c', 'c@a.test', 'C', 'starter', '/c.db', 't', 't');
             DELETE FROM customers WHERE slug = 'c';
             INSERT INTO sites (customer_id, name, domain, created_at, updated_at) VALUES (2, 's', 's.test', 't', 't');",
        )
        .unwrap();
        let mut catalog = Catalog {
            conn,
            path: PathBuf::from(":memory:"),
        };
        catalog.apply_migrations().unwrap();
        let conn = catalog.conn();
        let rows: Vec<(i64, String, String, String)> = conn
            .prepare("SELECT id, location, engine, server FROM customers ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rows[1], (2, "/b.db".into(), "sqlite".into(), "local".into()));
        assert_eq!(rows.len(), 2);
        let sites: i64 = conn
            .query_row("SELECT count(*) FROM sites", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sites, 1);
        conn.execute(
            "INSERT INTO customers (slug, email, name, plan, location, created_at, updated_at)
             VALUES ('d', 'd@a.test', 'D', 'starter', '/d.db', 't', 't')",
            [],
        )
        .unwrap();
        assert_eq!(
            conn.last_insert_rowid(),
            4,
            "the purged customer's id 3 is not reused"
        );
    }

    #[test]
    fn audited_writes_record_their_events_or_nothing() {
        let mut catalog = in_memory();
        let event = |target: &str| {
            model::NewAuditEvent::new("x.test", "thing", target, Some(7), serde_json::json!({"n": 1}))
        };
        let value = catalog
            .write_audited("ops", |_| Ok((42, [event("first"), event("second")])))
            .unwrap();
        assert_eq!(value, 42);
        let failed: Result<()> = catalog.write_audited("ops", |_| {
            Err::<((), [model::NewAuditEvent; 1]), _>(Error::unexpected("no"))
        });
        assert!(failed.is_err());
        let events = audit::list(catalog.conn(), &audit::AuditFilter::default()).unwrap();
        let seen: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    e.actor.as_str(),
                    e.target.as_str(),
                    e.customer_id,
                    e.details.clone(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("ops", "second", Some(7), serde_json::json!({"n": 1})),
                ("ops", "first", Some(7), serde_json::json!({"n": 1})),
            ],
            "newest first, each with the actor the write was given"
        );
    }

    #[test]
    fn a_full_catalog_is_named_by_its_path() {
        let mut catalog = in_memory();
        let pages: i64 = catalog
            .conn()
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        // SQLite answers a database at its page limit as it answers a full disk.
        catalog
            .conn()
            .pragma_update(None, "max_page_count", pages)
            .unwrap();
        let err = catalog
            .write(|tx| {
                tx.execute(
                    "INSERT INTO audit_events (at, actor, action, target_type, target)
                     VALUES ('t', hex(randomblob(100000)), 'x', 'y', 'z')",
                    [],
                )?;
                Ok(())
            })
            .unwrap_err();
        assert!(
            err.to_string().starts_with("no space left writing :memory: ("),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("free space"));
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn audit_events_cannot_be_updated() {
        let catalog = in_memory();
        catalog
            .conn()
            .execute(
                "INSERT INTO audit_events (at, actor, action, target_type, target) VALUES ('t', 'a', 'x', 'y', 'z')",
                [],
            )
            .unwrap();
        let err = catalog
            .conn()
            .execute("UPDATE audit_events SET actor = 'b'", [])
            .unwrap_err();
        assert!(err.to_string().contains("cannot be changed"));
    }
}
