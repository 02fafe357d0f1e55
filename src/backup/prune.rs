//! Retention: which sets to keep (the last N, and the newest of each recent day, week
//! and month), never the newest set; and unfinished sets whose writer is gone.

use std::collections::HashSet;
use std::path::Path;

use chrono::Datelike;
use serde::Serialize;

use super::states::{BackupKind, PruneAction, PruneReason};
use super::{BackupSet, list_sets};
use crate::error::Result;

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
    pub kind: BackupKind,
    pub action: PruneAction,
    pub reasons: Vec<PruneReason>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub retention: Retention,
    pub sets: Vec<Decision>,
    /// Folders removed (or, in a dry run, to remove) that were no complete set: sets a
    /// killed prune left half deleted, then unfinished sets whose writer is gone.
    pub removed_unfinished: Vec<String>,
    /// Copies kept on database servers that could not be dropped, each with why: their
    /// sets stay (`kept-copy-remains`) until a later prune can.
    pub kept_copies_remaining: Vec<String>,
    /// How many of `removed_unfinished`, from the start, an interrupted prune left.
    #[serde(skip)]
    pub half_deleted: usize,
}

/// Decides for each set, newest first. Only regular sets (`manual`, `scheduled`) fill
/// the retention slots; sets that hold the catalog and sets that hold only some tenants
/// are judged separately, so a run of small sets never pushes out the last full one, and
/// the newest of each kind always stays. A partial set also stays while it holds some
/// tenant's newest copy, so a `--customer` backup is not lost before a newer set holds
/// that tenant. Pre-restore sets never take a regular set's slot: see
/// [`decide_pre_restore`]. A set with no entries holds nothing to restore and is removed.
pub fn plan(sets: &[BackupSet], retention: Retention) -> Vec<Decision> {
    let (filled, empty): (Vec<&BackupSet>, Vec<&BackupSet>) =
        sets.iter().partition(|s| !s.manifest.entries.is_empty());
    let (regular, pre_restore): (Vec<&BackupSet>, Vec<&BackupSet>) =
        filled.into_iter().partition(|s| is_regular(s));
    let (full, partial): (Vec<&BackupSet>, Vec<&BackupSet>) = regular
        .iter()
        .copied()
        .partition(|s| s.manifest.catalog_entry().is_some());
    // Only partial sets are held by a newest copy: a full set is judged by retention
    // alone, or a deleted tenant's last copy would pin a whole old set forever.
    let newest_copies = holders_of_newest_copies(&regular);
    let mut decisions: Vec<Decision> = decide(&full, retention, &HashSet::new())
        .into_iter()
        .chain(decide(&partial, retention, &newest_copies))
        .collect();
    let oldest_kept = decisions
        .iter()
        .filter(|d| d.action == PruneAction::Keep)
        .map(|d| d.id.clone())
        .min();
    decisions.extend(decide_pre_restore(&pre_restore, oldest_kept.as_deref()));
    decisions.extend(
        empty
            .into_iter()
            .map(|set| decision(set, vec![], Some(PruneReason::Empty))),
    );
    decisions.sort_by(|a, b| b.id.cmp(&a.id));
    decisions
}

/// Taken by the operator or cron, as opposed to saved by a restore.
fn is_regular(set: &BackupSet) -> bool {
    set.manifest.kind.is_regular()
}

/// Ids of the sets holding some tenant's newest restorable copy. Set ids sort by time.
fn holders_of_newest_copies(regular: &[&BackupSet]) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut holders = HashSet::new();
    for set in regular.iter().rev() {
        for entry in &set.manifest.entries {
            if let Some(id) = entry.customer_id
                && set.manifest.tenant_entry(id).is_some()
                && seen.insert(id)
            {
                holders.insert(set.manifest.id.clone());
            }
        }
    }
    holders
}

/// A pre-restore set is kept while it is no older than the oldest regular set kept (it
/// lives as long as the backups around it), and always when no regular set is kept.
fn decide_pre_restore(sets: &[&BackupSet], oldest_kept: Option<&str>) -> Vec<Decision> {
    sets.iter()
        .map(|set| {
            let within = oldest_kept.is_none_or(|oldest| set.manifest.id.as_str() >= oldest);
            let reasons = if within {
                vec![PruneReason::PreRestore]
            } else {
                vec![]
            };
            decision(set, reasons, None)
        })
        .collect()
}

/// `keep` when there is a reason to, else `remove` (with `why_removed`, if any, as its
/// only reason).
fn decision(set: &BackupSet, reasons: Vec<PruneReason>, why_removed: Option<PruneReason>) -> Decision {
    let keep = !reasons.is_empty();
    Decision {
        id: set.manifest.id.clone(),
        created_at: set.manifest.created_at.clone(),
        kind: set.manifest.kind,
        action: if keep {
            PruneAction::Keep
        } else {
            PruneAction::Remove
        },
        reasons: match why_removed {
            Some(why) if !keep => vec![why],
            _ => reasons,
        },
    }
}

fn decide(sets: &[&BackupSet], retention: Retention, newest_copies: &HashSet<String>) -> Vec<Decision> {
    let mut days = HashSet::new();
    let mut weeks = HashSet::new();
    let mut months = HashSet::new();
    sets.iter()
        .rev()
        .enumerate()
        .map(|(position, set)| {
            let mut reasons = Vec::new();
            if position == 0 {
                reasons.push(PruneReason::Newest);
            }
            if newest_copies.contains(&set.manifest.id) {
                reasons.push(PruneReason::NewestCopy);
            }
            if (position as u32) < retention.keep_last {
                reasons.push(PruneReason::Last);
            }
            match set.manifest.created() {
                Some(at) => {
                    let mut bucket =
                        |seen: &mut HashSet<String>, key: String, limit: u32, name: PruneReason| {
                            if !seen.contains(&key) && (seen.len() as u32) < limit {
                                seen.insert(key);
                                reasons.push(name);
                            }
                        };
                    bucket(
                        &mut days,
                        at.format("%Y-%m-%d").to_string(),
                        retention.keep_daily,
                        PruneReason::Daily,
                    );
                    let week = at.iso_week();
                    bucket(
                        &mut weeks,
                        format!("{}-W{}", week.year(), week.week()),
                        retention.keep_weekly,
                        PruneReason::Weekly,
                    );
                    bucket(
                        &mut months,
                        at.format("%Y-%m").to_string(),
                        retention.keep_monthly,
                        PruneReason::Monthly,
                    );
                }
                None => reasons.push(PruneReason::Undated),
            }
            decision(set, reasons, None)
        })
        .collect()
}

/// Finishes removals a crash interrupted, applies the retention plan and removes
/// unfinished sets whose writer is gone. `removed_unfinished` names the half-deleted
/// folders first (see [`super::half_deleted`]), then the unfinished sets (see
/// [`super::abandoned_sets`]).
///
/// A set being removed first has `drop_kept` drop each copy it keeps on a database
/// server (a restore's pre-restore copy of a server tenant); when one cannot be
/// dropped, the set stays, so that the copy is never left without a set naming it.
pub fn prune(
    backup_dir: &Path,
    retention: Retention,
    dry_run: bool,
    drop_kept: &dyn Fn(&super::Entry) -> Result<()>,
) -> Result<PruneReport> {
    let mut removed_unfinished = super::half_deleted(backup_dir);
    let half_deleted = removed_unfinished.len();
    if !dry_run {
        super::finish_deleting(backup_dir, &removed_unfinished)?;
    }
    let sets = list_sets(backup_dir)?;
    let mut decisions = plan(&sets, retention);
    let mut kept_copies_remaining = Vec::new();
    // A copy that a set staying still names is never dropped with another set.
    let still_named: HashSet<String> = sets
        .iter()
        .filter(|set| {
            decisions
                .iter()
                .any(|d| d.id == set.manifest.id && d.action == PruneAction::Keep)
        })
        .flat_map(|set| set.manifest.entries.iter().filter_map(|e| e.kept_as.clone()))
        .collect();
    if !dry_run {
        for decision in decisions.iter_mut().filter(|d| d.action == PruneAction::Remove) {
            let kept = sets
                .iter()
                .filter(|set| set.manifest.id == decision.id)
                .flat_map(|set| &set.manifest.entries)
                .filter(|entry| entry.format() == super::CopyFormat::KeptOnServer)
                .filter(|entry| {
                    entry
                        .kept_as
                        .as_ref()
                        .is_none_or(|name| !still_named.contains(name))
                });
            let mut all_dropped = true;
            for entry in kept {
                if let Err(err) = drop_kept(entry) {
                    all_dropped = false;
                    kept_copies_remaining.push(format!(
                        "{} (set {}): {err}",
                        entry.kept_as.as_deref().unwrap_or("?"),
                        decision.id
                    ));
                }
            }
            if !all_dropped {
                decision.action = PruneAction::Keep;
                decision.reasons = vec![PruneReason::KeptCopyRemains];
                continue;
            }
            super::remove_set(backup_dir, &decision.id)?;
        }
    }
    for name in super::abandoned_sets(backup_dir) {
        if dry_run || super::remove_if_abandoned(&backup_dir.join(&name))? {
            removed_unfinished.push(name);
        }
    }
    Ok(PruneReport {
        dry_run,
        retention,
        sets: decisions,
        removed_unfinished,
        kept_copies_remaining,
        half_deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::Manifest;
    use crate::backup::states::EntryScope;

    fn entry(customer_id: Option<i64>) -> crate::backup::Entry {
        let scope = match customer_id {
            Some(_) => EntryScope::Tenant,
            None => EntryScope::Catalog,
        };
        let mut entry = crate::backup::Entry::new(scope, "catalog.db", 1, String::new(), 2);
        entry.customer_id = customer_id;
        entry.customer_slug = customer_id.map(|id| format!("t{id}"));
        entry
    }

    fn set(id: &str, created_at: &str) -> BackupSet {
        BackupSet {
            dir: Path::new("/b").join(id),
            manifest: Manifest {
                id: id.to_string(),
                created_at: created_at.to_string(),
                finished_at: created_at.to_string(),
                finished_at_exact: None,
                scope: None,
                label: None,
                kind: BackupKind::Scheduled,
                tool_version: "0".to_string(),
                catalog_schema_version: 1,
                entries: vec![entry(None)],
                skipped: Vec::new(),
            },
        }
    }

    #[test]
    fn partial_sets_never_push_out_the_last_full_one() {
        let mut partial = set("b", "2026-11-22T02:00:00Z");
        partial.manifest.entries = vec![entry(Some(1))];
        let sets = vec![set("a", "2026-11-22T01:00:00Z"), partial];
        let decisions = plan(
            &sets,
            Retention {
                keep_last: 1,
                ..Default::default()
            },
        );
        assert!(
            decisions.iter().all(|d| d.action == PruneAction::Keep),
            "{decisions:?}"
        );
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
                .filter(|d| d.action == PruneAction::Keep)
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

    fn kept(sets: &[BackupSet], retention: Retention) -> Vec<String> {
        plan(sets, retention)
            .into_iter()
            .filter(|d| d.action == PruneAction::Keep)
            .map(|d| d.id)
            .collect()
    }

    #[test]
    fn pre_restore_and_empty_sets_take_no_regular_sets_slot() {
        let partial = |id: &str, at: &str, tenants: &[i64]| {
            let mut one = set(id, at);
            one.manifest.entries = tenants.iter().map(|t| entry(Some(*t))).collect();
            one
        };
        let mut pre = partial("e", "2026-11-22T05:00:00Z", &[1]);
        pre.manifest.kind = BackupKind::PreRestore;
        let mut empty_pre = partial("f", "2026-11-22T06:00:00Z", &[]);
        empty_pre.manifest.kind = BackupKind::PreRestore;
        let sets = vec![
            set("a", "2026-11-22T01:00:00Z"),
            partial("b", "2026-11-22T02:00:00Z", &[2]),
            partial("c", "2026-11-22T03:00:00Z", &[4]),
            partial("d", "2026-11-22T04:00:00Z", &[]),
            pre,
            empty_pre,
        ];
        let last_one = Retention {
            keep_last: 1,
            keep_daily: 1,
            keep_weekly: 1,
            keep_monthly: 1,
        };
        assert_eq!(
            kept(&sets, last_one),
            ["e", "c", "b", "a"],
            "each tenant's newest copy and the pre-restore set newer than the oldest kept set stay; empty sets go"
        );
        let decisions = plan(&sets, last_one);
        let reasons = |id: &str| decisions.iter().find(|d| d.id == id).unwrap().reasons.clone();
        assert_eq!(
            reasons("c"),
            [
                PruneReason::Newest,
                PruneReason::NewestCopy,
                PruneReason::Last,
                PruneReason::Daily,
                PruneReason::Weekly,
                PruneReason::Monthly
            ]
        );
        assert_eq!(reasons("d"), [PruneReason::Empty]);
        assert_eq!(reasons("e"), [PruneReason::PreRestore]);

        let mut old_pre = partial("0", "2026-11-21T00:00:00Z", &[1]);
        old_pre.manifest.kind = BackupKind::PreRestore;
        let sets = vec![old_pre, set("a", "2026-11-22T01:00:00Z")];
        assert_eq!(kept(&sets, last_one), ["a"], "older than every kept regular set");
    }
}
