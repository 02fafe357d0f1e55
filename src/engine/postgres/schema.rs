//! Schema mode: every tenant a schema of the server URL's database, owned by the
//! tenant's role, which reaches nothing outside it. A new tenant is built under a
//! staging name by a staging role of the same name that owns everything the
//! migrations make; publishing renames the schema and the role to the tenant's, so
//! ownership needs no reassignment and a half-built schema is never a tenant's.

use postgres::Client;
use refinery::Migration;

use super::sql::ident;
use crate::error::Error;

/// Builds the staging schema `staging`, owned by the staging role of that name, at
/// the newest of `migrations`, with the history table inside it.
pub fn build(
    admin: &mut Client,
    staging: &str,
    migrations: &[Migration],
) -> std::result::Result<(), BuildError> {
    let name = ident(staging);
    admin.batch_execute(&format!(
        "CREATE ROLE {name} NOLOGIN; GRANT {name} TO CURRENT_USER; CREATE SCHEMA {name} AUTHORIZATION {name}"
    ))?;
    admin.batch_execute(&format!("SET ROLE {name}; SET search_path TO {name}"))?;
    let migrated = refinery::Runner::new(migrations).set_grouped(true).run(admin);
    admin.batch_execute("RESET ROLE; RESET search_path")?;
    migrated.map_err(BuildError::Migration)?;
    Ok(())
}

/// Why a staging schema could not be built.
pub enum BuildError {
    Server(postgres::Error),
    Migration(refinery::Error),
}

impl From<postgres::Error> for BuildError {
    fn from(err: postgres::Error) -> Self {
        BuildError::Server(err)
    }
}

/// Gives the staging schema and its role the tenant's name, lets the role log in
/// with `verifier` and only into `database`, with its schema first on its path.
pub fn publish(
    admin: &mut Client,
    database: &str,
    staging: &str,
    tenant: &str,
    verifier: &str,
) -> std::result::Result<(), postgres::Error> {
    let (staging, role, db) = (ident(staging), ident(tenant), ident(database));
    admin.batch_execute(&format!(
        "ALTER SCHEMA {staging} RENAME TO {role};
         ALTER ROLE {staging} RENAME TO {role};
         ALTER ROLE {role} LOGIN PASSWORD '{verifier}';
         ALTER ROLE {role} IN DATABASE {db} SET search_path TO {role};
         GRANT CONNECT ON DATABASE {db} TO {role};"
    ))
}

/// Drops a schema with everything in it, and its role with its grant on `database`.
pub fn drop(
    admin: &mut Client,
    database: &str,
    schema: &str,
    role: Option<&str>,
) -> std::result::Result<(), postgres::Error> {
    admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(schema)))?;
    let Some(role) = role else { return Ok(()) };
    if admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])?
        .is_some()
    {
        admin.batch_execute(&format!(
            "REVOKE ALL ON DATABASE {} FROM {role}; DROP ROLE {role}",
            ident(database),
            role = ident(role)
        ))?;
    }
    Ok(())
}

pub fn exists(admin: &mut Client, schema: &str) -> std::result::Result<bool, postgres::Error> {
    Ok(admin
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])?
        .is_some())
}

/// Schemas whose names start with `prefix`.
pub fn named(admin: &mut Client, prefix: &str) -> std::result::Result<Vec<String>, postgres::Error> {
    Ok(admin
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY nspname",
            &[&prefix],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// The bytes of every table in the schema, with their indexes and TOAST.
pub fn size(admin: &mut Client, schema: &str) -> std::result::Result<i64, postgres::Error> {
    Ok(admin
        .query_one(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
            &[&schema],
        )?
        .get(0))
}

/// `VACUUM (ANALYZE)` of every table in the schema, in one statement.
pub fn vacuum(admin: &mut Client, schema: &str) -> std::result::Result<(), postgres::Error> {
    let tables: Vec<String> = admin
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
            &[&schema],
        )?
        .iter()
        .map(|row| format!("{}.{}", ident(schema), ident(row.get(0))))
        .collect();
    if tables.is_empty() {
        return Ok(());
    }
    admin.batch_execute(&format!("VACUUM (ANALYZE) {}", tables.join(", ")))
}

/// Closes the URL's database to roles that are not its tenants: no CONNECT and
/// nothing in `public` for PUBLIC, so each tenant role reaches its own schema only.
pub fn close_database(admin: &mut Client, database: &str) -> std::result::Result<(), postgres::Error> {
    admin.batch_execute(&format!(
        "REVOKE ALL ON DATABASE {} FROM PUBLIC; REVOKE ALL ON SCHEMA public FROM PUBLIC",
        ident(database)
    ))
}

/// A migration that failed while a staging schema was built: the operator's to fix.
pub fn migration_failed(server: &str, err: &refinery::Error) -> Error {
    Error::invalid_input(format!(
        "a PostgreSQL tenant migration failed on server {server}: {err}"
    ))
    .with_hint("fix the migration in tenant-migrations/postgres/ and try again")
}
