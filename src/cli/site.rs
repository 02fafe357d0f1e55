//! `site create|list|show|update|delete|deploy|deployments|rollback|snapshot|snapshots|restore`.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Session;
use crate::catalog::states::SiteStatus;
use crate::error::{Error, Result};
use crate::ops::sites::{self, CreateSite, ListSites, UpdateSite};
use crate::site_config::{self, MAX_CONFIG_BYTES};

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Create a site for a customer, within its plan's site limit
    #[command(visible_alias = "add")]
    Create(CreateArgs),
    /// List sites, streamed (use -o ndjson for very large listings)
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one site with its config
    #[command(after_help = "Example:\n  tenantctl site show shop.acme.test --json")]
    Show {
        /// Site id or domain
        site: String,
    },
    /// Change a site; the old config is kept as a manual snapshot first
    Update(UpdateArgs),
    /// Delete a site with its deployments and snapshots
    #[command(after_help = "Example:\n  tenantctl site delete shop.acme.test --confirm shop.acme.test")]
    Delete {
        /// Site id or domain
        site: String,
        /// The site's domain (or id), to confirm
        #[arg(long, value_name = "DOMAIN_OR_ID")]
        confirm: Option<String>,
    },
    /// Record a deployment of the site's current config and mark it deployed
    #[command(after_help = "Example:\n  tenantctl site deploy shop.acme.test --port 3005")]
    Deploy {
        /// Site id or domain
        site: String,
        /// Deploy on this port (1-65535) instead of the site's
        #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(i64).range(1..=65535))]
        port: Option<i64>,
    },
    #[command(after_help = "Example:\n  tenantctl site deployments shop.acme.test")]
    /// List a site's deployments, oldest first
    Deployments {
        /// Site id or domain
        site: String,
    },
    /// Deploy the config of an earlier deployment again
    #[command(
        after_help = "Examples:\n  tenantctl site rollback shop.acme.test\n  tenantctl site rollback shop.acme.test --to 3"
    )]
    Rollback {
        /// Site id or domain
        site: String,
        /// Deployment number to go back to [default: the one before the newest]
        #[arg(long, value_name = "N")]
        to: Option<i64>,
    },
    #[command(after_help = "Example:\n  tenantctl site snapshot shop.acme.test --name before-redesign")]
    /// Save a copy of the site's config
    Snapshot {
        /// Site id or domain
        site: String,
        /// A name for the snapshot
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    #[command(after_help = "Example:\n  tenantctl site snapshots shop.acme.test --json")]
    /// List a site's config snapshots, oldest first
    Snapshots {
        /// Site id or domain
        site: String,
    },
    /// Put a snapshot's config back (the current one is kept as a pre-restore snapshot)
    #[command(after_help = "Example:\n  tenantctl site restore shop.acme.test 12")]
    Restore {
        /// Site id or domain
        site: String,
        /// Snapshot id, from 'tenantctl site snapshots'
        snapshot_id: i64,
    },
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl site create acme 'Acme shop' --domain shop.acme.test --port 3005\n  \
    echo '{\"theme\":{\"primary\":\"#0044aa\"}}' | tenantctl site create acme Blog --domain blog.acme.test --config -"
)]
pub struct CreateArgs {
    /// Customer slug, id or email
    pub customer: String,
    /// Site name
    pub name: String,
    /// Domain, unique across sites [default: <name>.<slug>.<platform_domain>]
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Port, unique across sites (1-65535)
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(i64).range(1..=65535))]
    pub port: Option<i64>,
    /// Kind of business, e.g. translation or shop
    #[arg(long, value_name = "TYPE")]
    pub business_type: Option<String>,
    /// Config JSON object from FILE, or '-' for stdin
    #[arg(long, value_name = "FILE|-")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl site list acme\n  tenantctl site list --status deployed -o ndjson"
)]
pub struct ListArgs {
    /// Only this customer's sites (slug, id or email)
    pub customer: Option<String>,
    /// Only sites in this status
    #[arg(long, value_name = "STATUS")]
    pub status: Option<SiteStatus>,
    /// Only sites whose domain contains TEXT
    #[arg(long, value_name = "TEXT")]
    pub domain: Option<String>,
    /// Show at most N sites; 0 for all
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl site update shop.acme.test --set theme.primary=#0044aa --set features.chat=true\n  \
    tenantctl site update 7 --status stopped --port none"
)]
pub struct UpdateArgs {
    /// Site id or domain
    pub site: String,
    /// New name
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// New domain
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// New port (1-65535), or 'none' to remove it
    #[arg(long, value_name = "PORT|none", value_parser = parse_port)]
    pub port: Option<PortArg>,
    /// New status
    #[arg(long, value_name = "STATUS")]
    pub status: Option<SiteStatus>,
    /// Replace the config with a JSON object from FILE, or '-' for stdin
    #[arg(long, value_name = "FILE|-")]
    pub config: Option<PathBuf>,
    /// Set one config value by dotted path (value parsed as JSON, else a string); repeatable
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

/// A port from the command line, or `none`.
#[derive(Debug, Clone, Copy)]
pub struct PortArg(Option<i64>);

fn parse_port(text: &str) -> std::result::Result<PortArg, String> {
    if text == "none" {
        return Ok(PortArg(None));
    }
    match text.parse::<i64>() {
        Ok(port) if (1..=65535).contains(&port) => Ok(PortArg(Some(port))),
        _ => Err(format!("'{text}' is not a port in 1-65535, nor 'none'")),
    }
}

/// Reads a config document from a file or stdin (`-`).
fn read_config(path: &PathBuf) -> Result<serde_json::Value> {
    let limit = MAX_CONFIG_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    let source = if path.as_os_str() == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::usage(format!("cannot read the config from stdin: {e}")))?;
        "from stdin".to_string()
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut bytes))
            .map_err(|e| Error::usage(format!("cannot read config file {}: {e}", path.display())))?;
        path.display().to_string()
    };
    site_config::parse_config(&bytes, &source)
}

const LIST_COLUMNS: &[&str] = &[
    "id",
    "customer_slug",
    "name",
    "domain",
    "port",
    "status",
    "deployed_at",
];
const DEPLOYMENT_COLUMNS: &[&str] = &["number", "port", "status", "actor", "created_at", "log"];
const SNAPSHOT_COLUMNS: &[&str] = &["id", "kind", "name", "actor", "created_at"];

pub fn run(session: &Session, command: SiteCommand) -> crate::error::Result<()> {
    let mut catalog = session.catalog()?;
    let actor = session.actor();
    let out = &session.out;
    match command {
        SiteCommand::Create(args) => {
            let request = CreateSite {
                customer: args.customer,
                name: args.name,
                domain: args.domain,
                port: args.port,
                business_type: args.business_type,
                config: args.config.as_ref().map(read_config).transpose()?,
            };
            out.object(&sites::create(&mut catalog, actor, &request)?)?;
        }
        SiteCommand::List(args) => {
            let request = ListSites {
                customer: args.customer,
                status: args.status,
                domain: args.domain,
                limit: args.limit,
            };
            let mut writer = out.list_writer(LIST_COLUMNS);
            sites::list(&catalog, &request, |site| {
                writer
                    .row(&site)
                    .map_err(|e| Error::io("writing the site list", e))
            })?;
            writer.finish()?;
        }
        SiteCommand::Show { site } => out.object(&sites::show(&catalog, &site)?)?,
        SiteCommand::Update(args) => {
            let request = UpdateSite {
                name: args.name,
                domain: args.domain,
                port: args.port.map(|p| p.0),
                status: args.status,
                config: args.config.as_ref().map(read_config).transpose()?,
                set: args.set,
            };
            out.object(&sites::update(&mut catalog, actor, &args.site, &request)?)?;
        }
        SiteCommand::Delete { site, confirm } => {
            out.object(&sites::delete(&mut catalog, actor, &site, confirm.as_deref())?)?
        }
        SiteCommand::Deploy { site, port } => {
            out.object(&sites::deploy(&mut catalog, actor, &site, port)?)?
        }
        SiteCommand::Deployments { site } => {
            out.list(DEPLOYMENT_COLUMNS, sites::deployments(&catalog, &site)?)?
        }
        SiteCommand::Rollback { site, to } => {
            out.object(&sites::rollback(&mut catalog, actor, &site, to)?)?
        }
        SiteCommand::Snapshot { site, name } => {
            out.object(&sites::snapshot(&mut catalog, actor, &site, name.as_deref())?)?
        }
        SiteCommand::Snapshots { site } => out.list(SNAPSHOT_COLUMNS, sites::snapshots(&catalog, &site)?)?,
        SiteCommand::Restore { site, snapshot_id } => {
            out.object(&sites::restore(&mut catalog, actor, &site, snapshot_id)?)?
        }
    }
    Ok(())
}
