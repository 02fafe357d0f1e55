//! tenantctl: the operator's command line for a multi-tenant SaaS platform.
//!
//! The library holds the whole program so tests can drive it: [`cli`] parses and
//! dispatches, [`ops`] does the work, [`catalog`] owns every SQL statement against the
//! catalog, [`engine`] reaches tenant databases wherever they live, and [`render`] writes all output.

// Backups bypass the page cache with O_DIRECT (files.rs), the home lock is flock(2)
// (lock.rs), and "is a tenant open elsewhere" probes the lock byte SQLite's unix VFS
// holds in the -shm file (lock.rs). Those are tested on Linux only; elsewhere they may
// be missing or mean something else, so other targets do not build at all.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "tenantctl runs on Linux only: it relies on O_DIRECT, flock(2) and the lock bytes of \
     SQLite's -shm file as Linux has them; build it for a Linux target"
);

pub mod backup;
pub mod catalog;
pub mod cli;
pub mod context;
pub mod engine;
pub mod error;
pub mod fan_out;
pub mod files;
pub mod home;
pub mod import;
pub mod lock;
pub mod migrations;
pub mod ops;
pub mod render;
pub mod secrets;
pub mod site_config;
pub mod sql_text;
pub mod time;
pub mod validate;
pub mod words;

pub use error::{Error, ErrorKind, Result};
