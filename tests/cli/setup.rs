//! init, migrate and status.

use crate::support::*;

#[test]
fn init_creates_a_private_home_and_is_idempotent() {
    let env = TestEnv::new();
    let first = env.json(&["init"]);
    assert_fields(
        &first,
        &[
            "home",
            "catalog",
            "created",
            "catalog_schema_version",
            "applied_migrations",
            "tenant_migrations_dir",
            "starter_migrations_installed",
        ],
    );
    assert_eq!(first["created"], true);
    assert_eq!(first["starter_migrations_installed"], 3);
    assert!(first["catalog_schema_version"].as_i64().unwrap() >= 1);
    assert_fields(
        &first["applied_migrations"][0],
        &["version", "name", "checksum", "status", "applied_at"],
    );
    assert_eq!(mode(&env.home), 0o700);
    assert_eq!(mode(&env.home.join("catalog.db")), 0o600);
    for dir in ["tenants", "trash", "tenant-migrations"] {
        assert_eq!(mode(&env.home.join(dir)), 0o700, "{dir}");
    }
    assert_eq!(
        env.names_in(&env.home.join("tenant-migrations")),
        [
            "V1__users.down.sql",
            "V1__users.sql",
            "V2__products.down.sql",
            "V2__products.sql",
            "V3__orders.down.sql",
            "V3__orders.sql",
            "mysql",
            "postgres"
        ]
    );
    // The same versions for PostgreSQL and MySQL tenants, in their own folders.
    for engine in ["postgres", "mysql"] {
        let folder = env.home.join("tenant-migrations").join(engine);
        assert_eq!(
            env.names_in(&folder),
            [
                "V1__users.down.sql",
                "V1__users.sql",
                "V2__products.down.sql",
                "V2__products.sql",
                "V3__orders.down.sql",
                "V3__orders.sql"
            ]
        );
        assert_eq!(mode(&folder), 0o700);
    }
    let journal: String = env
        .catalog()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");

    let audit_before = env.count("SELECT count(*) FROM audit_events");
    let second = env.json(&["init"]);
    assert_eq!(second["created"], false);
    assert_eq!(second["applied_migrations"], serde_json::json!([]));
    assert_eq!(second["starter_migrations_installed"], 0);
    assert_eq!(env.count("SELECT count(*) FROM audit_events"), audit_before);
}

#[test]
fn init_keeps_an_operators_migrations_and_honours_a_custom_folder() {
    let env = TestEnv::new();
    let custom = env.root.join("schema");
    std::fs::create_dir_all(&custom).unwrap();
    std::fs::write(custom.join("V1__only.sql"), "CREATE TABLE only_one (x);").unwrap();
    let report = env.json(&["init", "--tenant-migrations", custom.to_str().unwrap()]);
    assert_eq!(report["starter_migrations_installed"], 0);
    assert_eq!(report["tenant_migrations_dir"], custom.to_str().unwrap());
    assert_eq!(env.names_in(&custom), ["V1__only.sql"]);
    let customer = env.customer("a@example.com", "A", &[]);
    assert_eq!(customer["schema_version"], 1);
    let tenant = rusqlite::Connection::open(customer["db_path"].as_str().unwrap()).unwrap();
    let n: i64 = tenant
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'only_one'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn migrate_status_lists_migrations_with_checksums() {
    let env = TestEnv::initialised();
    let list = env.json(&["migrate", "--status"]);
    let rows = list.as_array().unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        assert_fields(row, &["version", "name", "checksum", "status", "applied_at"]);
        assert_eq!(row["status"], "applied");
        assert_eq!(row["checksum"].as_str().unwrap().len(), 16);
        assert_timestamp(&row["applied_at"]);
    }
    assert_eq!(env.json(&["migrate", "--dry-run"]), list);
    assert_eq!(
        env.json(&["migrate"]),
        list,
        "nothing pending: migrate changes nothing"
    );
}

#[test]
fn pending_catalog_migrations_block_ordinary_commands_until_migrate() {
    let env = TestEnv::new();
    // A catalog file with no migrations applied: everything is pending.
    std::fs::create_dir_all(&env.home).unwrap();
    rusqlite::Connection::open(env.home.join("catalog.db")).unwrap();
    let refused = env.fails(&["customer", "list"], 6);
    assert!(refused.stderr.contains("pending migration"), "{}", refused.stderr);
    assert!(refused.stderr.contains("tenantctl migrate"), "{}", refused.stderr);

    let status = env.json(&["status"]);
    assert!(!status["pending_migrations"].as_array().unwrap().is_empty());
    let dry = env.json(&["migrate", "--dry-run"]);
    assert!(dry.as_array().unwrap().iter().all(|m| m["status"] == "pending"));

    let applied = env.json(&["migrate"]);
    assert!(
        applied
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "applied")
    );
    assert_eq!(env.json(&["customer", "list"]), serde_json::json!([]));
}

#[test]
fn commands_refuse_an_uninitialised_home_but_status_reports_it() {
    let env = TestEnv::new();
    let run = env.fails(&["customer", "list"], 6);
    assert!(run.stderr.contains("tenantctl init"), "{}", run.stderr);
    assert!(!env.home.exists(), "a refused command must not create the home");
    let status = env.json(&["status"]);
    assert_eq!(status["initialized"], false);
    env.fails(&["migrate"], 6);
}

#[test]
fn status_reports_catalog_customers_and_tenants() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--plan", "pro"]);
    env.customer("b@example.com", "B", &[]);
    env.json(&["customer", "suspend", "b", "--reason", "test"]);
    let status = env.json(&["status"]);
    assert_fields(
        &status,
        &[
            "home",
            "initialized",
            "catalog",
            "backup_dir",
            "catalog_schema_version",
            "pending_migrations",
            "customers",
            "customers_by_plan",
            "sites",
            "tenant_migrations_dir",
            "newest_tenant_migration",
            "tenants_behind",
            "tenant_storage_bytes",
            "servers",
            "newest_backup",
            "newest_any_backup",
            "disk_free_bytes",
        ],
    );
    assert_eq!(status["initialized"], true);
    assert_eq!(
        status["customers"],
        serde_json::json!({"total": 2, "by_status": {"active": 1, "suspended": 1}})
    );
    assert_eq!(
        status["customers_by_plan"],
        serde_json::json!({"pro": 1, "starter": 1})
    );
    assert_eq!(status["newest_tenant_migration"], 3);
    assert_eq!(status["tenants_behind"], 0);
    assert!(status["tenant_storage_bytes"].as_u64().unwrap() > 0);
    assert_eq!(status["backup_dir"], env.home.join("backups").to_str().unwrap());
}

#[test]
fn a_catalog_that_is_not_sqlite_is_an_unexpected_error() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.home).unwrap();
    std::fs::write(env.home.join("catalog.db"), vec![b'x'; 4096]).unwrap();
    let run = env.fails(&["customer", "list"], 1);
    assert!(run.stderr.contains("not a database"), "{}", run.stderr);
}

#[test]
fn init_tightens_a_home_made_by_hand() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.home).unwrap();
    std::fs::set_permissions(&env.home, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.ok(&["init"]);
    assert_eq!(mode(&env.home), 0o700);
}

#[test]
fn a_catalog_from_a_newer_tenantctl_is_refused_everywhere() {
    let env = TestEnv::initialised();
    env.catalog()
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (999, 'future', '2026-01-01T00:00:00Z', '1')",
            [],
        )
        .unwrap();
    for args in [&["init"][..], &["migrate"], &["customer", "list"]] {
        let run = env.fails(args, 6);
        assert!(run.stderr.contains("newer tenantctl"), "{args:?}: {}", run.stderr);
    }
    let status = env.json(&["migrate", "--status"]);
    assert_eq!(status.as_array().unwrap().last().unwrap()["status"], "unknown");
}

#[test]
fn a_second_init_changes_nothing_and_refuses_another_migrations_folder() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "a"]);
    let other = env.root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let audit_before = env.count("SELECT count(*) FROM audit_events");

    let run = env.fails(&["init", "--tenant-migrations", other.to_str().unwrap()], 6);
    assert!(run.stderr.contains("config set tenant_migrations_dir"), "{run:?}");
    assert!(env.names_in(&other).is_empty(), "no starter set written there");
    assert_eq!(env.count("SELECT count(*) FROM settings"), 0);
    assert_eq!(env.count("SELECT count(*) FROM audit_events"), audit_before);

    // Naming the folder the home already uses is fine, and changes nothing either.
    let same = env.home.join("tenant-migrations");
    let report = env.json(&["init", "--tenant-migrations", same.to_str().unwrap()]);
    assert_eq!(report["created"], false);
    assert_eq!(report["starter_migrations_installed"], 0);
    assert_eq!(report["tenant_migrations_dir"], same.to_str().unwrap());
    assert_eq!(env.count("SELECT count(*) FROM settings"), 0);
}
