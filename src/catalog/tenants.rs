//! The per-tenant migration ledger and the `db sql` query history.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, params};
use serde::Serialize;

use super::states::{CustomerStatus, MigrationAction, QueryStatus, TenantMigrationStatus};
use crate::engine::{EngineKind, Placement};
use crate::error::Result;
use crate::migrations::MigrationId;
use crate::time;

/// A customer's tenant database as the catalog knows it.
#[derive(Debug, Clone, Serialize)]
pub struct TenantRow {
    pub customer_id: i64,
    pub slug: String,
    pub status: CustomerStatus,
    #[serde(rename = "db_path")]
    pub placement: Placement,
    pub schema_version: i64,
    pub migration_status: TenantMigrationStatus,
    pub migration_error: Option<String>,
    pub migrated_at: Option<String>,
    /// Which way its last run went.
    pub migration_action: MigrationAction,
}

/// Tenants of customers that are not deleted (or only `ids`), in id order.
pub fn live_tenants(conn: &Connection, ids: Option<&[i64]>) -> Result<Vec<TenantRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, slug, status, location, schema_version, migration_status, migration_error, migrated_at,
                engine, server, migration_action
         FROM customers WHERE status NOT IN ('deleted', 'provisioning') ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(TenantRow {
            customer_id: r.get(0)?,
            slug: r.get(1)?,
            status: r.get(2)?,
            placement: Placement {
                engine: r.get(8)?,
                server: r.get(9)?,
                location: r.get(3)?,
            },
            schema_version: r.get(4)?,
            migration_status: r.get(5)?,
            migration_error: r.get(6)?,
            migrated_at: r.get(7)?,
            migration_action: r.get(10)?,
        })
    })?;
    let all = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(match ids {
        Some(ids) => {
            let wanted: HashSet<i64> = ids.iter().copied().collect();
            all.into_iter()
                .filter(|t| wanted.contains(&t.customer_id))
                .collect()
        }
        None => all,
    })
}

/// Replaces a tenant's ledger with what its database has applied. A migration that
/// stays applied as it was keeps the down-script checksum recorded for it.
pub fn record_applied(conn: &Connection, customer_id: i64, applied: &[MigrationId]) -> Result<()> {
    let kept: HashMap<(i64, String), String> = conn
        .prepare_cached(
            "SELECT version, checksum, down_checksum FROM tenant_migrations
             WHERE customer_id = ?1 AND down_checksum IS NOT NULL",
        )?
        .query_map([customer_id], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    conn.prepare_cached("DELETE FROM tenant_migrations WHERE customer_id = ?1")?
        .execute([customer_id])?;
    let now = time::now();
    let mut insert = conn.prepare_cached(
        "INSERT INTO tenant_migrations (customer_id, version, name, checksum, applied_at, down_checksum)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for migration in applied {
        let down = kept.get(&(migration.version, migration.checksum.clone()));
        insert.execute(params![
            customer_id,
            migration.version,
            migration.name,
            migration.checksum,
            now,
            down
        ])?;
    }
    Ok(())
}

/// Records the down scripts of `engine`'s tenants where none is recorded yet for an
/// applied migration: `downs` as (version, checksum), as the files are now.
pub fn record_down_scripts(conn: &Connection, engine: EngineKind, downs: &[(i64, String)]) -> Result<()> {
    let mut update = conn.prepare_cached(
        "UPDATE tenant_migrations SET down_checksum = ?3
         WHERE version = ?1 AND down_checksum IS NULL
           AND customer_id IN (SELECT id FROM customers WHERE engine = ?2)",
    )?;
    for (version, checksum) in downs {
        update.execute(params![version, engine, checksum])?;
    }
    Ok(())
}

/// Accepts a tenant's down script of `version` as it is now (`doctor --fix`).
pub fn accept_down_script(conn: &Connection, customer_id: i64, version: i64, checksum: &str) -> Result<()> {
    conn.execute(
        "UPDATE tenant_migrations SET down_checksum = ?3 WHERE customer_id = ?1 AND version = ?2",
        params![customer_id, version, checksum],
    )?;
    Ok(())
}

/// The recorded down-script checksums of each tenant, by customer id: (version,
/// checksum) for every applied migration that has one.
pub fn down_checksums(conn: &Connection) -> Result<HashMap<i64, Vec<(i64, String)>>> {
    let mut stmt = conn.prepare(
        "SELECT customer_id, version, down_checksum FROM tenant_migrations
         WHERE down_checksum IS NOT NULL ORDER BY customer_id, version",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, (r.get(1)?, r.get(2)?))))?;
    let mut found: HashMap<i64, Vec<(i64, String)>> = HashMap::new();
    for row in rows {
        let (customer_id, down) = row?;
        found.entry(customer_id).or_default().push(down);
    }
    Ok(found)
}

/// Records the result of migrating a tenant: its version now, and whether it failed.
pub fn record_run(
    conn: &Connection,
    customer_id: i64,
    schema_version: i64,
    status: TenantMigrationStatus,
    error: Option<&str>,
) -> Result<()> {
    record_run_of(
        conn,
        customer_id,
        schema_version,
        status,
        error,
        MigrationAction::Migrate,
    )
}

/// [`record_run`] for a run that went `action`'s way.
pub fn record_run_of(
    conn: &Connection,
    customer_id: i64,
    schema_version: i64,
    status: TenantMigrationStatus,
    error: Option<&str>,
    action: MigrationAction,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE customers SET schema_version = ?2, migration_status = ?3, migration_error = ?4, migrated_at = ?5,
                migration_action = ?6
         WHERE id = ?1",
    )?
    .execute(params![customer_id, schema_version, status, error, time::now(), action])?;
    Ok(())
}

/// How many ledger rows each tenant has.
pub fn ledger_counts(conn: &Connection) -> Result<HashMap<i64, i64>> {
    let mut stmt =
        conn.prepare("SELECT customer_id, count(*) FROM tenant_migrations GROUP BY customer_id")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<HashMap<_, _>>>()?)
}

/// Each tenant's ledger, by customer id, in version order; a tenant with no rows has
/// no entry.
pub fn ledgers(conn: &Connection) -> Result<HashMap<i64, Vec<MigrationId>>> {
    let mut stmt = conn.prepare(
        "SELECT customer_id, version, name, checksum FROM tenant_migrations ORDER BY customer_id, version",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            MigrationId {
                version: r.get(1)?,
                name: r.get(2)?,
                checksum: r.get(3)?,
            },
        ))
    })?;
    let mut found: HashMap<i64, Vec<MigrationId>> = HashMap::new();
    for row in rows {
        let (customer_id, migration) = row?;
        found.entry(customer_id).or_default().push(migration);
    }
    Ok(found)
}

/// Tenants whose ledger holds an applied migration that no longer matches the files
/// (changed checksum, or no file for that version).
pub fn drifted_tenants(conn: &Connection, files: &[MigrationId]) -> Result<HashSet<i64>> {
    let current: HashMap<i64, &str> = files.iter().map(|f| (f.version, f.checksum.as_str())).collect();
    let mut stmt = conn.prepare("SELECT DISTINCT version, checksum FROM tenant_migrations")?;
    let pairs = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut drifted = HashSet::new();
    let mut owners =
        conn.prepare("SELECT customer_id FROM tenant_migrations WHERE version = ?1 AND checksum = ?2")?;
    for (version, checksum) in pairs {
        if current.get(&version) != Some(&checksum.as_str()) {
            let ids = owners.query_map(params![version, checksum], |r| r.get::<_, i64>(0))?;
            for id in ids {
                drifted.insert(id?);
            }
        }
    }
    Ok(drifted)
}

/// One `db sql` run, for the query history.
#[derive(Debug, Clone)]
pub struct QueryRecord<'a> {
    pub actor: &'a str,
    pub customer_id: i64,
    pub customer_slug: &'a str,
    pub sql: &'a str,
    pub write: bool,
    pub duration_ms: f64,
    pub row_count: u64,
    pub error: Option<String>,
}

/// Records a finished run.
pub fn record_query(conn: &Connection, record: &QueryRecord<'_>) -> Result<i64> {
    insert_query(conn, record, QueryStatus::of_finished(record.error.as_deref()))
}

/// Records a run before it starts, so even one that is killed leaves a trace; finish
/// it with [`finish_query`].
pub fn start_query(conn: &Connection, record: &QueryRecord<'_>) -> Result<i64> {
    insert_query(conn, record, QueryStatus::Running)
}

fn insert_query(conn: &Connection, record: &QueryRecord<'_>, status: QueryStatus) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO query_history (at, actor, customer_id, customer_slug, sql, write, duration_ms, row_count, status, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        time::now(),
        record.actor,
        record.customer_id,
        record.customer_slug,
        record.sql,
        record.write,
        record.duration_ms,
        i64::try_from(record.row_count).unwrap_or(i64::MAX),
        status,
        record.error
    ])?;
    Ok(conn.last_insert_rowid())
}

pub fn finish_query(
    conn: &Connection,
    id: i64,
    duration_ms: f64,
    row_count: u64,
    error: Option<&str>,
) -> Result<()> {
    conn.execute(
        "UPDATE query_history SET duration_ms = ?2, row_count = ?3, status = ?4, error = ?5 WHERE id = ?1",
        params![
            id,
            duration_ms,
            i64::try_from(row_count).unwrap_or(i64::MAX),
            QueryStatus::of_finished(error),
            error
        ],
    )?;
    Ok(())
}

/// One run in the query history, as `db history` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub customer: String,
    pub customer_id: Option<i64>,
    pub sql: String,
    pub write: bool,
    pub duration_ms: f64,
    pub row_count: i64,
    pub status: QueryStatus,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub customer_id: Option<i64>,
    pub since: Option<String>,
    pub failed: bool,
    pub limit: Option<u64>,
}

/// The query history, newest first.
pub fn history(conn: &Connection, filter: &HistoryFilter) -> Result<Vec<HistoryEntry>> {
    let mut query = super::Filtered::new(
        "SELECT id, at, actor, customer_slug, customer_id, sql, write, duration_ms, row_count, status, error
         FROM query_history WHERE 1 = 1",
    );
    if let Some(id) = filter.customer_id {
        query.and("customer_id = ?", id);
    }
    if let Some(since) = &filter.since {
        query.and("at >= ?", since.clone());
    }
    if filter.failed {
        query.and("status = ?", QueryStatus::Error);
    }
    query.finish("ORDER BY id DESC", filter.limit);
    let mut stmt = conn.prepare(&query.sql)?;
    let rows = stmt.query_map(query.params(), |r| {
        Ok(HistoryEntry {
            id: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            customer: r.get(3)?,
            customer_id: r.get(4)?,
            sql: r.get(5)?,
            write: r.get(6)?,
            duration_ms: r.get(7)?,
            row_count: r.get(8)?,
            status: r.get(9)?,
            error: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Every migration some tenant has applied (deleted customers' included, since they
/// can come back), once each, by version.
pub fn applied_by_any_tenant(conn: &Connection) -> Result<Vec<MigrationId>> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT version, name, checksum FROM tenant_migrations ORDER BY version, checksum",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(MigrationId {
            version: r.get(0)?,
            name: r.get(1)?,
            checksum: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// A tenant database as it was when it last passed its integrity check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanCheck {
    /// The engine's change stamp of the database then.
    pub stamp: String,
    /// The migrations it had applied then.
    pub applied: Vec<MigrationId>,
}

/// Each tenant's last clean integrity check, by customer id. A row that cannot be read
/// is left out: that tenant is simply checked again.
pub fn clean_checks(conn: &Connection) -> Result<HashMap<i64, CleanCheck>> {
    let mut stmt = conn.prepare("SELECT customer_id, stamp, applied FROM tenant_check_stamps")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut found = HashMap::new();
    for row in rows {
        let (customer_id, stamp, applied) = row?;
        if let Ok(applied) = serde_json::from_str(&applied) {
            found.insert(customer_id, CleanCheck { stamp, applied });
        }
    }
    Ok(found)
}

/// Records that the tenant passed its integrity check as `clean` says. A customer
/// purged meanwhile gets no row.
pub fn record_clean_check(conn: &Connection, customer_id: i64, clean: &CleanCheck) -> Result<()> {
    let applied = serde_json::to_string(&clean.applied)?;
    conn.prepare_cached(
        "INSERT INTO tenant_check_stamps (customer_id, stamp, applied, checked_at)
         SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM customers WHERE id = ?1)
         ON CONFLICT (customer_id) DO UPDATE
             SET stamp = excluded.stamp, applied = excluded.applied, checked_at = excluded.checked_at",
    )?
    .execute(params![customer_id, clean.stamp, applied, time::now()])?;
    Ok(())
}

/// Forgets the tenant's last clean check, so the next doctor checks it whatever its stamp.
pub fn forget_check_stamp(conn: &Connection, customer_id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM tenant_check_stamps WHERE customer_id = ?1")?
        .execute([customer_id])?;
    Ok(())
}
