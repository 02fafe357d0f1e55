//! The command line: clap definitions, one dispatch, and the mapping from errors to
//! exit codes. Each command group lives in its own file.

mod access;
mod audit;
mod backup;
mod config;
mod customer;
mod db;
pub mod docs;
mod import;
mod plan;
mod server;
mod setup;
mod site;

use std::ffi::OsString;
use std::io::Write;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::catalog::Catalog;
use crate::ops::recovery::Recovered;
// db.rs parses `--wait` as the global --lock-timeout is parsed.
use crate::context::{self, Context, GlobalArgs, parse_lock_timeout};
use crate::error::{Error, ErrorKind};
use crate::home::Home;
use crate::ops::Actor;
use crate::render::{Messages, Renderer, Sink};

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 unexpected, 2 usage, 3 not found, 4 conflict, 5 quota exceeded,
6 refused, 7 verification failed, 8 partial failure, 9 invalid input data.

Environment: TENANTCTL_HOME, TENANTCTL_BACKUP_DIR, TENANTCTL_OUTPUT, TENANTCTL_ACTOR, NO_COLOR.

Examples:
  tenantctl init
  tenantctl customer create ops@acme.test 'Jane Doe' 'Acme Corp' --plan pro
  tenantctl customer list --json";

#[derive(Debug, Parser)]
#[command(
    name = "tenantctl",
    version,
    about = "The operator's command line for a multi-tenant SaaS platform",
    long_about = "tenantctl runs a multi-tenant platform from one home folder: a SQLite catalog of \
customers, plans, sites and audit events, and one isolated SQLite database per customer.",
    after_help = AFTER_HELP,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the home, the catalog and the starter tenant migrations
    Init(setup::InitArgs),
    /// Apply or list catalog migrations
    Migrate(setup::MigrateArgs),
    #[command(after_help = "Example:\n  tenantctl status --json")]
    /// Show the state of the home at a glance
    Status,
    #[command(
        after_help = "Examples:\n  tenantctl config list\n  tenantctl config set platform_domain example.com"
    )]
    /// Read and change catalog settings
    #[command(subcommand)]
    Config(config::ConfigCommand),
    #[command(
        after_help = "Examples:\n  tenantctl customer create ops@acme.test 'Jane Doe' 'Acme Corp'\n  tenantctl customer list --status active"
    )]
    /// Manage customers (tenants)
    #[command(subcommand)]
    Customer(customer::CustomerCommand),
    #[command(
        after_help = "Examples:\n  tenantctl site create acme Shop --domain shop.acme.test\n  tenantctl site deploy shop.acme.test"
    )]
    /// Manage customers' sites, deployments and config snapshots
    #[command(subcommand)]
    Site(site::SiteCommand),
    #[command(after_help = "Examples:\n  tenantctl db migrate --dry-run\n  tenantctl db status --behind")]
    /// Tenant databases: migrate, status, SQL, path
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Which customer serves a hostname
    Resolve(db::ResolveArgs),
    /// Check the catalog and every tenant database; --fix repairs what is safe
    Doctor(db::DoctorArgs),
    /// Take a backup set, or list, show, verify and prune sets
    Backup(backup::BackupArgs),
    /// Put databases back from a backup set
    Restore(backup::RestoreArgs),
    /// Import the legacy file-based site configs
    Import(import::ImportArgs),
    /// Write the catalog out in the legacy file layout
    Export(import::ExportArgs),
    #[command(
        after_help = "Examples:\n  tenantctl key create acme --name ci --scope deploy\n  tenantctl key list acme"
    )]
    /// API keys: create, list, revoke, verify
    #[command(subcommand)]
    Key(access::KeyCommand),
    #[command(after_help = "Examples:\n  tenantctl session list --active\n  tenantctl session prune")]
    /// Portal sessions: create, list, revoke, prune
    #[command(subcommand)]
    Session(access::SessionCommand),
    #[command(
        after_help = "Examples:\n  tenantctl usage record acme api_calls 120\n  tenantctl usage report --month 2026-11"
    )]
    /// Record and report metered usage
    #[command(subcommand)]
    Usage(access::UsageCommand),
    #[command(after_help = "Examples:\n  tenantctl quota check\n  tenantctl quota enforce --dry-run")]
    /// Check usage against limits, and enforce the storage limit
    #[command(subcommand)]
    Quota(access::QuotaCommand),
    #[command(after_help = "Example:\n  tenantctl stats --json")]
    /// Platform statistics for admins
    Stats(access::StatsArgs),
    #[command(after_help = "Examples:\n  tenantctl plan list\n  tenantctl plan set pro --max-sites 20")]
    /// List and change plans and their quotas
    #[command(subcommand)]
    Plan(plan::PlanCommand),
    #[command(
        after_help = "Examples:\n  tenantctl server add pg1 --url postgresql://admin@db1.internal/postgres --password-stdin < pw.txt\n  tenantctl server test pg1"
    )]
    /// Database servers that host tenants: add, list, show, test, update, remove
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// List audit events, newest first
    Audit(audit::AuditArgs),
    /// Print a shell completion script
    #[command(
        after_help = "Example:\n  tenantctl completions bash > ~/.local/share/bash-completion/completions/tenantctl"
    )]
    Completions {
        /// Shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Same as 'customer create'
    #[command(name = "create-customer", hide = true)]
    CreateCustomer(customer::CreateArgs),
    /// Same as 'customer list'
    #[command(name = "list-customers", hide = true)]
    ListCustomers(customer::ListArgs),
    /// Same as 'site create'
    #[command(name = "create-site", hide = true)]
    CreateSite(site::CreateArgs),
    /// Same as 'site list'
    #[command(name = "list-sites", hide = true)]
    ListSites(site::ListArgs),
}

/// What a command handler gets: settings, where to write, who acts.
pub struct Session {
    pub ctx: Context,
    pub home: Home,
    pub out: Renderer,
    pub messages: Messages,
}

impl Session {
    fn actor(&self) -> Actor<'_> {
        Actor {
            name: &self.ctx.actor,
            home: &self.home,
        }
    }

    /// The catalog, after finishing or undoing what killed commands left half done
    /// (one warning line each): for the commands that create, move or remove tenant
    /// databases, which must not trip over such leftovers.
    fn catalog_recovered(&self) -> crate::error::Result<(Catalog, Vec<Recovered>)> {
        let mut catalog = self.catalog()?;
        let recovered = crate::ops::recovery::finish_abandoned(&mut catalog, &self.home)?;
        for one in &recovered {
            self.messages.warning(&one.line());
        }
        Ok((catalog, recovered))
    }

    /// The catalog, refusing when the home is not initialised or migrations are pending.
    fn catalog(&self) -> crate::error::Result<Catalog> {
        self.messages
            .debug(&format!("opening catalog {}", self.home.catalog().display()));
        let mut catalog = Catalog::open_ready(&self.home.catalog())?;
        if self.ctx.verbose >= 2 {
            catalog.profile_sql(crate::render::sql_profile);
        }
        Ok(catalog)
    }
}

/// Parses the arguments, runs the command and returns the process exit code.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> u8 {
    run_with_sinks(args, Sink::stdout(), Sink::stderr())
}

/// Runs one command line in this process, writing its data to `stdout` and its
/// messages to `stderr` (any writers, e.g. buffers in a test); returns the exit code.
pub fn run(
    args: impl IntoIterator<Item = OsString>,
    stdout: impl Write + Send + 'static,
    stderr: impl Write + Send + 'static,
) -> u8 {
    run_with_sinks(args, Sink::new(stdout), Sink::new(stderr))
}

fn run_with_sinks(args: impl IntoIterator<Item = OsString>, stdout: Sink, stderr: Sink) -> u8 {
    let args: Vec<OsString> = args.into_iter().collect();
    let cli = match parse_command_line(&args) {
        Ok(cli) => cli,
        Err(err) => return report_clap_error(&err, &args, stdout, stderr),
    };
    let messages = Messages {
        color: cli.global.stderr_color(stderr.is_terminal()),
        quiet: cli.global.quiet,
        verbose: cli.global.verbose,
        stderr,
    };
    let json = cli.global.wants_json();
    match dispatch(cli, stdout, messages.clone()) {
        Ok(()) => 0,
        Err(err) => report_error(&err, &messages, json),
    }
}

fn parse_with(command: clap::Command, args: &[OsString]) -> Result<Cli, clap::Error> {
    command
        .try_get_matches_from(args)
        .and_then(|mut matches| Cli::from_arg_matches_mut(&mut matches))
}

/// Parses the command line. An invalid TENANTCTL_OUTPUT fails it only where the
/// variable would be used: not under --output or --json, not for `completions`, and
/// not before the command line's own usage errors.
fn parse_command_line(args: &[OsString]) -> Result<Cli, clap::Error> {
    let err = match parse_with(command(), args) {
        Ok(cli) => return Ok(cli),
        Err(err) => err,
    };
    let Some(invalid) = context::invalid_env_value(&err, &command()) else {
        return Err(err);
    };
    let cli = parse_with(context::without_env(command(), &invalid.name), args)?;
    let overridden = cli.global.output.is_some() || cli.global.json;
    if overridden || matches!(cli.command, Command::Completions { .. }) {
        Ok(cli)
    } else {
        Err(err)
    }
}

fn dispatch(cli: Cli, stdout: Sink, messages: Messages) -> crate::error::Result<()> {
    if let Command::Completions { shell } = cli.command {
        // Needs no home, so it runs before the context is resolved.
        return print_completions(shell, stdout);
    }
    let ctx = Context::resolve(&cli.global, messages.stderr.is_terminal())?;
    crate::catalog::set_busy_timeout(ctx.lock_timeout);
    let session = Session {
        home: Home::new(ctx.home.clone()),
        out: Renderer::new(ctx.output, stdout.clone()),
        messages,
        ctx,
    };
    match cli.command {
        Command::Init(args) => setup::init(&session, args),
        Command::Migrate(args) => match args.from_files.clone() {
            // The legacy CLI's spelling of `import`.
            Some(dir) => import::import(
                &session,
                import::ImportArgs {
                    dir,
                    dry_run: args.dry_run,
                    continue_on_error: args.continue_on_error,
                    plan: args.plan.clone(),
                },
            ),
            None => setup::migrate(&session, args),
        },
        Command::Status => setup::status(&session),
        Command::Config(command) => config::run(&session, command),
        Command::Customer(command) => customer::run(&session, command),
        Command::CreateCustomer(args) => customer::run(&session, customer::CustomerCommand::Create(args)),
        Command::ListCustomers(args) => customer::run(&session, customer::CustomerCommand::List(args)),
        Command::Site(command) => site::run(&session, command),
        Command::CreateSite(args) => site::run(&session, site::SiteCommand::Create(args)),
        Command::ListSites(args) => site::run(&session, site::SiteCommand::List(args)),
        Command::Db(command) => db::run(&session, command),
        Command::Resolve(args) => db::resolve(&session, args),
        Command::Doctor(args) => db::doctor(&session, args),
        Command::Backup(args) => backup::run(&session, args),
        Command::Restore(args) => backup::restore(&session, args),
        Command::Import(args) => import::import(&session, args),
        Command::Export(args) => import::export(&session, args),
        Command::Key(command) => access::key(&session, command),
        Command::Session(command) => access::session(&session, command),
        Command::Usage(command) => access::usage(&session, command),
        Command::Quota(command) => access::quota(&session, command),
        Command::Stats(args) => access::stats(&session, args),
        Command::Plan(command) => plan::run(&session, command),
        Command::Server(command) => server::run(&session, command),
        Command::Audit(args) => audit::run(&session, args),
        Command::Completions { shell } => print_completions(shell, stdout),
    }
}

fn print_completions(shell: clap_complete::Shell, stdout: Sink) -> crate::error::Result<()> {
    stdout.raw(&docs::completion(shell))?;
    Ok(())
}

/// Maps any error to its exit code and reports it on stderr, in one place.
fn report_error(err: &Error, messages: &Messages, json: bool) -> u8 {
    if err.is_broken_pipe() {
        // A closed stdout (`| head`) is the reader's choice, not a failure.
        return 0;
    }
    // Our errors already say what caused them; the chain would repeat it.
    messages.error(
        err.kind().code(),
        err.exit_code(),
        &err.to_string(),
        err.hint(),
        json,
    );
    err.exit_code()
}

/// Help and version go to stdout with exit 0; usage errors become one line and exit 2.
fn report_clap_error(err: &clap::Error, args: &[OsString], stdout: Sink, stderr: Sink) -> u8 {
    use clap::error::ErrorKind as ClapKind;
    if matches!(err.kind(), ClapKind::DisplayHelp | ClapKind::DisplayVersion) {
        let styled = err.render();
        let text = if stdout.styled() {
            styled.ansi().to_string()
        } else {
            styled.to_string()
        };
        let _ = stdout.raw(text.as_bytes());
        return 0;
    }
    let global = globals_despite(err, args);
    let (message, hint) = context::invalid_env_value(err, &command())
        .map(|invalid| (invalid.message, invalid.hint))
        .unwrap_or_else(|| one_line_usage_error(&err.render().to_string(), err.kind()));
    let json = global.wants_json();
    let messages = Messages {
        color: false,
        quiet: false,
        verbose: 0,
        stderr,
    };
    messages.error(
        ErrorKind::Usage.code(),
        ErrorKind::Usage.exit_code(),
        &message,
        Some(&hint),
        json,
    );
    ErrorKind::Usage.exit_code()
}

/// The global options as far as a rejected command line parses, to know how to report
/// its error. An unknown subcommand or option is left out, so the options after it
/// still count.
fn globals_despite(err: &clap::Error, args: &[OsString]) -> GlobalArgs {
    use clap::error::{ContextKind, ContextValue};
    let rejected = match (
        err.kind(),
        err.get(ContextKind::InvalidSubcommand),
        err.get(ContextKind::InvalidArg),
    ) {
        (_, Some(ContextValue::String(word)), _) => Some(OsString::from(word)),
        (clap::error::ErrorKind::UnknownArgument, _, Some(ContextValue::String(word))) => {
            Some(OsString::from(word))
        }
        _ => None,
    };
    let args = args.iter().filter(|arg| Some(*arg) != rejected.as_ref());
    command()
        .ignore_errors(true)
        .try_get_matches_from(args)
        .ok()
        .and_then(|matches| GlobalArgs::from_arg_matches(&matches).ok())
        .unwrap_or_default()
}

/// Folds clap's multi-line error into a message and a hint: the lines before "Usage:",
/// and the command whose help to read.
fn one_line_usage_error(rendered: &str, kind: clap::error::ErrorKind) -> (String, String) {
    let usage = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
        .unwrap_or("tenantctl");
    let command: Vec<&str> = usage
        .split_whitespace()
        .take_while(|w| !w.starts_with('[') && !w.starts_with('<'))
        // Options given (or set through the environment) are listed too; the hint
        // names only the command.
        .filter(|w| !w.starts_with('-'))
        .collect();
    let command = command.join(" ");
    let see_help = format!("see '{command} --help'");
    // Without a subcommand clap shows help, or, when an option is set (perhaps
    // through the environment), says one is missing.
    if matches!(
        kind,
        clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            | clap::error::ErrorKind::MissingSubcommand
    ) {
        return (format!("'{command}' needs a subcommand"), see_help);
    }
    let mut message = Vec::new();
    let mut hint = None;
    for line in rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:"))
    {
        if let Some(tip) = line.strip_prefix("tip: ") {
            hint = Some(tip.to_string());
        } else if !line.is_empty() && !line.starts_with("For more information") {
            message.push(line.trim_start_matches("error: "));
        }
    }
    (message.join(" "), hint.unwrap_or(see_help))
}

/// The clap command tree, for parsing, completions, man pages and tests.
pub fn command() -> clap::Command {
    context::ignore_empty_env(Cli::command())
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_definitions_are_consistent() {
        super::command().debug_assert();
    }

    #[test]
    fn usage_errors_fold_into_one_line() {
        let err = super::command()
            .try_get_matches_from(["tenantctl", "customer", "show"])
            .unwrap_err();
        let (message, hint) = super::one_line_usage_error(&err.render().to_string(), err.kind());
        assert_eq!(
            message,
            "the following required arguments were not provided: <CUSTOMER>"
        );
        assert_eq!(hint, "see 'tenantctl customer show --help'");
        let err = super::command()
            .try_get_matches_from(["tenantctl", "customer"])
            .unwrap_err();
        let (message, _) = super::one_line_usage_error(&err.render().to_string(), err.kind());
        assert_eq!(message, "'tenantctl customer' needs a subcommand");
    }
}

/// `run` in this process, with both sinks captured.
#[cfg(test)]
mod in_process {
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};

    /// A writer the test keeps a handle on after handing a clone to `run`.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A stdout whose reader fails every write with `kind`.
    struct Failing(io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(self.0, "the reader is gone"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Run {
        code: u8,
        stdout: String,
        stderr: String,
    }

    fn run(args: &[&str]) -> Run {
        let (stdout, stderr) = (Captured::default(), Captured::default());
        let args = std::iter::once("tenantctl")
            .chain(args.iter().copied())
            .map(Into::into);
        let code = super::run(args, stdout.clone(), stderr.clone());
        Run {
            code,
            stdout: stdout.text(),
            stderr: stderr.text(),
        }
    }

    #[test]
    fn version_goes_to_the_stdout_sink() {
        let run = run(&["--version"]);
        assert_eq!(run.code, 0);
        assert_eq!(run.stdout, format!("tenantctl {}\n", env!("CARGO_PKG_VERSION")));
        assert_eq!(run.stderr, "");
    }

    #[test]
    fn usage_errors_go_to_the_stderr_sink() {
        let run = run(&["customer", "show", "--json"]);
        assert_eq!(run.code, 2);
        assert_eq!(run.stdout, "");
        let mut lines = run.stderr.lines();
        let line = lines.next().unwrap();
        assert!(
            line.starts_with("error: the following required arguments were not provided: <CUSTOMER> (see "),
            "{line}"
        );
        let object: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(object["error"]["code"], "usage");
    }

    #[test]
    fn status_of_a_fresh_home_is_data_on_stdout_only() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let home = home.to_str().unwrap();
        let init = run(&["--home", home, "--actor", "tester", "init", "--json"]);
        assert_eq!((init.code, init.stderr.as_str()), (0, ""));
        let status = run(&["--home", home, "status", "--json"]);
        assert_eq!((status.code, status.stderr.as_str()), (0, ""));
        let report: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        assert_eq!(report["home"], home);
        let missing = run(&["--home", home, "customer", "show", "ghost"]);
        assert_eq!(missing.code, 3);
        assert_eq!(missing.stdout, "");
        assert!(
            missing.stderr.starts_with("error: no customer 'ghost' ("),
            "{}",
            missing.stderr
        );
        // A buffer is no terminal: colour only when asked for, whatever runs the test.
        let coloured = run(&["--home", home, "--color", "always", "customer", "show", "ghost"]);
        assert!(
            coloured.stderr.starts_with("\x1b[1;31merror:"),
            "{}",
            coloured.stderr
        );
    }

    #[test]
    fn a_closed_stdout_exits_0_and_other_write_failures_exit_1() {
        let args = || ["tenantctl", "completions", "bash"].map(Into::into);
        let stderr = Captured::default();
        let code = super::run(args(), Failing(io::ErrorKind::BrokenPipe), stderr.clone());
        assert_eq!((code, stderr.text()), (0, String::new()));
        let code = super::run(args(), Failing(io::ErrorKind::StorageFull), stderr.clone());
        assert_eq!(
            (code, stderr.text()),
            (1, "error: the reader is gone\n".to_string())
        );
    }
}
