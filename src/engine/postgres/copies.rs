//! A PostgreSQL tenant's part in backups and restores. Its backup is a `pg_dump -Fc`
//! archive, read back whole with the rows of each table counted. A restore
//! builds the copy beside the live tenant (`<name>__restore_<set id>`), checks its
//! rows against the manifest, and only then swaps: the tenant's login is shut and its
//! sessions ended, the live database renamed to `<name>__prerestore_<id>` (the
//! pre-restore copy: a rename, not a copy), the restored one renamed in, the login
//! let back in. Every step of the swap can be finished from any point a crash
//! leaves, by looking at which of the three names exist ([`PgTenant::complete_swap`]).

use std::path::Path;

use postgres::Client;

use super::archive::{self, ToolFailed};
use super::migrate;
use super::sql::ident;
use super::tenant::{PgEngine, PgTenant, role_name};
use crate::backup::{CopyFormat, Entry, states::EntryScope};
use crate::engine::{BackedUp, BackupTarget, EngineKind, RestoreSource, Staged, TenantDatabase};
use crate::error::{Error, Result};
use crate::ops::recovery::crash_point;

/// The server's limit on a name's length, in bytes.
const NAME_LIMIT: usize = 63;

/// `<live>__<marker>_<set id>`, the tenant's part shortened to keep within the
/// server's limit. A set id holds capitals and a hyphen, which no tenant's name can,
/// so these names are never taken for a tenant's own (see `unowned`).
pub fn beside_name(live: &str, marker: &str, set_id: &str) -> String {
    let tail = format!("__{marker}_{set_id}");
    let keep = NAME_LIMIT.saturating_sub(tail.len()).min(live.len());
    format!("{}{tail}", &live[..keep])
}

/// Whether a name is a tenant's pre-restore copy: `tenant_…__prerestore_<set id>`.
pub fn is_kept_name(name: &str) -> bool {
    name.starts_with("tenant_")
        && name
            .split_once("__prerestore_")
            .is_some_and(|(_, id)| id.bytes().any(|b| b.is_ascii_uppercase() || b == b'-'))
}

/// Databases a schema-mode restore builds its copy in first.
pub const SCRATCH_PREFIX: &str = "tenantctl_scratch_";

/// Whether a name is a restored copy waiting to be swapped in: `tenant_…__restore_<set id>`.
pub fn is_restore_copy(name: &str) -> bool {
    name.starts_with("tenant_")
        && name
            .split_once("__restore_")
            .is_some_and(|(_, id)| id.bytes().any(|b| b.is_ascii_uppercase() || b == b'-'))
}

/// Whether a database (or schema) name is a restore's copy beside a tenant.
pub fn is_beside_name(name: &str) -> bool {
    name.contains("__restore_") || name.contains("__prerestore_")
}

impl PgTenant {
    /// `pg_dump -Fc` of the tenant into the set, read back and counted. The server
    /// or the tool failing is the tenant's failure; a write that fails, or an archive
    /// that does not read back, is the set's.
    pub(super) fn dump_into(&self, target: &BackupTarget<'_>) -> Result<BackedUp> {
        let failed =
            |err: &dyn std::fmt::Display| Ok(BackedUp::Failed(format!("{}: {err}", self.describe())));
        let tools = match self.server.dump_tools() {
            Ok(tools) => tools,
            Err(err) => return failed(&err),
        };
        let (database, url) = match self.database().and_then(|db| Ok((db, self.server.admin_url()?))) {
            Ok(found) => found,
            Err(err) => return failed(&err),
        };
        // Asked on the connection every tenant of the server shares: a connection to
        // the tenant's own database would cost the server a new backend per tenant.
        let exists = self
            .server
            .admin(None)
            .and_then(|mut admin| self.server.tenant_exists(&mut admin, self.name()));
        match exists {
            Ok(true) => {}
            Ok(false) => return Ok(BackedUp::Failed(format!("{} is missing", self.describe()))),
            Err(err) => return failed(&err),
        }
        let schema = self.server.schema_mode().then(|| self.name().to_string());
        let dest = target.set_dir.join(target.file);
        let dumped = archive::dump(&tools, &url.tool_env(&database), schema.as_deref(), &dest);
        let (sha256, bytes) = match dumped? {
            Ok(done) => done,
            Err(ToolFailed(why)) => return failed(&why),
        };
        // As every SQLite copy passes quick_check before its manifest is written, every
        // archive must read back whole; what it holds is counted on the way, so the
        // manifest's rows are the archive's own.
        let read = match archive::read_back(&tools, &dest)? {
            Ok(read) => read,
            Err(ToolFailed(why)) => {
                let _ = std::fs::remove_file(&dest);
                return Err(Error::verification(format!(
                    "the archive {} that pg_dump wrote does not read back: {why}",
                    dest.display()
                )));
            }
        };
        let own = schema.as_deref().unwrap_or("public");
        let rows = read.rows_keyed_for(own);
        let version = read.newest_version(own);
        let mut entry = Entry::new(EntryScope::Tenant, target.file, bytes, sha256, version);
        entry.customer_id = Some(target.customer_id);
        entry.customer_slug = Some(target.customer_slug.to_string());
        entry.engine = Some(EngineKind::Postgres);
        entry.server = Some(self.server.name().to_string());
        entry.format = Some(CopyFormat::PgDumpCustom);
        entry.rows = Some(rows);
        Ok(BackedUp::Entry(Box::new(entry)))
    }

    /// Builds the backup copy beside the live tenant and checks it: the archive's
    /// SHA-256 first (nothing is made on the server for a file that is not the set's),
    /// then every table's rows once restored. Nothing live changes.
    pub(super) fn stage(&self, source: &RestoreSource<'_>) -> Result<Staged> {
        let entry = source.entry;
        match entry.format() {
            CopyFormat::PgDumpCustom => {}
            CopyFormat::KeptOnServer => return self.stage_kept(source),
            other => {
                return Err(Error::refused(format!(
                    "{} is a {other} copy; {} takes pg_dump archives",
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
        let staging = beside_name(self.name(), "restore", source.set_id);
        let kept = self.new_kept_name()?;
        let built = match self.server.schema_mode() {
            true => self.stage_schema(source, &staging),
            false => self.stage_database(source, &staging),
        };
        let staged = Staged {
            staging,
            target: self.placement.clone(),
            applied: Vec::new(),
            kept_as: Some(kept),
        };
        match built {
            Ok(applied) => Ok(Staged { applied, ..staged }),
            Err(err) => {
                self.drop_staged(&staged);
                Err(err)
            }
        }
    }

    /// Stages a pre-restore copy this tenant's earlier restore kept on the server:
    /// copied (a database by `CREATE DATABASE … TEMPLATE`; a schema through an archive
    /// of it), so that it stays where its set says it is until that set is pruned.
    fn stage_kept(&self, source: &RestoreSource<'_>) -> Result<Staged> {
        let entry = source.entry;
        let kept = entry.kept_as.as_deref().unwrap_or_default();
        let own_copy = entry.server.as_deref() == Some(self.server.name())
            && entry
                .customer_slug
                .as_deref()
                .and_then(|slug| super::tenant_name(slug).ok())
                .as_deref()
                == Some(self.name());
        if !own_copy || !is_kept_name(kept) {
            return Err(Error::refused(format!(
                "{kept} is {}'s pre-restore copy on server {}; it goes back only into that tenant",
                entry.customer_slug.as_deref().unwrap_or("another tenant"),
                entry.server.as_deref().unwrap_or("?")
            ))
            .with_hint("restore from a regular set to copy data into another tenant"));
        }
        let staging = beside_name(self.name(), "restore", source.set_id);
        let staged = Staged {
            staging: staging.clone(),
            target: self.placement.clone(),
            applied: Vec::new(),
            kept_as: Some(self.new_kept_name()?),
        };
        let built = match self.server.schema_mode() {
            true => self.stage_schema_from(kept, source, &staging),
            false => self.copy_kept_database(kept, &staging),
        };
        match built {
            Ok(applied) => Ok(Staged { applied, ..staged }),
            Err(err) => {
                self.drop_staged(&staged);
                Err(err)
            }
        }
    }

    fn copy_kept_database(&self, kept: &str, staging: &str) -> Result<Vec<crate::migrations::MigrationId>> {
        let role = self.role()?;
        let mut admin = self.server.admin(None)?;
        if !self.server.tenant_exists(&mut admin, kept)? {
            return Err(Error::not_found(format!(
                "the pre-restore copy {kept} is gone from server {}",
                self.server.name()
            )));
        }
        // A template must have no sessions while it is copied.
        self.server.forget_connections(&mut admin, &[kept, staging])?;
        self.server.run(
            &mut admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(staging)),
        )?;
        self.server.run(
            &mut admin,
            &format!(
                "CREATE DATABASE {} TEMPLATE {} OWNER {}",
                ident(staging),
                ident(kept),
                ident(&role)
            ),
        )?;
        self.server.run(
            &mut admin,
            &format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", ident(staging)),
        )?;
        let mut copy = self.server.admin(Some(staging))?;
        let history = migrate::history_table(None);
        let applied = migrate::lock_and_read(&mut copy, None, &history)
            .map(Option::unwrap_or_default)
            .map_err(|e| self.server.fail(&e));
        copy.discard();
        applied
    }

    /// Schema mode: an archive of the kept schema, staged as any archive is.
    fn stage_schema_from(
        &self,
        kept: &str,
        source: &RestoreSource<'_>,
        staging: &str,
    ) -> Result<Vec<crate::migrations::MigrationId>> {
        let tools = self.server.dump_tools()?;
        let url = self.server.admin_url()?;
        let work = self.scratch_folder()?;
        let archive = work.path().join("kept.dump");
        let env = url.tool_env(&self.server.home_database()?);
        if let Err(ToolFailed(why)) = archive::dump_schema(&tools, &env, kept, &archive)? {
            return Err(Error::unexpected(format!("copying {kept} failed: {why}")));
        }
        let mut entry = source.entry.clone();
        entry.rows = None;
        self.stage_schema(
            &RestoreSource {
                file: &archive,
                entry: &entry,
                set_id: source.set_id,
            },
            staging,
        )
    }

    /// `<name>__prerestore_<id>`, the id new for this restore (the time to the
    /// microsecond and a random end, as set ids are): never a name that an earlier
    /// restore's set names, even one whose copy was never made because that restore
    /// was killed first, so that pruning that set can never drop this copy.
    fn new_kept_name(&self) -> Result<String> {
        let mut admin = self.server.admin(None)?;
        for _ in 0..8 {
            let name = beside_name(
                self.name(),
                "prerestore",
                &crate::backup::new_id(chrono::Utc::now()),
            );
            if !self.server.tenant_exists(&mut admin, &name)? {
                return Ok(name);
            }
        }
        Err(Error::unexpected(format!(
            "no free name for the pre-restore copy of {}",
            self.describe()
        )))
    }

    fn role(&self) -> Result<String> {
        role_name(&self.placement)
            .ok_or_else(|| Error::unexpected(format!("{} has no tenant role", self.describe())))
    }

    fn restore_failed(&self, source: &RestoreSource<'_>, why: &str) -> Error {
        Error::verification(format!(
            "{} could not be restored into {}: {why}; nothing was restored",
            source.file.display(),
            self.describe()
        ))
        .with_hint("run 'tenantctl backup verify --deep' and restore from another set")
    }

    /// Database mode: a fresh database owned by the tenant's role, the archive
    /// restored into it as that role, rows checked. Returns its migrations.
    fn stage_database(
        &self,
        source: &RestoreSource<'_>,
        staging: &str,
    ) -> Result<Vec<crate::migrations::MigrationId>> {
        let tools = self.server.dump_tools()?;
        let role = self.role()?;
        let mut admin = self.server.admin(None)?;
        self.server.run(
            &mut admin,
            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)", db = ident(staging)),
        )?;
        self.create_empty_database(&mut admin, staging, &role)?;
        drop(admin);
        let env = self.server.admin_url()?.tool_env(staging);
        if let Err(ToolFailed(why)) = archive::restore(&tools, &env, source.file, staging, &role, None)? {
            return Err(self.restore_failed(source, &why));
        }
        let mut copy = self.server.admin(Some(staging))?;
        // A schema-mode tenant's archive (`--into` across modes) makes its schema: a
        // database-mode tenant keeps its tables in `public`.
        let (in_public, others) = schemas_of(&mut copy).map_err(|e| self.server.fail(&e))?;
        if let (0, [schema]) = (in_public, others.as_slice()) {
            self.server.run(
                &mut copy,
                &format!(
                    "DROP SCHEMA public; ALTER SCHEMA {} RENAME TO public",
                    ident(schema)
                ),
            )?;
        }
        // As provisioning leaves it: nobody but the tenant in its schema.
        self.server
            .run(&mut copy, "REVOKE ALL ON SCHEMA public FROM PUBLIC")?;
        let checked = self.check_copy(&mut copy, source, "public", false, None);
        // Renaming the copy in needs it free of connections, this one too.
        copy.discard();
        checked
    }

    /// A folder for a schema restore's intermediate archive, in the home under the
    /// name a restore's leftovers have (so a killed one's is removed with them).
    fn scratch_folder(&self) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(crate::backup::restore::STAGING_PREFIX)
            .tempdir_in(self.server.home_root())
            .map_err(|e| Error::io("making a folder for a schema restore".to_string(), e))
    }

    /// An empty database owned by `role` that only its owner may connect to, for an
    /// archive to be restored into as that role.
    fn create_empty_database(&self, admin: &mut Client, name: &str, role: &str) -> Result<()> {
        self.server.run(
            admin,
            &format!(
                "CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8'",
                ident(name),
                ident(role)
            ),
        )?;
        // Its own statement: CREATE DATABASE cannot share a transaction.
        self.server.run(
            admin,
            &format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", ident(name)),
        )
    }

    /// Schema mode: the archive holds the schema under the tenant's name, which is
    /// taken by the live tenant, and pg_restore cannot rename. So it is restored into
    /// a scratch database first, checked there and renamed there, dumped again under
    /// the new name and restored beside the live schema: into a schema made first
    /// for the tenant's role (whose role may not create schemas in the shared
    /// database), everything else in the archive made by that role.
    fn stage_schema(
        &self,
        source: &RestoreSource<'_>,
        staging: &str,
    ) -> Result<Vec<crate::migrations::MigrationId>> {
        let tools = self.server.dump_tools()?;
        let role = self.role()?;
        let url = self.server.admin_url()?;
        let scratch = format!("{SCRATCH_PREFIX}{:08x}", rand::random::<u32>());
        let mut admin = self.server.admin(None)?;
        self.create_empty_database(&mut admin, &scratch, &role)?;
        drop(admin);
        let work = self.scratch_folder()?;
        let result = (|| -> Result<Vec<crate::migrations::MigrationId>> {
            if let Err(ToolFailed(why)) = archive::restore(
                &tools,
                &url.tool_env(&scratch),
                source.file,
                &scratch,
                &role,
                None,
            )? {
                return Err(self.restore_failed(source, &why));
            }
            let mut copy = self.server.admin(Some(&scratch))?;
            let dumped_as = self.archive_schema(&mut copy)?;
            self.check_copy(&mut copy, source, &dumped_as, true, Some(&dumped_as))?;
            self.server.run(
                &mut copy,
                &format!("ALTER SCHEMA {} RENAME TO {}", ident(&dumped_as), ident(staging)),
            )?;
            copy.discard();
            let renamed = work.path().join("renamed.dump");
            if let Err(ToolFailed(why)) =
                archive::dump_schema(&tools, &url.tool_env(&scratch), staging, &renamed)?
            {
                return Err(self.restore_failed(source, &why));
            }
            let list = work.path().join("renamed.list");
            let contents = match archive::contents(&tools, &renamed)? {
                Ok(contents) => contents,
                Err(ToolFailed(why)) => return Err(self.restore_failed(source, &why)),
            };
            let made_here = format!(" SCHEMA - {staging} ");
            let without_schema: String = contents
                .lines()
                .filter(|line| !line.contains(&made_here))
                .map(|line| format!("{line}\n"))
                .collect();
            std::fs::write(&list, without_schema)
                .map_err(|e| Error::io(format!("writing {}", list.display()), e))?;
            let database = self.server.home_database()?;
            let mut admin = self.server.admin(None)?;
            self.server.run(
                &mut admin,
                &format!(
                    "DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s} AUTHORIZATION {role}",
                    s = ident(staging),
                    role = ident(&role)
                ),
            )?;
            if let Err(ToolFailed(why)) = archive::restore(
                &tools,
                &url.tool_env(&database),
                &renamed,
                &database,
                &role,
                Some(&list),
            )? {
                return Err(self.restore_failed(source, &why));
            }
            let history = migrate::history_table(Some(staging));
            migrate::lock_and_read(&mut admin, None, &history)
                .map(Option::unwrap_or_default)
                .map_err(|e| self.server.fail(&e))
        })();
        if let Ok(mut admin) = self.server.admin(None) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                ident(&scratch)
            ));
        }
        result
    }

    /// The schema that holds the tenant's tables in a restored archive: the one schema
    /// a schema-mode tenant's archive makes, or `public` for a database-mode tenant's.
    fn archive_schema(&self, copy: &mut Client) -> Result<String> {
        let (in_public, others) = schemas_of(copy).map_err(|e| self.server.fail(&e))?;
        match (in_public, others.as_slice()) {
            (0, [one]) => Ok(one.clone()),
            (_, []) => Ok("public".to_string()),
            _ => Err(Error::refused(format!(
                "the archive holds tables in {} schemas besides public; a tenant's own are in one",
                others.len()
            ))),
        }
    }

    /// Counts the copy's rows (in schema `own`, or every schema) against the
    /// manifest's and reads its migrations (from the history table in `history_in`,
    /// else the database's own).
    fn check_copy(
        &self,
        copy: &mut Client,
        source: &RestoreSource<'_>,
        own: &str,
        only_own: bool,
        history_in: Option<&str>,
    ) -> Result<Vec<crate::migrations::MigrationId>> {
        let found = archive::row_counts(copy, own, only_own).map_err(|e| self.server.fail(&e))?;
        if let Some(expected) = &source.entry.rows
            && let Some(why) = archive::compare_rows(expected, &found)
        {
            return Err(self.restore_failed(source, &format!("its rows differ from the backup's: {why}")));
        }
        let history = migrate::history_table(history_in);
        migrate::lock_and_read(copy, None, &history)
            .map(Option::unwrap_or_default)
            .map_err(|e| self.server.fail(&e))
    }

    /// Drops a staged copy (never the live tenant or the kept one).
    pub(super) fn drop_staged(&self, staged: &Staged) {
        let Ok(mut admin) = self.server.admin(None) else {
            return;
        };
        let statement = match self.server.schema_mode() {
            true => format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(&staged.staging)),
            false => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&staged.staging)),
        };
        let _ = admin.batch_execute(&statement);
    }

    /// Brings a swap to its end from wherever it stands: shuts the login out and ends
    /// the tenant's sessions, renames the live tenant to the kept name and the staged
    /// copy to the live name (whichever of the two is still to do; in schema mode
    /// both in one transaction), then lets the login back in when `login` says so
    /// (default: as it was). A staged copy that is gone while the live name is free
    /// means the swap cannot be finished: the kept tenant goes back.
    pub(super) fn complete_swap(&self, staged: &Staged, login: Option<bool>) -> Result<()> {
        let kept = staged
            .kept_as
            .as_deref()
            .ok_or_else(|| Error::unexpected("a server swap without a kept name"))?;
        let live = self.name();
        let role = self.role()?;
        let mut admin = self.server.admin(None)?;
        let login = match login {
            Some(login) => login,
            None => self.server.can_login(&mut admin, &role)?,
        };
        crash_point("restore:pg-before-freeze");
        self.server.set_login(&mut admin, &role, false)?;
        crash_point("restore:pg-frozen");
        let exists = |admin: &mut Client, name: &str| self.server.tenant_exists(admin, name);
        let what = match self.server.schema_mode() {
            true => "SCHEMA",
            false => "DATABASE",
        };
        let rename = |from: &str, to: &str| format!("ALTER {what} {} RENAME TO {};", ident(from), ident(to));
        // From here on any failure lets the login back in: the tenant is never left
        // shut out by a swap that did not happen.
        let moved = (|| -> Result<()> {
            if !self.server.schema_mode() {
                self.server
                    .forget_connections(&mut admin, &[live, &staged.staging])?;
            }
            let (has_live, has_staged, has_kept) = (
                exists(&mut admin, live)?,
                exists(&mut admin, &staged.staging)?,
                exists(&mut admin, kept)?,
            );
            match (has_live, has_staged, has_kept) {
                (true, true, false) if self.server.schema_mode() => {
                    let both = format!(
                        "BEGIN; {} {} COMMIT;",
                        rename(live, kept),
                        rename(&staged.staging, live)
                    );
                    if let Err(err) = self.server.run(&mut admin, &both) {
                        let _ = admin.batch_execute("ROLLBACK");
                        return Err(err);
                    }
                }
                (true, true, false) => {
                    self.server.run(&mut admin, &rename(live, kept))?;
                    crash_point("restore:pg-kept");
                    self.server.run(&mut admin, &rename(&staged.staging, live))?;
                }
                (false, true, _) => self.server.run(&mut admin, &rename(&staged.staging, live))?,
                (false, false, true) => self.server.run(&mut admin, &rename(kept, live))?,
                // Swapped already; or, with no kept copy, a restore into a tenant that had
                // no database yet and whose copy is gone: nothing to move.
                _ => {}
            }
            Ok(())
        })();
        if let Err(err) = moved {
            // Never leave the tenant without its live name: put the kept one back.
            if !exists(&mut admin, live).unwrap_or(true) && exists(&mut admin, kept).unwrap_or(false) {
                let _ = self.server.run(&mut admin, &rename(kept, live));
            }
            if login {
                let _ = self.server.set_login(&mut admin, &role, true);
            }
            return Err(err);
        }
        crash_point("restore:pg-swapped");
        if login {
            self.server.set_login(&mut admin, &role, true)?;
        }
        Ok(())
    }

    /// What a pre-restore set says of the tenant data a swap keeps on the server.
    pub(super) fn kept_entry(&self, staged: &Staged, customer_id: i64, slug: &str) -> Option<Entry> {
        let kept = staged.kept_as.as_deref()?;
        let mut admin = self.server.admin(None).ok()?;
        if !self.server.tenant_exists(&mut admin, self.name()).ok()? {
            return None;
        }
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
        entry.engine = Some(EngineKind::Postgres);
        entry.server = Some(self.server.name().to_string());
        entry.format = Some(CopyFormat::KeptOnServer);
        entry.kept_as = Some(kept.to_string());
        Some(entry)
    }
}

/// How many tables `public` holds, and the other schemas that are not the system's.
fn schemas_of(copy: &mut Client) -> std::result::Result<(i64, Vec<String>), postgres::Error> {
    let others = copy
        .query(
            "SELECT nspname::text FROM pg_namespace
             WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\\_%'
             ORDER BY 1",
            &[],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let in_public: i64 = copy
        .query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", &[])?
        .get(0);
    Ok((in_public, others))
}

/// Databases `backup verify --deep` restores archives into.
const VERIFY_PREFIX: &str = "tenantctl_verify_";

impl PgEngine {
    /// Restores `file` into a scratch database of its own (as the admin login: it
    /// is nobody's tenant) and compares every table's rows with `entry`'s, then drops
    /// the scratch database whatever the outcome.
    pub(super) fn restore_to_check(&self, file: &Path, entry: &Entry) -> Result<()> {
        let tools = self.dump_tools()?;
        let url = self.admin_url()?;
        let scratch = format!("{VERIFY_PREFIX}{:08x}", rand::random::<u32>());
        let mut admin = self.admin(None)?;
        self.run(
            &mut admin,
            &format!(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'",
                ident(&scratch)
            ),
        )?;
        let checked = (|| -> Result<()> {
            self.run(
                &mut admin,
                &format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", ident(&scratch)),
            )?;
            let env = url.tool_env(&scratch);
            if let Err(ToolFailed(why)) = archive::restore(&tools, &env, file, &scratch, &url.user(), None)? {
                return Err(Error::verification(format!(
                    "{} does not restore: {why}",
                    file.display()
                )));
            }
            let mut copy = self.admin(Some(&scratch))?;
            let counted = tenant_tables(&mut copy);
            copy.discard();
            let found = counted.map_err(|e| self.fail(&e))?;
            match entry
                .rows
                .as_ref()
                .and_then(|rows| archive::compare_rows(rows, &found))
            {
                Some(why) => Err(Error::verification(format!(
                    "{} restores with other rows than were backed up: {why}",
                    file.display()
                ))),
                None => Ok(()),
            }
        })();
        let _ = admin.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            ident(&scratch)
        ));
        checked
    }
}

/// The rows of a restored archive's tables, keyed as the manifest keys them: a
/// database-mode tenant's tables are in `public`; a schema-mode tenant's archive holds
/// its one schema.
fn tenant_tables(
    copy: &mut Client,
) -> std::result::Result<std::collections::BTreeMap<String, u64>, postgres::Error> {
    match schemas_of(copy)? {
        (0, others) if others.len() == 1 => archive::row_counts(copy, &others[0], true),
        _ => archive::row_counts(copy, "public", false),
    }
}
