//! A MySQL tenant's part in backups and restores, as the PostgreSQL engine's (see
//! `postgres/copies.rs`). Its backup is a `mariadb-dump` script, counted as it is
//! written ([`script`]). A restore loads the script into a database beside the live
//! one (`<db>__restore_<set id>`), checks its rows against the manifest, and only then
//! swaps: the tenant's account is locked and its sessions ended, an empty
//! `<db>__prerestore_<id>` made, and one `RENAME TABLE` moves every live table into it
//! and every restored table into the live database, which MySQL does atomically; the
//! emptied restore database is dropped and the account unlocked. Each step can be
//! finished from any point a crash leaves, by looking at which databases exist and
//! which hold tables ([`MyTenant::complete_swap`]).

use std::collections::BTreeMap;
use std::path::Path;

use mysql::Conn;
use mysql::prelude::Queryable;

use super::names::{self, SCRATCH_PREFIX, ident, literal};
use super::script::{self, LoginFile, ToolFailed};
use super::tables::{base_tables, definitions_for, move_contents};
use super::tenant::{MyEngine, MyTenant};
use super::{migrate, my_tools};
use crate::backup::{CopyFormat, Entry, states::EntryScope};
use crate::engine::{BackedUp, BackupTarget, EngineKind, RestoreSource, Staged, TenantDatabase};
use crate::error::{Error, Result};
use crate::migrations::MigrationId;
use crate::ops::recovery::crash_point;

/// The table of the kept database that holds a swap's views, triggers and routines
/// while the swap moves tables (see [`MyTenant::save_definitions`]).
const SAVED_OBJECTS: &str = "tenantctl_swap_objects";
/// ER_NO_SUCH_TABLE.
const NO_SUCH_TABLE: u16 = 1146;
/// A view (as a table), a routine or a trigger of that name exists already.
const ALREADY_THERE: [u16; 3] = [1050, 1304, 1359];

/// How every database a restore makes is made, as provisioning makes a tenant's.
const CREATE_OPTIONS: &str = "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci";

impl MyTenant {
    /// `mariadb-dump` of the tenant's database into the set, counted on the way. The
    /// server or the tool failing is the tenant's failure; a write that fails is the
    /// set's.
    pub(super) fn dump_into(&self, target: &BackupTarget<'_>) -> Result<BackedUp> {
        let failed =
            |err: &dyn std::fmt::Display| Ok(BackedUp::Failed(format!("{}: {err}", self.describe())));
        let tools = match my_tools(self.server.name()) {
            Ok(tools) => tools,
            Err(err) => return failed(&err),
        };
        let exists = self
            .server
            .admin()
            .and_then(|mut admin| self.server.database_exists(&mut admin, self.name()));
        match exists {
            Ok(true) => {}
            Ok(false) => return Ok(BackedUp::Failed(format!("{} is missing", self.describe()))),
            Err(err) => return failed(&err),
        }
        let login = LoginFile::new(&self.server.admin_url()?, self.server.home_root())?;
        let dest = target.set_dir.join(target.file);
        let dumped = match script::dump(&tools, &login, self.name(), &dest)? {
            Ok(dumped) => dumped,
            Err(ToolFailed(why)) => {
                // A server that stopped answering is said as such, like any other.
                return match self
                    .server
                    .admin()
                    .and_then(|mut admin| self.server.database_exists(&mut admin, self.name()))
                {
                    Err(down) => failed(&down),
                    Ok(_) => failed(&why),
                };
            }
        };
        let mut entry = Entry::new(
            EntryScope::Tenant,
            target.file,
            dumped.bytes,
            dumped.sha256,
            dumped.schema_version,
        );
        entry.customer_id = Some(target.customer_id);
        entry.customer_slug = Some(target.customer_slug.to_string());
        entry.engine = Some(EngineKind::Mysql);
        entry.server = Some(self.server.name().to_string());
        entry.format = Some(CopyFormat::MysqlSql);
        entry.rows = Some(dumped.rows);
        Ok(BackedUp::Entry(Box::new(entry)))
    }

    /// Builds the backup copy beside the live tenant and checks it: the script's
    /// SHA-256 first (nothing is made on the server for a file that is not the set's),
    /// then every table's rows once loaded. Nothing live changes.
    pub(super) fn stage(&self, source: &RestoreSource<'_>) -> Result<Staged> {
        let entry = source.entry;
        match entry.format() {
            CopyFormat::MysqlSql => {}
            CopyFormat::KeptOnServer => return self.stage_kept(source),
            other => {
                return Err(Error::refused(format!(
                    "{} is a {other} copy; {} takes mariadb-dump scripts",
                    entry.file,
                    self.describe()
                )));
            }
        }
        let sum = crate::files::sha256_file(source.file)?;
        if sum != entry.sha256 {
            return Err(Error::verification(format!(
                "{} does not match its manifest (SHA-256 {sum}, expected {}); nothing was restored",
                source.file.display(),
                entry.sha256
            ))
            .with_hint("run 'tenantctl backup verify' and restore from another set"));
        }
        let staged = Staged {
            staging: names::beside_name(self.name(), "restore", source.set_id),
            target: self.placement.clone(),
            applied: Vec::new(),
            kept_as: Some(self.new_kept_name()?),
        };
        match self.load_staging(source, &staged.staging) {
            Ok(applied) => Ok(Staged { applied, ..staged }),
            Err(err) => {
                self.drop_staged(&staged);
                Err(err)
            }
        }
    }

    /// Stages a pre-restore copy this tenant's earlier restore kept on the server: a
    /// script of it, loaded as any script is, so that it stays where its set says it
    /// is until that set is pruned.
    fn stage_kept(&self, source: &RestoreSource<'_>) -> Result<Staged> {
        let entry = source.entry;
        let kept = entry.kept_as.as_deref().unwrap_or_default();
        let own_copy = entry.server.as_deref() == Some(self.server.name())
            && entry
                .customer_slug
                .as_deref()
                .and_then(|slug| names::tenant_database(slug).ok())
                .as_deref()
                == Some(self.name());
        if !own_copy || !names::is_kept_name(kept) {
            return Err(Error::refused(format!(
                "{kept} is {}'s pre-restore copy on server {}; it goes back only into that tenant",
                entry.customer_slug.as_deref().unwrap_or("another tenant"),
                entry.server.as_deref().unwrap_or("?")
            ))
            .with_hint("restore from a regular set to copy data into another tenant"));
        }
        let mut admin = self.server.admin()?;
        if !self.server.database_exists(&mut admin, kept)? {
            return Err(Error::not_found(format!(
                "the pre-restore copy {kept} is gone from server {}",
                self.server.name()
            )));
        }
        drop(admin);
        let tools = my_tools(self.server.name())?;
        let work = tempfile::Builder::new()
            .prefix(crate::backup::restore::STAGING_PREFIX)
            .tempdir_in(self.server.home_root())
            .map_err(|e| Error::io("making a folder for a restore".to_string(), e))?;
        let copy = work.path().join("kept.sql");
        let login = LoginFile::new(&self.server.admin_url()?, self.server.home_root())?;
        let dumped = match script::dump(&tools, &login, kept, &copy)? {
            Ok(dumped) => dumped,
            Err(ToolFailed(why)) => return Err(Error::unexpected(format!("copying {kept} failed: {why}"))),
        };
        let mut entry = entry.clone();
        entry.rows = Some(dumped.rows);
        let staged = Staged {
            staging: names::beside_name(self.name(), "restore", source.set_id),
            target: self.placement.clone(),
            applied: Vec::new(),
            kept_as: Some(self.new_kept_name()?),
        };
        let loaded = self.load_staging(
            &RestoreSource {
                file: &copy,
                entry: &entry,
                set_id: source.set_id,
            },
            &staged.staging,
        );
        match loaded {
            Ok(applied) => Ok(Staged { applied, ..staged }),
            Err(err) => {
                self.drop_staged(&staged);
                Err(err)
            }
        }
    }

    /// A fresh `staging` database with the script loaded into it as the admin login
    /// and its rows checked; returns its migrations.
    fn load_staging(&self, source: &RestoreSource<'_>, staging: &str) -> Result<Vec<MigrationId>> {
        let tools = my_tools(self.server.name())?;
        let mut admin = self.server.admin()?;
        self.server.drop_database(&mut admin, staging)?;
        self.server.run(
            &mut admin,
            &format!("CREATE DATABASE {} {CREATE_OPTIONS}", ident(staging)),
        )?;
        let login = LoginFile::new(&self.server.admin_url()?, self.server.home_root())?;
        // A copy of another tenant (`--into`): what ran as its user runs as this one's.
        let own = self.user();
        let theirs = source
            .entry
            .customer_slug
            .as_deref()
            .and_then(|slug| names::tenant_database(slug).ok())
            .map(|database| names::tenant_user(&database))
            .filter(|theirs| *theirs != own);
        let definer = theirs.as_deref().map(|theirs| (theirs, own.as_str()));
        if let Err(ToolFailed(why)) = script::load(&tools, &login, staging, source.file, definer)? {
            return Err(self.restore_failed(source, &why));
        }
        let found = self.server.row_counts(&mut admin, staging)?;
        if let Some(expected) = &source.entry.rows
            && let Some(why) = crate::engine::postgres::compare_rows(expected, &found)
        {
            return Err(self.restore_failed(source, &format!("its rows differ from the backup's: {why}")));
        }
        Ok(migrate::read(&mut admin, staging)
            .map_err(|e| self.server.fail(&e))?
            .unwrap_or_default())
    }

    fn restore_failed(&self, source: &RestoreSource<'_>, why: &str) -> Error {
        Error::verification(format!(
            "{} could not be restored into {}: {why}; nothing was restored",
            source.file.display(),
            self.describe()
        ))
        .with_hint("run 'tenantctl backup verify --deep' and restore from another set")
    }

    /// `<db>__prerestore_<id>`, the id new for this restore: never a name an earlier
    /// restore's set names, so that pruning that set can never drop this copy.
    fn new_kept_name(&self) -> Result<String> {
        let mut admin = self.server.admin()?;
        for _ in 0..8 {
            let name = names::beside_name(
                self.name(),
                "prerestore",
                &crate::backup::new_id(chrono::Utc::now()),
            );
            if !self.server.database_exists(&mut admin, &name)? {
                return Ok(name);
            }
        }
        Err(Error::unexpected(format!(
            "no free name for the pre-restore copy of {}",
            self.describe()
        )))
    }

    /// Drops a staged copy (never the live tenant or the kept one).
    pub(super) fn drop_staged(&self, staged: &Staged) {
        if !names::is_restore_copy(&staged.staging) {
            return;
        }
        if let Ok(mut admin) = self.server.admin() {
            let _ = self.server.drop_database(&mut admin, &staged.staging);
        }
    }

    /// Brings a swap to its end from wherever it stands: locks the account and ends
    /// the tenant's sessions, moves the live tables into the kept database and the
    /// restored ones into the live database in one `RENAME TABLE` (while the restored
    /// copy still holds tables, the move has not happened: it is atomic), drops the
    /// emptied copy, then unlocks the account when `login` says so (default: as it
    /// was). Any failure before the move unlocks it again as it was.
    pub(super) fn complete_swap(&self, staged: &Staged, login: Option<bool>) -> Result<()> {
        let kept = staged
            .kept_as
            .as_deref()
            .ok_or_else(|| Error::unexpected("a server swap without a kept name"))?;
        let live = self.name();
        let user = self.user();
        let mut admin = self.server.admin()?;
        let login = match login {
            Some(login) => login,
            None => self.server.can_login(&mut admin, &user)?,
        };
        crash_point("restore:my-before-freeze");
        self.server.set_login(&mut admin, &user, false)?;
        crash_point("restore:my-frozen");
        let moved = (|| -> Result<()> {
            let waiting = match self.server.database_exists(&mut admin, &staged.staging)? {
                true => base_tables(&mut admin, &staged.staging).map_err(|e| self.server.fail(&e))?,
                false => Vec::new(),
            };
            if !waiting.is_empty() {
                let has_live = self.server.database_exists(&mut admin, live)?;
                let live_tables = match has_live {
                    true => base_tables(&mut admin, live).map_err(|e| self.server.fail(&e))?,
                    false => Vec::new(),
                };
                if !has_live {
                    self.server.run(
                        &mut admin,
                        &format!("CREATE DATABASE {} {CREATE_OPTIONS}", ident(live)),
                    )?;
                }
                let pairs: Vec<(&str, &str)> = match live_tables.is_empty() {
                    true => vec![(&staged.staging, live)],
                    false => {
                        self.server.run(
                            &mut admin,
                            &format!("CREATE DATABASE IF NOT EXISTS {} {CREATE_OPTIONS}", ident(kept)),
                        )?;
                        crash_point("restore:my-kept");
                        let pairs = vec![(live, kept), (staged.staging.as_str(), live)];
                        self.save_definitions(&mut admin, kept, &pairs)?;
                        pairs
                    }
                };
                move_contents(&mut admin, &pairs).map_err(|e| self.server.fail(&e))?;
                crash_point("restore:my-moved");
            }
            self.remake_saved(&mut admin, kept)?;
            self.server.drop_database(&mut admin, &staged.staging)
        })();
        // Remaking views and triggers left the session in another database.
        admin.discard();
        let mut admin = self.server.admin()?;
        if let Err(err) = moved {
            if login {
                let _ = self.server.set_login(&mut admin, &user, true);
            }
            return Err(err);
        }
        crash_point("restore:my-swapped");
        if login {
            self.server.set_login(&mut admin, &user, true)?;
        }
        Ok(())
    }

    /// Keeps the statements that make the views, triggers and routines of both sides
    /// of a swap in a table of the kept database, before the move drops them (a table
    /// with triggers cannot move): a swap killed between the drop and the move
    /// makes them again from there. Saved once; a later run keeps what the first saved.
    fn save_definitions(&self, admin: &mut Conn, kept: &str, pairs: &[(&str, &str)]) -> Result<()> {
        let table = format!("{}.{}", ident(kept), ident(SAVED_OBJECTS));
        match admin.query_first::<u64, _>(format!("SELECT COUNT(*) FROM {table}")) {
            Ok(Some(saved)) if saved > 0 => return Ok(()),
            Ok(_) => {}
            Err(mysql::Error::MySqlError(e)) if e.code == NO_SUCH_TABLE => {}
            Err(err) => return Err(self.server.fail(&err)),
        }
        let mut rows = Vec::new();
        for (from, to) in pairs {
            for statement in definitions_for(admin, from, to).map_err(|e| self.server.fail(&e))? {
                rows.push(format!(
                    "({}, {}, {})",
                    rows.len(),
                    literal(to),
                    literal(&statement)
                ));
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        self.server.run(
            admin,
            &format!(
                "CREATE TABLE IF NOT EXISTS {table} (id INT PRIMARY KEY, in_database VARCHAR(64) NOT NULL, \
                 statement LONGTEXT NOT NULL) {CREATE_OPTIONS}"
            ),
        )?;
        // One statement: all of them saved, or none.
        self.server
            .run(admin, &format!("INSERT INTO {table} VALUES {}", rows.join(", ")))
    }

    /// Makes again what [`Self::save_definitions`] kept and is missing (views that
    /// name views not made yet wait for a later pass), then drops the table.
    fn remake_saved(&self, admin: &mut Conn, kept: &str) -> Result<()> {
        if !self.server.database_exists(admin, kept)? {
            return Ok(());
        }
        let table = format!("{}.{}", ident(kept), ident(SAVED_OBJECTS));
        let mut waiting: Vec<(String, String)> =
            match admin.query(format!("SELECT in_database, statement FROM {table} ORDER BY id")) {
                Ok(rows) => rows,
                Err(mysql::Error::MySqlError(e)) if e.code == NO_SUCH_TABLE => return Ok(()),
                Err(err) => return Err(self.server.fail(&err)),
            };
        while !waiting.is_empty() {
            let before = waiting.len();
            let mut failed = Vec::new();
            let mut last_error = None;
            for (database, statement) in waiting {
                self.server.run(admin, &format!("USE {}", ident(&database)))?;
                match admin.query_drop(&statement) {
                    Ok(()) => {}
                    Err(mysql::Error::MySqlError(e)) if ALREADY_THERE.contains(&e.code) => {}
                    Err(err) => {
                        last_error = Some(err);
                        failed.push((database, statement));
                    }
                }
            }
            if let Some(err) = last_error
                && failed.len() == before
            {
                return Err(self.server.fail(&err));
            }
            waiting = failed;
        }
        self.server.run(admin, &format!("DROP TABLE IF EXISTS {table}"))
    }

    /// What a pre-restore set says of the tenant data a swap keeps on the server.
    pub(super) fn kept_entry(&self, staged: &Staged, customer_id: i64, slug: &str) -> Option<Entry> {
        let kept = staged.kept_as.as_deref()?;
        let mut admin = self.server.admin().ok()?;
        if !self.server.database_exists(&mut admin, self.name()).ok()? {
            return None;
        }
        drop(admin);
        let applied = self.applied().ok().unwrap_or_default();
        let version = applied.iter().map(|m| m.version).max().unwrap_or(0);
        let bytes = self.measured_bytes().unwrap_or(0);
        let mut entry = Entry::new(
            EntryScope::Tenant,
            &format!("kept/{kept}"),
            bytes,
            String::new(),
            version,
        );
        entry.customer_id = Some(customer_id);
        entry.customer_slug = Some(slug.to_string());
        entry.engine = Some(EngineKind::Mysql);
        entry.server = Some(self.server.name().to_string());
        entry.format = Some(CopyFormat::KeptOnServer);
        entry.kept_as = Some(kept.to_string());
        Some(entry)
    }
}

impl MyEngine {
    /// Restored copies killed restores left (never swapped in), by name; with
    /// `remove`, dropped too. The caller holds the home lock, so no restore is staging.
    pub(super) fn find_restore_leftovers(&self, remove: bool) -> Result<Vec<String>> {
        let mut admin = self.admin()?;
        let found: Vec<String> = self
            .databases_named(&mut admin, "tenant_")?
            .into_iter()
            .filter(|name| names::is_restore_copy(name))
            .collect();
        if remove {
            for name in &found {
                self.drop_database(&mut admin, name)?;
            }
        }
        Ok(found
            .into_iter()
            .map(|name| format!("{name} on server {}", self.name()))
            .collect())
    }

    /// Loads `file` into a scratch database of its own (as the admin login: it is
    /// nobody's tenant) and compares every table's rows with `entry`'s, then drops
    /// the scratch database whatever the outcome.
    pub(super) fn restore_to_check(&self, file: &Path, entry: &Entry) -> Result<()> {
        let tools = my_tools(self.name())?;
        let scratch = format!("{SCRATCH_PREFIX}{:08x}", rand::random::<u32>());
        let mut admin = self.admin()?;
        self.run(
            &mut admin,
            &format!("CREATE DATABASE {} {CREATE_OPTIONS}", ident(&scratch)),
        )?;
        let checked = (|| -> Result<()> {
            let login = LoginFile::new(&self.admin_url()?, self.home_root())?;
            if let Err(ToolFailed(why)) = script::load(&tools, &login, &scratch, file, None)? {
                return Err(Error::verification(format!(
                    "{} does not load: {why}",
                    file.display()
                )));
            }
            let found = self.row_counts(&mut admin, &scratch)?;
            match entry
                .rows
                .as_ref()
                .and_then(|rows| crate::engine::postgres::compare_rows(rows, &found))
            {
                Some(why) => Err(Error::verification(format!(
                    "{} loads with other rows than were backed up: {why}",
                    file.display()
                ))),
                None => Ok(()),
            }
        })();
        let _ = self.drop_database(&mut admin, &scratch);
        checked
    }

    /// The rows of every base table of `database`, in one round trip.
    pub(super) fn row_counts(&self, admin: &mut Conn, database: &str) -> Result<BTreeMap<String, u64>> {
        let tables = base_tables(admin, database).map_err(|e| self.fail(&e))?;
        if tables.is_empty() {
            return Ok(BTreeMap::new());
        }
        let query = tables
            .iter()
            .enumerate()
            .map(|(i, table)| format!("SELECT {i}, COUNT(*) FROM {}.{}", ident(database), ident(table)))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let counted: Vec<(usize, u64)> = admin.query(query).map_err(|e| self.fail(&e))?;
        Ok(counted
            .into_iter()
            .filter_map(|(at, rows)| Some((tables.get(at)?.clone(), rows)))
            .collect())
    }
}
