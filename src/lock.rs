//! The exclusive `HOME/.lock` held by operations that replace whole files.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
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
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_FILE_MODE)
            .open(path)
            .io_context(|| format!("opening lock file {}", path.display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
