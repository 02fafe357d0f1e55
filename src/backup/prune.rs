//! Retention: which sets to keep (the last N, and the newest of each recent day, week
//! and month), never the newest set; and stale unfinished sets.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use chrono::Datelike;
use serde::Serialize;

use super::{BackupSet, TMP_PREFIX, list_sets};
use crate::error::{IoContext, Result};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Retention {
    pub keep_last: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub id: String,
    pub created_at: String,
    pub kind: String,
    /// `keep` or `remove`.
    pub action: String,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub retention: Retention,
    pub sets: Vec<Decision>,
    pub removed_unfinished: Vec<String>,
}

/// How long an unfinished set may sit before prune treats it as a crash leftover.
pub const STALE_TMP: Duration = Duration::from_secs(3600);

/// Decides for each set, newest first. Sets that hold the catalog and sets that hold
/// only some tenants are judged separately, so a run of small sets never pushes out
/// the last full one; the newest of each kind always stays.
pub fn plan(sets: &[BackupSet], retention: Retention) -> Vec<Decision> {
    let (full, partial): (Vec<&BackupSet>, Vec<&BackupSet>) =
        sets.iter().partition(|s| s.manifest.catalog_entry().is_some());
    let mut decisions: Vec<Decision> = decide(&full, retention)
        .into_iter()
        .chain(decide(&partial, retention))
        .collect();
    decisions.sort_by(|a, b| b.id.cmp(&a.id));
    decisions
}

fn decide(sets: &[&BackupSet], retention: Retention) -> Vec<Decision> {
    let mut days = HashSet::new();
    let mut weeks = HashSet::new();
    let mut months = HashSet::new();
    sets.iter()
        .rev()
        .enumerate()
        .map(|(position, set)| {
            let mut reasons = Vec::new();
            if position == 0 {
                reasons.push("newest".to_string());
            }
            if (position as u32) < retention.keep_last {
                reasons.push("last".to_string());
            }
            match set.manifest.created() {
                Some(at) => {
                    let mut bucket = |seen: &mut HashSet<String>, key: String, limit: u32, name: &str| {
                        if !seen.contains(&key) && (seen.len() as u32) < limit {
                            seen.insert(key);
                            reasons.push(name.to_string());
                        }
                    };
                    bucket(
                        &mut days,
                        at.format("%Y-%m-%d").to_string(),
                        retention.keep_daily,
                        "daily",
                    );
                    let week = at.iso_week();
                    bucket(
                        &mut weeks,
                        format!("{}-W{}", week.year(), week.week()),
                        retention.keep_weekly,
                        "weekly",
                    );
                    bucket(
                        &mut months,
                        at.format("%Y-%m").to_string(),
                        retention.keep_monthly,
                        "monthly",
                    );
                }
                None => reasons.push("undated".to_string()),
            }
            Decision {
                id: set.manifest.id.clone(),
                created_at: set.manifest.created_at.clone(),
                kind: set.manifest.kind.clone(),
                action: if reasons.is_empty() { "remove" } else { "keep" }.to_string(),
                reasons,
            }
        })
        .collect()
}

pub fn prune(backup_dir: &Path, retention: Retention, dry_run: bool) -> Result<PruneReport> {
    let sets = list_sets(backup_dir)?;
    let decisions = plan(&sets, retention);
    if !dry_run {
        for decision in decisions.iter().filter(|d| d.action == "remove") {
            super::remove_set(&backup_dir.join(&decision.id))?;
        }
    }
    let mut removed_unfinished = Vec::new();
    if let Ok(entries) = std::fs::read_dir(backup_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() > STALE_TMP);
            // A backup still running holds a lock on its folder.
            let running = std::fs::File::open(entry.path()).is_ok_and(|dir| dir.try_lock().is_err());
            if name.starts_with(TMP_PREFIX) && stale && !running {
                if !dry_run {
                    std::fs::remove_dir_all(entry.path())
                        .io_context(|| format!("removing {}", entry.path().display()))?;
                }
                removed_unfinished.push(name);
            }
        }
    }
    Ok(PruneReport {
        dry_run,
        retention,
        sets: decisions,
        removed_unfinished,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::Manifest;

    fn set(id: &str, created_at: &str) -> BackupSet {
        let catalog = crate::backup::Entry {
            scope: "catalog".to_string(),
            customer_id: None,
            customer_slug: None,
            file: "catalog.db".to_string(),
            bytes: 1,
            sha256: String::new(),
            schema_version: 2,
            source: None,
            linked_from: None,
            copy: None,
            damaged: None,
        };
        BackupSet {
            dir: Path::new("/b").join(id),
            manifest: Manifest {
                id: id.to_string(),
                created_at: created_at.to_string(),
                finished_at: created_at.to_string(),
                finished_at_exact: None,
                scope: None,
                label: None,
                kind: "scheduled".to_string(),
                tool_version: "0".to_string(),
                catalog_schema_version: 1,
                entries: vec![catalog],
                skipped: Vec::new(),
            },
        }
    }

    #[test]
    fn partial_sets_never_push_out_the_last_full_one() {
        let mut partial = set("b", "2026-11-22T02:00:00Z");
        partial.manifest.entries.clear();
        let sets = vec![set("a", "2026-11-22T01:00:00Z"), partial];
        let decisions = plan(
            &sets,
            Retention {
                keep_last: 1,
                ..Default::default()
            },
        );
        assert!(decisions.iter().all(|d| d.action == "keep"), "{decisions:?}");
    }

    #[test]
    fn keeps_the_newest_of_each_period_and_always_the_newest_set() {
        let sets = vec![
            set("a", "2026-09-15T01:00:00Z"),
            set("b", "2026-10-30T01:00:00Z"),
            set("c", "2026-11-20T01:00:00Z"),
            set("d", "2026-11-21T01:00:00Z"),
            set("e", "2026-11-21T13:00:00Z"),
            set("f", "2026-11-22T01:00:00Z"),
        ];
        let keep = |retention: Retention| -> Vec<String> {
            plan(&sets, retention)
                .into_iter()
                .filter(|d| d.action == "keep")
                .map(|d| d.id)
                .collect()
        };
        assert_eq!(keep(Retention::default()), ["f"], "the newest set always stays");
        assert_eq!(
            keep(Retention {
                keep_last: 2,
                ..Default::default()
            }),
            ["f", "e"]
        );
        assert_eq!(
            keep(Retention {
                keep_daily: 2,
                ..Default::default()
            }),
            ["f", "e"]
        );
        assert_eq!(
            keep(Retention {
                keep_daily: 3,
                ..Default::default()
            }),
            ["f", "e", "c"]
        );
        assert_eq!(
            keep(Retention {
                keep_monthly: 3,
                ..Default::default()
            }),
            ["f", "b", "a"]
        );
        let weekly = keep(Retention {
            keep_weekly: 2,
            ..Default::default()
        });
        assert_eq!(
            weekly,
            ["f", "b"],
            "2026-11-22 is a Sunday: c..f share ISO week 47"
        );
    }
}
