//! Putting one backed-up file in place of a live database so that a crash at any
//! moment leaves either the old database or the new one, whole.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::error::{Error, IoContext, Result};
use crate::{files, tenantdb};

/// Copies `backup_file` beside `target`, gives it the live journal mode (`wal`),
/// checks it with integrity_check, syncs it, and renames it over `target`.
pub fn replace_with(backup_file: &Path, target: &Path, wal: bool) -> Result<()> {
    let dir = target
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    files::create_private_dir(&dir)?;
    let staging = dir.join(format!(
        ".restore-{}-{:08x}.db",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = stage(backup_file, &staging, wal).and_then(|()| swap_in(&staging, target));
    if result.is_err() {
        let _ = files::remove_database(&staging);
    }
    result
}

fn stage(backup_file: &Path, staging: &Path, wal: bool) -> Result<()> {
    files::copy_private(backup_file, staging)?;
    let conn = tenantdb::open_tenant(staging)?;
    if wal {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    let verdict: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    conn.close().map_err(|(_, e)| e)?;
    if verdict != "ok" {
        return Err(Error::verification(format!(
            "the restored copy fails integrity_check: {verdict}"
        )));
    }
    files::fsync_file(staging)
}

/// Folds the live database's WAL in (so no stale WAL can be replayed onto the new
/// file), removes its side files, and renames the new file over it.
fn swap_in(staging: &Path, target: &Path) -> Result<()> {
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
    std::fs::rename(staging, target)
        .io_context(|| format!("moving the restored file to {}", target.display()))?;
    files::fsync_dir(
        &target
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    )
}

/// Checkpoints a live database completely; refuses when its WAL cannot be emptied
/// (another process is reading it), since swapping then could lose or mix data.
fn fold_wal(target: &Path) -> Result<()> {
    let Ok(conn) = Connection::open(target) else {
        return Ok(());
    };
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    // A damaged live file is what restores are for: nothing to fold then.
    let Ok((busy, _, _)) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    }) else {
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
