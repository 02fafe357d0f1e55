//! `audit`.

use clap::Args;

use super::Session;
use crate::ops::audit::{self, ListAudit};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl audit --customer acme --since 7d\n  tenantctl audit --action customer. --json"
)]
pub struct AuditArgs {
    /// Only events of this customer (slug, id or email)
    #[arg(long, value_name = "CUSTOMER")]
    pub customer: Option<String>,
    /// Only this action (customer.create), or actions starting with a prefix ending in '.'
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// Only events at or after TIME (RFC 3339, YYYY-MM-DD, or an age such as 24h or 7d)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Show at most N events; 0 for all
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: u64,
}

const COLUMNS: &[&str] = &["id", "at", "actor", "action", "target", "details"];

pub fn run(session: &Session, args: AuditArgs) -> crate::error::Result<()> {
    let catalog = session.catalog()?;
    let events = audit::list(
        &catalog,
        &ListAudit {
            customer: args.customer,
            action: args.action,
            since: args.since,
            limit: (args.limit > 0).then_some(args.limit),
        },
    )?;
    session.out.list(COLUMNS, events)?;
    Ok(())
}
