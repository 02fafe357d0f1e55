//! The connections one command holds to one server. A connection a step finished
//! with waits for the next step that wants the same database, and one is closed
//! before another is opened, so a command never holds more connections than it has
//! steps running at once. A server that does not answer is remembered as down: its
//! other tenants fail at once, not after a connect timeout each.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use postgres::{Client, NoTls};

use super::PgUrl;
use crate::error::{Error, Result};

/// Connections kept idle at most; more are closed when their step ends.
const MAX_IDLE: usize = 8;

pub(super) struct Pool {
    server: String,
    idle: Mutex<Vec<(String, Client)>>,
    /// Why the server counts as down for the rest of the command.
    down: OnceLock<String>,
}

impl Pool {
    pub fn new(server: &str) -> Self {
        Pool {
            server: server.to_string(),
            idle: Mutex::new(Vec::new()),
            down: OnceLock::new(),
        }
    }

    /// A connection as `url`'s login to `database`: an idle one if there is one.
    pub fn get(&self, url: &PgUrl, database: &str) -> Result<Pooled<'_>> {
        if let Some(cause) = self.down.get() {
            return Err(self.down_error(cause));
        }
        let reused = {
            let mut idle = self.idle();
            idle.retain(|(_, client)| !client.is_closed());
            match idle.iter().position(|(name, _)| name == database) {
                Some(at) => Some(idle.swap_remove(at).1),
                None => {
                    // Hold no more connections than steps running: close one first.
                    idle.pop();
                    None
                }
            }
        };
        let client = match reused {
            Some(client) => client,
            None => self.connect(url, database)?,
        };
        Ok(Pooled {
            client: Some(client),
            database: database.to_string(),
            pool: self,
            keep: true,
        })
    }

    /// Closes the idle connections to `database` (one about to be renamed or dropped).
    pub fn close_idle(&self, database: &str) {
        self.idle().retain(|(name, _)| name != database);
    }

    /// A connection of its own, never pooled (a session as a tenant role must not be
    /// handed to another step), that still heeds and keeps the memo of a server
    /// that does not answer.
    pub fn connect_apart(&self, url: &PgUrl, database: &str) -> Result<Client> {
        if let Some(cause) = self.down.get() {
            return Err(self.down_error(cause));
        }
        self.connect(url, database)
    }

    fn connect(&self, url: &PgUrl, database: &str) -> Result<Client> {
        url.config_for(database).connect(NoTls).map_err(|err| {
            if says_down(&err) {
                self.mark_down(&super::describe(&err))
            } else {
                super::unreachable(&self.server, &err)
            }
        })
    }

    /// Whether the server is down after a connection broke under a step: it is when a
    /// fresh connection cannot be had either. A backend that was ended on its own (a
    /// terminated session, a timeout, a crash of that one process) leaves the server
    /// up, and the step failed like any other.
    pub fn confirm_down(&self, url: &PgUrl, database: &str, cause: &str) -> Option<Error> {
        match url.config_for(database).connect(NoTls) {
            Ok(_) => None,
            Err(err) if says_down(&err) => Some(self.mark_down(cause)),
            Err(_) => None,
        }
    }

    /// Remembers the server as down for the rest of the command; the error to report.
    pub fn mark_down(&self, cause: &str) -> Error {
        let cause = self.down.get_or_init(|| cause.to_string());
        self.idle().clear();
        self.down_error(cause)
    }

    pub fn is_down(&self) -> bool {
        self.down.get().is_some()
    }

    fn down_error(&self, cause: &str) -> Error {
        Error::ServerDown {
            server: self.server.clone(),
            cause: cause.to_string(),
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<(String, Client)>> {
        // Only pushes and pops happen under the lock: a poisoned one is still whole.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a failed connection attempt says the server is down: no answer at all, or
/// one that says it is shutting down, starting up or cannot take connections now
/// (SQLSTATE classes 57P and 08), as against one that says no to this login or
/// database (a wrong password, a missing database).
fn says_down(err: &postgres::Error) -> bool {
    match err.code() {
        None => true,
        Some(code) => {
            let code = code.code();
            code.starts_with("57P") || code.starts_with("08")
        }
    }
}

/// A connection on loan from a [`Pool`]; it goes back when dropped, unless it broke or
/// [`Pooled::discard`] said its session state is not clean.
pub(super) struct Pooled<'a> {
    client: Option<Client>,
    database: String,
    pool: &'a Pool,
    keep: bool,
}

impl Pooled<'_> {
    /// Closes the connection instead of returning it (its session was changed and
    /// could not be reset).
    pub fn discard(mut self) {
        self.keep = false;
    }
}

impl Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("a pooled connection until dropped")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("a pooled connection until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        if !self.keep || client.is_closed() || self.pool.is_down() {
            return;
        }
        let mut idle = self.pool.idle();
        if idle.len() < MAX_IDLE {
            idle.push((std::mem::take(&mut self.database), client));
        }
    }
}
