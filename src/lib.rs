//! tenantctl: the operator's command line for a multi-tenant SaaS platform.
//!
//! The library holds the whole program so tests can drive it: [`cli`] parses and
//! dispatches, [`ops`] does the work, [`catalog`] owns every SQL statement against the
//! catalog, [`tenantdb`] owns tenant database files, and [`render`] writes all output.

pub mod backup;
pub mod catalog;
pub mod cli;
pub mod context;
pub mod error;
pub mod fan_out;
pub mod files;
pub mod home;
pub mod import;
pub mod lock;
pub mod ops;
pub mod render;
pub mod tenantdb;
pub mod time;
pub mod validate;

pub use error::{Error, ErrorKind, Result};
