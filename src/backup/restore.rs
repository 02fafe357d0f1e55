//! Putting backed-up files in place of live databases so that a crash at any moment
//! leaves each database either old or new, whole: every file is staged beside its
//! target and checked first (checksum while copying, then integrity_check), then all
//! are renamed over their targets.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::engine::sqlite;
use crate::error::{Error, IoContext, NamingFullDisk, Result};
use crate::files;
use crate::files::copy_hashed;

/// A checked copy waiting beside its target.
#[derive(Debug)]
pub struct Staged {
    pub staging: PathBuf,
    pub target: PathBuf,
}

/// Name prefix of a staged copy; doctor removes old ones a crash left behind.
pub const STAGING_PREFIX: &str = ".restore-";

/// A backup file to put in place of `target`, and the SHA-256 its manifest gives it.
#[derive(Debug, Clone)]
pub struct ToStage {
    pub backup_file: PathBuf,
    pub sha256: String,
    pub target: PathBuf,
}

/// Copies the backup file beside its target, checking its SHA-256 and running
/// integrity_check on it on the way (exit 7 on either failing), then gives the copy
/// WAL mode like every live database; synced.
pub fn stage(wanted: &ToStage) -> Result<Staged> {
    let dir = parent(&wanted.target);
    files::create_private_dir(&dir)?;
    let staging = dir.join(format!(
        "{STAGING_PREFIX}{}-{:08x}.db",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| -> Result<()> {
        copy_checked(wanted, &staging)?;
        let conn = sqlite::open_tenant(&staging)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.close().map_err(|(_, e)| e)?;
        files::fsync_file(&staging)
    })()
    .naming_full_disk(&staging);
    match result {
        Ok(()) => Ok(Staged {
            staging,
            target: wanted.target.clone(),
        }),
        Err(err) => {
            let _ = files::remove_database(&staging);
            Err(err)
        }
    }
}

/// One read of the backup file hashes it and copies it, while integrity_check reads
/// the same (cached) pages on another thread. The check covers the copy because the
/// copy is proven to be the same bytes: the SHA-256 is taken of what was written.
fn copy_checked(wanted: &ToStage, staging: &Path) -> Result<()> {
    let source = &wanted.backup_file;
    let input = std::fs::File::open(source).io_context(|| format!("reading {}", source.display()))?;
    let output = files::create_for_copy(staging)?;
    let (sum, verdict) = std::thread::scope(|scope| {
        let check = scope.spawn(|| integrity_check(source));
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
    let verdict = verdict??;
    if verdict != "ok" {
        return Err(Error::verification(format!(
            "{} fails integrity_check: {verdict}; nothing was restored",
            source.display()
        )));
    }
    output
        .sync_all()
        .io_context(|| format!("syncing {}", staging.display()))
        .naming_full_disk(staging)
}

/// integrity_check of a backup file, opened read-only so that checking cannot change it.
fn integrity_check(path: &Path) -> Result<String> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    Ok(conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
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
/// file), removes its side files, and renames the staged copy over it.
pub fn swap_in(staged: &Staged) -> Result<()> {
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
    files::fsync_dir(&parent(target))
}

/// Checkpoints a live database completely; refuses when its WAL cannot be emptied.
fn fold_wal(target: &Path) -> Result<()> {
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
