//! `db migrate|status|sql|path`, `resolve` and `doctor`.

use clap::{Args, Subcommand};

use super::Session;
use crate::error::Error;
use crate::ops::{doctor, query, resolve, tenants};
use crate::tenantdb::sql::Finished;

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply tenant migrations to every tenant (or those named), in parallel
    Migrate(MigrateArgs),
    /// Per-tenant schema version, size and last migration, with a summary line first
    Status(StatusArgs),
    /// Run one SQL statement on a tenant database (read-only unless --write)
    Sql(SqlArgs),
    /// Print the absolute path of a customer's database (for sqlite3)
    #[command(after_help = "Examples:\n  tenantctl db path acme\n  sqlite3 \"$(tenantctl db path acme)\"")]
    Path {
        /// Customer slug, id or email
        customer: String,
    },
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl db migrate --dry-run\n  tenantctl db migrate --all --jobs 16 --continue-on-error\n  \
    tenantctl db migrate --canary 5\n  tenantctl db migrate acme globex --target 4"
)]
pub struct MigrateArgs {
    /// Customers to migrate (slug, id or email) [default: all that are not deleted]
    #[arg(conflicts_with = "all")]
    pub customers: Vec<String>,
    /// Migrate every tenant that is not deleted (the default when no customer is named)
    #[arg(long)]
    pub all: bool,
    /// Show what would be applied, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Migrate up to version N instead of the newest
    #[arg(long, value_name = "N")]
    pub target: Option<i64>,
    /// Tenants migrated at once [default: 8 per CPU, since tenants wait on fsync, not the CPU]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,
    /// Go on with the other tenants after a failure (exit 8 at the end)
    #[arg(long)]
    pub continue_on_error: bool,
    /// Migrate N tenants first and stop if any of them fails
    #[arg(long, value_name = "N")]
    pub canary: Option<usize>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl db status --behind\n  tenantctl db status acme --check --json"
)]
pub struct StatusArgs {
    /// Only these customers
    pub customers: Vec<String>,
    /// Only tenants behind the newest migration
    #[arg(long)]
    pub behind: bool,
    /// Only tenants whose last migration failed
    #[arg(long)]
    pub failed: bool,
    /// Also open every file: quick_check and the version it really has
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl db sql acme 'SELECT count(*) AS users FROM users'\n  \
    tenantctl db sql acme \"UPDATE users SET role = 'admin' WHERE id = 1\" --write\n  \
    tenantctl db sql --all 'SELECT count(*) AS orders FROM orders' -o csv"
)]
pub struct SqlArgs {
    /// CUSTOMER and SQL; with --all only SQL
    #[arg(value_name = "CUSTOMER> <SQL", num_args = 1..=2, required = true)]
    pub args: Vec<String>,
    /// Run the same read-only statement on every active tenant
    #[arg(long, conflicts_with = "write")]
    pub all: bool,
    /// Allow the statement to change data
    #[arg(long)]
    pub write: bool,
    /// Stop a statement that runs longer than this, e.g. 30s or 5m
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = super::parse_lock_timeout)]
    pub timeout: std::time::Duration,
}

/// Writes a tenant's rows as they are read; the listing starts when the columns are known.
struct StreamedRows<'a> {
    session: &'a Session,
    writer: Option<crate::render::ListWriter<std::io::BufWriter<std::io::StdoutLock<'static>>>>,
}

impl crate::tenantdb::sql::RowSink for StreamedRows<'_> {
    fn columns(&mut self, names: &[String]) -> crate::error::Result<()> {
        let unique = crate::tenantdb::sql::QueryOutput {
            columns: names.to_vec(),
            ..Default::default()
        }
        .unique_columns();
        let columns: Vec<&str> = unique.iter().map(String::as_str).collect();
        self.writer = Some(self.session.out.list_writer(&columns));
        Ok(())
    }

    fn row(&mut self, values: Vec<serde_json::Value>) -> crate::error::Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let object: serde_json::Map<String, serde_json::Value> =
            writer.columns().iter().cloned().zip(values).collect();
        writer.row(&object).map_err(|e| Error::io("writing rows", e))
    }
}

impl SqlArgs {
    /// `(customer, statement)`; the customer is `None` with `--all`.
    fn target(&self) -> Result<(Option<&str>, &str), Error> {
        match (self.all, self.args.as_slice()) {
            (true, [sql]) => Ok((None, sql)),
            (false, [customer, sql]) => Ok((Some(customer), sql)),
            (true, _) => Err(Error::usage("with --all, give only the SQL statement")),
            (false, _) => {
                Err(Error::usage("give a customer and a SQL statement").with_hint("or --all and a statement"))
            }
        }
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl resolve shop.acme.test\n  tenantctl resolve acme.example.com --json"
)]
pub struct ResolveArgs {
    /// Hostname, as in a request's Host header
    pub host: String,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  tenantctl doctor\n  tenantctl doctor --fix")]
pub struct DoctorArgs {
    /// Repair what is safe to repair (modes, recorded versions, crash leftovers)
    #[arg(long)]
    pub fix: bool,
}

const MIGRATE_COLUMNS: &[&str] = &["customer", "from", "to", "status", "ms", "error"];
const STATUS_COLUMNS: &[&str] = &[
    "customer",
    "schema_version",
    "pending",
    "size_bytes",
    "migration_status",
    "last_migrated_at",
    "last_error",
    "check",
];
const DOCTOR_COLUMNS: &[&str] = &["status", "check", "target", "message"];

fn jobs(requested: Option<u16>) -> usize {
    requested.map(usize::from).unwrap_or_else(|| 8 * cpus())
}

fn cpus() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(2)
}

pub fn run(session: &Session, command: DbCommand) -> anyhow::Result<()> {
    let mut catalog = session.catalog()?;
    match command {
        DbCommand::Migrate(args) => {
            let request = tenants::MigrateRequest {
                customers: args.customers,
                dry_run: args.dry_run,
                target: args.target,
                jobs: jobs(args.jobs),
                continue_on_error: args.continue_on_error,
                canary: args.canary,
            };
            let progress = crate::render::progress(session.ctx.progress);
            let report = tenants::migrate(
                &mut catalog,
                session.actor(),
                session.ctx.lock_timeout,
                &request,
                progress.as_ref(),
            )?;
            let results = report.results;
            session.out.list(MIGRATE_COLUMNS, &results)?;
            let failed = results.iter().filter(|r| r.failed()).count();
            let changed = results.iter().filter(|r| r.from != r.to).count();
            // A summary for people; JSON readers count the rows themselves.
            if session.out.format() == crate::context::OutputFormat::Table {
                session.messages.note(&format!(
                    "{} tenants: {changed} {}, {} current, {failed} failed",
                    results.len(),
                    if args.dry_run { "would change" } else { "migrated" },
                    results
                        .iter()
                        .filter(|r| r.status == crate::tenantdb::migrate::Outcome::Current)
                        .count(),
                ));
            }
            if let Some(error) = report.unrecorded {
                return Err(Error::partial(format!("the catalog could not record every result: {error}"))
                    .with_hint("the tenant files are right; run 'tenantctl doctor --fix' to bring the catalog along")
                    .into());
            }
            if failed > 0 {
                let skipped = results
                    .iter()
                    .filter(|r| r.status == crate::tenantdb::migrate::Outcome::Skipped)
                    .count();
                return Err(Error::partial(format!(
                    "{failed} of {} tenants failed, {skipped} not started",
                    results.len()
                ))
                .with_hint("see the error column; fix the migration and run 'tenantctl db migrate' again")
                .into());
            }
        }
        DbCommand::Status(args) => {
            let request = tenants::StatusRequest {
                customers: args.customers,
                behind: args.behind,
                failed: args.failed,
                check: args.check,
            };
            let status = tenants::status(&catalog, &session.home, &request)?;
            session
                .out
                .report(&status.summary.line(), &status, STATUS_COLUMNS, &status.tenants)?;
            if status.summary.check_failed > 0 {
                return Err(Error::verification(format!(
                    "{} tenant database{} failed the check",
                    status.summary.check_failed,
                    if status.summary.check_failed == 1 { "" } else { "s" }
                ))
                .with_hint("see the check column; 'tenantctl doctor' says more")
                .into());
            }
        }
        DbCommand::Sql(args) => match args.target()? {
            (None, statement) => {
                let fleet =
                    query::run_all(&mut catalog, session.actor(), statement, 2 * cpus(), args.timeout)?;
                let columns: Vec<&str> = fleet.columns.iter().map(String::as_str).collect();
                let line = format!(
                    "{} rows from {} tenants, {} failed",
                    fleet.rows.len(),
                    fleet.tenants,
                    fleet.failures.len()
                );
                session.out.report(&line, &fleet, &columns, &fleet.rows)?;
                for failure in &fleet.failures {
                    session
                        .messages
                        .warning(&format!("{}: {}", failure.customer, failure.error));
                }
                if !fleet.failures.is_empty() {
                    return Err(Error::partial(format!(
                        "the query failed on {} of {} tenants",
                        fleet.failures.len(),
                        fleet.tenants
                    ))
                    .into());
                }
            }
            (Some(customer), statement) => {
                let mut sink = StreamedRows {
                    session,
                    writer: None,
                };
                let outcome = query::run_one(
                    &mut catalog,
                    session.actor(),
                    customer,
                    statement,
                    args.write,
                    args.timeout,
                    &mut sink,
                );
                // Close a listing that was cut short, so stdout stays one JSON document.
                if let Some(writer) = sink.writer.take() {
                    writer.finish()?;
                }
                if let (slug, Finished::Changed(changes)) = outcome? {
                    session
                        .out
                        .object(&serde_json::json!({"customer": slug, "changes": changes}))?;
                }
            }
        },
        DbCommand::Path { customer } => session.out.scalar(&tenants::path(&catalog, &customer)?, "path")?,
    }
    Ok(())
}

pub fn resolve(session: &Session, args: ResolveArgs) -> anyhow::Result<()> {
    let catalog = session.catalog()?;
    session.out.object(&resolve::resolve(&catalog, &args.host)?)?;
    Ok(())
}

pub fn doctor(session: &Session, args: DoctorArgs) -> anyhow::Result<()> {
    let checks = doctor::doctor(&session.home, &session.ctx.backup_dir, args.fix)?;
    session.out.list(DOCTOR_COLUMNS, &checks)?;
    if doctor::failed(&checks) {
        let count = checks
            .iter()
            .filter(|c| c.status == doctor::Verdict::Fail)
            .count();
        return Err(Error::verification(format!(
            "doctor found {count} problem{}",
            if count == 1 { "" } else { "s" }
        ))
        .with_hint(if args.fix {
            "the rest needs a person"
        } else {
            "run 'tenantctl doctor --fix' for what is safe to repair"
        })
        .into());
    }
    Ok(())
}
