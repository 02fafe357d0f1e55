//! The exclusive `HOME/.lock` held by operations that replace whole files, and the
//! owner locks that tell whether the command behind a half-done operation still runs.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::files::PRIVATE_FILE_MODE;

/// Held until dropped; the operating system releases it if the process dies.
#[derive(Debug)]
pub struct HomeLock {
    _file: File,
}

const POLL_INTERVAL: Duration = Duration::from_millis(50);

impl HomeLock {
    /// Waits up to `timeout` for the lock, then refuses with exit 6.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<Self> {
        let file = open_lock_file(path)?;
        let deadline = Instant::now() + timeout;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(HomeLock { _file: file }),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(POLL_INTERVAL);
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::refused(format!(
                        "another tenantctl holds {} (waited {} s)",
                        path.display(),
                        timeout.as_secs_f64()
                    ))
                    .with_hint("wait for it to finish, or raise --lock-timeout"));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", path.display()), e));
                }
            }
        }
    }
}

/// Proof that a command is alive: an exclusive lock on `HOME/run/<token>.lock`, held
/// for as long as the command works. Ledger rows and staging names carry the token;
/// whoever can take the lock knows the owner is gone (the system drops a dead
/// process's locks, SIGKILL included) and may finish or undo its work.
#[derive(Debug)]
pub struct Owner {
    token: String,
    path: PathBuf,
    _file: File,
}

impl Owner {
    pub fn new(run_dir: &Path) -> Result<Self> {
        crate::files::create_private_dir(run_dir)?;
        // A sweep of killed commands' half-made files (see `remove_unmade`) can take
        // one of ours between its creation and its lock: then another token is tried.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::make(run_dir) {
                Ok(owner) => return Ok(owner),
                Err(err) if attempt >= 3 => return Err(err),
                Err(_) => {}
            }
        }
    }

    fn make(run_dir: &Path) -> Result<Self> {
        let token = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
        let path = run_dir.join(format!("{token}.lock"));
        // Locked under a name nobody looks at, then renamed: a lock file under its
        // real name is always held by its owner, never found free while being made.
        let making = run_dir.join(format!(".{token}{MAKING_SUFFIX}"));
        let file = open_lock_file(&making)?;
        file.try_lock()
            .map_err(|e| Error::unexpected(format!("locking {}: {e:?}", making.display())))?;
        std::fs::rename(&making, &path).io_context(|| format!("creating {}", path.display()))?;
        Ok(Owner {
            token,
            path,
            _file: file,
        })
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the command that holds `token` still runs: its lock file is there and
/// locked. A lock file that is gone, or that can be locked, belongs to nobody.
pub fn owner_alive(run_dir: &Path, token: &str) -> bool {
    is_token(token) && lock_held(&run_dir.join(format!("{token}.lock")))
}

fn lock_held(path: &Path) -> bool {
    let Ok(file) = OpenOptions::new().read(true).write(true).open(path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => false,
        Err(TryLockError::WouldBlock) => true,
        // Unknown state: assume alive rather than undo a live command's work.
        Err(TryLockError::Error(_)) => true,
    }
}

/// The files in `run_dir` whose owner is gone: lock files nobody holds, and lock files
/// a killed command was still making.
pub fn dead_owner_files(run_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|path| !lock_held(path))
        .collect()
}

/// The tokens of the lock files under their real name (`<token>.lock`) that nobody
/// holds: their command was killed, before it recorded any operation or after another
/// command finished its operation. A real name is only given to a lock already held
/// (see [`Owner::new`]), so none of them is a live command's.
pub fn dead_owner_tokens(run_dir: &Path) -> Vec<String> {
    dead_owner_files(run_dir)
        .iter()
        .filter_map(|path| {
            path.file_name()?
                .to_str()?
                .strip_suffix(".lock")
                .map(str::to_string)
        })
        .filter(|token| is_token(token))
        .collect()
}

/// How an owner lock file is named while it is made.
const MAKING_SUFFIX: &str = ".new";

/// Removes the owner lock files that commands killed while making them left under
/// their making name (`.<token>.new`): each is locked here first, so one whose command
/// still makes it is left alone (and one this takes from a command just starting is
/// only a retry for that command, see [`Owner::new`]).
pub fn remove_unmade(run_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(token) = name
            .to_str()
            .and_then(|n| n.strip_prefix('.'))
            .and_then(|n| n.strip_suffix(MAKING_SUFFIX))
        else {
            continue;
        };
        if !is_token(token) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        if file.try_lock().is_ok() {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Removes the lock file of a command that is gone.
pub fn remove_dead_owner_lock(run_dir: &Path, token: &str) {
    if is_token(token) && !owner_alive(run_dir, token) {
        let _ = std::fs::remove_file(run_dir.join(format!("{token}.lock")));
    }
}

/// `<pid>-<8 hex digits>`, as [`Owner::new`] makes them; nothing else becomes a path.
pub fn is_token(token: &str) -> bool {
    match token.split_once('-') {
        Some((pid, nonce)) => {
            !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && nonce.len() == 8
                && nonce.bytes().all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
        .io_context(|| format!("opening lock file {}", path.display()))
}

/// Whether some process has the SQLite database at `db` open in WAL mode: every such
/// connection holds a shared lock on the "DMS" byte of its `-shm` file (byte 128 in
/// SQLite's unix VFS), which a test for an exclusive lock finds.
pub fn sqlite_in_use(db: &Path) -> Result<bool> {
    use nix::fcntl::{FcntlArg, fcntl};
    let shm = crate::files::sqlite_side_files(db)[1].clone();
    let file = match File::open(&shm) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("opening {}", shm.display()), e)),
    };
    const DMS_BYTE: i64 = 128;
    let mut probe = nix::libc::flock {
        l_type: nix::libc::F_WRLCK as i16,
        l_whence: nix::libc::SEEK_SET as i16,
        l_start: DMS_BYTE,
        l_len: 1,
        l_pid: 0,
    };
    fcntl(&file, FcntlArg::F_GETLK(&mut probe))
        .map_err(|e| Error::io(format!("testing the locks of {}", shm.display()), e.into()))?;
    Ok(probe.l_type != nix::libc::F_UNLCK as i16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_made_owner_lock_goes_unless_someone_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let left = dir.path().join(".123-0000abcd.new");
        let making = dir.path().join(".124-0000abce.new");
        let other = dir.path().join(".notes.new");
        for path in [&left, &making, &other] {
            std::fs::write(path, b"").unwrap();
        }
        let held = OpenOptions::new().read(true).write(true).open(&making).unwrap();
        held.try_lock().unwrap();
        remove_unmade(dir.path());
        assert!(!left.exists(), "a killed command's file goes");
        assert!(making.exists(), "a file being made stays");
        assert!(other.exists(), "only owner tokens are touched");
        // An owner is still made, and named for real, beside them.
        let owner = Owner::new(dir.path()).unwrap();
        assert!(owner_alive(dir.path(), owner.token()));
    }

    #[test]
    fn an_open_sqlite_connection_in_another_process_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (x);")
            .unwrap();
        drop(conn);
        assert!(!sqlite_in_use(&db).unwrap());
        // fcntl locks are per process, so the holder must be another process.
        let mut holder = std::process::Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import sqlite3,sys; c=sqlite3.connect('{}'); c.execute('select * from t').fetchall(); sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()",
                db.display()
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready");
        assert!(sqlite_in_use(&db).unwrap());
        drop(holder.stdin.take());
        holder.wait().unwrap();
        assert!(!sqlite_in_use(&db).unwrap());
    }

    #[test]
    fn an_owner_is_alive_until_dropped_and_its_lock_file_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let owner = Owner::new(dir.path()).unwrap();
        assert!(is_token(owner.token()));
        assert!(owner_alive(dir.path(), owner.token()));
        let token = owner.token().to_string();
        assert!(dead_owner_files(dir.path()).is_empty());
        drop(owner);
        assert!(!owner_alive(dir.path(), &token));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        std::fs::write(dir.path().join("9-0000abcd.lock"), "").unwrap();
        assert_eq!(dead_owner_files(dir.path()).len(), 1);
        assert!(!owner_alive(dir.path(), "../../etc/passwd"));
    }

    #[test]
    fn second_holder_times_out_with_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let first = HomeLock::acquire(&path, Duration::ZERO).unwrap();
        let err = HomeLock::acquire(&path, Duration::from_millis(100)).unwrap_err();
        assert_eq!(err.exit_code(), 6);
        drop(first);
        assert!(HomeLock::acquire(&path, Duration::ZERO).is_ok());
    }
}
