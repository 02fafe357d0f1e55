//! Each PostgreSQL server's template database: the tenant schema at the newest
//! engine migration, so a new tenant database is a copy (`CREATE DATABASE … TEMPLATE`)
//! instead of a replay of every migration.

use refinery::Migration;

use super::{PgUrl, unreachable};
use crate::error::{Error, Result};
use crate::migrations::MigrationId;

pub const TEMPLATE_DATABASE: &str = "tenantctl_template";
/// Built under this name and renamed when complete, so a failed build never leaves
/// a half-migrated template in use.
const BUILDING: &str = "tenantctl_template_new";
/// Owns the template's objects, so that each copy hands them to its tenant role with
/// `REASSIGN OWNED` without touching anything the admin login owns.
pub const TEMPLATE_OWNER: &str = "tenantctl_template_owner";

/// Builds (or rebuilds) the template at the newest of `migrations`; returns the
/// identity of the migration set it holds, which the catalog keeps to tell when the
/// template is out of date.
pub fn build_template(server: &str, url: &PgUrl, migrations: &[Migration]) -> Result<String> {
    let mut admin = url.connect(server, None)?;
    // One statement at a time: several in one call form a transaction, which
    // CREATE and DROP DATABASE refuse.
    let mut run = |sql: String| admin.batch_execute(&sql).map_err(|e| unreachable(server, &e));
    run(format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{TEMPLATE_OWNER}') THEN
             CREATE ROLE {TEMPLATE_OWNER} NOLOGIN;
           END IF;
         END $$"
    ))?;
    run(format!("GRANT {TEMPLATE_OWNER} TO CURRENT_USER"))?;
    run(format!("DROP DATABASE IF EXISTS {BUILDING} WITH (FORCE)"))?;
    run(format!(
        "CREATE DATABASE {BUILDING} TEMPLATE template0 ENCODING 'UTF8'"
    ))?;
    run(format!("REVOKE ALL ON DATABASE {BUILDING} FROM PUBLIC"))?;
    migrate_as_owner(server, url, migrations)?;
    run(format!(
        "DROP DATABASE IF EXISTS {TEMPLATE_DATABASE} WITH (FORCE)"
    ))?;
    run(format!("ALTER DATABASE {BUILDING} RENAME TO {TEMPLATE_DATABASE}"))?;
    run(format!(
        "ALTER DATABASE {TEMPLATE_DATABASE} ALLOW_CONNECTIONS false"
    ))?;
    Ok(identity(migrations))
}

fn migrate_as_owner(server: &str, url: &PgUrl, migrations: &[Migration]) -> Result<()> {
    let mut db = url.connect(server, Some(BUILDING))?;
    db.batch_execute(&format!(
        "GRANT USAGE, CREATE ON SCHEMA public TO {TEMPLATE_OWNER}; SET ROLE {TEMPLATE_OWNER};"
    ))
    .map_err(|e| unreachable(server, &e))?;
    refinery::Runner::new(migrations)
        .set_grouped(true)
        .run(&mut db)
        .map_err(|e| {
            Error::invalid_input(format!(
                "a PostgreSQL tenant migration failed on server {server}: {e}"
            ))
            .with_hint("fix the migration in tenant-migrations/postgres/ and try again")
        })?;
    Ok(())
}

/// `V1:checksum,V2:checksum,…`: equal exactly when two migration sets are the same.
pub fn identity(migrations: &[Migration]) -> String {
    migrations
        .iter()
        .map(|m| {
            let id = MigrationId::of(m);
            format!("V{}:{}", id.version, id.checksum)
        })
        .collect::<Vec<_>>()
        .join(",")
}
