//! The template database new tenants are copied from, kept at the newest migration so
//! that `customer create` costs the same however many migrations there are.

use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use refinery::Migration;

use super::{Provisioned, applied_migrations, build_fresh, path_text, staging_name};
use crate::error::{Error, IoContext, Result};
use crate::files;
use crate::migrations::{MigrationId, newest_version};

pub const FILE_NAME: &str = "tenant.db";

/// The name a template is built under, owned by the rebuild lock rather than a command.
pub const STAGING_PREFIX: &str = ".provision-template-";

/// The template path, rebuilt first when it is missing or its applied migrations are
/// not exactly `migrations` (a file changed, was added or removed).
pub fn ensure(templates_dir: &Path, migrations: &[Migration]) -> Result<PathBuf> {
    let template = templates_dir.join(FILE_NAME);
    let wanted: Vec<MigrationId> = migrations.iter().map(MigrationId::of).collect();
    let current = || template.is_file() && applied(&template).is_ok_and(|have| have == wanted);
    if current() {
        return Ok(template);
    }
    let _rebuilding = RebuildLock::acquire(templates_dir)?;
    // Whoever held the lock before may have just built what is wanted.
    if current() {
        return Ok(template);
    }
    install_fresh(templates_dir, migrations)
}

/// Builds the template afresh from every migration and installs it atomically.
pub fn rebuild(templates_dir: &Path, migrations: &[Migration]) -> Result<PathBuf> {
    let _rebuilding = RebuildLock::acquire(templates_dir)?;
    install_fresh(templates_dir, migrations)
}

/// One rebuild at a time per home: concurrent creates on a home without a template
/// would otherwise each rename their own build over the file another is checking.
struct RebuildLock {
    _file: std::fs::File,
}

impl RebuildLock {
    fn acquire(templates_dir: &Path) -> Result<Self> {
        files::create_private_dir(templates_dir)?;
        // The folder itself is locked, so that no lock file lies beside the template.
        let file = std::fs::File::open(templates_dir)
            .io_context(|| format!("opening {}", templates_dir.display()))?;
        file.lock()
            .io_context(|| format!("locking {}", templates_dir.display()))?;
        Ok(RebuildLock { _file: file })
    }
}

/// Whether a rebuild holds the templates folder's lock right now.
pub fn rebuild_in_progress(templates_dir: &Path) -> bool {
    std::fs::File::open(templates_dir)
        .is_ok_and(|dir| matches!(dir.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

fn install_fresh(templates_dir: &Path, migrations: &[Migration]) -> Result<PathBuf> {
    let template = templates_dir.join(FILE_NAME);
    // Owned by the rebuild lock, not a command: doctor removes it when the lock is free.
    let staging = templates_dir.join(format!("{STAGING_PREFIX}{:08x}.db", rand::random::<u32>()));
    build_fresh(&staging, migrations)?;
    std::fs::rename(&staging, &template).map_err(|e| {
        let _ = files::remove_database(&staging);
        Error::io(format!("installing template {}", template.display()), e)
    })?;
    files::fsync_dir(templates_dir)?;
    Ok(template)
}

fn applied(template: &Path) -> Result<Vec<MigrationId>> {
    applied_migrations(&super::open_tenant(template)?)
}

/// A template that passed quick_check and holds exactly the wanted migrations, ready
/// for any number of copies. Each copy is a byte copy of this very file: the copies are
/// not opened again (opening a WAL database creates and removes two side files, which
/// is most of what a copy costs on a busy file system).
#[derive(Debug)]
pub struct Checked {
    path: PathBuf,
    identity: Identity,
    applied: Arc<[MigrationId]>,
    schema_version: i64,
    /// The file's bytes, when it is small enough to hold: each copy is then written
    /// from them, a few calls to the system instead of a dozen.
    bytes: Option<Vec<u8>>,
}

/// The largest template held in memory for its copies.
const HELD_BYTES: u64 = 8 * 1024 * 1024;

/// What tells a file apart from a rebuilt or rewritten one.
#[derive(Debug, PartialEq)]
struct Identity {
    device: u64,
    inode: u64,
    bytes: u64,
    modified: (i64, i64),
}

impl Identity {
    fn of(meta: &Metadata) -> Self {
        Identity {
            device: meta.dev(),
            inode: meta.ino(),
            bytes: meta.len(),
            modified: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// The template for `migrations`, checked; a damaged or stale one is rebuilt once
/// rather than blocking every create.
pub fn checked(templates_dir: &Path, migrations: &[Migration]) -> Result<Checked> {
    let wanted: Vec<MigrationId> = migrations.iter().map(MigrationId::of).collect();
    if wanted.is_empty() {
        return Err(
            Error::invalid_input("there are no tenant migrations to build a tenant database from")
                .with_hint("put V<n>__<name>.sql files in the tenant migrations folder"),
        );
    }
    let check = |path: PathBuf| -> Result<Checked> {
        // Held across the check, so that what is recorded is the file that was checked
        // even if another process renames a rebuilt template into place meanwhile.
        let held = std::fs::File::open(&path).io_context(|| format!("reading {}", path.display()))?;
        {
            let conn = super::open_tenant(&path)?;
            let verdict: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
            if verdict != "ok" {
                return Err(Error::verification(format!(
                    "the template fails quick_check: {verdict}"
                )));
            }
            if applied_migrations(&conn)? != wanted {
                return Err(Error::unexpected("the template changed while it was checked"));
            }
        }
        // Taken once the connection is closed, which may have folded its WAL in.
        let read = |meta: std::io::Result<Metadata>| {
            meta.map(|m| Identity::of(&m))
                .io_context(|| format!("reading {}", path.display()))
        };
        let identity = read(held.metadata())?;
        let at_path = read(std::fs::metadata(&path))?;
        if (at_path.device, at_path.inode) != (identity.device, identity.inode) {
            return Err(Error::unexpected("the template changed while it was checked"));
        }
        let bytes = if identity.bytes <= HELD_BYTES {
            let mut bytes = Vec::with_capacity(identity.bytes as usize);
            (&held)
                .read_to_end(&mut bytes)
                .io_context(|| format!("reading {}", path.display()))?;
            // The bytes read are the file that was checked only if it did not change.
            if read(held.metadata())? != identity {
                return Err(Error::unexpected("the template changed while it was checked"));
            }
            Some(bytes)
        } else {
            None
        };
        Ok(Checked {
            path,
            identity,
            applied: Arc::from(wanted.as_slice()),
            schema_version: newest_version(migrations),
            bytes,
        })
    };
    match ensure(templates_dir, migrations).and_then(&check) {
        Ok(done) => Ok(done),
        Err(_) => check(rebuild(templates_dir, migrations)?),
    }
}

impl Checked {
    /// A new tenant database in `dir` under a staging name, mode 0600, synced; refused
    /// when the template is no longer the file that was checked.
    pub fn copy_into(&self, dir: &Path, owner: &str) -> Result<Provisioned> {
        files::create_private_dir(dir)?;
        let staging_path = staging_name(dir, owner);
        let copied = match &self.bytes {
            Some(bytes) => files::write_new_private(&staging_path, bytes),
            None => self.copy_file(&staging_path),
        };
        if let Err(err) = copied {
            let _ = files::remove_database(&staging_path);
            return Err(err);
        }
        Ok(Provisioned {
            staging: path_text(&staging_path)?,
            schema_version: self.schema_version,
            applied: self.applied.clone(),
            role_password: None,
        })
    }

    /// A template too big to hold, copied from its file, which must be the one checked
    /// before and after.
    fn copy_file(&self, to: &Path) -> Result<()> {
        let mut source =
            std::fs::File::open(&self.path).io_context(|| format!("reading {}", self.path.display()))?;
        let unchanged = |source: &std::fs::File| {
            source
                .metadata()
                .is_ok_and(|meta| Identity::of(&meta) == self.identity)
        };
        let changed = || Error::unexpected("the template changed while it was copied");
        if !unchanged(&source) {
            return Err(changed());
        }
        files::copy_private(&mut source, &self.path, to)?;
        if unchanged(&source) {
            Ok(())
        } else {
            Err(changed())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(name: &str, sql: &str) -> Migration {
        Migration::unapplied(name, sql).unwrap()
    }

    #[test]
    fn template_is_reused_until_the_migrations_change() {
        let dir = tempfile::tempdir().unwrap();
        let one = vec![migration("V1__a", "CREATE TABLE a (x);")];
        let path = ensure(dir.path(), &one).unwrap();
        let built = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(ensure(dir.path(), &one).unwrap(), path);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            built,
            "not rebuilt"
        );
        let two = vec![one[0].clone(), migration("V2__b", "CREATE TABLE b (x);")];
        ensure(dir.path(), &two).unwrap();
        assert_eq!(applied(&path).unwrap().len(), 2);
        let changed = vec![migration("V1__a", "CREATE TABLE a (x, y);")];
        ensure(dir.path(), &changed).unwrap();
        assert_eq!(applied(&path).unwrap(), vec![MigrationId::of(&changed[0])]);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no staging files left"
        );
    }

    #[test]
    fn copies_are_of_the_checked_template_even_once_it_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let templates = dir.path().join("templates");
        let tenants = dir.path().join("tenants");
        let one = vec![migration("V1__a", "CREATE TABLE a (x);")];
        let template = checked(&templates, &one).unwrap();
        let checked_bytes = std::fs::read(templates.join(FILE_NAME)).unwrap();
        let copy = template.copy_into(&tenants, "1-00000000").unwrap();
        assert_eq!(
            applied(Path::new(&copy.staging)).unwrap(),
            vec![MigrationId::of(&one[0])]
        );
        assert_eq!(copy.schema_version, 1);
        rebuild(&templates, &one).unwrap();

        // Held in memory, the checked bytes are what every copy gets.
        let held = template.copy_into(&tenants, "1-00000000").unwrap();
        assert_eq!(std::fs::read(&held.staging).unwrap(), checked_bytes);
        // Too big to hold, the file is copied, and a rebuilt one is another file.
        let mut big = template;
        big.bytes = None;
        assert!(
            big.copy_into(&tenants, "1-00000000").is_err(),
            "a rebuilt template is another file"
        );
        assert_eq!(
            std::fs::read_dir(&tenants).unwrap().count(),
            2,
            "the refused copy left nothing"
        );
    }
}
