//! Resolved settings for one invocation. The only place that reads environment variables.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
    Ndjson,
    Csv,
}

impl OutputFormat {
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "table" => Ok(OutputFormat::Table),
            "json" => Ok(OutputFormat::Json),
            "ndjson" => Ok(OutputFormat::Ndjson),
            "csv" => Ok(OutputFormat::Csv),
            other => Err(Error::usage(format!("invalid output format '{other}'"))
                .with_hint("use table, json, ndjson or csv")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// What the command line said, before the environment fills the gaps.
#[derive(Debug, Clone, Default)]
pub struct GlobalFlags {
    pub home: Option<PathBuf>,
    pub backup_dir: Option<PathBuf>,
    pub output: Option<String>,
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
    pub no_progress: bool,
    pub actor: Option<String>,
    pub color: Option<ColorChoice>,
    pub lock_timeout: Option<Duration>,
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
    pub fn resolve(flags: &GlobalFlags) -> Result<Self> {
        let home = match &flags.home {
            Some(dir) => absolute(dir)?,
            None => default_home()?,
        };
        let backup_dir = match flags
            .backup_dir
            .clone()
            .or_else(|| env_path("TENANTCTL_BACKUP_DIR"))
        {
            Some(dir) => absolute(&dir)?,
            None => home.join("backups"),
        };
        let output = if flags.json {
            OutputFormat::Json
        } else if let Some(text) = &flags.output {
            OutputFormat::parse(text)?
        } else if let Some(text) = env_text("TENANTCTL_OUTPUT") {
            OutputFormat::parse(&text).map_err(|_| {
                Error::usage(format!("invalid TENANTCTL_OUTPUT '{text}'"))
                    .with_hint("use table, json, ndjson or csv")
            })?
        } else {
            OutputFormat::Table
        };
        let stderr_is_terminal = std::io::stderr().is_terminal();
        let color = match flags.color.unwrap_or(ColorChoice::Auto) {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => stderr_is_terminal && env_text("NO_COLOR").is_none(),
        };
        let actor = flags
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
            quiet: flags.quiet,
            verbose: flags.verbose,
            progress: stderr_is_terminal && !flags.quiet && !flags.no_progress,
            color,
            actor,
            lock_timeout: flags.lock_timeout.unwrap_or(DEFAULT_LOCK_TIMEOUT),
        })
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.home.join("catalog.db")
    }
}

/// Whether the flags alone ask for JSON; used to format errors that happen before a
/// full context exists.
pub fn wants_json(flags: &GlobalFlags) -> bool {
    flags.json || flags.output.as_deref() == Some("json") || (flags.output.is_none() && env_wants_json())
}

/// Whether `TENANTCTL_OUTPUT` asks for JSON.
pub fn env_wants_json() -> bool {
    env_text("TENANTCTL_OUTPUT").as_deref() == Some("json")
}

/// Whether errors may be coloured, before a full context exists.
pub fn stderr_color(flags: &GlobalFlags) -> bool {
    match flags.color.unwrap_or(ColorChoice::Auto) {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stderr().is_terminal() && env_text("NO_COLOR").is_none(),
    }
}

fn default_home() -> Result<PathBuf> {
    if let Some(dir) = env_path("TENANTCTL_HOME") {
        return absolute(&dir);
    }
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
