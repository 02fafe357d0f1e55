//! PostgreSQL servers: their connection URLs, admin connections, what a server must
//! offer before it takes tenants, and its template database.

mod archive;
mod copies;
mod migrate;
mod online;
mod pool;
mod replication;
mod rows;
mod schema;
pub mod sql;
mod template;
pub mod tenant;
mod tools;

use std::str::FromStr;
use std::time::{Duration, Instant};

use postgres::{Client, Config, NoTls};

pub use archive::compare_rows;
pub use schema::close_database as close_schema_database;
pub use template::{TEMPLATE_DATABASE, build_template, identity as template_identity};
pub use tenant::{PgEngine, role_identity, tenant_name};
pub use tools::{DumpTools, dump_tools};

/// Whether a `pg_dump -Fc` archive's header and table of contents read whole
/// (`pg_restore --list`); the reason when they do not, or when no pg_restore is
/// installed to tell.
pub fn check_archive(path: &std::path::Path) -> std::result::Result<(), String> {
    let tools = tools::newest_tools().ok_or("pg_restore is not installed, so the archive cannot be read")?;
    match archive::contents(&tools, path) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(archive::ToolFailed(why))) => Err(why),
        Err(err) => Err(err.to_string()),
    }
}

use crate::error::{Error, Result};
use crate::secrets::Secret;

/// How long a connection attempt may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server's admin URL with the password kept apart: the URL alone is what the
/// catalog stores and what is shown, the password goes only into connections.
#[derive(Debug, Clone)]
pub struct PgUrl {
    stored: url::Url,
    password: Option<Secret>,
    timeout: Duration,
}

impl PgUrl {
    /// Parses what the operator typed: `postgres[ql]://user[:password]@host[:port]/db`,
    /// a unix socket folder as a percent-encoded host or `?host=/path`. Exit 2 when it
    /// is not such a URL (the message never repeats the URL, which may hold a password).
    pub fn parse(text: &str) -> Result<Self> {
        let mut parsed = url::Url::parse(text).map_err(|e| malformed(&e.to_string()))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(malformed("the scheme must be postgres:// or postgresql://"));
        }
        let config = Config::from_str(text).map_err(|e| malformed(&e.to_string()))?;
        if config.get_user().is_none_or(str::is_empty) {
            return Err(malformed("it names no user (postgres://USER@host/db)"));
        }
        let password = config
            .get_password()
            .map(|bytes| {
                String::from_utf8(bytes.to_vec()).map_err(|_| malformed("the password is not UTF-8"))
            })
            .transpose()?
            .map(Secret::new);
        parsed
            .set_password(None)
            .map_err(|()| malformed("it cannot carry a login"))?;
        drop_password_parameter(&mut parsed);
        Ok(PgUrl {
            stored: parsed,
            password,
            timeout: CONNECT_TIMEOUT,
        })
    }

    /// A URL as the catalog stored it, with its decrypted password.
    pub fn from_stored(stored: &str, password: Option<Secret>) -> Result<Self> {
        let mut url = PgUrl::parse(stored)?;
        url.password = password;
        Ok(url)
    }

    /// The same login with another connection timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL without its password: what the catalog keeps.
    pub fn without_password(&self) -> &str {
        self.stored.as_str()
    }

    /// The URL for people: the password, if any, as `***`.
    pub fn redacted(&self) -> String {
        let mut shown = self.stored.clone();
        if self.password.is_some() {
            let _ = shown.set_password(Some("***"));
        }
        shown.to_string()
    }

    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    pub fn set_password(&mut self, password: Option<Secret>) {
        self.password = password;
    }

    /// The same server and database reached as another login (a tenant role).
    pub fn set_login(&mut self, user: &str, password: Secret) {
        let _ = self.stored.set_username(user);
        self.password = Some(password);
    }

    fn config(&self) -> Config {
        let mut config = Config::from_str(self.stored.as_str()).expect("a URL parsed before");
        if let Some(password) = &self.password {
            config.password(password.expose());
        }
        config.connect_timeout(self.timeout);
        // A host that drops off the network mid-statement sends nothing back: without
        // these a worker would wait on it for hours, and the fan-out with it.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        config.keepalives_interval(Duration::from_secs(10));
        config.keepalives_retries(3);
        config.tcp_user_timeout(Duration::from_secs(60));
        config.application_name("tenantctl");
        config
    }

    /// The URL's own database.
    pub fn database(&self) -> String {
        let config = self.config();
        config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres")
            .to_string()
    }

    pub fn user(&self) -> String {
        self.config().get_user().unwrap_or_default().to_string()
    }

    /// Host (or socket folder) and port, as connections and reports name them.
    pub fn host_and_port(&self) -> (String, u16) {
        let config = self.config();
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(name)) => name.clone(),
            Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_string(),
        };
        (host, config.get_ports().first().copied().unwrap_or(5432))
    }

    /// Connects as the URL's login to `database` (default: the URL's own).
    pub fn connect(&self, server: &str, database: Option<&str>) -> Result<Client> {
        let mut config = self.config();
        if let Some(database) = database {
            config.dbname(database);
        }
        config.connect(NoTls).map_err(|e| unreachable(server, &e))
    }

    /// How to connect as the URL's login to `database`.
    fn config_for(&self, database: &str) -> Config {
        let mut config = self.config();
        config.dbname(database);
        config
    }

    /// The environment that hands this login to libpq tools (pg_dump, psql): the
    /// password travels here, never in their argv.
    pub fn tool_env(&self, database: &str) -> Vec<(&'static str, String)> {
        let (host, port) = self.host_and_port();
        let mut env = vec![
            ("PGHOST", host),
            ("PGPORT", port.to_string()),
            ("PGUSER", self.user()),
            ("PGDATABASE", database.to_string()),
        ];
        if let Some(password) = &self.password {
            env.push(("PGPASSWORD", password.expose().to_string()));
        }
        env
    }
}

/// libpq also takes the password as `?password=`: it goes the way of the one in the
/// userinfo (encrypted apart), never into the URL that is stored and shown.
fn drop_password_parameter(url: &mut url::Url) {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != "password")
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    if kept.len() == url.query_pairs().count() {
        return;
    }
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
}

fn malformed(why: &str) -> Error {
    Error::usage(format!("invalid server URL: {why}"))
        .with_hint("write it as postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
}

/// A connection that failed or broke: exit 1 naming the server and the cause.
pub fn unreachable(server: &str, err: &postgres::Error) -> Error {
    Error::unexpected(format!("server {server}: {}", describe(err)))
}

/// What went wrong, from the server's message when there is one.
pub fn describe(err: &postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return db.message().to_string();
    }
    match std::error::Error::source(err) {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    }
}

/// What `server add` and `server test` learn about a server.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    /// `server_version`, e.g. `15.18 (Debian 15.18-0+deb12u1)`.
    pub version: String,
    pub major: u32,
    pub superuser: bool,
    pub can_create_databases: bool,
    pub can_create_roles: bool,
    /// Whether the login may create schemas in the URL's database.
    pub can_create_schemas: bool,
    pub latency: Duration,
}

/// Connects and reads the server's version and the login's rights.
pub fn inspect(server: &str, url: &PgUrl) -> Result<ServerFacts> {
    let started = Instant::now();
    let mut client = url.connect(server, None)?;
    let latency = started.elapsed();
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int,
                    r.rolsuper, r.rolcreatedb, r.rolcreaterole,
                    has_database_privilege(current_database(), 'CREATE')
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .map_err(|e| unreachable(server, &e))?;
    let version_num: i32 = row.get(1);
    Ok(ServerFacts {
        version: row.get(0),
        major: u32::try_from(version_num / 10_000).unwrap_or(0),
        superuser: row.get(2),
        can_create_databases: row.get(3),
        can_create_roles: row.get(4),
        can_create_schemas: row.get(5),
        latency,
    })
}
