//! The SQLite engine: each tenant is a file in the home's `tenants/` folder (the
//! built-in server `local`), a deleted one waits in `trash/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use refinery::{Migration, Runner};
use rusqlite::{Connection, OpenFlags};

use super::{
    BackedUp, BackupTarget, Engine, Finished, Placement, PlacementView, Provisioned, RestoreSource, RowSink,
    ScriptOutcome, Staged, TenantDatabase, TenantRun, Vacuumed,
};
use crate::backup::restore as staging;
use crate::error::{Error, NamingFullDisk, Result};
use crate::fan_out::fan_out_all;
use crate::files;
use crate::home::Home;
use crate::migrations::{DownScript, MigrationId, checksum_text};

pub mod migrate;
mod rows;
pub mod sql;
pub mod template;

/// Builds a new tenant database beside its final place in `tenants_dir` by copying the
/// template (kept at the newest migration in `templates_dir`, rebuilt when the
/// migrations change). Mode 0600, synced. The caller renames it into place when the
/// catalog row commits, or removes it.
fn provision(
    tenants_dir: &Path,
    templates_dir: &Path,
    migrations: &[Migration],
    owner: &str,
) -> Result<Provisioned> {
    match template::checked(templates_dir, migrations)?.copy_into(tenants_dir, owner) {
        // Another process rebuilt the template meanwhile: check the new one, once.
        Err(_) => template::checked(templates_dir, migrations)?.copy_into(tenants_dir, owner),
        done => done,
    }
}

const STAGING_PREFIX: &str = ".provision-";

/// A name in `dir` that no other process will pick, marked as unfinished work of the
/// command whose owner lock is `owner` (see [`crate::lock::Owner`]).
pub fn staging_name(dir: &Path, owner: &str) -> PathBuf {
    dir.join(format!(
        "{STAGING_PREFIX}{owner}-{:08x}.db",
        rand::random::<u32>()
    ))
}

/// Whether a file name is an unfinished provision (a restore's staging is found by
/// [`staging::STAGING_PREFIX`]).
pub fn is_staging_name(name: &str) -> bool {
    name.starts_with(STAGING_PREFIX) && name.ends_with(".db")
}

/// The owner token a staging name carries, if it carries one.
pub fn staging_owner(name: &str) -> Option<&str> {
    let inner = name.strip_prefix(STAGING_PREFIX)?.strip_suffix(".db")?;
    let (owner, _) = inner.rsplit_once('-')?;
    crate::lock::is_token(owner).then_some(owner)
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
    build().naming_full_disk(path).inspect_err(|_| {
        let _ = files::remove_database(path);
    })
}

/// `PRAGMA quick_check`; exit 7 naming the file when it finds damage.
pub fn quick_check(path: &Path) -> Result<()> {
    // Read-write: a read-only connection to a WAL database leaves -wal/-shm files behind.
    check_through(&open_tenant(path)?, path)
}

/// `PRAGMA integrity_check`, the full check; exit 7 naming the file on damage.
pub fn integrity_check(path: &Path) -> Result<()> {
    let conn = open_tenant(path)?;
    let verdict: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if verdict == "ok" {
        return Ok(());
    }
    Err(Error::verification(format!(
        "{} fails integrity_check: {verdict}",
        path.display()
    )))
}

/// `PRAGMA quick_check` through an open connection to the database at `path`.
fn check_through(conn: &Connection, path: &Path) -> Result<()> {
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

/// How long after its last change a file's stamp is trusted: file systems keep times
/// in coarse ticks, so a write in the same tick as the one before could leave every
/// time as it was.
const STAMP_SETTLE: Duration = Duration::from_secs(1);

/// The file's identity, size and change times, as of `now`. A write moves the change
/// time (ctime), which unlike the modification time cannot be set back by hand. `None`
/// when a WAL or journal holds writes not yet in the file, or the file changed too
/// recently.
pub fn change_stamp(path: &Path, now: std::time::SystemTime) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(path).ok()?;
    let [wal, _, journal] = files::sqlite_side_files(path);
    if [wal, journal]
        .iter()
        .any(|side| fs::metadata(side).is_ok_and(|m| m.size() > 0))
    {
        return None;
    }
    let nanos = |seconds: i64, nanos: i64| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    let (mtime, ctime) = (
        nanos(meta.mtime(), meta.mtime_nsec()),
        nanos(meta.ctime(), meta.ctime_nsec()),
    );
    let now = now.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as i128;
    if now - mtime.max(ctime) < STAMP_SETTLE.as_nanos() as i128 {
        return None;
    }
    Some(format!(
        "{}:{}:{}:{mtime}:{ctime}",
        meta.dev(),
        meta.ino(),
        meta.size()
    ))
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
    conn.busy_timeout(Duration::from_secs(30))?;
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

/// Rebuilds the database at `path` without its free pages (`VACUUM`), refreshes the
/// planner's statistics (`ANALYZE`) and folds the WAL back, so the space is returned
/// to the file system and the sizes are the file's real ones.
pub fn vacuum(path: &Path) -> Result<Vacuumed> {
    vacuum_here(path).naming_full_disk(path)
}

fn vacuum_here(path: &Path) -> Result<Vacuumed> {
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
    let fold = || -> Result<()> {
        let conn = open_tenant(path)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        conn.close().map_err(|(_, e)| e)?;
        Ok(())
    };
    fold().naming_full_disk(path)
}

/// The built-in server `local`: tenant files under the home.
pub struct SqliteEngine {
    home: Home,
}

impl SqliteEngine {
    pub fn new(home: &Home) -> Self {
        SqliteEngine { home: home.clone() }
    }
}

fn path_of(placement: &Placement) -> &Path {
    Path::new(&placement.location)
}

impl Engine for SqliteEngine {
    fn placement_for(&self, slug: &str) -> Result<Placement> {
        Placement::local(&self.home.tenant_db(slug)?)
    }

    fn retired_placement(&self, slug: &str, customer_id: i64) -> Result<Placement> {
        Placement::local(&self.home.trashed_tenant_db(slug, customer_id)?)
    }

    fn provision(&self, migrations: &[Migration], owner: &str) -> Result<Provisioned> {
        provision(
            &self.home.tenants_dir(),
            &self.home.templates_dir(),
            migrations,
            owner,
        )
    }

    fn provision_many(
        &self,
        migrations: &[Migration],
        count: usize,
        jobs: usize,
        owner: &str,
    ) -> Result<Vec<Provisioned>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let tenants_dir = self.home.tenants_dir();
        // The template is built and checked once; the workers only copy it.
        let template = template::checked(&self.home.templates_dir(), migrations)?;
        // One slot per database to build: the copies are all alike.
        let slots = vec![(); count];
        let built = fan_out_all(&slots, jobs, |()| {
            // Another process may rebuild the template meanwhile: check it again.
            template
                .copy_into(&tenants_dir, owner)
                .or_else(|_| provision(&tenants_dir, &self.home.templates_dir(), migrations, owner))
        });
        if built.iter().any(|b| b.is_err()) {
            let mut first = None;
            for one in built {
                match one {
                    Ok(p) => self.discard(&p),
                    Err(e) => first = first.or(Some(e)),
                }
            }
            return Err(first.unwrap_or_else(|| Error::unexpected("provisioning failed")));
        }
        Ok(built.into_iter().filter_map(|b| b.ok()).collect())
    }

    fn publish(&self, provisioned: &Provisioned, placement: &Placement) -> Result<()> {
        files::move_database(Path::new(&provisioned.staging), path_of(placement))
    }

    fn publish_many(&self, pairs: &[(Provisioned, Placement)]) -> Result<()> {
        for (provisioned, placement) in pairs {
            files::move_database_unsynced(Path::new(&provisioned.staging), path_of(placement))?;
        }
        // All the new files sit in one folder: one sync makes every rename durable.
        files::fsync_dir(&self.home.tenants_dir())
    }

    fn discard(&self, provisioned: &Provisioned) {
        let _ = files::remove_database(Path::new(&provisioned.staging));
    }

    fn relocate(&self, from: &Placement, to: &Placement) -> Result<()> {
        if path_of(to).starts_with(self.home.trash_dir()) {
            files::create_private_dir(&self.home.trash_dir())?;
        }
        files::move_database(path_of(from), path_of(to))
    }

    fn destroy(&self, placement: &Placement) -> Result<()> {
        files::remove_database(path_of(placement))
    }

    fn purge_retired(&self, placement: &Placement) -> Result<()> {
        if path_of(placement).starts_with(self.home.trash_dir()) {
            files::remove_database(path_of(placement))?;
        }
        Ok(())
    }

    fn sweep_abandoned(&self, dead_owners: &[String]) -> Result<()> {
        let tenants_dir = self.home.tenants_dir();
        for name in names_in(&tenants_dir) {
            if staging_owner(&name).is_some_and(|owner| dead_owners.iter().any(|d| d == owner)) {
                files::remove_database(&tenants_dir.join(&name))?;
            }
        }
        // A template build a kill interrupted; only when no rebuild holds the lock.
        let templates_dir = self.home.templates_dir();
        if !template::rebuild_in_progress(&templates_dir) {
            for name in names_in(&templates_dir) {
                if name.starts_with(template::STAGING_PREFIX) && name.ends_with(".db") {
                    files::remove_database(&templates_dir.join(&name))?;
                }
            }
        }
        Ok(())
    }

    fn unowned(&self, owned: &[Placement]) -> Result<Vec<(String, Placement)>> {
        let Ok(entries) = std::fs::read_dir(self.home.tenants_dir()) else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(slug) = name.strip_suffix(".db") else {
                continue;
            };
            if crate::validate::slug(slug).is_err() {
                continue;
            }
            let placement = self.placement_for(slug)?;
            if !owned.contains(&placement) {
                found.push((slug.to_string(), placement));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    fn view(&self, placement: &Placement) -> PlacementView {
        PlacementView {
            engine: placement.engine,
            server: placement.server.clone(),
            path: Some(placement.location.clone()),
            host: None,
            port: None,
            database: None,
            schema: None,
            role: None,
        }
    }

    fn tenant(&self, placement: &Placement) -> Arc<dyn TenantDatabase> {
        Arc::new(SqliteTenant {
            placement: placement.clone(),
        })
    }
}

/// One tenant file.
pub struct SqliteTenant {
    placement: Placement,
}

impl SqliteTenant {
    fn path(&self) -> &Path {
        path_of(&self.placement)
    }

    fn staged_file(&self, staged: &Staged) -> staging::Staged {
        staging::Staged {
            staging: PathBuf::from(&staged.staging),
            target: self.path().to_path_buf(),
        }
    }
}

impl TenantDatabase for SqliteTenant {
    fn placement(&self) -> &Placement {
        &self.placement
    }

    fn describe(&self) -> String {
        self.path().display().to_string()
    }

    fn exists(&self) -> bool {
        self.path().is_file()
    }

    fn check_own(&self) -> Result<()> {
        refuse_symlink(self.path())
    }

    fn applied(&self) -> Result<Vec<MigrationId>> {
        applied_migrations(&open_tenant(self.path())?)
    }

    fn migrate(&self, migrations: &[Migration], target: Option<i64>, dry_run: bool) -> TenantRun {
        migrate::migrate(self.path(), migrations, target, dry_run)
    }

    fn roll_back(&self, migrations: &[Migration], downs: &[DownScript], to: i64, dry_run: bool) -> TenantRun {
        migrate::roll_back(self.path(), migrations, downs, to, dry_run)
    }

    fn query(&self, sql: &str, write: bool, timeout: Duration, sink: &mut dyn RowSink) -> Result<Finished> {
        sql::stream(self.path(), sql, write, timeout, sink)
    }

    fn script(&self, sql: &str, write: bool, timeout: Duration) -> Result<ScriptOutcome> {
        sql::run_script(self.path(), sql, write, timeout)
    }

    fn size_bytes(&self) -> u64 {
        files::database_size(self.path())
    }

    fn check(&self) -> Result<()> {
        quick_check(self.path())
    }

    // One open instead of two: at 10,000 tenants each open creates and removes the
    // -wal and -shm files in the one tenants/ folder, which is what doctor waits on.
    fn check_then_applied(&self) -> Result<Result<Vec<MigrationId>>> {
        let conn = open_tenant(self.path())?;
        check_through(&conn, self.path())?;
        Ok(applied_migrations(&conn))
    }

    fn change_stamp(&self) -> Option<String> {
        change_stamp(self.path(), std::time::SystemTime::now())
    }

    fn vacuum(&self) -> Result<Vacuumed> {
        vacuum(self.path())
    }

    fn quiesce(&self) -> Result<()> {
        checkpoint(self.path())
    }

    fn back_up(&self, target: &BackupTarget<'_>) -> Result<BackedUp> {
        crate::backup::create::back_up_tenant_file(self.path(), target)
    }

    fn refuse_if_in_use(&self) -> Result<()> {
        staging::refuse_if_open(self.path())
    }

    fn stage_restore(&self, run: &staging::StagingRun, source: &RestoreSource<'_>) -> Result<Staged> {
        let (staged, applied) = staging::stage_reading(
            &staging::ToStage {
                backup_file: source.file.to_path_buf(),
                sha256: source.entry.sha256.clone(),
                target: self.path().to_path_buf(),
            },
            run,
            applied_migrations,
        )?;
        match path_text(&staged.staging) {
            Ok(staging) => Ok(Staged {
                staging,
                target: self.placement.clone(),
                applied,
                kept_as: None,
            }),
            Err(err) => {
                let _ = files::remove_database(&staged.staging);
                Err(err)
            }
        }
    }

    fn swap_in(&self, staged: &Staged) -> Result<()> {
        staging::swap_in(&self.staged_file(staged))
    }

    fn swap_in_unsynced(&self, staged: &Staged) -> Result<Option<PathBuf>> {
        staging::swap_in_unsynced(&self.staged_file(staged)).map(Some)
    }

    fn thaw(&self) -> Result<()> {
        rows::thaw(self.path())
    }

    fn freeze(&self) -> Result<super::WriteFreeze> {
        rows::freeze(self.path())
    }

    fn tables(&self) -> Result<Vec<super::transfer::TableShape>> {
        rows::tables(self.path())
    }

    fn read_rows(
        &self,
        table: &super::transfer::TableShape,
        each: &mut dyn FnMut(Vec<super::transfer::Cell>) -> Result<()>,
    ) -> Result<()> {
        rows::read_rows(self.path(), table, each)
    }

    fn write_rows(
        &self,
        table: &super::transfer::TableShape,
        next: &mut dyn FnMut() -> Result<Option<Vec<super::transfer::Cell>>>,
    ) -> Result<u64> {
        rows::write_rows(self.path(), table, next)
    }

    fn discard_staged(&self, staged: &Staged) {
        let _ = files::remove_database(Path::new(&staged.staging));
    }
}

/// The names in `dir`; none when it cannot be read.
fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn path_text(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| Error::usage(format!("path {} is not valid UTF-8", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::{install_starter_set, load_migrations};

    #[test]
    fn the_starter_set_provisions_a_wal_database_with_its_tables() {
        let dir = tempfile::tempdir().unwrap();
        let migrations_dir = dir.path().join("m");
        install_starter_set(&migrations_dir).unwrap();
        let migrations = load_migrations(&migrations_dir).unwrap();
        let built = provision(
            &dir.path().join("t"),
            &dir.path().join("templates"),
            &migrations,
            "1-00000000",
        )
        .unwrap();
        assert_eq!(built.schema_version, 3);
        let conn = Connection::open(&built.staging).unwrap();
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
    fn the_change_stamp_holds_while_the_file_is_still_and_moves_with_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        build_fresh(
            &path,
            &[Migration::unapplied("V1__a", "CREATE TABLE a (x);").unwrap()],
        )
        .unwrap();
        let now = std::time::SystemTime::now;
        let later = || now() + Duration::from_secs(10);
        assert_eq!(
            change_stamp(&path, now()),
            None,
            "just written: too recent to trust"
        );
        let still = change_stamp(&path, later()).unwrap();
        assert_eq!(change_stamp(&path, later()).as_ref(), Some(&still));
        quick_check(&path).unwrap();
        assert_eq!(
            change_stamp(&path, later()),
            Some(still.clone()),
            "a check changes nothing"
        );

        // Past the file system's clock tick, which the real `now` waits out.
        std::thread::sleep(Duration::from_millis(50));
        let conn = open_tenant(&path).unwrap();
        conn.execute("INSERT INTO a VALUES (1)", []).unwrap();
        assert_eq!(change_stamp(&path, later()), None, "writes wait in the WAL");
        drop(conn);
        let written = change_stamp(&path, later()).unwrap();
        assert_ne!(written, still);
    }

    #[test]
    fn a_failing_migration_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let migrations = vec![
            Migration::unapplied("V1__ok", "CREATE TABLE a (x);").unwrap(),
            Migration::unapplied("V2__bad", "CREATE TABLE b (x); SELECT * FROM nowhere;").unwrap(),
        ];
        let tenants = dir.path().join("t");
        assert!(provision(&tenants, &dir.path().join("templates"), &migrations, "1-00000000").is_err());
        assert!(fs::read_dir(&tenants).map(|d| d.count()).unwrap_or(0) == 0);
        assert_eq!(fs::read_dir(dir.path().join("templates")).unwrap().count(), 0);
    }
}
