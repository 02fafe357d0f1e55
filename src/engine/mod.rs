//! Tenant databases wherever they live. The catalog records each tenant's
//! [`Placement`] (engine, server, location); everything else reaches a tenant through
//! an [`Engine`] and the [`TenantDatabase`] it hands out for a placement, never by
//! building a path or a connection string itself. SQLite files in the home's
//! `tenants/` folder are the built-in server `local`, the first engine.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use refinery::Migration;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Serialize, Serializer};

use crate::backup::Entry;
use crate::backup::restore::StagingRun;
use crate::error::{Error, Result};
use crate::home::Home;
use crate::migrations::{DownScript, MigrationId};

pub mod mysql;
pub(crate) mod plan;
pub mod postgres;
pub(crate) mod results;
pub mod servers;
pub mod sqlite;
pub mod transfer;

pub use results::{Finished, Outcome, QueryOutput, RowSink, ScriptOutcome, TenantRun, Vacuumed};
use transfer::{Cell, TableShape};

/// The server every home has: SQLite files in its `tenants/` folder.
pub const LOCAL_SERVER: &str = "local";

/// The kind of database a tenant lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Sqlite,
    Postgres,
    Mysql,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Sqlite => "sqlite",
            EngineKind::Postgres => "postgres",
            EngineKind::Mysql => "mysql",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [EngineKind::Sqlite, EngineKind::Postgres, EngineKind::Mysql]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ToSql for EngineKind {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for EngineKind {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        EngineKind::parse(text).ok_or_else(|| FromSqlError::Other(format!("unknown engine '{text}'").into()))
    }
}

/// Where one tenant's data lives: the engine, the server that hosts it, and the
/// engine's own name for it (a file path for SQLite; a database or schema name on a
/// server).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Placement {
    pub engine: EngineKind,
    pub server: String,
    pub location: String,
}

impl Placement {
    pub fn local(path: &Path) -> Result<Placement> {
        let location = path
            .to_str()
            .ok_or_else(|| Error::usage(format!("path {} is not valid UTF-8", path.display())))?;
        Ok(Placement {
            engine: EngineKind::Sqlite,
            server: LOCAL_SERVER.to_string(),
            location: location.to_string(),
        })
    }
}

/// A placement shows as its location: for SQLite tenants that is the `db_path` the
/// JSON has always carried.
impl Serialize for Placement {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.location)
    }
}

/// Where a tenant lives, as people and scripts connect to it: a file path for
/// SQLite; host, port, database, schema and role on a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlacementView {
    pub engine: EngineKind,
    pub server: String,
    pub path: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub schema: Option<String>,
    pub role: Option<String>,
}

impl PlacementView {
    /// How a client connects: `sqlite://PATH`, the tenant role's
    /// `postgresql://ROLE[:PASSWORD]@HOST:PORT/DATABASE` (a socket folder as the
    /// percent-encoded host), or its user's `mysql://USER[:PASSWORD]@HOST:PORT/DATABASE`
    /// (`mysql://USER@localhost/DATABASE?socket=PATH` through a socket).
    pub fn url(&self, password: Option<&str>) -> String {
        if let Some(path) = &self.path {
            return format!("sqlite://{path}");
        }
        let login = match password {
            Some(password) => format!(
                "{}:{}",
                self.role.as_deref().unwrap_or_default(),
                percent_encode(password)
            ),
            None => self.role.clone().unwrap_or_default(),
        };
        let host = self.host.as_deref().unwrap_or("localhost");
        let database = self.database.as_deref().unwrap_or_default();
        match self.engine {
            // A socket is a parameter in a MySQL URL, not the host.
            EngineKind::Mysql if host.starts_with('/') => {
                format!(
                    "mysql://{login}@localhost/{database}?socket={}",
                    percent_encode(host)
                )
            }
            EngineKind::Mysql => format!(
                "mysql://{login}@{}:{}/{database}",
                percent_encode(host),
                self.port.unwrap_or(3306)
            ),
            _ => format!(
                "postgresql://{login}@{}:{}/{database}",
                percent_encode(host),
                self.port.unwrap_or(5432)
            ),
        }
    }

    /// What the placement alone tells, for a server this home no longer lists.
    fn bare(placement: &Placement) -> Self {
        PlacementView {
            engine: placement.engine,
            server: placement.server.clone(),
            path: None,
            host: None,
            port: None,
            database: Some(placement.location.clone()),
            schema: None,
            role: None,
        }
    }
}

/// Every byte but unreserved ones as `%XX`, for a URL's user, password or host.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A tenant database built at the newest migration and not yet reachable through any
/// placement: [`Engine::publish`] makes it a tenant's, [`Engine::discard`] drops it.
#[derive(Debug)]
pub struct Provisioned {
    /// The engine's own name for the unfinished database.
    pub staging: String,
    pub schema_version: i64,
    /// Shared: the databases an import copies from one template have the same list,
    /// and 10,000 copies of it were megabytes.
    pub applied: Arc<[MigrationId]>,
    /// The password of the tenant's own login role, on engines that give each tenant
    /// one; the catalog keeps it encrypted.
    pub role_password: Option<crate::secrets::Secret>,
}

impl Provisioned {
    /// A staged database known only by its staging name, as a ledger records it.
    pub fn staged(staging: &str) -> Provisioned {
        Provisioned {
            staging: staging.to_string(),
            schema_version: 0,
            applied: Arc::from([]),
            role_password: None,
        }
    }
}

/// A backup copy of a tenant that waits, checked, to replace the live database.
#[derive(Debug)]
pub struct Staged {
    pub staging: String,
    pub target: Placement,
    /// The migrations the copy has applied, for the catalog's ledger.
    pub applied: Vec<MigrationId>,
    /// Where the swap keeps the replaced data on its server (a rename, not a copy):
    /// such a swap takes steps a crash can come between, so a restore records it in
    /// the operation ledger first. `None` for a file, which one rename replaces.
    pub kept_as: Option<String>,
}

/// A backup copy to put back: its file in the set, its manifest entry, and the set's id.
#[derive(Debug, Clone, Copy)]
pub struct RestoreSource<'a> {
    pub file: &'a Path,
    pub entry: &'a Entry,
    pub set_id: &'a str,
}

/// One server's way of keeping tenant databases.
pub trait Engine: Send + Sync {
    /// Where a tenant with this slug lives on this server.
    fn placement_for(&self, slug: &str) -> Result<Placement>;
    /// Where a deleted tenant's data waits until it is undeleted or purged.
    fn retired_placement(&self, slug: &str, customer_id: i64) -> Result<Placement>;
    /// Builds a new tenant database at the newest of `migrations`, marked as the work
    /// of the command whose owner lock is `owner` until it is published.
    fn provision(&self, migrations: &[Migration], owner: &str) -> Result<Provisioned>;
    /// Builds `count` new tenant databases, `jobs` at a time; all or none.
    fn provision_many(
        &self,
        migrations: &[Migration],
        count: usize,
        jobs: usize,
        owner: &str,
    ) -> Result<Vec<Provisioned>>;
    /// Makes a provisioned database the one at `placement`; never replaces a tenant.
    fn publish(&self, provisioned: &Provisioned, placement: &Placement) -> Result<()>;
    /// Publishes several at once (an import); stops at the first failure.
    fn publish_many(&self, pairs: &[(Provisioned, Placement)]) -> Result<()> {
        pairs
            .iter()
            .try_for_each(|(provisioned, placement)| self.publish(provisioned, placement))
    }
    /// Refuses (exit 4) when something already sits where `placement` would be built,
    /// so that undoing a move there can never drop what it did not make.
    fn refuse_taken(&self, placement: &Placement) -> Result<()> {
        match self.tenant(placement).presence()? {
            true => Err(
                Error::conflict(format!("{} already exists", self.tenant(placement).describe()))
                    .with_hint("no customer owns it; see 'tenantctl doctor'"),
            ),
            false => Ok(()),
        }
    }
    /// Whether this server can take `source` whole, schema and all, by the engine's
    /// own dump and restore ([`provision_empty`](Self::provision_empty), then
    /// [`TenantDatabase::copy_whole_from`]): only from the same engine and layout.
    fn can_copy_whole(&self, _source: &dyn TenantDatabase) -> bool {
        false
    }
    /// An empty database under a staging name, for [`TenantDatabase::copy_whole_from`].
    fn provision_empty(&self, _owner: &str) -> Result<Provisioned> {
        Err(Error::refused("this server copies no tenant whole"))
    }
    /// Drops a provisioned database that was never published.
    fn discard(&self, provisioned: &Provisioned);
    /// Moves a tenant's data between two placements on this server; never overwrites.
    fn relocate(&self, from: &Placement, to: &Placement) -> Result<()>;
    /// Removes a tenant's database for good.
    fn destroy(&self, placement: &Placement) -> Result<()>;
    /// Removes a deleted tenant's retired database for good; data at any other
    /// placement (a live one, say) is left alone.
    fn purge_retired(&self, placement: &Placement) -> Result<()>;
    /// Removes the staged databases of the commands behind `dead_owners`, which are
    /// gone (their owner locks are free), and anything else a killed build left.
    fn sweep_abandoned(&self, dead_owners: &[String]) -> Result<()>;
    /// The tenant databases on this server that none of `owned` places, with the slug
    /// each is named for: what a catalog restored from an older backup no longer knows.
    fn unowned(&self, owned: &[Placement]) -> Result<Vec<(String, Placement)>>;
    /// The tenant database at `placement` (nothing is opened yet).
    fn tenant(&self, placement: &Placement) -> Arc<dyn TenantDatabase>;
    /// How to reach `placement`, for `resolve`, `customer show` and `db path`.
    fn view(&self, placement: &Placement) -> PlacementView;
    /// How many of `wanted` connections a fan-out may hold on this server at once:
    /// fewer when the server has fewer free. A file engine holds none, so all of them.
    fn connection_limit(&self, wanted: usize) -> usize {
        wanted
    }
    /// What killed restores left on this server (restored copies never swapped in,
    /// scratch databases), by name; with `remove`, dropped too. Only a restore makes
    /// them, and restores hold the home lock: the caller must hold it to remove.
    fn restore_leftovers(&self, _remove: bool) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// Logical-replication objects named `tenantctl_*` on this server (publications in
    /// any database, subscriptions, replication slots), except those whose name is in
    /// `in_use`; with `remove`, dropped too. Each as one line naming kind, name and
    /// database (`replication slot NAME in database DB`).
    fn replication_leftovers(&self, _in_use: &[String], _remove: bool) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// Restores the archive `file` of `entry` into a scratch database on this server
    /// and compares its rows per table with the manifest's, then drops it: exit 7 when
    /// the archive does not restore or the rows differ.
    fn check_archive(&self, file: &Path, _entry: &Entry) -> Result<()> {
        Err(Error::refused(format!(
            "{}: this server restores no archives",
            file.display()
        )))
    }
    /// Whether `name`, a pre-restore copy a restore kept on this server, is there.
    fn kept_exists(&self, _name: &str) -> Result<bool> {
        Ok(false)
    }
    /// Drops `name`, a tenant's pre-restore copy a restore kept on this server (see
    /// [`Staged::kept_as`]); gone already is fine. Refused for any other name.
    fn drop_kept(&self, name: &str) -> Result<()> {
        Err(Error::refused(format!("{name}: this server keeps no copies")))
    }
    /// Unfinished copies on a server whose owning command is gone (`alive` tells by
    /// owner token), by their names; a file engine's are doctor's to find.
    fn abandoned_staging(&self, _alive: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// A way a server tenant can be reachable by more than its own role: what
/// provisioning set up and something since undid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessProblem {
    /// The database (or schema) belongs to some role other than the tenant's.
    NotOwnedByTenantRole,
    /// Every role may connect to the tenant's database.
    OpenToPublic,
}

/// An [`AccessProblem`] found on one tenant, with what was seen.
#[derive(Debug, Clone)]
pub struct AccessFinding {
    pub problem: AccessProblem,
    pub message: String,
}

/// One tenant's database, as every command reaches it.
pub trait TenantDatabase: Send + Sync {
    fn placement(&self) -> &Placement;
    /// How messages name the database (its path, or server and database).
    fn describe(&self) -> String;
    /// Whether the database is there at all.
    fn exists(&self) -> bool;
    /// The same, but a server that cannot be asked is an error, not an absence:
    /// what a command changes on the answer must not take "down" for "gone".
    fn presence(&self) -> Result<bool> {
        Ok(self.exists())
    }
    /// Refuses (exit 7) when what sits at the placement is not this tenant's own
    /// database, e.g. a symbolic link to another file.
    fn check_own(&self) -> Result<()>;
    /// The migrations it has applied, from its own history table.
    fn applied(&self) -> Result<Vec<MigrationId>>;
    /// Brings it to `target` (default: the newest) in one transaction.
    fn migrate(&self, migrations: &[Migration], target: Option<i64>, dry_run: bool) -> TenantRun;
    /// Takes it back to version `to` by the down scripts of every migration it has
    /// applied above it, newest first, each removing its history row, in one
    /// transaction where the engine can undo DDL (see [`plan::plan_rollback`]);
    /// `migrations` are the same engine's up scripts, against which drift is judged.
    fn roll_back(&self, migrations: &[Migration], downs: &[DownScript], to: i64, dry_run: bool) -> TenantRun;
    /// One operator statement, sandboxed to this tenant, rows streamed to `sink`.
    fn query(&self, sql: &str, write: bool, timeout: Duration, sink: &mut dyn RowSink) -> Result<Finished>;
    /// One operator statement with its whole result in memory.
    fn query_collected(&self, sql: &str, write: bool, timeout: Duration) -> Result<QueryOutput> {
        let mut output = QueryOutput::default();
        if let Finished::Changed(n) = self.query(sql, write, timeout, &mut output)? {
            output.changes = Some(n);
        }
        Ok(output)
    }
    /// A script of statements in one transaction, sandboxed to this tenant.
    fn script(&self, sql: &str, write: bool, timeout: Duration) -> Result<ScriptOutcome>;
    /// The bytes it takes, as quotas count them; 0 when it cannot be measured.
    fn size_bytes(&self) -> u64;
    /// The same, but a server that cannot be asked is an error, not an empty tenant:
    /// what suspends a customer must not take "down" for "small".
    fn measured_bytes(&self) -> Result<u64> {
        Ok(self.size_bytes())
    }
    /// The engine's quick integrity check; exit 7 naming the database on damage.
    fn check(&self) -> Result<()>;
    /// A token that is the same only while the data has not changed, so that what
    /// [`check`](Self::check) found still holds; `None` when the engine cannot tell
    /// (pending writes, a change too recent to tell apart from the next one).
    fn change_stamp(&self) -> Option<String>;
    /// [`check`](Self::check), then the applied migrations, through one connection:
    /// the check's error, or the result of reading the migrations.
    fn check_then_applied(&self) -> Result<Result<Vec<MigrationId>>> {
        self.check()?;
        Ok(self.applied())
    }
    /// Reclaims free space and refreshes statistics.
    fn vacuum(&self) -> Result<Vacuumed>;
    /// Brings pending writes home so the data can be moved or copied as it is.
    fn quiesce(&self) -> Result<()>;
    /// Its part of a backup set, written under `target.set_dir`.
    fn back_up(&self, target: &BackupTarget<'_>) -> Result<BackedUp>;
    /// Refuses when something else is connected and would go on writing to data a
    /// restore replaces.
    fn refuse_if_in_use(&self) -> Result<()>;
    /// Copies a backup file beside the live database, into `run`'s staging, checking
    /// its SHA-256 and integrity on the way (exit 7 on either); nothing live changes.
    fn stage_restore(&self, run: &StagingRun, source: &RestoreSource<'_>) -> Result<Staged>;
    /// Replaces the live database with a staged copy in one step.
    fn swap_in(&self, staged: &Staged) -> Result<()>;
    /// [`TenantDatabase::swap_in`] without making it durable yet: returns the folder
    /// whose sync does, if one does (many swaps share a folder and one sync). Until
    /// then a crash may leave the old database, never a mix of the two.
    fn swap_in_unsynced(&self, staged: &Staged) -> Result<Option<PathBuf>>;
    /// Drops a staged copy that will not be swapped in.
    fn discard_staged(&self, staged: &Staged);
    /// The name a backup copy of this database takes in a set (`db` for a file).
    fn copy_extension(&self) -> &'static str {
        "db"
    }
    /// The pre-restore set's entry for what [`swap_in`](Self::swap_in) of `staged` keeps
    /// on the server ([`Staged::kept_as`]); `None` when the swap keeps nothing, and the
    /// replaced database must be copied into the set first.
    fn kept_copy(&self, _staged: &Staged, _customer_id: i64, _slug: &str) -> Option<Entry> {
        None
    }
    /// Finishes a swap of `staged` that a crash interrupted, whatever step it reached,
    /// then lets the tenant's login in when `login`; a swap with nothing kept
    /// ([`Staged::kept_as`] `None`) is one rename, never half done.
    fn finish_swap(&self, _staged: &Staged, _login: bool) -> Result<()> {
        Ok(())
    }
    /// Lets the tenant's own login in or shuts it out (ending its sessions), on
    /// engines where applications log in as the tenant; a file has no login.
    fn set_login(&self, _allowed: bool) -> Result<()> {
        Ok(())
    }
    /// Who besides the tenant's own role can reach it, on engines where tenants have
    /// roles; a file has none, so nothing. Nothing either when the tenant is not there
    /// (that is [`presence`](Self::presence)'s to say).
    fn access_problems(&self) -> Result<Vec<AccessFinding>> {
        Ok(Vec::new())
    }
    /// Puts back what provisioning set up about `problem`; what was done, for doctor.
    fn repair_access(&self, problem: AccessProblem) -> Result<String> {
        Err(Error::refused(format!(
            "{} has no roles to repair ({problem:?})",
            self.describe()
        )))
    }
    /// Gives the tenant's login role a new password; refused where there is no role.
    fn set_password(&self, _password: &crate::secrets::Secret) -> Result<()> {
        Err(Error::refused(format!(
            "{} has no login role: it is a file",
            self.describe()
        )))
    }
    /// Stops every write until the returned guard is dropped (a file: a write lock
    /// held, so applications wait) or for good (a server: its login shut out and its
    /// sessions ended, until [`set_login`](Self::set_login) lets it in again).
    fn freeze(&self) -> Result<WriteFreeze>;
    /// The tables a move copies: every table but the migration history.
    fn tables(&self) -> Result<Vec<TableShape>>;
    /// Hands the rows of `table` (its columns, in that order) to `each`, in key order.
    fn read_rows(&self, table: &TableShape, each: &mut dyn FnMut(Vec<Cell>) -> Result<()>) -> Result<()>;
    /// Appends the rows `next` gives (until `None`) to the empty `table`; how many.
    fn write_rows(
        &self,
        table: &TableShape,
        next: &mut dyn FnMut() -> Result<Option<Vec<Cell>>>,
    ) -> Result<u64>;
    /// How many rows `table` holds.
    fn count_rows(&self, table: &TableShape) -> Result<u64> {
        let mut rows = 0;
        self.read_rows(table, &mut |_| {
            rows += 1;
            Ok(())
        })?;
        Ok(rows)
    }
    /// Sets every sequence past the highest id its column holds, after rows were
    /// written with their ids.
    fn advance_sequences(&self) -> Result<()> {
        Ok(())
    }
    /// The engine's own digest of `table`'s rows (its columns, in that order), when
    /// it can compute one where the data is; `None` when the rows must be read here.
    /// Two tenants' digests compare only when both come from the same engine.
    fn native_digest(&self, _table: &TableShape) -> Result<Option<String>> {
        Ok(None)
    }
    /// Fills this empty staging database with everything `source` holds, by the
    /// engine's own dump piped into its restore (see [`Engine::can_copy_whole`]).
    fn copy_whole_from(&self, _source: &dyn TenantDatabase) -> Result<()> {
        Err(Error::refused(format!(
            "{} cannot be copied whole",
            self.describe()
        )))
    }
    /// How the engine's own dump tool reaches this tenant, when it has one and the
    /// tenant is a whole database.
    fn dump_source(&self) -> Option<Result<DumpSource>> {
        None
    }
    /// Lets writes in again into a tenant whose move was undone, where the freeze
    /// left something behind (a file's sealed tables); a server's login is let in
    /// by [`set_login`](Self::set_login).
    fn thaw(&self) -> Result<()> {
        Ok(())
    }
    /// How its rows replicate as they change, on engines that can (an online move).
    fn replication(&self) -> Option<&dyn Replication> {
        None
    }
}

/// What a dump tool needs to read a tenant: the program and its environment (the
/// login inside, never in arguments).
pub struct DumpSource {
    pub program: PathBuf,
    pub env: Vec<(&'static str, String)>,
    /// The text of an options file the tool reads its login from
    /// (`--defaults-extra-file`, MySQL's tools), written 0600 for the run.
    pub options: Option<crate::secrets::Secret>,
    /// The database to dump, where the tool takes it as an argument.
    pub database: Option<String>,
}

/// What a source tenant hands its target so that the target's server can follow its
/// changes: how to connect back (the password inside) and what to subscribe to.
pub struct Feed {
    pub conninfo: crate::secrets::Secret,
    pub publication: String,
}

/// Logical replication of one tenant, for `customer move --online`: the source
/// publishes its tables, the target subscribes, and a mark written on the source
/// (once its writes are frozen) tells when the target has applied everything. All
/// objects are named `name`; each step can be undone by name, whatever it reached.
pub trait Replication {
    /// The schema the tenant's tables are in: replication matches tables by schema
    /// and name, so both sides must agree.
    fn table_schema(&self) -> String;
    /// Refuses (exit 6, with the reason) when this tenant cannot publish `tables`:
    /// the server's `wal_level`, a table without a key, the login's replication
    /// rights, no free replication slot or sender.
    fn check_publishable(&self, tables: &[TableShape]) -> Result<()>;
    /// Refuses (exit 6) when this tenant's server cannot subscribe: the login's
    /// rights, no free replication worker.
    fn check_subscribable(&self) -> Result<()>;
    fn publish(&self, name: &str, tables: &[TableShape]) -> Result<Feed>;
    fn subscribe(&self, name: &str, feed: &Feed) -> Result<()>;
    /// Waits until every table has its initial copy and follows the stream.
    fn wait_synced(&self, name: &str) -> Result<()>;
    /// Writes a new mark on the source; returns it.
    fn mark(&self, name: &str) -> Result<String>;
    /// Waits until the target has applied `mark`, and so everything before it.
    fn wait_for_mark(&self, name: &str, mark: &str) -> Result<()>;
    fn sequence_values(&self) -> Result<Vec<(String, i64)>>;
    fn set_sequence_values(&self, values: &[(String, i64)]) -> Result<()>;
    /// Drops the subscription (and with it the slot on the source) and the mark table.
    fn unsubscribe(&self, name: &str) -> Result<()>;
    /// Drops the publication, the mark table and any slot left of `name`.
    fn unpublish(&self, name: &str) -> Result<()>;
}

/// What keeps a tenant's writes off while it is copied; dropping it lets them in
/// (a server's login stays shut until it is let in explicitly).
pub struct WriteFreeze(Option<Box<dyn HeldWrites>>);

/// A freeze that holds something (a file's write lock) and can leave the data
/// refusing writes for good as it lets go.
pub trait HeldWrites: Send {
    /// Makes every later write fail, then lets go, in one step: what a moved
    /// tenant's old copy needs, so that no write can land in it once it is let go.
    fn seal(self: Box<Self>) -> Result<()>;
}

impl WriteFreeze {
    pub fn held(guard: Box<dyn HeldWrites>) -> Self {
        WriteFreeze(Some(guard))
    }

    pub fn lasting() -> Self {
        WriteFreeze(None)
    }

    /// See [`HeldWrites::seal`]; a lasting freeze (a shut login) stays as it is.
    pub fn seal(self) -> Result<()> {
        match self.0 {
            Some(held) => held.seal(),
            None => Ok(()),
        }
    }
}

/// Where one tenant's backup copy goes and what the previous set holds of it.
pub struct BackupTarget<'a> {
    pub set_dir: &'a Path,
    /// The copy's name inside the set (`tenants/<slug>.db`).
    pub file: &'a str,
    pub customer_id: i64,
    pub customer_slug: &'a str,
    /// The newest earlier entry of this tenant, its file, and its set's id: an
    /// unchanged tenant shares that copy instead of writing another.
    pub previous: Option<&'a (Entry, std::path::PathBuf, String)>,
    /// Keep a damaged database as its raw bytes, marked damaged, instead of leaving it
    /// out (what a pre-restore set needs).
    pub keep_damaged: bool,
}

/// A tenant's part of a backup set: its manifest entry, or why it could not be backed
/// up (missing, unreadable, damaged). Errors on the writing side fail the whole set.
#[derive(Debug)]
pub enum BackedUp {
    Entry(Box<Entry>),
    Failed(String),
}

/// Every server tenants can live on, by name: the built-in `local`, and the database
/// servers the catalog lists (read when first needed).
pub struct Engines {
    local: sqlite::SqliteEngine,
    home: Home,
    servers: std::sync::OnceLock<Vec<ServerEngine>>,
}

/// A database server of the catalog, by its engine.
enum ServerEngine {
    Postgres(postgres::PgEngine),
    Mysql(mysql::MyEngine),
}

impl ServerEngine {
    fn new(row: crate::catalog::servers::ServerRow, home: &Home) -> Self {
        match row.engine {
            EngineKind::Mysql => ServerEngine::Mysql(mysql::MyEngine::new(row, home)),
            _ => ServerEngine::Postgres(postgres::PgEngine::new(row, home)),
        }
    }

    fn name(&self) -> &str {
        match self {
            ServerEngine::Postgres(engine) => engine.name(),
            ServerEngine::Mysql(engine) => engine.name(),
        }
    }

    fn kind(&self) -> EngineKind {
        match self {
            ServerEngine::Postgres(_) => EngineKind::Postgres,
            ServerEngine::Mysql(_) => EngineKind::Mysql,
        }
    }

    fn as_engine(&self) -> &dyn Engine {
        match self {
            ServerEngine::Postgres(engine) => engine,
            ServerEngine::Mysql(engine) => engine,
        }
    }
}

impl Engines {
    pub fn new(home: &Home) -> Self {
        Engines {
            local: sqlite::SqliteEngine::new(home),
            home: home.clone(),
            servers: std::sync::OnceLock::new(),
        }
    }

    /// The servers of the home's catalog, read once.
    fn servers(&self) -> Result<&[ServerEngine]> {
        if let Some(servers) = self.servers.get() {
            return Ok(servers);
        }
        let path = self.home.catalog();
        let loaded = if path.is_file() {
            let conn =
                rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            conn.busy_timeout(Duration::from_secs(30))?;
            crate::catalog::servers::list(&conn)?
                .into_iter()
                .map(|row| ServerEngine::new(row, &self.home))
                .collect()
        } else {
            Vec::new()
        };
        Ok(self.servers.get_or_init(|| loaded))
    }

    /// Every database server the catalog lists (not `local`).
    pub fn database_servers(&self) -> Result<Vec<&dyn Engine>> {
        Ok(self.servers()?.iter().map(ServerEngine::as_engine).collect())
    }

    /// The server named `name`: `local` or one the catalog lists.
    pub fn server(&self, name: &str) -> Result<&dyn Engine> {
        if name == LOCAL_SERVER {
            return Ok(&self.local);
        }
        self.servers()?
            .iter()
            .find(|server| server.name() == name)
            .map(ServerEngine::as_engine)
            .ok_or_else(|| {
                Error::not_found(format!("no server named '{}'", crate::validate::printable(name)))
                    .with_hint("list them with 'tenantctl server list'")
            })
    }

    /// The engine of the database server named `name`, when the catalog lists one.
    pub fn server_kind(&self, name: &str) -> Option<EngineKind> {
        self.servers()
            .ok()?
            .iter()
            .find(|server| server.name() == name)
            .map(ServerEngine::kind)
    }

    /// The engines of the home whose catalog `conn` is. The catalog is always
    /// `HOME/catalog.db` and is what lists a home's servers, so code holding only the
    /// catalog (quota checks inside a write, say) reaches tenants the same way. An
    /// in-memory catalog has no home: its local tenants are reached by path alone.
    pub fn of_catalog(conn: &rusqlite::Connection) -> Self {
        let home = conn
            .path()
            .filter(|p| !p.is_empty())
            .and_then(|p| Path::new(p).parent())
            .map(Home::new)
            .unwrap_or_else(|| Home::new(""));
        Engines::new(&home)
    }

    /// The server new tenants go to.
    pub fn default_engine(&self) -> &dyn Engine {
        &self.local
    }

    /// The engine that hosts `placement`.
    pub fn engine(&self, placement: &Placement) -> Result<&dyn Engine> {
        match (placement.engine, placement.server.as_str()) {
            (EngineKind::Sqlite, LOCAL_SERVER) => Ok(&self.local),
            (engine, server)
                if engine != EngineKind::Sqlite
                    && self
                        .servers()?
                        .iter()
                        .any(|s| s.name() == server && s.kind() == engine) =>
            {
                self.server(server)
            }
            (engine, server) => Err(Error::usage(format!(
                "no {engine} server '{server}' is known to this home"
            ))),
        }
    }

    /// How to reach `placement`; what the placement alone says when its server is
    /// not listed (any more).
    pub fn view(&self, placement: &Placement) -> PlacementView {
        match self.engine(placement) {
            Ok(engine) => engine.view(placement),
            Err(_) => PlacementView::bare(placement),
        }
    }

    /// The tenant database at `placement`.
    pub fn tenant(&self, placement: &Placement) -> Result<Arc<dyn TenantDatabase>> {
        Ok(self.engine(placement)?.tenant(placement))
    }

    /// Lanes for a fan-out over tenants at `placements`: the local files share one of
    /// `jobs`; each database server gets its own of `per_server` connections at most
    /// (fewer when the server has fewer free, read now from the servers involved).
    pub fn lanes<'p>(
        &self,
        placements: impl IntoIterator<Item = &'p Placement>,
        jobs: usize,
        per_server: usize,
    ) -> crate::fan_out::Lanes {
        let mut servers: Vec<&str> = vec![LOCAL_SERVER];
        let lane_of = placements
            .into_iter()
            .map(
                |placement| match servers.iter().position(|s| *s == placement.server) {
                    Some(lane) => lane,
                    None => {
                        servers.push(&placement.server);
                        servers.len() - 1
                    }
                },
            )
            .collect();
        let capacity = servers
            .iter()
            .map(|name| match (*name, self.server(name)) {
                (LOCAL_SERVER, _) => jobs,
                (_, Ok(engine)) => engine.connection_limit(per_server),
                // Its tenants fail at once, naming the missing server.
                (_, Err(_)) => 1,
            })
            .collect();
        crate::fan_out::Lanes::new(capacity, lane_of)
    }
}
