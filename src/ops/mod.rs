//! One module per capability. Operations take plain arguments, return plain data and
//! typed errors, and never print. They also decide how a command ends: a failure is an
//! [`Error`](crate::error::Error) whose kind is the exit code, and a report that must
//! be shown in full before a non-zero exit comes back as a [`Reported`].

pub mod access;
pub mod adopt;
pub mod audit;
pub mod backup;
pub mod config;
pub mod credentials;
pub mod customers;
pub mod doctor;
mod doctor_servers;
pub mod export;
pub mod import;
pub mod moves;
pub mod outcome;
pub mod placement;
pub mod plans;
pub mod query;
pub mod quota;
pub mod recovery;
pub mod resolve;
pub mod restore;
pub mod rollback;
pub mod servers;
pub mod setup;
pub mod sites;
pub mod tenants;
pub mod usage;

pub use outcome::Reported;

/// Who acts, and in which home: what every mutating operation needs.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub home: &'a crate::home::Home,
}

/// How a long operation reports that it moves; the CLI draws a bar, tests see nothing.
pub trait Progress: Sync {
    fn start(&self, _total: u64) {}
    fn advance(&self, _done: u64) {}
    fn finish(&self) {}
}

/// Progress that nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {}
