//! A hostile environment: processes killed mid-command, many writers at once, odd
//! input, a permissive umask, and secrets that must never be printed.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Checks what must hold after any crash: a sound catalog, every live customer's
/// database present and whole, and no tenant file without its customer (after
/// `doctor --fix`, which clears crash leftovers).
fn assert_consistent(env: &TestEnv, context: &str) {
    let catalog = env.catalog();
    let integrity: String = catalog
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok", "{context}");
    let violations: i64 = catalog
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(violations, 0, "{context}");
    let mut stmt = catalog
        .prepare("SELECT slug, location, status FROM customers")
        .unwrap();
    let rows: Vec<(String, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (slug, path, _) in &rows {
        let tenant = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("{context}: {slug}: {e}"));
        let check: String = tenant.query_row("PRAGMA quick_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok", "{context}: {slug}");
        let version: i64 = tenant
            .query_row(
                "SELECT coalesce(max(version), 0) FROM refinery_schema_history",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            version >= 3,
            "{context}: {slug} is at a whole version ({version})"
        );
    }
    let owned: Vec<String> = rows.iter().map(|(_, p, _)| p.clone()).collect();
    for name in env.names_in(&env.home.join("tenants")) {
        let path = env.home.join("tenants").join(&name).display().to_string();
        if name.ends_with(".db") && !name.starts_with('.') {
            assert!(owned.contains(&path), "{context}: {name} has no customer");
        }
    }
}

/// After a killed command: crash leftovers are what `doctor --fix` is for (it must
/// not fail hard), then the home must be consistent.
fn after_a_kill(env: &TestEnv, context: &str) {
    let fix = env.run(&["doctor", "--fix", "--json"]);
    assert!(fix.code == 0 || fix.code == 7, "{context}: {fix:?}");
    assert_consistent(env, context);
}

fn is_provision(name: &str) -> bool {
    name.starts_with(".provision-")
}

#[test]
fn killing_customer_create_leaves_no_half_customer() {
    let env = TestEnv::initialised();
    let tenants = env.home.join("tenants");
    land_kills(12, |n| {
        let slug = format!("k{n}");
        let email = format!("{slug}@example.com");
        let create = env.cmd(&["customer", "create", &email, "K", "--slug", &slug]);
        let landed = create.kill_on_new(&tenants, is_provision);
        after_a_kill(&env, &format!("customer create {slug}"));
        landed
    });
}

/// Six pro customers with five sites each, as a legacy folder named `name`.
fn legacy_folder(env: &TestEnv, name: &str) -> std::path::PathBuf {
    let dir = env.root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    // Five sites a customer: more than starter allows, so on pro.
    for i in 0..30 {
        let doc = serde_json::json!({"name": "S", "domain": format!("s{i}.{name}{}.test", i % 6),
            "customer": {"email": format!("o{}@{name}.test", i % 6), "company": format!("{name} {}", i % 6), "plan": "pro"}});
        std::fs::write(dir.join(format!("s{i}.json")), doc.to_string()).unwrap();
    }
    dir
}

#[test]
fn killing_import_purge_and_db_migrate_leaves_a_consistent_home() {
    let env = TestEnv::initialised();
    let tenants = env.home.join("tenants");
    // A fresh folder each time, so every import has customers to provision.
    land_kills(5, |n| {
        let dir = legacy_folder(&env, &format!("legacy{n}"));
        let import = env.cmd(&["import", dir.to_str().unwrap(), "-q"]);
        let landed = import.kill_on_new(&tenants, is_provision);
        after_a_kill(&env, &format!("import {}", dir.display()));
        landed
    });
    let dir = legacy_folder(&env, "corp");
    env.ok(&["import", dir.to_str().unwrap(), "-q"]);
    // A new migration each time, so every migrate has tenants to open and change.
    land_kills(5, |n| {
        let name = format!("V{}__step.sql", n + 4);
        let sql = format!("CREATE TABLE step{n} (x);");
        std::fs::write(env.home.join("tenant-migrations").join(name), sql).unwrap();
        let migrate = env.cmd(&["db", "migrate", "-q"]);
        let landed = migrate.kill_on_new(&tenants, |name| name.ends_with(".db-wal"));
        after_a_kill(&env, &format!("db migrate to V{}", n + 4));
        landed
    });
    env.ok(&["db", "migrate", "-q"]);
    assert!(
        env.json(&["db", "status", "--behind", "-q"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    land_kills(4, |n| {
        let slug = format!("gone{n}");
        env.customer(&format!("{slug}@example.com"), "G", &["--slug", &slug]);
        env.ok(&["customer", "delete", &slug, "--confirm", &slug]);
        let trashed = env.json(&["customer", "show", &slug])["db_path"]
            .as_str()
            .unwrap()
            .to_string();
        // Mid-purge: the catalog is write-locked by it; after the kill either its
        // transaction never committed or the trashed file it removes last is still there.
        let unfinished = || {
            env.count(&format!("SELECT count(*) FROM customers WHERE slug = '{slug}'")) == 1
                || std::path::Path::new(&trashed).exists()
        };
        let purge = env.cmd(&["customer", "purge", &slug, "--confirm", &slug, "-q"]);
        let landed = purge.kill_when(|| catalog_write_locked(&env), unfinished);
        after_a_kill(&env, &format!("customer purge {slug}"));
        landed
    });
}

/// Whether another process holds the catalog's write lock right now.
fn catalog_write_locked(env: &TestEnv) -> bool {
    let catalog = env.catalog();
    catalog.busy_timeout(Duration::ZERO).unwrap();
    match catalog.execute_batch("BEGIN IMMEDIATE; ROLLBACK;") {
        Ok(()) => false,
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DatabaseBusy => true,
        Err(e) => panic!("probing the catalog lock: {e}"),
    }
}

#[test]
fn many_writers_at_once_lose_nothing_and_never_see_a_lock_error() {
    let env = TestEnv::initialised();
    env.customer(
        "base@example.com",
        "Base",
        &["--slug", "base", "--plan", "enterprise"],
    );
    let deadline = Instant::now() + Duration::from_secs(8);
    let scripts = [
        // creators of customers and sites
        "i=0; while [ $(date +%s) -lt $END ]; do i=$((i+1)); \"$TENANTCTL\" customer create w$W-$i@example.com W --slug w$W-$i -q >/dev/null || exit 1; \
         \"$TENANTCTL\" site create w$W-$i S --domain s.w$W-$i.test -q >/dev/null || exit 1; echo $i > \"$OUT\"; done",
        // usage recorders
        "i=0; while [ $(date +%s) -lt $END ]; do i=$((i+1)); \"$TENANTCTL\" usage record base api_calls 1 -q >/dev/null || exit 1; echo $i > \"$OUT\"; done",
        // a backup loop
        "i=0; while [ $(date +%s) -lt $END ]; do i=$((i+1)); \"$TENANTCTL\" backup -q >/dev/null || exit 1; echo $i > \"$OUT\"; done",
        // a migration loop
        "i=0; while [ $(date +%s) -lt $END ]; do i=$((i+1)); \"$TENANTCTL\" db migrate -q >/dev/null || exit 1; echo $i > \"$OUT\"; done",
    ];
    let end = (std::time::SystemTime::now() + (deadline - Instant::now()))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut children = Vec::new();
    for (w, script) in scripts
        .iter()
        .enumerate()
        .chain(scripts.iter().enumerate().take(2).map(|(i, s)| (i + 10, s)))
    {
        let out = env.root.join(format!("count-{w}"));
        let child = env
            .shell(script)
            .env("END", end.to_string())
            .env("W", w.to_string())
            .env("OUT", &out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        children.push((w, out, child));
    }
    let mut created = 0;
    let mut recorded = 0;
    for (w, out, child) in children {
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "worker {w} failed: {stderr}");
        assert!(!stderr.contains("locked"), "{stderr}");
        let count: i64 = std::fs::read_to_string(&out)
            .map(|t| t.trim().parse().unwrap_or(0))
            .unwrap_or(0);
        match w % 10 {
            0 => created += count,
            1 => recorded += count,
            _ => {}
        }
    }
    assert_eq!(
        env.count("SELECT count(*) FROM customers WHERE slug LIKE 'w%'"),
        created
    );
    assert_eq!(env.count("SELECT count(*) FROM sites"), created);
    assert_eq!(
        env.count("SELECT coalesce(sum(amount), 0) FROM usage WHERE metric = 'api_calls'"),
        recorded
    );
    assert_consistent(&env, "after the writers");
    env.ok(&["backup", "verify", "--all"]);
}

#[test]
fn odd_input_gets_one_line_and_its_exit_code() {
    let env = TestEnv::initialised();
    let long = "x".repeat(100_000);
    for (args, code) in [
        (vec!["customer", "create", "a@example.com", long.as_str()], 2),
        (vec!["customer", "create", long.as_str(), "A"], 2),
        (vec!["customer", "show", long.as_str()], 3),
        (vec!["site", "show", long.as_str()], 3),
        (vec!["customer", "create", "a@example.com", "line\nbreak"], 2),
        (vec!["config", "set", "platform_domain", "exa\nmple.com"], 2),
        (vec!["audit", "--since", "\u{1b}[31m"], 2),
    ] {
        let run = env.run(&args);
        assert_eq!(run.code, code, "{:?}: {run:?}", &args[..args.len().min(3)]);
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
        assert!(
            run.stderr.len() < 1000,
            "errors stay short: {} bytes",
            run.stderr.len()
        );
    }
    // A home path that is not UTF-8 still works.
    let odd = env.root.join(OsStr::from_bytes(b"home-\xff"));
    let run = env.run_with(&["init", "--json"], |c| {
        c.env("TENANTCTL_HOME", &odd);
    });
    assert!(run.code == 0 || run.code == 2, "{run:?}");
}

#[test]
fn a_read_only_home_and_a_tenant_that_became_a_folder_fail_cleanly() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "acme"]);
    let tenant = env.home.join("tenants/acme.db");
    std::fs::remove_file(&tenant).unwrap();
    std::fs::create_dir(&tenant).unwrap();
    let run = env.run(&["db", "sql", "acme", "SELECT 1"]);
    assert!(run.code != 0 && run.stderr.lines().count() == 1, "{run:?}");
    let doctor = env.run(&["doctor", "--json"]);
    assert_eq!(doctor.code, 7);
    std::fs::remove_dir(&tenant).unwrap();

    let ro = TestEnv::new();
    std::fs::create_dir_all(&ro.home).unwrap();
    std::fs::set_permissions(&ro.home, std::fs::Permissions::from_mode(0o500)).unwrap();
    let run = ro.run(&["init"]);
    // Root ignores directory modes; anyone else gets a one-line error.
    if run.code != 0 {
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    }
    std::fs::set_permissions(&ro.home, std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn modes_stay_private_under_a_permissive_umask() {
    let env = TestEnv::new();
    let script = "umask 000; \"$TENANTCTL\" init -q >/dev/null && \"$TENANTCTL\" customer create a@example.com A --slug acme -q >/dev/null \
                  && \"$TENANTCTL\" backup -q >/dev/null && \"$TENANTCTL\" export \"$HOME_EXPORT\" -q >/dev/null";
    let export = env.root.join("export");
    let output = env.shell(script).env("HOME_EXPORT", &export).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut checked = 0;
    for root in [env.home.clone(), export] {
        let mut stack = vec![root];
        while let Some(path) = stack.pop() {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = mode(&path);
            if meta.is_dir() {
                assert_eq!(mode, 0o700, "{}", path.display());
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else {
                assert_eq!(mode, 0o600, "{}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked > 10);
}

#[test]
fn secrets_are_printed_once_and_never_traced_or_logged() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "acme"]);
    let created = env.run(&["key", "create", "acme", "--name", "ci", "--json", "-vv"]);
    let token = serde_json::from_str::<Value>(&created.stdout).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = token.rsplit('_').next().unwrap().to_string();
    assert!(!created.stderr.contains(&secret), "-vv traced the secret");
    let verified = env.run(&["key", "verify", &token, "-vv", "--json"]);
    assert_eq!(verified.code, 0);
    assert!(!verified.stderr.contains(&secret) && !verified.stdout.contains(&secret));
    let wrong = env.run(&["key", "verify", &format!("{}x", token), "-vv", "--json"]);
    assert_eq!(wrong.code, 3);
    assert!(!wrong.stderr.contains(&secret), "an error echoed the secret");
    for args in [
        &["key", "list", "-o", "csv"][..],
        &["audit", "-o", "ndjson"],
        &["stats", "--json"],
        &["customer", "show", "acme", "--json"],
    ] {
        assert!(!env.ok(args).stdout.contains(&secret), "{args:?}");
    }
    let audit: Vec<u8> = std::fs::read(env.home.join("catalog.db")).unwrap();
    assert!(!audit.windows(secret.len()).any(|w| w == secret.as_bytes()));
}

#[test]
fn no_path_escapes_the_home_whatever_the_input() {
    let env = TestEnv::initialised();
    for slug in ["../../etc", "..", "a/b", "/abs"] {
        env.fails(&["customer", "create", "x@example.com", "X", "--slug", slug], 2);
    }
    env.customer("a@example.com", "A", &["--slug", "a"]);
    env.fails(&["backup", "show", "../../etc"], 2);
    env.fails(&["restore", "../x", "--customer", "a"], 2);
    let evil = env.root.join("evil-set");
    std::fs::create_dir_all(evil.join("20990101T000000000000Z-0001")).unwrap();
    std::fs::write(
        evil.join("20990101T000000000000Z-0001/manifest.json"),
        serde_json::json!({"id": "20990101T000000000000Z-0001", "created_at": "2099-01-01T00:00:00Z", "finished_at": "2099-01-01T00:00:00Z",
            "label": null, "kind": "manual", "tool_version": "0", "catalog_schema_version": 2,
            "entries": [{"scope": "catalog", "customer_id": null, "customer_slug": null, "file": "../../../etc/passwd",
                "bytes": 1, "sha256": "00", "schema_version": 2}]})
        .to_string(),
    )
    .unwrap();
    let run = env.run(&[
        "--backup-dir",
        evil.to_str().unwrap(),
        "backup",
        "verify",
        "--all",
        "--json",
    ]);
    assert_eq!(run.code, 7, "{run:?}");
    let run = env.run(&[
        "--backup-dir",
        evil.to_str().unwrap(),
        "restore",
        "20990101T000000000000Z-0001",
        "--catalog",
        "--confirm",
        "catalog",
    ]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(env.home.join("catalog.db").is_file());
}

#[test]
fn no_command_changes_or_removes_audit_rows() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "acme"]);
    let before: Vec<Value> = env.json(&["audit", "--limit", "0"]).as_array().unwrap().clone();
    for args in [
        &["customer", "update", "acme", "--name", "B"][..],
        &["customer", "delete", "acme", "--confirm", "acme"],
        &["customer", "purge", "acme", "--confirm", "acme"],
        &["session", "prune"],
        &["backup"],
    ] {
        env.ok(args);
    }
    let after: Vec<Value> = env.json(&["audit", "--limit", "0"]).as_array().unwrap().clone();
    for event in &before {
        assert!(
            after.contains(event),
            "audit event {} changed or vanished",
            event["id"]
        );
    }
    let err = env
        .catalog()
        .execute("UPDATE audit_events SET details = '{}'", [])
        .unwrap_err();
    assert!(err.to_string().contains("cannot be changed"));
}

fn running_as_root() -> bool {
    let id = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&id.stdout).trim() == "0"
}

/// The one error line, which must name the catalog and end in `cause`'s hint.
fn assert_unusable_catalog(env: &TestEnv, run: &Run, cause: &str) {
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    let catalog = env.home.join("catalog.db");
    let expected = format!("error: cannot use the catalog {}: ", catalog.display());
    assert!(run.stderr.starts_with(&expected), "{run:?}");
    assert!(run.stderr.contains(cause), "{cause} in {run:?}");
    assert!(!run.stderr.contains("unable to open database file"), "{run:?}");
}

#[test]
fn a_catalog_whose_wal_cannot_be_opened_is_named_with_the_cause() {
    let env = TestEnv::initialised();
    let wal = env.home.join("catalog.db-wal");
    let _ = std::fs::remove_file(&wal);
    std::fs::create_dir(&wal).unwrap();
    let run = env.run(&["customer", "list"]);
    assert_unusable_catalog(&env, &run, &format!("{} is not a regular file", wal.display()));
    std::fs::remove_dir(&wal).unwrap();
    env.ok(&["customer", "list"]);
}

#[test]
fn a_catalog_on_a_read_only_file_system_is_named_with_the_cause() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "acme"]);
    // A private mount namespace, so the read-only bind mount is seen by this shell only.
    let script = r#"mount --bind -o ro "$HOME_DIR" "$HOME_DIR" || exit 99
"$TENANTCTL" customer list; echo "exit $?" >&2
exec "$TENANTCTL" config set platform_domain example.com"#;
    let output = env
        .shell(r#"exec unshare -m sh -c "$INNER""#)
        .env("INNER", script)
        .env("HOME_DIR", &env.home)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_ne!(
        output.status.code(),
        Some(99),
        "this test needs 'unshare -m' and bind mounts (root): {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert_eq!(lines[1], "exit 1", "{stderr}");
    let catalog = env.home.join("catalog.db");
    for line in [lines[0], lines[2]] {
        assert!(
            line.starts_with(&format!("error: cannot use the catalog {}: ", catalog.display()))
                && line.contains("is on a read-only file system"),
            "{stderr}"
        );
    }
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    env.ok(&["customer", "show", "acme"]);
}

#[test]
fn a_catalog_this_user_may_not_open_is_named_with_the_cause() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::initialised();
    let run = if running_as_root() {
        // Root passes every permission check: run as nobody, who may not enter the
        // root-owned private home.
        let output = env
            .shell(r#"exec setpriv --reuid=65534 --regid=65534 --clear-groups "$TENANTCTL" customer list"#)
            .output()
            .unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    } else {
        std::fs::set_permissions(&env.home, std::fs::Permissions::from_mode(0o000)).unwrap();
        let run = env.run(&["customer", "list"]);
        std::fs::set_permissions(&env.home, std::fs::Permissions::from_mode(0o700)).unwrap();
        run
    };
    assert_unusable_catalog(&env, &run, "permission denied on ");
}

#[test]
fn a_damaged_catalog_is_named_with_the_way_back() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "acme"]);
    env.json(&["backup"]);
    let catalog = env.home.join("catalog.db");
    let good = std::fs::read(&catalog).unwrap();
    let remove_side_files = || {
        for side in ["catalog.db-wal", "catalog.db-shm"] {
            let _ = std::fs::remove_file(env.home.join(side));
        }
    };
    // A file that is no database at all, and one whose schema page is overwritten
    // behind an intact header.
    let mut malformed = good.clone();
    malformed[100..4096].fill(0xff);
    for (bytes, reason) in [
        (vec![0x5a; 8192], "file is not a database"),
        (malformed, "database disk image is malformed"),
    ] {
        std::fs::write(&catalog, &bytes).unwrap();
        remove_side_files();
        for args in [&["customer", "list"][..], &["init"][..]] {
            let run = env.fails(args, 1);
            let expected = format!("error: the catalog {} is damaged: {reason} (", catalog.display());
            assert!(run.stderr.starts_with(&expected), "{run:?}");
            assert!(
                run.stderr.contains("tenantctl doctor")
                    && run
                        .stderr
                        .contains("tenantctl restore --at TIME --catalog --confirm catalog"),
                "{run:?}"
            );
        }
        let doctor = env.run(&["doctor", "--json"]);
        assert_eq!(doctor.code, 7, "{doctor:?}");
        assert!(doctor.stdout.contains("is damaged"), "{doctor:?}");
    }
    // The hint's way back works on the damaged catalog.
    env.ok_warning(
        &[
            "restore",
            "--at",
            "2999-01-01",
            "--catalog",
            "--confirm",
            "catalog",
        ],
        "it is kept as it was, marked damaged",
    );
    assert_eq!(env.json(&["customer", "show", "acme"])["slug"], "acme");
}
