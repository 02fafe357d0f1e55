//! Tenants on a MariaDB server (SPEC section 7): `server add mysql://`, a database
//! and a user per tenant, the lifecycle by ACCOUNT LOCK, `db sql` as the tenant's
//! user in a read-only session, migrations statement by statement with their
//! progress kept, and one fleet over SQLite, PostgreSQL and MariaDB at once. What
//! the server holds is read with the server's own client, as root.

use serde_json::Value;

use crate::my_server::MyServer;
use crate::pg_server::PgServer;
use crate::support::TestEnv;

/// A home with server `my` on a throwaway MariaDB.
fn home_with_server() -> (TestEnv, MyServer) {
    let server = MyServer::start();
    let env = TestEnv::initialised();
    let admin = server.admin_login();
    env.json(&["server", "add", "my", "--url", &server.url(&admin, "")]);
    (env, server)
}

fn create_on(env: &TestEnv, slug: &str, server: &str) -> Value {
    env.customer(
        &format!("{slug}@example.com"),
        slug,
        &["--slug", slug, "--server", server],
    )
}

/// The tenant's URL with its password, as `db url --reveal` prints it.
fn revealed_password(env: &TestEnv, slug: &str) -> String {
    let url = env.ok(&["db", "url", slug, "--reveal"]).stdout;
    let url = url::Url::parse(url.trim()).unwrap();
    url.password().unwrap().to_string()
}

fn write_migration(env: &TestEnv, version: i64, name: &str, sqlite: &str, postgres: &str, mysql: &str) {
    let file = format!("V{version}__{name}.sql");
    let dir = env.home.join("tenant-migrations");
    std::fs::write(dir.join(&file), sqlite).unwrap();
    std::fs::write(dir.join("postgres").join(&file), postgres).unwrap();
    std::fs::write(dir.join("mysql").join(&file), mysql).unwrap();
}

#[test]
fn a_mariadb_server_is_added_checked_and_shown_without_its_password() {
    let server = MyServer::start();
    let env = TestEnv::initialised();
    let admin = server.admin_login();
    let url = server.url(&admin, "");

    // Schema mode is PostgreSQL's.
    env.fails(&["server", "add", "my", "--url", &url, "--mode", "schema"], 2);
    // A login without CREATE USER and GRANT OPTION cannot provision tenants.
    server.sql(
        "",
        "CREATE USER weak@localhost IDENTIFIED BY 'weak-pw'; GRANT CREATE ON *.* TO weak@localhost",
    );
    let weak = crate::pg_server::Login {
        user: "weak".into(),
        password: "weak-pw".into(),
    };
    let run = env.fails(&["server", "add", "my", "--url", &server.url(&weak, "")], 6);
    assert!(
        run.stderr.contains("CREATE USER") && run.stderr.contains("GRANT OPTION"),
        "{run:?}"
    );

    let added = env.json(&["server", "add", "my", "--url", &url]);
    assert_eq!(added["engine"], "mysql");
    assert!(added["version"].as_str().unwrap().contains("MariaDB"), "{added}");
    let shown = env.json(&["server", "show", "my"]);
    assert!(shown["url"].as_str().unwrap().contains("***"), "{shown}");
    assert!(!shown.to_string().contains(&admin.password));
    let tested = env.json(&["server", "test", "my"]);
    assert_eq!(tested["reachable"], true);
    assert_eq!(tested["template_current"], Value::Null);
    // The catalog keeps the URL without its password, which is encrypted apart.
    let stored: String = env
        .catalog()
        .query_row("SELECT url FROM servers WHERE name = 'my'", [], |r| r.get(0))
        .unwrap();
    assert!(!stored.contains(&admin.password));
}

#[test]
fn a_tenant_gets_its_own_database_and_user_and_reaches_nothing_else() {
    let (env, server) = home_with_server();
    let acme = create_on(&env, "acme", "my");
    assert_eq!(acme["schema_version"], 3);
    create_on(&env, "beta", "my");
    let tables = server.sql("tenant_acme", "SHOW TABLES");
    for table in [
        "users",
        "products",
        "orders",
        "order_items",
        "refinery_schema_history",
    ] {
        assert!(tables.lines().any(|t| t == table), "{tables}");
    }
    // No staging database is left behind.
    assert_eq!(
        server.sql(
            "",
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name LIKE 'tenantctl_new%'"
        ),
        "0"
    );

    let shown = env.json(&["customer", "show", "acme"]);
    assert_eq!(shown["placement"]["engine"], "mysql", "{shown}");
    assert_eq!(shown["placement"]["database"], "tenant_acme");
    assert_eq!(shown["placement"]["role"], "tenant_acme");
    let url = env.ok(&["db", "url", "acme"]).stdout;
    assert!(
        url.starts_with("mysql://tenant_acme:***@localhost/tenant_acme?socket="),
        "{url}"
    );

    let password = revealed_password(&env, "acme");
    server
        .sql_as(
            "tenant_acme",
            &password,
            "tenant_acme",
            "INSERT INTO users (email, name) VALUES ('a@b.c', 'A')",
        )
        .unwrap();
    let refused = server
        .sql_as(
            "tenant_acme",
            &password,
            "tenant_beta",
            "SELECT COUNT(*) FROM users",
        )
        .unwrap_err();
    assert!(refused.contains("denied"), "{refused}");
    // Through tenantctl too: the server, not the tool, says no.
    let run = env.fails(
        &["db", "sql", "acme", "SELECT COUNT(*) FROM tenant_beta.users"],
        6,
    );
    assert!(run.stderr.contains("denied"), "{run:?}");
    let resolved = env.json(&["db", "sql", "acme", "SELECT email FROM users"]);
    assert_eq!(resolved[0]["email"], "a@b.c");
}

#[test]
fn db_sql_is_read_only_unless_asked_to_write() {
    let (env, server) = home_with_server();
    create_on(&env, "acme", "my");
    for statement in [
        "INSERT INTO users (email, name) VALUES ('x@y.z', 'X')",
        "CREATE TABLE sneaky (a INT)",
        "DROP TABLE orders",
        "SET STATEMENT tx_read_only=0 FOR CREATE TABLE sneaky (a INT)",
    ] {
        env.fails(&["db", "sql", "acme", statement], 6);
    }
    let script = env.home.join("lift.sql");
    std::fs::write(
        &script,
        "SET SESSION TRANSACTION READ WRITE;\nCREATE TABLE sneaky (a INT);\n",
    )
    .unwrap();
    env.fails(&["db", "sql", "acme", "-f", script.to_str().unwrap()], 6);
    assert_eq!(
        server.sql(
            "",
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'sneaky'"
        ),
        "0"
    );
    assert_eq!(server.sql("tenant_acme", "SELECT COUNT(*) FROM users"), "0");

    let written = env.json(&[
        "db",
        "sql",
        "acme",
        "INSERT INTO users (email, name) VALUES ('x@y.z', 'X')",
        "--write",
    ]);
    assert_eq!(written["changes"], 1, "{written}");
    let rows = env.json(&[
        "db",
        "sql",
        "acme",
        "SELECT id, email, created_at IS NOT NULL AS stamped FROM users",
    ]);
    assert_eq!(rows[0]["id"], 1);
    assert_eq!(rows[0]["stamped"], 1);
    // A statement that runs too long is stopped by the server.
    env.fails(&["db", "sql", "acme", "SELECT SLEEP(5)", "--timeout", "1"], 1);
    env.fails(&["db", "sql", "acme", "SELEC 1"], 2);
}

#[test]
fn suspend_locks_the_account_and_purge_drops_database_and_user() {
    let (env, server) = home_with_server();
    create_on(&env, "acme", "my");
    let password = revealed_password(&env, "acme");
    assert!(server.can_login("tenant_acme", "tenant_acme", &password));

    // A session that is in when the account is locked is ended, not left writing.
    let mut session = server.session_as("tenant_acme", &password, "tenant_acme", "SELECT SLEEP(600)");
    let in_session = "SELECT COUNT(*) FROM information_schema.processlist WHERE user = 'tenant_acme'";
    let started = std::time::Instant::now();
    while server.sql("", in_session) != "1" {
        assert!(started.elapsed().as_secs() < 30, "the session never came in");
        std::thread::yield_now();
    }
    env.ok(&["customer", "suspend", "acme", "--reason", "unpaid"]);
    assert_eq!(server.sql("", in_session), "0");
    let ended = session.wait().unwrap();
    assert!(!ended.success(), "the session was not ended");
    assert!(!server.can_login("tenant_acme", "tenant_acme", &password));
    env.ok(&["customer", "reactivate", "acme"]);
    assert!(server.can_login("tenant_acme", "tenant_acme", &password));

    env.ok(&["customer", "delete", "acme", "--confirm", "acme"]);
    assert!(!server.can_login("", "tenant_acme", &password));
    assert_eq!(server.sql("", "SHOW DATABASES LIKE 'tenant_acme'"), "");
    env.ok(&["customer", "undelete", "acme"]);
    assert!(server.can_login("tenant_acme", "tenant_acme", &password));
    assert_eq!(server.sql("tenant_acme", "SELECT COUNT(*) FROM products"), "0");

    env.ok(&["customer", "delete", "acme", "--confirm", "acme"]);
    env.ok(&["customer", "purge", "acme", "--confirm", "acme"]);
    assert_eq!(
        server.sql(
            "",
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name LIKE '%acme%'"
        ),
        "0"
    );
    assert_eq!(
        server.sql("", "SELECT COUNT(*) FROM mysql.user WHERE user = 'tenant_acme'"),
        "0"
    );
}

#[test]
fn a_failed_mysql_migration_stops_at_a_known_statement_and_resumes_after_it() {
    let (env, server) = home_with_server();
    create_on(&env, "acme", "my");
    // The second statement fails; the first (a CREATE TABLE) must not run twice.
    write_migration(
        &env,
        4,
        "notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
        "CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT);",
        "CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT);\nCREATE INDEX notes_body ON no_such_table (body);\n",
    );
    let run = env.run(&["db", "migrate", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let line = &report[0];
    assert_eq!(line["status"], "failed", "{report}");
    assert_eq!(line["to"], 3);
    let error = line["error"].as_str().unwrap();
    assert!(
        error.contains("V4__notes") && error.contains("statement 2 of 2"),
        "{error}"
    );
    let status = env.run(&["db", "status", "acme", "--json"]).json();
    assert_eq!(status[0]["schema_version"], 3, "{status}");
    assert_eq!(status[0]["migration_status"], "failed");
    assert_eq!(
        server.sql(
            "tenant_acme",
            "SELECT statements_done FROM tenantctl_migration_progress WHERE version = 4"
        ),
        "1"
    );

    // The operator fixes the failing statement; the table made before is kept.
    std::fs::write(
        env.home.join("tenant-migrations/mysql/V4__notes.sql"),
        "CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT);\nCREATE INDEX notes_body ON notes (body(20));\n",
    )
    .unwrap();
    let report = env.json(&["db", "migrate"]);
    assert_eq!(report[0]["status"], "migrated", "{report}");
    assert_eq!(report[0]["to"], 4);
    assert_eq!(
        server.sql("tenant_acme", "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = 'tenant_acme' AND index_name = 'notes_body'"),
        "1"
    );
    assert_eq!(
        server.sql("tenant_acme", "SELECT COUNT(*) FROM tenantctl_migration_progress"),
        "0"
    );
    assert_eq!(
        server.sql("tenant_acme", "SELECT MAX(version) FROM refinery_schema_history"),
        "4"
    );
}

#[test]
fn one_fleet_over_three_engines_migrates_and_answers_in_one_command() {
    let (my, pg) = std::thread::scope(|scope| {
        let pg = scope.spawn(PgServer::start);
        (MyServer::start(), pg.join().unwrap())
    });
    let env = TestEnv::initialised();
    let admin = my.admin_login();
    env.json(&["server", "add", "my", "--url", &my.url(&admin, "")]);
    let admin = pg.admin_login();
    env.json(&["server", "add", "pg", "--url", &pg.url(&admin, "postgres")]);
    for (slug, server) in [("lo", "local"), ("po", "pg"), ("ma", "my"), ("mb", "my")] {
        create_on(&env, slug, server);
    }
    // A version the MySQL folder lacks is refused before anything runs.
    let file = "V4__tags.sql";
    let dir = env.home.join("tenant-migrations");
    std::fs::write(dir.join(file), "CREATE TABLE tags (name TEXT PRIMARY KEY);").unwrap();
    std::fs::write(
        dir.join("postgres").join(file),
        "CREATE TABLE tags (name TEXT PRIMARY KEY);",
    )
    .unwrap();
    env.fails(&["db", "migrate"], 9);
    std::fs::write(
        dir.join("mysql").join(file),
        "CREATE TABLE tags (name VARCHAR(64) PRIMARY KEY);",
    )
    .unwrap();

    let report = env.json(&["db", "migrate"]);
    let statuses: Vec<&str> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["migrated"; 4], "{report}");
    assert_eq!(
        my.sql("tenant_mb", "SELECT MAX(version) FROM refinery_schema_history"),
        "4"
    );

    let all = env.json(&["db", "sql", "--all", "SELECT COUNT(*) AS n FROM tags"]);
    assert_eq!(all["rows"].as_array().unwrap().len(), 4, "{all}");
    let status = env.run(&["db", "status", "--json"]).json();
    let engines: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["engine"].as_str().unwrap())
        .collect();
    assert!(engines.contains(&"mysql") && engines.contains(&"postgres") && engines.contains(&"sqlite"));
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["schema_version"] == 4),
        "{status}"
    );
    // Storage counts for quotas come from the server's own figures.
    my.sql(
        "tenant_ma",
        "CREATE TABLE bulk (b LONGBLOB); INSERT INTO bulk VALUES (REPEAT('x', 3000000))",
    );
    let report = env.json(&["usage", "report"]);
    let ma = report
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["customer"] == "ma")
        .unwrap();
    assert!(ma["storage_bytes"].as_u64().unwrap() > 3_000_000, "{report}");
    let mb = report
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["customer"] == "mb")
        .unwrap();
    assert!(mb["storage_bytes"].as_u64().unwrap() < 3_000_000, "{report}");
    let resolved = env.json(&["customer", "show", "ma"]);
    assert_eq!(resolved["placement"]["server"], "my");
}

#[test]
fn doctor_finds_and_drops_a_tenant_database_no_customer_owns() {
    let (env, server) = home_with_server();
    create_on(&env, "acme", "my");
    server.sql("", "CREATE DATABASE tenant_ghost");
    let run = env.run(&["doctor", "--json"]);
    assert!(run.stdout.contains("tenant_ghost"), "{run:?}");
    env.run(&["doctor", "--fix", "--json"]);
    assert_eq!(server.sql("", "SHOW DATABASES LIKE 'tenant_ghost'"), "");
    assert_eq!(server.sql("", "SHOW DATABASES LIKE 'tenant_acme'"), "tenant_acme");
    // Privileges given to another user on a tenant's database are found and revoked.
    server.sql(
        "",
        "CREATE USER nosy@localhost IDENTIFIED BY 'n'; GRANT SELECT ON tenant_acme.* TO nosy@localhost",
    );
    let run = env.run(&["doctor", "--json"]);
    assert!(run.stdout.contains("nosy"), "{run:?}");
    env.run(&["doctor", "--fix", "--json"]);
    assert!(
        server
            .sql_as("nosy", "n", "tenant_acme", "SELECT COUNT(*) FROM users")
            .is_err()
    );
}

#[test]
fn a_mysql_rollback_runs_down_scripts_statement_by_statement_and_resumes_after_a_failure() {
    let (env, server) = home_with_server();
    for slug in ["m1", "m2"] {
        create_on(&env, slug, "my");
    }
    let tables = |database: &str| {
        server.sql(
            database,
            &format!(
                "SELECT GROUP_CONCAT(table_name ORDER BY table_name) FROM information_schema.tables \
                 WHERE table_schema = '{database}' AND table_name NOT LIKE 'refinery%' AND table_name NOT LIKE 'tenantctl%'"
            ),
        )
    };
    let columns = |database: &str| {
        server.sql(
            database,
            &format!(
                "SELECT GROUP_CONCAT(CONCAT_WS(' ', table_name, column_name, column_type, is_nullable, column_default) \
                 ORDER BY table_name, column_name SEPARATOR '; ') FROM information_schema.columns \
                 WHERE table_schema = '{database}' AND table_name NOT LIKE 'tenantctl%'"
            ),
        )
    };
    let original = columns("tenant_m1");
    // The second statement fails in a tenant that holds a note with id 1.
    write_migration(
        &env,
        4,
        "notes",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY);",
        "CREATE TABLE notes (id BIGINT PRIMARY KEY);",
        "CREATE TABLE tags (id BIGINT PRIMARY KEY);\nCREATE TABLE notes (id BIGINT PRIMARY KEY);\n",
    );
    let dir = env.home.join("tenant-migrations");
    for engine in ["", "postgres"] {
        std::fs::write(dir.join(engine).join("V4__notes.down.sql"), "DROP TABLE notes;\n").unwrap();
    }
    std::fs::write(
        dir.join("mysql/V4__notes.down.sql"),
        "DROP TABLE tags;\nINSERT INTO notes (id) VALUES (1);\nDROP TABLE notes;\n",
    )
    .unwrap();
    env.json(&["db", "migrate"]);
    env.ok(&["db", "sql", "m2", "INSERT INTO notes (id) VALUES (1)", "--write"]);

    let run = env.run(&[
        "db",
        "rollback",
        "--all",
        "--to",
        "3",
        "--continue-on-error",
        "--json",
    ]);
    assert_eq!(run.code, 8, "{run:?}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        (&report[0]["status"], &report[0]["to"]),
        (&Value::from("rolled_back"), &Value::from(3))
    );
    let failed = &report[1];
    assert_eq!(
        (&failed["status"], &failed["to"]),
        (&Value::from("failed"), &Value::from(4)),
        "{report}"
    );
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("V4__notes.down.sql") && error.contains("statement 2 of 3") && error.contains("at V4"),
        "{error}"
    );
    // A known place: V4 still applied, its first down statement done and recorded.
    assert_eq!(
        server.sql("tenant_m2", "SELECT MAX(version) FROM refinery_schema_history"),
        "4"
    );
    assert_eq!(tables("tenant_m2"), "notes,orders,order_items,products,users");
    assert_eq!(
        server.sql(
            "tenant_m2",
            "SELECT statements_done FROM tenantctl_migration_progress WHERE version = -4"
        ),
        "1"
    );
    // Forward is refused until the rollback is finished.
    let forward = env.run(&["db", "migrate", "m2", "--json"]);
    assert_eq!(forward.code, 8, "{forward:?}");
    assert!(
        forward.stdout.contains("finish it with 'tenantctl db rollback'"),
        "{forward:?}"
    );

    env.ok(&["db", "sql", "m2", "DELETE FROM notes", "--write"]);
    let report = env.json(&["db", "rollback", "m2", "--to", "3"]);
    assert_eq!(report[0]["status"], "rolled_back", "{report}");
    assert_eq!(tables("tenant_m2"), "orders,order_items,products,users");
    assert_eq!(
        server.sql("tenant_m2", "SELECT COUNT(*) FROM tenantctl_migration_progress"),
        "0"
    );

    // Down to V1 and forward again: the same columns as before.
    env.json(&["db", "rollback", "--all", "--to", "1"]);
    assert_eq!(tables("tenant_m1"), "users");
    env.json(&["db", "migrate", "--target", "3"]);
    assert_eq!(columns("tenant_m1"), original);
    assert_eq!(columns("tenant_m2"), original);
}
