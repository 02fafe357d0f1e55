//! Tenants on a MySQL or MariaDB server: one database per tenant, built by replaying
//! the engine's migrations (MySQL has no template databases), reachable by a login
//! user of its own (`tenant_x@'%'` and `@'localhost'`) that holds every privilege on
//! that database and nothing else. The admin login builds, moves and drops them;
//! the operator's SQL runs as the tenant's user, so the server's grants keep it
//! inside its tenant.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mysql::Conn;
use mysql::prelude::Queryable;
use refinery::Migration;
use sha1::{Digest, Sha1};

use super::migrate;
use super::names::{self, RETIRED_PREFIX, STAGING_PREFIX, ident, literal};
use super::pool::{Pool, Pooled};
use super::tables::move_contents;
use super::{MyUrl, sql};
use crate::backup::Entry;
use crate::backup::restore::StagingRun;
use crate::catalog::servers::ServerRow;
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

/// Connections a fan-out leaves free on a server, beyond those already in use.
const CONNECTION_MARGIN: i64 = 5;
/// The hosts each tenant user is made for: any (`%`) and, since MySQL matches a
/// socket login against `localhost` first, that one too.
const HOSTS: [&str; 2] = ["%", "localhost"];

/// One MySQL server of the home, as the catalog lists it.
pub struct MyEngine {
    pub(super) row: ServerRow,
    home: Home,
    shared: Arc<Shared>,
}

struct Shared {
    url: OnceLock<MyUrl>,
    pool: Pool,
}

impl MyEngine {
    pub fn new(row: ServerRow, home: &Home) -> Self {
        MyEngine {
            shared: Arc::new(Shared {
                url: OnceLock::new(),
                pool: Pool::new(&row.name),
            }),
            row,
            home: home.clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.row.name
    }

    /// MariaDB and MySQL differ in a few statements (timeouts, password hashes).
    pub(super) fn mariadb(&self) -> bool {
        self.row.version.contains("MariaDB")
    }

    pub(super) fn admin_url(&self) -> Result<MyUrl> {
        if let Some(url) = self.shared.url.get() {
            return Ok(url.clone());
        }
        let password = match &self.row.password {
            Some(stored) => Some(MasterKey::require(&self.home)?.decrypt(
                stored,
                &crate::engine::postgres::tenant::server_identity(&self.row.name),
            )?),
            None => None,
        };
        let url = MyUrl::from_stored(&self.row.url, password)?;
        Ok(self.shared.url.get_or_init(|| url).clone())
    }

    pub(super) fn admin(&self) -> Result<Pooled<'_>> {
        self.shared.pool.get(&self.admin_url()?)
    }

    /// A failed statement: the server-down error when it stopped answering.
    pub(super) fn fail(&self, err: &mysql::Error) -> Error {
        if let Ok(url) = self.admin_url()
            && let Some(down) = self.shared.pool.confirm_down(&url, err)
        {
            return down;
        }
        Error::unexpected(format!("server {}: {}", self.row.name, super::describe(err)))
    }

    pub(super) fn run(&self, conn: &mut Conn, statement: &str) -> Result<()> {
        conn.query_drop(statement).map_err(|e| self.fail(&e))
    }

    pub(super) fn database_exists(&self, conn: &mut Conn, name: &str) -> Result<bool> {
        let found: Option<String> = conn
            .exec_first(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?",
                (name,),
            )
            .map_err(|e| self.fail(&e))?;
        Ok(found.is_some())
    }

    fn user_exists(&self, conn: &mut Conn, user: &str) -> Result<bool> {
        let found: Option<i64> = conn
            .exec_first("SELECT COUNT(*) FROM mysql.user WHERE user = ?", (user,))
            .map_err(|e| self.fail(&e))?;
        Ok(found.unwrap_or(0) > 0)
    }

    /// Databases whose names start with `prefix`.
    pub(super) fn databases_named(&self, conn: &mut Conn, prefix: &str) -> Result<Vec<String>> {
        let names: Vec<String> = conn
            .exec(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE ? ORDER BY 1",
                (format!("{}%", prefix.replace('_', "\\_")),),
            )
            .map_err(|e| self.fail(&e))?;
        Ok(names)
    }

    pub(super) fn drop_database(&self, conn: &mut Conn, name: &str) -> Result<()> {
        self.run(conn, &format!("DROP DATABASE IF EXISTS {}", ident(name)))
    }

    /// The account clause for `user` at every host it is made for.
    fn accounts(user: &str) -> String {
        HOSTS
            .iter()
            .map(|host| format!("{}@{}", literal(user), literal(host)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// How a password is given to the server: as its hash, so the plaintext never
    /// reaches the server's logs.
    fn identified_by(&self, password: &Secret) -> String {
        let hash = native_password_hash(password.expose());
        match self.mariadb() {
            true => format!("IDENTIFIED BY PASSWORD '{hash}'"),
            false => format!("IDENTIFIED WITH mysql_native_password AS '{hash}'"),
        }
    }

    fn create_user(&self, conn: &mut Conn, user: &str, database: &str, password: &Secret) -> Result<()> {
        let by = self.identified_by(password);
        for host in HOSTS {
            self.run(
                conn,
                &format!("CREATE USER {}@{} {by}", literal(user), literal(host)),
            )?;
            self.run(
                conn,
                &format!(
                    "GRANT ALL PRIVILEGES ON {}.* TO {}@{}",
                    ident(database),
                    literal(user),
                    literal(host)
                ),
            )?;
        }
        Ok(())
    }

    fn drop_user(&self, conn: &mut Conn, user: &str) -> Result<()> {
        self.run(conn, &format!("DROP USER IF EXISTS {}", Self::accounts(user)))
    }

    /// Locks or unlocks the tenant's user; locking also ends its sessions and waits
    /// until they are gone, so nothing it had open goes on writing.
    pub(super) fn set_login(&self, conn: &mut Conn, user: &str, allowed: bool) -> Result<()> {
        if !self.user_exists(conn, user)? {
            return Ok(());
        }
        let lock = if allowed { "ACCOUNT UNLOCK" } else { "ACCOUNT LOCK" };
        self.run(conn, &format!("ALTER USER {} {lock}", Self::accounts(user)))?;
        if !allowed {
            self.end_sessions_of(conn, user)?;
        }
        Ok(())
    }

    fn end_sessions_of(&self, conn: &mut Conn, user: &str) -> Result<()> {
        for _ in 0..50 {
            let ids: Vec<u64> = conn
                .exec(
                    "SELECT id FROM information_schema.processlist WHERE user = ? AND id <> CONNECTION_ID()",
                    (user,),
                )
                .map_err(|e| self.fail(&e))?;
            if ids.is_empty() {
                return Ok(());
            }
            for id in ids {
                // Gone already is fine (1094: unknown thread).
                match conn.query_drop(format!("KILL CONNECTION {id}")) {
                    Ok(()) => {}
                    Err(mysql::Error::MySqlError(e)) if e.code == 1094 => {}
                    Err(e) => return Err(self.fail(&e)),
                }
            }
            std::thread::yield_now();
        }
        Err(Error::unexpected(format!(
            "server {}: the sessions of {user} keep coming back after ACCOUNT LOCK",
            self.row.name
        )))
    }

    pub(super) fn can_login(&self, conn: &mut Conn, user: &str) -> Result<bool> {
        // JSON_VALUE is NULL for an account never locked.
        let locked: Option<Option<String>> = conn
            .exec_first(
                "SELECT JSON_VALUE(priv, '$.account_locked') FROM mysql.global_priv WHERE user = ? LIMIT 1",
                (user,),
            )
            .or_else(|_| {
                conn.exec_first(
                    "SELECT account_locked FROM mysql.user WHERE user = ? LIMIT 1",
                    (user,),
                )
            })
            .map_err(|e| self.fail(&e))?;
        Ok(!matches!(locked.flatten().as_deref(), Some("true" | "Y" | "1")))
    }

    /// Builds a database under `staging` at the newest of `migrations`.
    fn build(&self, staging: &str, migrations: &[Migration]) -> Result<()> {
        let mut admin = self.admin()?;
        self.run(
            &mut admin,
            &format!(
                "CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
                ident(staging)
            ),
        )?;
        let pending: Vec<&Migration> = migrations.iter().collect();
        let (_, failed) = migrate::apply(&mut admin, staging, &pending);
        // The migrations left the connection in the staging database.
        admin.discard();
        match failed {
            None => Ok(()),
            Some(failed) => {
                if let Some(err) = &failed.error
                    && super::says_down(err)
                {
                    return Err(self.fail(err));
                }
                Err(Error::invalid_input(format!(
                    "a MySQL tenant migration failed on server {}: {}: {}",
                    self.row.name, failed.migration, failed.message
                ))
                .with_hint("fix the migration in tenant-migrations/mysql/ and try again"))
            }
        }
    }

    pub(super) fn home_root(&self) -> &Path {
        self.home.root()
    }

    pub(super) fn pool(&self) -> &Pool {
        &self.shared.pool
    }
}

/// MySQL's `mysql_native_password` hash: `*` and the hex of SHA1(SHA1(password)).
fn native_password_hash(password: &str) -> String {
    let inner = Sha1::digest(password.as_bytes());
    let outer = Sha1::digest(inner);
    format!(
        "*{}",
        outer.iter().map(|b| format!("{b:02X}")).collect::<String>()
    )
}

/// The login user of the tenant at `placement`: named for its live database, also
/// while retired (`tenantctl_deleted_<id>_<user>`).
pub(super) fn user_of(placement: &Placement) -> Option<String> {
    let name = &placement.location;
    if name.starts_with("tenant_") {
        return Some(names::tenant_user(name));
    }
    let rest = name.strip_prefix(RETIRED_PREFIX)?;
    let (_, user) = rest.split_once('_')?;
    user.starts_with("tenant_").then(|| user.to_string())
}

impl Engine for MyEngine {
    fn placement_for(&self, slug: &str) -> Result<Placement> {
        Ok(Placement {
            engine: EngineKind::Mysql,
            server: self.row.name.clone(),
            location: names::tenant_database(slug)?,
        })
    }

    fn retired_placement(&self, slug: &str, customer_id: i64) -> Result<Placement> {
        let user = names::tenant_user(&names::tenant_database(slug)?);
        Ok(Placement {
            engine: EngineKind::Mysql,
            server: self.row.name.clone(),
            location: names::fit(
                &format!("{RETIRED_PREFIX}{customer_id}_{user}"),
                names::DATABASE_LIMIT,
            ),
        })
    }

    fn provision(&self, migrations: &[Migration], owner: &str) -> Result<Provisioned> {
        let staging = names::staging_database(owner);
        let provisioned = Provisioned {
            staging: staging.clone(),
            schema_version: crate::migrations::newest_version(migrations),
            applied: migrations.iter().map(MigrationId::of).collect(),
            role_password: Some(Secret::generate()),
        };
        if let Err(err) = self.build(&staging, migrations) {
            self.discard(&provisioned);
            return Err(err);
        }
        Ok(provisioned)
    }

    fn provision_many(
        &self,
        migrations: &[Migration],
        count: usize,
        jobs: usize,
        owner: &str,
    ) -> Result<Vec<Provisioned>> {
        let lanes = self.connection_limit(jobs.max(1)).min(count.max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let built = std::sync::Mutex::new(Vec::with_capacity(count));
        let failure = std::sync::Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..lanes {
                scope.spawn(|| {
                    while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < count {
                        if failure.lock().map(|f| f.is_some()).unwrap_or(true) {
                            return;
                        }
                        match self.provision(migrations, owner) {
                            Ok(one) => built.lock().expect("no panic holds it").push(one),
                            Err(err) => {
                                failure.lock().expect("no panic holds it").get_or_insert(err);
                            }
                        }
                    }
                });
            }
        });
        let built = built.into_inner().expect("no panic holds it");
        match failure.into_inner().expect("no panic holds it") {
            Some(err) => {
                built.iter().for_each(|b| self.discard(b));
                Err(err)
            }
            None => Ok(built),
        }
    }

    /// Moves the staging tables into the tenant's own database and makes its user;
    /// a failure part way puts the tables back and drops what it made.
    fn publish(&self, provisioned: &Provisioned, placement: &Placement) -> Result<()> {
        let password = provisioned
            .role_password
            .as_ref()
            .ok_or_else(|| Error::unexpected("a MySQL tenant needs a password for its user"))?;
        let name = &placement.location;
        let user = names::tenant_user(name);
        let mut admin = self.admin()?;
        if self.database_exists(&mut admin, name)? || self.user_exists(&mut admin, &user)? {
            return Err(
                Error::conflict(format!("{name} already exists on server {}", self.row.name))
                    .with_hint("no customer owns it; run 'tenantctl doctor'"),
            );
        }
        self.run(
            &mut admin,
            &format!(
                "CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
                ident(name)
            ),
        )?;
        let published = move_contents(&mut admin, &[(&provisioned.staging, name)])
            .map_err(|e| self.fail(&e))
            .and_then(|()| self.create_user(&mut admin, &user, name, password));
        if let Err(err) = published {
            let _ = move_contents(&mut admin, &[(name, &provisioned.staging)]);
            let _ = self.drop_database(&mut admin, name);
            let _ = self.drop_user(&mut admin, &user);
            return Err(err);
        }
        self.drop_database(&mut admin, &provisioned.staging)
    }

    fn refuse_taken(&self, placement: &Placement) -> Result<()> {
        let mut admin = self.admin()?;
        let name = &placement.location;
        let taken = match self.database_exists(&mut admin, name)? {
            true => Some("database"),
            false => self
                .user_exists(&mut admin, &names::tenant_user(name))?
                .then_some("user"),
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

    /// Another MySQL server's tenant, by `mariadb-dump` piped into the client, when
    /// this machine has both.
    fn can_copy_whole(&self, source: &dyn TenantDatabase) -> bool {
        source.placement().engine == EngineKind::Mysql && super::my_tools(&self.row.name).is_ok()
    }

    fn provision_empty(&self, owner: &str) -> Result<Provisioned> {
        let staging = names::staging_database(owner);
        let mut admin = self.admin()?;
        self.run(
            &mut admin,
            &format!(
                "CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
                ident(&staging)
            ),
        )?;
        Ok(Provisioned {
            staging,
            schema_version: 0,
            applied: Default::default(),
            role_password: Some(Secret::generate()),
        })
    }

    fn discard(&self, provisioned: &Provisioned) {
        if let Ok(mut admin) = self.admin() {
            let _ = self.drop_database(&mut admin, &provisioned.staging);
        }
    }

    /// Moves the tables to the other name (retiring on delete, back on undelete); the
    /// user keeps its name and is locked when the database retires.
    fn relocate(&self, from: &Placement, to: &Placement) -> Result<()> {
        let mut admin = self.admin()?;
        let user = user_of(from).or_else(|| user_of(to)).unwrap_or_default();
        let retiring = to.location.starts_with(RETIRED_PREFIX);
        if retiring {
            self.set_login(&mut admin, &user, false)?;
        }
        if self.database_exists(&mut admin, &to.location)? {
            return Err(Error::conflict(format!(
                "{} already exists on server {}",
                to.location, self.row.name
            )));
        }
        self.run(
            &mut admin,
            &format!(
                "CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
                ident(&to.location)
            ),
        )?;
        move_contents(&mut admin, &[(&from.location, &to.location)]).map_err(|e| self.fail(&e))?;
        // The user's grants follow its data.
        for host in HOSTS {
            let account = format!("{}@{}", literal(&user), literal(host));
            let _ = admin.query_drop(format!(
                "REVOKE ALL PRIVILEGES ON {}.* FROM {account}",
                ident(&from.location)
            ));
            self.run(
                &mut admin,
                &format!("GRANT ALL PRIVILEGES ON {}.* TO {account}", ident(&to.location)),
            )?;
        }
        self.drop_database(&mut admin, &from.location)
    }

    fn destroy(&self, placement: &Placement) -> Result<()> {
        let mut admin = self.admin()?;
        if placement.location.starts_with("tenant_") {
            for copy in self.databases_named(&mut admin, &placement.location)? {
                if copy.starts_with(&format!("{}__", placement.location)) && names::is_beside_name(&copy) {
                    self.drop_database(&mut admin, &copy)?;
                }
            }
        }
        self.drop_database(&mut admin, &placement.location)?;
        if let Some(user) = user_of(placement) {
            self.drop_user(&mut admin, &user)?;
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
        let mut admin = self.admin()?;
        for name in self.databases_named(&mut admin, STAGING_PREFIX)? {
            if names::staging_owner(&name).is_some_and(|owner| dead_owners.contains(&owner)) {
                self.drop_database(&mut admin, &name)?;
            }
        }
        Ok(())
    }

    fn abandoned_staging(&self, alive: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
        let mut admin = self.admin()?;
        Ok(self
            .databases_named(&mut admin, STAGING_PREFIX)?
            .into_iter()
            .filter(|name| names::staging_owner(name).is_none_or(|owner| !alive(&owner)))
            .collect())
    }

    fn restore_leftovers(&self, remove: bool) -> Result<Vec<String>> {
        self.find_restore_leftovers(remove)
    }

    fn check_archive(&self, file: &Path, entry: &Entry) -> Result<()> {
        self.restore_to_check(file, entry)
    }

    fn kept_exists(&self, name: &str) -> Result<bool> {
        let mut admin = self.admin()?;
        self.database_exists(&mut admin, name)
    }

    fn drop_kept(&self, name: &str) -> Result<()> {
        if !names::is_kept_name(name) {
            return Err(Error::refused(format!(
                "{name} on server {} is no pre-restore copy",
                self.row.name
            )));
        }
        let mut admin = self.admin()?;
        self.drop_database(&mut admin, name)
    }

    fn unowned(&self, owned: &[Placement]) -> Result<Vec<(String, Placement)>> {
        let mut admin = self.admin()?;
        let mut found = Vec::new();
        for name in self.databases_named(&mut admin, "tenant_")? {
            if names::is_beside_name(&name) {
                continue;
            }
            let Some(slug) = names::slug_of(&name) else {
                continue;
            };
            let placement = self.placement_for(&slug)?;
            if placement.location == name && !owned.contains(&placement) {
                found.push((slug, placement));
            }
        }
        Ok(found)
    }

    fn view(&self, placement: &Placement) -> PlacementView {
        let (host, port) = MyUrl::from_stored(&self.row.url, None)
            .map(|url| url.host_and_port())
            .map_or((None, None), |(host, port)| (Some(host), Some(port)));
        PlacementView {
            engine: placement.engine,
            server: placement.server.clone(),
            path: None,
            host,
            port,
            database: Some(placement.location.clone()),
            schema: None,
            role: user_of(placement),
        }
    }

    /// Reads the server's free connections once; a server that does not answer gets
    /// one lane, on which its tenants fail at once.
    fn connection_limit(&self, wanted: usize) -> usize {
        let free = self.admin().and_then(|mut admin| {
            let free: Option<i64> = admin
                .query_first(
                    "SELECT @@max_connections - (SELECT COUNT(*) FROM information_schema.processlist)",
                )
                .map_err(|e| self.fail(&e))?;
            admin.discard();
            Ok(free.unwrap_or(0))
        });
        match free {
            Ok(free) => wanted
                .min(usize::try_from(free - CONNECTION_MARGIN).unwrap_or(0))
                .max(1),
            Err(_) => 1,
        }
    }

    fn tenant(&self, placement: &Placement) -> Arc<dyn TenantDatabase> {
        Arc::new(MyTenant {
            placement: placement.clone(),
            server: MyEngine {
                row: self.row.clone(),
                home: self.home.clone(),
                shared: self.shared.clone(),
            },
        })
    }
}

/// One tenant database on a MySQL server.
pub struct MyTenant {
    pub(super) placement: Placement,
    pub(super) server: MyEngine,
}

impl MyTenant {
    pub(super) fn name(&self) -> &str {
        &self.placement.location
    }

    pub(super) fn user(&self) -> String {
        user_of(&self.placement).unwrap_or_default()
    }

    /// Connects as the tenant's own user with the password the catalog keeps, into
    /// its database.
    pub(super) fn as_tenant(&self) -> Result<Conn> {
        let password = tenant_password(&self.server.home, self.name())?;
        let url = self.server.admin_url()?;
        let mut conn = self
            .server
            .shared
            .pool
            .connect_as(&url, &self.user(), &password)?;
        conn.query_drop(format!("USE {}", ident(self.name())))
            .map_err(|e| self.server.fail(&e))?;
        Ok(conn)
    }

    /// The bytes its tables take on disk: InnoDB's tablespace files (MariaDB's
    /// `INNODB_SYS_TABLESPACES`, MySQL's `INNODB_TABLESPACES`), which grow as rows
    /// are written; `information_schema.tables` figures lag until the next ANALYZE.
    /// Tables of other engines count by those figures.
    fn size_on(&self, admin: &mut Conn) -> Result<u64> {
        let pattern = format!("{}/%", self.name().replace('_', "\\_"));
        let mut files = None;
        for view in ["INNODB_SYS_TABLESPACES", "INNODB_TABLESPACES"] {
            let query = format!(
                "SELECT CAST(COALESCE(SUM(file_size), 0) AS UNSIGNED) FROM information_schema.{view} WHERE name LIKE ?"
            );
            if let Ok(found) = admin.exec_first::<u64, _, _>(query, (&pattern,)) {
                files = found;
                break;
            }
        }
        let others: Option<Option<u64>> = admin
            .exec_first(
                "SELECT CAST(SUM(data_length + index_length) AS UNSIGNED) FROM information_schema.tables \
                 WHERE table_schema = ? AND (engine IS NULL OR engine <> 'InnoDB' OR ? = 0)",
                (self.name(), u8::from(files.is_some())),
            )
            .map_err(|e| self.server.fail(&e))?;
        Ok(files.unwrap_or(0) + others.flatten().unwrap_or(0))
    }

    /// An admin session on the tenant's migration lock (none for a dry run) and its
    /// history, refused as a failed run when the server cannot be reached, the lock
    /// stays taken, or something was left part way (see [`migrate::unfinished`]).
    fn open_history(
        &self,
        rolling_back: bool,
        dry_run: bool,
        started: Instant,
    ) -> std::result::Result<(Pooled<'_>, Vec<MigrationId>), TenantRun> {
        let mut admin = self
            .server
            .admin()
            .map_err(|err| TenantRun::failed_with(0, &err, started))?;
        if !dry_run {
            match migrate::lock(&mut admin, self.name()) {
                Ok(true) => {}
                Ok(false) => {
                    let err =
                        Error::refused(format!("{} stays locked by another migration", self.describe()));
                    return Err(TenantRun::failed_with(0, &err, started));
                }
                Err(err) => return Err(self.failed_run(0, &err, started)),
            }
        }
        let applied = match migrate::read(&mut admin, self.name()) {
            Ok(applied) => applied.unwrap_or_default(),
            Err(err) => return Err(self.failed_run(0, &err, started)),
        };
        match self.refuse_unfinished(&mut admin, &applied, rolling_back, dry_run, started) {
            Some(run) => Err(run),
            None => Ok((admin, applied)),
        }
    }

    /// A failed run when a killed or failed run left a migration or a down script part
    /// way that must be finished first (see [`migrate::unfinished`]); the lock is let go.
    fn refuse_unfinished(
        &self,
        admin: &mut Conn,
        applied: &[MigrationId],
        rolling_back: bool,
        dry_run: bool,
        started: Instant,
    ) -> Option<TenantRun> {
        let from = applied.iter().map(|m| m.version).max().unwrap_or(0);
        let problem = match migrate::unfinished(admin, self.name(), applied, rolling_back) {
            Ok(None) => return None,
            Ok(Some(problem)) => problem,
            Err(err) => return Some(self.failed_run(from, &err, started)),
        };
        if !dry_run {
            migrate::unlock(admin, self.name());
        }
        let mut run = TenantRun::failed(from, crate::engine::Outcome::Failed, problem, started);
        run.applied = Some(applied.to_vec());
        Some(run)
    }

    fn failed_run(&self, from: i64, err: &mysql::Error, started: Instant) -> TenantRun {
        TenantRun::failed_with(from, &self.server.fail(err), started)
    }
}

/// The password of the tenant whose live database is `database`, from the catalog.
fn tenant_password(home: &Home, database: &str) -> Result<Secret> {
    let conn = crate::catalog::Catalog::open_ready(&home.catalog())?;
    let (customer_id, stored) =
        crate::catalog::servers::role_password(conn.conn(), database)?.ok_or_else(|| {
            Error::refused(format!(
                "the catalog holds no password for the user of {database}"
            ))
        })?;
    MasterKey::require(home)?.decrypt(&stored, &crate::engine::postgres::role_identity(customer_id))
}

impl TenantDatabase for MyTenant {
    fn placement(&self) -> &Placement {
        &self.placement
    }

    fn describe(&self) -> String {
        format!("database {} on server {}", self.name(), self.server.row.name)
    }

    fn exists(&self) -> bool {
        self.presence().unwrap_or(false)
    }

    fn presence(&self) -> Result<bool> {
        let mut admin = self.server.admin()?;
        self.server.database_exists(&mut admin, self.name())
    }

    fn check_own(&self) -> Result<()> {
        Ok(())
    }

    fn applied(&self) -> Result<Vec<MigrationId>> {
        let mut admin = self.server.admin()?;
        Ok(migrate::read(&mut admin, self.name())
            .map_err(|e| self.server.fail(&e))?
            .unwrap_or_default())
    }

    /// Applies what is pending under the tenant's migration lock, statement by
    /// statement with its progress recorded (see [`migrate`]).
    fn migrate(&self, migrations: &[Migration], target: Option<i64>, dry_run: bool) -> TenantRun {
        let started = Instant::now();
        let (mut admin, applied) = match self.open_history(false, dry_run, started) {
            Ok(opened) => opened,
            Err(run) => return run,
        };
        let before = applied.clone();
        let mut run = match crate::engine::plan::plan(applied, migrations, target, dry_run, started) {
            crate::engine::plan::Plan::Decided(run) => {
                if !dry_run {
                    migrate::unlock(&mut admin, self.name());
                }
                return run;
            }
            crate::engine::plan::Plan::Apply { run, .. } => run,
        };
        let pending: Vec<&Migration> = migrations
            .iter()
            .filter(|m| run.pending.contains(&i64::from(m.version())))
            .collect();
        let (done, failed) = migrate::apply(&mut admin, self.name(), &pending);
        let mut applied = before;
        applied.extend(done.iter().cloned());
        run.to = applied.iter().map(|m| m.version).max().unwrap_or(0);
        run.applied = Some(applied);
        match failed {
            None => run.outcome = crate::engine::Outcome::Migrated,
            Some(failed) => {
                if let (Some(err), Ok(url)) = (&failed.error, self.server.admin_url())
                    && let Some(down) = self.server.pool().confirm_down(&url, err)
                {
                    let mut down_run = TenantRun::failed_with(run.from, &down, started);
                    down_run.applied = run.applied;
                    down_run.to = run.to;
                    return down_run;
                }
                run.outcome = crate::engine::Outcome::Failed;
                run.error = Some(format!("{} failed: {}", failed.migration, failed.message));
            }
        }
        migrate::unlock(&mut admin, self.name());
        // The migrations left the session in the tenant's database.
        admin.discard();
        run.millis = crate::engine::results::elapsed_ms(started);
        run
    }

    fn roll_back(&self, migrations: &[Migration], downs: &[DownScript], to: i64, dry_run: bool) -> TenantRun {
        let started = Instant::now();
        let (mut admin, applied) = match self.open_history(true, dry_run, started) {
            Ok(opened) => opened,
            Err(run) => return run,
        };
        let (mut run, steps) =
            match crate::engine::plan::plan_rollback(applied, migrations, downs, to, dry_run, started) {
                crate::engine::plan::Undo::Decided(run) => {
                    if !dry_run {
                        migrate::unlock(&mut admin, self.name());
                    }
                    return run;
                }
                crate::engine::plan::Undo::Apply { run, steps } => (run, steps),
            };
        let (undone, failed) = migrate::undo(&mut admin, self.name(), &steps);
        // What is undone is undone: the tenant lands at the version below the last
        // wholly undone step, and stays there when a later one failed.
        let planned = std::mem::replace(&mut run.pending, undone);
        run.rolled_back(started);
        run.pending = planned;
        if let Some(failed) = failed {
            if let (Some(err), Ok(url)) = (&failed.error, self.server.admin_url())
                && let Some(down) = self.server.pool().confirm_down(&url, err)
            {
                let mut down_run = TenantRun::failed_with(run.from, &down, started);
                down_run.applied = run.applied;
                down_run.to = run.to;
                return down_run;
            }
            run.outcome = crate::engine::Outcome::Failed;
            run.error = Some(format!(
                "{} failed: {}; the tenant is at V{}",
                failed.migration, failed.message, run.to
            ));
        }
        migrate::unlock(&mut admin, self.name());
        admin.discard();
        run
    }

    fn query(
        &self,
        statement: &str,
        write: bool,
        timeout: Duration,
        sink: &mut dyn RowSink,
    ) -> Result<Finished> {
        let mut conn = self.as_tenant()?;
        sql::stream(&mut conn, self.server.mariadb(), statement, write, timeout, sink)
            .map_err(|e| e.into_error(&self.server.row.name, timeout))
    }

    fn script(&self, script: &str, write: bool, timeout: Duration) -> Result<ScriptOutcome> {
        let mut conn = self.as_tenant()?;
        sql::run_script(&mut conn, self.server.mariadb(), script, write, timeout)
            .map_err(|e| e.into_error(&self.server.row.name, timeout))
    }

    fn size_bytes(&self) -> u64 {
        self.measured_bytes().unwrap_or(0)
    }

    fn measured_bytes(&self) -> Result<u64> {
        let mut admin = self.server.admin()?;
        self.size_on(&mut admin)
    }

    fn check(&self) -> Result<()> {
        if !self.presence()? {
            return Err(Error::verification(format!("{} is missing", self.describe())));
        }
        Ok(())
    }

    fn change_stamp(&self) -> Option<String> {
        None
    }

    /// `OPTIMIZE TABLE` rebuilds each table (InnoDB: recreate and analyze).
    fn vacuum(&self) -> Result<Vacuumed> {
        let mut admin = self.server.admin()?;
        let bytes_before = self.size_on(&mut admin)?;
        let tables = super::tables::base_tables(&mut admin, self.name()).map_err(|e| self.server.fail(&e))?;
        if !tables.is_empty() {
            let list: Vec<String> = tables
                .iter()
                .map(|t| format!("{}.{}", ident(self.name()), ident(t)))
                .collect();
            let _: Vec<mysql::Row> = admin
                .query(format!("OPTIMIZE TABLE {}", list.join(", ")))
                .map_err(|e| self.server.fail(&e))?;
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

    /// Its sessions are ended by the swap itself, under ACCOUNT LOCK.
    fn refuse_if_in_use(&self) -> Result<()> {
        Ok(())
    }

    fn stage_restore(&self, _run: &StagingRun, source: &RestoreSource<'_>) -> Result<Staged> {
        self.stage(source)
    }

    fn swap_in(&self, staged: &Staged) -> Result<()> {
        self.complete_swap(staged, None)
    }

    fn swap_in_unsynced(&self, staged: &Staged) -> Result<Option<PathBuf>> {
        self.complete_swap(staged, None).map(|()| None)
    }

    fn discard_staged(&self, staged: &Staged) {
        self.drop_staged(staged);
    }

    fn copy_extension(&self) -> &'static str {
        "sql"
    }

    fn kept_copy(&self, staged: &Staged, customer_id: i64, slug: &str) -> Option<Entry> {
        self.kept_entry(staged, customer_id, slug)
    }

    fn finish_swap(&self, staged: &Staged, login: bool) -> Result<()> {
        self.complete_swap(staged, Some(login))
    }

    fn set_password(&self, password: &Secret) -> Result<()> {
        let mut admin = self.server.admin()?;
        let by = self.server.identified_by(password);
        self.server.run(
            &mut admin,
            &format!("ALTER USER {} {by}", MyEngine::accounts(&self.user())),
        )
    }

    fn set_login(&self, allowed: bool) -> Result<()> {
        let mut admin = self.server.admin()?;
        self.server.set_login(&mut admin, &self.user(), allowed)
    }

    fn freeze(&self) -> Result<crate::engine::WriteFreeze> {
        TenantDatabase::set_login(self, false)?;
        Ok(crate::engine::WriteFreeze::lasting())
    }

    fn tables(&self) -> Result<Vec<TableShape>> {
        self.shapes()
    }

    fn read_rows(&self, table: &TableShape, each: &mut dyn FnMut(Vec<Cell>) -> Result<()>) -> Result<()> {
        self.rows_out(table, each)
    }

    fn write_rows(
        &self,
        table: &TableShape,
        next: &mut dyn FnMut() -> Result<Option<Vec<Cell>>>,
    ) -> Result<u64> {
        self.rows_in(table, next)
    }

    fn count_rows(&self, table: &TableShape) -> Result<u64> {
        self.exact_count(table)
    }

    fn advance_sequences(&self) -> Result<()> {
        self.move_counters_past_ids()
    }

    fn native_digest(&self, table: &TableShape) -> Result<Option<String>> {
        self.server_digest(table).map(Some)
    }

    fn dump_source(&self) -> Option<Result<crate::engine::DumpSource>> {
        Some(super::my_tools(&self.server.row.name).and_then(|tools| {
            Ok(crate::engine::DumpSource {
                program: tools.dump,
                env: Vec::new(),
                options: Some(Secret::new(self.server.admin_url()?.client_options(None))),
                database: Some(self.name().to_string()),
            })
        }))
    }

    fn copy_whole_from(&self, source: &dyn TenantDatabase) -> Result<()> {
        let from = source
            .dump_source()
            .ok_or_else(|| Error::refused(format!("{} cannot be copied whole", source.describe())))??;
        let tools = super::my_tools(&self.server.row.name)?;
        let to = Secret::new(self.server.admin_url()?.client_options(Some(self.name())));
        let user = user_of(source.placement()).unwrap_or_default();
        super::whole::pipe(&tools, &from, to.expose(), &user, self.server.home_root()).map_err(|err| {
            Error::unexpected(format!(
                "copying {} into {}: {err}",
                source.describe(),
                self.describe()
            ))
        })
    }

    /// Who besides the tenant's own user holds privileges on its database, and
    /// whether its user still holds them.
    fn access_problems(&self) -> Result<Vec<AccessFinding>> {
        let mut admin = self.server.admin()?;
        if !self.server.database_exists(&mut admin, self.name())? {
            return Ok(Vec::new());
        }
        let grantees: Vec<String> = admin
            .exec(
                "SELECT DISTINCT grantee FROM information_schema.schema_privileges WHERE table_schema = ?",
                (self.name(),),
            )
            .map_err(|e| self.server.fail(&e))?;
        let user = self.user();
        let own: Vec<String> = HOSTS.iter().map(|h| format!("'{user}'@'{h}'")).collect();
        let mut found = Vec::new();
        if !self.placement.location.starts_with(RETIRED_PREFIX) && !own.iter().all(|o| grantees.contains(o)) {
            found.push(AccessFinding {
                problem: AccessProblem::NotOwnedByTenantRole,
                message: format!("{}: its user {user} lacks its privileges on it", self.describe()),
            });
        }
        let others: Vec<&String> = grantees.iter().filter(|g| !own.contains(g)).collect();
        if !others.is_empty() {
            found.push(AccessFinding {
                problem: AccessProblem::OpenToPublic,
                message: format!(
                    "{} is open to other users too: {}",
                    self.describe(),
                    others.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        Ok(found)
    }

    fn repair_access(&self, problem: AccessProblem) -> Result<String> {
        let mut admin = self.server.admin()?;
        let user = self.user();
        let db = ident(self.name());
        match problem {
            AccessProblem::NotOwnedByTenantRole => {
                for host in HOSTS {
                    self.server.run(
                        &mut admin,
                        &format!(
                            "GRANT ALL PRIVILEGES ON {db}.* TO {}@{}",
                            literal(&user),
                            literal(host)
                        ),
                    )?;
                }
                Ok(format!("granted back to {user}"))
            }
            AccessProblem::OpenToPublic => {
                let grantees: Vec<String> = admin
                    .exec(
                        "SELECT DISTINCT grantee FROM information_schema.schema_privileges WHERE table_schema = ?",
                        (self.name(),),
                    )
                    .map_err(|e| self.server.fail(&e))?;
                let own: Vec<String> = HOSTS.iter().map(|h| format!("'{user}'@'{h}'")).collect();
                for grantee in grantees.iter().filter(|g| !own.contains(g)) {
                    self.server.run(
                        &mut admin,
                        &format!("REVOKE ALL PRIVILEGES ON {db}.* FROM {grantee}"),
                    )?;
                }
                Ok("revoked from the other users".to_string())
            }
        }
    }
}
