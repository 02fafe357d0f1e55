//! `init`, `migrate` and `status`.

use std::path::PathBuf;

use clap::Args;

use super::Session;
use crate::ops::setup::{self, MigrateMode};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl init\n  tenantctl --home /srv/tenantctl init --tenant-migrations /srv/schema"
)]
pub struct InitArgs {
    /// Keep tenant migrations in DIR instead of HOME/tenant-migrations
    #[arg(long, value_name = "DIR")]
    pub tenant_migrations: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  tenantctl migrate --status\n  tenantctl migrate")]
pub struct MigrateArgs {
    /// Show what would be applied, change nothing
    #[arg(long, conflicts_with = "status")]
    pub dry_run: bool,
    /// List applied and pending migrations with their checksums
    #[arg(long)]
    pub status: bool,
    /// Import legacy configs from DIR instead (same as 'tenantctl import DIR')
    #[arg(long, value_name = "DIR", conflicts_with = "status")]
    pub from_files: Option<PathBuf>,
    /// With --from-files: import the valid files even when some are invalid
    #[arg(long, requires = "from_files")]
    pub continue_on_error: bool,
    /// With --from-files: plan for customers whose files name none
    #[arg(long, value_name = "PLAN", requires = "from_files")]
    pub plan: Option<String>,
}

const MIGRATION_COLUMNS: &[&str] = &["version", "name", "status", "checksum", "applied_at"];

pub fn init(session: &Session, args: InitArgs) -> crate::error::Result<()> {
    let report = setup::init(
        session.actor(),
        args.tenant_migrations.as_deref(),
        session.ctx.lock_timeout,
    )?;
    session.out.object(&report)?;
    Ok(())
}

pub fn migrate(session: &Session, args: MigrateArgs) -> crate::error::Result<()> {
    let mode = if args.status {
        MigrateMode::Status
    } else if args.dry_run {
        MigrateMode::DryRun
    } else {
        MigrateMode::Apply
    };
    let records = setup::migrate(&session.home, mode, session.ctx.lock_timeout)?;
    session.out.list(MIGRATION_COLUMNS, &records)?;
    Ok(())
}

pub fn status(session: &Session) -> crate::error::Result<()> {
    let report = setup::status(&session.home, &session.ctx.backup_dir)?;
    session.out.object(&report)?;
    Ok(())
}
