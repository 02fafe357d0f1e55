//! The operator's tenant migration files: the starter set `init` installs, loading and
//! checking a folder of `V<n>__<name>.sql` files, and how the ledger names them. The
//! files are the same whatever engine a tenant lives on.

use std::fs;
use std::path::Path;

use refinery::Migration;

use crate::error::{Error, IoContext, Result};
use crate::files;
use crate::sql_text::transaction_control;

/// The starter schema shipped in `migrations/tenant/`, installed by `init`.
pub const STARTER_MIGRATIONS: &[(&str, &str)] = &[
    (
        "V1__users.sql",
        include_str!("../migrations/tenant/V1__users.sql"),
    ),
    (
        "V2__products.sql",
        include_str!("../migrations/tenant/V2__products.sql"),
    ),
    (
        "V3__orders.sql",
        include_str!("../migrations/tenant/V3__orders.sql"),
    ),
];

/// Writes the starter migrations into `dir` when it holds no migration yet; returns
/// how many files were written.
pub fn install_starter_set(dir: &Path) -> Result<usize> {
    files::create_private_dir(dir)?;
    if !migration_file_names(dir)?.is_empty() {
        return Ok(0);
    }
    for (name, sql) in STARTER_MIGRATIONS {
        files::write_atomic(&dir.join(name), sql.as_bytes())?;
    }
    Ok(STARTER_MIGRATIONS.len())
}

fn migration_file_names(dir: &Path) -> Result<Vec<String>> {
    let entries = fs::read_dir(dir).map_err(|e| {
        Error::usage(format!(
            "cannot read tenant migrations folder {}: {e}",
            dir.display()
        ))
        .with_hint("create it, or point 'tenantctl config set tenant_migrations_dir' at it")
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.io_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".sql") {
            continue;
        }
        if !is_migration_name(&name) {
            return Err(Error::invalid_input(format!(
                "tenant migration {} is not named V<n>__<name>.sql",
                dir.join(&name).display()
            ))
            .with_hint("rename it, or move it out of the migrations folder"));
        }
        names.push(name);
    }
    Ok(names)
}

/// `V<version>__<name>.sql`, as refinery names migrations.
fn is_migration_name(file: &str) -> bool {
    let Some(stem) = file.strip_suffix(".sql").and_then(|s| s.strip_prefix(['V', 'U'])) else {
        return false;
    };
    match stem.split_once("__") {
        Some((version, name)) => {
            !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()
        }
        None => false,
    }
}

/// The operator's tenant migrations, ordered by version.
pub fn load_migrations(dir: &Path) -> Result<Vec<Migration>> {
    let mut names = migration_file_names(dir)?;
    names.sort();
    let mut migrations = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join(&name);
        let sql = fs::read_to_string(&path)
            .map_err(|e| Error::usage(format!("cannot read tenant migration {}: {e}", path.display())))?;
        if let Some(keyword) = transaction_control(&sql) {
            return Err(Error::invalid_input(format!(
                "tenant migration {} contains {keyword}",
                path.display()
            ))
            .with_hint("each tenant's migrations run in one transaction that tenantctl opens and commits"));
        }
        let migration = Migration::unapplied(name.trim_end_matches(".sql"), &sql)
            .map_err(|e| Error::usage(format!("invalid tenant migration {}: {e}", path.display())))?;
        migrations.push(migration);
    }
    migrations.sort();
    if let Some(pair) = migrations.windows(2).find(|w| w[0].version() == w[1].version()) {
        return Err(Error::usage(format!(
            "two tenant migrations share version {} in {}",
            pair[0].version(),
            dir.display()
        )));
    }
    Ok(migrations)
}

/// The schema version a tenant reaches after every migration in `migrations`.
pub fn newest_version(migrations: &[Migration]) -> i64 {
    migrations
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// A tenant migration file as the catalog's ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MigrationId {
    pub version: i64,
    pub name: String,
    pub checksum: String,
}

impl MigrationId {
    pub fn of(migration: &Migration) -> Self {
        MigrationId {
            version: i64::from(migration.version()),
            name: migration.name().to_string(),
            checksum: checksum_text(migration.checksum()),
        }
    }
}

/// Refinery's u64 checksum as 16 hex digits, the form shown everywhere.
pub fn checksum_text(checksum: u64) -> String {
    format!("{checksum:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_set_installs_once() {
        let dir = tempfile::tempdir().unwrap();
        let migrations_dir = dir.path().join("m");
        assert_eq!(
            install_starter_set(&migrations_dir).unwrap(),
            STARTER_MIGRATIONS.len()
        );
        assert_eq!(install_starter_set(&migrations_dir).unwrap(), 0);
        let migrations = load_migrations(&migrations_dir).unwrap();
        assert_eq!(newest_version(&migrations), 3);
    }

    #[test]
    fn missing_folder_is_a_usage_error() {
        let err = load_migrations(Path::new("/nonexistent/tenantctl-migrations")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("/nonexistent/tenantctl-migrations"));
    }
}
