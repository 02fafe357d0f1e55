//! `key`, `session`, `usage`, `quota` and `stats`.

use clap::{Args, Subcommand};

use super::Session;
use crate::ops::{access, usage};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key; its token is printed once
    #[command(
        after_help = "Example:\n  tenantctl key create acme --name ci --scope sites:read --scope deploy --expires-in 90d"
    )]
    Create {
        /// Customer slug, id or email
        customer: String,
        /// What the key is for
        #[arg(long, value_name = "NAME")]
        name: String,
        /// A scope such as sites:read or deploy (lowercase; 'config set key_scopes' may restrict them); repeatable [default: sites:read]
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Expire after this long, e.g. 90d or 12h
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    #[command(after_help = "Example:\n  tenantctl key list acme")]
    /// List API keys (never their secrets)
    List {
        /// Only this customer's keys
        customer: Option<String>,
    },
    #[command(after_help = "Example:\n  tenantctl key revoke 3k9x2m1a")]
    /// Revoke an API key
    Revoke {
        /// Key id (the 8 characters after tk_)
        key_id: String,
    },
    /// Check a token: exit 0 with its customer and scopes, exit 3 if not valid
    #[command(after_help = "Example:\n  tenantctl key verify \"$TOKEN\" --json")]
    Verify {
        /// The token, tk_<id>_<secret>
        token: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Open a portal session for a customer (as the portal does at login); the token is printed once
    #[command(after_help = "Example:\n  tenantctl session create acme --device 'Firefox on Linux' --ttl 7d")]
    Create {
        /// Customer slug, id or email
        customer: String,
        /// The device or browser
        #[arg(long, value_name = "DEVICE")]
        device: Option<String>,
        /// How long the session lives, e.g. 7d or 12h
        #[arg(long, value_name = "DURATION", default_value = "7d")]
        ttl: String,
    },
    #[command(
        after_help = "Examples:\n  tenantctl session list acme\n  tenantctl session list --active --json"
    )]
    /// List sessions (never their tokens)
    List {
        /// Only this customer's sessions
        customer: Option<String>,
        /// Only sessions that are neither revoked, expired nor blocked
        #[arg(long)]
        active: bool,
    },
    /// Revoke a session, or every session of a customer
    #[command(
        after_help = "Examples:\n  tenantctl session revoke 3k9x2m1a\n  tenantctl session revoke --customer acme --all"
    )]
    Revoke {
        /// Session id
        #[arg(required_unless_present = "customer", conflicts_with = "customer")]
        session_id: Option<String>,
        /// Revoke this customer's sessions (with --all)
        #[arg(long, value_name = "CUSTOMER", requires = "all")]
        customer: Option<String>,
        /// Every session of --customer
        #[arg(long, requires = "customer")]
        all: bool,
    },
    #[command(after_help = "Example:\n  tenantctl session prune")]
    /// Delete expired sessions (for cron)
    Prune,
}

#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Record metered usage
    #[command(after_help = "Example:\n  tenantctl usage record acme bandwidth_mb 512 --at 2026-11-03")]
    Record {
        /// Customer slug, id or email
        customer: String,
        /// bandwidth_mb or api_calls
        metric: String,
        /// A whole number, 0 or more
        amount: u64,
        /// When it was used [default: now]; sets the month
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    #[command(after_help = "Example:\n  tenantctl usage report acme --month 2026-11")]
    /// Usage per customer for a month, with storage measured now
    Report {
        /// Only this customer
        customer: Option<String>,
        /// YYYY-MM [default: this month]
        #[arg(long, value_name = "YYYY-MM")]
        month: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    #[command(after_help = "Examples:\n  tenantctl quota check\n  tenantctl quota check acme --json")]
    /// Usage against limits; exit 5 if any customer is over
    Check {
        /// Only this customer
        customer: Option<String>,
    },
    #[command(after_help = "Example:\n  tenantctl quota enforce --dry-run")]
    /// For cron: warn at 80 % and suspend at 100 % of the storage limit
    Enforce {
        /// Say what would be done, do nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
pub struct StatsArgs {}

const KEY_COLUMNS: &[&str] = &[
    "id",
    "customer",
    "name",
    "scopes",
    "status",
    "expires_at",
    "last_used_at",
];
const SESSION_COLUMNS: &[&str] = &["id", "customer", "device", "status", "expires_at", "last_seen_at"];
const USAGE_COLUMNS: &[&str] = &["customer", "month", "bandwidth_mb", "api_calls", "storage_mb"];
const QUOTA_COLUMNS: &[&str] = &["customer", "plan", "resource", "used", "limit", "percent", "over"];
const ENFORCE_COLUMNS: &[&str] = &["action", "customer", "resource", "used", "limit", "percent"];

pub fn key(session: &Session, command: KeyCommand) -> crate::error::Result<()> {
    let mut catalog = session.catalog()?;
    match command {
        KeyCommand::Create {
            customer,
            name,
            scopes,
            expires_in,
        } => session.out.object(&access::create_key(
            &mut catalog,
            session.actor(),
            &customer,
            &name,
            &scopes,
            expires_in.as_deref(),
        )?)?,
        KeyCommand::List { customer } => session
            .out
            .list(KEY_COLUMNS, access::list_keys(&catalog, customer.as_deref())?)?,
        KeyCommand::Revoke { key_id } => {
            let revocation = access::revoke_key(&mut catalog, session.actor(), &key_id)?;
            if revocation.already_revoked {
                session.messages.note(&format!(
                    "key {key_id} was already revoked at {}; nothing changed",
                    revocation.key.revoked_at.as_deref().unwrap_or("-")
                ));
            }
            session.out.object(&revocation.key)?
        }
        KeyCommand::Verify { token } => session.out.object(&access::verify_key(&mut catalog, &token)?)?,
    }
    Ok(())
}

pub fn session(session: &Session, command: SessionCommand) -> crate::error::Result<()> {
    let mut catalog = session.catalog()?;
    match command {
        SessionCommand::Create {
            customer,
            device,
            ttl,
        } => session.out.object(&access::create_session(
            &mut catalog,
            session.actor(),
            &customer,
            device.as_deref(),
            &ttl,
        )?)?,
        SessionCommand::List { customer, active } => session.out.list(
            SESSION_COLUMNS,
            access::list_sessions(&catalog, customer.as_deref(), active)?,
        )?,
        SessionCommand::Revoke {
            session_id, customer, ..
        } => {
            let revoked = access::revoke_sessions(
                &mut catalog,
                session.actor(),
                session_id.as_deref(),
                customer.as_deref(),
            )?;
            if revoked.revoked == 0 {
                session.messages.note(&match &session_id {
                    Some(id) => format!("session {id} was already revoked; nothing changed"),
                    None => format!(
                        "no session of {} was left to revoke; nothing changed",
                        customer.as_deref().unwrap_or("-")
                    ),
                });
            }
            session.out.object(&revoked)?
        }
        SessionCommand::Prune => session
            .out
            .object(&access::prune_sessions(&mut catalog, session.actor())?)?,
    }
    Ok(())
}

pub fn usage(session: &Session, command: UsageCommand) -> crate::error::Result<()> {
    let mut catalog = session.catalog()?;
    match command {
        UsageCommand::Record {
            customer,
            metric,
            amount,
            at,
        } => session.out.object(&usage::record(
            &mut catalog,
            session.actor(),
            &customer,
            &metric,
            amount,
            at.as_deref(),
        )?)?,
        UsageCommand::Report { customer, month } => session.out.list(
            USAGE_COLUMNS,
            usage::report(&catalog, customer.as_deref(), month.as_deref())?,
        )?,
    }
    Ok(())
}

pub fn quota(session: &Session, command: QuotaCommand) -> crate::error::Result<()> {
    let mut catalog = session.catalog()?;
    match command {
        QuotaCommand::Check { customer } => {
            let checked = usage::check(&catalog, customer.as_deref())?;
            session.out.list(QUOTA_COLUMNS, &checked.report)?;
            checked.outcome()?;
        }
        QuotaCommand::Enforce { dry_run } => {
            let enforced = usage::enforce(&mut catalog, session.actor(), dry_run)?;
            session.out.list(ENFORCE_COLUMNS, &enforced.report)?;
            enforced.outcome()?;
        }
    }
    Ok(())
}

pub fn stats(session: &Session, _args: StatsArgs) -> crate::error::Result<()> {
    let catalog = session.catalog()?;
    session.out.object(&usage::stats(&catalog)?)?;
    Ok(())
}
