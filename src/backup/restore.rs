//! Putting backed-up files in place of live databases so that a crash at any moment
//! leaves each database either old or new, whole: every file is staged beside its
//! target and checked first (checksum while copying, then integrity_check), then all
//! are renamed over their targets. A run keeps its staged files in one folder per
//! target folder, so that what a killed run left is found and removed as a whole.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};

use crate::engine::sqlite;
use crate::error::{Error, IoContext, NamingFullDisk, Result};
use crate::files;
use crate::files::copy_hashed;
use crate::lock::HomeLock;

/// A checked copy waiting beside its target.
#[derive(Debug)]
pub struct Staged {
    pub staging: PathBuf,
    pub target: PathBuf,
}

/// Name prefix of a restore run's staging folder (and of the staged files older
/// versions put straight beside their targets).
pub const STAGING_PREFIX: &str = ".restore-";

/// One restore run's staging: each checked copy waits in the run's `.restore-<run>/`
/// folder beside its target (the same file system, so putting it in place is one
/// rename). The folders go when the run is dropped, after success or failure; a killed
/// run's are removed by the next restore ([`remove_leftovers`]) or `doctor --fix`.
#[derive(Debug)]
pub struct StagingRun {
    id: String,
    folders: Mutex<Vec<PathBuf>>,
}

impl StagingRun {
    pub fn new() -> Self {
        StagingRun {
            id: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()),
            folders: Mutex::new(Vec::new()),
        }
    }

    /// Where the copy that is to replace `target` is staged; its folder is made (0700)
    /// on first use.
    fn place_for(&self, target: &Path) -> Result<PathBuf> {
        let folder = parent(target).join(format!("{STAGING_PREFIX}{}", self.id));
        let mut folders = self
            .folders
            .lock()
            .map_err(|_| Error::unexpected("a restore's staging list was poisoned"))?;
        if !folders.contains(&folder) {
            files::create_private_dir(&folder)?;
            folders.push(folder.clone());
        }
        let name = target.file_name().unwrap_or(std::ffi::OsStr::new("restored.db"));
        Ok(folder.join(name))
    }
}

impl Default for StagingRun {
    fn default() -> Self {
        StagingRun::new()
    }
}

impl Drop for StagingRun {
    fn drop(&mut self) {
        let folders = self.folders.get_mut().map(std::mem::take).unwrap_or_default();
        for folder in folders {
            let _ = std::fs::remove_dir_all(folder);
        }
    }
}

/// What killed restores left: every `.restore-*` folder or file in `dirs`, and the
/// unfinished pre-restore sets in `backup_dir` that nobody is writing. The home lock is
/// the proof that none of it is a live restore's: they all hold it.
pub fn leftovers(held: &HomeLock, dirs: &[PathBuf], backup_dir: &Path) -> Vec<PathBuf> {
    let pre_restore_sets = names_in(backup_dir, crate::backup::is_pre_restore_tmp)
        .into_iter()
        .filter(|path| !crate::backup::being_written(path));
    staging_leftovers(held, dirs)
        .into_iter()
        .chain(pre_restore_sets)
        .collect()
}

/// The `.restore-*` folders and files in `dirs`: with the home lock held, no live
/// restore's.
pub fn staging_leftovers(_held: &HomeLock, dirs: &[PathBuf]) -> Vec<PathBuf> {
    dirs.iter()
        .flat_map(|dir| names_in(dir, |name| name.starts_with(STAGING_PREFIX)))
        .collect()
}

/// Removes the [`leftovers`] it can (doctor reports the rest) and returns their paths.
pub fn remove_leftovers(held: &HomeLock, dirs: &[PathBuf], backup_dir: &Path) -> Vec<String> {
    leftovers(held, dirs, backup_dir)
        .into_iter()
        .filter(|path| remove_any(path).is_ok())
        .map(|path| path.display().to_string())
        .collect()
}

/// The paths in `dir` whose names `wanted` picks, sorted.
pub fn names_in(dir: &Path, wanted: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| wanted(&entry.file_name().to_string_lossy()))
        .map(|entry| entry.path())
        .collect();
    paths.sort();
    paths
}

/// Removes a folder with its contents, or a file; fine when it is gone already.
pub fn remove_any(path: &Path) -> Result<()> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Err(e) if path.exists() => Err(Error::io(format!("removing {}", path.display()), e)),
        _ => Ok(()),
    }
}

/// A backup file to put in place of `target`, and the SHA-256 its manifest gives it.
#[derive(Debug, Clone)]
pub struct ToStage {
    pub backup_file: PathBuf,
    pub sha256: String,
    pub target: PathBuf,
}

/// Copies the backup file into `run`'s folder beside its target, checking its SHA-256
/// and running integrity_check on it on the way (exit 7 on either failing), then gives
/// the copy WAL mode like every live database; synced.
pub fn stage(wanted: &ToStage, run: &StagingRun) -> Result<Staged> {
    stage_reading(wanted, run, |_| Ok(())).map(|(staged, ())| staged)
}

/// [`stage`], also reading what `read` wants through the connection that checks the
/// backup file: the copy is proven to be the same bytes, so what is read holds for
/// it, and the copy need not be opened again.
pub fn stage_reading<T: Send>(
    wanted: &ToStage,
    run: &StagingRun,
    read: impl FnOnce(&Connection) -> Result<T> + Send,
) -> Result<(Staged, T)> {
    files::create_private_dir(&parent(&wanted.target))?;
    let staging = run.place_for(&wanted.target)?;
    let result = (|| -> Result<T> {
        let read = copy_checked(wanted, &staging, read)?;
        mark_wal(&staging)?;
        files::fsync_file(&staging)?;
        Ok(read)
    })()
    .naming_full_disk(&staging);
    match result {
        Ok(read) => Ok((
            Staged {
                staging,
                target: wanted.target.clone(),
            },
            read,
        )),
        Err(err) => {
            let _ = files::remove_database(&staging);
            Err(err)
        }
    }
}

/// Where SQLite's file header keeps the file format's write and read versions: 1 and 1
/// for a rollback journal, 2 and 2 for WAL (the database file format, section 1.3.3).
const FORMAT_VERSIONS_AT: u64 = 18;
const ROLLBACK_VERSIONS: [u8; 2] = [1, 1];
const WAL_VERSIONS: [u8; 2] = [2, 2];

/// Gives a copy nobody has open WAL mode. A rollback-journal copy (what backups hold)
/// gets the two header bytes that `PRAGMA journal_mode=WAL` would write, written
/// directly: the pragma makes and removes a journal and a WAL beside the file, and at
/// fleet size that folder work was most of staging. Anything else goes through SQLite.
fn mark_wal(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .io_context(|| format!("opening {}", path.display()))?;
    let mut versions = [0u8; 2];
    file.read_exact_at(&mut versions, FORMAT_VERSIONS_AT)
        .io_context(|| format!("reading {}", path.display()))?;
    match versions {
        WAL_VERSIONS => Ok(()),
        ROLLBACK_VERSIONS => file
            .write_all_at(&WAL_VERSIONS, FORMAT_VERSIONS_AT)
            .io_context(|| format!("writing {}", path.display())),
        _ => {
            drop(file);
            let conn = sqlite::open_tenant(path)?;
            // A staged copy that is not whole is thrown away, never used: the caller's
            // one sync is all it needs.
            conn.pragma_update(None, "synchronous", "OFF")?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.close().map_err(|(_, e)| e)?;
            Ok(())
        }
    }
}

/// One read of the backup file hashes it and copies it, while integrity_check (and
/// then `read`) reads the same (cached) pages on another thread. The check covers the
/// copy because the copy is proven to be the same bytes: the SHA-256 is taken of what
/// was written.
fn copy_checked<T: Send>(
    wanted: &ToStage,
    staging: &Path,
    read: impl FnOnce(&Connection) -> Result<T> + Send,
) -> Result<T> {
    let source = &wanted.backup_file;
    let input = std::fs::File::open(source).io_context(|| format!("reading {}", source.display()))?;
    let output = files::create_for_copy(staging)?;
    let (sum, verdict) = std::thread::scope(|scope| {
        let check = scope.spawn(|| check_then_read(source, read));
        let sum = copy_hashed(&input, source, &output, staging, |_| {});
        let verdict = check
            .join()
            .map_err(|_| Error::unexpected("the integrity check panicked"));
        (sum, verdict)
    });
    let sum = sum?;
    if sum != wanted.sha256 {
        return Err(Error::verification(format!(
            "{} does not match its manifest (SHA-256 {sum}, expected {}); nothing was restored",
            source.display(),
            wanted.sha256
        ))
        .with_hint("run 'tenantctl backup verify' and restore from another set"));
    }
    match verdict?? {
        Verdict::Ok(read) => read,
        Verdict::Damaged(verdict) => Err(Error::verification(format!(
            "{} fails integrity_check: {verdict}; nothing was restored",
            source.display()
        ))),
    }
}

enum Verdict<T> {
    /// The file is whole: what `read` found in it.
    Ok(Result<T>),
    Damaged(String),
}

/// integrity_check of a backup file, then `read` when it passes; opened read-only so
/// that neither can change it.
fn check_then_read<T>(path: &Path, read: impl FnOnce(&Connection) -> Result<T>) -> Result<Verdict<T>> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    let verdict: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    Ok(if verdict == "ok" {
        Verdict::Ok(read(&conn))
    } else {
        Verdict::Damaged(verdict)
    })
}

pub fn discard(staged: &[Staged]) {
    for one in staged {
        let _ = files::remove_database(&one.staging);
    }
}

/// Refuses when another process has the live database open: its connection would go
/// on writing to the replaced file, and those writes would be lost.
pub fn refuse_if_open(target: &Path) -> Result<()> {
    if crate::lock::sqlite_in_use(target)? {
        return Err(
            Error::refused(format!("{} is open in another process", target.display())).with_hint(
                "stop the processes using it (the portal, a sqlite3 shell) and run the restore again",
            ),
        );
    }
    Ok(())
}

/// Folds the live database's WAL in (so no stale WAL can be replayed onto the new
/// file), removes its side files, and renames the staged copy over it; synced.
pub fn swap_in(staged: &Staged) -> Result<()> {
    let folder = swap_in_unsynced(staged)?;
    files::fsync_dir(&folder)
}

/// [`swap_in`] without syncing the target's folder, which it returns: for callers that
/// swap many files and sync each folder once afterwards. Until then a crash may undo
/// the rename, never half of it: the target is the old file or the new one, whole (the
/// staged copy was synced when it was staged).
pub fn swap_in_unsynced(staged: &Staged) -> Result<PathBuf> {
    let target = &staged.target;
    if target.is_file() {
        fold_wal(target)?;
        for side in files::sqlite_side_files(target) {
            match std::fs::remove_file(&side) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("removing {}", side.display()), e)),
            }
        }
    }
    std::fs::rename(&staged.staging, target)
        .io_context(|| format!("moving the restored file to {}", target.display()))?;
    Ok(parent(target))
}

/// Checkpoints a live database completely; refuses when its WAL cannot be emptied.
/// An empty or missing WAL has nothing to fold, and opening the database only to find
/// that out would make (and remove) its side files: at fleet size, that was most of
/// the swap.
fn fold_wal(target: &Path) -> Result<()> {
    let wal = &files::sqlite_side_files(target)[0];
    match std::fs::metadata(wal) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Ok(meta) if meta.len() == 0 => return Ok(()),
        _ => {}
    }
    let Ok(conn) = Connection::open(target) else {
        return Ok(());
    };
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    // A damaged live file is what restores are for: nothing to fold then.
    let Ok(busy) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)) else {
        return Ok(());
    };
    drop(conn);
    if busy != 0 {
        return Err(Error::refused(format!(
            "{} is in use; its WAL could not be folded in",
            target.display()
        ))
        .with_hint("stop what is writing to it and run the restore again"));
    }
    Ok(())
}

fn parent(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal_mode(path: &Path) -> String {
        let conn = Connection::open(path).unwrap();
        conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_rollback_copy_marked_wal_opens_in_wal_mode_whole_and_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);")
            .unwrap();
        drop(conn);
        assert_eq!(journal_mode(&path), "delete");
        mark_wal(&path).unwrap();
        assert!(
            files::sqlite_side_files(&path).iter().all(|side| !side.exists()),
            "marking makes no journal"
        );
        assert_eq!(journal_mode(&path), "wal");
        let conn = Connection::open(&path).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2);
        conn.execute("INSERT INTO t VALUES (3)", []).unwrap();
        drop(conn);
        // Already WAL: left as it is.
        mark_wal(&path).unwrap();
        assert_eq!(journal_mode(&path), "wal");
    }
}
