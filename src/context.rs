//! The global options, defined once, and the settings they resolve to for one invocation.
//! The only place that reads environment variables: clap reads those named in
//! [`GlobalArgs`], the rest (`TENANTCTL_ACTOR`, `XDG_DATA_HOME`, `HOME`, `USER`, `NO_COLOR`) are read
//! here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Ndjson,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// The colour rule: as asked, and with `auto` only on a terminal without `NO_COLOR`.
    fn enabled(self, is_terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_terminal && env_text("NO_COLOR").is_none(),
        }
    }
}

/// The global options, defined once: clap parses them (environment variables
/// included), and the same definition writes `--help`, the man pages and the
/// completions. [`Context::resolve`] fills in what has no flag.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "TENANTCTL_HOME",
        hide_env_values = true
    )]
    pub home: Option<PathBuf>,
    /// Where backup sets live [default: HOME/backups]
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "TENANTCTL_BACKUP_DIR",
        hide_env_values = true
    )]
    pub backup_dir: Option<PathBuf>,
    /// Output format [default: table]
    #[arg(
        short = 'o',
        long,
        global = true,
        value_name = "FORMAT",
        value_enum,
        env = "TENANTCTL_OUTPUT",
        hide_env_values = true
    )]
    pub output: Option<OutputFormat>,
    /// Same as --output json
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only data and errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more detail on stderr; -vv also prints every catalog SQL statement with its time
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Never draw progress bars
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]
    // Not clap's `env`: an empty --actor falls back to $TENANTCTL_ACTOR too.
    #[arg(long, global = true, value_name = "NAME")]
    pub actor: Option<String>,
    /// When to colour messages (NO_COLOR is honoured with auto)
    #[arg(long, global = true, value_name = "WHEN", value_enum)]
    pub color: Option<ColorChoice>,
    /// How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_lock_timeout)]
    pub lock_timeout: Option<Duration>,
}

pub(crate) fn parse_lock_timeout(text: &str) -> std::result::Result<Duration, String> {
    crate::time::parse_duration(text)
        .map(|d| Duration::from_secs(d.num_seconds().unsigned_abs()))
        .map_err(|e| e.to_string())
}

impl GlobalArgs {
    /// Whether the options ask for JSON; also for errors before a full context exists.
    pub fn wants_json(&self) -> bool {
        self.json || self.output == Some(OutputFormat::Json)
    }

    /// Whether messages on stderr may be coloured.
    pub fn stderr_color(&self, stderr_is_terminal: bool) -> bool {
        self.color
            .unwrap_or(ColorChoice::Auto)
            .enabled(stderr_is_terminal)
    }
}

/// Leaves out the environment variables that are set but empty, as if unset (so an
/// empty `TENANTCTL_HOME` falls through to the next default instead of failing).
pub fn ignore_empty_env(command: clap::Command) -> clap::Command {
    command.mut_args(|arg| match arg.get_env() {
        Some(name) if std::env::var_os(name).is_some_and(|v| v.is_empty()) => {
            arg.env(clap::builder::Resettable::Reset)
        }
        _ => arg,
    })
}

/// Everything a command needs to know about where and how it runs.
#[derive(Debug, Clone)]
pub struct Context {
    pub home: PathBuf,
    pub backup_dir: PathBuf,
    pub output: OutputFormat,
    pub quiet: bool,
    pub verbose: u8,
    pub progress: bool,
    pub color: bool,
    pub actor: String,
    pub lock_timeout: Duration,
}

pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

impl Context {
    pub fn resolve(args: &GlobalArgs, stderr_is_terminal: bool) -> Result<Self> {
        let home = match &args.home {
            Some(dir) => absolute(dir)?,
            None => default_home()?,
        };
        let backup_dir = match &args.backup_dir {
            Some(dir) => absolute(dir)?,
            None => home.join("backups"),
        };
        let output = if args.json {
            OutputFormat::Json
        } else {
            args.output.unwrap_or(OutputFormat::Table)
        };
        let actor = args
            .actor
            .clone()
            .filter(|a| !a.is_empty())
            .or_else(|| env_text("TENANTCTL_ACTOR"))
            .or_else(|| env_text("USER"))
            .unwrap_or_else(|| "unknown".to_string());
        let actor = crate::validate::actor(&actor)?;
        Ok(Context {
            home,
            backup_dir,
            output,
            quiet: args.quiet,
            verbose: args.verbose,
            progress: stderr_is_terminal && !args.quiet && !args.no_progress,
            color: args.stderr_color(stderr_is_terminal),
            actor,
            lock_timeout: args.lock_timeout.unwrap_or(DEFAULT_LOCK_TIMEOUT),
        })
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.home.join("catalog.db")
    }
}

/// An invalid value that came from an environment variable.
pub struct InvalidEnvValue {
    pub name: String,
    /// Names the variable: clap names the flag, which the operator never typed.
    pub message: String,
    pub hint: String,
}

/// Whether clap rejected the value of an environment variable, and which.
pub fn invalid_env_value(err: &clap::Error, command: &clap::Command) -> Option<InvalidEnvValue> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if err.kind() != ErrorKind::InvalidValue {
        return None;
    }
    let (
        Some(ContextValue::String(flag)),
        Some(ContextValue::String(value)),
        Some(ContextValue::Strings(valid)),
    ) = (
        err.get(ContextKind::InvalidArg),
        err.get(ContextKind::InvalidValue),
        err.get(ContextKind::ValidValue),
    )
    else {
        return None;
    };
    let mut command = command.clone();
    command.build();
    let name = command
        .get_arguments()
        .find(|arg| arg.to_string() == *flag)?
        .get_env()?
        .to_str()?;
    if env_text(name).as_deref() != Some(value.as_str()) {
        return None;
    }
    let (last, rest) = valid.split_last()?;
    let hint = if rest.is_empty() {
        format!("use {last}")
    } else {
        format!("use {} or {last}", rest.join(", "))
    };
    Some(InvalidEnvValue {
        name: name.to_string(),
        message: format!("invalid {name} '{value}'"),
        hint,
    })
}

/// The command as if the variable `name` were unset.
pub fn without_env(command: clap::Command, name: &str) -> clap::Command {
    command.mut_args(|arg| match arg.get_env() {
        Some(env) if env == name => arg.env(clap::builder::Resettable::Reset),
        _ => arg,
    })
}

/// Where the home is when neither --home nor TENANTCTL_HOME says.
fn default_home() -> Result<PathBuf> {
    if let Some(data) = env_path("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return Ok(data.join("tenantctl"));
    }
    match env_path("HOME") {
        Some(home) => Ok(home.join(".local/share/tenantctl")),
        None => Err(Error::usage("cannot find a home folder for tenantctl")
            .with_hint("pass --home DIR or set TENANTCTL_HOME")),
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.as_os_str().is_empty() {
        return Err(Error::usage("an empty path is not a folder"));
    }
    std::path::absolute(path).map_err(|e| Error::usage(format!("invalid path '{}': {e}", path.display())))
}

fn env_text(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}
