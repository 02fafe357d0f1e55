//! The admin connections one command holds to one MySQL server. A connection a step
//! finished with waits for the next step; a server that does not answer is
//! remembered as down, so its other tenants fail at once, not after a connect
//! timeout each. Admin statements name every database they touch, so any idle
//! connection serves any tenant.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use mysql::Conn;

use super::{MyUrl, describe, says_down};
use crate::error::{Error, Result};

/// Connections kept idle at most; more are closed when their step ends.
const MAX_IDLE: usize = 8;

pub(super) struct Pool {
    server: String,
    idle: Mutex<Vec<Conn>>,
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

    pub fn get(&self, url: &MyUrl) -> Result<Pooled<'_>> {
        if let Some(cause) = self.down.get() {
            return Err(self.down_error(cause));
        }
        let reused = self.idle().pop();
        let conn = match reused {
            Some(conn) => conn,
            None => self.connect(url)?,
        };
        Ok(Pooled {
            conn: Some(conn),
            pool: self,
            keep: true,
        })
    }

    /// A connection as a tenant's user, never pooled, that still heeds and keeps
    /// the memo of a server that does not answer.
    pub fn connect_as(&self, url: &MyUrl, user: &str, password: &crate::secrets::Secret) -> Result<Conn> {
        if let Some(cause) = self.down.get() {
            return Err(self.down_error(cause));
        }
        url.connect_as(&self.server, user, password)
            .map_err(|err| self.remember(err))
    }

    fn connect(&self, url: &MyUrl) -> Result<Conn> {
        url.connect(&self.server).map_err(|err| self.remember(err))
    }

    fn remember(&self, err: Error) -> Error {
        match err {
            Error::ServerDown { cause, .. } => self.mark_down(&cause),
            other => other,
        }
    }

    /// After a statement failed: the server-down error when the failure says it did
    /// not answer and a fresh connection cannot be had either.
    pub fn confirm_down(&self, url: &MyUrl, err: &mysql::Error) -> Option<Error> {
        if !says_down(err) {
            return None;
        }
        match url.connect(&self.server) {
            Ok(_) => None,
            Err(Error::ServerDown { .. }) => Some(self.mark_down(&describe(err))),
            Err(_) => None,
        }
    }

    pub fn mark_down(&self, cause: &str) -> Error {
        let cause = self.down.get_or_init(|| cause.to_string());
        self.idle().clear();
        self.down_error(cause)
    }

    fn is_down(&self) -> bool {
        self.down.get().is_some()
    }

    fn down_error(&self, cause: &str) -> Error {
        Error::ServerDown {
            server: self.server.clone(),
            cause: cause.to_string(),
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Conn>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection on loan from a [`Pool`]; it goes back when dropped unless
/// [`Pooled::discard`] said its session is not clean.
pub(super) struct Pooled<'a> {
    conn: Option<Conn>,
    pool: &'a Pool,
    keep: bool,
}

impl Pooled<'_> {
    pub fn discard(mut self) {
        self.keep = false;
    }
}

impl Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("a pooled connection until dropped")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("a pooled connection until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.keep || self.pool.is_down() {
            return;
        }
        let mut idle = self.pool.idle();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}
