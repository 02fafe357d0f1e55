//! The one error type of the library and the exit-code table of SPEC section 2.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// What kind of failure an [`Error`] is; decides the exit code and the JSON `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Unexpected,
    Usage,
    NotFound,
    Conflict,
    QuotaExceeded,
    Refused,
    VerificationFailed,
    PartialFailure,
    InvalidInput,
}

impl ErrorKind {
    /// The exit-code table of SPEC section 2, in one place.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Unexpected => 1,
            ErrorKind::Usage => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::Conflict => 4,
            ErrorKind::QuotaExceeded => 5,
            ErrorKind::Refused => 6,
            ErrorKind::VerificationFailed => 7,
            ErrorKind::PartialFailure => 8,
            ErrorKind::InvalidInput => 9,
        }
    }

    /// The stable machine-readable name used in JSON error objects.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Unexpected => "unexpected",
            ErrorKind::Usage => "usage",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::QuotaExceeded => "quota_exceeded",
            ErrorKind::Refused => "refused",
            ErrorKind::VerificationFailed => "verification_failed",
            ErrorKind::PartialFailure => "partial_failure",
            ErrorKind::InvalidInput => "invalid_input",
        }
    }
}

/// A failure the operator can act on: what went wrong, and optionally what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Known {
        kind: ErrorKind,
        message: String,
        hint: Option<String>,
    },
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The file system refused more bytes for `path`; `free` says how much it has left.
    #[error("no space left writing {} ({free})", path.display())]
    DiskFull { path: PathBuf, free: String },
    /// Writing the command's output failed (a full disk, a closed pipe).
    #[error("{0}")]
    Output(#[from] std::io::Error),
    /// A database server did not answer (refused, timed out, went away): its other
    /// tenants fail with this at once instead of each waiting out a connect timeout.
    #[error("server {server} is unreachable: {cause}")]
    ServerDown { server: String, cause: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn known(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Known {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::known(ErrorKind::Usage, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::known(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::known(ErrorKind::Conflict, message)
    }
    pub fn quota(message: impl Into<String>) -> Self {
        Self::known(ErrorKind::QuotaExceeded, message)
    }
    pub fn refused(message: impl Into<String>) -> Self {
        Self::known(ErrorKind::Refused, message)
    }
    pub fn verification(message: impl Into<String>) -> Self {
        Self::known(ErrorKind::VerificationFailed, message)
    }
    pub fn partial(message: impl Into<String>) -> Self {
        Self::known(ErrorKind::PartialFailure, message)
    }
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::known(ErrorKind::InvalidInput, message)
    }
    pub fn unexpected(message: impl Into<String>) -> Self {
        Self::known(ErrorKind::Unexpected, message)
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Adds advice for the operator; shown in parentheses after the message.
    pub fn with_hint(self, text: impl Into<String>) -> Self {
        match self {
            Error::Known { kind, message, .. } => Error::Known {
                kind,
                message,
                hint: Some(text.into()),
            },
            other => other,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Known { kind, .. } => *kind,
            // A lock held past the busy timeout is someone else's work in progress,
            // not a fault: refused, like the home lock (SPEC section 5).
            Error::Sqlite(err) if is_busy(err) => ErrorKind::Refused,
            Error::Sqlite(_)
            | Error::Migration(_)
            | Error::Io { .. }
            | Error::DiskFull { .. }
            | Error::Json(_)
            | Error::Output(_)
            | Error::ServerDown { .. } => ErrorKind::Unexpected,
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Known { hint, .. } => hint.as_deref(),
            Error::Sqlite(err) if is_busy(err) => Some(BUSY_HINT),
            Error::DiskFull { .. } => Some(FULL_DISK_HINT),
            _ => None,
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }

    /// Whether a server, not the work on it, failed: a fleet run goes on elsewhere.
    pub fn is_server_down(&self) -> bool {
        matches!(self, Error::ServerDown { .. })
    }

    /// Whether the reader of stdout went away (`| head`): their choice, not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Error::Output(source) | Error::Io { source, .. } => {
                source.kind() == std::io::ErrorKind::BrokenPipe
            }
            _ => false,
        }
    }
}

/// What to do when the file system refuses more bytes.
const FULL_DISK_HINT: &str = "free space on that file system, or move the home (--home) or the \
backups (--backup-dir) to a bigger one; a file size limit (ulimit -f) or a disk quota stops \
writes the same way";

impl Error {
    /// Whether the file system refused to take more bytes: SQLite's "database or disk
    /// is full", or an I/O error for no space, a disk quota or a file size limit
    /// (ENOSPC, EDQUOT, EFBIG), also when it is the cause of another error.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::DiskFull { .. } => true,
            Error::Known { .. } => false,
            other => caused_by_full_disk(other),
        }
    }

    /// A full disk met while writing `written`, said with that file and the space
    /// left on its file system; any other error is returned as it is, and so is one
    /// that already names the file (the innermost writer knows it best). Still exit 1
    /// (SPEC section 2: an I/O or SQLite error).
    pub fn naming_full_disk(self, written: &Path) -> Error {
        match self {
            Error::DiskFull { .. } => self,
            other if other.is_disk_full() => disk_full(written),
            other => other,
        }
    }
}

/// Restates a full disk in a result, see [`Error::naming_full_disk`].
pub trait NamingFullDisk<T> {
    fn naming_full_disk(self, written: &Path) -> Result<T>;
}

impl<T, E: Into<Error>> NamingFullDisk<T> for std::result::Result<T, E> {
    fn naming_full_disk(self, written: &Path) -> Result<T> {
        self.map_err(|err| err.into().naming_full_disk(written))
    }
}

/// "no space left writing FILE (N free on its file system)", with advice.
pub fn disk_full(written: &Path) -> Error {
    Error::DiskFull {
        path: written.to_path_buf(),
        free: free_space_note(written),
    }
}

/// The space an unprivileged writer has left on the file system holding `path`,
/// asked of the nearest folder that exists (the file itself may be gone by now).
fn free_space_note(path: &Path) -> String {
    path.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .find_map(|p| fs4::available_space(p).ok())
        .map_or_else(
            || "free space unknown".to_string(),
            |bytes| format!("{} free on its file system", binary_size(bytes)),
        )
}

/// Bytes in binary units with one decimal: "512 B", "12.0 KiB", "3.4 GiB".
fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Whether `err` or any error beneath it is a full disk, as SQLite or the system says it.
pub fn caused_by_full_disk(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(sqlite) = err.downcast_ref::<rusqlite::Error>()
            && sqlite.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
        {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::QuotaExceeded
                    | std::io::ErrorKind::FileTooLarge
            )
        {
            return true;
        }
        current = err.source();
    }
    false
}

/// What holds a SQLite lock, and what to do about it.
const BUSY_HINT: &str = "the database is locked by another tenantctl process or an open sqlite3 \
session; retry when it is done (tenantctl waits up to --lock-timeout for the catalog, 30 s for a \
tenant database)";

/// Whether SQLite gave up waiting for another connection's lock.
fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Attaches a description of what was being done to I/O errors.
pub trait IoContext<T> {
    fn io_context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::io(context(), source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_spec_exit_code() {
        let table = [
            (ErrorKind::Unexpected, 1, "unexpected"),
            (ErrorKind::Usage, 2, "usage"),
            (ErrorKind::NotFound, 3, "not_found"),
            (ErrorKind::Conflict, 4, "conflict"),
            (ErrorKind::QuotaExceeded, 5, "quota_exceeded"),
            (ErrorKind::Refused, 6, "refused"),
            (ErrorKind::VerificationFailed, 7, "verification_failed"),
            (ErrorKind::PartialFailure, 8, "partial_failure"),
            (ErrorKind::InvalidInput, 9, "invalid_input"),
        ];
        for (kind, code, name) in table {
            assert_eq!(kind.exit_code(), code);
            assert_eq!(kind.code(), name);
        }
    }

    #[test]
    fn a_busy_database_is_refused_with_a_hint() {
        let busy =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        let err = Error::from(busy);
        assert_eq!(err.exit_code(), 6);
        assert!(err.hint().unwrap().contains("sqlite3 session"));
        let other =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT), None);
        assert_eq!(Error::from(other).exit_code(), 1);
    }

    #[test]
    fn hints_attach_only_to_known_errors() {
        let err = Error::not_found("customer acme").with_hint("see 'tenantctl customer list'");
        assert_eq!(err.hint(), Some("see 'tenantctl customer list'"));
        assert_eq!(err.exit_code(), 3);
        let io = Error::io("reading x", std::io::Error::other("boom")).with_hint("ignored");
        assert_eq!(io.hint(), None);
        assert_eq!(io.exit_code(), 1);
    }

    fn sqlite_full() -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None)
    }

    #[test]
    fn a_full_disk_names_the_file_and_the_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let written = dir.path().join("gone/catalog.db");
        let storage_full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let too_large = std::io::Error::from_raw_os_error(nix::libc::EFBIG);
        let quota = std::io::Error::from_raw_os_error(nix::libc::EDQUOT);
        for err in [
            Error::from(sqlite_full()),
            Error::io("writing x", storage_full),
            Error::io("writing x", too_large),
            Error::Output(quota),
        ] {
            assert!(err.is_disk_full(), "{err}");
            let said = err.naming_full_disk(&written);
            let text = said.to_string();
            assert!(
                text.starts_with(&format!("no space left writing {} (", written.display())),
                "{text}"
            );
            assert!(text.ends_with(" free on its file system)"), "{text}");
            assert!(said.hint().unwrap().contains("free space"));
            assert_eq!(said.exit_code(), 1, "as any other I/O or SQLite error");
            let outer = said.naming_full_disk(Path::new("/elsewhere"));
            assert!(
                outer.to_string().contains("gone/catalog.db"),
                "the first file named stays"
            );
        }
    }

    #[test]
    fn a_full_disk_beneath_a_migration_error_is_found() {
        let migration = refinery::Migration::unapplied("V1__a", "CREATE TABLE a (x);").unwrap();
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        // An in-memory database capped at its first page fills up at once.
        conn.pragma_update(None, "max_page_count", 1).unwrap();
        let failed = refinery::Runner::new(&[migration]).run(&mut conn).unwrap_err();
        let err = Error::from(failed);
        assert!(err.is_disk_full(), "{err}");
        assert!(
            err.naming_full_disk(Path::new("/t.db"))
                .to_string()
                .contains("/t.db")
        );
    }

    #[test]
    fn other_errors_pass_unchanged() {
        let corrupt =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT), None);
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        for err in [
            Error::from(corrupt),
            Error::io("writing x", denied),
            Error::unexpected("no space left writing elsewhere"),
        ] {
            let before = err.to_string();
            assert!(!err.is_disk_full());
            assert_eq!(err.naming_full_disk(Path::new("/x")).to_string(), before);
        }
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(binary_size(512), "512 B");
        assert_eq!(binary_size(12 * 1024), "12.0 KiB");
        assert_eq!(binary_size(3 * 1024 * 1024 + 512 * 1024), "3.5 MiB");
        assert_eq!(binary_size(5 << 40), "5.0 TiB");
    }
}
