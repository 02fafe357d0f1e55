//! The operator's tenant migration files: the starter set `init` installs, loading and
//! checking a folder of `V<n>__<name>.sql` files, and how the ledger names them. SQLite
//! tenants use the folder itself, other engines a subfolder named after the engine
//! (`postgres/`), with the same version numbers.

use std::fs;
use std::path::{Path, PathBuf};

use refinery::Migration;

use crate::engine::EngineKind;
use crate::error::{Error, IoContext, Result};
use crate::files;
use crate::sql_text::transaction_control;

/// The starter schema shipped in `migrations/tenant/`, installed by `init`: each
/// migration, then the down scripts that undo them.
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
    (
        "V1__users.down.sql",
        include_str!("../migrations/tenant/V1__users.down.sql"),
    ),
    (
        "V2__products.down.sql",
        include_str!("../migrations/tenant/V2__products.down.sql"),
    ),
    (
        "V3__orders.down.sql",
        include_str!("../migrations/tenant/V3__orders.down.sql"),
    ),
];

/// The same starter schema for PostgreSQL tenants, with the same version numbers.
pub const POSTGRES_STARTER_MIGRATIONS: &[(&str, &str)] = &[
    (
        "V1__users.sql",
        include_str!("../migrations/tenant/postgres/V1__users.sql"),
    ),
    (
        "V2__products.sql",
        include_str!("../migrations/tenant/postgres/V2__products.sql"),
    ),
    (
        "V3__orders.sql",
        include_str!("../migrations/tenant/postgres/V3__orders.sql"),
    ),
    (
        "V1__users.down.sql",
        include_str!("../migrations/tenant/postgres/V1__users.down.sql"),
    ),
    (
        "V2__products.down.sql",
        include_str!("../migrations/tenant/postgres/V2__products.down.sql"),
    ),
    (
        "V3__orders.down.sql",
        include_str!("../migrations/tenant/postgres/V3__orders.down.sql"),
    ),
];

/// The same starter schema for MySQL/MariaDB tenants.
pub const MYSQL_STARTER_MIGRATIONS: &[(&str, &str)] = &[
    (
        "V1__users.sql",
        include_str!("../migrations/tenant/mysql/V1__users.sql"),
    ),
    (
        "V2__products.sql",
        include_str!("../migrations/tenant/mysql/V2__products.sql"),
    ),
    (
        "V3__orders.sql",
        include_str!("../migrations/tenant/mysql/V3__orders.sql"),
    ),
    (
        "V1__users.down.sql",
        include_str!("../migrations/tenant/mysql/V1__users.down.sql"),
    ),
    (
        "V2__products.down.sql",
        include_str!("../migrations/tenant/mysql/V2__products.down.sql"),
    ),
    (
        "V3__orders.down.sql",
        include_str!("../migrations/tenant/mysql/V3__orders.down.sql"),
    ),
];

/// The folder of `engine`'s migrations inside the operator's migrations folder: the
/// folder itself for SQLite, a subfolder named after the engine for the others.
pub fn engine_dir(dir: &Path, engine: EngineKind) -> PathBuf {
    match engine {
        EngineKind::Sqlite => dir.to_path_buf(),
        other => dir.join(other.as_str()),
    }
}

/// Writes the starter migrations into `dir` when it holds no migration yet; returns
/// how many files were written. Each server engine's starter set goes into its subfolder
/// when that is empty and the folder holds the SQLite starter set, so the two always
/// mean the same schema version for version.
pub fn install_starter_set(dir: &Path) -> Result<usize> {
    files::create_private_dir(dir)?;
    let mut written = 0;
    if migration_file_names(dir)?.is_empty() {
        write_set(dir, STARTER_MIGRATIONS)?;
        written = migration_file_names(dir)?.len();
    }
    let mut names = migration_file_names(dir)?;
    names.sort();
    let holds_starter_set = names.iter().map(String::as_str).eq(STARTER_MIGRATIONS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !n.ends_with(DOWN_SUFFIX)));
    if holds_starter_set {
        for (engine, set) in [
            (EngineKind::Postgres, POSTGRES_STARTER_MIGRATIONS),
            (EngineKind::Mysql, MYSQL_STARTER_MIGRATIONS),
        ] {
            let folder = engine_dir(dir, engine);
            if !folder.exists() || migration_file_names(&folder)?.is_empty() {
                files::create_private_dir(&folder)?;
                write_set(&folder, set)?;
            }
        }
    }
    Ok(written)
}

fn write_set(dir: &Path, set: &[(&str, &str)]) -> Result<()> {
    for (name, sql) in set {
        files::write_atomic(&dir.join(name), sql.as_bytes())?;
    }
    Ok(())
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
        // Down scripts are loaded apart, by `load_down_scripts`.
        if !name.ends_with(".sql") || name.ends_with(DOWN_SUFFIX) {
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

/// How a down script's file name ends: `V3__orders.down.sql` undoes `V3__orders.sql`.
pub const DOWN_SUFFIX: &str = ".down.sql";

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

/// What undoes one migration: the text of `V<n>__<name>.down.sql` beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownScript {
    pub version: i64,
    /// The migration's name, as in `V<n>__<name>`.
    pub name: String,
    pub sql: String,
    /// 16 hex digits, like a migration's checksum; what drift is judged by.
    pub checksum: String,
}

impl DownScript {
    /// `V3__orders.down.sql`.
    pub fn file_name(&self) -> String {
        format!("V{}__{}{DOWN_SUFFIX}", self.version, self.name)
    }
}

/// The down scripts in `dir`, by version, each checked against `migrations` (the up
/// scripts of the same folder): a down script whose migration is not there, under the
/// same version and name, or that opens or ends a transaction itself, is refused
/// (exit 9) before anything runs.
pub fn load_down_scripts(dir: &Path, migrations: &[Migration]) -> Result<Vec<DownScript>> {
    let entries = fs::read_dir(dir).map_err(|e| {
        Error::usage(format!(
            "cannot read tenant migrations folder {}: {e}",
            dir.display()
        ))
    })?;
    let mut downs = Vec::new();
    for entry in entries {
        let entry = entry.io_context(|| format!("reading {}", dir.display()))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(DOWN_SUFFIX) else {
            continue;
        };
        let path = dir.join(&file);
        let up = migrations
            .iter()
            .find(|m| format!("V{}__{}", m.version(), m.name()) == stem)
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "down script {} has no migration {stem}.sql beside it",
                    path.display()
                ))
                .with_hint("a down script takes its migration's name with .down before .sql")
            })?;
        let sql = fs::read_to_string(&path)
            .map_err(|e| Error::usage(format!("cannot read down script {}: {e}", path.display())))?;
        if let Some(keyword) = transaction_control(&sql) {
            return Err(
                Error::invalid_input(format!("down script {} contains {keyword}", path.display())).with_hint(
                    "each tenant's rollback runs in one transaction that tenantctl opens and commits",
                ),
            );
        }
        let checksum = Migration::unapplied(&format!("{stem}_down"), &sql)
            .map(|m| checksum_text(m.checksum()))
            .map_err(|e| Error::usage(format!("invalid down script {}: {e}", path.display())))?;
        downs.push(DownScript {
            version: i64::from(up.version()),
            name: up.name().to_string(),
            sql,
            checksum,
        });
    }
    downs.sort_by_key(|d| d.version);
    Ok(downs)
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

/// `engine`'s migrations, after checking that every version in them exists for each
/// engine of `also_in_use` and the other way round: a version number means one
/// logical schema on every engine, so a gap is refused (exit 9) before anything runs.
pub fn load_engine_migrations(
    dir: &Path,
    engine: EngineKind,
    also_in_use: &[EngineKind],
) -> Result<Vec<Migration>> {
    let own_dir = engine_dir(dir, engine);
    if !own_dir.is_dir() {
        return Err(Error::invalid_input(format!(
            "no {engine} tenant migrations: {} does not exist",
            own_dir.display()
        ))
        .with_hint(format!(
            "write V<n>__<name>.sql files for {engine} there, with the same versions as {}",
            dir.display()
        )));
    }
    let own = load_migrations(&own_dir)?;
    for other in also_in_use.iter().filter(|other| **other != engine) {
        let other_dir = engine_dir(dir, *other);
        let theirs = load_migrations(&other_dir)?;
        let missing_here = versions_missing(&theirs, &own);
        let missing_there = versions_missing(&own, &theirs);
        if let Some((version, name)) = missing_here.first() {
            return Err(version_gap(*version, name, &other_dir, &own_dir));
        }
        if let Some((version, name)) = missing_there.first() {
            return Err(version_gap(*version, name, &own_dir, &other_dir));
        }
    }
    Ok(own)
}

/// The versions of `from` that `of` lacks, with their file names.
fn versions_missing(from: &[Migration], of: &[Migration]) -> Vec<(i32, String)> {
    from.iter()
        .filter(|m| !of.iter().any(|o| o.version() == m.version()))
        .map(|m| (m.version(), format!("V{}__{}.sql", m.version(), m.name())))
        .collect()
}

fn version_gap(version: i32, file: &str, has: &Path, lacks: &Path) -> Error {
    Error::invalid_input(format!(
        "tenant migration version {version} ({}) has no counterpart in {}",
        has.join(file).display(),
        lacks.display()
    ))
    .with_hint("every engine in use needs the same migration versions; add the missing file")
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
        assert_eq!(install_starter_set(&migrations_dir).unwrap(), 3);
        assert_eq!(install_starter_set(&migrations_dir).unwrap(), 0);
        let migrations = load_migrations(&migrations_dir).unwrap();
        assert_eq!(newest_version(&migrations), 3);
        let downs = load_down_scripts(&migrations_dir, &migrations).unwrap();
        assert_eq!(downs.iter().map(|d| d.version).collect::<Vec<_>>(), [1, 2, 3]);
        for engine in [EngineKind::Postgres, EngineKind::Mysql] {
            let folder = engine_dir(&migrations_dir, engine);
            let theirs = load_migrations(&folder).unwrap();
            assert_eq!(load_down_scripts(&folder, &theirs).unwrap().len(), 3);
        }
    }

    #[test]
    fn a_down_script_needs_its_migration_and_no_transaction_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("V1__a.sql"), "CREATE TABLE a (x);").unwrap();
        fs::write(dir.path().join("V1__a.down.sql"), "DROP TABLE a;").unwrap();
        let ups = load_migrations(dir.path()).unwrap();
        assert_eq!(ups.len(), 1, "a down script is no migration of its own");
        assert_eq!(
            load_down_scripts(dir.path(), &ups).unwrap()[0].file_name(),
            "V1__a.down.sql"
        );
        fs::write(dir.path().join("V2__b.down.sql"), "DROP TABLE b;").unwrap();
        let orphan = load_down_scripts(dir.path(), &ups).unwrap_err();
        assert_eq!(orphan.exit_code(), 9);
        assert!(orphan.to_string().contains("V2__b.down.sql"), "{orphan}");
        fs::remove_file(dir.path().join("V2__b.down.sql")).unwrap();
        fs::write(dir.path().join("V1__a.down.sql"), "DROP TABLE a; COMMIT;").unwrap();
        assert_eq!(load_down_scripts(dir.path(), &ups).unwrap_err().exit_code(), 9);
    }

    #[test]
    fn missing_folder_is_a_usage_error() {
        let err = load_migrations(Path::new("/nonexistent/tenantctl-migrations")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("/nonexistent/tenantctl-migrations"));
    }
}
