//! A database server as `server add|update|test`, `status` and doctor meet it,
//! whatever its engine: its admin URL, what it answers, whether its login may build
//! tenants, and what it must hold before it takes them (PostgreSQL's template
//! database; MySQL replays the migrations for each tenant and keeps none).

use std::time::Duration;

use refinery::Migration;

use super::EngineKind;
use super::mysql::{self, MyUrl};
use super::postgres::{self, PgUrl};
use crate::catalog::states::ServerMode;
use crate::error::{Error, Result};
use crate::secrets::Secret;

/// An admin URL with its password kept apart, for either server engine.
#[derive(Debug, Clone)]
pub enum ServerUrl {
    Postgres(PgUrl),
    Mysql(MyUrl),
}

/// What a server says of itself when asked.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub version: String,
    pub latency: Duration,
}

impl ServerUrl {
    /// What the operator typed, by its scheme; exit 2 when it is no server URL.
    pub fn parse(text: &str) -> Result<Self> {
        let scheme = text.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("mysql" | "mariadb") => Ok(ServerUrl::Mysql(MyUrl::parse(text)?)),
            Some("postgres" | "postgresql") => Ok(ServerUrl::Postgres(PgUrl::parse(text)?)),
            _ => Err(
                Error::usage("invalid server URL: the scheme must be postgresql:// or mysql://")
                    .with_hint("write it as postgresql://USER@HOST/DATABASE or mysql://USER@HOST/"),
            ),
        }
    }

    /// A URL as the catalog stored it for a server of `engine`.
    pub fn from_stored(engine: EngineKind, stored: &str, password: Option<Secret>) -> Result<Self> {
        match engine {
            EngineKind::Mysql => Ok(ServerUrl::Mysql(MyUrl::from_stored(stored, password)?)),
            _ => Ok(ServerUrl::Postgres(PgUrl::from_stored(stored, password)?)),
        }
    }

    pub fn engine(&self) -> EngineKind {
        match self {
            ServerUrl::Postgres(_) => EngineKind::Postgres,
            ServerUrl::Mysql(_) => EngineKind::Mysql,
        }
    }

    pub fn without_password(&self) -> &str {
        match self {
            ServerUrl::Postgres(url) => url.without_password(),
            ServerUrl::Mysql(url) => url.without_password(),
        }
    }

    pub fn password(&self) -> Option<&Secret> {
        match self {
            ServerUrl::Postgres(url) => url.password(),
            ServerUrl::Mysql(url) => url.password(),
        }
    }

    pub fn set_password(&mut self, password: Option<Secret>) {
        match self {
            ServerUrl::Postgres(url) => url.set_password(password),
            ServerUrl::Mysql(url) => url.set_password(password),
        }
    }

    pub fn with_timeout(self, timeout: Duration) -> Self {
        match self {
            ServerUrl::Postgres(url) => ServerUrl::Postgres(url.with_timeout(timeout)),
            ServerUrl::Mysql(url) => ServerUrl::Mysql(url.with_timeout(timeout)),
        }
    }

    /// Connects and reads the version; exit 1 naming the server when it is down.
    pub fn inspect(&self, server: &str) -> Result<ServerFacts> {
        match self {
            ServerUrl::Postgres(url) => postgres::inspect(server, url).map(|f| ServerFacts {
                version: f.version,
                latency: f.latency,
            }),
            ServerUrl::Mysql(url) => mysql::inspect(server, url).map(|f| ServerFacts {
                version: f.version,
                latency: f.latency,
            }),
        }
    }

    /// Reaches the server and checks what provisioning and backups will need of it:
    /// the login's rights and the local dump tools. Schema mode is PostgreSQL's only
    /// (exit 2 on MySQL).
    pub fn check_for_tenants(&self, server: &str, mode: ServerMode) -> Result<ServerFacts> {
        match self {
            ServerUrl::Postgres(url) => check_postgres(server, url, mode),
            ServerUrl::Mysql(url) => check_mysql(server, url, mode),
        }
    }

    /// Makes the server ready for tenants at `migrations`; returns the identity of
    /// the template it built, if it keeps one.
    pub fn prepare(
        &self,
        server: &str,
        mode: ServerMode,
        migrations: &[Migration],
    ) -> Result<Option<String>> {
        match (self, mode) {
            (ServerUrl::Postgres(url), ServerMode::Database) => {
                postgres::build_template(server, url, migrations).map(Some)
            }
            (ServerUrl::Postgres(url), ServerMode::Schema) => {
                // Tenants share the URL's database: it is closed to everyone else.
                let mut client = url.connect(server, None)?;
                postgres::close_schema_database(&mut client, &url.database())
                    .map_err(|e| postgres::unreachable(server, &e))?;
                Ok(None)
            }
            (ServerUrl::Mysql(_), _) => Ok(None),
        }
    }

    /// Whether the server keeps a template that must hold `migrations`, and whether
    /// `stored` (the identity the catalog recorded) does: `None` when it keeps none.
    pub fn template_current(
        &self,
        mode: ServerMode,
        stored: Option<&str>,
        migrations: &[Migration],
    ) -> Option<bool> {
        match (self, mode) {
            (ServerUrl::Postgres(_), ServerMode::Database) => {
                Some(stored == Some(postgres::template_identity(migrations).as_str()))
            }
            _ => None,
        }
    }
}

fn check_postgres(name: &str, url: &PgUrl, mode: ServerMode) -> Result<ServerFacts> {
    let facts = postgres::inspect(name, url)?;
    let user = url.user();
    let may_provision = facts.superuser || (facts.can_create_databases && facts.can_create_roles);
    if !may_provision {
        return Err(Error::refused(format!(
            "login {user} on server {name} cannot create databases and roles"
        ))
        .with_hint(format!(
            "ALTER ROLE {user} CREATEDB CREATEROLE, or use an admin login"
        )));
    }
    if mode == ServerMode::Schema && !facts.superuser && !facts.can_create_schemas {
        return Err(Error::refused(format!(
            "login {user} cannot create schemas in database {} on server {name}",
            url.database()
        ))
        .with_hint(format!("GRANT CREATE ON DATABASE {} TO {user}", url.database())));
    }
    postgres::dump_tools(name, &facts.version, facts.major)?;
    Ok(ServerFacts {
        version: facts.version,
        latency: facts.latency,
    })
}

fn check_mysql(name: &str, url: &MyUrl, mode: ServerMode) -> Result<ServerFacts> {
    if mode == ServerMode::Schema {
        return Err(Error::usage(
            "MySQL servers keep each tenant in a database of its own; --mode schema is PostgreSQL's",
        )
        .with_hint("leave --mode out (database)"));
    }
    let facts = mysql::inspect(name, url)?;
    let user = url.user();
    let missing: Vec<&str> = [
        (facts.can_create, "CREATE"),
        (facts.can_create_users, "CREATE USER"),
        (facts.can_grant, "GRANT OPTION"),
    ]
    .into_iter()
    .filter(|(has, _)| !has)
    .map(|(_, right)| right)
    .collect();
    if !missing.is_empty() {
        return Err(Error::refused(format!(
            "login {user} on server {name} lacks {}",
            missing.join(", ")
        ))
        .with_hint(format!(
            "GRANT ALL PRIVILEGES ON *.* TO '{user}'@'…' WITH GRANT OPTION, or use an admin login"
        )));
    }
    mysql::my_tools(name)?;
    Ok(ServerFacts {
        version: facts.version,
        latency: facts.latency,
    })
}
