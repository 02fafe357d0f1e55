//! backup, backup list/show/verify/prune, and restore, including crashes and full disks.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

fn add_user(env: &TestEnv, slug: &str, email: &str) {
    env.ok(&[
        "db",
        "sql",
        slug,
        &format!("INSERT INTO users (email, name) VALUES ('{email}', 'U')"),
        "--write",
    ]);
}

fn users(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap()
}

const RESTORE_FIELDS: &[&str] = &[
    "set",
    "set_finished_at",
    "dry_run",
    "pre_restore_set",
    "pre_restore",
    "restored",
    "unowned_tenants",
    "cleaned_up",
    "finished_interrupted",
];

fn backups(env: &TestEnv) -> PathBuf {
    env.home.join("backups")
}

fn set_dir(env: &TestEnv, set: &Value) -> PathBuf {
    backups(env).join(set["id"].as_str().unwrap())
}

#[test]
fn a_backup_set_holds_checked_private_copies_and_a_manifest() {
    let env = TestEnv::fleet(&["a", "b"]);
    add_user(&env, "a", "u@a.test");
    env.ok(&["customer", "delete", "b", "--confirm", "b"]);
    env.customer("c@example.com", "C", &["--slug", "c"]);
    let set = env.json(&["backup", "--label", "first", "--kind", "scheduled"]);
    for field in [
        "id",
        "created_at",
        "finished_at",
        "label",
        "kind",
        "tool_version",
        "catalog_schema_version",
        "entries",
    ] {
        assert!(set.get(field).is_some(), "{field} in {set}");
    }
    assert_eq!(set["label"], "first");
    assert_eq!(set["kind"], "scheduled");
    let dir = set_dir(&env, &set);
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["id"], set["id"]);
    let entries = manifest["entries"].as_array().unwrap();
    let files: Vec<&str> = entries.iter().map(|e| e["file"].as_str().unwrap()).collect();
    assert_eq!(
        files,
        ["catalog.db", "tenants/a.db", "tenants/c.db"],
        "deleted customers are left out"
    );
    for entry in entries {
        for field in [
            "scope",
            "customer_id",
            "customer_slug",
            "file",
            "bytes",
            "sha256",
            "schema_version",
        ] {
            assert!(entry.get(field).is_some(), "{field} in {entry}");
        }
        let path = dir.join(entry["file"].as_str().unwrap());
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            entry["bytes"].as_u64().unwrap()
        );
        let check: String = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
    assert_eq!(entries[1]["schema_version"], 3);
    assert_eq!(users(&dir.join("tenants/a.db")), 1);
    assert_eq!(mode(&dir), 0o700);
    assert!(
        env.names_in(&backups(&env))
            .iter()
            .all(|n| !n.starts_with(".tmp-"))
    );
    let status = env.json(&["status"]);
    assert_eq!(status["newest_backup"]["id"], set["id"]);
}

/// Folds the WAL in, then overwrites pages 3 to 6 (table roots) and leaves the header
/// intact: the file opens, but quick_check fails.
fn damage_middle_pages(db: &Path) {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let mut bytes = std::fs::read(db).unwrap();
    assert!(bytes.len() >= 7 * 4096, "too small to damage: {}", bytes.len());
    for byte in &mut bytes[2 * 4096..6 * 4096] {
        *byte = 0x5A;
    }
    std::fs::write(db, bytes).unwrap();
}

#[test]
fn a_damaged_tenant_is_left_out_and_every_healthy_one_backed_up() {
    let env = TestEnv::fleet(&["a", "b", "c"]);
    add_user(&env, "a", "u@a.test");
    damage_middle_pages(&env.home.join("tenants/b.db"));
    let run = env.run(&["backup", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    let set = run.json();
    let files: Vec<&str> = set["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["catalog.db", "tenants/a.db", "tenants/c.db"]);
    assert_eq!(set["skipped"].as_array().unwrap().len(), 1, "{set}");
    assert_eq!(set["skipped"][0]["customer"], "b");
    assert!(
        set["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("quick_check"),
        "{set}"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(set_dir(&env, &set).join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["skipped"], set["skipped"]);
    assert!(run.stderr.contains("warning: b: "), "{}", run.stderr);
    assert!(run.stderr.contains("error: set "), "{}", run.stderr);
    assert!(!run.stderr.contains("free space"), "{}", run.stderr);
    // The set is complete and restorable for everyone it holds.
    env.ok(&["backup", "verify", set["id"].as_str().unwrap()]);
    assert_eq!(users(&set_dir(&env, &set).join("tenants/a.db")), 1);
    assert_eq!(env.json(&["backup", "list"]).as_array().unwrap().len(), 1);
    let shown = env.json(&["backup", "show", set["id"].as_str().unwrap()]);
    assert_eq!(shown["skipped"], set["skipped"]);
}

#[test]
fn a_backup_that_copies_nothing_writes_no_set() {
    let env = TestEnv::fleet(&["a", "b"]);
    damage_middle_pages(&env.home.join("tenants/b.db"));
    let run = env.run(&["backup", "--customer", "b", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    let report = run.json();
    assert_eq!(report["id"], Value::Null, "{report}");
    assert_eq!(report["path"], Value::Null, "{report}");
    assert_eq!(report["entries"], serde_json::json!([]), "{report}");
    assert_eq!(report["skipped"][0]["customer"], "b", "{report}");
    assert!(run.stderr.contains("no set written"), "{}", run.stderr);
    assert!(run.stderr.contains("warning: b: "), "{}", run.stderr);
    assert_eq!(
        env.names_in(&backups(&env)),
        Vec::<String>::new(),
        "neither a set nor an unfinished folder is left"
    );

    let csv = env.run(&["-o", "csv", "backup", "--customer", "b"]);
    assert_eq!(csv.code, 8, "{csv:?}");
    let lines: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "set,scope,customer,file,bytes,schema_version,sha256,stored"
    );
    assert_eq!(lines.len(), 2, "{}", csv.stdout);
    assert!(
        lines[1].contains(",tenant,b,") && lines[1].contains("skipped: "),
        "{}",
        csv.stdout
    );
    assert_eq!(env.json(&["backup", "list"]), serde_json::json!([]));
}

#[test]
fn a_restore_that_saves_nothing_leaves_no_pre_restore_set() {
    let env = TestEnv::fleet(&["a"]);
    let set = env.json(&["backup"]);
    // A symlinked tenant file is never followed, so nothing can be saved of it.
    let live = env.home.join("tenants/a.db");
    let real = env.root.join("a-real.db");
    std::fs::rename(&live, &real).unwrap();
    std::os::unix::fs::symlink(&real, &live).unwrap();

    let run = env.run(&[
        "restore",
        set["id"].as_str().unwrap(),
        "--customer",
        "a",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["pre_restore_set"], Value::Null, "{report}");
    assert_eq!(report["pre_restore"][0]["status"], "not-saved", "{report}");
    assert!(run.stderr.contains("could not be saved"), "{}", run.stderr);
    assert_eq!(
        env.names_in(&backups(&env)),
        [set["id"].as_str().unwrap()],
        "no empty pre-restore set is left"
    );
}

#[test]
fn backup_csv_has_one_readable_row_per_file_and_list_counts_skipped() {
    let env = TestEnv::fleet(&["a", "b", "c"]);
    damage_middle_pages(&env.home.join("tenants/c.db"));
    let run = env.run(&["-o", "csv", "backup"]);
    assert_eq!(run.code, 8, "{run:?}");
    let id = env.json(&["backup", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = env.ok(&["-o", "csv", "backup", "show", &id]);
    for stdout in [&run.stdout, &shown.stdout] {
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines[0],
            "set,scope,customer,file,bytes,schema_version,sha256,stored"
        );
        assert_eq!(lines.len(), 5, "catalog, a, b and skipped c: {stdout}");
        assert!(
            lines[1..].iter().all(|l| l.starts_with(&format!("{id},"))),
            "{stdout}"
        );
        assert!(lines[1].contains(",catalog.db,"), "{stdout}");
        assert!(
            lines[4].contains(",c,") && lines[4].contains("skipped: "),
            "{stdout}"
        );
        for raw in ["{", "inode", "mtime"] {
            assert!(!stdout.contains(raw), "no raw JSON or fingerprints: {stdout}");
        }
    }
    assert_eq!(env.json(&["backup", "list"])[0]["skipped"], 1);
    let table = env.ok(&["backup", "list"]).stdout;
    let header = table.lines().next().unwrap();
    assert!(header.contains("SKIPPED"), "{table}");
}

#[test]
fn the_backup_table_shows_readable_columns_for_every_file() {
    let env = TestEnv::fleet(&["a", "b"]);
    env.ok(&["backup"]);
    add_user(&env, "b", "u@b.test");
    let run = env.ok(&["backup"]);
    assert!(
        !run.stdout.contains('{'),
        "no raw JSON in the table: {}",
        run.stdout
    );
    let header = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("SCOPE"))
        .unwrap();
    for column in ["CUSTOMER", "FILE", "BYTES", "SCHEMA_VERSION", "SHA256", "STORED"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(run.stdout.contains("linked from "), "{}", run.stdout);
    assert!(run.stdout.contains("copied"), "{}", run.stdout);
}

#[test]
fn scopes_select_what_is_copied() {
    let env = TestEnv::fleet(&["a", "b"]);
    let catalog_only = env.json(&["backup", "--catalog"]);
    let names: Vec<&str> = catalog_only["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["catalog.db"]);
    let one = env.json(&["backup", "--customer", "b"]);
    let names: Vec<&str> = one["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tenants/b.db"]);
    env.fails(&["backup", "--customer", "ghost"], 3);
    env.fails(&["backup", "--catalog", "--customer", "a"], 2);
    env.fails(&["backup", "--kind", "hourly"], 2);
}

#[test]
fn unchanged_tenants_are_hard_linked_and_changed_ones_copied() {
    let env = TestEnv::fleet(&["a", "b", "c"]);
    let first = env.json(&["backup"]);
    add_user(&env, "b", "u@b.test");
    let second = env.json(&["backup"]);
    assert_eq!(second["copied"], 2, "the catalog and b");
    assert_eq!(second["linked"], 2, "a and c");
    let inode = |set: &Value, file: &str| std::fs::metadata(set_dir(&env, set).join(file)).unwrap().ino();
    assert_eq!(inode(&first, "tenants/a.db"), inode(&second, "tenants/a.db"));
    assert_ne!(inode(&first, "tenants/b.db"), inode(&second, "tenants/b.db"));
    assert_eq!(users(&set_dir(&env, &second).join("tenants/b.db")), 1);
    let entry = second["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["file"] == "tenants/a.db")
        .unwrap()
        .clone();
    assert_eq!(entry["linked_from"], first["id"]);
    // Pruning the first set keeps the second one's linked files intact.
    env.ok(&["backup", "prune", "--keep-last", "1"]);
    env.ok(&["backup", "verify", "--all"]);
}

/// A migration leaves its writes in the WAL, which the backup folds in before copying:
/// the set after that must still find the tenants unchanged (issue 17: the first
/// incremental backup after a full set copied the whole fleet again).
#[test]
fn tenants_whose_wal_a_backup_folded_in_are_linked_by_the_next_one() {
    let env = TestEnv::fleet(&["a", "b"]);
    std::fs::write(
        env.home.join("tenant-migrations/V4__four.sql"),
        "CREATE TABLE four (x);",
    )
    .unwrap();
    env.ok_warning(&["db", "migrate"], "2 tenants: 2 migrated");
    let wal = env.home.join("tenants/a.db-wal");
    assert!(
        std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0),
        "the test needs writes in the WAL"
    );
    let full = env.json(&["backup"]);
    assert_eq!(full["linked"], 0);
    let again = env.json(&["backup"]);
    assert_eq!(again["linked"], 2, "{again}");
    // Linked without a second copy: the file was found as the full set left it, not
    // copied again and then found to hold the same bytes.
    let source = |set: &Value| {
        set["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["file"] == "tenants/a.db")
            .unwrap()["source"]
            .clone()
    };
    assert_eq!(source(&full), source(&again));
    env.ok(&["backup", "verify", "--all"]);
}

#[test]
fn a_backup_is_consistent_while_another_process_writes() {
    let env = TestEnv::fleet(&["busy"]);
    backup_during_writes(&env, &env.home.join("tenants/busy.db"));
}

#[test]
fn list_show_and_verify_work_from_manifests_without_the_catalog() {
    let env = TestEnv::fleet(&["a", "b"]);
    let first = env.json(&["backup", "--customer", "a"]);
    let second = env.json(&["backup"]);
    std::fs::create_dir_all(backups(&env).join(".tmp-20990101T000000000000Z-dead")).unwrap();
    for file in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(env.home.join(file));
    }
    let list = env.json(&["backup", "list"]);
    assert_eq!(
        list.as_array().unwrap().len(),
        2,
        "unfinished sets are not listed"
    );
    assert_fields(
        &list[0],
        &[
            "id",
            "created_at",
            "finished_at",
            "kind",
            "label",
            "catalog",
            "tenants",
            "linked",
            "skipped",
            "bytes",
        ],
    );
    assert_eq!(list[0]["id"], first["id"]);
    assert_eq!(
        env.json(&["backup", "list", "--customer", "b"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let shown = env.json(&["backup", "show", second["id"].as_str().unwrap()]);
    assert_eq!(shown["entries"], second["entries"]);
    env.fails(&["backup", "show", "20990101T000000000000Z-beef"], 3);
    env.fails(&["backup", "show", "../etc"], 2);
    let checks = env.json(&["backup", "verify", "--all"]);
    assert!(checks.as_array().unwrap().iter().all(|c| c["status"] == "ok"));
    assert_fields(&checks[0], &["set", "file", "customer", "status", "message"]);
}

#[test]
fn verify_names_the_file_that_does_not_match() {
    let env = TestEnv::fleet(&["a", "b"]);
    let set = env.json(&["backup"]);
    let id = set["id"].as_str().unwrap();
    let victim = set_dir(&env, &set).join("tenants/b.db");
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0xFF;
    std::fs::write(&victim, bytes).unwrap();
    let run = env.run(&["backup", "verify", id, "--json"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.stderr.contains("tenants/b.db"), "{}", run.stderr);
    let checks = run.json();
    let bad: Vec<&Value> = checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "ok")
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["status"], "mismatch");
    std::fs::remove_file(set_dir(&env, &set).join("tenants/a.db")).unwrap();
    let run = env.run(&["backup", "verify", "--json"]);
    assert_eq!(run.code, 7);
    assert!(
        run.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["status"] == "missing")
    );
}

/// `backup prune` keeping the last `n` sets and no daily, weekly or monthly ones.
fn keep_only(n: &str) -> [&str; 10] {
    [
        "backup",
        "prune",
        "--keep-last",
        n,
        "--keep-daily",
        "0",
        "--keep-weekly",
        "0",
        "--keep-monthly",
        "0",
    ]
}

#[test]
fn prune_keeps_by_policy_never_the_newest_and_clears_unfinished_sets_nobody_writes() {
    let env = TestEnv::fleet(&["a"]);
    let ids: Vec<String> = (0..4)
        .map(|_| env.json(&["backup"])["id"].as_str().unwrap().to_string())
        .collect();
    let stale = backups(&env).join(".tmp-20200101T000000000000Z-0001");
    std::fs::create_dir_all(&stale).unwrap();
    std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&stale)
        .status()
        .unwrap();
    let fresh = backups(&env).join(".tmp-20990101T000000000000Z-0002");
    std::fs::create_dir_all(&fresh).unwrap();
    let written = backups(&env).join(".tmp-20990101T000000000000Z-0003");
    std::fs::create_dir_all(&written).unwrap();
    let writer = std::fs::File::open(&written).unwrap();
    writer.lock().unwrap();

    let dry = env.json(&[&keep_only("2")[..], &["--dry-run"]].concat());
    assert_fields(
        &dry,
        &[
            "dry_run",
            "retention",
            "sets",
            "removed_unfinished",
            "kept_copies_remaining",
        ],
    );
    assert_eq!(dry["kept_copies_remaining"], serde_json::json!([]));
    let actions: Vec<(&str, &str)> = dry["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap(), d["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            (ids[3].as_str(), "keep"),
            (ids[2].as_str(), "keep"),
            (ids[1].as_str(), "remove"),
            (ids[0].as_str(), "remove")
        ]
    );
    assert_eq!(
        env.json(&["backup", "list"]).as_array().unwrap().len(),
        4,
        "a dry run removes nothing"
    );
    assert!(stale.exists() && fresh.exists());
    assert_eq!(
        dry["removed_unfinished"],
        serde_json::json!([
            ".tmp-20200101T000000000000Z-0001",
            ".tmp-20990101T000000000000Z-0002"
        ]),
        "{dry}"
    );

    env.ok(&keep_only("2"));
    assert_eq!(env.json(&["backup", "list"]).as_array().unwrap().len(), 2);
    assert!(!stale.exists(), "an unfinished set nobody writes is removed");
    assert!(
        !fresh.exists(),
        "at once, however new: the writer's lock is the proof"
    );
    assert!(written.exists(), "one whose writer holds its lock stays");
    drop(writer);
    env.ok(&keep_only("0"));
    let left = env.json(&["backup", "list"]);
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["id"], ids[3], "the newest set always stays");
}

/// Names in the backup folder other than complete sets.
fn backup_leftovers(env: &TestEnv) -> Vec<String> {
    let listed: Vec<String> = env
        .json(&["backup", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    env.names_in(&backups(env))
        .into_iter()
        .filter(|name| !listed.contains(name))
        .collect()
}

#[test]
fn a_prune_killed_mid_deletion_never_shows_a_half_set_and_the_next_prune_finishes_it() {
    let env = TestEnv::fleet(&["a", "b"]);
    let ids: Vec<String> = (0..3)
        .map(|_| env.json(&["backup"])["id"].as_str().unwrap().to_string())
        .collect();
    env.cmd(&keep_only("1")).killed_at_step("prune:renamed");
    let deleting: Vec<String> = env
        .names_in(&backups(&env))
        .into_iter()
        .filter(|n| n.starts_with(".deleting-"))
        .collect();
    assert_eq!(deleting.len(), 1, "{:?}", env.names_in(&backups(&env)));
    let listed = env.json(&["backup", "list"]);
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed.len(),
        2,
        "the set being removed is no longer listed: {listed:?}"
    );
    assert!(listed.iter().all(|id| !deleting[0].ends_with(id)));
    env.ok(&["backup", "verify", "--all"]);

    let report = env
        .cmd(&keep_only("1"))
        .stderr_has("warning: finished an interrupted backup prune (1 set half removed)")
        .json();
    assert_eq!(
        report["removed_unfinished"],
        serde_json::json!(deleting),
        "{report}"
    );
    assert_eq!(
        env.names_in(&backups(&env)),
        [ids[2].clone()],
        "only the kept set is left"
    );
    let again = env.json(&keep_only("1"));
    assert_eq!(again["removed_unfinished"], serde_json::json!([]));
}

#[test]
fn prune_removes_set_folders_that_lost_their_manifest_and_nothing_else() {
    let env = TestEnv::fleet(&["a"]);
    let old = env.json(&["backup"]);
    let newest = env.json(&["backup"]);
    // What an older version left when killed while deleting: the manifest went first.
    std::fs::remove_file(set_dir(&env, &old).join("manifest.json")).unwrap();
    let notes = backups(&env).join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    let listed = env.json(&["backup", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], newest["id"]);

    let dry = env.json(&[&keep_only("5")[..], &["--dry-run"]].concat());
    assert_eq!(dry["removed_unfinished"], serde_json::json!([old["id"]]), "{dry}");
    assert!(set_dir(&env, &old).exists(), "a dry run removes nothing");
    let report = env
        .cmd(&keep_only("5"))
        .stderr_has("warning: finished an interrupted backup prune (1 set half removed)")
        .json();
    assert_eq!(
        report["removed_unfinished"],
        serde_json::json!([old["id"]]),
        "{report}"
    );
    assert!(!set_dir(&env, &old).exists());
    assert!(notes.is_dir(), "a folder that is no set is left alone");
    assert_eq!(backup_leftovers(&env), ["notes"]);
    env.ok(&["backup", "verify", "--all"]);
}

#[test]
fn prune_gives_no_retention_slot_to_a_pre_restore_set() {
    let env = TestEnv::fleet(&["a", "b", "c", "d"]);
    let only_b = env.json(&["backup", "--customer", "b"]);
    let only_d = env.json(&["backup", "--customer", "d"]);
    let others = env.json(&["backup", "--customer", "a", "--customer", "c"]);
    let restored = env.json(&["restore", others["id"].as_str().unwrap(), "--customer", "a"]);
    let pre = restored["pre_restore_set"].as_str().unwrap().to_string();
    env.ok(&["config", "set", "backup_keep_last", "1"]);

    let dry = env.json(&["backup", "prune", "--dry-run"]);
    let decision = |id: &str| {
        dry["sets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing: {dry}"))
            .clone()
    };
    assert_eq!(
        decision(&pre)["reasons"],
        serde_json::json!(["pre-restore"]),
        "{dry}"
    );
    let newest_regular = decision(others["id"].as_str().unwrap());
    assert_eq!(newest_regular["action"], "keep");
    assert!(
        newest_regular["reasons"]
            .as_array()
            .unwrap()
            .contains(&"last".into()),
        "the keep-last slot is the newest regular set's: {dry}"
    );
    for only in [&only_b, &only_d] {
        let kept = decision(only["id"].as_str().unwrap());
        assert_eq!(kept["action"], "keep", "the only backup of a tenant: {dry}");
        assert_eq!(kept["reasons"], serde_json::json!(["newest-copy"]), "{dry}");
    }

    env.ok(&["backup", "prune"]);
    let left: Vec<Value> = env.json(&["backup", "list"]).as_array().unwrap().clone();
    assert_eq!(left.len(), 4, "{left:?}");
    for name in ["b", "d"] {
        assert_eq!(
            env.json(&["backup", "list", "--customer", name])
                .as_array()
                .unwrap()
                .len(),
            1,
            "{name} keeps its only backup"
        );
    }
}

#[test]
fn prune_fails_when_it_cannot_read_the_retention_settings() {
    let env = TestEnv::fleet(&["a"]);
    env.ok(&["config", "set", "backup_keep_last", "3"]);
    for _ in 0..3 {
        env.ok(&["backup", "--customer", "a"]);
    }
    let catalog = std::fs::read(env.home.join("catalog.db")).unwrap();
    std::fs::write(env.home.join("catalog.db"), vec![b'x'; 8192]).unwrap();
    let run = env.fails(&["backup", "prune"], 1);
    assert!(run.stderr.contains("not a database"), "{}", run.stderr);
    assert_eq!(
        env.json(&["backup", "list"]).as_array().unwrap().len(),
        3,
        "nothing removed"
    );
    // With every flag given the catalog is not needed.
    let all_flags = keep_only("2");
    env.ok(&all_flags);
    assert_eq!(env.json(&["backup", "list"]).as_array().unwrap().len(), 2);
    std::fs::remove_file(env.home.join("catalog.db")).unwrap();
    env.fails(&["backup", "prune", "--keep-last", "1"], 6);
    std::fs::write(env.home.join("catalog.db"), catalog).unwrap();
    let kept = env.json(&["backup", "prune", "--dry-run"]);
    assert_eq!(kept["retention"]["keep_last"], 3, "{kept}");
}

#[test]
fn restore_puts_a_tenant_back_after_saving_what_it_replaces() {
    let env = TestEnv::fleet(&["a", "b"]);
    add_user(&env, "a", "one@a.test");
    let set = env.json(&["backup"]);
    let id = set["id"].as_str().unwrap();
    add_user(&env, "a", "two@a.test");
    let live = env.home.join("tenants/a.db");
    assert_eq!(users(&live), 2);

    let report = env.json(&["restore", id, "--customer", "a"]);
    assert_fields(&report, RESTORE_FIELDS);
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["pre_restore"][0]["status"], "saved");
    assert_eq!(report["set"], id);
    assert_eq!(report["restored"][0]["status"], "restored");
    assert_eq!(users(&live), 1);
    let journal: String = rusqlite::Connection::open(&live)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    assert_eq!(mode(&live), 0o600);
    let pre = report["pre_restore_set"].as_str().unwrap();
    let pre_set = env.json(&["backup", "show", pre]);
    assert_eq!(pre_set["kind"], "pre-restore");
    assert_eq!(
        users(&backups(&env).join(pre).join("tenants/a.db")),
        2,
        "the replaced data is kept"
    );
    assert_eq!(
        env.json(&["audit", "--action", "backup.restore"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(env.json(&["db", "status", "a", "-q"])[0]["schema_version"], 3);

    env.fails(&["restore", id], 2);
    env.fails(&["restore", "--customer", "a"], 2);
    env.fails(&["restore", id, "--customer", "ghost"], 3);
    env.fails(&["restore", "20990101T000000000000Z-beef", "--customer", "a"], 3);
}

#[test]
fn restore_at_picks_the_newest_set_holding_the_scope() {
    let env = TestEnv::fleet(&["a", "b"]);
    let with_a = env.json(&["backup", "--customer", "a"]);
    add_user(&env, "a", "late@a.test");
    env.json(&["backup", "--customer", "b"]);
    let report = env.json(&["restore", "--at", "2099-01-01", "--customer", "a"]);
    assert_eq!(report["set"], with_a["id"], "the newer set does not hold a");
    assert_eq!(users(&env.home.join("tenants/a.db")), 0);
    env.fails(&["restore", "--at", "2000-01-01", "--customer", "a"], 3);
    env.fails(&["restore", "--at", "whenever", "--customer", "a"], 2);
}

/// Rewrites a set's manifest through `edit`.
fn edit_manifest(env: &TestEnv, set: &Value, edit: impl FnOnce(&mut Value)) {
    let path = set_dir(env, set).join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
}

#[test]
fn restore_at_never_takes_a_set_finished_after_the_moment() {
    let env = TestEnv::fleet(&["a"]);
    let set = env.json(&["backup", "--customer", "a"]);
    let exact = set["finished_at_exact"].as_str().unwrap().to_string();
    let finished = chrono::DateTime::parse_from_rfc3339(&exact).unwrap();
    assert!(exact.len() > 20, "sub-second: {exact}");
    let just_before =
        (finished - chrono::Duration::microseconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    // Within the second the set was started and finished, but before it was finished.
    let run = env.fails(&["restore", "--at", &just_before, "--customer", "a"], 3);
    assert!(run.stderr.contains("finished at or before"), "{}", run.stderr);
    assert_eq!(
        env.json(&["restore", "--at", &exact, "--customer", "a"])["set"],
        set["id"]
    );
    // A set from an older version knows only the second it finished in: it counts as
    // finished at the end of that second.
    edit_manifest(&env, &set, |m| {
        m.as_object_mut().unwrap().remove("finished_at_exact");
    });
    let second = set["finished_at"].as_str().unwrap();
    env.fails(&["restore", "--at", second, "--customer", "a"], 3);
    let next_second = (chrono::DateTime::parse_from_rfc3339(second).unwrap() + chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        env.json(&["restore", "--at", &next_second, "--customer", "a"])["set"],
        set["id"]
    );
}

#[test]
fn status_shows_the_newest_whole_backup_and_the_newest_set_apart() {
    let env = TestEnv::fleet(&["a", "b"]);
    let whole = env.json(&["backup"]);
    assert_eq!(whole["scope"], "all");
    env.json(&["backup", "--customer", "a"]);
    let report = env.json(&["restore", whole["id"].as_str().unwrap(), "--customer", "b"]);
    let status = env.json(&["status"]);
    assert_eq!(status["newest_backup"]["id"], whole["id"], "{status}");
    assert_eq!(status["newest_backup"]["scope"], "all");
    assert_eq!(status["newest_backup"]["tenants"], 2);
    assert_eq!(status["newest_any_backup"]["id"], report["pre_restore_set"]);
    assert_eq!(status["newest_any_backup"]["kind"], "pre-restore");
    assert_eq!(status["newest_any_backup"]["scope"], "replaced");
    // Sets written before the scope was recorded are recognised by what they hold.
    edit_manifest(&env, &whole, |m| {
        m.as_object_mut().unwrap().remove("scope");
    });
    assert_eq!(env.json(&["status"])["newest_backup"]["id"], whole["id"]);
}

#[test]
fn a_restore_dry_run_shows_the_plan_and_changes_nothing() {
    let env = TestEnv::fleet(&["a", "b"]);
    add_user(&env, "a", "one@a.test");
    let whole = env.json(&["backup"]);
    add_user(&env, "a", "two@a.test");
    env.json(&["backup", "--customer", "b"]);
    let live = env.home.join("tenants/a.db");
    let sets_before = env.json(&["backup", "list"]);
    let report = env.json(&["restore", "--at", "2099-01-01", "--customer", "a", "--dry-run"]);
    assert_fields(&report, RESTORE_FIELDS);
    assert_eq!(report["set"], whole["id"], "the newest set holding a");
    assert_eq!(report["set_finished_at"], whole["finished_at_exact"]);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["pre_restore_set"], Value::Null);
    assert_eq!(report["pre_restore"][0]["status"], "would-save");
    assert_eq!(report["pre_restore"][0]["source"], live.to_str().unwrap());
    assert_eq!(report["restored"][0]["status"], "would-replace");
    assert_eq!(report["restored"][0]["target"], live.to_str().unwrap());
    // For people: the plan in one line, then the files.
    let table = env.ok(&["restore", "--at", "2099-01-01", "--customer", "a", "--dry-run"]);
    let first = table.stdout.lines().next().unwrap();
    assert!(
        first.starts_with("dry run, nothing changed: would restore 1 of 1 files from set ")
            && first.contains(whole["id"].as_str().unwrap())
            && first.contains(live.to_str().unwrap()),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("would-replace"), "{}", table.stdout);
    // Everything, without --confirm: the catalog and every tenant, saved first.
    let everything = env.json(&[
        "restore",
        whole["id"].as_str().unwrap(),
        "--everything",
        "--dry-run",
    ]);
    let saved: Vec<&str> = everything["pre_restore"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scope"].as_str().unwrap())
        .collect();
    assert_eq!(saved, ["catalog", "tenant", "tenant"]);
    assert_eq!(everything["restored"].as_array().unwrap().len(), 3);
    // A missing file would be created and needs nothing saved.
    for file in ["b.db", "b.db-wal", "b.db-shm"] {
        let _ = std::fs::remove_file(env.home.join("tenants").join(file));
    }
    let create = env.json(&[
        "restore",
        whole["id"].as_str().unwrap(),
        "--customer",
        "b",
        "--dry-run",
    ]);
    assert_eq!(create["restored"][0]["status"], "would-create");
    assert_eq!(create["pre_restore"], serde_json::json!([]));
    // Nothing changed.
    assert_eq!(users(&live), 2);
    assert!(!env.home.join("tenants/b.db").exists());
    assert_eq!(env.json(&["backup", "list"]), sets_before);
    assert_eq!(
        env.json(&["audit", "--action", "backup.restore"]),
        serde_json::json!([])
    );
}

#[test]
fn a_deleted_customer_whose_trash_is_gone_comes_back_from_a_backup() {
    let env = TestEnv::fleet(&["a", "b"]);
    add_user(&env, "a", "one@a.test");
    let set = env.json(&["backup"]);
    let id = set["id"].as_str().unwrap();
    let only_b = env.json(&["backup", "--customer", "b"]);
    let deleted = env.json(&["customer", "delete", "a", "--confirm", "a"]);
    let trashed = PathBuf::from(deleted["db_path"].as_str().unwrap());
    for file in [".db", ".db-wal", ".db-shm"] {
        let _ = std::fs::remove_file(trashed.with_extension(&file[1..]));
    }
    assert!(!trashed.exists());
    // Each command names the one path that works.
    let run = env.fails(&["customer", "undelete", "a"], 6);
    assert!(
        run.stderr.contains("customer undelete a --from-backup"),
        "{}",
        run.stderr
    );
    let run = env.fails(&["restore", id, "--customer", "a"], 6);
    assert!(
        run.stderr.contains("customer undelete a --from-backup"),
        "{}",
        run.stderr
    );
    // Sets that cannot serve are refused and change nothing.
    env.fails(
        &[
            "customer",
            "undelete",
            "a",
            "--from-backup",
            only_b["id"].as_str().unwrap(),
        ],
        3,
    );
    env.fails(
        &["customer", "undelete", "a", "--from-backup", "--at", "2000-01-01"],
        3,
    );
    env.fails(
        &[
            "customer",
            "undelete",
            "a",
            "--from-backup",
            id,
            "--at",
            "2099-01-01",
        ],
        2,
    );
    env.fails(&["customer", "undelete", "a", "--at", "2099-01-01"], 2);
    env.fails(&["customer", "undelete", "b", "--from-backup"], 6);
    assert_eq!(env.json(&["customer", "show", "a"])["status"], "deleted");

    let run = env.run(&["customer", "undelete", "a", "--from-backup", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains(&format!("from backup set {id}")),
        "{}",
        run.stderr
    );
    let customer = run.json();
    assert_fields(&customer, CUSTOMER_FIELDS);
    assert_eq!(customer["status"], "active");
    let live = env.home.join("tenants/a.db");
    assert_eq!(customer["db_path"], live.to_str().unwrap());
    assert_eq!(users(&live), 1, "the backed-up data is back");
    let events = env.json(&["audit", "--action", "customer.undelete"]);
    assert_eq!(events[0]["details"]["from_backup"], id, "{events}");
    assert_eq!(env.json(&["db", "status", "a", "-q"])[0]["schema_version"], 3);
    env.ok(&["doctor"]);
    // A deleted customer whose file is still in the trash comes back from there.
    env.ok(&["customer", "delete", "b", "--confirm", "b"]);
    let run = env.fails(&["customer", "undelete", "b", "--from-backup"], 6);
    assert!(run.stderr.contains("without --from-backup"), "{}", run.stderr);
    env.ok(&["customer", "undelete", "b"]);
}

#[test]
fn a_checksum_mismatch_restores_nothing() {
    let env = TestEnv::fleet(&["a"]);
    let set = env.json(&["backup"]);
    add_user(&env, "a", "keep@a.test");
    let copy = set_dir(&env, &set).join("tenants/a.db");
    let mut bytes = std::fs::read(&copy).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 1;
    std::fs::write(&copy, bytes).unwrap();
    let before = env.json(&["backup", "list"]).as_array().unwrap().len();
    let run = env.fails(&["restore", set["id"].as_str().unwrap(), "--customer", "a"], 7);
    assert!(run.stderr.contains("tenants/a.db"), "{}", run.stderr);
    assert_eq!(users(&env.home.join("tenants/a.db")), 1);
    assert_eq!(
        env.json(&["backup", "list"]).as_array().unwrap().len(),
        before,
        "no pre-restore set either"
    );
}

#[test]
fn a_copy_that_fails_integrity_check_restores_nothing_even_with_a_matching_checksum() {
    use sha2::{Digest, Sha256};
    let env = TestEnv::fleet(&["a"]);
    let set = env.json(&["backup"]);
    add_user(&env, "a", "keep@a.test");
    // Damaged before its checksum was taken: the manifest agrees with the bad bytes.
    let dir = set_dir(&env, &set);
    let copy = dir.join("tenants/a.db");
    let mut bytes = std::fs::read(&copy).unwrap();
    let len = bytes.len();
    for byte in &mut bytes[4096..len] {
        *byte = 0x5A;
    }
    std::fs::write(&copy, &bytes).unwrap();
    let manifest_path = dir.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let sum: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    manifest["entries"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["scope"] == "tenant")
        .unwrap()["sha256"] = Value::from(sum);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let before = env.json(&["backup", "list"]).as_array().unwrap().len();
    let run = env.fails(&["restore", set["id"].as_str().unwrap(), "--customer", "a"], 7);
    assert!(run.stderr.contains("integrity_check"), "{}", run.stderr);
    assert_eq!(
        users(&env.home.join("tenants/a.db")),
        1,
        "the live database is untouched"
    );
    assert_eq!(
        env.json(&["backup", "list"]).as_array().unwrap().len(),
        before,
        "no pre-restore set either"
    );
    let leftovers: Vec<_> = std::fs::read_dir(env.home.join("tenants"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".restore-"))
        .collect();
    assert!(leftovers.is_empty(), "no staged copy is left behind");
}

#[test]
fn a_damaged_tenant_is_restored_after_keeping_its_damaged_file() {
    use sha2::{Digest, Sha256};
    let env = TestEnv::fleet(&["a", "b"]);
    add_user(&env, "a", "one@a.test");
    let set = env.json(&["backup"]);
    add_user(&env, "a", "two@a.test");
    let live = env.home.join("tenants/a.db");
    damage_middle_pages(&live);
    let damaged_bytes = std::fs::read(&live).unwrap();
    let run = env.run(&["restore", "--at", "2099-01-01", "--customer", "a", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let warnings: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].starts_with("warning: ") && warnings[0].contains("damaged"),
        "{}",
        run.stderr
    );
    let report = run.json();
    assert_eq!(report["set"], set["id"]);
    assert_eq!(report["restored"][0]["status"], "restored");
    assert_eq!(users(&live), 1, "the backup is back in place");
    assert_eq!(report["pre_restore"][0]["status"], "kept-damaged", "{report}");
    assert_eq!(report["pre_restore"][0]["source"], live.to_str().unwrap());
    let pre = report["pre_restore_set"].as_str().unwrap();
    let manifest = env.json(&["backup", "show", pre]);
    let entry = &manifest["entries"][0];
    assert!(
        entry["damaged"].as_str().unwrap().contains("quick_check"),
        "{entry}"
    );
    let kept = backups(&env).join(pre).join("tenants/a.db");
    assert!(
        std::fs::read(&kept).unwrap() == damaged_bytes,
        "the raw bytes are kept"
    );
    let sum: String = Sha256::digest(&damaged_bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(entry["sha256"], sum);
    // Its checksum is verified; quick_check is not required of it.
    env.ok(&["backup", "verify", pre]);
    // The damaged copy is never what a restore picks, and naming it says why.
    let again = env.json(&["restore", "--at", "2099-01-01", "--customer", "a"]);
    assert_eq!(again["set"], set["id"]);
    let run = env.fails(&["restore", pre, "--customer", "a"], 7);
    assert!(run.stderr.contains("damaged copy"), "{}", run.stderr);
}

#[test]
fn a_damaged_catalog_is_kept_damaged_before_a_catalog_restore() {
    let env = TestEnv::fleet(&["a"]);
    let set = env.json(&["backup", "--catalog"]);
    let live = env.home.join("catalog.db");
    damage_middle_pages(&live);
    let damaged_bytes = std::fs::read(&live).unwrap();
    let run = env.run(&[
        "restore",
        set["id"].as_str().unwrap(),
        "--catalog",
        "--confirm",
        "catalog",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.starts_with("warning: ") && run.stderr.contains("damaged"),
        "{}",
        run.stderr
    );
    let report = run.json();
    assert_eq!(report["pre_restore"][0]["scope"], "catalog");
    assert_eq!(report["pre_restore"][0]["status"], "kept-damaged");
    let pre = report["pre_restore_set"].as_str().unwrap();
    assert!(std::fs::read(backups(&env).join(pre).join("catalog.db")).unwrap() == damaged_bytes);
    env.ok(&["backup", "verify", pre]);
    env.ok(&["doctor"]);
}

#[test]
fn another_customers_backup_needs_into() {
    let env = TestEnv::fleet(&["acme", "staging"]);
    add_user(&env, "acme", "real@acme.test");
    let set = env.json(&["backup"]);
    let id = set["id"].as_str().unwrap();
    // acme is purged and a new customer takes its slug: the backup is not theirs.
    env.ok(&["customer", "delete", "acme", "--confirm", "acme"]);
    env.ok(&["customer", "purge", "acme", "--confirm", "acme"]);
    env.customer("new@acme.test", "New", &["--slug", "acme"]);
    let run = env.fails(&["restore", id, "--customer", "acme"], 6);
    assert!(run.stderr.contains("--into"), "{}", run.stderr);
    assert_eq!(users(&env.home.join("tenants/acme.db")), 0);
    // Cloning the old data into another existing customer.
    let report = env.json(&["restore", id, "--customer", "acme", "--into", "staging"]);
    assert_eq!(report["restored"][0]["customer"], "staging");
    assert_eq!(report["restored"][0]["from_customer"], "acme");
    assert_eq!(users(&env.home.join("tenants/staging.db")), 1);
    env.fails(
        &[
            "restore",
            id,
            "--customer",
            "acme",
            "--customer",
            "staging",
            "--into",
            "staging",
        ],
        2,
    );
}

#[test]
fn if_missing_restores_only_absent_files() {
    let env = TestEnv::fleet(&["a", "b"]);
    add_user(&env, "a", "x@a.test");
    add_user(&env, "b", "x@b.test");
    let set = env.json(&["backup"]);
    add_user(&env, "a", "y@a.test");
    for file in ["b.db", "b.db-wal", "b.db-shm"] {
        let _ = std::fs::remove_file(env.home.join("tenants").join(file));
    }
    let report = env.json(&[
        "restore",
        set["id"].as_str().unwrap(),
        "--customer",
        "a",
        "--customer",
        "b",
        "--if-missing",
    ]);
    let statuses: Vec<(&str, &str)> = report["restored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["customer"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert!(
        statuses.contains(&("a", "skipped")) && statuses.contains(&("b", "restored")),
        "{statuses:?}"
    );
    assert_eq!(users(&env.home.join("tenants/a.db")), 2);
    assert_eq!(users(&env.home.join("tenants/b.db")), 1);
}

#[test]
fn the_catalog_and_everything_need_their_confirmation() {
    let env = TestEnv::fleet(&["a"]);
    add_user(&env, "a", "x@a.test");
    let set = env.json(&["backup"]);
    let id = set["id"].as_str().unwrap();
    env.customer("late@example.com", "Late", &["--slug", "late"]);
    add_user(&env, "a", "y@a.test");
    env.fails(&["restore", id, "--catalog"], 6);
    env.fails(&["restore", id, "--catalog", "--confirm", "everything"], 6);
    let restored = env
        .cmd(&["restore", id, "--catalog", "--confirm", "catalog"])
        .stderr_has("1 tenant database in the home has no customer in the restored catalog (late)")
        .json();
    assert_eq!(restored["unowned_tenants"], serde_json::json!(["late"]));
    env.fails(&["customer", "show", "late"], 3);
    assert_eq!(
        users(&env.home.join("tenants/a.db")),
        2,
        "tenants are untouched by a catalog restore"
    );
    env.fails(&["restore", id, "--everything"], 6);
    let report = env
        .cmd(&["restore", id, "--everything", "--confirm", "everything"])
        .stderr_has("(late)")
        .json();
    assert_eq!(report["restored"].as_array().unwrap().len(), 2);
    assert_eq!(users(&env.home.join("tenants/a.db")), 1);
    env.ok(&["doctor", "--fix", "--trash"]);
    env.ok(&["doctor"]);
}

#[test]
fn the_whole_home_comes_back_after_losing_the_catalog() {
    let env = TestEnv::fleet(&["a", "b"]);
    add_user(&env, "b", "x@b.test");
    let set = env.json(&["backup"]);
    for file in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(env.home.join(file));
    }
    env.fails(&["customer", "list"], 6);
    env.json(&[
        "restore",
        "--at",
        "2099-01-01",
        "--everything",
        "--confirm",
        "everything",
    ]);
    assert_eq!(env.json(&["customer", "list"]).as_array().unwrap().len(), 2);
    assert_eq!(users(&env.home.join("tenants/b.db")), 1);
    let _ = set;
}

#[test]
fn a_restore_waits_for_the_home_lock_then_refuses() {
    let env = TestEnv::fleet(&["a"]);
    let set = env.json(&["backup"]);
    let lock = env.hold_home_lock();
    env.fails(
        &[
            "restore",
            set["id"].as_str().unwrap(),
            "--customer",
            "a",
            "--lock-timeout",
            "1s",
        ],
        6,
    );
    drop(lock);
    env.ok(&["restore", set["id"].as_str().unwrap(), "--customer", "a"]);
}

fn is_unfinished_set(name: &str) -> bool {
    name.starts_with(".tmp-")
}

/// How many files `dir` holds, at any depth.
fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| match e.file_type() {
                    Ok(kind) if kind.is_dir() => files_under(&e.path()),
                    _ => 1,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn killing_backups_never_leaves_a_set_that_looks_complete() {
    let env = TestEnv::fleet(&["a", "b", "c", "d", "e", "f"]);
    for slug in ["a", "b", "c"] {
        add_user(&env, slug, "x@x.test");
    }
    let backups = backups(&env);
    land_kills(12, |n| {
        let before = names_matching(&backups, is_unfinished_set);
        let new_set = || {
            names_matching(&backups, is_unfinished_set)
                .difference(&before)
                .next()
                .map(|name| backups.join(name))
        };
        // Killed at a different point each time: once the unfinished set holds n % 8 files.
        let written = || new_set().is_some_and(|set| files_under(&set) >= n % 8);
        env.cmd(&["backup", "-q"])
            .kill_when(written, || new_set().is_some())
    });
    let sets = env.json(&["backup", "list"]);
    for set in sets.as_array().unwrap() {
        env.ok(&["backup", "verify", set["id"].as_str().unwrap()]);
    }
    env.ok_warning(&["backup"], "unfinished set");
    assert_eq!(backup_leftovers(&env), Vec::<String>::new());
    env.ok(&["backup", "verify", "--all"]);
}

#[test]
fn killing_restores_leaves_the_old_or_the_new_database() {
    let env = TestEnv::fleet(&["a"]);
    add_user(&env, "a", "old@a.test");
    let set = env.json(&["backup"]);
    let id = set["id"].as_str().unwrap().to_string();
    add_user(&env, "a", "new@a.test");
    let live = env.home.join("tenants/a.db");
    land_kills(10, |n| {
        let restore = env.cmd(&["restore", &id, "--customer", "a", "-q"]);
        // Killed while the restored copy is staged beside the live file, or later, while
        // the pre-restore set of the live file is being written.
        let landed = if n % 2 == 0 {
            restore.kill_on_new(&env.home.join("tenants"), |name| name.starts_with(".restore-"))
        } else {
            restore.kill_on_new(&backups(&env), is_unfinished_set)
        };
        let conn = rusqlite::Connection::open(&live).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "attempt {n}");
        let users: i64 = conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert!(users == 1 || users == 2, "attempt {n}: {users} users");
        drop(conn);
        if users == 1 {
            add_user(&env, "a", &format!("r{n}@a.test"));
        }
        landed
    });
    let run = env.run(&["restore", &id, "--customer", "a"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        restore_leftovers(&env),
        Vec::<String>::new(),
        "the next restore removes what kills left"
    );
    assert_eq!(users(&live), 1);
}

/// What restores stage or half write: `.restore-*` in the home and its tenants folder,
/// `.tmp-*` sets in the backup folder.
fn restore_leftovers(env: &TestEnv) -> Vec<String> {
    let staging = |dir: &Path| names_matching(dir, |n| n.starts_with(".restore-"));
    staging(&env.home)
        .into_iter()
        .chain(staging(&env.home.join("tenants")))
        .chain(names_matching(&backups(env), is_unfinished_set))
        .collect()
}

#[test]
fn a_restore_killed_at_any_step_leaves_nothing_after_the_next_restore() {
    let env = TestEnv::fleet(&["a", "b"]);
    add_user(&env, "a", "old@a.test");
    let set = env.json(&["backup"]);
    let id = set["id"].as_str().unwrap();
    let live = env.home.join("tenants/a.db");
    let scopes: [(&[&str], bool); 3] = [
        (&["--customer", "a"], true),
        (&["--catalog", "--confirm", "catalog"], false),
        (&["--everything", "--confirm", "everything"], true),
    ];
    for (scope, restores_a) in scopes {
        let restore: Vec<&str> = [&["restore", id][..], scope].concat();
        for step in ["restore:staged", "backup:copied", "restore:saved"] {
            if users(&live) == 1 {
                add_user(&env, "a", "new@a.test");
            }
            env.cmd(&restore).killed_at_step(step);
            let left = restore_leftovers(&env);
            assert!(
                left.iter().any(|n| n.starts_with(".restore-")),
                "{scope:?} {step}: {left:?}"
            );
            assert_eq!(
                left.iter().any(|n| n.starts_with(".tmp-")),
                step == "backup:copied",
                "{scope:?} {step}: {left:?}"
            );
            assert_eq!(users(&live), 2, "{scope:?} {step}: nothing was replaced yet");
            env.ok(&["customer", "list"]);

            let report = env
                .cmd(&restore)
                .arg("--json")
                .stderr_has("of an interrupted restore")
                .run()
                .json();
            assert_eq!(
                report["cleaned_up"].as_array().unwrap().len(),
                left.len(),
                "{scope:?} {step}: {report}"
            );
            assert_eq!(restore_leftovers(&env), Vec::<String>::new(), "{scope:?} {step}");
            assert_eq!(users(&live), if restores_a { 1 } else { 2 }, "{scope:?} {step}");
            let clean = env.json(&restore);
            assert_eq!(clean["cleaned_up"], serde_json::json!([]));
        }
    }
    env.ok(&["backup", "verify", "--all"]);
}

/// A restore killed between two swaps has replaced some files and not others, each one
/// whole: the pre-restore set it took is already complete, the next run of the same
/// restore puts back the rest, and doctor --fix alone also leaves a settled home.
#[test]
fn a_restore_killed_between_two_swaps_is_finished_by_the_next_one_or_settled_by_doctor() {
    let scopes: [(&[&str], i64); 2] = [
        // a is swapped in first, then the kill: b still holds its newer row.
        (&["--customer", "a", "--customer", "b"], 1),
        // The catalog is swapped in first: both tenants still hold their newer rows.
        (&["--everything", "--confirm", "everything"], 2),
    ];
    for (scope, users_of_a_after_the_kill) in scopes {
        for doctor_first in [false, true] {
            let context = format!("{scope:?}, doctor first: {doctor_first}");
            let env = TestEnv::fleet(&["a", "b"]);
            add_user(&env, "a", "old@a.test");
            add_user(&env, "b", "old@b.test");
            let id = env.json(&["backup"])["id"].as_str().unwrap().to_string();
            add_user(&env, "a", "new@a.test");
            add_user(&env, "b", "new@b.test");
            let restore: Vec<&str> = [&["restore", id.as_str()][..], scope].concat();
            env.cmd(&restore).killed_at_step("restore:swapping");

            let (a, b) = (env.home.join("tenants/a.db"), env.home.join("tenants/b.db"));
            assert_eq!(users(&a), users_of_a_after_the_kill, "{context}");
            assert_eq!(users(&b), 2, "{context}: b is not swapped in yet");
            let sets = env.json(&["backup", "list"]);
            let pre = sets.as_array().unwrap().last().unwrap().clone();
            assert_eq!(pre["kind"], "pre-restore", "{context}: {sets}");
            env.ok(&["backup", "verify", pre["id"].as_str().unwrap()]);
            assert!(!restore_leftovers(&env).is_empty(), "{context}");

            if doctor_first {
                env.run(&["doctor", "--fix"]);
                assert_eq!(restore_leftovers(&env), Vec::<String>::new(), "{context}");
                env.ok(&["doctor"]);
            }
            let report = if doctor_first {
                env.json(&restore)
            } else {
                env.cmd(&restore)
                    .arg("--json")
                    .stderr_has("of an interrupted restore")
                    .run()
                    .json()
            };
            assert_eq!(
                report["cleaned_up"].as_array().unwrap().is_empty(),
                doctor_first,
                "{context}: {report}"
            );
            assert_eq!(restore_leftovers(&env), Vec::<String>::new(), "{context}");
            assert_eq!((users(&a), users(&b)), (1, 1), "{context}");
            env.ok(&["doctor"]);
        }
    }
}

#[test]
fn an_undelete_from_backup_killed_while_staging_leaves_nothing_after_the_next_one() {
    let env = TestEnv::fleet(&["a"]);
    add_user(&env, "a", "one@a.test");
    env.ok(&["backup"]);
    let deleted = env.json(&["customer", "delete", "a", "--confirm", "a"]);
    let trashed = PathBuf::from(deleted["db_path"].as_str().unwrap());
    for extension in ["db", "db-wal", "db-shm"] {
        let _ = std::fs::remove_file(trashed.with_extension(extension));
    }
    env.cmd(&["customer", "undelete", "a", "--from-backup"])
        .killed_at_step("restore:staged");
    assert_eq!(restore_leftovers(&env).len(), 1, "{:?}", restore_leftovers(&env));
    assert_eq!(env.json(&["customer", "show", "a"])["status"], "deleted");
    assert!(!env.home.join("tenants/a.db").exists());

    env.cmd(&["customer", "undelete", "a", "--from-backup"])
        .stderr_has("warning: removed 1 leftover of an interrupted restore")
        .run();
    assert_eq!(restore_leftovers(&env), Vec::<String>::new());
    assert_eq!(env.json(&["customer", "show", "a"])["status"], "active");
    assert_eq!(users(&env.home.join("tenants/a.db")), 1);
}

#[test]
fn doctor_removes_what_a_killed_restore_left_unless_a_restore_runs() {
    let env = TestEnv::fleet(&["a"]);
    let set = env.json(&["backup"]);
    env.cmd(&[
        "restore",
        set["id"].as_str().unwrap(),
        "--everything",
        "--confirm",
        "everything",
    ])
    .killed_at_step("backup:copied");
    let left = restore_leftovers(&env);
    assert_eq!(
        left.len(),
        3,
        "catalog and tenant staging, pre-restore set: {left:?}"
    );
    let lock = env.hold_home_lock();
    let busy = env.run(&["doctor", "--fix", "--json"]);
    assert_eq!(
        checks_named(&busy.json(), "orphan.staging"),
        [],
        "a restore may be running: {busy:?}"
    );
    let pre_restore = checks_named(&busy.json(), "orphan.backup");
    assert_eq!(
        pre_restore.len(),
        1,
        "an unfinished set nobody holds locked is no live restore's: {busy:?}"
    );
    assert_eq!(pre_restore[0].1, "fixed");
    assert!(pre_restore[0].0.ends_with(".pre-restore"), "{pre_restore:?}");
    assert_eq!(restore_leftovers(&env), left[..2]);
    drop(lock);

    let found = env.run(&["doctor", "--json"]);
    let found = checks_named(&found.json(), "orphan.staging");
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|(_, status)| status == "warn"), "{found:?}");
    let fixed = env.run(&["doctor", "--fix", "--json"]);
    let fixed = checks_named(&fixed.json(), "orphan.staging");
    assert!(fixed.iter().all(|(_, status)| status == "fixed"), "{fixed:?}");
    assert_eq!(restore_leftovers(&env), Vec::<String>::new());
    env.ok(&["backup", "verify", "--all"]);
}

/// The (target, status) of each doctor check of this name.
fn checks_named(checks: &Value, check: &str) -> Vec<(String, String)> {
    checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == check)
        .map(|c| {
            (
                c["target"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// What interrupted runs left in the backup folder: unfinished and half-removed sets.
fn unfinished_in_backups(env: &TestEnv) -> Vec<String> {
    names_matching(&backups(env), |n| {
        [".tmp-", ".deleting-", ".new-"]
            .iter()
            .any(|prefix| n.starts_with(prefix))
    })
    .into_iter()
    .collect()
}

/// Three sets, then a backup killed before its manifest, a prune killed after moving
/// the oldest set aside (before it looks for unfinished sets) and a restore killed
/// while saving what it replaces: one leftover of each in the backup folder.
fn kill_a_prune_a_backup_and_a_restore(env: &TestEnv) -> Vec<String> {
    let sets: Vec<Value> = (0..3).map(|_| env.json(&["backup"])).collect();
    let newest = &sets[2];
    env.cmd(&["backup"]).killed_at_step("backup:copied");
    env.cmd(&keep_only("2")).killed_at_step("prune:renamed");
    env.cmd(&["restore", newest["id"].as_str().unwrap(), "--customer", "a"])
        .killed_at_step("backup:copied");
    let left = unfinished_in_backups(env);
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left[0].starts_with(".deleting-"), "{left:?}");
    assert_eq!(
        left.iter().filter(|n| n.ends_with(".pre-restore")).count(),
        1,
        "{left:?}"
    );
    left
}

#[test]
fn the_next_backup_removes_what_killed_backups_prunes_and_restores_left() {
    let env = TestEnv::fleet(&["a", "b"]);
    kill_a_prune_a_backup_and_a_restore(&env);
    let run = env
        .cmd(&["backup"])
        .stderr_has(
            "warning: finished an interrupted backup prune (1 set half removed); \
             removed 2 unfinished sets of interrupted backups or restores",
        )
        .run();
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert_eq!(unfinished_in_backups(&env), Vec::<String>::new());
    env.ok(&["backup"]);
    env.ok(&["backup", "verify", "--all"]);
}

#[test]
fn the_next_prune_removes_what_killed_backups_prunes_and_restores_left() {
    let env = TestEnv::fleet(&["a", "b"]);
    let left = kill_a_prune_a_backup_and_a_restore(&env);
    let dry = env.cmd(&keep_only("5")).arg("--dry-run").json();
    assert_eq!(dry["removed_unfinished"], serde_json::json!(left), "{dry}");
    assert_eq!(unfinished_in_backups(&env), left, "a dry run removes nothing");
    let run = env
        .cmd(&keep_only("5"))
        .arg("--json")
        .stderr_has("warning: finished an interrupted backup prune (1 set half removed)")
        .run();
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert_eq!(run.json()["removed_unfinished"], serde_json::json!(left));
    assert_eq!(unfinished_in_backups(&env), Vec::<String>::new());
    let again = env.json(&keep_only("5"));
    assert_eq!(again["removed_unfinished"], serde_json::json!([]));
    env.ok(&["backup", "verify", "--all"]);
}

#[test]
fn doctor_reports_what_killed_backups_and_prunes_left_and_fix_removes_it() {
    let env = TestEnv::fleet(&["a", "b"]);
    let left = kill_a_prune_a_backup_and_a_restore(&env);
    let targets: Vec<(String, String)> = left
        .iter()
        .map(|name| (backups(&env).join(name).display().to_string(), "warn".to_string()))
        .collect();
    let found = env.run(&["doctor", "--json"]);
    assert_eq!(found.code, 0, "warnings only: {found:?}");
    assert_eq!(checks_named(&found.json(), "orphan.backup"), targets);
    assert_eq!(unfinished_in_backups(&env), left, "doctor alone changes nothing");

    let fixed = env.run(&["doctor", "--fix", "--json"]);
    assert_eq!(fixed.code, 0, "{fixed:?}");
    let fixed = checks_named(&fixed.json(), "orphan.backup");
    assert_eq!(fixed.len(), 3, "{fixed:?}");
    assert!(fixed.iter().all(|(_, status)| status == "fixed"), "{fixed:?}");
    assert_eq!(unfinished_in_backups(&env), Vec::<String>::new());
    assert_eq!(checks_named(&env.json(&["doctor"]), "orphan.backup"), []);
    env.ok(&["backup", "verify", "--all"]);
}

#[test]
fn a_new_set_folder_is_left_alone_for_minutes_then_removed() {
    let env = TestEnv::fleet(&["a"]);
    env.ok(&["backup"]);
    let young = backups(&env).join(".new-20990101T000000000000Z-0001");
    let old = backups(&env).join(".new-20200101T000000000000Z-0002");
    for dir in [&young, &old] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::process::Command::new("touch")
        .args(["-d", "10 minutes ago"])
        .arg(&old)
        .status()
        .unwrap();
    let found = env.json(&["doctor"]);
    assert_eq!(
        checks_named(&found, "orphan.backup"),
        [(old.display().to_string(), "warn".to_string())]
    );
    env.ok_warning(
        &["backup"],
        "removed the unfinished set of an interrupted backup or restore",
    );
    assert!(!old.exists());
    assert!(young.exists(), "its writer may be about to lock and rename it");
    env.ok(&keep_only("5"));
    env.ok(&["doctor", "--fix"]);
    assert!(young.exists());
}

#[test]
fn backups_and_prunes_at_once_never_remove_each_others_sets() {
    let env = TestEnv::fleet(&["a", "b", "c"]);
    env.cmd(&["backup"]).killed_at_step("backup:copied");
    let backups_run = 8;
    let crowd = (0..backups_run)
        .map(|_| env.cmd(&["backup", "--json"]))
        .chain((0..2).map(|_| env.cmd(&keep_only("100"))));
    let runs = all_at_once(crowd);
    for run in &runs {
        assert_eq!(run.code, 0, "{run:?}");
    }
    let warned = runs
        .iter()
        .filter(|run| run.stderr.contains("unfinished set of an interrupted backup"))
        .count();
    assert_eq!(warned, 1, "one of them removed the killed backup's set: {runs:?}");
    let written: std::collections::BTreeSet<String> = runs[..backups_run]
        .iter()
        .map(|run| run.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(written.len(), backups_run);
    let listed: std::collections::BTreeSet<String> = env
        .json(&["backup", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|set| set["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, written, "every set written is there, whole");
    assert_eq!(unfinished_in_backups(&env), Vec::<String>::new());
    env.ok(&["backup", "verify", "--all"]);
}

#[test]
fn a_full_disk_fails_cleanly_and_removes_the_partial_set() {
    let env = TestEnv::fleet(&["a"]);
    env.ok(&["db", "sql", "a", "CREATE TABLE blobs (b BLOB)", "--write"]);
    env.ok(&["db", "sql", "a", "INSERT INTO blobs SELECT randomblob(1024 * 1024) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3)", "--write"]);
    let before = std::fs::read(env.home.join("tenants/a.db")).unwrap();
    // 1 MiB limit (ulimit counts 1 KiB blocks); SIGXFSZ ignored so writes fail with EFBIG.
    let output = env
        .shell("trap '' XFSZ; ulimit -f 1024; exec \"$TENANTCTL\" backup")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no space left"), "{stderr}");
    assert!(stderr.contains("free space"), "{stderr}");
    assert!(
        env.names_in(&backups(&env)).is_empty(),
        "no set and no leftover: {:?}",
        env.names_in(&backups(&env))
    );
    assert_eq!(
        std::fs::read(env.home.join("tenants/a.db")).unwrap(),
        before,
        "the source is untouched"
    );
}

#[test]
fn doctor_warns_about_tenants_without_a_recent_backup() {
    let env = TestEnv::fleet(&["a"]);
    let run = env.ok(&["doctor", "--json"]);
    let warned = run
        .json()
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["check"] == "backups" && c["status"] == "warn");
    assert!(warned);
    env.ok(&["backup"]);
    let checks = env.json(&["doctor"]);
    assert!(
        checks
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["check"] == "backups" && c["status"] == "ok")
    );
}

#[test]
fn restore_refuses_while_another_process_has_the_database_open() {
    use std::io::BufRead;
    let env = TestEnv::fleet(&["a"]);
    let set = env.json(&["backup"]);
    let db = env.home.join("tenants/a.db");
    let mut holder = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3,sys; c=sqlite3.connect('{}'); c.execute('select count(*) from users').fetchall(); print('ready', flush=True); sys.stdin.read()",
            db.display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let run = env.fails(&["restore", set["id"].as_str().unwrap(), "--customer", "a"], 6);
    assert!(run.stderr.contains("open in another process"), "{}", run.stderr);
    drop(holder.stdin.take());
    holder.wait().unwrap();
    env.ok(&["restore", set["id"].as_str().unwrap(), "--customer", "a"]);
}

#[test]
fn a_restore_of_several_tenants_replaces_all_or_none() {
    let env = TestEnv::fleet(&["a", "b"]);
    add_user(&env, "a", "old@a.test");
    add_user(&env, "b", "old@b.test");
    let set = env.json(&["backup"]);
    let dir = set_dir(&env, &set);
    add_user(&env, "a", "new@a.test");
    // b's copy is damaged and its manifest made to agree, so only the database check can tell.
    let copy = dir.join("tenants/b.db");
    let mut bytes = std::fs::read(&copy).unwrap();
    for byte in &mut bytes[4096..8192] {
        *byte = 0x42;
    }
    std::fs::write(&copy, &bytes).unwrap();
    let manifest_path = dir.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let sum = String::from_utf8(
        std::process::Command::new("sha256sum")
            .arg(&copy)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for entry in manifest["entries"].as_array_mut().unwrap() {
        if entry["file"] == "tenants/b.db" {
            entry["sha256"] = Value::String(sum.split_whitespace().next().unwrap().to_string());
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let run = env.run(&[
        "restore",
        set["id"].as_str().unwrap(),
        "--customer",
        "a",
        "--customer",
        "b",
    ]);
    assert_eq!(run.code, 7, "{run:?}");
    assert_eq!(
        users(&env.home.join("tenants/a.db")),
        2,
        "a was not replaced either"
    );
    assert!(
        env.names_in(&env.home.join("tenants"))
            .iter()
            .all(|n| !n.starts_with(".restore-"))
    );
}

#[test]
fn a_copy_changed_in_place_or_a_source_with_its_mtime_set_back_is_copied_again() {
    let env = TestEnv::fleet(&["a", "b"]);
    let first = env.json(&["backup"]);
    let old_copy = set_dir(&env, &first).join("tenants/a.db");
    let mut bytes = std::fs::read(&old_copy).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&old_copy, bytes).unwrap();
    // b changes, but its modification time is put back as it was.
    let b = env.home.join("tenants/b.db");
    let reference = env.root.join("reference");
    std::process::Command::new("touch")
        .arg("-r")
        .arg(&b)
        .arg(&reference)
        .status()
        .unwrap();
    rusqlite::Connection::open(&b)
        .unwrap()
        .execute_batch(
            "PRAGMA journal_mode=DELETE; INSERT INTO users (email, name) VALUES ('sneaky@b.test', 'S');",
        )
        .unwrap();
    std::process::Command::new("touch")
        .arg("-r")
        .arg(&reference)
        .arg(&b)
        .status()
        .unwrap();
    let second = env.json(&["backup"]);
    assert_eq!(second["linked"], 0, "{second}");
    env.ok(&["backup", "verify", second["id"].as_str().unwrap()]);
    assert_eq!(users(&set_dir(&env, &second).join("tenants/b.db")), 1);
}

#[test]
fn restoring_everything_into_a_new_home_points_the_catalog_at_it() {
    let env = TestEnv::fleet(&["a", "b"]);
    add_user(&env, "b", "x@b.test");
    env.json(&["backup"]);
    let other = env.root.join("other-home");
    let backups_dir = backups(&env);
    let args = |extra: &[&str]| -> Vec<String> {
        let mut all = vec![
            "--home".to_string(),
            other.display().to_string(),
            "--backup-dir".to_string(),
            backups_dir.display().to_string(),
        ];
        all.extend(extra.iter().map(|s| s.to_string()));
        all
    };
    let run = |extra: &[&str]| {
        let owned = args(extra);
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        env.ok(&refs)
    };
    run(&[
        "restore",
        "--at",
        "2099-01-01",
        "--everything",
        "--confirm",
        "everything",
    ]);
    let path = run(&["db", "path", "b"]).stdout;
    assert_eq!(PathBuf::from(path.trim()), other.join("tenants/b.db"));
    assert_eq!(users(&other.join("tenants/b.db")), 1);
    // Migration files are the operator's code, not data: init puts the starter set back.
    run(&["init"]);
    run(&["doctor"]);
}

#[test]
fn a_catalog_restore_re_reads_tenant_versions_from_their_files() {
    let env = TestEnv::fleet(&["a"]);
    let set = env.json(&["backup", "--catalog"]);
    std::fs::write(
        env.home.join("tenant-migrations/V4__four.sql"),
        "CREATE TABLE four (x);",
    )
    .unwrap();
    env.ok_warning(&["db", "migrate"], "1 tenants: 1 migrated");
    env.json(&[
        "restore",
        set["id"].as_str().unwrap(),
        "--catalog",
        "--confirm",
        "catalog",
    ]);
    assert_eq!(env.json(&["db", "status", "a", "-q"])[0]["schema_version"], 4);
    env.ok(&["doctor"]);
}

#[test]
fn the_pre_restore_set_labels_files_with_todays_customers() {
    let env = TestEnv::fleet(&["a", "b"]);
    let set = env.json(&["backup"]);
    env.ok(&["customer", "delete", "b", "--confirm", "b"]);
    env.ok(&["customer", "purge", "b", "--confirm", "b"]);
    let newer = env.customer("b2@example.com", "B", &["--slug", "b"]);
    let report = env.json(&[
        "restore",
        set["id"].as_str().unwrap(),
        "--everything",
        "--confirm",
        "everything",
    ]);
    let pre = env.json(&["backup", "show", report["pre_restore_set"].as_str().unwrap()]);
    let entry = pre["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["file"] == "tenants/b.db")
        .unwrap()
        .clone();
    assert_eq!(entry["customer_id"], newer["id"]);
}

#[test]
fn restore_flags_that_do_not_fit_the_scope_are_refused() {
    let env = TestEnv::fleet(&["a"]);
    let set = env.json(&["backup"]);
    let id = set["id"].as_str().unwrap();
    env.fails(
        &["restore", id, "--catalog", "--confirm", "catalog", "--into", "a"],
        2,
    );
    env.fails(
        &["restore", id, "--catalog", "--confirm", "catalog", "--if-missing"],
        2,
    );
}

#[test]
fn a_symlinked_tenant_is_backed_up_consistently_while_written() {
    // Tenants moved to a bigger disk by linking their folder (a link in place of the
    // file itself is refused, since it may point at another tenant's file).
    let env = TestEnv::fleet(&["busy"]);
    let tenants = env.home.join("tenants");
    let elsewhere = env.root.join("big-disk");
    std::fs::rename(&tenants, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &tenants).unwrap();
    backup_during_writes(&env, &tenants.join("busy.db"));
}

/// Backs up `busy` three times while another thread inserts rows one transaction at a
/// time, then checks every copy: whole, and holding a gapless prefix of the writes.
fn backup_during_writes(env: &TestEnv, db: &Path) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute_batch("CREATE TABLE ticks (n INTEGER PRIMARY KEY)")
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, db) = (stop.clone(), db.to_path_buf());
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                conn.execute("INSERT INTO ticks (n) VALUES (?1)", [n]).unwrap();
            }
            n
        })
    };
    // Let the writer get going before and during the backups.
    while rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT count(*) FROM ticks", [], |r| r.get::<_, i64>(0))
        .unwrap()
        < 50
    {
        std::thread::yield_now();
    }
    let sets: Vec<Value> = (0..3)
        .map(|_| env.json(&["backup", "--customer", "busy"]))
        .collect();
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    for set in sets {
        let copy = rusqlite::Connection::open(set_dir(env, &set).join("tenants/busy.db")).unwrap();
        let check: String = copy
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let (count, max): (i64, i64) = copy
            .query_row("SELECT count(*), coalesce(max(n), 0) FROM ticks", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(count, max, "the copy holds a prefix of the writes");
        assert!(count >= 50 && count <= written);
    }
}

#[test]
fn an_unreadable_catalog_is_kept_with_the_tenant_files_before_restoring_everything() {
    let env = TestEnv::fleet(&["a", "b"]);
    let set = env.json(&["backup"]);
    let id = set["id"].as_str().unwrap();
    add_user(&env, "a", "after@a.test");
    let live = env.home.join("catalog.db");
    rusqlite::Connection::open(&live)
        .unwrap()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    // A broken header: SQLite cannot open it at all.
    let mut garbage = std::fs::read(&live).unwrap();
    garbage[..100].fill(0x5A);
    std::fs::write(&live, &garbage).unwrap();

    let plan = env.json(&["restore", id, "--everything", "--dry-run"]);
    let planned: Vec<(&str, &str)> = plan["pre_restore"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["scope"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        planned,
        [
            ("catalog", "would-save"),
            ("tenant", "would-save"),
            ("tenant", "would-save")
        ],
        "{plan}"
    );

    let run = env.run(&["restore", id, "--everything", "--confirm", "everything", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("damaged"), "{}", run.stderr);
    let report = run.json();
    let pre = backups(&env).join(report["pre_restore_set"].as_str().unwrap());
    assert!(
        std::fs::read(pre.join("catalog.db")).unwrap() == garbage,
        "the broken catalog is kept"
    );
    assert_eq!(users(&pre.join("tenants/a.db")), 1, "so is a's newer data");
    let saved: Vec<&str> = report["pre_restore"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(saved, ["kept-damaged", "saved", "saved"], "{report}");
    assert_eq!(users(&env.home.join("tenants/a.db")), 0, "restored to the set");
    env.ok(&["doctor"]);
}

#[test]
fn an_emptied_tenant_file_is_left_out_not_backed_up_as_healthy() {
    let env = TestEnv::fleet(&["a", "b"]);
    let b = env.home.join("tenants/b.db");
    std::fs::write(&b, b"").unwrap();
    let run = env.run(&["backup", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    let set = run.json();
    let tenants: Vec<&str> = set["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["customer_slug"].as_str())
        .collect();
    assert_eq!(tenants, ["a"]);
    assert_eq!(set["skipped"][0]["customer"], "b");
    let reason = set["skipped"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("no tenant schema"), "{reason}");
}

#[test]
fn a_catalog_backed_up_before_an_upgrade_is_brought_forward_when_restored() {
    use sha2::{Digest, Sha256};
    let env = TestEnv::fleet(&["a"]);
    let set = env.json(&["backup", "--catalog"]);
    let dir = PathBuf::from(set["path"].as_str().unwrap());
    // Turn the set's catalog into one written before tenant placements (V4), and so
    // everything after them, existed.
    let old = dir.join("catalog.db");
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o600)).unwrap();
    let conn = rusqlite::Connection::open(&old).unwrap();
    conn.execute_batch(
        "ALTER TABLE customers DROP COLUMN migration_action;
         ALTER TABLE tenant_migrations DROP COLUMN down_checksum;
         ALTER TABLE customers DROP COLUMN engine;
         ALTER TABLE customers DROP COLUMN server;
         ALTER TABLE customers RENAME COLUMN location TO db_path;
         DROP TABLE operations;
         DROP TABLE tenant_check_stamps;
         DROP TABLE tenant_roles;
         DROP TABLE servers;
         DROP TABLE moved_sources;
         DELETE FROM refinery_schema_history WHERE version >= 4;",
    )
    .unwrap();
    drop(conn);
    let bytes = std::fs::read(&old).unwrap();
    let manifest_path = dir.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let entry = manifest["entries"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["scope"] == "catalog")
        .unwrap();
    entry["sha256"] = Value::from(format!("{:x}", Sha256::digest(&bytes)));
    entry["bytes"] = Value::from(bytes.len());
    entry["copy"] = Value::Null;
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();

    env.json(&[
        "restore",
        set["id"].as_str().unwrap(),
        "--catalog",
        "--confirm",
        "catalog",
    ]);
    let shown = env.json(&["customer", "show", "a"]);
    assert_eq!(
        shown["db_path"].as_str().unwrap(),
        env.home.join("tenants/a.db").to_str().unwrap()
    );
    assert_eq!(
        env.count("SELECT count(*) FROM customers WHERE engine = 'sqlite' AND server = 'local'"),
        1
    );
    env.ok(&["doctor"]);
}

/// Writes a user into the tenant and closes without a checkpoint, as an app's last
/// connection may: the row is then only in the WAL.
fn leave_a_user_in_the_wal(db: &Path, email: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .unwrap();
    conn.execute("INSERT INTO users (email, name) VALUES (?1, 'U')", [email])
        .unwrap();
    drop(conn);
    assert!(
        std::fs::metadata(db.with_extension("db-wal")).is_ok_and(|m| m.len() > 0),
        "the test needs the row in the WAL"
    );
}

/// A tenant nobody has open is read in exclusive locking mode, which keeps the WAL
/// index in memory: its WAL content must still be in the copy, a stale `-shm` must
/// not be believed, and the live tenant must read the same afterwards.
#[test]
fn a_tenant_nobody_has_open_is_backed_up_with_its_wal_and_a_stale_shm_ignored() {
    let env = TestEnv::fleet(&["a", "b"]);
    let a = env.home.join("tenants/a.db");
    let shm = a.with_extension("db-shm");
    add_user(&env, "a", "first@a.test");
    leave_a_user_in_the_wal(&a, "second@a.test");
    // An index of the WAL from before the second row: believing it would lose the row.
    let stale = std::fs::read(&shm).unwrap();
    leave_a_user_in_the_wal(&a, "third@a.test");
    std::fs::write(&shm, &stale).unwrap();
    // Without a -shm, one appearing would show the shared path was taken.
    let b = env.home.join("tenants/b.db");
    leave_a_user_in_the_wal(&b, "one@b.test");
    std::fs::remove_file(b.with_extension("db-shm")).unwrap();

    let set = env.json(&["backup"]);
    let dir = set_dir(&env, &set);
    assert_eq!(users(&dir.join("tenants/a.db")), 3);
    assert_eq!(users(&dir.join("tenants/b.db")), 1);
    assert!(
        !b.with_extension("db-shm").exists(),
        "b was read without shared memory"
    );
    assert_eq!(std::fs::read(&shm).unwrap(), stale, "a's -shm was not touched");
    env.ok(&["backup", "verify", "--all"]);
    // The live tenants read as before (the next opener rebuilds its index) and take writes.
    assert_eq!(users(&a), 3);
    add_user(&env, "a", "fourth@a.test");
    assert_eq!(users(&a), 4);
    assert_eq!(users(&b), 1);
}

/// A tenant another process holds open is read through the shared WAL index, as
/// before: the copy holds its WAL content and the holder goes on undisturbed.
#[test]
fn a_tenant_another_process_holds_open_is_backed_up_with_its_wal() {
    use std::io::{BufRead, Write};
    let env = TestEnv::fleet(&["a"]);
    let a = env.home.join("tenants/a.db");
    leave_a_user_in_the_wal(&a, "first@a.test");
    let mut holder = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3,sys\n\
             c=sqlite3.connect('{}', isolation_level=None)\n\
             c.execute('select count(*) from users').fetchall()\n\
             print('ready', flush=True)\n\
             for line in sys.stdin:\n\
             \x20   c.execute('insert into users (email, name) values (?, ?)', (line.strip(), 'U'))\n\
             \x20   print(c.execute('select count(*) from users').fetchone()[0], flush=True)\n",
            a.display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = holder.stdin.take().unwrap();
    let mut output = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    output.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    writeln!(input, "second@a.test").unwrap();
    line.clear();
    output.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "2");

    let set = env.json(&["backup"]);
    assert_eq!(users(&set_dir(&env, &set).join("tenants/a.db")), 2);
    writeln!(input, "third@a.test").unwrap();
    line.clear();
    output.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "3", "the holder still writes after the backup");
    drop(input);
    assert!(holder.wait().unwrap().success());
    assert_eq!(users(&a), 3);
    env.ok(&["backup", "verify", "--all"]);
}
