//! The MySQL/MariaDB client tools backups use: `mariadb-dump` (or `mysqldump`) to
//! dump a tenant and the `mariadb` (or `mysql`) client to load a dump back, found on
//! PATH once a command.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct MyTools {
    pub dump: PathBuf,
    pub client: PathBuf,
    /// The dump tool's banner, e.g. `mariadb-dump from 11.8.3-MariaDB, client 10.19`.
    pub version: String,
}

/// The dump tool and client of this machine; exit 6 naming what is missing.
pub fn my_tools(server: &str) -> Result<MyTools> {
    static FOUND: std::sync::OnceLock<Option<MyTools>> = std::sync::OnceLock::new();
    FOUND.get_or_init(find).clone().ok_or_else(|| {
        Error::refused(format!(
            "mariadb-dump (or mysqldump) and the mariadb (or mysql) client are not installed; server {server} needs them for backups"
        ))
        .with_hint("install them (Debian: mariadb-client)")
    })
}

fn find() -> Option<MyTools> {
    let dump = first_on_path(&["mariadb-dump", "mysqldump"])?;
    let client = first_on_path(&["mariadb", "mysql"])?;
    let output = Command::new(&dump).arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    output.status.success().then_some(MyTools {
        dump,
        client,
        version,
    })
}

fn first_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    names
        .iter()
        .find_map(|name| dirs.iter().map(|dir| dir.join(name)).find(|p| is_program(p)))
}

fn is_program(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
