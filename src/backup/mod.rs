//! Backup sets: folders `BACKUP_DIR/<id>/` holding consistent copies of the catalog
//! and tenant databases plus `manifest.json`, which is the source of truth for what a
//! set holds, so sets stay usable when the catalog is lost.

pub mod create;
pub mod prune;
pub mod restore;
pub mod states;
pub mod verify;

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use self::states::CopyFormat;
use self::states::{BackupKind, EntryScope, SetScope};
use crate::error::{Error, IoContext, Result};
use crate::files;
use crate::validate::printable;

pub const MANIFEST: &str = "manifest.json";
/// Prefix of a set being written; never listed. Its writer holds a lock on the folder
/// from before it takes this name (see [`NEW_PREFIX`]), so one that nobody holds is a
/// dead writer's and goes at once ([`abandoned_sets`]).
pub const TMP_PREFIX: &str = ".tmp-";
/// Prefix of a set's folder in its first moments, before its writer holds the lock and
/// renames it to `.tmp-`: cleanup cannot tell a live one from a dead one by the lock,
/// so it waits [`NEW_GRACE`] (a live one is renamed within microseconds).
pub const NEW_PREFIX: &str = ".new-";
pub const NEW_GRACE: std::time::Duration = std::time::Duration::from_secs(300);
/// Suffix of the `.tmp-` folder of a pre-restore set: a restore that finds one nobody
/// writes knows that the restore which began it died.
const PRE_RESTORE_TMP_SUFFIX: &str = ".pre-restore";

/// The name of the folder a set of this kind is written in.
pub fn tmp_name(id: &str, kind: BackupKind) -> String {
    let suffix = if kind == BackupKind::PreRestore {
        PRE_RESTORE_TMP_SUFFIX
    } else {
        ""
    };
    format!("{TMP_PREFIX}{id}{suffix}")
}

pub fn is_pre_restore_tmp(name: &str) -> bool {
    name.starts_with(TMP_PREFIX) && name.ends_with(PRE_RESTORE_TMP_SUFFIX)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub id: String,
    pub created_at: String,
    pub finished_at: String,
    /// `finished_at` to the microsecond, so that `restore --at` never takes a set
    /// finished after the moment asked for. Absent in sets from older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_exact: Option<String>,
    /// What the set was taken of: `all` (the catalog and every tenant not deleted),
    /// `catalog`, `customers`, or `replaced` (a pre-restore set). Absent in sets
    /// from older versions; see [`Manifest::scope`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<SetScope>,
    pub label: Option<String>,
    pub kind: BackupKind,
    pub tool_version: String,
    pub catalog_schema_version: i64,
    pub entries: Vec<Entry>,
    /// Tenants that were to be in the set but could not be copied, and why.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
}

/// A tenant left out of a set, and why (its file is missing, unreadable or damaged).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Skipped {
    pub customer: String,
    pub customer_id: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub scope: EntryScope,
    pub customer_id: Option<i64>,
    pub customer_slug: Option<String>,
    /// Path inside the set, e.g. `tenants/acme.db`.
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    pub schema_version: i64,
    /// What the source file looked like, to know later that it has not changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Fingerprint>,
    /// The set this file is shared with (hard link), when it was unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_from: Option<String>,
    /// Size and modification time of the copy itself, so a copy changed in place is
    /// never linked into a later set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyStamp>,
    /// Why the source failed its check when a pre-restore set kept it anyway: the file
    /// holds its raw bytes and is not expected to pass quick_check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
    /// The engine and server of the database the copy was taken of. Absent in sets
    /// from older versions, whose copies are all SQLite files of the home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<crate::engine::EngineKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// What `file` holds; see [`Entry::format`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<CopyFormat>,
    /// The rows of each table when the copy was taken (server tenants): what a restore
    /// and `backup verify --deep` check a restored copy against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<std::collections::BTreeMap<String, u64>>,
    /// For a copy kept on its server ([`CopyFormat::KeptOnServer`]): the database (or
    /// schema) that holds it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_as: Option<String>,
}

impl Entry {
    /// What the copy is; a set from an older version holds SQLite files only.
    pub fn format(&self) -> CopyFormat {
        self.format.unwrap_or(CopyFormat::Sqlite)
    }

    /// The engine the copy can be restored into.
    pub fn engine(&self) -> crate::engine::EngineKind {
        self.engine.unwrap_or(crate::engine::EngineKind::Sqlite)
    }

    /// A fresh tenant or catalog entry's fields that say nothing about the engine: the
    /// caller sets `engine`, `server` and `format`.
    pub fn new(scope: EntryScope, file: &str, bytes: u64, sha256: String, schema_version: i64) -> Entry {
        Entry {
            scope,
            customer_id: None,
            customer_slug: None,
            file: file.to_string(),
            bytes,
            sha256,
            schema_version,
            source: None,
            linked_from: None,
            copy: None,
            damaged: None,
            engine: None,
            server: None,
            format: None,
            rows: None,
            kept_as: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CopyStamp {
    pub size: u64,
    pub mtime_ns: i128,
}

impl CopyStamp {
    pub fn of(path: &Path) -> Option<CopyStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(path).ok()?;
        Some(CopyStamp {
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

/// Identity and last-change marks of a database file and its WAL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fingerprint {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub mtime_ns: i128,
    /// The change time moves on every write and cannot be set back like mtime.
    pub ctime_ns: i128,
    pub wal_size: u64,
    pub wal_mtime_ns: i128,
    pub wal_ctime_ns: i128,
}

impl Fingerprint {
    pub fn of(db: &Path) -> Option<Fingerprint> {
        use std::os::unix::fs::MetadataExt;
        // Through a symlink SQLite keeps its WAL beside the real file.
        let db = &fs::canonicalize(db).ok()?;
        let meta = fs::metadata(db).ok()?;
        // An empty WAL holds nothing; opening the database may create or keep one.
        let wal = fs::metadata(crate::files::sqlite_side_files(db)[0].as_path())
            .ok()
            .filter(|w| w.size() > 0);
        let nanos = |m: &fs::Metadata| i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
        let change = |m: &fs::Metadata| i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec());
        Some(Fingerprint {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            mtime_ns: nanos(&meta),
            ctime_ns: change(&meta),
            wal_size: wal.as_ref().map_or(0, |w| w.size()),
            wal_mtime_ns: wal.as_ref().map_or(0, nanos),
            wal_ctime_ns: wal.as_ref().map_or(0, change),
        })
    }
}

impl Manifest {
    pub fn catalog_entry(&self) -> Option<&Entry> {
        self.entries.iter().find(|e| e.scope == EntryScope::Catalog)
    }

    /// The customer's restorable copy: a damaged one kept before a restore is not.
    pub fn tenant_entry(&self, customer_id: i64) -> Option<&Entry> {
        self.entries.iter().find(|e| {
            e.scope == EntryScope::Tenant && e.customer_id == Some(customer_id) && e.damaged.is_none()
        })
    }

    /// When the set was finished, exactly; for a set from an older version, which
    /// recorded whole seconds, the end of that second, so that it is never taken as
    /// finished earlier than it was.
    pub fn finished(&self) -> Option<DateTime<Utc>> {
        let parse = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        match &self.finished_at_exact {
            Some(exact) => parse(exact),
            None => parse(&self.finished_at).map(|t| t + chrono::Duration::seconds(1)),
        }
    }

    /// What the set was taken of (see [`Manifest::scope`]); for a set from an older
    /// version, inferred from its kind and entries.
    pub fn scope(&self) -> SetScope {
        if let Some(scope) = self.scope {
            return scope;
        }
        let tenants = self.entries.iter().any(|e| e.scope == EntryScope::Tenant);
        match (self.kind, self.catalog_entry().is_some(), tenants) {
            (BackupKind::PreRestore, _, _) => SetScope::Replaced,
            (_, true, true) => SetScope::All,
            (_, true, false) => SetScope::Catalog,
            _ => SetScope::Customers,
        }
    }

    pub fn created(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.created_at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.bytes).sum()
    }
}

/// A set found on disk.
#[derive(Debug, Clone)]
pub struct BackupSet {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl BackupSet {
    pub fn file(&self, entry: &Entry) -> Result<PathBuf> {
        safe_member(&self.dir, &entry.file)
    }
}

/// A path inside a set; refuses anything that would leave it.
pub fn safe_member(dir: &Path, file: &str) -> Result<PathBuf> {
    let relative = Path::new(file);
    let fine = !file.is_empty()
        && relative.is_relative()
        && relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if fine {
        Ok(dir.join(relative))
    } else {
        Err(Error::verification(format!(
            "manifest names a file outside its set: '{}'",
            printable(file)
        )))
    }
}

/// A new set id: the UTC time to the microsecond and a random suffix, so ids sort by
/// time even for sets taken in the same second.
pub fn new_id(now: DateTime<Utc>) -> String {
    format!(
        "{}-{:04x}",
        now.format("%Y%m%dT%H%M%S%6fZ"),
        rand::random::<u16>()
    )
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Every complete set, oldest first. Folders without a readable manifest are skipped.
pub fn list_sets(backup_dir: &Path) -> Result<Vec<BackupSet>> {
    let entries = match fs::read_dir(backup_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", backup_dir.display()), e)),
    };
    let mut sets = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !valid_id(&name) || !entry.path().is_dir() {
            continue;
        }
        if let Ok(manifest) = read_manifest(&entry.path())
            && manifest.id == name
        {
            sets.push(BackupSet {
                dir: entry.path(),
                manifest,
            });
        }
    }
    sets.sort_by(|a, b| a.manifest.id.cmp(&b.manifest.id));
    Ok(sets)
}

pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = fs::read(&path).io_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::verification(format!("{} does not parse: {e}", path.display())))
}

/// The set with this id; exit 3 when there is none.
pub fn find_set(backup_dir: &Path, id: &str) -> Result<BackupSet> {
    if !valid_id(id) {
        return Err(Error::usage(format!("invalid backup id '{}'", printable(id))));
    }
    list_sets(backup_dir)?
        .into_iter()
        .find(|s| s.manifest.id == id)
        .ok_or_else(|| {
            Error::not_found(format!("no backup set '{id}' in {}", backup_dir.display()))
                .with_hint("see 'tenantctl backup list'")
        })
}

/// Whether a `.tmp-` set is still being written (or a `.deleting-` one removed): its
/// writer holds a lock on the folder (see [`create::create_set`], [`remove_set`]),
/// which the system drops when the writer dies.
pub fn being_written(tmp: &Path) -> bool {
    fs::File::open(tmp).is_ok_and(|dir| dir.try_lock().is_err())
}

/// The lock on a folder nobody else holds, so that it can be removed without racing
/// another cleanup or a live writer; `None` when someone holds it or it is gone.
fn claim(dir: &Path) -> Option<fs::File> {
    let folder = fs::File::open(dir).ok()?;
    folder.try_lock().ok()?;
    Some(folder)
}

/// Removes `dir` if nobody holds its lock (see [`claim`]); false when someone does or
/// it is gone already.
pub fn remove_if_abandoned(dir: &Path) -> Result<bool> {
    let Some(claimed) = claim(dir) else {
        return Ok(false);
    };
    remove_tree(dir)?;
    drop(claimed);
    Ok(true)
}

/// Unfinished sets whose writer is gone: `.tmp-` folders nobody holds locked (a
/// restore's pre-restore set included) and `.new-` folders older than [`NEW_GRACE`].
/// Sorted by name.
pub fn abandoned_sets(backup_dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(backup_dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.starts_with(TMP_PREFIX) || name.starts_with(NEW_PREFIX) && older_than(entry, NEW_GRACE)
        })
        .filter(|entry| !being_written(&entry.path()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn older_than(entry: &fs::DirEntry, age: std::time::Duration) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().unwrap_or_default() > age)
}

/// What a killed backup, restore or prune left in a backup folder, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// A set a killed prune was removing.
    HalfDeleted,
    /// A set a killed backup was writing.
    UnfinishedSet,
    /// The pre-restore set a killed restore was writing.
    UnfinishedPreRestore,
}

impl Leftover {
    pub fn of(name: &str) -> Leftover {
        if is_pre_restore_tmp(name) || name.starts_with(NEW_PREFIX) && name.ends_with(PRE_RESTORE_TMP_SUFFIX)
        {
            Leftover::UnfinishedPreRestore
        } else if name.starts_with(TMP_PREFIX) || name.starts_with(NEW_PREFIX) {
            Leftover::UnfinishedSet
        } else {
            Leftover::HalfDeleted
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Leftover::HalfDeleted => "a set an interrupted backup prune was removing",
            Leftover::UnfinishedSet => "the unfinished set of an interrupted backup",
            Leftover::UnfinishedPreRestore => "the unfinished pre-restore set of an interrupted restore",
        }
    }
}

/// Every name [`half_deleted`] and [`abandoned_sets`] find, in that order.
pub fn leftovers(backup_dir: &Path) -> Vec<String> {
    let mut names = half_deleted(backup_dir);
    names.extend(abandoned_sets(backup_dir));
    names
}

/// Removes one of the [`leftovers`]; false when another command took it over or
/// removed it meanwhile.
pub fn remove_leftover(backup_dir: &Path, name: &str) -> Result<bool> {
    let path = backup_dir.join(name);
    if Leftover::of(name) == Leftover::HalfDeleted && !name.starts_with(DELETING_PREFIX) {
        if !path.exists() {
            return Ok(false);
        }
        remove_set(backup_dir, name)?;
        return Ok(true);
    }
    remove_if_abandoned(&path)
}

/// What [`clean_up`] removed, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanedUp {
    /// Sets interrupted prunes were removing, now gone.
    pub half_deleted: Vec<String>,
    /// Unfinished sets of interrupted backups and restores.
    pub unfinished: Vec<String>,
}

impl CleanedUp {
    pub fn is_empty(&self) -> bool {
        self.half_deleted.is_empty() && self.unfinished.is_empty()
    }
}

/// Removes every [`leftovers`] name nobody works on, before a new set is written. One
/// that cannot be removed stays for `doctor` to report: it is no reason to refuse a
/// backup.
pub fn clean_up(backup_dir: &Path) -> CleanedUp {
    let mut cleaned = CleanedUp::default();
    for name in leftovers(backup_dir) {
        if !matches!(remove_leftover(backup_dir, &name), Ok(true)) {
            continue;
        }
        match Leftover::of(&name) {
            Leftover::HalfDeleted => cleaned.half_deleted.push(name),
            _ => cleaned.unfinished.push(name),
        }
    }
    cleaned
}

/// Prefix a set's folder takes while it is being removed: out of the listed names in
/// one atomic rename, so that a set is never seen half deleted.
pub const DELETING_PREFIX: &str = ".deleting-";

/// Removes the set `id` from `backup_dir`: renamed to `.deleting-<id>` first (made
/// durable), then removed. A crash part way leaves a folder that no listing shows and
/// that the next prune finishes ([`finish_deleting`]). A set already gone is fine:
/// another prune may have taken it.
pub fn remove_set(backup_dir: &Path, id: &str) -> Result<()> {
    let set = backup_dir.join(id);
    // Held until the folder is gone, so that no cleanup takes the `.deleting-` folder
    // of a live prune for a dead one's; the lock follows the folder across the rename.
    let held = match fs::File::open(&set) {
        Ok(folder) => folder,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("opening set {id} to remove it"), e)),
    };
    held.lock()
        .io_context(|| format!("locking set {id} to remove it"))?;
    let doomed = backup_dir.join(format!("{DELETING_PREFIX}{id}"));
    match fs::rename(&set, &doomed) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("moving set {id} aside to remove it"), e)),
    }
    files::fsync_dir(backup_dir)?;
    crate::ops::recovery::crash_point("prune:renamed");
    remove_tree(&doomed)
}

/// The names in `backup_dir` that interrupted removals left: `.deleting-*` folders that
/// no live prune holds, and set folders without a manifest, which older versions left
/// when killed while deleting (their manifest went first) and which nothing can restore
/// from.
pub fn half_deleted(backup_dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(backup_dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.strip_prefix(DELETING_PREFIX).is_some_and(valid_id) && !being_written(&backup_dir.join(name))
                || made_by_new_id(name) && !backup_dir.join(name).join(MANIFEST).exists()
        })
        .collect();
    names.sort();
    names
}

/// Removes what [`half_deleted`] found, each through `.deleting-` like any set.
pub fn finish_deleting(backup_dir: &Path, names: &[String]) -> Result<()> {
    for name in names {
        remove_leftover(backup_dir, name)?;
    }
    Ok(())
}

/// `remove_dir_all` that counts a folder removed meanwhile by another prune as done.
fn remove_tree(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if dir.exists() => Err(Error::io(format!("removing {}", dir.display()), e)),
        _ => Ok(()),
    }
}

/// Whether `name` has the shape [`new_id`] gives (`<date>T<time>Z-<hex>`, with or
/// without microseconds): only such folders are taken for sets when they lack a
/// manifest, so that nothing else an operator keeps in the backup folder is removed.
fn made_by_new_id(name: &str) -> bool {
    let Some((moment, suffix)) = name.split_once("Z-") else {
        return false;
    };
    let Some((date, time)) = moment.split_once('T') else {
        return false;
    };
    date.len() == 8
        && date.bytes().all(|b| b.is_ascii_digit())
        && time.len() >= 6
        && time.bytes().all(|b| b.is_ascii_digit())
        && !suffix.is_empty()
        && suffix.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_cannot_leave_their_set() {
        let dir = Path::new("/b/set");
        assert_eq!(
            safe_member(dir, "tenants/a.db").unwrap(),
            Path::new("/b/set/tenants/a.db")
        );
        for bad in ["", "/etc/passwd", "../x.db", "tenants/../../x", "./a.db"] {
            assert!(safe_member(dir, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_sort_by_time_and_are_safe_names() {
        let a = new_id(
            DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        );
        let b = new_id(
            DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        );
        assert!(a < b);
        assert!(valid_id(&a));
        assert!(!valid_id("../x") && !valid_id(".tmp-1"));
        assert!(made_by_new_id(&a) && made_by_new_id("20261122T030000Z-1a2b"));
        for other in [
            "notes",
            "2026-11-22",
            "20261122T0300Z-1a2b",
            "20261122T030000Z-",
            "x20261122T030000Z-1",
        ] {
            assert!(!made_by_new_id(other), "{other}");
        }
    }

    #[test]
    fn half_deleted_sets_are_found_and_finished_but_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let backups = dir.path();
        let make = |name: &str, manifest: bool| {
            fs::create_dir_all(backups.join(name).join("tenants")).unwrap();
            fs::write(backups.join(name).join("tenants/a.db"), b"x").unwrap();
            if manifest {
                fs::write(backups.join(name).join(MANIFEST), b"{}").unwrap();
            }
        };
        make("20260101T000000000000Z-0001", true);
        make("20260101T000000000000Z-0002", false);
        make(".deleting-20260101T000000000000Z-0003", false);
        make(".tmp-20260101T000000000000Z-0004", false);
        make("operator-notes", false);
        let found = half_deleted(backups);
        assert_eq!(
            found,
            [
                ".deleting-20260101T000000000000Z-0003",
                "20260101T000000000000Z-0002"
            ]
        );
        finish_deleting(backups, &found).unwrap();
        remove_set(backups, "20260101T000000000000Z-0001").unwrap();
        remove_set(backups, "20260101T000000000000Z-0001").unwrap();
        let mut left: Vec<String> = fs::read_dir(backups)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".tmp-20260101T000000000000Z-0004", "operator-notes"]);
    }
}
