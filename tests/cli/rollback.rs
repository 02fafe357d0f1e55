//! `db rollback`: down scripts beside the migrations, run newest first in one
//! transaction per tenant; refused before anything runs when a tenant's way down lacks
//! one; a failing tenant left at its old version; a killed run finished by the next;
//! edited down scripts as drift; and migrate → rollback → migrate leaving the schema
//! exactly as it was. Tenants are read directly from their files and servers.

use std::path::PathBuf;

use serde_json::Value;

use crate::pg_server::PgServer;
use crate::support::TestEnv;

fn db_path(env: &TestEnv, slug: &str) -> PathBuf {
    PathBuf::from(env.json(&["customer", "show", slug])["db_path"].as_str().unwrap())
}

/// The tenant file's own newest applied version.
fn file_version(env: &TestEnv, slug: &str) -> i64 {
    let conn = rusqlite::Connection::open(db_path(env, slug)).unwrap();
    conn.query_row(
        "SELECT coalesce(max(version), 0) FROM refinery_schema_history",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// Every table, index and trigger of the tenant file as SQLite keeps their text.
fn sqlite_schema(env: &TestEnv, slug: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(db_path(env, slug)).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master ORDER BY type, name",
        )
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn has_table(env: &TestEnv, slug: &str, table: &str) -> bool {
    sqlite_schema(env, slug)
        .iter()
        .any(|line| line.starts_with(&format!("table {table}:")))
}

fn catalog_version(env: &TestEnv, slug: &str) -> i64 {
    env.catalog()
        .query_row(
            "SELECT schema_version FROM customers WHERE slug = ?1",
            [slug],
            |r| r.get(0),
        )
        .unwrap()
}

fn by_customer(report: &Value, slug: &str) -> Value {
    report
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["customer"] == slug)
        .cloned()
        .unwrap_or_else(|| panic!("{slug} not in {report}"))
}

fn migrations_dir(env: &TestEnv) -> PathBuf {
    env.home.join("tenant-migrations")
}

#[test]
fn one_tenant_then_all_roll_back_and_migrate_brings_the_same_schema_back() {
    let env = TestEnv::fleet(&["a", "b", "c"]);
    let original = sqlite_schema(&env, "a");

    let dry = env.json(&["db", "rollback", "a", "--to", "1", "--dry-run"]);
    assert_eq!(dry.as_array().unwrap().len(), 1, "only the tenant named: {dry}");
    assert_eq!(dry[0]["status"], "pending");
    assert_eq!(dry[0]["pending"], serde_json::json!([3, 2]));
    assert_eq!(file_version(&env, "a"), 3, "a dry run changes nothing");

    let one = env.json(&["db", "rollback", "a", "--to", "1"]);
    assert_eq!(
        (&one[0]["from"], &one[0]["to"], &one[0]["status"]),
        (&Value::from(3), &Value::from(1), &Value::from("rolled_back")),
        "{one}"
    );
    assert_eq!(file_version(&env, "a"), 1);
    assert!(has_table(&env, "a", "users"));
    for gone in ["products", "orders", "order_items"] {
        assert!(!has_table(&env, "a", gone), "{gone} is dropped");
    }
    assert!(has_table(&env, "b", "orders"), "others are untouched");
    assert_eq!(catalog_version(&env, "a"), 1);
    let ledger: i64 = env.count("SELECT count(*) FROM tenant_migrations WHERE customer_id = 1");
    assert_eq!(ledger, 1, "the ledger loses the undone versions");

    // Behind again: db status says so and db migrate has work to do.
    let behind = env.run(&["db", "status", "--behind", "--json"]).json();
    assert_eq!(behind.as_array().unwrap().len(), 1);
    assert_eq!(
        (&behind[0]["customer"], &behind[0]["pending"]),
        (&Value::from("a"), &Value::from(2))
    );

    // The whole fleet to V2: a is below already and is not opened.
    let all = env.json(&["db", "rollback", "--all", "--to", "2"]);
    assert_eq!(by_customer(&all, "a")["status"], "current");
    for slug in ["b", "c"] {
        let line = by_customer(&all, slug);
        assert_eq!(
            (&line["status"], &line["to"]),
            (&Value::from("rolled_back"), &Value::from(2))
        );
        assert_eq!(file_version(&env, slug), 2);
        assert!(!has_table(&env, slug, "orders") && has_table(&env, slug, "products"));
    }
    let audited = env.json(&["audit", "--action", "db.rollback"]);
    assert_eq!(audited.as_array().unwrap().len(), 3, "{audited}");

    let forward = env.json(&["db", "migrate"]);
    assert!(
        forward.as_array().unwrap().iter().all(|l| l["to"] == 3),
        "{forward}"
    );
    for slug in ["a", "b", "c"] {
        assert_eq!(sqlite_schema(&env, slug), original, "{slug} is as it was");
    }
    // New customers are made at the newest version, as before the rollback.
    let fresh = env.customer("d@example.com", "d", &["--slug", "d"]);
    assert_eq!(fresh["schema_version"], 3, "{fresh}");
}

#[test]
fn a_bad_target_or_a_missing_down_script_is_refused_with_nothing_changed() {
    let env = TestEnv::fleet(&["a", "b"]);
    let before: Vec<_> = ["a", "b"].iter().map(|s| sqlite_schema(&env, s)).collect();
    env.fails(&["db", "rollback", "--to", "7"], 2);
    env.fails(&["db", "rollback", "--to", "3"], 2);
    let unconfirmed = env.fails(&["db", "rollback", "--to", "0"], 6);
    assert!(
        unconfirmed.stderr.contains("--confirm all-data"),
        "{unconfirmed:?}"
    );
    env.fails(&["db", "rollback", "--to", "0", "--confirm", "a"], 6);

    std::fs::remove_file(migrations_dir(&env).join("V2__products.down.sql")).unwrap();
    let missing = env.fails(&["db", "rollback", "--all", "--to", "1"], 9);
    assert!(
        missing.stderr.contains("V2__products") && missing.stderr.contains("V2__products.down.sql"),
        "{missing:?}"
    );
    assert!(missing.stdout.is_empty(), "{missing:?}");
    let after: Vec<_> = ["a", "b"].iter().map(|s| sqlite_schema(&env, s)).collect();
    assert_eq!(before, after, "no tenant was touched");
    assert_eq!((catalog_version(&env, "a"), catalog_version(&env, "b")), (3, 3));
    // Down to V2 needs only V3's down script, which is there.
    env.json(&["db", "rollback", "--all", "--to", "2"]);
    assert_eq!(file_version(&env, "b"), 2);

    // --to 0 with the confirmation empties the tenant of every table made.
    std::fs::write(
        migrations_dir(&env).join("V2__products.down.sql"),
        "DROP TABLE products;\n",
    )
    .unwrap();
    let emptied = env.json(&["db", "rollback", "a", "--to", "0", "--confirm", "all-data"]);
    assert_eq!(
        (&emptied[0]["status"], &emptied[0]["to"]),
        (&Value::from("rolled_back"), &Value::from(0))
    );
    assert!(!has_table(&env, "a", "users") && !has_table(&env, "a", "products"));
    assert_eq!(file_version(&env, "a"), 0);
}

#[test]
fn a_down_script_that_fails_leaves_its_tenant_at_the_old_version_and_the_rest_follow_the_rules() {
    let env = TestEnv::fleet(&["a", "b", "c"]);
    let dir = migrations_dir(&env);
    std::fs::write(
        dir.join("V4__notes.sql"),
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
    )
    .unwrap();
    // Fails in a tenant that has a user named keep@example.com, after dropping notes.
    std::fs::write(
        dir.join("V4__notes.down.sql"),
        "DROP TABLE notes;\n\
         CREATE TABLE rollback_guard (n INTEGER CHECK (n = 0));\n\
         INSERT INTO rollback_guard SELECT count(*) FROM users WHERE email = 'keep@example.com';\n\
         DROP TABLE rollback_guard;\n",
    )
    .unwrap();
    for file in ["V4__notes.sql", "V4__notes.down.sql"] {
        std::fs::copy(dir.join(file), dir.join("postgres").join(file)).unwrap();
        std::fs::copy(dir.join(file), dir.join("mysql").join(file)).unwrap();
    }
    env.json(&["db", "migrate"]);
    env.ok(&[
        "db",
        "sql",
        "b",
        "INSERT INTO users (email, name) VALUES ('keep@example.com', 'Keep')",
        "--write",
    ]);

    // Without --continue-on-error nothing new starts after b fails.
    let stopped = env.run(&["db", "rollback", "--all", "--to", "3", "--jobs", "1", "--json"]);
    assert_eq!(stopped.code, 8, "{stopped:?}");
    let report: Value = serde_json::from_str(&stopped.stdout).unwrap();
    assert_eq!(by_customer(&report, "a")["status"], "rolled_back");
    let failed = by_customer(&report, "b");
    assert_eq!(
        (&failed["status"], &failed["to"]),
        (&Value::from("failed"), &Value::from(4))
    );
    assert!(
        failed["error"].as_str().unwrap().contains("V4__notes.down.sql"),
        "{failed}"
    );
    assert_eq!(by_customer(&report, "c")["status"], "skipped");
    assert!(stopped.stderr.contains("down script"), "{stopped:?}");
    // b is exactly where it was: notes (dropped first, in the same transaction) is back.
    assert_eq!(file_version(&env, "b"), 4);
    assert!(has_table(&env, "b", "notes") && !has_table(&env, "b", "rollback_guard"));
    let status = env.run(&["db", "status", "b", "--json"]).json();
    assert_eq!(status[0]["migration_status"], "failed");
    assert_eq!(status[0]["schema_version"], 4);

    let goes_on = env.run(&[
        "db",
        "rollback",
        "--all",
        "--to",
        "3",
        "--continue-on-error",
        "--json",
    ]);
    assert_eq!(goes_on.code, 8, "{goes_on:?}");
    let report: Value = serde_json::from_str(&goes_on.stdout).unwrap();
    assert_eq!(by_customer(&report, "a")["status"], "current");
    assert_eq!(by_customer(&report, "b")["status"], "failed");
    assert_eq!(by_customer(&report, "c")["status"], "rolled_back");
    assert_eq!((file_version(&env, "a"), file_version(&env, "c")), (3, 3));
}

#[test]
fn a_killed_rollback_leaves_each_tenant_whole_and_the_next_run_finishes() {
    let env = TestEnv::fleet(&["a", "b", "c"]);
    env.cmd(&["db", "rollback", "--all", "--to", "1", "--jobs", "1"])
        .killed_at_step("rollback:before-commit");
    for slug in ["a", "b", "c"] {
        let version = file_version(&env, slug);
        assert_eq!(version, 3, "{slug}: the uncommitted rollback is gone");
        assert!(has_table(&env, slug, "orders"));
    }
    // Killed after the first tenant committed, before the catalog heard of it.
    env.cmd(&["db", "rollback", "--all", "--to", "1", "--jobs", "1"])
        .killed_at_step("rollback:committed");
    let versions: Vec<i64> = ["a", "b", "c"].iter().map(|s| file_version(&env, s)).collect();
    assert_eq!(versions, [1, 3, 3]);
    assert!(!has_table(&env, "a", "products") && has_table(&env, "b", "orders"));
    assert_eq!(catalog_version(&env, "a"), 3, "the catalog never heard");
    let report = env.json(&["db", "rollback", "--all", "--to", "1"]);
    for slug in ["a", "b", "c"] {
        assert_eq!(by_customer(&report, slug)["to"], 1, "{report}");
        assert_eq!(file_version(&env, slug), 1);
        assert_eq!(catalog_version(&env, slug), 1, "the catalog follows the files");
    }
    let doctor = env.run(&["doctor", "--json"]);
    assert_eq!(doctor.code, 0, "{doctor:?}");
}

#[test]
fn a_down_script_edited_after_its_migration_is_drift_until_accepted() {
    let env = TestEnv::fleet(&["a"]);
    // A migrate run records the down scripts as they are.
    env.json(&["db", "migrate"]);
    let down = migrations_dir(&env).join("V3__orders.down.sql");
    let text = std::fs::read_to_string(&down).unwrap();
    std::fs::write(&down, format!("{text}-- edited\n")).unwrap();

    let doctor = env.run(&["doctor", "--json"]);
    assert_eq!(doctor.code, 7, "{doctor:?}");
    assert!(
        doctor.stdout.contains("tenant.drift") && doctor.stdout.contains("V3__orders.down.sql"),
        "{doctor:?}"
    );
    let refused = env.run(&["db", "rollback", "a", "--to", "2", "--json"]);
    assert_eq!(refused.code, 8, "{refused:?}");
    let report: Value = serde_json::from_str(&refused.stdout).unwrap();
    assert_eq!(report[0]["status"], "drift");
    assert_eq!(file_version(&env, "a"), 3, "nothing ran");

    let fixed = env.run(&["doctor", "--fix", "--json"]);
    assert!(
        fixed.stdout.contains("accepted the down script of V3"),
        "{fixed:?}"
    );
    env.ok(&["doctor"]);
    let report = env.json(&["db", "rollback", "a", "--to", "2"]);
    assert_eq!(report[0]["status"], "rolled_back");
}

#[test]
fn a_pulled_release_rolled_back_then_removed_makes_the_older_version_the_newest() {
    let env = TestEnv::fleet(&["a"]);
    env.json(&["db", "rollback", "--all", "--to", "2"]);
    for engine_dir in ["", "postgres", "mysql"] {
        let dir = migrations_dir(&env).join(engine_dir);
        std::fs::remove_file(dir.join("V3__orders.sql")).unwrap();
        std::fs::remove_file(dir.join("V3__orders.down.sql")).unwrap();
    }
    let status = env.run(&["db", "status", "--json"]).json();
    assert_eq!(
        (&status[0]["schema_version"], &status[0]["pending"]),
        (&Value::from(2), &Value::from(0))
    );
    // The template follows the files: a new customer starts at V2.
    let fresh = env.customer("n@example.com", "n", &["--slug", "n"]);
    assert_eq!(fresh["schema_version"], 2, "{fresh}");
    assert!(!has_table(&env, "n", "orders"));
    env.ok(&["doctor"]);
}

#[test]
fn a_rollback_waits_for_a_running_migrate_then_refuses() {
    let env = TestEnv::fleet(&["a"]);
    let _held = env.hold_home_lock();
    env.fails(&["db", "rollback", "--to", "1", "--lock-timeout", "1s"], 6);
    assert_eq!(file_version(&env, "a"), 3);
    // A dry run takes no lock.
    env.json(&["db", "rollback", "--to", "1", "--dry-run", "--lock-timeout", "1s"]);
}

/// What a PostgreSQL tenant's schema is, from the catalogs: columns with their types,
/// defaults and nullability, constraints and indexes.
fn pg_schema(server: &PgServer, database: &str) -> String {
    server.psql(
        database,
        "SELECT string_agg(line, E'\\n' ORDER BY line) FROM (
           SELECT format('col %s.%s %s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                         a.attnotnull, a.attidentity) AS line
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind = 'r'
           UNION ALL
           SELECT format('con %s %s', conname, pg_get_constraintdef(oid)) FROM pg_constraint
            WHERE connamespace = 'public'::regnamespace
           UNION ALL
           SELECT format('idx %s', indexdef) FROM pg_indexes WHERE schemaname = 'public'
         ) lines",
    )
}

#[test]
fn a_fleet_over_sqlite_and_postgresql_rolls_back_in_one_command_and_comes_back_equal() {
    let server = PgServer::start();
    let env = TestEnv::initialised();
    let admin = server.admin_login();
    env.json(&["server", "add", "pg", "--url", &server.url(&admin, "postgres")]);
    for (slug, on) in [("l1", "local"), ("p1", "pg"), ("p2", "pg")] {
        env.customer(
            &format!("{slug}@example.com"),
            slug,
            &["--slug", slug, "--server", on],
        );
    }
    let original = pg_schema(&server, "tenant_p1");
    let local_original = sqlite_schema(&env, "l1");

    // Killed before its commit, a server tenant's transaction is rolled back.
    env.cmd(&["db", "rollback", "p1", "--to", "1"])
        .killed_at_step("rollback:before-commit");
    assert_eq!(
        server.psql("tenant_p1", "SELECT max(version) FROM refinery_schema_history"),
        "3"
    );
    assert_eq!(pg_schema(&server, "tenant_p1"), original);

    let report = env.json(&["db", "rollback", "--all", "--to", "1"]);
    for slug in ["l1", "p1", "p2"] {
        let line = by_customer(&report, slug);
        assert_eq!(
            (&line["status"], &line["to"]),
            (&Value::from("rolled_back"), &Value::from(1)),
            "{report}"
        );
    }
    for database in ["tenant_p1", "tenant_p2"] {
        assert_eq!(
            server.psql(
                database,
                "SELECT string_agg(version::text, ',') FROM refinery_schema_history"
            ),
            "1"
        );
        assert_eq!(
            server.psql(database, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('orders', 'products')"),
            "0"
        );
        // Still the tenant's own: its role owns what is left.
        assert_eq!(
            server.psql(
                database,
                "SELECT tableowner FROM pg_tables WHERE tablename = 'users'"
            ),
            database
        );
    }
    let status = env.run(&["db", "status", "--behind", "--json"]).json();
    assert_eq!(status.as_array().unwrap().len(), 3);

    env.json(&["db", "migrate"]);
    assert_eq!(pg_schema(&server, "tenant_p1"), original);
    assert_eq!(pg_schema(&server, "tenant_p2"), original);
    assert_eq!(sqlite_schema(&env, "l1"), local_original);
}

#[test]
fn a_down_script_without_its_migration_stops_migrate_and_rollback_before_anything_runs() {
    let env = TestEnv::fleet(&["a"]);
    let dir = migrations_dir(&env);
    std::fs::write(
        dir.join("V4__notes.sql"),
        "CREATE TABLE notes (id INTEGER PRIMARY KEY);",
    )
    .unwrap();
    std::fs::write(dir.join("V4__note.down.sql"), "DROP TABLE notes;").unwrap();
    let migrate = env.fails(&["db", "migrate"], 9);
    assert!(migrate.stderr.contains("V4__note.down.sql"), "{migrate:?}");
    assert_eq!(file_version(&env, "a"), 3, "nothing ran");
    env.fails(&["db", "rollback", "--to", "1"], 9);
    assert_eq!(file_version(&env, "a"), 3);
}
