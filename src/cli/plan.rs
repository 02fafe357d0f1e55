//! `plan list|set`.

use clap::{Args, Subcommand};

use super::Session;
use crate::ops::plans::{self, PlanValues};

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    #[command(after_help = "Example:\n  tenantctl plan list --json")]
    /// List plans with their quotas and how many customers use each
    List,
    /// Create a plan or change its quotas
    #[command(
        after_help = "Examples:\n  tenantctl plan set pro --max-sites 20\n  tenantctl plan set starter --max-sites 1 --force\n  \
        tenantctl plan set team --max-sites 5 --max-storage-mb 5120 --max-bandwidth-gb 50 --max-api-calls 50000"
    )]
    Set(SetArgs),
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Plan name (lowercase letters, digits, hyphens)
    pub name: String,
    /// Sites a customer may have
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub max_sites: Option<i64>,
    /// Tenant database size in MiB
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub max_storage_mb: Option<i64>,
    /// Bandwidth per month in GiB
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub max_bandwidth_gb: Option<i64>,
    /// API calls per month
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub max_api_calls: Option<i64>,
    /// Apply a change even when it puts customers on the plan over a quota
    #[arg(long)]
    pub force: bool,
}

const COLUMNS: &[&str] = &[
    "name",
    "max_sites",
    "max_storage_mb",
    "max_bandwidth_gb",
    "max_api_calls",
    "customers",
];

pub fn run(session: &Session, command: PlanCommand) -> crate::error::Result<()> {
    let mut catalog = session.catalog()?;
    match command {
        PlanCommand::List => session.out.list(COLUMNS, plans::list(&catalog)?)?,
        PlanCommand::Set(args) => {
            let values = PlanValues {
                max_sites: args.max_sites,
                max_storage_mb: args.max_storage_mb,
                max_bandwidth_gb: args.max_bandwidth_gb,
                max_api_calls: args.max_api_calls,
            };
            let change = plans::set(&mut catalog, session.actor(), &args.name, values, args.force)?;
            if !change.over_quota.is_empty() {
                session.messages.warning(&format!(
                    "plan {} now puts customers over quota: {}",
                    change.plan.name,
                    change.over_quota.join(", ")
                ));
            }
            session.out.object(&change.plan)?
        }
    }
    Ok(())
}
