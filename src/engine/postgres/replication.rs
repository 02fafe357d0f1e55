//! The logical-replication objects an online move makes, all named
//! `tenantctl_move_<customer id>_<hex>`: a publication and (through the subscription) a
//! replication slot on the source server, a subscription on the target. A killed move
//! can leave them behind, and a slot left behind keeps the source's WAL for good, so
//! doctor finds them and `--fix` drops them.

use postgres::Client;

use super::sql::ident;
use super::tenant::PgEngine;
use crate::error::{Error, Result};

/// What names every such object: anything else on the server is not ours to drop.
const PREFIX: &str = "tenantctl_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Subscription,
    Publication,
    Slot,
}

/// One object named like ours, with the database it belongs to (`None` for a physical
/// slot, which belongs to none).
struct Leftover {
    kind: Kind,
    name: String,
    database: Option<String>,
}

impl Leftover {
    /// `<kind> <name> in database <database>`: the kind first, so a reader (doctor)
    /// can tell a slot, which holds WAL, from the rest.
    fn line(&self) -> String {
        let kind = match self.kind {
            Kind::Subscription => "subscription",
            Kind::Publication => "publication",
            Kind::Slot => "replication slot",
        };
        match &self.database {
            Some(database) => format!("{kind} {} in database {database}", self.name),
            None => format!("{kind} {} (physical)", self.name),
        }
    }
}

impl PgEngine {
    /// See [`crate::engine::Engine::replication_leftovers`]. Subscriptions go first:
    /// dropping one ends its worker's session, which may hold a slot on this server.
    /// Every leftover is tried even when one cannot be dropped; the first failure is
    /// the error.
    pub(super) fn find_replication_leftovers(&self, in_use: &[String], remove: bool) -> Result<Vec<String>> {
        let mut found = self.subscriptions()?;
        found.extend(self.publications()?);
        found.extend(self.slots()?);
        found.retain(|leftover| !in_use.contains(&leftover.name));
        if remove {
            let failed: Vec<Error> = found.iter().filter_map(|l| self.drop_leftover(l).err()).collect();
            if let Some(err) = failed.into_iter().next() {
                return Err(err);
            }
        }
        Ok(found.iter().map(Leftover::line).collect())
    }

    /// `pg_subscription` is one catalog for the whole server; a login that is not a
    /// superuser may read every column of it but the connection string, which is not
    /// read here.
    fn subscriptions(&self) -> Result<Vec<Leftover>> {
        let mut admin = self.admin(None)?;
        let rows = admin
            .query(
                "SELECT s.subname::text, d.datname::text FROM pg_subscription s
                 JOIN pg_database d ON d.oid = s.subdbid
                 WHERE starts_with(s.subname, $1) ORDER BY 1, 2",
                &[&PREFIX],
            )
            .map_err(|e| self.fail(&e))?;
        Ok(rows
            .iter()
            .map(|row| Leftover {
                kind: Kind::Subscription,
                name: row.get(0),
                database: Some(row.get(1)),
            })
            .collect())
    }

    /// Publications live in each database's own catalog, so each database is asked on
    /// a connection of its own; one the login may not connect to (or that went away
    /// meanwhile) is passed over, a server that stops answering is an error.
    fn publications(&self) -> Result<Vec<Leftover>> {
        let mut found = Vec::new();
        for database in self.connectable_databases()? {
            let mut admin = match self.admin(Some(&database)) {
                Ok(admin) => admin,
                Err(err) if err.is_server_down() => return Err(err),
                Err(_) => continue,
            };
            let rows = admin
                .query(
                    "SELECT pubname::text FROM pg_publication WHERE starts_with(pubname, $1) ORDER BY 1",
                    &[&PREFIX],
                )
                .map_err(|e| self.fail(&e))?;
            found.extend(rows.iter().map(|row| Leftover {
                kind: Kind::Publication,
                name: row.get(0),
                database: Some(database.clone()),
            }));
        }
        Ok(found)
    }

    /// Templates take no connections (the server's own and tenantctl's are closed to
    /// them), and a database whose CONNECT the login lacks would only refuse it.
    fn connectable_databases(&self) -> Result<Vec<String>> {
        let mut admin = self.admin(None)?;
        let rows = admin
            .query(
                "SELECT datname::text FROM pg_database
                 WHERE datallowconn AND NOT datistemplate AND has_database_privilege(oid, 'CONNECT')
                 ORDER BY 1",
                &[],
            )
            .map_err(|e| self.fail(&e))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn slots(&self) -> Result<Vec<Leftover>> {
        let mut admin = self.admin(None)?;
        let rows = admin
            .query(
                "SELECT slot_name::text, database::text FROM pg_replication_slots
                 WHERE starts_with(slot_name::text, $1) ORDER BY 1",
                &[&PREFIX],
            )
            .map_err(|e| self.fail(&e))?;
        Ok(rows
            .iter()
            .map(|row| Leftover {
                kind: Kind::Slot,
                name: row.get(0),
                database: row.get(1),
            })
            .collect())
    }

    fn drop_leftover(&self, leftover: &Leftover) -> Result<()> {
        // A slot is the whole server's to drop; the others only their database's.
        let database = leftover.database.as_deref();
        let mut admin = self.admin(if leftover.kind == Kind::Slot {
            None
        } else {
            database
        })?;
        let dropped = match leftover.kind {
            Kind::Subscription => drop_subscription(&mut admin, &leftover.name),
            Kind::Publication => {
                admin.batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", ident(&leftover.name)))
            }
            Kind::Slot => drop_slot(&mut admin, &leftover.name),
        };
        dropped.map_err(|e| {
            Error::unexpected(format!(
                "server {}: cannot drop {}: {}",
                self.name(),
                leftover.line(),
                super::describe(&e)
            ))
        })
    }
}

/// Drops a subscription without reaching its source, which may be gone: detached from
/// its slot first (that needs it disabled), so the drop leaves the slot alone; the
/// slot is a leftover of the source server's own. One transaction: with no slot, the
/// drop may run in one.
pub(super) fn drop_subscription(admin: &mut Client, name: &str) -> std::result::Result<(), postgres::Error> {
    let name = ident(name);
    admin.batch_execute(&format!(
        "ALTER SUBSCRIPTION {name} DISABLE;
         ALTER SUBSCRIPTION {name} SET (slot_name = NONE);
         DROP SUBSCRIPTION {name};"
    ))
}

/// A slot in use cannot be dropped, so the session holding it (the walsender of a
/// subscription still running somewhere) is ended first, waiting up to 5 s for it to
/// be gone and the slot free. Gone already is fine.
pub(super) fn drop_slot(admin: &mut Client, name: &str) -> std::result::Result<(), postgres::Error> {
    admin.execute(
        "SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots
         WHERE slot_name = $1 AND active_pid IS NOT NULL",
        &[&name],
    )?;
    admin.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
        &[&name],
    )?;
    Ok(())
}
