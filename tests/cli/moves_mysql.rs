//! `customer move` with MySQL/MariaDB servers (SPEC section 7) against throwaway
//! servers: between two MariaDB servers whole (dump and restore), MariaDB →
//! PostgreSQL and local SQLite → MariaDB table by table, a value that does not fit
//! and `--online` refused before anything changes, and a move killed part way
//! undone by `--abort` and by `doctor --fix`. Each outcome is read from the servers
//! themselves and through the tenant's own login (`db sql`).

use serde_json::Value;

use crate::my_server::MyServer;
use crate::pg_server::PgServer;
use crate::support::TestEnv;

/// A home with the MariaDB servers `ma` and, when asked, `mb`, and the PostgreSQL
/// server `pga`, each registered under its name.
struct Fleet {
    env: TestEnv,
    ma: MyServer,
    mb: Option<MyServer>,
    pga: Option<PgServer>,
}

impl Fleet {
    fn new(mb: bool, pga: bool) -> Self {
        let (ma, mb, pga) = std::thread::scope(|scope| {
            let mb = mb.then(|| scope.spawn(MyServer::start));
            let pga = pga.then(|| scope.spawn(PgServer::start));
            (
                MyServer::start(),
                mb.map(|s| s.join().unwrap()),
                pga.map(|s| s.join().unwrap()),
            )
        });
        let env = TestEnv::initialised();
        let admin = ma.admin_login();
        env.json(&["server", "add", "ma", "--url", &ma.url(&admin, "mysql")]);
        if let Some(mb) = &mb {
            let admin = mb.admin_login();
            env.json(&["server", "add", "mb", "--url", &mb.url(&admin, "mysql")]);
        }
        if let Some(pga) = &pga {
            let admin = pga.admin_login();
            env.json(&["server", "add", "pga", "--url", &pga.url(&admin, "postgres")]);
        }
        Fleet { env, ma, mb, pga }
    }

    fn mb(&self) -> &MyServer {
        self.mb.as_ref().expect("a fleet with mb")
    }

    fn pga(&self) -> &PgServer {
        self.pga.as_ref().expect("a fleet with pga")
    }

    fn customer(&self, slug: &str, server: &str) {
        self.env.customer(
            &format!("{slug}@example.com"),
            slug,
            &["--slug", slug, "--server", server],
        );
    }

    fn write(&self, slug: &str, sql: &str) {
        self.env.ok(&["db", "sql", slug, "--write", sql]);
    }

    /// `db sql` as the tenant's own login where it lives now: each row's values
    /// joined by `|`, JSON strings unquoted.
    fn read(&self, slug: &str, sql: &str) -> Vec<String> {
        let rows = self.env.json(&["db", "sql", slug, sql]);
        rows.as_array()
            .unwrap_or_else(|| panic!("{sql}: {rows}"))
            .iter()
            .map(|row| {
                row.as_object()
                    .unwrap()
                    .values()
                    .map(plain)
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }

    fn moved(&self, slug: &str, to: &str) -> Value {
        self.env.json(&["customer", "move", slug, "--to", to])
    }

    fn server_of(&self, slug: &str) -> String {
        let shown = self.env.json(&["customer", "show", slug]);
        shown["placement"]["server"].as_str().unwrap().to_string()
    }

    /// The tenant user's password, as `db url --reveal` gives it.
    fn password(&self, slug: &str) -> String {
        let shown = self.env.json(&["db", "url", slug, "--reveal"]);
        let url = shown["url"].as_str().unwrap();
        let (_, after_scheme) = url.split_once("://").unwrap();
        let (credentials, _) = after_scheme.split_once('@').unwrap();
        credentials.split_once(':').unwrap().1.to_string()
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "NULL".to_string(),
        other => other.to_string(),
    }
}

/// The databases on a MariaDB server whose names start with `prefix`.
fn databases(server: &MyServer, prefix: &str) -> String {
    server.sql(
        "mysql",
        &format!(
            "SELECT COALESCE(GROUP_CONCAT(schema_name ORDER BY 1), '') FROM information_schema.schemata \
             WHERE schema_name LIKE '{}%'",
            prefix.replace('_', "\\_")
        ),
    )
}

fn users_named(server: &MyServer, user: &str) -> String {
    server.sql(
        "mysql",
        &format!("SELECT COUNT(*) FROM mysql.user WHERE user = '{user}'"),
    )
}

/// The starter schema filled through the tenant's login: two users, two products
/// (one inactive), an order with two items, times with microseconds.
fn fill(fleet: &Fleet, slug: &str) {
    fleet.write(
        slug,
        "INSERT INTO users (id, email, name, role, created_at) VALUES \
         (1, 'ann@x.test', 'Ann Ünïcödé ✓', 'owner', '2026-01-02 03:04:05.678901'), \
         (7, 'bob@x.test', 'Bob \\'quoted\\' \\\\ back', 'member', '2026-02-03 04:05:06')",
    );
    fleet.write(
        slug,
        "INSERT INTO products (id, sku, name, price_cents, active, created_at) VALUES \
         (3, 'A-1', 'Anvil', 1999, TRUE, '2026-03-04 05:06:07.5'), \
         (4, 'B-2', 'Bucket', 0, FALSE, '2026-03-04 05:06:08')",
    );
    fleet.write(
        slug,
        "INSERT INTO orders (id, user_id, status, total_cents, created_at) VALUES \
         (10, 7, 'paid', 1999, '2026-04-05 06:07:08.000001')",
    );
    fleet.write(
        slug,
        "INSERT INTO order_items (order_id, product_id, quantity, price_cents) VALUES (10, 3, 1, 1999), (10, 4, 2, 0)",
    );
}

fn move_report_tables(report: &Value) -> Vec<(String, u64)> {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_string(),
                t["rows"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_tenant_moves_whole_between_mysql_servers_keeps_ids_and_login_and_the_old_copy_until_finish() {
    let fleet = Fleet::new(true, false);
    let env = &fleet.env;
    fleet.customer("a", "ma");
    fill(&fleet, "a");
    // A view the tenant made itself travels too, still the tenant user's.
    fleet.write(
        "a",
        "CREATE VIEW paid_orders AS SELECT id, total_cents FROM orders WHERE status = 'paid'",
    );
    let password = fleet.password("a");

    let report = fleet.moved("a", "mb");
    assert_eq!(report["outcome"], "moved", "{report}");
    assert_eq!(report["method"], "dump-restore", "{report}");
    let mut tables = move_report_tables(&report);
    tables.sort();
    assert_eq!(
        tables,
        [
            ("order_items".to_string(), 2),
            ("orders".to_string(), 1),
            ("products".to_string(), 2),
            ("users".to_string(), 2)
        ],
        "{report}"
    );
    assert_eq!(fleet.server_of("a"), "mb");

    // Every value as it was, read through the tenant's own login on mb.
    assert_eq!(
        fleet.read("a", "SELECT id, name, created_at FROM users ORDER BY id"),
        [
            "1|Ann Ünïcödé ✓|2026-01-02 03:04:05.678901",
            "7|Bob 'quoted' \\ back|2026-02-03 04:05:06.000000"
        ]
    );
    assert_eq!(
        fleet.read("a", "SELECT id, total_cents FROM paid_orders"),
        ["10|1999"]
    );
    assert_eq!(
        fleet.mb().sql(
            "mysql",
            "SELECT definer FROM information_schema.views WHERE table_schema = 'tenant_a'"
        ),
        "tenant_a@localhost"
    );
    // The counters continue past the ids that came along.
    fleet.write(
        "a",
        "INSERT INTO users (email, name) VALUES ('new@x.test', 'New')",
    );
    assert_eq!(
        fleet.read("a", "SELECT id FROM users WHERE email = 'new@x.test'"),
        ["8"]
    );
    // Same user, same password, on the new server; shut out of the old copy, which
    // is kept whole until --finish.
    assert_eq!(fleet.password("a"), password);
    assert!(fleet.mb().can_login("tenant_a", "tenant_a", &password));
    assert!(!fleet.ma.can_login("tenant_a", "tenant_a", &password));
    assert_eq!(fleet.ma.sql("tenant_a", "SELECT COUNT(*) FROM users"), "2");
    assert_eq!(databases(fleet.mb(), "tenantctl_new_"), "");

    let finished = env.json(&["customer", "move", "a", "--finish"]);
    assert_eq!(finished["outcome"], "finished", "{finished}");
    assert_eq!(databases(&fleet.ma, "tenant_a"), "");
    assert_eq!(users_named(&fleet.ma, "tenant_a"), "0");
    assert_eq!(fleet.read("a", "SELECT COUNT(*) AS n FROM users"), ["3"]);
}

#[test]
fn a_mysql_tenant_moves_to_postgresql_and_back_with_its_values_in_each_engines_types() {
    let fleet = Fleet::new(false, true);
    fleet.customer("p", "ma");
    fill(&fleet, "p");

    let report = fleet.moved("p", "pga");
    assert_eq!(report["outcome"], "moved", "{report}");
    assert_eq!(report["method"], "table-copy", "{report}");
    assert_eq!(report["rows"], 7, "{report}");
    assert_eq!(fleet.server_of("p"), "pga");

    // Read on PostgreSQL, as its own types print them.
    let pga = fleet.pga();
    assert_eq!(
        pga.psql(
            "tenant_p",
            "SELECT string_agg(id || ',' || name || ',' || (created_at AT TIME ZONE 'UTC'), ';' ORDER BY id) FROM users"
        ),
        "1,Ann Ünïcödé ✓,2026-01-02 03:04:05.678901;7,Bob 'quoted' \\ back,2026-02-03 04:05:06"
    );
    assert_eq!(
        pga.psql(
            "tenant_p",
            "SELECT string_agg(sku || ',' || active::text || ',' || pg_typeof(active)::text, ';' ORDER BY id) FROM products"
        ),
        "A-1,true,boolean;B-2,false,boolean"
    );
    assert_eq!(
        fleet.read(
            "p",
            "SELECT order_id, product_id, quantity FROM order_items ORDER BY product_id"
        ),
        ["10|3|1", "10|4|2"]
    );
    // Its identities continue past the ids that came along.
    fleet.write("p", "INSERT INTO orders (user_id, status) VALUES (1, 'open')");
    assert_eq!(fleet.read("p", "SELECT max(id) AS id FROM orders"), ["11"]);
    let finished = fleet.env.json(&["customer", "move", "p", "--finish"]);
    assert_eq!(finished["outcome"], "finished", "{finished}");
    assert_eq!(databases(&fleet.ma, "tenant_p"), "");

    // And back: PostgreSQL → MySQL, table by table, each value as MySQL keeps it.
    let report = fleet.moved("p", "ma");
    assert_eq!(report["outcome"], "moved", "{report}");
    assert_eq!(report["method"], "table-copy", "{report}");
    assert_eq!(
        fleet.read("p", "SELECT id, name, created_at FROM users ORDER BY id"),
        [
            "1|Ann Ünïcödé ✓|2026-01-02 03:04:05.678901",
            "7|Bob 'quoted' \\ back|2026-02-03 04:05:06.000000"
        ]
    );
    assert_eq!(
        fleet.read("p", "SELECT sku, active FROM products ORDER BY id"),
        ["A-1|1", "B-2|0"]
    );
    fleet.write("p", "INSERT INTO orders (user_id, status) VALUES (1, 'open')");
    assert_eq!(fleet.read("p", "SELECT max(id) AS id FROM orders"), ["12"]);
}

#[test]
fn a_local_tenant_moves_to_mysql_and_what_does_not_fit_or_cannot_be_done_is_refused_first() {
    let fleet = Fleet::new(false, false);
    let env = &fleet.env;
    fleet.customer("l", "local");
    fleet.write(
        "l",
        "INSERT INTO users (id, email, name, created_at) VALUES (5, 'l@x.test', 'Lou', '2026-06-07T08:09:10.25Z')",
    );
    fleet.write(
        "l",
        "INSERT INTO products (sku, name, price_cents, active) VALUES ('S', 'Saw', 500, 0)",
    );
    // A role too long for MySQL's VARCHAR(64): refused before anything is frozen.
    let long = "r".repeat(65);
    fleet.write(
        "l",
        &format!("INSERT INTO users (id, email, name, role) VALUES (6, 'm@x.test', 'Max', '{long}')"),
    );
    let run = env.fails(&["customer", "move", "l", "--to", "ma"], 9);
    assert!(
        run.stderr.contains("table users, column role, row id=6"),
        "{run:?}"
    );
    assert_eq!(fleet.server_of("l"), "local");
    assert_eq!(databases(&fleet.ma, "tenantctl_new_"), "");
    assert_eq!(databases(&fleet.ma, "tenant_l"), "");
    fleet.write("l", "DELETE FROM users WHERE id = 6");

    // --online is PostgreSQL's only.
    let run = env.fails(&["customer", "move", "l", "--to", "ma", "--online"], 6);
    assert!(run.stderr.contains("PostgreSQL"), "{run:?}");

    let report = fleet.moved("l", "ma");
    assert_eq!(report["outcome"], "moved", "{report}");
    assert_eq!(report["method"], "table-copy", "{report}");
    assert_eq!(
        fleet.read("l", "SELECT id, name, role, created_at FROM users"),
        ["5|Lou|member|2026-06-07 08:09:10.250000"]
    );
    assert_eq!(fleet.read("l", "SELECT sku, active FROM products"), ["S|0"]);
    fleet.write("l", "INSERT INTO users (email, name) VALUES ('n@x.test', 'N')");
    assert_eq!(
        fleet.read("l", "SELECT id FROM users WHERE email = 'n@x.test'"),
        ["6"]
    );
    env.json(&["customer", "move", "l", "--finish"]);
    // Out of MySQL, now that a MySQL tenant is the source: refused the same way.
    let run = env.fails(&["customer", "move", "l", "--to", "local", "--online"], 6);
    assert!(run.stderr.contains("PostgreSQL"), "{run:?}");
}

#[test]
fn a_mysql_move_killed_part_way_is_undone_by_abort_or_doctor_and_the_source_serves() {
    let fleet = Fleet::new(true, false);
    let env = &fleet.env;
    fleet.customer("k", "ma");
    fill(&fleet, "k");
    let password = fleet.password("k");

    for (step, settle) in [
        ("customer.move:copied", "abort"),
        ("customer.move:published", "doctor"),
    ] {
        env.cmd(&["customer", "move", "k", "--to", "mb"])
            .killed_at_step(step);
        assert!(
            !fleet.ma.can_login("tenant_k", "tenant_k", &password),
            "{step}: the source is frozen while the move is under way"
        );
        match settle {
            "abort" => {
                let report = env
                    .cmd(&["customer", "move", "k", "--abort"])
                    .stderr_has("undone an interrupted customer.move of 'k'")
                    .json();
                assert_eq!(report["outcome"], "aborted", "{step}: {report}");
            }
            _ => {
                let run = env.run(&["doctor", "--fix", "--json"]);
                assert_eq!(run.code, 0, "{step}: {run:?}");
            }
        }
        assert_eq!(fleet.server_of("k"), "ma", "{step}");
        assert!(
            fleet.ma.can_login("tenant_k", "tenant_k", &password),
            "{step}: the source takes its login again"
        );
        fleet.write(
            "k",
            &format!("INSERT INTO users (email, name) VALUES ('{settle}@x.test', 'S')"),
        );
        assert_eq!(databases(fleet.mb(), "tenant"), "", "{step}: nothing left on mb");
        assert_eq!(users_named(fleet.mb(), "tenant_k"), "0", "{step}");
    }
    let report = fleet.moved("k", "mb");
    assert_eq!(report["outcome"], "moved", "{report}");
    assert_eq!(fleet.read("k", "SELECT COUNT(*) AS n FROM users"), ["4"]);
}

/// A V4 for every engine: a column of each MySQL type the move converts.
fn add_types_migration(env: &TestEnv) {
    let dir = env.home.join("tenant-migrations");
    let write = |sub: &str, sql: &str| std::fs::write(dir.join(sub).join("V4__types.sql"), sql).unwrap();
    write(
        "",
        "CREATE TABLE samples (id INTEGER PRIMARY KEY, small INTEGER, flag BOOLEAN, price NUMERIC, \
         ratio REAL, note TEXT, data BLOB, day DATE, happened_at TIMESTAMP, doc JSON);",
    );
    write(
        "postgres",
        "CREATE TABLE samples (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, small INTEGER, \
         flag BOOLEAN, price NUMERIC(12,3), ratio DOUBLE PRECISION, note TEXT, data BYTEA, day DATE, \
         happened_at TIMESTAMPTZ, doc JSONB);",
    );
    write(
        "mysql",
        "CREATE TABLE samples (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, small INT, \
         flag BOOLEAN, price DECIMAL(12,3), ratio DOUBLE, note TEXT, data BLOB, day DATE, \
         happened_at TIMESTAMP(6) NULL, doc JSON);",
    );
}

#[test]
fn every_mysql_type_goes_to_postgresql_and_back_and_an_unsigned_too_wide_is_refused() {
    let fleet = Fleet::new(false, true);
    let env = &fleet.env;
    add_types_migration(env);
    fleet.customer("t", "ma");
    fleet.write(
        "t",
        "INSERT INTO samples VALUES \
         (1, -2147483648, TRUE, 123456789.125, 0.1, 'ünï \"q\"', X'00FF10', '2026-02-28', \
          FROM_UNIXTIME(1772366400.123456), '{\"b\": 1, \"a\": [1, 2]}'), \
         (2, 7, FALSE, -0.001, -1e300, '', X'', '1999-12-31', FROM_UNIXTIME(1), '[]'), \
         (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    );
    // An unsigned id past PostgreSQL's BIGINT: refused before anything changes.
    fleet.write("t", "INSERT INTO samples (id) VALUES (18446744073709551615)");
    let run = env.fails(&["customer", "move", "t", "--to", "pga"], 9);
    assert!(run.stderr.contains("table samples, column id"), "{run:?}");
    assert_eq!(fleet.server_of("t"), "ma");
    fleet.write("t", "DELETE FROM samples WHERE id > 3");

    let report = fleet.moved("t", "pga");
    assert_eq!(report["outcome"], "moved", "{report}");
    assert_eq!(
        fleet.pga().psql(
            "tenant_t",
            "SELECT string_agg(concat_ws('|', id, small, flag, price, ratio, note, encode(data, 'hex'), day, \
             extract(epoch FROM happened_at), doc::text), ';' ORDER BY id) FROM samples"
        ),
        "1|-2147483648|t|123456789.125|0.1|ünï \"q\"|00ff10|2026-02-28|1772366400.123456|{\"a\": [1, 2], \"b\": 1};\
         2|7|f|-0.001|-1e+300|||1999-12-31|1.000000|[];3"
    );
    env.json(&["customer", "move", "t", "--finish"]);

    let report = fleet.moved("t", "ma");
    assert_eq!(report["outcome"], "moved", "{report}");
    assert_eq!(
        fleet.ma.sql(
            "tenant_t",
            "SELECT CONCAT_WS('|', id, small, flag, price, ratio, note, HEX(data), day, \
             UNIX_TIMESTAMP(happened_at), JSON_EXTRACT(doc, '$.a[1]')) FROM samples ORDER BY id"
        ),
        "1|-2147483648|1|123456789.125|0.1|ünï \"q\"|00FF10|2026-02-28|1772366400.123456|2\n\
         2|7|0|-0.001|-1e300|||1999-12-31|1.000000\n3"
    );
}
