//! db migrate, db status, db sql, db path, resolve, doctor and template provisioning.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::*;

const RESULT_FIELDS: &[&str] = &[
    "customer",
    "customer_id",
    "from",
    "to",
    "status",
    "pending",
    "error",
    "ms",
];

fn add_migration(env: &TestEnv, name: &str, sql: &str) {
    std::fs::write(env.home.join("tenant-migrations").join(name), sql).unwrap();
}

fn tenant_db(env: &TestEnv, slug: &str) -> rusqlite::Connection {
    rusqlite::Connection::open(env.home.join(format!("tenants/{slug}.db"))).unwrap()
}

fn has_table(env: &TestEnv, slug: &str, table: &str) -> bool {
    tenant_db(env, slug)
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = ?1",
            [table],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        == 1
}

fn statuses(results: &Value) -> Vec<(String, String)> {
    results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["customer"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(customer: &str, status: &str) -> (String, String) {
    (customer.to_string(), status.to_string())
}

#[test]
fn migrate_applies_new_migrations_everywhere_and_records_them() {
    let env = TestEnv::fleet(&["a", "b", "c"]);
    add_migration(
        &env,
        "V4__notes.sql",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
    );
    let dry = env.json(&["db", "migrate", "--dry-run"]);
    assert!(
        dry.as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "pending" && r["pending"] == json!([4]))
    );
    assert!(!has_table(&env, "a", "notes"), "a dry run changes nothing");

    let results = env.json(&["db", "migrate"]);
    for result in results.as_array().unwrap() {
        assert_fields(result, RESULT_FIELDS);
        assert_eq!(
            (result["from"].as_i64(), result["to"].as_i64()),
            (Some(3), Some(4))
        );
        assert_eq!(result["status"], "migrated");
    }
    for slug in ["a", "b", "c"] {
        assert!(has_table(&env, slug, "notes"));
    }
    assert_eq!(
        env.count("SELECT count(*) FROM customers WHERE schema_version = 4 AND migrated_at IS NOT NULL"),
        3
    );
    assert_eq!(
        env.count("SELECT count(*) FROM tenant_migrations WHERE version = 4"),
        3
    );
    assert_eq!(env.json(&["customer", "show", "a"])["schema_version"], 4);

    let again = env.json(&["db", "migrate", "--all"]);
    assert_eq!(
        statuses(&again),
        [pair("a", "current"), pair("b", "current"), pair("c", "current")]
    );
}

#[test]
fn current_tenants_are_skipped_from_the_ledger_without_opening_their_files() {
    let env = TestEnv::fleet(&["a", "b"]);
    std::fs::write(env.home.join("tenants/b.db"), b"garbage that would fail any open").unwrap();
    let results = env.json(&["db", "migrate"]);
    assert_eq!(statuses(&results), [pair("a", "current"), pair("b", "current")]);
}

#[test]
fn a_failing_tenant_stays_at_its_old_version() {
    let env = TestEnv::fleet(&["a", "b", "c"]);
    // Tenant b already has user 1, so V4's insert fails there halfway through.
    env.ok(&[
        "db",
        "sql",
        "b",
        "INSERT INTO users (id, email, name) VALUES (1, 'x@b.test', 'X')",
        "--write",
    ]);
    add_migration(
        &env,
        "V4__seed.sql",
        "CREATE TABLE seeded (x);\nINSERT INTO users (id, email, name) VALUES (1, 'seed@example.com', 'Seed');",
    );
    let run = env.run(&["db", "migrate", "--jobs", "1", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    assert!(run.stderr.contains("failed"), "{}", run.stderr);
    let results = run.json();
    assert_eq!(
        statuses(&results),
        [pair("a", "migrated"), pair("b", "failed"), pair("c", "skipped")]
    );
    assert!(
        results[1]["error"].as_str().unwrap().contains("UNIQUE"),
        "{}",
        results[1]
    );
    assert_eq!(
        results[2]["pending"],
        json!([4]),
        "a skipped tenant still lacks V4"
    );
    assert!(!has_table(&env, "b", "seeded"), "b rolled back to V3");
    assert!(
        !has_table(&env, "c", "seeded"),
        "no new tenant after the first failure"
    );
    let b = env.json(&["db", "status", "b", "-q"]);
    assert_eq!(b[0]["schema_version"], 3);
    assert_eq!(b[0]["migration_status"], "failed");
    assert!(b[0]["last_error"].as_str().unwrap().contains("UNIQUE"));

    let run = env.run(&["db", "migrate", "--continue-on-error", "--json"]);
    assert_eq!(run.code, 8);
    assert_eq!(
        statuses(&run.json()),
        [pair("a", "current"), pair("b", "failed"), pair("c", "migrated")]
    );
    assert_eq!(
        env.json(&["db", "status", "--failed", "-q"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    env.ok(&["db", "sql", "b", "DELETE FROM users WHERE id = 1", "--write"]);
    assert_eq!(
        statuses(&env.json(&["db", "migrate", "b"])),
        [pair("b", "migrated")]
    );
    assert!(
        env.json(&["db", "status", "--failed", "-q"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_canary_failure_stops_the_rollout() {
    let env = TestEnv::fleet(&["a", "b", "c", "d"]);
    env.ok(&[
        "db",
        "sql",
        "a",
        "INSERT INTO users (id, email, name) VALUES (1, 'x@a.test', 'X')",
        "--write",
    ]);
    add_migration(
        &env,
        "V4__seed.sql",
        "INSERT INTO users (id, email, name) VALUES (1, 'seed@example.com', 'S');",
    );
    let run = env.run(&["db", "migrate", "--canary", "2", "--continue-on-error", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    assert_eq!(
        statuses(&run.json()),
        [
            pair("a", "failed"),
            pair("b", "migrated"),
            pair("c", "skipped"),
            pair("d", "skipped")
        ]
    );
    env.ok(&["db", "sql", "a", "DELETE FROM users WHERE id = 1", "--write"]);
    let run = env.json(&["db", "migrate", "--canary", "1"]);
    assert_eq!(
        statuses(&run),
        [
            pair("a", "migrated"),
            pair("b", "current"),
            pair("c", "migrated"),
            pair("d", "migrated")
        ]
    );
}

#[test]
fn target_suspended_deleted_and_named_tenants() {
    let env = TestEnv::fleet(&["a", "b", "c"]);
    add_migration(&env, "V4__four.sql", "CREATE TABLE four (x);");
    add_migration(&env, "V5__five.sql", "CREATE TABLE five (x);");
    env.ok(&["customer", "suspend", "b", "--reason", "r"]);
    env.ok(&["customer", "delete", "c", "--confirm", "c"]);
    let results = env.json(&["db", "migrate", "--target", "4"]);
    assert_eq!(
        statuses(&results),
        [pair("a", "migrated"), pair("b", "migrated")],
        "suspended yes, deleted no"
    );
    assert_eq!(results[0]["to"], 4);
    assert!(has_table(&env, "b", "four") && !has_table(&env, "b", "five"));
    assert_eq!(
        statuses(&env.json(&["db", "migrate", "a"])),
        [pair("a", "migrated")]
    );
    assert!(has_table(&env, "a", "five") && !has_table(&env, "b", "five"));
    env.fails(&["db", "migrate", "c"], 6);
    env.fails(&["db", "migrate", "ghost"], 3);
    let beyond = env.fails(&["db", "migrate", "--target", "99"], 2);
    assert!(beyond.stderr.contains("newest is V5"), "{}", beyond.stderr);
    env.fails(&["db", "migrate", "--target", "6", "--dry-run"], 2);
    assert_eq!(
        env.json(&["db", "migrate", "--target", "5"])[0]["status"],
        "current"
    );
}

#[test]
fn migrate_works_beside_an_application_holding_its_database_open() {
    let env = TestEnv::fleet(&["open", "closed"]);
    // The application's connection: reading, and open throughout the migration.
    let app = tenant_db(&env, "open");
    app.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))
        .unwrap();
    add_migration(
        &env,
        "V4__notes.sql",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
    );
    let results = env.json(&["db", "migrate"]);
    assert_eq!(
        statuses(&results),
        vec![pair("open", "migrated"), pair("closed", "migrated")]
    );
    let seen: i64 = app
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'notes'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(seen, 1, "the open connection sees the migration");
    app.execute("INSERT INTO notes (body) VALUES ('after')", [])
        .unwrap();
    drop(app);
    for slug in ["open", "closed"] {
        assert!(has_table(&env, slug, "notes"), "{slug}");
        let check: String = tenant_db(&env, slug)
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "{slug}");
    }
    // The migrated databases open normally again, readers and writers alike.
    env.ok(&[
        "db",
        "sql",
        "closed",
        "INSERT INTO notes (body) VALUES ('x')",
        "--write",
    ]);
    assert!(
        env.json(&["db", "status", "--behind", "-q"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_changed_migration_file_is_drift_and_not_rerun() {
    let env = TestEnv::fleet(&["a"]);
    add_migration(&env, "V4__four.sql", "CREATE TABLE four (x);");
    let v1 = env.home.join("tenant-migrations/V1__users.sql");
    let original = std::fs::read_to_string(&v1).unwrap();
    std::fs::write(&v1, format!("{original}\n-- edited after release\n")).unwrap();
    let run = env.run(&["db", "migrate", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    let results = run.json();
    assert_eq!(results[0]["status"], "drift");
    assert!(
        results[0]["error"]
            .as_str()
            .unwrap()
            .contains("V1__users changed")
    );
    assert!(!has_table(&env, "a", "four"));
    let doctor = env.run(&["doctor", "--json"]);
    assert_eq!(doctor.code, 7);
    assert!(
        doctor
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["check"] == "tenant.drift" && c["status"] == "fail")
    );
    std::fs::write(&v1, original).unwrap();
    assert_eq!(statuses(&env.json(&["db", "migrate"])), [pair("a", "migrated")]);
}

#[test]
fn a_catalog_that_cannot_record_runs_stops_the_rollout_and_says_how_to_catch_up() {
    let env = TestEnv::fleet(&["a", "b", "c"]);
    add_migration(&env, "V4__four.sql", "CREATE TABLE four (x);");
    // An open `sqlite3 catalog.db` with `BEGIN IMMEDIATE`: the tenant files can be
    // migrated, the catalog cannot record it.
    let holder = env.catalog();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let run = env.run(&["db", "migrate", "--jobs", "1", "--lock-timeout", "1s", "--json"]);
    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(run.code, 8, "{run:?}");
    assert!(
        run.stderr.contains("the catalog could not record every result")
            && run.stderr.contains("doctor --fix"),
        "{run:?}"
    );
    let results = run.json();
    assert_eq!(results[0]["status"], "migrated", "{results}");
    assert!(
        has_table(&env, "a", "four"),
        "the report tells what the file holds"
    );
    for (result, slug) in results.as_array().unwrap().iter().zip(["a", "b", "c"]) {
        // Tenants already running finish; no new one starts: each is whole or untouched.
        match result["status"].as_str().unwrap() {
            "migrated" => assert!(has_table(&env, slug, "four"), "{result}"),
            "skipped" => assert!(!has_table(&env, slug, "four"), "{result}"),
            other => panic!("{slug}: {other}"),
        }
    }
    assert_eq!(
        env.count("SELECT count(*) FROM customers WHERE schema_version = 4"),
        0,
        "nothing was recorded"
    );

    env.ok(&["doctor", "--fix"]);
    env.ok(&["db", "migrate", "-q"]);
    assert!(
        env.json(&["db", "status", "--behind", "-q"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        env.count("SELECT count(*) FROM customers WHERE schema_version = 4"),
        3
    );
}

#[test]
fn a_second_migrate_waits_for_the_lock_then_refuses() {
    let env = TestEnv::fleet(&["a"]);
    let lock = env.hold_home_lock();
    let run = env.fails(&["db", "migrate", "--lock-timeout", "1s"], 6);
    assert!(run.stderr.contains("lock"), "{}", run.stderr);
    env.ok_warning(
        &["db", "migrate", "--dry-run", "--lock-timeout", "1s"],
        "1 tenants: 0 would change, 1 current, 0 failed",
    );
    drop(lock);
    env.ok_warning(
        &["db", "migrate", "--lock-timeout", "1s"],
        "1 tenants: 0 migrated, 1 current, 0 failed",
    );
}

#[test]
fn an_interrupted_migrate_resumes_where_it_stopped() {
    let slugs: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    let env = TestEnv::fleet(&slugs.iter().map(String::as_str).collect::<Vec<_>>());
    add_migration(&env, "V4__four.sql", "CREATE TABLE four (x);");
    let done = || env.count("SELECT count(*) FROM customers WHERE schema_version = 4");
    // Killed once some tenants are done, and it must not have finished them all.
    let landed = env
        .cmd(&["db", "migrate", "--jobs", "1"])
        .kill_when(|| done() > 0, || done() < 40);
    assert!(landed, "the kill came after the migration had finished");
    for slug in &slugs {
        let version: i64 = tenant_db(&env, slug)
            .query_row(
                "SELECT coalesce(max(version), 0) FROM refinery_schema_history",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(version == 3 || version == 4, "{slug} is at a whole version");
    }
    let results = env.json(&["db", "migrate"]);
    assert!(
        results
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "migrated" || r["status"] == "current")
    );
    assert!(slugs.iter().all(|s| has_table(&env, s, "four")));
    assert_eq!(
        env.count("SELECT count(*) FROM customers WHERE schema_version = 4"),
        40
    );
    let check = env.json(&["db", "status", "--check", "-q"]);
    assert!(
        check.as_array().unwrap().iter().all(|t| t["check"] == "ok"),
        "{check}"
    );
}

#[test]
fn new_customers_are_copied_from_a_template_at_the_newest_migration() {
    let env = TestEnv::fleet(&["a"]);
    let template = env.home.join("templates/tenant.db");
    assert!(template.is_file());
    assert_eq!(mode(&template), 0o600);
    add_migration(&env, "V4__four.sql", "CREATE TABLE four (x);");
    let b = env.customer("b@example.com", "B", &["--slug", "b"]);
    assert_eq!(b["schema_version"], 4);
    assert!(has_table(&env, "b", "four"));
    assert_eq!(
        env.count("SELECT count(*) FROM tenant_migrations WHERE customer_id = 2"),
        4
    );
    assert_eq!(
        statuses(&env.json(&["db", "migrate", "b"])),
        [pair("b", "current")]
    );
}

#[test]
fn db_status_summarises_and_filters() {
    let env = TestEnv::fleet(&["a", "b"]);
    add_migration(&env, "V4__four.sql", "CREATE TABLE four (x);");
    env.ok_warning(&["db", "migrate", "a"], "1 tenants: 1 migrated");
    // A list is an array of tenant objects; the summary goes to stderr, or nowhere with -q.
    let run = env.ok_warning(&["db", "status", "--json"], "2 tenants: ");
    assert_eq!(
        run.stderr,
        format!(
            "2 tenants: 1 current, 1 behind, 0 failed (newest migration V4, {} bytes)\n",
            run.json()
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["size_bytes"].as_u64().unwrap())
                .sum::<u64>()
        )
    );
    let status = env.json(&["db", "status", "-q"]);
    assert_eq!(status.as_array().unwrap().len(), 2);
    assert_fields(
        &status[0],
        &[
            "customer",
            "customer_id",
            "status",
            "engine",
            "server",
            "path",
            "size_bytes",
            "schema_version",
            "pending",
            "migration_status",
            "last_migrated_at",
            "last_error",
            "check",
        ],
    );
    assert_eq!(status[0]["engine"], "sqlite");
    assert_eq!(status[0]["server"], "local");
    let ndjson = env.ok(&["db", "status", "-o", "ndjson", "-q"]).stdout;
    assert_eq!(ndjson.lines().count(), 2, "{ndjson}");
    let behind = env.json(&["db", "status", "--behind", "-q"]);
    assert_eq!(behind.as_array().unwrap().len(), 1);
    assert_eq!(behind[0]["customer"], "b");
    assert_eq!(behind[0]["pending"], 1);
    let table = env.ok(&["db", "status"]).stdout;
    assert!(
        table.starts_with("2 tenants: 1 current, 1 behind, 0 failed"),
        "{table}"
    );
    std::fs::write(env.home.join("tenants/b.db"), vec![0u8; 8192]).unwrap();
    let run = env.run(&["db", "status", "b", "--check", "--json"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert_ne!(run.json()[0]["check"], "ok");
    assert!(run.stderr.contains("1 failed the check"), "{}", run.stderr);
    assert_eq!(env.json(&["status"])["tenants_behind"], 1);
}

#[test]
fn db_sql_is_read_only_sandboxed_and_recorded() {
    let env = TestEnv::fleet(&["a", "b"]);
    let rows = env.json(&["db", "sql", "a", "SELECT 1 AS one, 'x' AS two, NULL AS three"]);
    assert_eq!(rows, json!([{"one": 1, "two": "x", "three": null}]));
    let refused = env.fails(
        &[
            "db",
            "sql",
            "a",
            "INSERT INTO users (email, name) VALUES ('u@a.test', 'U')",
        ],
        6,
    );
    assert!(refused.stderr.contains("--write"), "{}", refused.stderr);
    let written = env.json(&[
        "db",
        "sql",
        "a",
        "INSERT INTO users (email, name) VALUES ('u@a.test', 'U')",
        "--write",
    ]);
    assert_eq!(written, json!({"customer": "a", "changes": 1}));
    let b_path = env.home.join("tenants/b.db");
    for sql in [
        format!("ATTACH '{}' AS other", b_path.display()),
        format!("VACUUM INTO '{}'", env.root.join("stolen.db").display()),
        "SELECT load_extension('x')".to_string(),
        "DETACH main".to_string(),
    ] {
        // Every refusal of the sandbox is exit 6, whether SQLite finds it while preparing
        // the statement (load_extension) or while running it.
        let run = env.fails(&["db", "sql", "a", &sql, "--write"], 6);
        assert!(run.stderr.contains("refused"), "{sql}: {run:?}");
    }
    assert!(!env.root.join("stolen.db").exists());
    let before = tenant_db(&env, "a")
        .query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))
        .unwrap();
    // A statement that is wrong is the operator's input: exit 2, not 1.
    env.fails(&["db", "sql", "a", "SELEC 1"], 2);
    let failed = env.fails(&["db", "sql", "a", "UPDATE nowhere SET x = 1", "--write"], 2);
    assert!(
        failed.stderr.contains("no such table: nowhere"),
        "{}",
        failed.stderr
    );
    let after = tenant_db(&env, "a")
        .query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(before, after);
    env.fails(&["db", "sql", "ghost", "SELECT 1"], 3);
    env.fails(&["db", "sql", "a"], 2);
    let history = env.count("SELECT count(*) FROM query_history WHERE customer_slug = 'a'");
    assert!(history >= 8, "every run is recorded: {history}");
    assert_eq!(
        env.count("SELECT count(*) FROM query_history WHERE status = 'error' AND error LIKE '%nowhere%'"),
        1
    );
    let csv = env
        .ok(&["db", "sql", "a", "SELECT email FROM users", "-o", "csv"])
        .stdout;
    assert_eq!(csv, "email\nu@a.test\n");
}

#[test]
fn db_sql_all_prefixes_rows_and_reports_failures() {
    let env = TestEnv::fleet(&["a", "b", "c"]);
    env.ok(&[
        "db",
        "sql",
        "b",
        "INSERT INTO users (email, name) VALUES ('u@b.test', 'U')",
        "--write",
    ]);
    env.ok(&["customer", "suspend", "c", "--reason", "r"]);
    let report = env.json(&["db", "sql", "--all", "SELECT count(*) AS users FROM users"]);
    assert_fields(&report, &["tenants", "rows", "failures"]);
    assert_eq!(
        report["rows"],
        json!([{"tenant": "a", "users": 0}, {"tenant": "b", "users": 1}]),
        "active only"
    );
    // A query column cannot shadow the tenant: it is renamed, as duplicates are.
    let clash = env.json(&[
        "db",
        "sql",
        "--all",
        "SELECT 'zzz' AS tenant, 'yyy' AS customer, 1 AS tenant",
    ]);
    assert_eq!(
        clash["rows"],
        json!([
            {"tenant": "a", "tenant_2": "zzz", "customer": "yyy", "tenant_3": 1},
            {"tenant": "b", "tenant_2": "zzz", "customer": "yyy", "tenant_3": 1}
        ])
    );
    let table = env.ok(&["db", "sql", "--all", "SELECT 'zzz' AS tenant"]).stdout;
    assert!(table.contains("TENANT  TENANT_2"), "{table}");
    assert!(table.contains("a       zzz"), "{table}");
    let ndjson = env
        .ok(&[
            "db",
            "sql",
            "--all",
            "SELECT count(*) AS users FROM users",
            "-o",
            "ndjson",
        ])
        .stdout;
    assert_eq!(
        ndjson,
        "{\"tenant\":\"a\",\"users\":0}\n{\"tenant\":\"b\",\"users\":1}\n"
    );
    env.ok(&["db", "sql", "a", "DROP TABLE order_items", "--write"]);
    let run = env.run(&[
        "db",
        "sql",
        "--all",
        "SELECT count(*) AS items FROM order_items",
        "--json",
    ]);
    assert_eq!(run.code, 8, "{run:?}");
    assert_eq!(run.json()["rows"], json!([{"tenant": "b", "items": 0}]));
    assert_eq!(run.json()["failures"][0]["customer"], "a");
    assert!(
        run.stderr.contains("a: ") && run.stderr.contains("no such table"),
        "{}",
        run.stderr
    );
    env.fails(&["db", "sql", "--all", "DELETE FROM users", "--write"], 2);
}

#[test]
fn db_path_prints_the_absolute_path() {
    let env = TestEnv::fleet(&["a"]);
    let path = env.ok(&["db", "path", "a"]).stdout;
    assert_eq!(PathBuf::from(path.trim()), env.home.join("tenants/a.db"));
    assert_eq!(
        env.json(&["db", "path", "a@example.com"])["path"],
        env.home.join("tenants/a.db").to_str().unwrap()
    );
    env.ok(&["customer", "delete", "a", "--confirm", "a"]);
    env.fails(&["db", "path", "a"], 6);
}

#[test]
fn resolve_matches_site_domains_then_platform_subdomains() {
    let env = TestEnv::fleet(&["acme"]);
    env.ok(&["site", "create", "acme", "Shop", "--domain", "shop.acme.test"]);
    let by_site = env.json(&["resolve", "SHOP.acme.test."]);
    assert_fields(
        &by_site,
        &[
            "host",
            "matched_by",
            "customer_id",
            "customer",
            "customer_status",
            "site_id",
            "site_domain",
            "db_path",
            "placement",
        ],
    );
    assert_eq!(by_site["matched_by"], "site_domain");
    assert_eq!(by_site["customer"], "acme");
    assert_eq!(by_site["site_domain"], "shop.acme.test");
    assert_eq!(
        by_site["db_path"],
        env.home.join("tenants/acme.db").to_str().unwrap()
    );
    env.fails(&["resolve", "acme.example.com"], 3);
    env.ok(&["config", "set", "platform_domain", "example.com"]);
    let by_slug = env.json(&["resolve", "Acme.Example.com"]);
    assert_eq!(by_slug["matched_by"], "platform_subdomain");
    assert_eq!(by_slug["site_id"], Value::Null);
    env.fails(&["resolve", "x.acme.example.com"], 3);
    env.fails(&["resolve", "nobody.example.com"], 3);
}

#[test]
fn doctor_finds_each_fault_and_fixes_what_is_safe() {
    let env = TestEnv::fleet(&["a", "b", "c", "d"]);
    env.ok(&["backup"]);
    let clean = env.json(&["doctor"]);
    assert!(
        clean.as_array().unwrap().iter().all(|c| c["status"] == "ok"),
        "{clean}"
    );
    assert_fields(&clean[0], &["check", "target", "status", "message"]);

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        env.home.join("tenants/a.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::remove_file(env.home.join("tenants/b.db")).unwrap();
    let c_path = env.home.join("tenants/c.db");
    let mut bytes = std::fs::read(&c_path).unwrap();
    let len = bytes.len();
    for byte in &mut bytes[4096..len.min(12288)] {
        *byte = 0xAB;
    }
    std::fs::write(&c_path, bytes).unwrap();
    std::fs::write(env.home.join("tenants/orphan.db"), b"").unwrap();
    env.catalog()
        .execute("UPDATE customers SET schema_version = 1 WHERE slug = 'd'", [])
        .unwrap();

    let run = env.run(&["doctor", "--json"]);
    assert_eq!(run.code, 7, "{run:?}");
    let checks = run.json();
    let find = |check: &str, target: &str| -> String {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == check && c["target"].as_str().unwrap().contains(target))
            .map(|c| c["status"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no {check} for {target} in {checks}"))
    };
    assert_eq!(find("permissions", "a.db"), "fail");
    assert_eq!(find("tenant.present", "b"), "fail");
    assert_ne!(find("tenant.quick_check", "c"), "ok");
    assert_eq!(find("orphan.tenant", "orphan.db"), "warn");
    assert_eq!(find("tenant.version", "d"), "fail");

    let fixed = env.run(&["doctor", "--fix", "--json"]).json();
    let statuses: Vec<(String, String)> = fixed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&("permissions".into(), "fixed".into())),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&("tenant.version".into(), "fixed".into())),
        "{statuses:?}"
    );
    assert_eq!(mode(&env.home.join("tenants/a.db")), 0o600);
    assert_eq!(env.json(&["db", "status", "d", "-q"])[0]["schema_version"], 3);
}

#[test]
fn doctor_counts_each_tenant_once_by_its_worst_check() {
    let env = TestEnv::fleet(&["a", "b", "c", "d", "e"]);
    env.ok(&["backup", "-q"]);
    let summary = |args: &[&str]| -> (String, String) {
        let run = env.run(args);
        let checks = run.json();
        let row = checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "tenants")
            .unwrap_or_else(|| panic!("no summary in {checks}"))
            .clone();
        assert_eq!(row["target"], "5 tenants");
        (
            row["status"].as_str().unwrap().to_string(),
            row["message"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(
        summary(&["doctor", "--json"]),
        ("ok".to_string(), "5 of 5 without problems".to_string())
    );

    use std::os::unix::fs::PermissionsExt;
    std::fs::remove_file(env.home.join("tenants/b.db")).unwrap();
    let c_path = env.home.join("tenants/c.db");
    let mut bytes = std::fs::read(&c_path).unwrap();
    let len = bytes.len();
    bytes[4096..len.min(12288)].fill(0xAB);
    std::fs::write(&c_path, bytes).unwrap();
    std::fs::set_permissions(
        env.home.join("tenants/d.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // --full: whether an unchanged tenant's check is skipped depends on how long ago
    // its file last changed, which a test cannot pin down.
    assert_eq!(
        summary(&["doctor", "--full", "--json"]),
        (
            "warn".to_string(),
            "2 of 5 without problems; 3 failed".to_string()
        )
    );
    assert_eq!(
        summary(&["doctor", "--fix", "--full", "--json"]),
        (
            "warn".to_string(),
            "2 of 5 without problems; 2 failed; 1 repaired".to_string()
        )
    );
    let run = env.run(&["doctor"]);
    assert_eq!(run.code, 7);
    assert!(
        run.stderr.contains("doctor found 2 problems"),
        "the summary is not one more problem: {run:?}"
    );
}

/// Overwrites pages 2 and 3 in place: the file opens, but quick_check fails.
fn damage_pages(db: &std::path::Path) {
    let mut bytes = std::fs::read(db).unwrap();
    let len = bytes.len();
    bytes[4096..len.min(12288)].fill(0xAB);
    std::fs::write(db, bytes).unwrap();
}

/// The statuses of doctor's quick_check rows, by tenant.
fn quick_check_failures(checks: &Value) -> Vec<String> {
    checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == "tenant.quick_check")
        .map(|c| {
            format!(
                "{} {}",
                c["target"].as_str().unwrap(),
                c["status"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn doctor_checks_again_only_what_changed_since_its_last_clean_check_unless_full() {
    let env = TestEnv::fleet(&["a", "b", "c"]);
    env.ok(&["backup", "-q"]);
    let settle = || std::thread::sleep(std::time::Duration::from_millis(1100));
    // A file's stamp is trusted only once it has been still for a second.
    settle();
    let summary = |args: &[&str]| -> String {
        let checks = env.json(args);
        let row = checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "tenants")
            .unwrap_or_else(|| panic!("no summary in {checks}"))
            .clone();
        assert_eq!(row["status"], "ok", "{checks}");
        row["message"].as_str().unwrap().to_string()
    };
    assert_eq!(summary(&["doctor"]), "3 of 3 without problems");
    assert_eq!(
        summary(&["doctor"]),
        "3 of 3 without problems; quick_check skipped for 3 unchanged since their last clean check (--full checks them)"
    );
    assert_eq!(summary(&["doctor", "--full"]), "3 of 3 without problems");

    // Damage written through the file system moves the file's times.
    damage_pages(&env.home.join("tenants/b.db"));
    // Even with the modification time set back, the change time still moved.
    let c = env.home.join("tenants/c.db");
    let modified = std::fs::metadata(&c).unwrap().modified().unwrap();
    damage_pages(&c);
    std::fs::File::options()
        .write(true)
        .open(&c)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    let run = env.run(&["doctor", "--json"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert_eq!(quick_check_failures(&run.json()), ["b fail", "c fail"]);

    // Damage no time shows (the disk's own, under the file system) is the documented
    // weakness: only --full finds it. Forged by recording the damaged file as clean.
    let a = env.home.join("tenants/a.db");
    damage_pages(&a);
    settle();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(10);
    let stamp = tenantctl::engine::sqlite::change_stamp(&a, later).unwrap();
    let forged = env
        .catalog()
        .execute(
            "UPDATE tenant_check_stamps SET stamp = ?1 WHERE customer_id = (SELECT id FROM customers WHERE slug = 'a')",
            [stamp],
        )
        .unwrap();
    assert_eq!(forged, 1);
    assert_eq!(
        quick_check_failures(&env.run(&["doctor", "--json"]).json()),
        ["b fail", "c fail"]
    );
    let full = env.run(&["doctor", "--full", "--json"]);
    assert_eq!(full.code, 7, "{full:?}");
    assert_eq!(quick_check_failures(&full.json()), ["a fail", "b fail", "c fail"]);
    // A failed check forgets the tenant's stamp: from now on every run checks it.
    assert_eq!(
        quick_check_failures(&env.run(&["doctor", "--json"]).json()),
        ["a fail", "b fail", "c fail"]
    );
}

#[test]
fn a_missing_migrations_folder_is_a_usage_error_naming_it() {
    let env = TestEnv::fleet(&["a"]);
    std::fs::remove_dir_all(env.home.join("tenant-migrations")).unwrap();
    for args in [&["db", "migrate"][..], &["db", "status"]] {
        let run = env.fails(args, 2);
        assert!(run.stderr.contains("tenant-migrations"), "{}", run.stderr);
    }
}

#[test]
fn a_migration_that_commits_by_itself_is_refused() {
    let env = TestEnv::fleet(&["a"]);
    add_migration(
        &env,
        "V4__sneaky.sql",
        "CREATE TABLE p (a);\nCOMMIT;\nCREATE TABLE q (a);",
    );
    let run = env.fails(&["db", "migrate"], 9);
    assert!(run.stderr.contains("COMMIT"), "{}", run.stderr);
    env.fails(&["customer", "create", "b@example.com", "B"], 9);
    assert!(!has_table(&env, "a", "p"));
}

#[test]
fn a_write_through_db_sql_refreshes_the_ledger() {
    let env = TestEnv::fleet(&["a"]);
    env.ok(&[
        "db",
        "sql",
        "a",
        "DELETE FROM refinery_schema_history WHERE version = 3",
        "--write",
    ]);
    env.ok(&["db", "sql", "a", "DROP TABLE order_items", "--write"]);
    env.ok(&["db", "sql", "a", "DROP TABLE orders", "--write"]);
    assert_eq!(env.json(&["db", "status", "a", "-q"])[0]["schema_version"], 2);
    let results = env.json(&["db", "migrate"]);
    assert_eq!(statuses(&results), [pair("a", "migrated")]);
    assert!(has_table(&env, "a", "orders"));
}

#[test]
fn target_below_the_current_version_is_reported_as_ahead() {
    let env = TestEnv::fleet(&["a"]);
    let results = env.json(&["db", "migrate", "--target", "2"]);
    assert_eq!(statuses(&results), [pair("a", "ahead")]);
    assert!(results[0]["error"].as_str().unwrap().contains("never undone"));
}

#[test]
fn resolve_never_routes_to_a_deleted_customer() {
    let env = TestEnv::fleet(&["acme"]);
    env.ok(&["config", "set", "platform_domain", "example.com"]);
    env.ok(&["site", "create", "acme", "Shop", "--domain", "shop.acme.test"]);
    env.ok(&["customer", "delete", "acme", "--confirm", "acme"]);
    for host in ["acme.example.com", "shop.acme.test"] {
        let run = env.fails(&["resolve", host], 3);
        assert!(run.stderr.contains("deleted"), "{}", run.stderr);
    }
}

#[test]
fn db_sql_stops_runaway_statements_and_refuses_empty_ones() {
    let env = TestEnv::fleet(&["a"]);
    let endless =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c WHERE x < 0";
    let run = env.run(&["db", "sql", "a", endless, "--timeout", "1s", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("longer than"), "{}", run.stderr);
    assert_eq!(run.stdout, "", "a failed command prints no data");
    assert_eq!(
        env.count("SELECT count(*) FROM query_history WHERE status = 'error' AND error LIKE '%longer than%'"),
        1
    );
    for empty in ["", " ; "] {
        env.fails(&["db", "sql", "a", empty], 2);
    }
    env.fails(&["db", "sql", "a", "PRAGMA journal_mode = DELETE", "--write"], 6);
    let mode: String = tenant_db(&env, "a")
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_damaged_template_is_rebuilt_and_reported() {
    let env = TestEnv::fleet(&["a"]);
    let template = env.home.join("templates/tenant.db");
    let mut bytes = std::fs::read(&template).unwrap();
    let len = bytes.len();
    for byte in &mut bytes[4096..len] {
        *byte = 0x5A;
    }
    std::fs::write(&template, &bytes).unwrap();
    let run = env.run(&["doctor", "--json"]);
    assert_eq!(run.code, 7);
    assert!(
        run.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["check"] == "template" && c["status"] == "fail")
    );
    let b = env.customer("b@example.com", "B", &["--slug", "b"]);
    assert_eq!(b["schema_version"], 3);
    assert!(
        has_table(&env, "b", "orders"),
        "the new tenant came from a rebuilt template"
    );
    env.ok(&["doctor"]);
}

#[test]
fn doctor_checks_the_modes_of_trashed_databases() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::fleet(&["a"]);
    env.ok(&["customer", "delete", "a", "--confirm", "a"]);
    let trashed = env.home.join("trash/a.1.db");
    std::fs::set_permissions(&trashed, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(env.run(&["doctor"]).code, 7);
    env.ok(&["doctor", "--fix"]);
    assert_eq!(mode(&trashed), 0o600);
}

#[test]
fn a_failed_db_sql_prints_nothing_on_stdout() {
    let env = TestEnv::fleet(&["a"]);
    let write = "INSERT INTO users (email, name) VALUES ('u@a.test', 'U') RETURNING id";
    for format in ["json", "table", "csv", "ndjson"] {
        let run = env.run(&["db", "sql", "a", write, "-o", format]);
        assert_eq!((run.code, run.stdout.as_str()), (6, ""), "{format}: {run:?}");
        assert!(run.stderr.contains("--write"), "{run:?}");
    }
    // Rows already read when the statement fails are not printed either.
    let fails_late = "SELECT CASE WHEN id < 3 THEN id ELSE abs(-9223372036854775807 - 1) END \
                      FROM (SELECT 1 AS id UNION ALL SELECT 2 UNION ALL SELECT 3)";
    let run = env.run(&["db", "sql", "a", fails_late, "--json"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");
    assert!(run.stderr.contains("integer overflow"), "{run:?}");
    // A big result still arrives whole when the statement succeeds.
    let many =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000) SELECT x FROM c";
    let csv = env.ok(&["db", "sql", "a", many, "-o", "csv"]).stdout;
    assert_eq!(csv.lines().count(), 50_001);
    assert!(csv.ends_with("\n50000\n"));
}

#[test]
fn plain_vacuum_needs_write_and_db_vacuum_reclaims_space_across_the_fleet() {
    let env = TestEnv::fleet(&["a", "b", "c"]);
    let fill = "INSERT INTO users (email, name) SELECT 'u' || x || '@a.test', hex(randomblob(500)) \
                FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000) SELECT x FROM c)";
    for slug in ["a", "c"] {
        env.ok(&["db", "sql", slug, fill, "--write"]);
        env.ok(&["db", "sql", slug, "DELETE FROM users", "--write"]);
    }
    let size = |slug: &str| {
        std::fs::metadata(env.home.join(format!("tenants/{slug}.db")))
            .unwrap()
            .len()
    };
    env.fails(&["db", "sql", "a", "VACUUM"], 6);
    env.fails(&["db", "sql", "a", "VACUUM INTO 'x.db'", "--write"], 6);
    // Plain VACUUM rebuilds the file in place; the space comes back with the next checkpoint.
    assert_eq!(
        env.json(&["db", "sql", "a", "VACUUM", "--write"])["customer"],
        "a"
    );
    assert!(!env.root.join("x.db").exists());

    // A customer suspended for storage is the one that needs it most.
    env.ok(&["customer", "suspend", "c", "--reason", "storage"]);
    let c_before = size("c");
    let report = env.json(&["db", "vacuum", "--all"]);
    let rows = report.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{report}");
    assert_fields(
        &rows[2],
        &[
            "customer",
            "customer_id",
            "bytes_before",
            "bytes_after",
            "reclaimed_bytes",
            "ms",
            "error",
        ],
    );
    let c = &rows[2];
    assert_eq!(c["customer"], "c");
    assert_eq!(c["error"], Value::Null);
    assert!(c["bytes_after"].as_u64() < c["bytes_before"].as_u64(), "{c}");
    assert_eq!(
        c["reclaimed_bytes"].as_u64().unwrap(),
        c["bytes_before"].as_u64().unwrap() - c["bytes_after"].as_u64().unwrap()
    );
    assert!(
        size("c") < c_before / 2,
        "the file itself shrank: {} of {c_before}",
        size("c")
    );
    let stats: i64 = tenant_db(&env, "c")
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stats, 1, "ANALYZE ran");
    assert_eq!(
        env.count("SELECT count(*) FROM query_history WHERE sql = 'VACUUM; ANALYZE' AND status = 'ok'"),
        3
    );

    let one = env.json(&["db", "vacuum", "b"]);
    assert_eq!(statuses_of(&one), ["b"]);
    env.fails(&["db", "vacuum"], 2);
    env.fails(&["db", "vacuum", "ghost"], 3);
    std::fs::remove_file(env.home.join("tenants/b.db")).unwrap();
    let run = env.run(&["db", "vacuum", "--all", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    assert!(
        run.json()[1]["error"].as_str().unwrap().contains("missing"),
        "{run:?}"
    );
    assert_eq!(run.json()[0]["error"], Value::Null);
}

fn statuses_of(report: &Value) -> Vec<String> {
    report
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["customer"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn db_sql_file_runs_a_script_in_one_transaction() {
    let env = TestEnv::fleet(&["a"]);
    let users = || -> i64 {
        tenant_db(&env, "a")
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap()
    };
    let script = env.root.join("fix.sql");
    std::fs::write(
        &script,
        "-- a data fix\nINSERT INTO users (email, name) VALUES ('a@a.test', 'A');\n\
         INSERT INTO users (email, name) VALUES ('b@a.test', 'B');\n\
         UPDATE users SET name = 'Z' WHERE email = 'a@a.test';\nSELECT count(*) FROM users;\n",
    )
    .unwrap();
    let path = script.to_str().unwrap();
    let refused = env.fails(&["db", "sql", "a", "-f", path], 6);
    assert!(refused.stderr.contains("--write"), "{refused:?}");
    assert_eq!(users(), 0);
    let done = env.json(&["db", "sql", "a", "-f", path, "--write"]);
    assert_eq!(done, json!({"customer": "a", "statements": 4, "changes": 3}));
    assert_eq!(users(), 2);

    // A failing statement undoes the ones before it.
    let out = env
        .cmd(&["db", "sql", "a", "-f", "-", "--write"])
        .stdin("DELETE FROM users; INSERT INTO nowhere VALUES (1);")
        .expect_code(2)
        .stderr_has("nowhere")
        .run();
    assert!(out.stdout.is_empty());
    assert_eq!(users(), 2, "the DELETE was rolled back");

    std::fs::write(&script, "BEGIN; DELETE FROM users; COMMIT;").unwrap();
    let run = env.fails(&["db", "sql", "a", "-f", path, "--write"], 2);
    assert!(run.stderr.contains("BEGIN"), "{run:?}");
    assert_eq!(users(), 2);
    env.fails(&["db", "sql", "a", "-f", "/no/such/file.sql", "--write"], 2);
    env.fails(&["db", "sql", "a", "SELECT 1", "-f", path], 2);
    env.fails(&["db", "sql", "--all", "-f", path], 2);
    let one_at_a_time = env.fails(&["db", "sql", "a", "SELECT 1; SELECT 2"], 2);
    assert!(one_at_a_time.stderr.contains("-f"), "{one_at_a_time:?}");
    // Not "no such table": the second statement needs the first to have run.
    let creates = env.fails(
        &[
            "db",
            "sql",
            "a",
            "CREATE TABLE t9 (x); INSERT INTO t9 VALUES (1)",
            "--write",
        ],
        2,
    );
    assert!(creates.stderr.contains("one statement at a time"), "{creates:?}");
    assert_eq!(
        env.count("SELECT count(*) FROM query_history WHERE sql LIKE '-- a data fix%' AND status = 'ok' AND row_count = 3"),
        1
    );
}

#[test]
fn db_history_lists_recorded_runs_newest_first() {
    let env = TestEnv::fleet(&["a", "b"]);
    env.ok(&["db", "sql", "a", "SELECT 1"]);
    env.fails(&["db", "sql", "b", "SELECT * FROM nowhere"], 2);
    env.ok(&["db", "sql", "b", "DELETE FROM users", "--write"]);
    let all = env.json(&["db", "history"]);
    let runs = all.as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert_fields(
        &runs[0],
        &[
            "id",
            "at",
            "actor",
            "customer",
            "customer_id",
            "sql",
            "write",
            "duration_ms",
            "row_count",
            "status",
            "error",
        ],
    );
    assert_eq!(runs[0]["sql"], "DELETE FROM users");
    assert_eq!(runs[0]["write"], true);
    assert_eq!(runs[0]["actor"], "tester");
    assert_timestamp(&runs[0]["at"]);
    assert_eq!(runs[2]["customer"], "a");
    let failed = env.json(&["db", "history", "--failed"]);
    assert_eq!(failed.as_array().unwrap().len(), 1);
    assert!(failed[0]["error"].as_str().unwrap().contains("nowhere"));
    assert_eq!(env.json(&["db", "history", "b"]).as_array().unwrap().len(), 2);
    assert_eq!(
        env.json(&["db", "history", "a@example.com"])[0]["sql"],
        "SELECT 1"
    );
    assert_eq!(
        env.json(&["db", "history", "--limit", "1"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        env.json(&["db", "history", "--since", "1h"])
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert!(
        env.json(&["db", "history", "--since", "2099-01-01"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    env.fails(&["db", "history", "--since", "yesterday"], 2);
    env.fails(&["db", "history", "ghost"], 3);
    // A deleted customer's runs stay listed.
    env.ok(&["customer", "delete", "b", "--confirm", "b"]);
    assert_eq!(env.json(&["db", "history", "b"]).as_array().unwrap().len(), 2);
    let table = env.ok(&["db", "history"]).stdout;
    assert!(table.starts_with("ID"), "{table}");
}

#[test]
fn a_tenant_file_that_is_a_symlink_is_refused_everywhere() {
    let env = TestEnv::fleet(&["a", "b"]);
    env.ok(&[
        "db",
        "sql",
        "a",
        "INSERT INTO users (email, name) VALUES ('secret@a.test', 'A')",
        "--write",
    ]);
    let b = env.home.join("tenants/b.db");
    std::fs::rename(&b, env.root.join("b-aside.db")).unwrap();
    std::os::unix::fs::symlink(env.home.join("tenants/a.db"), &b).unwrap();

    let run = env.fails(&["db", "sql", "b", "SELECT email FROM users"], 7);
    assert!(run.stderr.contains("symbolic link"), "{run:?}");
    env.fails(&["db", "sql", "b", "SELECT 1", "--write"], 7);
    env.fails(&["db", "path", "b"], 7);
    assert_eq!(env.run(&["db", "vacuum", "b"]).code, 8);
    // Storage is b's own (a link's few bytes), never a's file counted again.
    let a_size = env.json(&["customer", "show", "a"])["storage_bytes"]
        .as_u64()
        .unwrap();
    let b_size = env.json(&["customer", "show", "b"])["storage_bytes"]
        .as_u64()
        .unwrap();
    assert!(b_size < 4096 && a_size > 4096, "a {a_size}, b {b_size}");
    let fleet = env.run(&["db", "sql", "--all", "SELECT email FROM users", "--json"]);
    assert_eq!(fleet.code, 8, "{fleet:?}");
    assert_eq!(
        fleet.json()["rows"],
        json!([{"tenant": "a", "email": "secret@a.test"}])
    );
    assert_eq!(fleet.json()["failures"][0]["customer"], "b");

    // Current by the ledger, but never passed over as such.
    let migrate = env.run(&["db", "migrate", "--json"]);
    assert_eq!(migrate.code, 8, "{migrate:?}");
    assert_eq!(
        statuses(&migrate.json()),
        [pair("a", "current"), pair("b", "failed")]
    );
    assert!(
        migrate.json()[1]["error"]
            .as_str()
            .unwrap()
            .contains("symbolic link")
    );

    let run = env.run(&["db", "status", "b", "--check", "--json"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.json()[0]["check"].as_str().unwrap().contains("symbolic link"));

    let doctor = env.run(&["doctor", "--json"]);
    assert_eq!(doctor.code, 7, "{doctor:?}");
    let checks = doctor.json();
    let link = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "tenant.symlink")
        .unwrap_or_else(|| panic!("{checks}"));
    assert_eq!(
        (link["target"].as_str(), link["status"].as_str()),
        (Some("b"), Some("fail"))
    );

    let backup = env.run(&["backup", "--json"]);
    assert_eq!(backup.code, 8, "{backup:?}");
    assert!(backup.stderr.contains("symbolic link"), "{backup:?}");
    assert!(
        std::fs::symlink_metadata(&b).unwrap().file_type().is_symlink(),
        "left as found"
    );
}
