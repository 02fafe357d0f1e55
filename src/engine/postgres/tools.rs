//! The PostgreSQL client tools backups use (`pg_dump`, `pg_restore`): found on this
//! machine, newest first, and checked against a server's version, since a pg_dump
//! older than its server refuses to dump it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// The dump tools of one installed PostgreSQL version.
#[derive(Debug, Clone)]
pub struct DumpTools {
    pub pg_dump: PathBuf,
    pub pg_restore: PathBuf,
    /// `pg_dump --version`'s number, e.g. `15.18`.
    pub version: String,
    pub major: u32,
}

/// The newest pg_dump/pg_restore pair on this machine that can dump a server of
/// `server_major`; exit 6 with both versions when there is none.
pub fn dump_tools(server: &str, server_version: &str, server_major: u32) -> Result<DumpTools> {
    let found = newest_tools();
    match found {
        Some(tools) if tools.major >= server_major => Ok(tools),
        Some(tools) => Err(Error::refused(format!(
            "pg_dump {} ({}) is older than server {server}'s PostgreSQL {server_version}",
            tools.version,
            tools.pg_dump.display()
        ))
        .with_hint(format!(
            "install the PostgreSQL {server_major} client tools (Debian: postgresql-client-{server_major})"
        ))),
        None => Err(Error::refused(format!(
            "pg_dump and pg_restore are not installed; server {server} runs PostgreSQL {server_version}"
        ))
        .with_hint(format!(
            "install the PostgreSQL {server_major} client tools (Debian: postgresql-client-{server_major})"
        ))),
    }
}

/// The newest pg_dump/pg_restore pair on this machine, if any: what reads an
/// archive without a server to match.
///
/// Of equal versions the first found wins: a version's own folder comes before PATH,
/// whose `pg_dump` on Debian is a Perl wrapper that costs tens of milliseconds of CPU
/// on every call, and a fleet's backup makes two calls per tenant.
pub fn newest_tools() -> Option<DumpTools> {
    // Looked for once a command: every tenant of a fleet needs them.
    static NEWEST: std::sync::OnceLock<Option<DumpTools>> = std::sync::OnceLock::new();
    NEWEST.get_or_init(find_newest).clone()
}

fn find_newest() -> Option<DumpTools> {
    candidates()
        .into_iter()
        .filter_map(|dir| tools_in(&dir))
        .fold(None, |best: Option<DumpTools>, found| match best {
            Some(best) if best.major >= found.major => Some(best),
            _ => Some(found),
        })
}

/// Folders that may hold the tools: each installed version's (Debian keeps them in
/// /usr/lib/postgresql/N/bin), then every folder of PATH.
fn candidates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

fn tools_in(dir: &Path) -> Option<DumpTools> {
    let pg_dump = dir.join("pg_dump");
    let pg_restore = dir.join("pg_restore");
    if !pg_dump.is_file() || !pg_restore.is_file() {
        return None;
    }
    let output = Command::new(&pg_dump).arg("--version").output().ok()?;
    let version = parse_version(&String::from_utf8_lossy(&output.stdout))?;
    let major = version.split('.').next()?.parse().ok()?;
    Some(DumpTools {
        pg_dump,
        pg_restore,
        version,
        major,
    })
}

/// The number in `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`.
fn parse_version(text: &str) -> Option<String> {
    let after = text.split_once(')')?.1.trim_start();
    let number: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!number.is_empty()).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_tools_banner() {
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n").as_deref(),
            Some("15.18")
        );
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 17beta1\n").as_deref(),
            Some("17")
        );
        assert_eq!(parse_version("nonsense"), None);
    }
}
