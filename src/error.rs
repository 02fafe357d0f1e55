//! The one error type of the library and the exit-code table of SPEC section 2.

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
    /// Writing the command's output failed (a full disk, a closed pipe).
    #[error("{0}")]
    Output(#[from] std::io::Error),
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
            Error::Sqlite(_) | Error::Migration(_) | Error::Io { .. } | Error::Json(_) | Error::Output(_) => {
                ErrorKind::Unexpected
            }
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Known { hint, .. } => hint.as_deref(),
            Error::Sqlite(err) if is_busy(err) => Some(BUSY_HINT),
            _ => None,
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
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
}
