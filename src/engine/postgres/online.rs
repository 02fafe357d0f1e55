//! Logical replication of one tenant between two servers, for `customer move
//! --online`. The source publishes the tenant's tables and a small mark table, the
//! target subscribes (its tables built from the migrations beforehand, so the initial
//! copy fills them), and once the source is frozen a row written to the mark table
//! tells when the target has applied every earlier change: apply keeps commit order.

use std::time::{Duration, Instant};

use super::replication::{drop_slot, drop_subscription};
use super::sql::ident;
use super::tenant::PgTenant;
use crate::engine::transfer::TableShape;
use crate::engine::{Feed, Replication};
use crate::error::{Error, Result};
use crate::secrets::Secret;

/// How long the initial copy may take before the move gives up.
const SYNC_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// How long a frozen source's last changes may take to arrive.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(20);

impl PgTenant {
    fn refuse_online(&self, why: String) -> Error {
        Error::refused(format!(
            "{} cannot move online: {why}",
            self.describe_for_online()
        ))
        .with_hint("fix it on the server, or move offline (leave out --online)")
    }

    fn describe_for_online(&self) -> String {
        format!("{} on server {}", self.name(), self.server.name())
    }

    fn admin_query_one(&self, sql: &str) -> Result<postgres::Row> {
        let mut admin = self.server.admin(None)?;
        admin.query_one(sql, &[]).map_err(|e| self.server.fail(&e))
    }

    /// The mark table, in the tenant's own schema on both sides.
    fn mark_table(&self, name: &str) -> String {
        self.qualified(name)
    }

    /// libpq's connection string for the source, as the target server will use it.
    fn conninfo(&self) -> Result<Secret> {
        let url = self.server.admin_url()?;
        let (host, port) = url.host_and_port();
        let mut parts = vec![
            format!("host={}", quote_conninfo(&host)),
            format!("port={port}"),
            format!("dbname={}", quote_conninfo(&self.database()?)),
            format!("user={}", quote_conninfo(&url.user())),
        ];
        if let Some(password) = url.password() {
            parts.push(format!("password={}", quote_conninfo(password.expose())));
        }
        Ok(Secret::new(parts.join(" ")))
    }
}

fn quote_conninfo(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl Replication for PgTenant {
    fn table_schema(&self) -> String {
        self.tables_schema()
    }

    fn check_publishable(&self, tables: &[TableShape]) -> Result<()> {
        let row = self.admin_query_one(
            "SELECT current_setting('wal_level'),
                    (SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user),
                    current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots)::int,
                    current_setting('max_wal_senders')::int
                      - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')::int",
        )?;
        let wal_level: String = row.get(0);
        if wal_level != "logical" {
            return Err(self.refuse_online(format!(
                "server {} runs with wal_level={wal_level}; logical replication needs wal_level=logical (a restart)",
                self.server.name()
            )));
        }
        if !row.get::<_, bool>(1) {
            return Err(self.refuse_online(format!(
                "the login of server {} has no REPLICATION right (ALTER ROLE … REPLICATION)",
                self.server.name()
            )));
        }
        // The subscription's slot, and one more for copying a table at a time.
        if row.get::<_, i32>(2) < 2 {
            return Err(self.refuse_online(format!(
                "server {} has no free replication slot (max_replication_slots)",
                self.server.name()
            )));
        }
        if row.get::<_, i32>(3) < 2 {
            return Err(self.refuse_online(format!(
                "server {} has no free WAL sender (max_wal_senders)",
                self.server.name()
            )));
        }
        self.refuse_unkeyed(tables)
    }

    fn check_subscribable(&self) -> Result<()> {
        let row = self.admin_query_one(
            "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                    OR coalesce(pg_has_role(current_user, 'pg_create_subscription', 'MEMBER'), false),
                    current_setting('max_logical_replication_workers')::int
                      - (SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'logical replication%')::int",
        );
        // `pg_create_subscription` exists from PostgreSQL 16 on; before, only a
        // superuser may subscribe.
        let row = match row {
            Ok(row) => row,
            Err(_) => self.admin_query_one(
                "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                        current_setting('max_logical_replication_workers')::int
                          - (SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'logical replication%')::int",
            )?,
        };
        if !row.get::<_, bool>(0) {
            return Err(self.refuse_online(format!(
                "the login of server {} may not create subscriptions (a superuser, or pg_create_subscription)",
                self.server.name()
            )));
        }
        if row.get::<_, i32>(1) < 2 {
            return Err(self.refuse_online(format!(
                "server {} has no free logical replication worker (max_logical_replication_workers)",
                self.server.name()
            )));
        }
        Ok(())
    }

    fn publish(&self, name: &str, tables: &[TableShape]) -> Result<Feed> {
        let mark = self.mark_table(name);
        let mut listed: Vec<String> = tables.iter().map(|t| self.qualified(&t.name)).collect();
        listed.push(mark.clone());
        let mut admin = self.server.admin(Some(&self.database()?))?;
        self.server.run(
            &mut admin,
            &format!(
                "CREATE TABLE {mark} (mark text PRIMARY KEY);
                 CREATE PUBLICATION {} FOR TABLE {};",
                ident(name),
                listed.join(", ")
            ),
        )?;
        Ok(Feed {
            conninfo: self.conninfo()?,
            publication: name.to_string(),
        })
    }

    fn subscribe(&self, name: &str, feed: &Feed) -> Result<()> {
        let mut admin = self.server.admin(Some(&self.database()?))?;
        self.server.run(
            &mut admin,
            &format!("CREATE TABLE {} (mark text PRIMARY KEY)", self.mark_table(name)),
        )?;
        // CREATE SUBSCRIPTION takes no parameters; the connection string is quoted
        // here and never leaves this process but to the server.
        let statement = format!(
            "CREATE SUBSCRIPTION {} CONNECTION '{}' PUBLICATION {} WITH (slot_name = '{name}', copy_data = true)",
            ident(name),
            feed.conninfo.expose().replace('\'', "''"),
            ident(&feed.publication)
        );
        admin.batch_execute(&statement).map_err(|e| {
            Error::unexpected(format!(
                "server {}: cannot subscribe to the source: {}",
                self.server.name(),
                super::describe(&e)
            ))
        })
    }

    fn wait_synced(&self, name: &str) -> Result<()> {
        let mut admin = self.server.admin(Some(&self.database()?))?;
        wait_until(SYNC_TIMEOUT, "the initial copy of every table", || {
            let row = admin
                .query_one(
                    "SELECT count(*) FILTER (WHERE r.srsubstate NOT IN ('r', 's')), count(*)
                     FROM pg_subscription s LEFT JOIN pg_subscription_rel r ON r.srsubid = s.oid
                     WHERE s.subname = $1",
                    &[&name],
                )
                .map_err(|e| self.server.fail(&e))?;
            Ok(row.get::<_, i64>(0) == 0 && row.get::<_, i64>(1) > 0)
        })
    }

    fn mark(&self, name: &str) -> Result<String> {
        let mark = format!("{:016x}", rand::random::<u64>());
        let mut admin = self.server.admin(Some(&self.database()?))?;
        admin
            .execute(
                &format!("INSERT INTO {} VALUES ($1)", self.mark_table(name)),
                &[&mark],
            )
            .map_err(|e| self.server.fail(&e))?;
        Ok(mark)
    }

    fn wait_for_mark(&self, name: &str, mark: &str) -> Result<()> {
        let mut admin = self.server.admin(Some(&self.database()?))?;
        let query = format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE mark = $1)",
            self.mark_table(name)
        );
        wait_until(CATCH_UP_TIMEOUT, "the source's last changes", || {
            admin
                .query_one(&query, &[&mark])
                .map(|row| row.get(0))
                .map_err(|e| self.server.fail(&e))
        })
    }

    fn sequence_values(&self) -> Result<Vec<(String, i64)>> {
        let schema = self.tables_schema();
        let mut admin = self.server.admin(Some(&self.database()?))?;
        let rows = admin
            .query(
                "SELECT sequencename::text, last_value FROM pg_sequences
                 WHERE schemaname = $1 AND last_value IS NOT NULL",
                &[&schema],
            )
            .map_err(|e| self.server.fail(&e))?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    fn set_sequence_values(&self, values: &[(String, i64)]) -> Result<()> {
        let mut admin = self.server.admin(Some(&self.database()?))?;
        for (sequence, value) in values {
            admin
                .execute(
                    "SELECT setval($1::text::regclass, $2, true)",
                    &[&self.qualified(sequence), value],
                )
                .map_err(|e| self.server.fail(&e))?;
        }
        Ok(())
    }

    fn unsubscribe(&self, name: &str) -> Result<()> {
        let mut admin = self.server.admin(Some(&self.database()?))?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_subscription WHERE subname = $1", &[&name])
            .map_err(|e| self.server.fail(&e))?
            .is_some();
        if exists {
            // A plain drop also drops the slot on the source when it answers; else
            // the slot is the source's to drop (`unpublish`, or doctor).
            if admin
                .batch_execute(&format!("DROP SUBSCRIPTION {}", ident(name)))
                .is_err()
            {
                drop_subscription(&mut admin, name).map_err(|e| self.server.fail(&e))?;
            }
        }
        self.server.run(
            &mut admin,
            &format!("DROP TABLE IF EXISTS {}", self.mark_table(name)),
        )
    }

    fn unpublish(&self, name: &str) -> Result<()> {
        let mut admin = self.server.admin(Some(&self.database()?))?;
        self.server.run(
            &mut admin,
            &format!(
                "DROP PUBLICATION IF EXISTS {}; DROP TABLE IF EXISTS {};",
                ident(name),
                self.mark_table(name)
            ),
        )?;
        drop_slot(&mut admin, name).map_err(|e| self.server.fail(&e))
    }
}

impl PgTenant {
    /// Replication finds a changed row by its key: a table without a primary key or
    /// replica identity would replicate inserts only.
    fn refuse_unkeyed(&self, tables: &[TableShape]) -> Result<()> {
        let schema = self.tables_schema();
        let mut admin = self.server.admin(Some(&self.database()?))?;
        let rows = admin
            .query(
                "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
                   AND (c.relreplident = 'n'
                        OR (c.relreplident = 'd' AND NOT EXISTS
                              (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
                 ORDER BY 1",
                &[&schema],
            )
            .map_err(|e| self.server.fail(&e))?;
        let unkeyed: Vec<String> = rows
            .iter()
            .map(|row| row.get::<_, String>(0))
            .filter(|name| tables.iter().any(|t| &t.name == name))
            .collect();
        match unkeyed.first() {
            Some(table) => {
                Err(self.refuse_online(format!("table {table} has no primary key or replica identity")))
            }
            None => Ok(()),
        }
    }
}

/// Polls `done` until it says yes, or refuses after `timeout` naming what it waited for.
fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::unexpected(format!(
                "waited {} s for {what} to reach the target; the move is undone",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(POLL);
    }
}
