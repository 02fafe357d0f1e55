//! Tenants on a PostgreSQL server in database mode: one database per tenant, copied
//! from the server's template, owned by the tenant's own login role, closed to every
//! other role. The admin login builds, renames and drops them; the operator's SQL runs
//! as the tenant role, so the server itself keeps it inside its tenant.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use postgres::Client;
use refinery::Migration;

use super::pool::{Pool, Pooled};
use super::template::{TEMPLATE_DATABASE, TEMPLATE_OWNER};
use super::{PgUrl, migrate, schema, sql};
use crate::backup::Entry;
use crate::backup::restore::StagingRun;
use crate::catalog::servers::ServerRow;
use crate::catalog::states::ServerMode;
use crate::engine::transfer::{Cell, TableShape};
use crate::engine::{
    AccessFinding, AccessProblem, BackedUp, BackupTarget, Engine, EngineKind, Finished, MigrationId,
    Placement, PlacementView, Provisioned, RestoreSource, RowSink, ScriptOutcome, Staged, TenantDatabase,
    TenantRun, Vacuumed,
};
use crate::error::{Error, Result};
use crate::home::Home;
use crate::migrations::DownScript;
use crate::secrets::{MasterKey, Secret};

/// Where the tenant's data waits between delete and undelete or purge.
const RETIRED_PREFIX: &str = "tenantctl_deleted_";
/// Connections a fan-out leaves free on a server, beyond those already in use.
const CONNECTION_MARGIN: i32 = 5;
/// The sessions the admin login may end: client sessions of roles that are not
/// superusers (ending a superuser's is refused; autovacuum workers are ended by the
/// rename or drop itself), never its own.
const ENDABLE_SESSIONS: &str = "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
     AND NOT coalesce((SELECT rolsuper FROM pg_roles WHERE oid = usesysid), false)";
/// A database copied from the template, not yet any tenant's: `…_<owner token>_<n>`.
const STAGING_PREFIX: &str = "tenantctl_new_";

/// One PostgreSQL server of the home, as the catalog lists it. Its tenants share
/// its connections and what it learnt of the server while the command runs.
pub struct PgEngine {
    row: ServerRow,
    home: Home,
    shared: Arc<Shared>,
}

struct Shared {
    /// The admin login, decrypted once.
    url: OnceLock<PgUrl>,
    pool: Pool,
    /// The pg_dump and pg_restore fit for the server, found once.
    tools: OnceLock<super::DumpTools>,
}

impl PgEngine {
    pub fn new(row: ServerRow, home: &Home) -> Self {
        PgEngine {
            shared: Arc::new(Shared {
                url: OnceLock::new(),
                pool: Pool::new(&row.name),
                tools: OnceLock::new(),
            }),
            row,
            home: home.clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.row.name
    }

    /// The admin login, its password decrypted with the master key.
    pub(super) fn admin_url(&self) -> Result<PgUrl> {
        if let Some(url) = self.shared.url.get() {
            return Ok(url.clone());
        }
        let password = match &self.row.password {
            Some(stored) => {
                Some(MasterKey::require(&self.home)?.decrypt(stored, &server_identity(&self.row.name))?)
            }
            None => None,
        };
        let url = PgUrl::from_stored(&self.row.url, password)?;
        Ok(self.shared.url.get_or_init(|| url).clone())
    }

    /// An admin connection to `database` (default: the URL's own), from the pool.
    pub(super) fn admin(&self, database: Option<&str>) -> Result<Pooled<'_>> {
        let url = self.admin_url()?;
        let database = match database {
            Some(name) => name.to_string(),
            None => url.database(),
        };
        self.shared.pool.get(&url, &database)
    }

    pub(super) fn fail(&self, err: &postgres::Error) -> Error {
        super::unreachable(&self.row.name, err)
    }

    pub(super) fn run(&self, client: &mut Client, statement: &str) -> Result<()> {
        client.batch_execute(statement).map_err(|e| self.fail(&e))
    }

    fn database_exists(&self, client: &mut Client, name: &str) -> Result<bool> {
        Ok(client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .map_err(|e| self.fail(&e))?
            .is_some())
    }

    /// Lets the tenant role log in or not; shutting it out also ends its sessions,
    /// so nothing it had open goes on writing.
    pub(super) fn set_login(&self, client: &mut Client, role: &str, allowed: bool) -> Result<()> {
        if !role_exists(client, role).map_err(|e| self.fail(&e))? {
            return Ok(());
        }
        let login = if allowed { "LOGIN" } else { "NOLOGIN" };
        self.run(client, &format!("ALTER ROLE {} {login}", sql::ident(role)))?;
        if !allowed {
            self.end_sessions_of(client, role)?;
        }
        Ok(())
    }

    /// Ends the role's sessions and waits until they are gone. A session that passed
    /// the login check just before `NOLOGIN` shows up only once it is in, so the
    /// sessions are looked for again until none is left.
    fn end_sessions_of(&self, client: &mut Client, role: &str) -> Result<()> {
        for _ in 0..20 {
            let ended = client
                .execute(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
                     WHERE usename = $1 AND pid <> pg_backend_pid()",
                    &[&role],
                )
                .map_err(|e| self.fail(&e))?;
            if ended == 0 {
                return Ok(());
            }
        }
        Err(Error::unexpected(format!(
            "server {}: the sessions of {role} keep coming back after NOLOGIN",
            self.row.name
        )))
    }

    /// Whether `role` may log in now.
    pub(super) fn can_login(&self, client: &mut Client, role: &str) -> Result<bool> {
        Ok(client
            .query_opt("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", &[&role])
            .map_err(|e| self.fail(&e))?
            .is_some_and(|row| row.get(0)))
    }

    /// Ends every session in `databases` (this command's idle ones included), which
    /// a rename or drop of them needs; `client` must be connected elsewhere.
    pub(super) fn forget_connections(&self, client: &mut Client, databases: &[&str]) -> Result<()> {
        for database in databases {
            self.shared.pool.close_idle(database);
        }
        let names: Vec<String> = databases.iter().map(|d| d.to_string()).collect();
        client
            .execute(
                &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity {ENDABLE_SESSIONS} AND datname = ANY($1)"),
                &[&names],
            )
            .map_err(|e| self.fail(&e))?;
        Ok(())
    }

    /// The pg_dump and pg_restore of this machine that can dump this server (exit 6
    /// when none can), found on first use.
    pub(super) fn dump_tools(&self) -> Result<super::DumpTools> {
        if let Some(tools) = self.shared.tools.get() {
            return Ok(tools.clone());
        }

        let mut admin = self.admin(None)?;
        let row = admin
            .query_one(
                "SELECT current_setting('server_version'), current_setting('server_version_num')::int",
                &[],
            )
            .map_err(|e| self.fail(&e))?;
        let (version, number): (String, i32) = (row.get(0), row.get(1));
        let major = u32::try_from(number / 10_000).unwrap_or(0);
        let tools = super::dump_tools(&self.row.name, &version, major)?;
        Ok(self.shared.tools.get_or_init(|| tools).clone())
    }

    /// The home's folder, for a restore's scratch files.
    pub(super) fn home_root(&self) -> &Path {
        self.home.root()
    }

    /// Drops the copies beside a tenant that `role` owns: pre-restore copies and
    /// restored copies a killed restore left.
    fn drop_copies_of(&self, admin: &mut Client, role: &str) -> Result<()> {
        let query = match self.schema_mode() {
            true => {
                "SELECT n.nspname::text FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE r.rolname = $1"
            }
            false => {
                "SELECT d.datname::text FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE r.rolname = $1"
            }
        };
        let owned: Vec<String> = admin
            .query(query, &[&role])
            .map_err(|e| self.fail(&e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for name in owned
            .iter()
            .filter(|n| super::copies::is_kept_name(n) || super::copies::is_restore_copy(n))
        {
            let statement = match self.schema_mode() {
                true => format!("DROP SCHEMA IF EXISTS {} CASCADE", sql::ident(name)),
                false => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", sql::ident(name)),
            };
            self.run(admin, &statement)?;
        }
        Ok(())
    }

    /// The databases (or, in schema mode, schemas) whose names start with `prefix`.
    fn tenant_names(&self, admin: &mut Client, prefix: &str) -> Result<Vec<String>> {
        if self.schema_mode() {
            return schema::named(admin, prefix).map_err(|e| self.fail(&e));
        }
        let rows = admin
            .query(
                "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname",
                &[&prefix],
            )
            .map_err(|e| self.fail(&e))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    pub(super) fn schema_mode(&self) -> bool {
        self.row.mode == ServerMode::Schema
    }

    /// The database tenants live in (schema mode) or the admin URL's own.
    pub(super) fn home_database(&self) -> Result<String> {
        Ok(self.admin_url()?.database())
    }

    /// Whether a tenant's database (or schema) is there.
    pub(super) fn tenant_exists(&self, client: &mut Client, name: &str) -> Result<bool> {
        if self.schema_mode() {
            schema::exists(client, name).map_err(|e| self.fail(&e))
        } else {
            self.database_exists(client, name)
        }
    }

    fn provision_schema(&self, migrations: &[Migration], owner: &str) -> Result<Provisioned> {
        let staging = staging_database(owner);
        let mut admin = self.admin(None)?;
        if let Err(err) = schema::build(&mut admin, &staging, migrations) {
            let _ = schema::drop(&mut admin, &self.home_database()?, &staging, Some(&staging));
            return Err(match err {
                schema::BuildError::Server(e) => self.fail(&e),
                schema::BuildError::Migration(e) => schema::migration_failed(&self.row.name, &e),
            });
        }
        Ok(Provisioned {
            staging,
            schema_version: crate::migrations::newest_version(migrations),
            applied: migrations.iter().map(MigrationId::of).collect(),
            role_password: Some(Secret::generate()),
        })
    }
}

pub(crate) fn server_identity(name: &str) -> String {
    format!("server:{name}")
}

fn role_exists(client: &mut Client, role: &str) -> std::result::Result<bool, postgres::Error> {
    Ok(client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])?
        .is_some())
}

/// `tenant_<slug with - as _>`: the name of a tenant's database (or schema) and role.
pub fn tenant_name(slug: &str) -> Result<String> {
    let slug = crate::validate::slug(slug)?;
    Ok(format!("tenant_{}", slug.replace('-', "_")))
}

/// The slug a tenant database is named for.
fn slug_of(name: &str) -> Option<String> {
    let slug = name.strip_prefix("tenant_")?.replace('_', "-");
    crate::validate::slug(&slug).ok().map(str::to_string)
}

fn staging_database(owner: &str) -> String {
    let token: String = owner
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{STAGING_PREFIX}{token}_{:08x}", rand::random::<u32>())
}

/// The owner token a staging database is named for (`<pid>-<hex>`).
fn staging_owner(name: &str) -> Option<String> {
    let (token, _random) = name.strip_prefix(STAGING_PREFIX)?.rsplit_once('_')?;
    Some(token.replacen('_', "-", 1))
}

impl Engine for PgEngine {
    fn placement_for(&self, slug: &str) -> Result<Placement> {
        Ok(Placement {
            engine: EngineKind::Postgres,
            server: self.row.name.clone(),
            location: tenant_name(slug)?,
        })
    }

    fn retired_placement(&self, slug: &str, customer_id: i64) -> Result<Placement> {
        let mut location = format!("{RETIRED_PREFIX}{customer_id}_{}", tenant_name(slug)?);
        location.truncate(63);
        Ok(Placement {
            engine: EngineKind::Postgres,
            server: self.row.name.clone(),
            location,
        })
    }

    fn provision(&self, migrations: &[Migration], owner: &str) -> Result<Provisioned> {
        if self.schema_mode() {
            return self.provision_schema(migrations, owner);
        }
        let staging = staging_database(owner);
        let mut admin = self.admin(None)?;
        self.run(
            &mut admin,
            &format!(
                "CREATE DATABASE {} TEMPLATE {TEMPLATE_DATABASE} STRATEGY WAL_LOG",
                sql::ident(&staging)
            ),
        )?;
        Ok(Provisioned {
            staging,
            schema_version: crate::migrations::newest_version(migrations),
            applied: migrations.iter().map(MigrationId::of).collect(),
            role_password: Some(Secret::generate()),
        })
    }

    fn provision_many(
        &self,
        migrations: &[Migration],
        count: usize,
        _jobs: usize,
        owner: &str,
    ) -> Result<Vec<Provisioned>> {
        let mut built = Vec::with_capacity(count);
        for _ in 0..count {
            match self.provision(migrations, owner) {
                Ok(one) => built.push(one),
                Err(err) => {
                    built.iter().for_each(|b| self.discard(b));
                    return Err(err);
                }
            }
        }
        Ok(built)
    }

    /// Names the copy for its tenant, makes its role (the password as a SCRAM
    /// verifier, so the plaintext never reaches the server's logs) and hands the
    /// database and everything in it to that role.
    fn publish(&self, provisioned: &Provisioned, placement: &Placement) -> Result<()> {
        let password = provisioned
            .role_password
            .as_ref()
            .ok_or_else(|| Error::unexpected("a PostgreSQL tenant needs a role password"))?;
        let name = &placement.location;
        let (db, role) = (sql::ident(name), sql::ident(name));
        let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
        // A rename needs the database to itself: what this command read of the copy
        // (a move compares it) may still sit idle in the pool.
        self.shared.pool.close_idle(&provisioned.staging);
        let mut admin = self.admin(None)?;
        if self.tenant_exists(&mut admin, name)? {
            return Err(
                Error::conflict(format!("{name} already exists on server {}", self.row.name))
                    .with_hint("no customer owns it; run 'tenantctl doctor'"),
            );
        }
        if self.schema_mode() {
            let database = self.home_database()?;
            return schema::publish(&mut admin, &database, &provisioned.staging, name, &verifier)
                .map_err(|e| self.fail(&e));
        }
        // One round trip, and all or nothing: several statements in one call run as
        // one transaction, which these all may.
        self.run(
            &mut admin,
            &format!(
                "CREATE ROLE {role} LOGIN PASSWORD '{verifier}';
                 GRANT {role} TO CURRENT_USER;
                 ALTER DATABASE {staging} RENAME TO {db};
                 ALTER DATABASE {db} OWNER TO {role};
                 REVOKE ALL ON DATABASE {db} FROM PUBLIC;",
                staging = sql::ident(&provisioned.staging)
            ),
        )?;
        let mut tenant_db = self.admin(Some(name))?;
        self.run(
            &mut tenant_db,
            &format!(
                "REASSIGN OWNED BY {TEMPLATE_OWNER} TO {role}; DROP OWNED BY {TEMPLATE_OWNER};
                 REVOKE ALL ON SCHEMA public FROM PUBLIC;"
            ),
        )
    }

    fn can_copy_whole(&self, source: &dyn TenantDatabase) -> bool {
        !self.schema_mode()
            && source.placement().engine == EngineKind::Postgres
            && source.dump_source().is_some()
    }

    /// Owned by the template's owner, as a template copy is, so that publishing hands
    /// everything a restore makes in it to the tenant role the same way.
    fn provision_empty(&self, owner: &str) -> Result<Provisioned> {
        let staging = staging_database(owner);
        let mut admin = self.admin(None)?;
        self.run(
            &mut admin,
            &format!(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'",
                sql::ident(&staging)
            ),
        )?;
        let provisioned = Provisioned {
            staging: staging.clone(),
            schema_version: 0,
            applied: Default::default(),
            role_password: Some(Secret::generate()),
        };
        let prepared = self
            .run(
                &mut admin,
                &format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", sql::ident(&staging)),
            )
            .and_then(|()| {
                let mut db = self.admin(Some(&staging))?;
                self.run(
                    &mut db,
                    &format!("GRANT USAGE, CREATE ON SCHEMA public TO {TEMPLATE_OWNER}"),
                )
            });
        if let Err(err) = prepared {
            self.discard(&provisioned);
            return Err(err);
        }
        Ok(provisioned)
    }

    /// The database (or schema) and the role both: the role is the cluster's, and a
    /// move must never take over one it did not make.
    fn refuse_taken(&self, placement: &Placement) -> Result<()> {
        let mut admin = self.admin(None)?;
        let name = &placement.location;
        let taken = match self.tenant_exists(&mut admin, name)? {
            true => Some("database or schema"),
            false => role_exists(&mut admin, name)
                .map_err(|e| self.fail(&e))?
                .then_some("role"),
        };
        match taken {
            Some(what) => Err(Error::conflict(format!(
                "a {what} named {name} already exists on server {}",
                self.row.name
            ))
            .with_hint("no customer of this home owns it; see 'tenantctl doctor'")),
            None => Ok(()),
        }
    }

    fn discard(&self, provisioned: &Provisioned) {
        if self.schema_mode() {
            if let (Ok(mut admin), Ok(database)) = (self.admin(None), self.home_database()) {
                let _ = schema::drop(
                    &mut admin,
                    &database,
                    &provisioned.staging,
                    Some(&provisioned.staging),
                );
            }
            return;
        }
        if let Ok(mut admin) = self.admin(None) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                sql::ident(&provisioned.staging)
            ));
        }
    }

    /// Renames the database (a tenant's own name to a retired one on delete, back on
    /// undelete); the role keeps its name and is shut out when the database retires.
    fn relocate(&self, from: &Placement, to: &Placement) -> Result<()> {
        let mut admin = self.admin(None)?;
        let role = role_of(from, to);
        let retiring = to.location.starts_with(RETIRED_PREFIX);
        if retiring {
            self.set_login(&mut admin, &role, false)?;
        }
        if self.tenant_exists(&mut admin, &to.location)? {
            return Err(Error::conflict(format!(
                "{} already exists on server {}",
                to.location, self.row.name
            )));
        }
        if self.schema_mode() {
            return self.run(
                &mut admin,
                &format!(
                    "ALTER SCHEMA {} RENAME TO {}",
                    sql::ident(&from.location),
                    sql::ident(&to.location)
                ),
            );
        }
        // A rename needs the database to itself.
        admin
            .execute(
                &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity {ENDABLE_SESSIONS} AND datname = $1"),
                &[&from.location],
            )
            .map_err(|e| self.fail(&e))?;
        self.run(
            &mut admin,
            &format!(
                "ALTER DATABASE {} RENAME TO {}",
                sql::ident(&from.location),
                sql::ident(&to.location)
            ),
        )?;
        // Back from retirement the login stays shut: undelete lets it in only when
        // the customer returns active.
        Ok(())
    }

    /// Also drops the tenant's pre-restore copies and any restored copy a killed
    /// restore left: they are the tenant's data too, and its role owns them.
    fn destroy(&self, placement: &Placement) -> Result<()> {
        let mut admin = self.admin(None)?;
        let role = role_name(placement);
        if let Some(role) = &role {
            self.drop_copies_of(&mut admin, role)?;
        }
        if self.schema_mode() {
            let database = self.home_database()?;
            return schema::drop(&mut admin, &database, &placement.location, role.as_deref())
                .map_err(|e| self.fail(&e));
        }
        self.run(
            &mut admin,
            &format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                sql::ident(&placement.location)
            ),
        )?;
        if let Some(role) = role {
            self.run(&mut admin, &format!("DROP ROLE IF EXISTS {}", sql::ident(&role)))?;
        }
        Ok(())
    }

    fn purge_retired(&self, placement: &Placement) -> Result<()> {
        if placement.location.starts_with(RETIRED_PREFIX) {
            self.destroy(placement)?;
        }
        Ok(())
    }

    fn sweep_abandoned(&self, dead_owners: &[String]) -> Result<()> {
        let mut admin = self.admin(None)?;
        for name in self.tenant_names(&mut admin, STAGING_PREFIX)? {
            let abandoned = dead_owners.iter().any(|owner| {
                let prefix = staging_database(owner);
                // Same owner, whatever the random end.
                name.get(..prefix.len() - 8) == prefix.get(..prefix.len() - 8)
            });
            if abandoned {
                self.discard(&Provisioned {
                    staging: name,
                    schema_version: 0,
                    applied: Default::default(),
                    role_password: None,
                });
            }
        }
        Ok(())
    }

    fn abandoned_staging(&self, alive: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
        let mut admin = self.admin(None)?;
        Ok(self
            .tenant_names(&mut admin, STAGING_PREFIX)?
            .into_iter()
            .filter(|name| staging_owner(name).is_none_or(|owner| !alive(&owner)))
            .collect())
    }

    fn restore_leftovers(&self, remove: bool) -> Result<Vec<String>> {
        let mut admin = self.admin(None)?;
        let mut found: Vec<(bool, String)> = self
            .tenant_names(&mut admin, "tenant_")?
            .into_iter()
            .filter(|name| super::copies::is_restore_copy(name))
            .map(|name| (self.schema_mode(), name))
            .collect();
        let scratch = admin
            .query(
                "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
                &[&super::copies::SCRATCH_PREFIX],
            )
            .map_err(|e| self.fail(&e))?;
        found.extend(scratch.iter().map(|row| (false, row.get(0))));
        if remove {
            for (schema, name) in &found {
                let statement = match schema {
                    true => format!("DROP SCHEMA IF EXISTS {} CASCADE", sql::ident(name)),
                    false => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", sql::ident(name)),
                };
                self.run(&mut admin, &statement)?;
            }
        }
        Ok(found
            .into_iter()
            .map(|(_, name)| format!("{name} on server {}", self.row.name))
            .collect())
    }

    fn replication_leftovers(&self, in_use: &[String], remove: bool) -> Result<Vec<String>> {
        self.find_replication_leftovers(in_use, remove)
    }

    fn check_archive(&self, file: &Path, entry: &Entry) -> Result<()> {
        self.restore_to_check(file, entry)
    }

    fn kept_exists(&self, name: &str) -> Result<bool> {
        let mut admin = self.admin(None)?;
        self.tenant_exists(&mut admin, name)
    }

    fn drop_kept(&self, name: &str) -> Result<()> {
        if !super::copies::is_kept_name(name) {
            return Err(Error::refused(format!(
                "{name} on server {} is no pre-restore copy",
                self.row.name
            )));
        }
        let mut admin = self.admin(None)?;
        let statement = match self.schema_mode() {
            true => format!("DROP SCHEMA IF EXISTS {} CASCADE", sql::ident(name)),
            false => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", sql::ident(name)),
        };
        self.run(&mut admin, &statement)
    }

    fn unowned(&self, owned: &[Placement]) -> Result<Vec<(String, Placement)>> {
        let mut admin = self.admin(None)?;
        let mut found = Vec::new();
        for name in self.tenant_names(&mut admin, "tenant_")? {
            if super::copies::is_beside_name(&name) {
                continue;
            }
            let Some(slug) = slug_of(&name) else { continue };
            let placement = self.placement_for(&slug)?;
            if !owned.contains(&placement) {
                found.push((slug, placement));
            }
        }
        Ok(found)
    }

    fn view(&self, placement: &Placement) -> PlacementView {
        let (host, port) = PgUrl::from_stored(&self.row.url, None)
            .map(|url| url.host_and_port())
            .map_or((None, None), |(host, port)| (Some(host), Some(port)));
        PlacementView {
            engine: placement.engine,
            server: placement.server.clone(),
            path: None,
            host,
            port,
            database: Some(match self.schema_mode() {
                true => self.home_database().unwrap_or_default(),
                false => placement.location.clone(),
            }),
            schema: Some(match self.schema_mode() {
                true => placement.location.clone(),
                false => "public".to_string(),
            }),
            role: role_name(placement),
        }
    }

    /// Reads the server's free connections once; a server that does not answer gets
    /// one lane, on which its tenants fail at once. The admin login sees the type of
    /// its own roles' sessions only; another role's session shows none, but takes a
    /// connection all the same when it is in a database.
    fn connection_limit(&self, wanted: usize) -> usize {
        let free = self.admin(None).and_then(|mut admin| {
            let free = admin
                .query_one(
                    "SELECT current_setting('max_connections')::int
                          - current_setting('superuser_reserved_connections')::int
                          - (SELECT count(*) FROM pg_stat_activity
                             WHERE backend_type = 'client backend'
                                OR (backend_type IS NULL AND datid IS NOT NULL))::int",
                    &[],
                )
                .map(|row| row.get::<_, i32>(0))
                .map_err(|e| self.fail(&e));
            // Closed at once, before the fan-out's own connections count against the
            // bound: a tenant-role fan-out (db sql --all) cannot use it, nor, in
            // database mode, can any tenant.
            admin.discard();
            free
        });
        match free {
            // Room for the applications and the operator's own sessions.
            Ok(free) => wanted
                .min(usize::try_from(free - CONNECTION_MARGIN).unwrap_or(0))
                .max(1),
            Err(_) => 1,
        }
    }

    fn tenant(&self, placement: &Placement) -> Arc<dyn TenantDatabase> {
        Arc::new(PgTenant {
            placement: placement.clone(),
            server: PgEngine {
                row: self.row.clone(),
                home: self.home.clone(),
                shared: Arc::clone(&self.shared),
            },
        })
    }
}

/// The role of a tenant database: named for the live database, also while retired.
fn role_of(from: &Placement, to: &Placement) -> String {
    role_name(from).or_else(|| role_name(to)).unwrap_or_default()
}

/// The role a placement's database belongs to: its own name when live, the name
/// after the id when retired (`tenantctl_deleted_<id>_tenant_x`).
pub(super) fn role_name(placement: &Placement) -> Option<String> {
    let name = &placement.location;
    if name.starts_with("tenant_") {
        return Some(name.clone());
    }
    let rest = name.strip_prefix(RETIRED_PREFIX)?;
    let (_, role) = rest.split_once('_')?;
    role.starts_with("tenant_").then(|| role.to_string())
}

/// One tenant database on a PostgreSQL server.
pub struct PgTenant {
    pub(super) placement: Placement,
    pub(super) server: PgEngine,
}

impl PgTenant {
    pub(super) fn name(&self) -> &str {
        &self.placement.location
    }

    /// The database its data is in: its own, or in schema mode the server's.
    pub(super) fn database(&self) -> Result<String> {
        match self.server.schema_mode() {
            true => self.server.home_database(),
            false => Ok(self.name().to_string()),
        }
    }

    /// Connects as the tenant's own role with the password the catalog keeps for it;
    /// on a server already found down, fails at once like the pooled connections.
    fn as_tenant(&self) -> Result<Client> {
        let role = role_name(&self.placement).unwrap_or_default();
        let password = tenant_role_password(&self.server.home, &role)?;
        let mut url = self.server.admin_url()?;
        url.set_login(&role, password);
        self.server.shared.pool.connect_apart(&url, &self.database()?)
    }

    /// The migrations the tenant has applied, read on `admin` (connected to its
    /// database).
    fn read_applied(&self, admin: &mut Client) -> std::result::Result<Vec<MigrationId>, postgres::Error> {
        let schema = self.server.schema_mode().then(|| self.name());
        let history = migrate::history_table(schema);
        Ok(migrate::lock_and_read(admin, None, &history)?.unwrap_or_default())
    }

    /// Releases the tenant's advisory lock if `locked`; the connection goes back to
    /// the pool only when that worked, so no later step inherits the lock.
    fn end_session(&self, mut admin: Pooled<'_>, locked: bool) {
        if locked && migrate::unlock(&mut admin).is_err() {
            admin.discard();
        }
    }

    /// A migrate that failed on the server before it began: the tenant is where it was.
    /// An admin session in the tenant's database holding its advisory lock, the
    /// tenant's schema in schema mode, and its history (`None`: no history table yet).
    /// The lock is taken before the history is read, so a second migrate or rollback
    /// waits and then finds the work done rather than planning it again; a dry run
    /// changes nothing, so it takes no lock and waits for no one.
    #[allow(clippy::type_complexity)]
    fn open_history(
        &self,
        dry_run: bool,
        started: std::time::Instant,
    ) -> std::result::Result<(Pooled<'_>, Option<String>, Option<Vec<MigrationId>>), TenantRun> {
        let mut admin = self
            .database()
            .and_then(|db| self.server.admin(Some(&db)))
            .map_err(|err| TenantRun::failed_with(0, &err, started))?;
        let schema = self.server.schema_mode().then(|| self.name().to_string());
        let key = format!("tenantctl:{}", self.name());
        let lock_key = (!dry_run).then_some(key.as_str());
        let history = migrate::history_table(schema.as_deref());
        match migrate::lock_and_read(&mut admin, lock_key, &history) {
            Ok(applied) => Ok((admin, schema, applied)),
            Err(err) => Err(self.broken(admin, &err, started)),
        }
    }

    /// The run of a migration or rollback whose step `failed`: its transaction is
    /// rolled back, so the tenant is where it was (`run.applied`).
    fn failed_step(
        &self,
        admin: Pooled<'_>,
        mut run: TenantRun,
        failed: &migrate::Failed,
        started: std::time::Instant,
    ) -> TenantRun {
        if admin.is_closed() {
            // The connection broke: the transaction is rolled back (or, had the
            // COMMIT gone out, done; the next run reads which). When the server is
            // gone its other tenants need not try; when only this backend was
            // ended, the tenant failed like any other.
            let cause = format!("{}: {}", failed.migration, super::describe(&failed.error));
            admin.discard();
            let error = self
                .confirm_down(&cause)
                .unwrap_or_else(|| Error::unexpected(format!("{} failed: {cause}", self.describe())));
            return TenantRun::failed_with(run.from, &error, started);
        }
        run.outcome = crate::engine::Outcome::Failed;
        run.error = Some(format!(
            "{} failed: {}",
            failed.migration,
            super::describe(&failed.error)
        ));
        self.end_session(admin, true);
        run.millis = crate::engine::results::elapsed_ms(started);
        run
    }

    fn broken(&self, admin: Pooled<'_>, err: &postgres::Error, started: std::time::Instant) -> TenantRun {
        let closed = admin.is_closed();
        admin.discard();
        let error = match closed {
            true => self.confirm_down(&super::describe(err)),
            false => None,
        };
        TenantRun::failed_with(0, &error.unwrap_or_else(|| self.server.fail(err)), started)
    }

    /// After a connection broke under a step: the server-down error when the server
    /// will not take a fresh connection either, `None` when it is up.
    fn confirm_down(&self, cause: &str) -> Option<Error> {
        let url = self.server.admin_url().ok()?;
        let database = self.database().ok()?;
        self.server.shared.pool.confirm_down(&url, &database, cause)
    }

    /// The tenant's size, read on any connection to the server; in schema mode one
    /// to the database its schema is in.
    fn size_on(&self, admin: &mut Client) -> Result<u64> {
        let size = match self.server.schema_mode() {
            true => schema::size(admin, self.name()),
            false => admin
                .query_one("SELECT pg_database_size($1::text::name)", &[&self.name()])
                .map(|row| row.get::<_, i64>(0)),
        };
        Ok(u64::try_from(size.map_err(|e| self.server.fail(&e))?).unwrap_or(0))
    }
}

/// The password of tenant role `role`, from the catalog, decrypted.
fn tenant_role_password(home: &Home, role: &str) -> Result<Secret> {
    let conn = crate::catalog::Catalog::open_ready(&home.catalog())?;
    let (customer_id, stored) = crate::catalog::servers::role_password(conn.conn(), role)?
        .ok_or_else(|| Error::refused(format!("the catalog holds no password for tenant role {role}")))?;
    MasterKey::require(home)?.decrypt(&stored, &role_identity(customer_id))
}

/// The associated data that ties a tenant role's encrypted password to its customer.
pub fn role_identity(customer_id: i64) -> String {
    format!("tenant-role:{customer_id}")
}

impl TenantDatabase for PgTenant {
    fn placement(&self) -> &Placement {
        &self.placement
    }

    fn describe(&self) -> String {
        let kind = if self.server.schema_mode() {
            "schema"
        } else {
            "database"
        };
        format!("{kind} {} on server {}", self.name(), self.server.row.name)
    }

    fn exists(&self) -> bool {
        self.presence().unwrap_or(false)
    }

    fn presence(&self) -> Result<bool> {
        self.server
            .admin(None)
            .and_then(|mut admin| self.server.tenant_exists(&mut admin, self.name()))
    }

    fn check_own(&self) -> Result<()> {
        Ok(())
    }

    fn applied(&self) -> Result<Vec<MigrationId>> {
        let mut admin = self.server.admin(Some(&self.database()?))?;
        self.read_applied(&mut admin).map_err(|e| self.server.fail(&e))
    }

    /// Applies what is pending in one transaction, under a per-tenant advisory lock,
    /// as the tenant's own role, so what the migrations make belongs to the tenant.
    /// One connection does it all, in two round trips for one pending migration.
    fn migrate(&self, migrations: &[Migration], target: Option<i64>, dry_run: bool) -> TenantRun {
        let started = std::time::Instant::now();
        let (mut admin, schema, history) = match self.open_history(dry_run, started) {
            Ok(opened) => opened,
            Err(run) => return run,
        };
        let history_exists = history.is_some();
        let applied = history.unwrap_or_default();
        let before = applied.clone();
        let mut run = match crate::engine::plan::plan(applied, migrations, target, dry_run, started) {
            crate::engine::plan::Plan::Decided(run) => {
                self.end_session(admin, !dry_run);
                return run;
            }
            crate::engine::plan::Plan::Apply { run, .. } => run,
        };
        let pending: Vec<&Migration> = migrations
            .iter()
            .filter(|m| run.pending.contains(&i64::from(m.version())))
            .collect();
        let role = role_name(&self.placement).unwrap_or_default();
        match migrate::apply(&mut admin, &pending, &role, schema.as_deref(), history_exists) {
            Ok(()) => {
                run.outcome = crate::engine::Outcome::Migrated;
                run.to = *run.pending.last().unwrap_or(&run.from);
                let mut applied = before;
                applied.extend(pending.iter().map(|m| MigrationId::of(m)));
                run.applied = Some(applied);
                run.millis = crate::engine::results::elapsed_ms(started);
                // Committed and unlocked in one round trip: the session is clean.
                run
            }
            Err(failed) => {
                run.applied = Some(before);
                self.failed_step(admin, run, &failed, started)
            }
        }
    }

    fn roll_back(&self, migrations: &[Migration], downs: &[DownScript], to: i64, dry_run: bool) -> TenantRun {
        let started = std::time::Instant::now();
        let (mut admin, schema, history) = match self.open_history(dry_run, started) {
            Ok(opened) => opened,
            Err(run) => return run,
        };
        let applied = history.unwrap_or_default();
        let (run, steps) =
            match crate::engine::plan::plan_rollback(applied, migrations, downs, to, dry_run, started) {
                crate::engine::plan::Undo::Decided(run) => {
                    self.end_session(admin, !dry_run);
                    return run;
                }
                crate::engine::plan::Undo::Apply { run, steps } => (run, steps),
            };
        let role = role_name(&self.placement).unwrap_or_default();
        match migrate::undo(&mut admin, &steps, &role, schema.as_deref()) {
            Ok(()) => {
                let mut run = run;
                run.rolled_back(started);
                run
            }
            Err(failed) => self.failed_step(admin, run, &failed, started),
        }
    }

    fn query(
        &self,
        statement: &str,
        write: bool,
        timeout: Duration,
        sink: &mut dyn RowSink,
    ) -> Result<Finished> {
        let mut client = self.as_tenant()?;
        sql::stream(&mut client, statement, write, timeout, sink)
            .map_err(|e| e.into_error(&self.server.row.name, timeout))
    }

    fn script(&self, script: &str, write: bool, timeout: Duration) -> Result<ScriptOutcome> {
        let mut client = self.as_tenant()?;
        sql::run_script(&mut client, script, write, timeout)
            .map_err(|e| e.into_error(&self.server.row.name, timeout))
    }

    fn size_bytes(&self) -> u64 {
        self.measured_bytes().unwrap_or(0)
    }

    fn measured_bytes(&self) -> Result<u64> {
        let mut admin = self.server.admin(None)?;
        self.size_on(&mut admin)
    }

    fn check(&self) -> Result<()> {
        let mut admin = self.server.admin(Some(&self.database()?))?;
        if !self.server.tenant_exists(&mut admin, self.name())? {
            return Err(Error::verification(format!("{} is missing", self.describe())));
        }
        Ok(())
    }

    fn change_stamp(&self) -> Option<String> {
        None
    }

    /// Sizes are read on the same connection, so a vacuum holds one per tenant.
    fn vacuum(&self) -> Result<Vacuumed> {
        let mut admin = self.server.admin(Some(&self.database()?))?;
        let bytes_before = self.size_on(&mut admin)?;
        match self.server.schema_mode() {
            true => schema::vacuum(&mut admin, self.name()).map_err(|e| self.server.fail(&e))?,
            false => self.server.run(&mut admin, "VACUUM (ANALYZE)")?,
        }
        Ok(Vacuumed {
            bytes_before,
            bytes_after: self.size_on(&mut admin)?,
        })
    }

    fn quiesce(&self) -> Result<()> {
        Ok(())
    }

    fn back_up(&self, target: &BackupTarget<'_>) -> Result<BackedUp> {
        self.dump_into(target)
    }

    /// Its sessions are ended by the swap itself, under NOLOGIN.
    fn refuse_if_in_use(&self) -> Result<()> {
        Ok(())
    }

    fn stage_restore(&self, _run: &StagingRun, source: &RestoreSource<'_>) -> Result<Staged> {
        self.stage(source)
    }

    fn swap_in(&self, staged: &Staged) -> Result<()> {
        self.complete_swap(staged, None)
    }

    /// Renames on the server are durable when they return.
    fn swap_in_unsynced(&self, staged: &Staged) -> Result<Option<PathBuf>> {
        self.complete_swap(staged, None).map(|()| None)
    }

    fn discard_staged(&self, staged: &Staged) {
        self.drop_staged(staged);
    }

    fn copy_extension(&self) -> &'static str {
        "dump"
    }

    fn kept_copy(&self, staged: &Staged, customer_id: i64, slug: &str) -> Option<Entry> {
        self.kept_entry(staged, customer_id, slug)
    }

    fn finish_swap(&self, staged: &Staged, login: bool) -> Result<()> {
        self.complete_swap(staged, Some(login))
    }

    fn set_password(&self, password: &Secret) -> Result<()> {
        let mut admin = self.server.admin(None)?;
        let role = role_name(&self.placement).unwrap_or_default();
        let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
        self.server.run(
            &mut admin,
            &format!("ALTER ROLE {} PASSWORD '{verifier}'", sql::ident(&role)),
        )
    }

    fn set_login(&self, allowed: bool) -> Result<()> {
        let mut admin = self.server.admin(None)?;
        let role = role_name(&self.placement).unwrap_or_default();
        self.server.set_login(&mut admin, &role, allowed)
    }

    fn freeze(&self) -> Result<crate::engine::WriteFreeze> {
        TenantDatabase::set_login(self, false)?;
        Ok(crate::engine::WriteFreeze::lasting())
    }

    fn tables(&self) -> Result<Vec<TableShape>> {
        self.shapes()
    }

    fn read_rows(&self, table: &TableShape, each: &mut dyn FnMut(Vec<Cell>) -> Result<()>) -> Result<()> {
        self.copy_rows_out(table, each)
    }

    fn write_rows(
        &self,
        table: &TableShape,
        next: &mut dyn FnMut() -> Result<Option<Vec<Cell>>>,
    ) -> Result<u64> {
        self.copy_rows_in(table, next)
    }

    fn count_rows(&self, table: &TableShape) -> Result<u64> {
        self.exact_count(table)
    }

    fn advance_sequences(&self) -> Result<()> {
        self.move_sequences_past_ids()
    }

    fn native_digest(&self, table: &TableShape) -> Result<Option<String>> {
        self.server_digest(table).map(Some)
    }

    fn replication(&self) -> Option<&dyn crate::engine::Replication> {
        Some(self)
    }

    fn dump_source(&self) -> Option<Result<crate::engine::DumpSource>> {
        if self.server.schema_mode() {
            return None;
        }
        Some(self.server.dump_tools().and_then(|tools| {
            Ok(crate::engine::DumpSource {
                program: tools.pg_dump,
                env: self.server.admin_url()?.tool_env(self.name()),
                options: None,
                database: None,
            })
        }))
    }

    fn copy_whole_from(&self, source: &dyn TenantDatabase) -> Result<()> {
        let from = source
            .dump_source()
            .ok_or_else(|| Error::refused(format!("{} cannot be copied whole", source.describe())))??;
        let tools = self.server.dump_tools()?;
        let to = self.server.admin_url()?.tool_env(self.name());
        super::archive::pipe(&from.program, &from.env, &tools, &to, self.name(), TEMPLATE_OWNER)?.map_err(
            |failed| {
                Error::unexpected(format!(
                    "copying {} into {}: {}",
                    source.describe(),
                    self.describe(),
                    failed.0
                ))
            },
        )
    }

    /// One query on an admin connection, back in the pool for the next check of the tenant.
    fn access_problems(&self) -> Result<Vec<AccessFinding>> {
        let query = match self.server.schema_mode() {
            true => "SELECT pg_get_userbyid(nspowner)::text, false FROM pg_namespace WHERE nspname = $1",
            false => {
                "SELECT pg_get_userbyid(datdba)::text, has_database_privilege('public', oid, 'CONNECT')
                 FROM pg_database WHERE datname = $1"
            }
        };
        let mut admin = self.server.admin(None)?;
        let row = admin
            .query_opt(query, &[&self.name()])
            .map_err(|e| self.server.fail(&e))?;
        drop(admin);
        let Some(row) = row else { return Ok(Vec::new()) };
        let (owner, public_connect): (String, bool) = (row.get(0), row.get(1));
        let role = role_name(&self.placement).unwrap_or_default();
        let mut found = Vec::new();
        if owner != role {
            found.push(AccessFinding {
                problem: AccessProblem::NotOwnedByTenantRole,
                message: format!("{} is owned by {owner}, not by its role {role}", self.describe()),
            });
        }
        if public_connect {
            found.push(AccessFinding {
                problem: AccessProblem::OpenToPublic,
                message: format!(
                    "{} lets every role connect (CONNECT granted to PUBLIC)",
                    self.describe()
                ),
            });
        }
        Ok(found)
    }

    fn repair_access(&self, problem: AccessProblem) -> Result<String> {
        let role = role_name(&self.placement).unwrap_or_default();
        let (name, role_ident) = (sql::ident(self.name()), sql::ident(&role));
        let (statement, done) = match (problem, self.server.schema_mode()) {
            (AccessProblem::NotOwnedByTenantRole, true) => (
                format!("ALTER SCHEMA {name} OWNER TO {role_ident}"),
                format!("given back to {role}"),
            ),
            (AccessProblem::NotOwnedByTenantRole, false) => (
                format!("ALTER DATABASE {name} OWNER TO {role_ident}"),
                format!("given back to {role}"),
            ),
            // As publishing left it: PUBLIC has nothing on a tenant database.
            (AccessProblem::OpenToPublic, false) => (
                format!("REVOKE ALL ON DATABASE {name} FROM PUBLIC"),
                "revoked from PUBLIC".to_string(),
            ),
            (AccessProblem::OpenToPublic, true) => {
                return Err(Error::refused(format!(
                    "{} shares its database with other tenants; its grants are the server's",
                    self.describe()
                )));
            }
        };
        let mut admin = self.server.admin(None)?;
        self.server.run(&mut admin, &statement)?;
        Ok(done)
    }
}
