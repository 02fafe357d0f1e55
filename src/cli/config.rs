//! `config get|set|unset|list`.

use clap::Subcommand;

use super::Session;
use crate::ops::config;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print one setting's value
    #[command(after_help = "Example:\n  tenantctl config get platform_domain")]
    Get {
        /// Setting name, e.g. platform_domain
        key: String,
    },
    /// Change a setting
    #[command(after_help = "Example:\n  tenantctl config set platform_domain example.com")]
    Set {
        /// Setting name
        key: String,
        /// New value
        value: String,
    },
    #[command(after_help = "Example:\n  tenantctl config unset platform_domain")]
    /// Remove a setting, so its default applies again
    Unset {
        /// Setting name
        key: String,
    },
    #[command(after_help = "Example:\n  tenantctl config list -o csv")]
    /// List every setting with its value and default
    List,
}

const COLUMNS: &[&str] = &["key", "value", "default", "description"];

pub fn run(session: &Session, command: ConfigCommand) -> crate::error::Result<()> {
    let mut catalog = session.catalog()?;
    match command {
        ConfigCommand::Get { key } => {
            let setting = config::get(&catalog, &session.home, &key)?;
            session.out.scalar(&setting, "value")?;
            // A script reads the value; a person is told where it comes from. JSON
            // says it in `is_default`.
            if setting.is_default
                && setting.value.is_some()
                && session.out.format() == crate::context::OutputFormat::Table
            {
                session
                    .messages
                    .note(&format!("{} is not set; this is its default", setting.key));
            }
        }
        ConfigCommand::Set { key, value } => {
            session
                .out
                .object(&config::set(&mut catalog, session.actor(), &key, &value)?)?
        }
        ConfigCommand::Unset { key } => {
            session
                .out
                .object(&config::unset(&mut catalog, session.actor(), &key)?)?
        }
        ConfigCommand::List => session
            .out
            .list(COLUMNS, config::list(&catalog, &session.home)?)?,
    }
    Ok(())
}
