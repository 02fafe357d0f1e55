//! `db migrate|rollback|status|sql|history|vacuum|path`, `resolve` and `doctor`.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::Session;
use crate::engine::Finished;
use crate::error::Error;
use crate::fan_out::{DEFAULT_JOBS_PER_SERVER, Load, default_jobs};
use crate::ops::{credentials, doctor, query, resolve, rollback, tenants};

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply tenant migrations to every tenant (or those named), in parallel
    Migrate(MigrateArgs),
    /// Undo tenant migrations down to version N by their down scripts, in parallel
    Rollback(RollbackArgs),
    /// Per-tenant schema version, size and last migration, with a summary line first
    Status(StatusArgs),
    /// Run one SQL statement, or a script with -f, on a tenant database (read-only unless --write)
    Sql(SqlArgs),
    /// List the recorded 'db sql' and 'db vacuum' runs, newest first
    History(HistoryArgs),
    /// Compact tenant databases (VACUUM, then ANALYZE) and report the bytes reclaimed
    Vacuum(VacuumArgs),
    /// Print where a customer's database is: its file (for sqlite3), or on a server
    /// its role's URL without the password
    #[command(after_help = "Examples:\n  tenantctl db path acme\n  sqlite3 \"$(tenantctl db path acme)\"")]
    Path {
        /// Customer slug, id or email
        customer: String,
    },
    /// Print the URL an application connects to a customer's database with
    #[command(
        after_help = "Examples:\n  tenantctl db url acme\n  tenantctl db url acme --reveal --json\n\n\
        The password shows as *** unless --reveal, which the audit log records."
    )]
    Url {
        /// Customer slug, id or email
        customer: String,
        /// Put the tenant role's password into the URL
        #[arg(long)]
        reveal: bool,
    },
    /// Give server tenants' login roles new passwords
    #[command(
        name = "rotate-password",
        after_help = "Examples:\n  tenantctl db rotate-password acme\n  tenantctl db rotate-password --all"
    )]
    RotatePassword {
        /// Customer slug, id or email
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        customer: Option<String>,
        /// Every server tenant that is not deleted
        #[arg(long)]
        all: bool,
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
    /// Connections held at once on each database server (never more than it has free)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_JOBS_PER_SERVER, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs_per_server: u16,
    /// Go on with the other tenants after a failure (exit 8 at the end)
    #[arg(long)]
    pub continue_on_error: bool,
    /// Migrate N tenants first and stop if any of them fails
    #[arg(long, value_name = "N")]
    pub canary: Option<usize>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl db rollback --all --to 2 --dry-run\n  tenantctl db rollback --all --to 2\n  \
    tenantctl db rollback acme --to 0 --confirm all-data\n\n\
    Each tenant above N runs the down scripts (V<n>__<name>.down.sql beside each migration) from its\n\
    version down to N+1, newest first, in one transaction (MySQL/MariaDB: statement by statement,\n\
    recorded). 'db migrate' brings the tenants forward again."
)]
pub struct RollbackArgs {
    /// Customers to roll back (slug, id or email) [default: all that are not deleted]
    #[arg(conflicts_with = "all")]
    pub customers: Vec<String>,
    /// Roll back every tenant that is not deleted (the default when no customer is named)
    #[arg(long)]
    pub all: bool,
    /// The version to go back to: one that exists, below the newest (0 needs --confirm all-data)
    #[arg(long, value_name = "N")]
    pub to: i64,
    /// Show what would be undone, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Tenants rolled back at once [default: 8 per CPU]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,
    /// Connections held at once on each database server (never more than it has free)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_JOBS_PER_SERVER, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs_per_server: u16,
    /// Go on with the other tenants after a failure (exit 8 at the end)
    #[arg(long)]
    pub continue_on_error: bool,
    /// Roll back N tenants first and stop if any of them fails
    #[arg(long, value_name = "N")]
    pub canary: Option<usize>,
    /// 'all-data', required with --to 0, which drops every table the migrations made
    #[arg(long, value_name = "WORD")]
    pub confirm: Option<String>,
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
    /// Also open every tenant database: quick_check and the version it really has
    #[arg(long)]
    pub check: bool,
    /// Only tenants on this server ('local' for the SQLite files)
    #[arg(long, value_name = "NAME")]
    pub server: Option<String>,
    /// Connections held at once on each database server (never more than it has free)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_JOBS_PER_SERVER, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs_per_server: u16,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl db sql acme 'SELECT count(*) AS users FROM users'\n  \
    tenantctl db sql acme \"UPDATE users SET role = 'admin' WHERE id = 1\" --write\n  \
    tenantctl db sql acme -f fix.sql --write\n  \
    tenantctl db sql --all 'SELECT count(*) AS orders FROM orders' -o csv\n\n\
    With -f the statements of FILE (or stdin for -) run in one transaction: all take \
    effect or none. Rows they return are not printed; the result is the number of \
    statements and of changed rows."
)]
pub struct SqlArgs {
    /// CUSTOMER and SQL; with --all only SQL; with -f only CUSTOMER
    #[arg(value_name = "CUSTOMER> <SQL", num_args = 1..=2, required = true)]
    pub args: Vec<String>,
    /// Run the same read-only statement on every active tenant; its rows start with a tenant column
    #[arg(long, conflicts_with_all = ["write", "file"])]
    pub all: bool,
    /// Allow the statement to change data
    #[arg(long)]
    pub write: bool,
    /// Run the statements in FILE ('-' for stdin) as one transaction
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Stop a statement that runs longer than this, e.g. 30s or 5m
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = super::parse_lock_timeout)]
    pub timeout: std::time::Duration,
    /// Connections held at once on each database server (never more than it has free)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_JOBS_PER_SERVER, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs_per_server: u16,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl db history acme --since 7d\n  tenantctl db history --failed --json"
)]
pub struct HistoryArgs {
    /// Only runs on this customer (slug, id or email)
    pub customer: Option<String>,
    /// Only runs at or after TIME (RFC 3339, YYYY-MM-DD, or an age such as 24h or 7d)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only runs that failed
    #[arg(long)]
    pub failed: bool,
    /// Show at most N runs; 0 for all
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: u64,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl db vacuum acme\n  tenantctl db vacuum --all --json\n\n\
    Suspended customers are included: one suspended for storage reclaims space this way."
)]
pub struct VacuumArgs {
    /// Customers to compact (slug, id or email)
    #[arg(conflicts_with = "all", required_unless_present = "all")]
    pub customers: Vec<String>,
    /// Compact every tenant database that is not deleted
    #[arg(long)]
    pub all: bool,
    /// Tenants compacted at once [default: 2 per CPU]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,
    /// Connections held at once on each database server (never more than it has free)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_JOBS_PER_SERVER, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs_per_server: u16,
}

/// The largest script `db sql -f` reads.
const MAX_SCRIPT_BYTES: u64 = 16 << 20;

/// Reads a SQL script from a file or stdin (`-`).
fn read_script(path: &Path) -> Result<String, Error> {
    let stdin = path.as_os_str() == "-";
    let mut text = String::new();
    let read = if stdin {
        std::io::stdin()
            .take(MAX_SCRIPT_BYTES + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_SCRIPT_BYTES + 1).read_to_string(&mut text))
    };
    let source = if stdin {
        "stdin".to_string()
    } else {
        path.display().to_string()
    };
    read.map_err(|e| Error::usage(format!("cannot read the SQL script from {source}: {e}")))?;
    if text.len() as u64 > MAX_SCRIPT_BYTES {
        return Err(Error::usage(format!(
            "the SQL script from {source} is larger than 16 MiB"
        )));
    }
    Ok(text)
}

/// Takes a tenant's rows as they are read and holds them back until the statement has
/// succeeded; the listing starts when the columns are known.
struct SpooledRows<'a> {
    session: &'a Session,
    list: Option<crate::render::SpooledList>,
}

impl crate::engine::RowSink for SpooledRows<'_> {
    fn columns(&mut self, names: &[String]) -> crate::error::Result<()> {
        let unique = crate::engine::QueryOutput {
            columns: names.to_vec(),
            ..Default::default()
        }
        .unique_columns();
        let columns: Vec<&str> = unique.iter().map(String::as_str).collect();
        self.list = Some(self.session.out.spooled_list_writer(&columns));
        Ok(())
    }

    fn row(&mut self, values: Vec<serde_json::Value>) -> crate::error::Result<()> {
        let Some(list) = self.list.as_mut() else {
            return Ok(());
        };
        let object: serde_json::Map<String, serde_json::Value> =
            list.columns().iter().cloned().zip(values).collect();
        list.row(&object).map_err(|e| Error::io("writing rows", e))
    }
}

/// What `db sql` runs, and where.
enum SqlTarget<'a> {
    Fleet(&'a str),
    Statement(&'a str, &'a str),
    Script(&'a str, &'a Path),
}

impl SqlArgs {
    fn target(&self) -> Result<SqlTarget<'_>, Error> {
        match (self.all, self.file.as_deref(), self.args.as_slice()) {
            (true, _, [sql]) => Ok(SqlTarget::Fleet(sql)),
            (true, _, _) => Err(Error::usage("with --all, give only the SQL statement")),
            (false, Some(file), [customer]) => Ok(SqlTarget::Script(customer, file)),
            (false, Some(_), _) => Err(Error::usage("with -f, give only the customer")),
            (false, None, [customer, sql]) => Ok(SqlTarget::Statement(customer, sql)),
            (false, None, _) => Err(Error::usage("give a customer and a SQL statement")
                .with_hint("or --all and a statement, or a customer and -f FILE")),
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
#[command(
    after_help = "Examples:\n  tenantctl doctor\n  tenantctl doctor --fix\n  tenantctl doctor --fix --adopt"
)]
pub struct DoctorArgs {
    /// Repair what is safe to repair (modes, recorded versions, crash leftovers)
    #[arg(long)]
    pub fix: bool,
    /// With --fix: give each tenant database no customer owns its customer again
    /// (details from the newest backup that knew it)
    #[arg(long, requires = "fix", conflicts_with = "trash")]
    pub adopt: bool,
    /// With --fix: move each tenant database no customer owns to the trash
    #[arg(long, requires = "fix")]
    pub trash: bool,
    /// Check the integrity of every tenant database, also those unchanged since their
    /// last clean check
    #[arg(long)]
    pub full: bool,
}

const MIGRATE_COLUMNS: &[&str] = &["customer", "from", "to", "status", "ms", "error"];
const STATUS_COLUMNS: &[&str] = &[
    "customer",
    "server",
    "schema_version",
    "pending",
    "size_bytes",
    "migration_status",
    "last_migrated_at",
    "last_error",
    "check",
];
const HISTORY_COLUMNS: &[&str] = &[
    "id",
    "at",
    "actor",
    "customer",
    "status",
    "duration_ms",
    "row_count",
    "sql",
];
const VACUUM_COLUMNS: &[&str] = &[
    "customer",
    "bytes_before",
    "bytes_after",
    "reclaimed_bytes",
    "ms",
    "error",
];
const DOCTOR_COLUMNS: &[&str] = &["status", "check", "target", "message"];

/// The per-tenant table of a `db migrate` or `db rollback`, and on a terminal a line
/// of counts (JSON readers count the rows themselves).
fn report_runs(
    session: &Session,
    results: &[tenants::TenantResult],
    dry_run: bool,
    done: &str,
) -> crate::error::Result<()> {
    session.out.list(MIGRATE_COLUMNS, results)?;
    if session.out.format() == crate::context::OutputFormat::Table {
        let failed = results.iter().filter(|r| r.failed()).count();
        let changed = results.iter().filter(|r| r.from != r.to).count();
        session.messages.note(&format!(
            "{} tenants: {changed} {}, {} current, {failed} failed",
            results.len(),
            if dry_run { "would change" } else { done },
            results
                .iter()
                .filter(|r| r.status == crate::engine::Outcome::Current)
                .count(),
        ));
    }
    Ok(())
}

fn jobs(requested: Option<u16>) -> usize {
    requested.map_or_else(|| default_jobs(Load::Fsync), usize::from)
}

fn compute_jobs() -> usize {
    default_jobs(Load::Compute)
}

pub fn run(session: &Session, command: DbCommand) -> crate::error::Result<()> {
    let mut catalog = session.catalog()?;
    match command {
        DbCommand::Migrate(args) => {
            let request = tenants::MigrateRequest {
                customers: args.customers,
                dry_run: args.dry_run,
                target: args.target,
                jobs: jobs(args.jobs),
                jobs_per_server: usize::from(args.jobs_per_server),
                continue_on_error: args.continue_on_error,
                canary: args.canary,
            };
            let progress = crate::render::progress(session.ctx.progress);
            let migrated = tenants::migrate(
                &mut catalog,
                session.actor(),
                session.ctx.lock_timeout,
                &request,
                progress.as_ref(),
            )?;
            report_runs(session, &migrated.report, args.dry_run, "migrated")?;
            migrated.outcome()?;
        }
        DbCommand::Rollback(args) => {
            let request = rollback::RollbackRequest {
                customers: args.customers,
                to: args.to,
                dry_run: args.dry_run,
                jobs: jobs(args.jobs),
                jobs_per_server: usize::from(args.jobs_per_server),
                continue_on_error: args.continue_on_error,
                canary: args.canary,
                confirm: args.confirm,
            };
            let progress = crate::render::progress(session.ctx.progress);
            let rolled = rollback::rollback(
                &mut catalog,
                session.actor(),
                session.ctx.lock_timeout,
                &request,
                progress.as_ref(),
            )?;
            report_runs(session, &rolled.report, args.dry_run, "rolled back")?;
            rolled.outcome()?;
        }
        DbCommand::Status(args) => {
            let request = tenants::StatusRequest {
                customers: args.customers,
                behind: args.behind,
                failed: args.failed,
                check: args.check,
                server: args.server,
                jobs_per_server: usize::from(args.jobs_per_server),
            };
            let reported = tenants::status(&catalog, &session.home, &request)?;
            let status = &reported.report;
            let line = status.summary.line();
            // The summary heads the table; other formats carry only the tenants, as a
            // list must, and the summary goes to stderr for the people watching.
            if session.out.format() == crate::context::OutputFormat::Table {
                session
                    .out
                    .report(&line, &status.tenants, STATUS_COLUMNS, &status.tenants)?;
            } else {
                session.out.list(STATUS_COLUMNS, &status.tenants)?;
                session.messages.note(&line);
            }
            reported.outcome()?;
        }
        DbCommand::Sql(args) => sql(session, &mut catalog, &args)?,
        DbCommand::History(args) => {
            let runs = query::history(
                &catalog,
                &query::HistoryRequest {
                    customer: args.customer,
                    since: args.since,
                    failed: args.failed,
                    limit: (args.limit > 0).then_some(args.limit),
                },
            )?;
            session.out.list(HISTORY_COLUMNS, runs)?;
        }
        DbCommand::Vacuum(args) => {
            let jobs = args.jobs.map(usize::from).unwrap_or_else(compute_jobs);
            let vacuumed = query::vacuum(
                &mut catalog,
                session.actor(),
                &args.customers,
                jobs,
                usize::from(args.jobs_per_server),
            )?;
            let results = &vacuumed.report;
            session.out.list(VACUUM_COLUMNS, results)?;
            let failed = results.iter().filter(|r| r.error.is_some()).count();
            let reclaimed: u64 = results.iter().map(|r| r.reclaimed_bytes).sum();
            if session.out.format() == crate::context::OutputFormat::Table {
                session.messages.note(&format!(
                    "{} tenants: {reclaimed} bytes reclaimed, {failed} failed",
                    results.len()
                ));
            }
            vacuumed.outcome()?;
        }
        DbCommand::Path { customer } => session
            .out
            .scalar(&tenants::path(&catalog, &session.home, &customer)?, "path")?,
        DbCommand::Url { customer, reveal } => session.out.scalar(
            &credentials::url(&mut catalog, session.actor(), &customer, reveal)?,
            "url",
        )?,
        DbCommand::RotatePassword { customer, all } => {
            let rotated = credentials::rotate(&mut catalog, session.actor(), customer.as_deref(), all)?;
            session.out.list(&["customer", "role", "server"], rotated)?
        }
    }
    Ok(())
}

fn sql(session: &Session, catalog: &mut crate::catalog::Catalog, args: &SqlArgs) -> crate::error::Result<()> {
    match args.target()? {
        SqlTarget::Fleet(statement) => {
            let queried = query::run_all(
                catalog,
                session.actor(),
                statement,
                (compute_jobs(), usize::from(args.jobs_per_server)),
                args.timeout,
            )?;
            let fleet = &queried.report;
            let columns: Vec<&str> = fleet.columns.iter().map(String::as_str).collect();
            let line = format!(
                "{} rows from {} tenants, {} failed",
                fleet.rows.len(),
                fleet.tenants,
                fleet.failures.len()
            );
            session.out.report(&line, fleet, &columns, &fleet.rows)?;
            for failure in &fleet.failures {
                session
                    .messages
                    .warning(&format!("{}: {}", failure.customer, failure.error));
            }
            queried.outcome()?;
        }
        SqlTarget::Statement(customer, statement) => {
            let mut sink = SpooledRows { session, list: None };
            let (slug, finished) = query::run_one(
                catalog,
                session.actor(),
                customer,
                statement,
                args.write,
                args.timeout,
                &mut sink,
            )?;
            // Only now, when the statement has succeeded, do its rows reach stdout.
            match (finished, sink.list.take()) {
                (Finished::Changed(changes), _) => session
                    .out
                    .object(&serde_json::json!({"customer": slug, "changes": changes}))?,
                (Finished::Rows(_), Some(list)) => session.out.commit_spooled(list)?,
                (Finished::Rows(_), None) => {}
            }
        }
        SqlTarget::Script(customer, file) => {
            let script = read_script(file)?;
            let (slug, outcome) = query::run_script(
                catalog,
                session.actor(),
                customer,
                &script,
                args.write,
                args.timeout,
            )?;
            session.out.object(&serde_json::json!({
                "customer": slug,
                "statements": outcome.statements,
                "changes": outcome.changes,
            }))?;
        }
    }
    Ok(())
}

pub fn resolve(session: &Session, args: ResolveArgs) -> crate::error::Result<()> {
    let catalog = session.catalog()?;
    session.out.object(&resolve::resolve(&catalog, &args.host)?)?;
    Ok(())
}

pub fn doctor(session: &Session, args: DoctorArgs) -> crate::error::Result<()> {
    let unowned = match (args.adopt, args.trash) {
        (true, _) => doctor::Unowned::Adopt,
        (_, true) => doctor::Unowned::Trash,
        _ => doctor::Unowned::Leave,
    };
    let checked = doctor::doctor(
        session.actor(),
        &session.ctx.backup_dir,
        args.fix,
        args.full,
        unowned,
    )?;
    session.out.list(DOCTOR_COLUMNS, &checked.report)?;
    checked.outcome()?;
    Ok(())
}
