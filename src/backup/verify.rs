//! Re-reading a set: every file's SHA-256 against its manifest, and quick_check.

use serde::Serialize;

use super::BackupSet;
use crate::engine::sqlite;
use crate::files::sha256_file;

#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    pub set: String,
    pub file: String,
    pub customer: Option<String>,
    /// `ok`, `missing`, `mismatch` (checksum or size) or `damaged` (quick_check).
    pub status: String,
    pub message: String,
}

impl FileCheck {
    pub fn ok(&self) -> bool {
        self.status == "ok"
    }
}

pub fn verify_set(set: &BackupSet) -> Vec<FileCheck> {
    set.manifest
        .entries
        .iter()
        .map(|entry| {
            let check = |status: &str, message: String| FileCheck {
                set: set.manifest.id.clone(),
                file: entry.file.clone(),
                customer: entry.customer_slug.clone(),
                status: status.to_string(),
                message,
            };
            let path = match set.file(entry) {
                Ok(path) => path,
                Err(err) => return check("mismatch", err.to_string()),
            };
            let Ok(meta) = std::fs::metadata(&path) else {
                return check("missing", format!("{} is missing", path.display()));
            };
            if meta.len() != entry.bytes {
                return check(
                    "mismatch",
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
                        "mismatch",
                        format!(
                            "{} has SHA-256 {sum}, the manifest says {}",
                            path.display(),
                            entry.sha256
                        ),
                    );
                }
                Err(err) => return check("missing", err.to_string()),
            }
            if let Some(damage) = &entry.damaged {
                return check(
                    "ok",
                    format!("checksum ok; kept damaged before a restore: {damage}"),
                );
            }
            match sqlite::quick_check(&path) {
                Ok(()) => check("ok", "checksum and quick_check ok".to_string()),
                Err(err) => check("damaged", err.to_string()),
            }
        })
        .collect()
}
