//! One module per capability. Operations take plain arguments, return plain data and
//! typed errors, and never print.

pub mod audit;
pub mod config;
pub mod customers;
pub mod plans;
pub mod quota;
pub mod setup;
pub mod sites;

/// Who acts, and in which home: what every mutating operation needs.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub home: &'a crate::home::Home,
}
