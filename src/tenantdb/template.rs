//! The template database new tenants are copied from, kept at the newest migration so
//! that `customer create` costs the same however many migrations there are.

use std::path::{Path, PathBuf};

use refinery::Migration;

use super::{MigrationId, applied_migrations, build_fresh, staging_name};
use crate::error::Result;
use crate::files;

pub const FILE_NAME: &str = "tenant.db";

/// The template path, rebuilt first when it is missing or its applied migrations are
/// not exactly `migrations` (a file changed, was added or removed).
pub fn ensure(templates_dir: &Path, migrations: &[Migration]) -> Result<PathBuf> {
    let template = templates_dir.join(FILE_NAME);
    let wanted: Vec<MigrationId> = migrations.iter().map(MigrationId::of).collect();
    if template.is_file() && applied(&template).is_ok_and(|have| have == wanted) {
        return Ok(template);
    }
    rebuild(templates_dir, migrations)
}

/// Builds the template afresh from every migration and installs it atomically.
pub fn rebuild(templates_dir: &Path, migrations: &[Migration]) -> Result<PathBuf> {
    let template = templates_dir.join(FILE_NAME);
    files::create_private_dir(templates_dir)?;
    let staging = staging_name(templates_dir);
    build_fresh(&staging, migrations)?;
    // Another process may rebuild at the same time; both results are equal and the
    // rename is atomic, so whichever lands last is as good as the other.
    std::fs::rename(&staging, &template).map_err(|e| {
        let _ = files::remove_database(&staging);
        crate::error::Error::io(format!("installing template {}", template.display()), e)
    })?;
    files::fsync_dir(templates_dir)?;
    Ok(template)
}

fn applied(template: &Path) -> Result<Vec<MigrationId>> {
    applied_migrations(&super::open_tenant(template)?)
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
}
