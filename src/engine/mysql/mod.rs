//! MySQL and MariaDB servers (SPEC section 7, the second server engine): their
//! connection URLs, admin connections, what a server must offer before it takes
//! tenants, and the local dump tools. Tenants live one database each, with a login
//! user of their own (see [`tenant`]).

mod dump;
mod migrate;
mod names;
mod pool;
mod rows;
mod script;
pub mod sql;
mod tables;
pub mod tenant;
mod tools;
mod whole;

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};

pub use script::is_complete as check_script;
pub use tenant::MyEngine;
pub use tools::{MyTools, my_tools};

use crate::error::{Error, Result};
use crate::secrets::Secret;

/// How long a connection attempt may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server's admin URL with the password kept apart, as for PostgreSQL: the URL
/// alone is stored and shown, the password goes only into connections.
/// `mysql://USER[:PASSWORD]@HOST[:PORT][/DATABASE][?socket=/path/to/mysqld.sock]`.
#[derive(Debug, Clone)]
pub struct MyUrl {
    stored: url::Url,
    password: Option<Secret>,
    timeout: Duration,
}

impl MyUrl {
    /// Parses what the operator typed (`mysql://` or `mariadb://`); exit 2 when it is
    /// not such a URL, never repeating it (it may hold a password).
    pub fn parse(text: &str) -> Result<Self> {
        let mut parsed = url::Url::parse(text).map_err(|e| malformed(&e.to_string()))?;
        if !matches!(parsed.scheme(), "mysql" | "mariadb") {
            return Err(malformed("the scheme must be mysql:// or mariadb://"));
        }
        if parsed.username().is_empty() {
            return Err(malformed("it names no user (mysql://USER@host/db)"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(malformed("it names no host"));
        }
        if let Some((key, _)) = parsed
            .query_pairs()
            .find(|(key, _)| !matches!(key.as_ref(), "socket" | "password"))
        {
            return Err(malformed(&format!(
                "the parameter '{key}' is not understood; only socket"
            )));
        }
        let password = match parsed.password() {
            Some(encoded) => Some(decode(encoded)?),
            None => parsed
                .query_pairs()
                .find(|(key, _)| key == "password")
                .map(|(_, value)| value.into_owned()),
        }
        .map(Secret::new);
        parsed
            .set_password(None)
            .map_err(|()| malformed("it cannot carry a login"))?;
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(key, _)| key != "password")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        parsed.set_query(None);
        if !kept.is_empty() {
            parsed.query_pairs_mut().extend_pairs(kept);
        }
        Ok(MyUrl {
            stored: parsed,
            password,
            timeout: CONNECT_TIMEOUT,
        })
    }

    /// A URL as the catalog stored it, with its decrypted password.
    pub fn from_stored(stored: &str, password: Option<Secret>) -> Result<Self> {
        let mut url = MyUrl::parse(stored)?;
        url.password = password;
        Ok(url)
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn without_password(&self) -> &str {
        self.stored.as_str()
    }

    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    pub fn set_password(&mut self, password: Option<Secret>) {
        self.password = password;
    }

    pub fn user(&self) -> String {
        decode(self.stored.username()).unwrap_or_else(|_| self.stored.username().to_string())
    }

    /// The socket file, when the server is reached through one.
    pub fn socket(&self) -> Option<String> {
        self.stored
            .query_pairs()
            .find(|(key, _)| key == "socket")
            .map(|(_, value)| value.into_owned())
    }

    /// Host (or socket file) and port, as reports name them.
    pub fn host_and_port(&self) -> (String, u16) {
        let host = match self.socket() {
            Some(socket) => socket,
            None => self.stored.host_str().unwrap_or("localhost").to_string(),
        };
        (host, self.stored.port().unwrap_or(3306))
    }

    fn host(&self) -> String {
        self.stored
            .host_str()
            .unwrap_or("localhost")
            .trim_matches(['[', ']'])
            .to_string()
    }

    /// How to connect as `user` (default: the URL's) with `password`.
    fn opts_as(&self, user: &str, password: Option<&Secret>) -> Opts {
        let builder = OptsBuilder::new()
            .ip_or_hostname(Some(self.host()))
            .tcp_port(self.stored.port().unwrap_or(3306))
            .socket(self.socket())
            .prefer_socket(false)
            .user(Some(user))
            .pass(password.map(|p| p.expose().to_string()))
            .tcp_connect_timeout(Some(self.timeout))
            // A host that drops off the network mid-statement sends nothing back.
            .tcp_keepalive_time_ms(Some(30_000))
            .tcp_keepalive_probe_interval_secs(Some(10))
            .tcp_keepalive_probe_count(Some(3))
            .stmt_cache_size(0)
            .connect_attrs::<String, String>(None);
        builder.into()
    }

    /// Connects as the URL's login.
    pub fn connect(&self, server: &str) -> Result<Conn> {
        Conn::new(self.opts_as(&self.user(), self.password.as_ref())).map_err(|e| unreachable(server, &e))
    }

    /// Connects as another login of the same server (a tenant's user).
    pub fn connect_as(&self, server: &str, user: &str, password: &Secret) -> Result<Conn> {
        Conn::new(self.opts_as(user, Some(password))).map_err(|e| unreachable(server, &e))
    }

    /// The options file `mariadb-dump` and the `mariadb` client read the login from
    /// (`--defaults-extra-file`): the password goes there, mode 0600, never argv.
    pub fn client_options(&self, database: Option<&str>) -> String {
        let mut text = String::from("[client]\n");
        text.push_str(&format!("user={}\n", option_value(&self.user())));
        if let Some(password) = &self.password {
            text.push_str(&format!("password={}\n", option_value(password.expose())));
        }
        match self.socket() {
            Some(socket) => {
                text.push_str(&format!("socket={}\nprotocol=socket\n", option_value(&socket)));
            }
            None => {
                text.push_str(&format!(
                    "host={}\nport={}\nprotocol=tcp\n",
                    option_value(&self.host()),
                    self.stored.port().unwrap_or(3306)
                ));
            }
        }
        if let Some(database) = database {
            text.push_str(&format!("database={}\n", option_value(database)));
        }
        text
    }
}

/// A value in an option file, quoted so that spaces, `#` and quotes survive.
fn option_value(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn decode(text: &str) -> Result<String> {
    percent_decode(text).ok_or_else(|| malformed("a login is not valid percent-encoded UTF-8"))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn malformed(why: &str) -> Error {
    Error::usage(format!("invalid server URL: {why}"))
        .with_hint("write it as mysql://USER[:PASSWORD]@HOST[:PORT][/DATABASE][?socket=/path/mysqld.sock]")
}

/// A connection that failed or broke: the server counts as down when it did not
/// answer at all, else exit 1 naming the server and the cause.
pub fn unreachable(server: &str, err: &mysql::Error) -> Error {
    if says_down(err) {
        return Error::ServerDown {
            server: server.to_string(),
            cause: describe(err),
        };
    }
    Error::unexpected(format!("server {server}: {}", describe(err)))
}

/// Whether an error says the server gave no answer (as against one that says no).
pub(crate) fn says_down(err: &mysql::Error) -> bool {
    match err {
        mysql::Error::IoError(_) | mysql::Error::DriverError(_) => true,
        // Too many connections, server shutting down, lost connection.
        mysql::Error::MySqlError(e) => matches!(e.code, 1040 | 1053 | 2002 | 2003 | 2006 | 2013),
        _ => false,
    }
}

/// What went wrong, from the server's message when there is one.
pub fn describe(err: &mysql::Error) -> String {
    match err {
        mysql::Error::MySqlError(e) => e.message.clone(),
        other => other.to_string(),
    }
}

/// What `server add` and `server test` learn about a server.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    /// `VERSION()`, e.g. `10.11.14-MariaDB-0+deb12u2`.
    pub version: String,
    pub mariadb: bool,
    pub can_create: bool,
    pub can_create_users: bool,
    pub can_grant: bool,
    pub latency: Duration,
}

/// Connects and reads the server's version and the login's global rights.
pub fn inspect(server: &str, url: &MyUrl) -> Result<ServerFacts> {
    let started = Instant::now();
    let mut conn = url.connect(server)?;
    let latency = started.elapsed();
    let version: String = conn
        .query_first("SELECT VERSION()")
        .map_err(|e| unreachable(server, &e))?
        .unwrap_or_default();
    let grants: Vec<String> = conn.query("SHOW GRANTS").map_err(|e| unreachable(server, &e))?;
    let global: Vec<&String> = grants.iter().filter(|g| g.contains(" ON *.* ")).collect();
    let has = |right: &str| {
        global
            .iter()
            .any(|g| g.contains("ALL PRIVILEGES") || privileges_of(g).iter().any(|p| p == right))
    };
    Ok(ServerFacts {
        mariadb: version.contains("MariaDB"),
        can_create: has("CREATE"),
        can_create_users: has("CREATE USER"),
        can_grant: global.iter().any(|g| g.contains("WITH GRANT OPTION")),
        version,
        latency,
    })
}

/// The privileges a `GRANT a, b, c ON …` line names.
fn privileges_of(grant: &str) -> Vec<String> {
    let Some(list) = grant
        .strip_prefix("GRANT ")
        .and_then(|rest| rest.split_once(" ON ").map(|(list, _)| list))
    else {
        return Vec::new();
    };
    list.split(',').map(|p| p.trim().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_kept_apart_from_the_stored_url() {
        let url = MyUrl::parse("mysql://admin:s%40cret@db.example:3307/mysql").unwrap();
        assert_eq!(url.without_password(), "mysql://admin@db.example:3307/mysql");
        assert_eq!(url.password().unwrap().expose(), "s@cret");
        assert_eq!(url.host_and_port(), ("db.example".to_string(), 3307));
    }

    #[test]
    fn a_socket_is_a_parameter() {
        let url = MyUrl::parse("mysql://admin@localhost/?socket=%2Ftmp%2Fm%2Fmysqld.sock").unwrap();
        assert_eq!(url.socket().as_deref(), Some("/tmp/m/mysqld.sock"));
        assert!(MyUrl::parse("mysql://admin@localhost/?sslmode=x").is_err());
        assert!(MyUrl::parse("postgresql://admin@localhost/").is_err());
        assert!(MyUrl::parse("mysql://localhost/").is_err());
    }

    #[test]
    fn grants_are_read_as_privilege_lists() {
        assert_eq!(
            privileges_of("GRANT CREATE, CREATE USER ON *.* TO `a`@`%`"),
            vec!["CREATE", "CREATE USER"]
        );
    }
}
