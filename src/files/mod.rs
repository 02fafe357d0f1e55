//! File-system helpers that keep the safety rules of SPEC section 5: private modes,
//! atomic replacement and fsync of what was written.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, NamingFullDisk, Result};

mod copy;

pub use copy::{
    PARALLEL_FROM_BYTES, beside, copy_hashed, copy_private, create_for_copy, hex, read_full, sha256_file,
    write_all_at,
};

pub const PRIVATE_DIR_MODE: u32 = 0o700;
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates `path` empty with mode 0600 if it does not exist; returns whether it did.
pub fn create_private_file(path: &Path) -> Result<bool> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
    {
        Ok(file) => {
            // The umask may have narrowed the mode, never widened it; set it exactly.
            file.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))
                .io_context(|| format!("setting the mode of {}", path.display()))?;
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => {
            Err(crate::error::Error::io(format!("creating {}", path.display()), e)).naming_full_disk(path)
        }
    }
}

/// Creates a folder (and its parents) with mode 0700; returns whether it was missing.
pub fn create_private_dir(path: &Path) -> Result<bool> {
    if path.is_dir() {
        return Ok(false);
    }
    // Every folder this creates is private, not only the last one.
    let missing: Vec<&Path> = path
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .collect();
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(crate::error::Error::io(
                    format!("creating folder {}", dir.display()),
                    e,
                ))
                .naming_full_disk(dir);
            }
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE))
            .io_context(|| format!("setting the mode of {}", dir.display()))?;
    }
    Ok(true)
}

/// Sets `path` to exactly `mode` unless it already has it (a home made by hand with
/// mode 0755 becomes 0700).
pub fn restrict_mode(path: &Path, mode: u32) -> Result<()> {
    let current = fs::metadata(path)
        .io_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if current & 0o777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .io_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(())
}

/// Makes a rename or create in `dir` durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .io_context(|| format!("syncing folder {}", dir.display()))
        .naming_full_disk(dir)
}

pub fn fsync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .io_context(|| format!("syncing {}", path.display()))
        .naming_full_disk(path)
}

/// Writes `bytes` to `path` atomically with mode 0600: a temporary file beside it,
/// fsync, rename over, fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent(path);
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE_FILE_MODE)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(crate::error::Error::io(format!("writing {}", path.display()), e)).naming_full_disk(path);
    }
    fsync_dir(&dir)
}

/// The SQLite side files that belong to a database file.
pub fn sqlite_side_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [with("-wal"), with("-shm"), with("-journal")]
}

/// Moves a closed SQLite database with its side files; the destination must not exist.
pub fn move_database(from: &Path, to: &Path) -> Result<()> {
    move_database_unsynced(from, to)?;
    fsync_dir(&parent(from))?;
    fsync_dir(&parent(to))
}

/// [`move_database`] without syncing the folders, for callers that move many files
/// and sync each folder once afterwards.
pub fn move_database_unsynced(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        return Err(
            crate::error::Error::conflict(format!("{} already exists", to.display()))
                .with_hint("run 'tenantctl doctor' to find files that no customer owns"),
        );
    }
    fs::rename(from, to).io_context(|| format!("moving {} to {}", from.display(), to.display()))?;
    for (src, dst) in sqlite_side_files(from).iter().zip(sqlite_side_files(to).iter()) {
        match fs::rename(src, dst) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(crate::error::Error::io(format!("moving {}", src.display()), e)),
        }
    }
    Ok(())
}

/// Removes a database with its side files; a missing file is not an error.
pub fn remove_database(path: &Path) -> Result<()> {
    for file in std::iter::once(path.to_path_buf()).chain(sqlite_side_files(path)) {
        match fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(crate::error::Error::io(format!("removing {}", file.display()), e)),
        }
    }
    Ok(())
}

/// Writes a new file (mode 0600) that must not exist yet, and syncs it. `create_new`
/// also refuses a symlink in its place, so nothing is written through one.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE_MODE)
            .open(path)?;
        file.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write()
        .io_context(|| format!("writing {}", path.display()))
        .naming_full_disk(path)
}

/// Puts the folder `fresh` in the place of the folder `target` (both in one parent),
/// then removes the old tree without following any symlink in it. On Linux the two
/// trade places in one step, so `target` is never missing.
pub fn replace_dir(fresh: &Path, target: &Path) -> Result<()> {
    let parent_dir = parent(target);
    let aside = parent_dir.join(format!(
        ".{}.old-{}",
        target
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    if exchange(fresh, target)? {
        fs::rename(fresh, &aside).io_context(|| format!("moving {} aside", fresh.display()))?;
    } else {
        fs::rename(target, &aside).io_context(|| format!("moving {} aside", target.display()))?;
        fs::rename(fresh, target).io_context(|| format!("renaming {} into place", fresh.display()))?;
    }
    fsync_dir(&parent_dir)?;
    // Removes symlinks themselves, never what they point to.
    fs::remove_dir_all(&aside).io_context(|| format!("removing {}", aside.display()))
}

/// Swaps two paths atomically where the system can; `false` when it cannot.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exchange(a: &Path, b: &Path) -> Result<bool> {
    use nix::fcntl::{RenameFlags, renameat2};
    // Both live in one folder: name them relative to it.
    let dir = File::open(parent(b)).io_context(|| format!("opening {}", parent(b).display()))?;
    let (Some(a_name), Some(b_name)) = (a.file_name(), b.file_name()) else {
        return Ok(false);
    };
    match renameat2(&dir, a_name, &dir, b_name, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => Ok(false),
        Err(e) => Err(crate::error::Error::io(
            format!("swapping {} with {}", a.display(), b.display()),
            e.into(),
        )),
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(_: &Path, _: &Path) -> Result<bool> {
    Ok(false)
}

/// Bytes a database occupies on disk, side files included; 0 when it is missing.
pub fn database_size(path: &Path) -> u64 {
    std::iter::once(path.to_path_buf())
        .chain(sqlite_side_files(path))
        // A link counts as itself: never as the (other tenant's) file it points at.
        .filter_map(|p| fs::symlink_metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_and_dirs_get_exact_modes() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        assert!(create_private_dir(&sub).unwrap());
        assert!(!create_private_dir(&sub).unwrap());
        assert_eq!(fs::metadata(&sub).unwrap().permissions().mode() & 0o777, 0o700);
        let file = sub.join("f");
        assert!(create_private_file(&file).unwrap());
        assert!(!create_private_file(&file).unwrap());
        assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.json");
        write_atomic(&file, b"one").unwrap();
        write_atomic(&file, b"two").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn move_database_takes_side_files_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.db");
        let b = dir.path().join("b.db");
        fs::write(&a, b"db").unwrap();
        fs::write(dir.path().join("a.db-wal"), b"wal").unwrap();
        move_database(&a, &b).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read(dir.path().join("b.db-wal")).unwrap(), b"wal");
        fs::write(&a, b"db").unwrap();
        assert!(move_database(&a, &b).is_err());
        assert_eq!(database_size(&b), 5);
    }
}
