//! `import`, `migrate --from-files` and `export`.

use std::path::PathBuf;

use clap::Args;

use super::Session;
use crate::ops::export;
use crate::ops::import::{self, ImportRequest};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl import /srv/legacy/sites --dry-run\n  tenantctl import /srv/legacy/sites\n  \
    tenantctl import /srv/legacy/sites --continue-on-error --plan starter"
)]
pub struct ImportArgs {
    /// Folder of legacy JSON configs (site files and customer folders)
    pub dir: PathBuf,
    /// Report what would happen, write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Import the valid files even when some are invalid (exit 8)
    #[arg(long)]
    pub continue_on_error: bool,
    /// Plan for customers whose files name none [default: the default_plan setting]
    #[arg(long, value_name = "PLAN")]
    pub plan: Option<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl export /srv/legacy/export\n  tenantctl export /srv/legacy/export --force"
)]
pub struct ExportArgs {
    /// Folder to write (created if missing; an existing one must be empty)
    pub dir: PathBuf,
    /// Replace a folder that is not empty: a fresh tree is written beside it and swapped in
    #[arg(long)]
    pub force: bool,
}

const COLUMNS: &[&str] = &["action", "path", "customer", "site", "field", "reason"];

pub fn import(session: &Session, args: ImportArgs) -> crate::error::Result<()> {
    let mut catalog = if args.dry_run {
        session.catalog()?
    } else {
        session.catalog_recovered()?.0
    };
    let request = ImportRequest {
        dir: args.dir,
        dry_run: args.dry_run,
        continue_on_error: args.continue_on_error,
        plan: args.plan,
        jobs: crate::fan_out::default_jobs(crate::fan_out::Load::Fsync),
        lock_timeout: session.ctx.lock_timeout,
    };
    let imported = import::import(&mut catalog, session.actor(), &request)?;
    let report = &imported.report;
    let s = &report.summary;
    let line = format!(
        "{} files: {} created, {} updated, {} unchanged, {} skipped, {} failed{}",
        s.files,
        s.created,
        s.updated,
        s.unchanged,
        s.skipped,
        s.failed,
        if report.written { "" } else { " (nothing written)" }
    );
    session.out.report(&line, report, COLUMNS, &report.files)?;
    imported.outcome()?;
    Ok(())
}

pub fn export(session: &Session, args: ExportArgs) -> crate::error::Result<()> {
    let catalog = session.catalog()?;
    session
        .out
        .object(&export::export(&catalog, &args.dir, args.force)?)?;
    Ok(())
}
