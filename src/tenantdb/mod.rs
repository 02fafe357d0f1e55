//! Tenant database files: the starter migrations, loading the operator's migrations,
//! and provisioning a new customer's database.

use std::fs;
use std::path::{Path, PathBuf};

use refinery::{Migration, Runner};
use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, IoContext, Result};
use crate::files;

pub mod migrate;
pub mod sql;
pub mod template;

/// The starter schema shipped in `migrations/tenant/`, installed by `init`.
pub const STARTER_MIGRATIONS: &[(&str, &str)] = &[
    (
        "V1__users.sql",
        include_str!("../../migrations/tenant/V1__users.sql"),
    ),
    (
        "V2__products.sql",
        include_str!("../../migrations/tenant/V2__products.sql"),
    ),
    (
        "V3__orders.sql",
        include_str!("../../migrations/tenant/V3__orders.sql"),
    ),
];

/// Writes the starter migrations into `dir` when it holds no migration yet; returns
/// how many files were written.
pub fn install_starter_set(dir: &Path) -> Result<usize> {
    files::create_private_dir(dir)?;
    if !migration_file_names(dir)?.is_empty() {
        return Ok(0);
    }
    for (name, sql) in STARTER_MIGRATIONS {
        files::write_atomic(&dir.join(name), sql.as_bytes())?;
    }
    Ok(STARTER_MIGRATIONS.len())
}

fn migration_file_names(dir: &Path) -> Result<Vec<String>> {
    let entries = fs::read_dir(dir).map_err(|e| {
        Error::usage(format!(
            "cannot read tenant migrations folder {}: {e}",
            dir.display()
        ))
        .with_hint("create it, or point 'tenantctl config set tenant_migrations_dir' at it")
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.io_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".sql") {
            continue;
        }
        if !is_migration_name(&name) {
            return Err(Error::invalid_input(format!(
                "tenant migration {} is not named V<n>__<name>.sql",
                dir.join(&name).display()
            ))
            .with_hint("rename it, or move it out of the migrations folder"));
        }
        names.push(name);
    }
    Ok(names)
}

/// `V<version>__<name>.sql`, as refinery names migrations.
fn is_migration_name(file: &str) -> bool {
    let Some(stem) = file.strip_suffix(".sql").and_then(|s| s.strip_prefix(['V', 'U'])) else {
        return false;
    };
    match stem.split_once("__") {
        Some((version, name)) => {
            !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()
        }
        None => false,
    }
}

/// The operator's tenant migrations, ordered by version.
pub fn load_migrations(dir: &Path) -> Result<Vec<Migration>> {
    let mut names = migration_file_names(dir)?;
    names.sort();
    let mut migrations = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join(&name);
        let sql = fs::read_to_string(&path)
            .map_err(|e| Error::usage(format!("cannot read tenant migration {}: {e}", path.display())))?;
        if let Some(keyword) = transaction_control(&sql) {
            return Err(Error::invalid_input(format!(
                "tenant migration {} contains {keyword}",
                path.display()
            ))
            .with_hint("each tenant's migrations run in one transaction that tenantctl opens and commits"));
        }
        let migration = Migration::unapplied(name.trim_end_matches(".sql"), &sql)
            .map_err(|e| Error::usage(format!("invalid tenant migration {}: {e}", path.display())))?;
        migrations.push(migration);
    }
    migrations.sort();
    if let Some(pair) = migrations.windows(2).find(|w| w[0].version() == w[1].version()) {
        return Err(Error::usage(format!(
            "two tenant migrations share version {} in {}",
            pair[0].version(),
            dir.display()
        )));
    }
    Ok(migrations)
}

/// The schema version a tenant reaches after every migration in `migrations`.
pub fn newest_version(migrations: &[Migration]) -> i64 {
    migrations
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// A tenant migration file as the catalog's ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationId {
    pub version: i64,
    pub name: String,
    pub checksum: String,
}

impl MigrationId {
    pub fn of(migration: &Migration) -> Self {
        MigrationId {
            version: i64::from(migration.version()),
            name: migration.name().to_string(),
            checksum: checksum_text(migration.checksum()),
        }
    }
}

/// Refinery's u64 checksum as 16 hex digits, the form shown everywhere.
pub fn checksum_text(checksum: u64) -> String {
    format!("{checksum:016x}")
}

/// A freshly built tenant database waiting to be moved into place.
#[derive(Debug)]
pub struct Provisioned {
    pub staging_path: PathBuf,
    pub schema_version: i64,
    pub applied: Vec<MigrationId>,
}

/// Builds a new tenant database beside its final place in `tenants_dir` by copying the
/// template (kept at the newest migration in `templates_dir`, rebuilt when the
/// migrations change). Mode 0600, synced. The caller renames it into place when the
/// catalog row commits, or removes it.
pub fn provision(tenants_dir: &Path, templates_dir: &Path, migrations: &[Migration]) -> Result<Provisioned> {
    match template::checked(templates_dir, migrations)?.copy_into(tenants_dir) {
        // Another process rebuilt the template meanwhile: check the new one, once.
        Err(_) => template::checked(templates_dir, migrations)?.copy_into(tenants_dir),
        done => done,
    }
}

/// The first transaction-control statement (BEGIN, COMMIT, END, ROLLBACK, SAVEPOINT,
/// RELEASE) in a script, outside trigger bodies, strings and comments.
pub fn transaction_control(sql: &str) -> Option<String> {
    top_level_statements(sql).into_iter().find_map(|statement| {
        let first = statement.split_whitespace().next()?.to_ascii_uppercase();
        ["BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"]
            .contains(&first.as_str())
            .then_some(first)
    })
}

/// How many statements SQL text holds, a trigger with its body counting as one.
pub fn statement_count(sql: &str) -> usize {
    top_level_statements(sql).len()
}

/// The statements of a script without comments and empty pieces; a CREATE TRIGGER
/// is one statement, whose body's own statements are not listed.
fn top_level_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_trigger = false;
    for statement in statements(sql) {
        let words: Vec<String> = statement
            .split_whitespace()
            .take(4)
            .map(str::to_ascii_uppercase)
            .collect();
        let Some(first) = words.first() else { continue };
        if in_trigger {
            // The body's statements follow; a segment starting with END closes it.
            in_trigger = first != "END";
            continue;
        }
        in_trigger = first == "CREATE" && words.iter().skip(1).any(|w| w == "TRIGGER");
        out.push(statement);
    }
    out
}

/// Splits SQL text at semicolons that are not inside strings, quoted names or comments;
/// comments are dropped.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' | '[' => {
                let close = if c == '[' { ']' } else { c };
                current.push(' ');
                for inner in chars.by_ref() {
                    if inner == close {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for inner in chars.by_ref() {
                    if inner == '\n' {
                        break;
                    }
                }
                current.push(' ');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                for inner in chars.by_ref() {
                    if previous == '*' && inner == '/' {
                        break;
                    }
                    previous = inner;
                }
                current.push(' ');
            }
            ';' => out.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    out.push(current);
    out
}

/// A name in `dir` that no other process will pick, marked as unfinished work.
pub fn staging_name(dir: &Path) -> PathBuf {
    dir.join(format!(
        ".provision-{}-{:08x}.db",
        std::process::id(),
        rand::random::<u32>()
    ))
}

/// Whether a file name is an unfinished provision that a crash left behind.
pub fn is_staging_name(name: &str) -> bool {
    (name.starts_with(".provision-") || name.starts_with(".restore-")) && name.ends_with(".db")
}

/// Builds a database at `path` by applying every migration in one transaction: mode
/// 0600, WAL, synced and closed. Removes the file if anything fails.
pub fn build_fresh(path: &Path, migrations: &[Migration]) -> Result<()> {
    let build = || -> Result<()> {
        files::create_private_file(path)?;
        let mut conn = open_tenant(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Runner::new(migrations).set_grouped(true).run(&mut conn)?;
        conn.close().map_err(|(_, e)| e)?;
        files::fsync_file(path)
    };
    build().inspect_err(|_| {
        let _ = files::remove_database(path);
    })
}

/// `PRAGMA quick_check`; exit 7 naming the file when it finds damage.
pub fn quick_check(path: &Path) -> Result<()> {
    // Read-write: a read-only connection to a WAL database leaves -wal/-shm files behind.
    let conn = open_tenant(path)?;
    let verdict: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if verdict == "ok" {
        Ok(())
    } else {
        Err(Error::verification(format!(
            "{} fails quick_check: {verdict}",
            path.display()
        )))
    }
}

/// The migrations a tenant database has applied, from its own history table.
pub fn applied_migrations(conn: &Connection) -> Result<Vec<MigrationId>> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'refinery_schema_history')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut stmt =
        conn.prepare("SELECT version, name, checksum FROM refinery_schema_history ORDER BY version")?;
    let rows = stmt.query_map([], |r| {
        let checksum: String = r.get(2)?;
        Ok(MigrationId {
            version: r.get(0)?,
            name: r.get(1)?,
            checksum: checksum.parse::<u64>().map(checksum_text).unwrap_or(checksum),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Opens an existing tenant database read-write, never through a symbolic link.
pub fn open_tenant(path: &Path) -> Result<Connection> {
    refuse_symlink(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    Ok(conn)
}

/// A tenant database path that is a symbolic link serves whatever it points at, most
/// likely another tenant's file: exit 7, as for any other integrity fault. Only the
/// file itself is checked (SQLite's NOFOLLOW would refuse a link anywhere in the path):
/// a home, or a tenants folder, placed on another disk through a link stays fine.
pub fn refuse_symlink(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = fs::read_link(path)
                .map(|t| format!(" to {}", t.display()))
                .unwrap_or_default();
            Err(Error::verification(format!(
                "tenant database {} is a symbolic link{target}; tenantctl does not follow it",
                path.display()
            ))
            .with_hint("put the tenant's own file there (or restore it from a backup); 'tenantctl doctor' lists every link"))
        }
        _ => Ok(()),
    }
}

/// What `VACUUM` and `ANALYZE` did to one tenant database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vacuumed {
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Rebuilds the database at `path` without its free pages (`VACUUM`), refreshes the
/// planner's statistics (`ANALYZE`) and folds the WAL back, so the space is returned
/// to the file system and the sizes are the file's real ones.
pub fn vacuum(path: &Path) -> Result<Vacuumed> {
    let conn = open_tenant(path)?;
    let bytes_before = files::database_size(path);
    conn.execute_batch("VACUUM; ANALYZE;")?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    conn.close().map_err(|(_, e)| e)?;
    Ok(Vacuumed {
        bytes_before,
        bytes_after: files::database_size(path),
    })
}

/// Folds the WAL into the main file and closes, so the database is one file that can
/// be moved safely. A missing file is left alone.
pub fn checkpoint(path: &Path) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let conn = open_tenant(path)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    conn.close().map_err(|(_, e)| e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_set_installs_once_and_provisions() {
        let dir = tempfile::tempdir().unwrap();
        let migrations_dir = dir.path().join("m");
        assert_eq!(
            install_starter_set(&migrations_dir).unwrap(),
            STARTER_MIGRATIONS.len()
        );
        assert_eq!(install_starter_set(&migrations_dir).unwrap(), 0);
        let migrations = load_migrations(&migrations_dir).unwrap();
        assert_eq!(newest_version(&migrations), 3);
        let built = provision(&dir.path().join("t"), &dir.path().join("templates"), &migrations).unwrap();
        assert_eq!(built.schema_version, 3);
        let conn = Connection::open(&built.staging_path).unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('users','products','orders')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 3);
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_failing_migration_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let migrations = vec![
            Migration::unapplied("V1__ok", "CREATE TABLE a (x);").unwrap(),
            Migration::unapplied("V2__bad", "CREATE TABLE b (x); SELECT * FROM nowhere;").unwrap(),
        ];
        let tenants = dir.path().join("t");
        assert!(provision(&tenants, &dir.path().join("templates"), &migrations).is_err());
        assert!(fs::read_dir(&tenants).map(|d| d.count()).unwrap_or(0) == 0);
        assert_eq!(fs::read_dir(dir.path().join("templates")).unwrap().count(), 0);
    }

    #[test]
    fn transaction_control_is_found_outside_triggers_strings_and_comments() {
        assert_eq!(
            transaction_control("CREATE TABLE a (x); COMMIT; CREATE TABLE b (x);").as_deref(),
            Some("COMMIT")
        );
        assert_eq!(
            transaction_control("begin transaction; CREATE TABLE a (x);").as_deref(),
            Some("BEGIN")
        );
        assert_eq!(
            transaction_control("SAVEPOINT s; RELEASE s;").as_deref(),
            Some("SAVEPOINT")
        );
        let fine = "CREATE TABLE a (x, note TEXT DEFAULT 'commit; rollback');
            -- COMMIT; in a comment
            /* BEGIN; END; */
            CREATE TRIGGER t AFTER INSERT ON a BEGIN
                UPDATE a SET x = CASE WHEN x IS NULL THEN 0 ELSE x END;
                DELETE FROM a WHERE x < 0;
            END;
            CREATE TABLE \"end\" (x);";
        assert_eq!(transaction_control(fine), None);
        assert_eq!(
            transaction_control("CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; END; COMMIT;").as_deref(),
            Some("COMMIT")
        );
        assert_eq!(statement_count(fine), 3);
        assert_eq!(statement_count("SELECT 1; -- done\n ;"), 1);
        assert_eq!(
            statement_count("CREATE TABLE t9 (x); INSERT INTO t9 VALUES (1)"),
            2
        );
    }

    #[test]
    fn missing_folder_is_a_usage_error() {
        let err = load_migrations(Path::new("/nonexistent/tenantctl-migrations")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("/nonexistent/tenantctl-migrations"));
    }
}
