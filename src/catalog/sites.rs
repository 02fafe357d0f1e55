//! Sites, their deployments and their config snapshots.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use super::Filtered;
use super::model::{Deployment, NewSite, Site, Snapshot};
use super::states::{SiteStatus, SnapshotKind};
use crate::error::Result;
use crate::time;

const COLUMNS: &str = "s.id, s.customer_id, c.slug, s.name, s.domain, s.port, s.business_type, s.status, \
    s.config, s.created_at, s.updated_at, s.deployed_at, s.legacy_id";
const FROM: &str = "FROM sites s JOIN customers c ON c.id = s.customer_id";
/// Sites of a customer still being provisioned are nobody's to see yet.
const VISIBLE: &str = "c.status <> 'provisioning'";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Site> {
    let config: String = row.get(8)?;
    Ok(Site {
        id: row.get(0)?,
        customer_id: row.get(1)?,
        customer_slug: row.get(2)?,
        name: row.get(3)?,
        domain: row.get(4)?,
        port: row.get(5)?,
        business_type: row.get(6)?,
        status: row.get(7)?,
        config: serde_json::value::RawValue::from_string(config).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Text, Box::new(e))
        })?,
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
        deployed_at: row.get(11)?,
        legacy_id: row.get(12)?,
    })
}

pub fn insert(conn: &Connection, new: &NewSite) -> Result<Site> {
    let now = time::now();
    conn.prepare_cached(
        "INSERT INTO sites (customer_id, name, domain, port, business_type, status, config, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
    )?
    .execute(params![new.customer_id, new.name, new.domain, new.port, new.business_type, new.status, new.config.to_string(), now])?;
    Ok(any_by_id(conn, conn.last_insert_rowid())?.expect("a site just inserted"))
}

/// A site as an import writes it: the config already the text to store.
#[derive(Debug, Clone, Copy)]
pub struct ImportedSite<'a> {
    pub customer_id: i64,
    pub name: &'a str,
    pub domain: &'a str,
    pub port: Option<i64>,
    pub business_type: Option<&'a str>,
    pub status: SiteStatus,
    pub config: &'a str,
    pub legacy_id: Option<&'a str>,
}

/// Inserts an imported site with its legacy id in one statement and returns its id:
/// a bulk insert reads nothing back.
pub fn insert_imported(conn: &Connection, new: &ImportedSite<'_>) -> Result<i64> {
    let now = time::now();
    conn.prepare_cached(
        "INSERT INTO sites (customer_id, name, domain, port, business_type, status, config, legacy_id, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
    )?
    .execute(params![
        new.customer_id,
        new.name,
        new.domain,
        new.port,
        new.business_type,
        new.status,
        new.config,
        new.legacy_id,
        now
    ])?;
    Ok(conn.last_insert_rowid())
}

/// A site every command may see: its customer is not still being provisioned.
pub fn by_id(conn: &Connection, id: i64) -> Result<Option<Site>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} {FROM} WHERE s.id = ?1 AND {VISIBLE}"))?
        .query_row([id], from_row)
        .optional()?)
}

/// A site whatever its customer's state, for the writes that just made or changed it.
fn any_by_id(conn: &Connection, id: i64) -> Result<Option<Site>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} {FROM} WHERE s.id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

pub fn by_domain(conn: &Connection, domain: &str) -> Result<Option<Site>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} {FROM} WHERE s.domain = ?1 AND {VISIBLE}"
        ))?
        .query_row([domain], from_row)
        .optional()?)
}

/// The site a legacy config file names by its `siteId`.
pub fn by_legacy_id(conn: &Connection, legacy_id: &str) -> Result<Option<Site>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} {FROM} WHERE s.legacy_id = ?1"))?
        .query_row([legacy_id], from_row)
        .optional()?)
}

/// A site that holds a legacy file's domain, `siteId` or port, with which of them it
/// holds. The config stays the text stored: a re-import compares it as text first.
#[derive(Debug, Clone)]
pub struct Claimant {
    pub id: i64,
    pub customer_id: i64,
    pub customer_slug: String,
    pub name: String,
    pub domain: String,
    pub port: Option<i64>,
    pub business_type: Option<String>,
    pub status: SiteStatus,
    pub config: String,
    pub legacy_id: Option<String>,
    /// Its customer is not still being provisioned (see [`by_domain`]).
    pub visible: bool,
    pub holds_domain: bool,
    pub holds_legacy_id: bool,
    pub holds_port: bool,
}

/// Every site holding `domain`, `legacy_id` or `port`, in one query: an import asks
/// this of every file, and three lookups of whole sites each cost a parse of the config.
pub fn claimants(
    conn: &Connection,
    domain: &str,
    legacy_id: Option<&str>,
    port: Option<i64>,
) -> Result<Vec<Claimant>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT s.id, s.customer_id, c.slug, s.name, s.domain, s.port, s.business_type, s.status,
                s.config, s.legacy_id, {VISIBLE}, s.domain = ?1,
                coalesce(s.legacy_id = ?2, 0), coalesce(s.port = ?3, 0)
         {FROM} WHERE s.domain = ?1 OR s.legacy_id = ?2 OR s.port = ?3"
    ))?;
    let rows = stmt.query_map(params![domain, legacy_id, port], |row| {
        Ok(Claimant {
            id: row.get(0)?,
            customer_id: row.get(1)?,
            customer_slug: row.get(2)?,
            name: row.get(3)?,
            domain: row.get(4)?,
            port: row.get(5)?,
            business_type: row.get(6)?,
            status: row.get(7)?,
            config: row.get(8)?,
            legacy_id: row.get(9)?,
            visible: row.get(10)?,
            holds_domain: row.get(11)?,
            holds_legacy_id: row.get(12)?,
            holds_port: row.get(13)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn set_legacy_id(conn: &Connection, id: i64, legacy_id: Option<&str>) -> Result<()> {
    conn.prepare_cached("UPDATE sites SET legacy_id = ?2 WHERE id = ?1")?
        .execute(params![id, legacy_id])?;
    Ok(())
}

/// The site holding `domain` or `port`, other than `except`.
pub fn domain_owner(conn: &Connection, domain: &str, except: Option<i64>) -> Result<Option<Site>> {
    Ok(by_domain(conn, domain)?.filter(|s| Some(s.id) != except))
}

pub fn port_owner(conn: &Connection, port: i64, except: Option<i64>) -> Result<Option<Site>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} {FROM} WHERE s.port = ?1"))?
        .query_row([port], from_row)
        .optional()?
        .filter(|s| Some(s.id) != except))
}

#[derive(Debug, Clone, Default)]
pub struct SiteFilter {
    pub customer_id: Option<i64>,
    pub status: Option<SiteStatus>,
    pub domain_contains: Option<String>,
    pub limit: Option<u64>,
}

/// Calls `each` for every matching site, in id order, one row at a time.
pub fn for_each(
    conn: &Connection,
    filter: &SiteFilter,
    mut each: impl FnMut(Site) -> Result<()>,
) -> Result<()> {
    let mut query = Filtered::new(format!("SELECT {COLUMNS} {FROM} WHERE {VISIBLE}"));
    if let Some(id) = filter.customer_id {
        query.and("s.customer_id = ?", id);
    }
    if let Some(status) = &filter.status {
        query.and("s.status = ?", *status);
    }
    if let Some(text) = &filter.domain_contains {
        query.and("instr(s.domain, lower(?)) > 0", text.clone());
    }
    query.finish("ORDER BY s.id", filter.limit);
    let mut stmt = conn.prepare(&query.sql)?;
    let mut rows = stmt.query(query.params())?;
    while let Some(row) = rows.next()? {
        each(from_row(row)?)?;
    }
    Ok(())
}

/// The fields `site update` writes; the caller passes the complete new state.
pub fn update(conn: &Connection, site: &Site, changed: &NewSite) -> Result<Site> {
    conn.execute(
        "UPDATE sites SET name = ?2, domain = ?3, port = ?4, business_type = ?5, status = ?6, config = ?7, updated_at = ?8
         WHERE id = ?1",
        params![
            site.id,
            changed.name,
            changed.domain,
            changed.port,
            changed.business_type,
            changed.status,
            changed.config.to_string(),
            time::now()
        ],
    )?;
    Ok(any_by_id(conn, site.id)?.expect("an existing site"))
}

/// Marks a site deployed now, with the config and port it was deployed with.
pub fn mark_deployed(conn: &Connection, id: i64, config: &Value, port: Option<i64>) -> Result<Site> {
    let now = time::now();
    conn.execute(
        "UPDATE sites SET status = 'deployed', config = ?2, port = ?3, deployed_at = ?4, updated_at = ?4 WHERE id = ?1",
        params![id, config.to_string(), port, now],
    )?;
    Ok(any_by_id(conn, id)?.expect("an existing site"))
}

pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM sites WHERE id = ?1", [id])?;
    Ok(())
}

pub fn count_for_customer(conn: &Connection, customer_id: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM sites WHERE customer_id = ?1")?
        .query_row([customer_id], |r| r.get(0))?)
}

fn deployment_from_row(row: &Row<'_>) -> rusqlite::Result<Deployment> {
    let config: String = row.get(8)?;
    Ok(Deployment {
        id: row.get(0)?,
        site_id: row.get(1)?,
        number: row.get(2)?,
        port: row.get(3)?,
        status: row.get(4)?,
        log: row.get(5)?,
        actor: row.get(6)?,
        created_at: row.get(7)?,
        config: serde_json::from_str(&config).unwrap_or(Value::Null),
    })
}

const DEPLOYMENT_COLUMNS: &str = "id, site_id, number, port, status, log, actor, created_at, config";

pub fn add_deployment(
    conn: &Connection,
    site_id: i64,
    config: &Value,
    port: Option<i64>,
    log: &str,
    actor: &str,
) -> Result<Deployment> {
    conn.execute(
        "INSERT INTO deployments (site_id, number, config, port, status, log, actor, created_at)
         VALUES (?1, (SELECT coalesce(max(number), 0) + 1 FROM deployments WHERE site_id = ?1), ?2, ?3, 'deployed', ?4, ?5, ?6)",
        params![site_id, config.to_string(), port, log, actor, time::now()],
    )?;
    let id = conn.last_insert_rowid();
    Ok(conn.query_row(
        &format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?1"),
        [id],
        deployment_from_row,
    )?)
}

/// A site's deployments, oldest first.
pub fn deployments(conn: &Connection, site_id: i64) -> Result<Vec<Deployment>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE site_id = ?1 ORDER BY number"
    ))?;
    let rows = stmt.query_map([site_id], deployment_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub fn deployment_count(conn: &Connection, site_id: i64) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM deployments WHERE site_id = ?1",
        [site_id],
        |r| r.get(0),
    )?)
}

fn snapshot_from_row(row: &Row<'_>) -> rusqlite::Result<Snapshot> {
    let config: String = row.get(6)?;
    Ok(Snapshot {
        id: row.get(0)?,
        site_id: row.get(1)?,
        kind: row.get(2)?,
        name: row.get(3)?,
        actor: row.get(4)?,
        created_at: row.get(5)?,
        config: serde_json::from_str(&config).unwrap_or(Value::Null),
    })
}

const SNAPSHOT_COLUMNS: &str = "id, site_id, kind, name, actor, created_at, config";

pub fn add_snapshot(
    conn: &Connection,
    site_id: i64,
    kind: SnapshotKind,
    name: Option<&str>,
    config: &Value,
    actor: &str,
) -> Result<Snapshot> {
    conn.execute(
        "INSERT INTO snapshots (site_id, kind, name, config, actor, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![site_id, kind, name, config.to_string(), actor, time::now()],
    )?;
    snapshot(conn, conn.last_insert_rowid()).map(|s| s.expect("a snapshot just inserted"))
}

pub fn snapshot(conn: &Connection, id: i64) -> Result<Option<Snapshot>> {
    Ok(conn
        .query_row(
            &format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE id = ?1"),
            [id],
            snapshot_from_row,
        )
        .optional()?)
}

/// A site's snapshots, oldest first.
pub fn snapshots(conn: &Connection, site_id: i64) -> Result<Vec<Snapshot>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE site_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([site_id], snapshot_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub fn snapshot_count(conn: &Connection, site_id: i64) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM snapshots WHERE site_id = ?1",
        [site_id],
        |r| r.get(0),
    )?)
}
