//! Re-reading a set: every file's SHA-256 against its manifest, and quick_check.

use serde::Serialize;

use super::BackupSet;
use super::states::{CopyFormat, FileStatus};
use crate::engine::sqlite;
use crate::files::sha256_file;

#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    pub set: String,
    pub file: String,
    pub customer: Option<String>,
    pub status: FileStatus,
    pub message: String,
}

impl FileCheck {
    pub fn ok(&self) -> bool {
        self.status == FileStatus::Ok
    }
}

pub fn verify_set(set: &BackupSet) -> Vec<FileCheck> {
    set.manifest
        .entries
        .iter()
        .map(|entry| {
            let check = |status: FileStatus, message: String| FileCheck {
                set: set.manifest.id.clone(),
                file: entry.file.clone(),
                customer: entry.customer_slug.clone(),
                status,
                message,
            };
            if entry.format() == CopyFormat::KeptOnServer {
                return check(
                    FileStatus::Ok,
                    format!(
                        "kept on server {} as {}, not in the set's folder",
                        entry.server.as_deref().unwrap_or("?"),
                        entry.kept_as.as_deref().unwrap_or("?")
                    ),
                );
            }
            let path = match set.file(entry) {
                Ok(path) => path,
                Err(err) => return check(FileStatus::Mismatch, err.to_string()),
            };
            let Ok(meta) = std::fs::metadata(&path) else {
                return check(FileStatus::Missing, format!("{} is missing", path.display()));
            };
            if meta.len() != entry.bytes {
                return check(
                    FileStatus::Mismatch,
                    format!(
                        "{} has {} bytes, the manifest says {}",
                        path.display(),
                        meta.len(),
                        entry.bytes
                    ),
                );
            }
            match sha256_file(&path) {
                Ok(sum) if sum == entry.sha256 => {}
                Ok(sum) => {
                    return check(
                        FileStatus::Mismatch,
                        format!(
                            "{} has SHA-256 {sum}, the manifest says {}",
                            path.display(),
                            entry.sha256
                        ),
                    );
                }
                Err(err) => return check(FileStatus::Missing, err.to_string()),
            }
            if let Some(damage) = &entry.damaged {
                return check(
                    FileStatus::Ok,
                    format!("checksum ok; kept damaged before a restore: {damage}"),
                );
            }
            match entry.format() {
                CopyFormat::PgDumpCustom => match crate::engine::postgres::check_archive(&path) {
                    Ok(()) => check(
                        FileStatus::Ok,
                        "checksum and table of contents (pg_restore --list) ok".to_string(),
                    ),
                    Err(why) => check(FileStatus::Damaged, format!("{}: {why}", path.display())),
                },
                CopyFormat::MysqlSql => match crate::engine::mysql::check_script(&path) {
                    Ok(()) => check(
                        FileStatus::Ok,
                        "checksum and completion marker (-- Dump completed) ok".to_string(),
                    ),
                    Err(why) => check(FileStatus::Damaged, format!("{}: {why}", path.display())),
                },
                _ => match sqlite::quick_check(&path) {
                    Ok(()) => check(FileStatus::Ok, "checksum and quick_check ok".to_string()),
                    Err(err) => check(FileStatus::Damaged, err.to_string()),
                },
            }
        })
        .collect()
}
