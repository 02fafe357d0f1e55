//! Putting backed-up files in place of live databases so that a crash at any moment
//! leaves each database either old or new, whole: every file is staged beside its
//! target and checked first, then all are renamed over their targets.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::error::{Error, IoContext, Result};
use crate::{files, tenantdb};

/// A checked copy waiting beside its target.
#[derive(Debug)]
pub struct Staged {
    pub staging: PathBuf,
    pub target: PathBuf,
}

/// Name prefix of a staged copy; doctor removes old ones a crash left behind.
pub const STAGING_PREFIX: &str = ".restore-";

/// Copies `backup_file` beside `target`, gives it WAL mode like every live database,
/// and checks it with integrity_check; synced.
pub fn stage(backup_file: &Path, target: &Path) -> Result<Staged> {
    let dir = parent(target);
    files::create_private_dir(&dir)?;
    let staging = dir.join(format!(
        "{STAGING_PREFIX}{}-{:08x}.db",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| -> Result<()> {
        files::copy_private(backup_file, &staging)?;
        let conn = tenantdb::open_tenant(&staging)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let verdict: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        conn.close().map_err(|(_, e)| e)?;
        if verdict != "ok" {
            return Err(Error::verification(format!(
                "the copy of {} fails integrity_check: {verdict}",
                backup_file.display()
            )));
        }
        files::fsync_file(&staging)
    })();
    match result {
        Ok(()) => Ok(Staged {
            staging,
            target: target.to_path_buf(),
        }),
        Err(err) => {
            let _ = files::remove_database(&staging);
            Err(err)
        }
    }
}

/// Stages every file or none: on the first failure the staged ones are removed.
pub fn stage_all(pairs: &[(PathBuf, PathBuf)]) -> Result<Vec<Staged>> {
    let mut staged = Vec::with_capacity(pairs.len());
    for (backup_file, target) in pairs {
        match stage(backup_file, target) {
            Ok(one) => staged.push(one),
            Err(err) => {
                discard(&staged);
                return Err(err);
            }
        }
    }
    Ok(staged)
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
