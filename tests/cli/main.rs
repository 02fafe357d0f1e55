//! Integration tests: the real binary against a temporary home.

mod access;
mod audit;
mod backup;
mod backup_servers;
mod concurrency;
mod config;
mod crashes;
mod customers;
mod disk_full;
mod docs;
mod doctor_replication;
mod doctor_servers;
mod fleet_servers;
mod global;
mod hardening;
mod import;
mod moves;
mod outcomes;
mod pg_server;
mod plans;
mod servers;
mod setup;
mod sites;
mod support;
mod tenants;
mod verify_servers;
