//! `server add|list|show|test|update|remove`.

use std::io::BufRead;

use clap::{Args, Subcommand};

use super::Session;
use crate::catalog::states::{ServerMode, ServerStatus};
use crate::error::{Error, Result};
use crate::ops::servers::{self, AddServer, UpdateServer};
use crate::secrets::Secret;

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Register a PostgreSQL server that tenants can be placed on
    #[command(after_help = "Examples:\n  \
        tenantctl server add pg1 --url postgresql://admin@db1.internal:5432/postgres --password-stdin < pw.txt\n  \
        tenantctl server add pg2 --url postgresql://admin@db2.internal/platform --mode schema --capacity 500\n\n\
        The login must be able to create databases and roles (CREATEDB CREATEROLE). Its password \
        is stored encrypted with the home's master key (HOME/master.key, made by the first \
        'server add', or $TENANTCTL_MASTER_KEY); prefer --password-stdin to a password in the \
        URL, which other users of this machine can see in the process list.")]
    Add(AddArgs),
    /// List the servers, the built-in 'local' first
    #[command(after_help = "Example:\n  tenantctl server list --json")]
    List,
    /// Show one server (its password as ***)
    #[command(after_help = "Example:\n  tenantctl server show pg1")]
    Show {
        /// Server name
        name: String,
    },
    /// Connect to a server: reachability, latency, version, tenants, free capacity
    #[command(after_help = "Example:\n  tenantctl server test pg1")]
    Test {
        /// Server name
        name: String,
    },
    /// Change a server's login, capacity or status
    #[command(after_help = "Examples:\n  tenantctl server update pg1 --status draining\n  \
        tenantctl server update pg1 --url postgresql://admin2@db1.internal/postgres --password-stdin < pw.txt")]
    Update(UpdateArgs),
    /// Forget a server that hosts no tenant (its databases stay on it)
    #[command(after_help = "Example:\n  tenantctl server remove pg1 --confirm pg1")]
    Remove {
        /// Server name
        name: String,
        /// The server's name, to confirm
        #[arg(long, value_name = "NAME")]
        confirm: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Server name (lowercase letters, digits, hyphens; not 'local')
    pub name: String,
    /// Admin login: postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Read the login's password from the first line of stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// One database per tenant, or one schema per tenant in the URL's database
    #[arg(long, value_enum, default_value_t = ServerMode::Database)]
    pub mode: ServerMode,
    /// Most tenants the server may hold (default: no limit)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub capacity: Option<i64>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Server name
    pub name: String,
    /// A new admin login URL (checked against the server before it is saved)
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Read a new password for the login from the first line of stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Most tenants the server may hold
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub capacity: Option<i64>,
    /// 'draining' keeps its tenants but places no new ones on it
    #[arg(long, value_enum)]
    pub status: Option<ServerStatus>,
}

const COLUMNS: &[&str] = &[
    "name", "engine", "mode", "status", "tenants", "capacity", "version", "url",
];

pub fn run(session: &Session, command: ServerCommand) -> Result<()> {
    let mut catalog = session.catalog()?;
    match command {
        ServerCommand::Add(args) => {
            let request = AddServer {
                name: &args.name,
                url: &args.url,
                password: password_from_stdin(args.password_stdin)?,
                mode: args.mode,
                capacity: args.capacity,
            };
            session
                .out
                .object(&servers::add(&mut catalog, session.actor(), request)?)?
        }
        ServerCommand::List => session
            .out
            .list(COLUMNS, servers::list(&catalog, &session.home)?)?,
        ServerCommand::Show { name } => {
            session
                .out
                .object(&servers::show(&catalog, &session.home, &name)?)?
        }
        ServerCommand::Test { name } => {
            session
                .out
                .object(&servers::test(&catalog, &session.home, &name)?)?
        }
        ServerCommand::Update(args) => {
            let change = UpdateServer {
                url: args.url.as_deref(),
                password: password_from_stdin(args.password_stdin)?,
                capacity: args.capacity,
                status: args.status,
            };
            session.out.object(&servers::update(
                &mut catalog,
                session.actor(),
                &args.name,
                change,
            )?)?
        }
        ServerCommand::Remove { name, confirm } => {
            let removed = servers::remove(&mut catalog, session.actor(), &name, confirm.as_deref())?;
            session.out.object(&removed)?
        }
    }
    Ok(())
}

/// The first line of stdin, without its line ending, when asked for.
fn password_from_stdin(wanted: bool) -> Result<Option<Secret>> {
    if !wanted {
        return Ok(None);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::usage(format!("cannot read the password from stdin: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(Error::usage("--password-stdin read an empty password"));
    }
    Ok(Some(Secret::new(password)))
}
