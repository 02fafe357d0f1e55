//! Customer rows and what hangs off them.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};

use super::Filtered;
use super::model::{Customer, Limits, NewCustomer, SiteSummary};
use super::states::CustomerStatus;
use crate::engine::Placement;
use crate::error::Result;
use crate::time;

const COLUMNS: &str = "id, slug, email, name, company_name, plan, status, status_reason, \
    max_sites, max_storage_mb, max_bandwidth_gb, max_api_calls, metadata, location, \
    schema_version, created_at, updated_at, suspended_at, deleted_at, engine, server";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Customer> {
    let metadata: String = row.get(12)?;
    Ok(Customer {
        id: row.get(0)?,
        slug: row.get(1)?,
        email: row.get(2)?,
        name: row.get(3)?,
        company_name: row.get(4)?,
        plan: row.get(5)?,
        status: row.get(6)?,
        status_reason: row.get(7)?,
        max_sites: row.get(8)?,
        max_storage_mb: row.get(9)?,
        max_bandwidth_gb: row.get(10)?,
        max_api_calls: row.get(11)?,
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        placement: Placement {
            engine: row.get(19)?,
            server: row.get(20)?,
            location: row.get(13)?,
        },
        schema_version: row.get(14)?,
        created_at: row.get(15)?,
        updated_at: row.get(16)?,
        suspended_at: row.get(17)?,
        deleted_at: row.get(18)?,
    })
}

/// Inserts a customer in the `provisioning` state: invisible to every lookup and list
/// until [`activate`] flips it, once its database is in place.
pub fn insert(conn: &Connection, new: &NewCustomer) -> Result<Customer> {
    let now = time::now();
    conn.prepare_cached(
        "INSERT INTO customers (slug, email, name, company_name, plan, metadata, engine, server, location,
                                schema_version, created_at, updated_at, status, id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, 'provisioning', ?12)",
    )?
    .execute(params![
        new.slug,
        new.email,
        new.name,
        new.company_name,
        new.plan,
        Value::Object(new.metadata.clone()).to_string(),
        new.placement.engine,
        new.placement.server,
        new.placement.location,
        new.schema_version,
        now,
        new.id
    ])?;
    let id = conn.last_insert_rowid();
    Ok(any_by_id(conn, id)?.expect("a customer row just inserted"))
}

/// A provisioned customer becomes visible, `active`.
pub fn activate(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("UPDATE customers SET status = 'active' WHERE id = ?1 AND status = 'provisioning'")?
        .execute([id])?;
    Ok(())
}

/// Removes a customer that never got past `provisioning`, and what hangs off it.
pub fn remove_provisioning(conn: &Connection, id: i64) -> Result<()> {
    conn.execute(
        "DELETE FROM customers WHERE id = ?1 AND status = 'provisioning'",
        [id],
    )?;
    Ok(())
}

/// The highest customer id ever handed out (purged ones included).
pub fn id_high_water(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'customers'",
        [],
        |r| r.get(0),
    )?)
}

/// Makes sure no customer id up to `floor` is handed out again.
pub fn raise_id_floor(conn: &Connection, floor: i64) -> Result<()> {
    if id_high_water(conn)? >= floor {
        return Ok(());
    }
    conn.execute("DELETE FROM sqlite_sequence WHERE name = 'customers'", [])?;
    conn.execute(
        "INSERT INTO sqlite_sequence (name, seq) VALUES ('customers', ?1)",
        [floor],
    )?;
    Ok(())
}

/// Who a customer was, as any catalog version since the first records it: what
/// `doctor --fix --adopt` takes from an older catalog (a backup's) to give a tenant
/// database its customer again.
#[derive(Debug, Clone, PartialEq)]
pub struct Remembered {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub company_name: Option<String>,
    pub plan: String,
    pub metadata: Map<String, Value>,
}

pub fn remembered(conn: &Connection, slug: &str) -> Result<Option<Remembered>> {
    Ok(conn
        .query_row(
            "SELECT email, name, company_name, plan, metadata, id FROM customers WHERE slug = ?1",
            [slug],
            |r| {
                let metadata: String = r.get(4)?;
                Ok(Remembered {
                    id: r.get(5)?,
                    email: r.get(0)?,
                    name: r.get(1)?,
                    company_name: r.get(2)?,
                    plan: r.get(3)?,
                    metadata: serde_json::from_str(&metadata).unwrap_or_default(),
                })
            },
        )
        .optional()?)
}

/// A customer that every command may see: not still being provisioned.
pub fn by_id(conn: &Connection, id: i64) -> Result<Option<Customer>> {
    Ok(any_by_id(conn, id)?.filter(|c| c.status != CustomerStatus::Provisioning))
}

/// A customer in any state, `provisioning` included.
pub fn any_by_id(conn: &Connection, id: i64) -> Result<Option<Customer>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM customers WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

pub fn by_slug(conn: &Connection, slug: &str) -> Result<Option<Customer>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM customers WHERE slug = ?1 AND status <> 'provisioning'"
        ))?
        .query_row([slug], from_row)
        .optional()?)
}

pub fn by_email(conn: &Connection, email: &str) -> Result<Option<Customer>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM customers WHERE email = ?1 AND status <> 'provisioning'"
        ))?
        .query_row([email], from_row)
        .optional()?)
}

pub fn slug_taken(conn: &Connection, slug: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM customers WHERE slug = ?1)")?
        .query_row([slug], |r| r.get(0))?)
}

#[derive(Debug, Clone, Default)]
pub struct CustomerFilter {
    pub plan: Option<String>,
    pub status: Option<CustomerStatus>,
    pub search: Option<String>,
    pub limit: Option<u64>,
}

pub fn list(conn: &Connection, filter: &CustomerFilter) -> Result<Vec<Customer>> {
    let mut query = Filtered::new(format!(
        "SELECT {COLUMNS} FROM customers WHERE status <> 'provisioning'"
    ));
    if let Some(plan) = &filter.plan {
        query.and("plan = ?", plan.clone());
    }
    if let Some(status) = &filter.status {
        query.and("status = ?", *status);
    }
    if let Some(text) = &filter.search {
        query.and(
            "(instr(lower(slug), lower(?)) OR instr(lower(email), lower(?)) \
             OR instr(lower(name), lower(?)) OR instr(lower(coalesce(company_name, '')), lower(?)))",
            text.clone(),
        );
    }
    query.finish("ORDER BY id", filter.limit);
    let mut stmt = conn.prepare(&query.sql)?;
    let rows = stmt.query_map(query.params(), from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The fields `customer update` may change; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct CustomerChanges {
    pub email: Option<String>,
    pub name: Option<String>,
    pub company_name: Option<Option<String>>,
    pub plan: Option<String>,
    pub limits: LimitChanges,
    pub metadata: Option<Map<String, Value>>,
}

impl CustomerChanges {
    /// Whether applying these changes would leave the customer as it is.
    pub fn is_noop(&self, current: &Customer) -> bool {
        self.email.as_ref().is_none_or(|e| *e == current.email)
            && self.name.as_ref().is_none_or(|n| *n == current.name)
            && self
                .company_name
                .as_ref()
                .is_none_or(|c| *c == current.company_name)
            && self.plan.as_ref().is_none_or(|p| *p == current.plan)
            && self.metadata.as_ref().is_none_or(|m| *m == current.metadata)
            && self.limits.apply_to(current.overrides()) == current.overrides()
    }
}

/// For each quota: `None` leaves it, `Some(None)` falls back to the plan, `Some(Some(n))` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitChanges {
    pub max_sites: Option<Option<i64>>,
    pub max_storage_mb: Option<Option<i64>>,
    pub max_bandwidth_gb: Option<Option<i64>>,
    pub max_api_calls: Option<Option<i64>>,
}

impl LimitChanges {
    pub fn apply_to(&self, current: Limits) -> Limits {
        Limits {
            max_sites: self.max_sites.unwrap_or(current.max_sites),
            max_storage_mb: self.max_storage_mb.unwrap_or(current.max_storage_mb),
            max_bandwidth_gb: self.max_bandwidth_gb.unwrap_or(current.max_bandwidth_gb),
            max_api_calls: self.max_api_calls.unwrap_or(current.max_api_calls),
        }
    }
}

pub fn update(conn: &Connection, current: &Customer, changes: &CustomerChanges) -> Result<Customer> {
    let limits = changes.limits.apply_to(current.overrides());
    conn.execute(
        "UPDATE customers SET email = ?2, name = ?3, company_name = ?4, plan = ?5,
             max_sites = ?6, max_storage_mb = ?7, max_bandwidth_gb = ?8, max_api_calls = ?9,
             metadata = ?10, updated_at = ?11
         WHERE id = ?1",
        params![
            current.id,
            changes.email.as_ref().unwrap_or(&current.email),
            changes.name.as_ref().unwrap_or(&current.name),
            changes
                .company_name
                .clone()
                .unwrap_or_else(|| current.company_name.clone()),
            changes.plan.as_ref().unwrap_or(&current.plan),
            limits.max_sites,
            limits.max_storage_mb,
            limits.max_bandwidth_gb,
            limits.max_api_calls,
            Value::Object(
                changes
                    .metadata
                    .clone()
                    .unwrap_or_else(|| current.metadata.clone())
            )
            .to_string(),
            time::now(),
        ],
    )?;
    Ok(any_by_id(conn, current.id)?.expect("an existing customer"))
}

/// Moves a customer to `status`, recording why (or clearing the reason).
pub fn set_status(conn: &Connection, id: i64, status: CustomerStatus, reason: Option<&str>) -> Result<()> {
    let now = time::now();
    conn.execute(
        "UPDATE customers SET status = ?2, status_reason = ?3, updated_at = ?4,
             suspended_at = CASE WHEN ?2 = 'suspended' THEN ?4 WHEN ?2 = 'active' THEN NULL ELSE suspended_at END,
             deleted_at = CASE WHEN ?2 = 'deleted' THEN ?4 WHEN ?2 = 'active' THEN NULL ELSE deleted_at END
         WHERE id = ?1",
        params![id, status, reason, now],
    )?;
    Ok(())
}

/// Brings a deleted customer back to the status it had: suspended if a suspension was
/// recorded, else active.
pub fn undelete(conn: &Connection, id: i64, placement: &Placement) -> Result<()> {
    conn.execute(
        "UPDATE customers SET
             status = CASE WHEN suspended_at IS NULL THEN 'active' ELSE 'suspended' END,
             status_reason = CASE WHEN suspended_at IS NULL THEN NULL ELSE status_reason END,
             deleted_at = NULL, engine = ?2, server = ?3, location = ?4, updated_at = ?5
         WHERE id = ?1",
        params![
            id,
            placement.engine,
            placement.server,
            placement.location,
            time::now()
        ],
    )?;
    Ok(())
}

pub fn set_placement(conn: &Connection, id: i64, placement: &Placement) -> Result<()> {
    conn.execute(
        "UPDATE customers SET engine = ?2, server = ?3, location = ?4 WHERE id = ?1",
        params![id, placement.engine, placement.server, placement.location],
    )?;
    Ok(())
}

/// Stops every site, revokes every API key and session of a customer; returns the
/// counts (sites, keys, sessions).
pub fn shut_down_access(conn: &Connection, id: i64) -> Result<(usize, usize, usize)> {
    let now = time::now();
    let sites = conn.execute(
        "UPDATE sites SET status = 'stopped', updated_at = ?2 WHERE customer_id = ?1 AND status <> 'stopped'",
        params![id, now],
    )?;
    let keys = conn.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE customer_id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    let sessions = conn.execute(
        "UPDATE sessions SET revoked_at = ?2 WHERE customer_id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    Ok((sites, keys, sessions))
}

/// Removes a customer row; sites, deployments, snapshots, keys, sessions and usage go
/// with it (foreign keys cascade). The audit log keeps its rows.
pub fn purge(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM customers WHERE id = ?1", [id])?;
    Ok(())
}

pub fn sites_of(conn: &Connection, id: i64) -> Result<Vec<SiteSummary>> {
    let mut stmt =
        conn.prepare("SELECT id, name, domain, port, status FROM sites WHERE customer_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([id], |row| {
        Ok(SiteSummary {
            id: row.get(0)?,
            name: row.get(1)?,
            domain: row.get(2)?,
            port: row.get(3)?,
            status: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub fn site_count(conn: &Connection, id: i64) -> Result<i64> {
    Ok(
        conn.query_row("SELECT count(*) FROM sites WHERE customer_id = ?1", [id], |r| {
            r.get(0)
        })?,
    )
}

/// `(group, count)` pairs over all customers, for `status`.
pub fn count_by(conn: &Connection, column: CountColumn) -> Result<Vec<(String, i64)>> {
    let sql = match column {
        CountColumn::Status => {
            "SELECT status, count(*) FROM customers WHERE status <> 'provisioning' GROUP BY status ORDER BY status"
        }
        CountColumn::Plan => {
            "SELECT plan, count(*) FROM customers WHERE status <> 'provisioning' GROUP BY plan ORDER BY plan"
        }
        CountColumn::Server => {
            "SELECT server, count(*) FROM customers WHERE status <> 'provisioning' GROUP BY server ORDER BY server"
        }
    };
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub fn site_count_by_status(conn: &Connection) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT s.status, count(*) FROM sites s JOIN customers c ON c.id = s.customer_id
         WHERE c.status <> 'provisioning' GROUP BY s.status ORDER BY s.status",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

#[derive(Debug, Clone, Copy)]
pub enum CountColumn {
    Status,
    Plan,
    Server,
}

/// Customers not deleted whose tenant database is below `version`.
pub fn count_behind(conn: &Connection, version: i64) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM customers WHERE status NOT IN ('deleted', 'provisioning') AND schema_version < ?1",
        [version],
        |r| r.get(0),
    )?)
}

fn placement_of(row: &Row<'_>, first: usize) -> rusqlite::Result<Placement> {
    Ok(Placement {
        engine: row.get(first)?,
        server: row.get(first + 1)?,
        location: row.get(first + 2)?,
    })
}

/// `(id, slug, placement)` of deleted customers.
pub fn deleted_placements(conn: &Connection) -> Result<Vec<(i64, String, Placement)>> {
    let mut stmt = conn.prepare(
        "SELECT id, slug, engine, server, location FROM customers WHERE status = 'deleted' ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, placement_of(r, 2)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Every placement the catalog records, deleted customers' and moves' old copies
/// included.
pub fn all_placements(conn: &Connection) -> Result<Vec<Placement>> {
    let mut stmt = conn.prepare(
        "SELECT engine, server, location FROM customers
         UNION ALL SELECT engine, server, location FROM moved_sources",
    )?;
    let rows = stmt.query_map([], |r| placement_of(r, 0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Placements of customers that are not deleted.
pub fn live_placements(conn: &Connection) -> Result<Vec<Placement>> {
    let mut stmt = conn.prepare(
        "SELECT engine, server, location FROM customers WHERE status NOT IN ('deleted', 'provisioning')",
    )?;
    let rows = stmt.query_map([], |r| placement_of(r, 0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Every placement on `server`, whatever the customer's status (one being created
/// or deleted owns its database too), and the old copies moves keep there.
pub fn placements_on(conn: &Connection, server: &str) -> Result<Vec<Placement>> {
    let mut stmt = conn.prepare(
        "SELECT engine, server, location FROM customers WHERE server = ?1
         UNION ALL SELECT engine, server, location FROM moved_sources WHERE server = ?1",
    )?;
    let rows = stmt.query_map([server], |r| placement_of(r, 0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::in_memory;

    fn new_customer(slug: &str) -> NewCustomer {
        NewCustomer {
            id: None,
            slug: slug.into(),
            email: format!("{slug}@example.com"),
            name: "N".into(),
            company_name: Some(format!("{slug} Corp")),
            plan: "starter".into(),
            metadata: Map::new(),
            placement: Placement::local(std::path::Path::new(&format!("/x/{slug}.db"))).unwrap(),
            schema_version: 3,
        }
    }

    #[test]
    fn insert_find_and_filter() {
        let catalog = in_memory();
        let conn = catalog.conn();
        let a = insert(conn, &new_customer("acme")).unwrap();
        let g = insert(conn, &new_customer("globex")).unwrap();
        // Provisioning customers are nobody's to see until activated.
        assert!(by_slug(conn, "acme").unwrap().is_none());
        assert!(list(conn, &CustomerFilter::default()).unwrap().is_empty());
        activate(conn, a.id).unwrap();
        activate(conn, g.id).unwrap();
        assert_eq!(by_slug(conn, "acme").unwrap().unwrap().id, a.id);
        assert_eq!(by_email(conn, "ACME@example.com").unwrap().unwrap().id, a.id);
        let filter = CustomerFilter {
            search: Some("GLOB".into()),
            ..Default::default()
        };
        let found = list(conn, &filter).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].slug, "globex");
        let filter = CustomerFilter {
            plan: Some("starter".into()),
            search: Some("corp".into()),
            limit: Some(1),
            ..Default::default()
        };
        assert_eq!(list(conn, &filter).unwrap().len(), 1);
    }

    #[test]
    fn duplicate_slug_is_a_unique_violation() {
        let catalog = in_memory();
        insert(catalog.conn(), &new_customer("acme")).unwrap();
        let mut dup = new_customer("acme");
        dup.email = "other@example.com".into();
        match insert(catalog.conn(), &dup) {
            Err(crate::error::Error::Sqlite(e)) => assert!(crate::catalog::is_unique_violation(&e)),
            other => panic!("expected a unique violation, got {other:?}"),
        }
    }
}
