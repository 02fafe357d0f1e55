//! `customer move` (SPEC section 7) against throwaway servers: a tenant with every
//! kind of value taken local → pga (database mode) → pgc (database mode, a whole
//! copy) → pgb (schema mode) → local and compared row by row on each side,
//! `--dry-run`, every refusal, a move killed at each of its steps in four
//! directions, a suspended customer, and everything that follows the placement
//! after a move (resolve, db url, db migrate, backup and restore). Each outcome is
//! read from the servers and the tenant files themselves.

use std::path::PathBuf;

use serde_json::Value;

use crate::pg_server::PgServer;
use crate::support::{Run, TestEnv};

/// The database server `pgb` keeps its tenants' schemas in.
const PLATFORM: &str = "platform";

/// A home with `pga` (database mode) and, when asked for, `pgb` (schema mode) and
/// `pgc` (database mode). Customers are placed by name where a test wants them; a
/// tenant is always read where the catalog places it now.
struct Fleet {
    env: TestEnv,
    a: PgServer,
    b: Option<PgServer>,
    c: Option<PgServer>,
}

impl Fleet {
    /// With pga and the `extra` servers (`pgb`, `pgc`), started side by side.
    fn new(extra: &[&str]) -> Self {
        let (a, b, c) = std::thread::scope(|scope| {
            let start = |name: &str| extra.contains(&name).then(|| scope.spawn(PgServer::start));
            let (b, c) = (start("pgb"), start("pgc"));
            (
                PgServer::start(),
                b.map(|b| b.join().unwrap()),
                c.map(|c| c.join().unwrap()),
            )
        });
        let env = TestEnv::initialised();
        let admin = a.admin_login();
        env.json(&["server", "add", "pga", "--url", &a.url(&admin, "postgres")]);
        if let Some(b) = &b {
            let admin = b.admin_login();
            b.psql(
                "postgres",
                &format!("CREATE DATABASE {PLATFORM} OWNER {}", admin.user),
            );
            env.json(&[
                "server",
                "add",
                "pgb",
                "--url",
                &b.url(&admin, PLATFORM),
                "--mode",
                "schema",
            ]);
        }
        if let Some(c) = &c {
            let admin = c.admin_login();
            env.json(&["server", "add", "pgc", "--url", &c.url(&admin, "postgres")]);
        }
        Fleet { env, a, b, c }
    }

    fn b(&self) -> &PgServer {
        self.b.as_ref().expect("a fleet with a schema-mode server")
    }

    /// The server called `name` in the home.
    fn server(&self, name: &str) -> &PgServer {
        match name {
            "pga" => &self.a,
            "pgb" => self.b(),
            "pgc" => self.c.as_ref().expect("a fleet with pgc"),
            other => panic!("no server {other} in this fleet"),
        }
    }

    /// A customer `slug` on `server` (`local`, `pga`, `pgb`).
    fn customer(&self, slug: &str, server: &str) {
        self.env.customer(
            &format!("{slug}@example.com"),
            slug,
            &["--slug", slug, "--server", server],
        );
    }

    /// `customer move` with `args` after the slug, expected to succeed: its report.
    fn moved(&self, slug: &str, args: &[&str]) -> Value {
        let mut all = vec!["customer", "move", slug];
        all.extend_from_slice(args);
        self.env.json(&all)
    }

    /// The same expected to fail with `code` naming `what` on stderr.
    fn refused(&self, slug: &str, args: &[&str], code: i32, what: &str) -> Run {
        let mut all = vec!["customer", "move", slug];
        all.extend_from_slice(args);
        let run = self.env.fails(&all, code);
        assert!(run.stderr.contains(what), "{all:?}: {what:?} not in {run:?}");
        run
    }

    fn show(&self, slug: &str) -> Value {
        self.env.json(&["customer", "show", slug])
    }

    /// The server the catalog places `slug` on now.
    fn server_of(&self, slug: &str) -> String {
        self.show(slug)["placement"]["server"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The tenant's SQLite file as the catalog has it (where it lives now, or where a
    /// killed move left it).
    fn location(&self, slug: &str) -> PathBuf {
        let location: String = self
            .env
            .catalog()
            .query_row("SELECT location FROM customers WHERE slug = ?1", [slug], |r| {
                r.get(0)
            })
            .unwrap();
        PathBuf::from(location)
    }

    fn sqlite(&self, slug: &str) -> rusqlite::Connection {
        rusqlite::Connection::open(self.env.home.join("tenants").join(format!("{slug}.db"))).unwrap()
    }

    /// Every row of `table`, in key order, read from the tenant's database where the
    /// catalog places it, each value in the kind the test gave its column.
    fn rows(&self, slug: &str, table: &Table) -> Vec<Vec<V>> {
        match self.server_of(slug).as_str() {
            "local" => sqlite_rows(&rusqlite::Connection::open(self.location(slug)).unwrap(), table),
            "pgb" => pg_rows(&mut self.b().connect(PLATFORM), &tenant(slug), table),
            server => pg_rows(&mut self.server(server).connect(&tenant(slug)), "public", table),
        }
    }

    /// Every table of `data` read where the tenant lives must equal what it holds.
    fn assert_holds(&self, slug: &str, data: &[(&Table, Vec<Vec<V>>)], context: &str) {
        for (table, expected) in data {
            let expected: Vec<Vec<V>> = expected
                .iter()
                .map(|row| row.iter().map(V::normal).collect())
                .collect();
            let found = self.rows(slug, table);
            let place = format!(
                "{context}: table {} of {slug} on {}",
                table.name,
                self.server_of(slug)
            );
            for (n, (found, expected)) in found.iter().zip(&expected).enumerate() {
                assert_eq!(found, expected, "{place}, row {n}");
            }
            assert_eq!(found.len(), expected.len(), "{place}: rows");
        }
    }

    /// The tenant role's password, as `db url --reveal` gives it.
    fn password(&self, slug: &str) -> String {
        let shown = self.env.json(&["db", "url", slug, "--reveal"]);
        let url = shown["url"].as_str().unwrap();
        let (_, after_scheme) = url.split_once("://").unwrap();
        let (credentials, _) = after_scheme.split_once('@').unwrap();
        credentials.split_once(':').unwrap().1.to_string()
    }

    /// Whether the tenant's role logs in to where the catalog places it.
    fn can_login(&self, slug: &str) -> bool {
        let role = tenant(slug);
        match self.server_of(slug).as_str() {
            "local" => panic!("{slug} lives in the home's folder, which has no logins"),
            "pgb" => self.b().can_login(PLATFORM, &role, &self.password(slug)),
            server => self.server(server).can_login(&role, &role, &self.password(slug)),
        }
    }

    /// The roles that own the tables, sequences and indexes of the tenant on `server`,
    /// joined by commas.
    fn owners(&self, server: &str, slug: &str) -> String {
        let (database, schema) = match server {
            "pgb" => (PLATFORM.to_string(), tenant(slug)),
            _ => (tenant(slug), "public".to_string()),
        };
        self.server(server).psql(
            &database,
            &format!(
                "SELECT string_agg(DISTINCT pg_get_userbyid(c.relowner), ',') FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = '{schema}' AND c.relkind IN ('r', 'S', 'i', 'v')"
            ),
        )
    }

    /// A session of the tenant's application on pga: its role, its password.
    fn app_session(&self, slug: &str) -> postgres::Client {
        postgres::Config::new()
            .host_path(self.a.socket_dir())
            .port(5432)
            .user(&tenant(slug))
            .password(self.password(slug))
            .dbname(&tenant(slug))
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("{slug}'s application cannot connect: {e}"))
    }

    /// Whether the tenant's SQLite file takes a write at once (no move holds its
    /// write lock).
    fn sqlite_writable(&self, slug: &str) -> bool {
        let conn = rusqlite::Connection::open(self.location(slug)).unwrap();
        conn.busy_timeout(std::time::Duration::ZERO).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK").is_ok()
    }

    /// What is on `server` under the tenant's name (database or schema, role, file) or
    /// a staging name: sorted, joined by commas, empty when nothing is.
    fn on_target(&self, server: &str, slug: &str) -> String {
        let name = tenant(slug);
        match server {
            "local" => {
                let names = self.env.names_in(&self.env.home.join("tenants"));
                let file = format!("{slug}.db");
                // A file's -wal and -shm count only without the file.
                let side_file = |n: &str| {
                    names.contains(&file)
                        && [format!("{file}-wal"), format!("{file}-shm")]
                            .iter()
                            .any(|s| s == n)
                };
                let found: Vec<&str> = names
                    .iter()
                    .map(String::as_str)
                    .filter(|n| (n.starts_with(&file) && !side_file(n)) || n.starts_with(".provision-"))
                    .collect();
                found.join(",")
            }
            "pgb" => named_on(self.b(), PLATFORM, &name),
            server => named_on(self.server(server), "postgres", &name),
        }
    }

    fn open_operations(&self) -> i64 {
        self.env.count("SELECT count(*) FROM operations")
    }

    /// `db sql SLUG --write SQL`, expected to succeed.
    fn write(&self, slug: &str, sql: &str) {
        self.env.ok(&["db", "sql", slug, "--write", sql]);
    }

    /// The audit events of `action` for `slug`, newest first.
    fn audited(&self, slug: &str, action: &str) -> Vec<Value> {
        self.env
            .json(&["audit", "--customer", slug, "--action", action])
            .as_array()
            .unwrap()
            .clone()
    }
}

/// The name of a tenant's database or schema and its role.
fn tenant(slug: &str) -> String {
    format!("tenant_{}", slug.replace('-', "_"))
}

/// Databases, schemas (of `database`) and roles on `server` named `name` or with a
/// move's staging prefix, as `kind name`, sorted and joined by commas.
fn named_on(server: &PgServer, database: &str, name: &str) -> String {
    server.psql(
        database,
        &format!(
            "SELECT coalesce(string_agg(n, ',' ORDER BY n), '') FROM (
               SELECT 'database ' || datname AS n FROM pg_database
                WHERE datname = '{name}' OR datname LIKE 'tenantctl\\_new\\_%'
               UNION ALL SELECT 'schema ' || nspname FROM pg_namespace
                WHERE nspname = '{name}' OR nspname LIKE 'tenantctl\\_new\\_%'
               UNION ALL SELECT 'role ' || rolname FROM pg_roles WHERE rolname = '{name}'
             ) found"
        ),
    )
}

/// `t` or `f`: whether `role` on `server` may log in; empty when there is no such role.
fn role_login(server: &PgServer, role: &str) -> String {
    server.psql(
        "postgres",
        &format!("SELECT rolcanlogin FROM pg_roles WHERE rolname = '{role}'"),
    )
}

// ---------------------------------------------------------------------------
// Rows as the tests write and read them.

/// The kind of a column, as the test reads it on either engine.
#[derive(Debug, Clone, Copy)]
enum K {
    Int,
    Real,
    Bool,
    Text,
    Blob,
    /// SQLite text, PostgreSQL timestamptz.
    Time,
}

/// One value. `Stamp` is a timestamp as written into SQLite; readers give `Micros`.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    Int(i64),
    Real(f64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    Stamp(String),
    Micros(i64),
}

impl V {
    fn text(t: &str) -> V {
        V::Text(t.to_string())
    }

    fn stamp(t: &str) -> V {
        V::Stamp(t.to_string())
    }

    /// What a reader gives back for it.
    fn normal(&self) -> V {
        match self {
            V::Stamp(t) => V::Micros(micros(t)),
            other => other.clone(),
        }
    }

    fn sqlite(&self) -> rusqlite::types::Value {
        use rusqlite::types::Value as S;
        match self {
            V::Null => S::Null,
            V::Int(n) => S::Integer(*n),
            V::Real(x) => S::Real(*x),
            V::Bool(b) => S::Integer(i64::from(*b)),
            V::Text(t) | V::Stamp(t) => S::Text(t.clone()),
            V::Bytes(b) => S::Blob(b.clone()),
            V::Micros(_) => unreachable!("only read"),
        }
    }
}

/// Microseconds since the epoch of a UTC timestamp as SQLite tenants keep them:
/// RFC 3339, or `YYYY-MM-DD HH:MM:SS` without an offset.
fn micros(text: &str) -> i64 {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return t.timestamp_micros();
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("{text:?} is no timestamp: {e}"))
        .and_utc()
        .timestamp_micros()
}

struct Table {
    name: &'static str,
    /// The ORDER BY that lists rows in key order.
    key: &'static str,
    columns: &'static [(&'static str, K)],
}

const USERS: Table = Table {
    name: "users",
    key: "id",
    columns: &[
        ("id", K::Int),
        ("email", K::Text),
        ("name", K::Text),
        ("role", K::Text),
        ("created_at", K::Time),
    ],
};

const PRODUCTS: Table = Table {
    name: "products",
    key: "id",
    columns: &[
        ("id", K::Int),
        ("sku", K::Text),
        ("name", K::Text),
        ("price_cents", K::Int),
        ("active", K::Bool),
        ("created_at", K::Time),
    ],
};

const ORDERS: Table = Table {
    name: "orders",
    key: "id",
    columns: &[
        ("id", K::Int),
        ("user_id", K::Int),
        ("status", K::Text),
        ("total_cents", K::Int),
        ("created_at", K::Time),
    ],
};

const ORDER_ITEMS: Table = Table {
    name: "order_items",
    key: "order_id, product_id",
    columns: &[
        ("order_id", K::Int),
        ("product_id", K::Int),
        ("quantity", K::Int),
        ("price_cents", K::Int),
    ],
};

/// The V4 table of [`add_samples_migration`].
const SAMPLES: Table = Table {
    name: "samples",
    key: "id",
    columns: &[
        ("id", K::Int),
        ("data", K::Blob),
        ("note", K::Text),
        ("ratio", K::Real),
        ("flag", K::Bool),
        ("happened_at", K::Time),
    ],
};

/// A table without a primary key, whose rows may repeat.
const TAGS: Table = Table {
    name: "tags",
    key: "label NULLS FIRST, weight NULLS FIRST",
    columns: &[("label", K::Text), ("weight", K::Int)],
};

/// A V4 for both engines: a table with a value of every other kind, all nullable,
/// and one without a key.
fn add_samples_migration(env: &TestEnv) {
    add_migration(
        env,
        "V4__samples.sql",
        "CREATE TABLE samples (
             id          INTEGER PRIMARY KEY AUTOINCREMENT,
             data        BLOB,
             note        TEXT,
             ratio       REAL,
             flag        BOOLEAN,
             happened_at TEXT
         );
         CREATE TABLE tags (label TEXT, weight INTEGER);",
        "CREATE TABLE samples (
             id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
             data        BYTEA,
             note        TEXT,
             ratio       DOUBLE PRECISION,
             flag        BOOLEAN,
             happened_at TIMESTAMPTZ
         );
         CREATE TABLE tags (label TEXT, weight BIGINT);",
    );
}

fn add_migration(env: &TestEnv, name: &str, sqlite: &str, postgres: &str) {
    std::fs::write(env.home.join("tenant-migrations").join(name), sqlite).unwrap();
    std::fs::write(env.home.join("tenant-migrations/postgres").join(name), postgres).unwrap();
}

fn sqlite_rows(conn: &rusqlite::Connection, table: &Table) -> Vec<Vec<V>> {
    use rusqlite::types::ValueRef as S;
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {}",
        names.join(", "),
        table.name,
        table.key
    );
    let mut statement = conn.prepare(&sql).unwrap();
    let mut rows = statement.query([]).unwrap();
    let mut all = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        let cells = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, (name, kind))| {
                // Strict: a value stored as the wrong SQLite type is a wrong value.
                match (row.get_ref(i).unwrap(), kind) {
                    (S::Null, _) => V::Null,
                    (S::Integer(n), K::Int) => V::Int(n),
                    (S::Real(x), K::Real) => V::Real(x),
                    (S::Integer(n @ (0 | 1)), K::Bool) => V::Bool(n == 1),
                    (S::Text(t), K::Text) => V::Text(String::from_utf8(t.to_vec()).unwrap()),
                    (S::Blob(b), K::Blob) => V::Bytes(b.to_vec()),
                    (S::Text(t), K::Time) => V::Micros(micros(std::str::from_utf8(t).unwrap())),
                    (other, kind) => {
                        panic!("{}.{name}: {other:?} stored where a {kind:?} belongs", table.name)
                    }
                }
            })
            .collect();
        all.push(cells);
    }
    all
}

fn pg_rows(client: &mut postgres::Client, schema: &str, table: &Table) -> Vec<Vec<V>> {
    let selected: Vec<String> = table
        .columns
        .iter()
        .map(|(name, kind)| match kind {
            K::Int => format!("{name}::bigint"),
            K::Real => format!("{name}::float8"),
            K::Bool => format!("{name}::boolean"),
            K::Text => format!("{name}::text"),
            K::Blob => format!("{name}::bytea"),
            K::Time => format!("(extract(epoch FROM {name}) * 1000000)::bigint"),
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM \"{schema}\".{} ORDER BY {}",
        selected.join(", "),
        table.name,
        table.key
    );
    client
        .query(&sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| {
            table
                .columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| {
                    let value = match kind {
                        K::Int => row.get::<_, Option<i64>>(i).map(V::Int),
                        K::Real => row.get::<_, Option<f64>>(i).map(V::Real),
                        K::Bool => row.get::<_, Option<bool>>(i).map(V::Bool),
                        K::Text => row.get::<_, Option<String>>(i).map(V::Text),
                        K::Blob => row.get::<_, Option<Vec<u8>>>(i).map(V::Bytes),
                        K::Time => row.get::<_, Option<i64>>(i).map(V::Micros),
                    };
                    value.unwrap_or(V::Null)
                })
                .collect()
        })
        .collect()
}

fn insert(conn: &rusqlite::Connection, table: &Table, rows: &[Vec<V>]) {
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        table.name,
        names.join(", "),
        vec!["?"; names.len()].join(", ")
    );
    for row in rows {
        conn.execute(&sql, rusqlite::params_from_iter(row.iter().map(V::sqlite)))
            .unwrap();
    }
}

/// Rows of every table of the starter schema, of `samples` and `tags`: NULLs, empty
/// text and blobs, bytes 0x00 and 0xff, tabs, newlines, backslashes, COPY's own
/// `\N`, quotes, unicode, fractions of seconds, timestamps written both ways SQLite
/// tenants do, repeated rows without a key, and enough rows to need several batches.
fn every_kind_of_value() -> Vec<(&'static Table, Vec<Vec<V>>)> {
    use V::{Bool, Bytes, Int, Null, Real};
    let t = V::text;
    let s = V::stamp;
    vec![
        (
            &USERS,
            vec![
                vec![
                    Int(1),
                    t("ann@example.com"),
                    t("Ann O'Brien"),
                    t("owner"),
                    s("2026-01-02T03:04:05Z"),
                ],
                vec![
                    Int(2),
                    t("bob@example.com"),
                    t("Bob\tTab\nNew line \\ back\\slash"),
                    t("member"),
                    s("2026-01-02 03:04:06"),
                ],
                vec![
                    Int(5),
                    t("zoë@exämple.com"),
                    t("Zoë \"Z\" ✓ 🚀"),
                    t("member"),
                    s("2026-01-02T05:04:07.123456+02:00"),
                ],
            ],
        ),
        (
            &PRODUCTS,
            vec![
                vec![
                    Int(1),
                    t("SKU-1"),
                    t("Widget"),
                    Int(1999),
                    Bool(true),
                    s("2026-02-01T00:00:00Z"),
                ],
                vec![
                    Int(2),
                    t("SKU-2"),
                    t("Gadget, \"quoted\""),
                    Int(0),
                    Bool(false),
                    s("2026-02-01T00:00:01Z"),
                ],
            ],
        ),
        (
            &ORDERS,
            vec![
                vec![Int(1), Int(1), t("open"), Int(1999), s("2026-03-01T12:00:00Z")],
                vec![Int(2), Int(5), t("paid"), Int(3998), s("2026-03-01T12:30:00Z")],
            ],
        ),
        (
            &ORDER_ITEMS,
            vec![
                vec![Int(1), Int(1), Int(1), Int(1999)],
                vec![Int(2), Int(1), Int(2), Int(1999)],
                vec![Int(2), Int(2), Int(1), Int(0)],
            ],
        ),
        (
            &SAMPLES,
            vec![
                vec![
                    Int(1),
                    Bytes(vec![0x00, 0xff, 0x00, b'\n', b'\\', 0x7f]),
                    t("tab\there\nnew line\r\n\\N back\\slash ünïcødé ✓"),
                    Real(3.25),
                    Bool(true),
                    s("2026-12-03T10:00:00Z"),
                ],
                vec![Int(2), Null, Null, Null, Null, Null],
                vec![
                    Int(3),
                    Bytes(Vec::new()),
                    t(""),
                    Real(-0.1),
                    Bool(false),
                    s("2026-12-03T10:00:00.250000Z"),
                ],
                vec![
                    Int(9),
                    Bytes((0..=255).collect()),
                    t("\\N"),
                    Real(123456789.125e10),
                    Bool(true),
                    s("1999-12-31T23:59:59Z"),
                ],
            ]
            .into_iter()
            .chain((100..1400).map(generated_sample))
            .collect(),
        ),
        (
            &TAGS,
            vec![
                vec![Null, Int(3)],
                vec![t("blue"), Null],
                vec![t("red"), Int(1)],
                vec![t("red"), Int(1)],
            ],
        ),
    ]
}

/// Sample row `i` of many, each a little different.
fn generated_sample(i: i64) -> Vec<V> {
    let at = chrono::DateTime::from_timestamp(1_767_225_600 + i * 61, 0).unwrap();
    vec![
        V::Int(i),
        V::Bytes(vec![(i % 256) as u8; (i % 7) as usize]),
        V::Text(format!("row {i}\t{}", "x".repeat((i % 50) as usize))),
        V::Real(i as f64 / 8.0),
        match i % 5 {
            0 => V::Null,
            _ => V::Bool(i % 3 == 0),
        },
        V::Stamp(at.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    ]
}

/// A tenant filled with [`every_kind_of_value`], written straight into its file.
fn fill(fleet: &Fleet, slug: &str) -> Vec<(&'static Table, Vec<Vec<V>>)> {
    let data = every_kind_of_value();
    let mut conn = fleet.sqlite(slug);
    let tx = conn.transaction().unwrap();
    for (table, rows) in &data {
        insert(&tx, table, rows);
    }
    tx.commit().unwrap();
    data
}

/// The highest id in `rows` (of a table keyed by `id`).
fn max_id(rows: &[Vec<V>]) -> i64 {
    rows.iter()
        .filter_map(|row| match row[0] {
            V::Int(n) => Some(n),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

fn table_rows<'d>(data: &'d mut [(&'static Table, Vec<Vec<V>>)], name: &str) -> &'d mut Vec<Vec<V>> {
    &mut data.iter_mut().find(|(t, _)| t.name == name).unwrap().1
}

/// The tables and row counts a move report lists, by name; copied table by table,
/// each must come after those its foreign keys point at (they are filled first).
fn tables_of(report: &Value, method: &str) -> Vec<(String, u64)> {
    let listed: Vec<(String, u64)> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_string(),
                t["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    let position = |name: &str| listed.iter().position(|(t, _)| t == name);
    let filled_in_order = match method {
        "dump-restore" => &[][..],
        _ => &[
            ("orders", "users"),
            ("order_items", "orders"),
            ("order_items", "products"),
        ][..],
    };
    for (table, referenced) in filled_in_order {
        assert!(
            position(referenced) < position(table),
            "{referenced} is filled before {table}: {report}"
        );
    }
    let mut sorted = listed.clone();
    sorted.sort();
    sorted
}

fn expected_tables(data: &[(&Table, Vec<Vec<V>>)]) -> Vec<(String, u64)> {
    let mut tables: Vec<(String, u64)> = data
        .iter()
        .map(|(t, rows)| (t.name.to_string(), rows.len() as u64))
        .collect();
    tables.sort();
    tables
}

// ---------------------------------------------------------------------------

/// The round trip: every value arrives as it was on each engine and mode, the ids
/// go on past the highest, the old copy waits frozen until `--finish` drops it.
#[test]
fn every_kind_of_value_survives_moves_across_engines_and_modes_and_back_home() {
    let fleet = Fleet::new(&["pgb", "pgc"]);
    let env = &fleet.env;
    fleet.customer(SLUG, "local");
    add_samples_migration(env);
    let migrated = env.json(&["db", "migrate"]);
    assert_eq!(migrated[0]["to"], 4, "{migrated}");
    let mut data = fill(&fleet, SLUG);
    fleet.assert_holds(SLUG, &data, "before any move");

    let mut password = None;
    let hops = [
        ("local", "pga", "table-copy"),
        ("pga", "pgc", "dump-restore"),
        ("pgc", "pgb", "table-copy"),
        ("pgb", "local", "table-copy"),
    ];
    for (n, (from, to, method)) in hops.into_iter().enumerate() {
        let context = format!("move {n}: {from} → {to}");
        // The plan names what the move will do (a dry run brings the target's
        // template up to date first, as a move does).
        {
            let plan = fleet.moved(SLUG, &["--to", to, "--dry-run"]);
            assert_eq!(plan["outcome"], "planned", "{context}: {plan}");
            assert_eq!(plan["method"], method, "{context}: {plan}");
            assert_eq!(
                tables_of(&plan, method),
                expected_tables(&data),
                "{context}: {plan}"
            );
        }
        if from == "pga" {
            // Made by the tenant itself, not by the migrations.
            fleet.write(
                SLUG,
                "CREATE VIEW paid_orders AS SELECT id FROM orders WHERE status = 'paid'",
            );
        }
        // An application mid-transaction on the source is ended by the freeze, its
        // write never committed, never copied.
        let mut app = (from == "pga").then(|| {
            let mut app = fleet.app_session(SLUG);
            app.batch_execute("BEGIN; INSERT INTO users (email, name) VALUES ('uncommitted@x.test', 'U')")
                .unwrap();
            app
        });
        let report = fleet.moved(SLUG, &["--to", to]);
        if let Some(app) = &mut app {
            assert!(
                app.batch_execute("COMMIT").is_err(),
                "{context}: its session was ended"
            );
        }
        assert_move_report(&report, from, to, method, &data, &context);

        // The catalog places it at the target, which holds every row as it was.
        let shown = fleet.show(SLUG);
        assert_eq!(shown["status"], "active", "{shown}");
        assert_eq!(shown["placement"], report["to"], "{shown}");
        assert_eq!(shown["move"]["state"], "moved", "{shown}");
        assert_eq!(shown["move"]["source_kept"], report["from"], "{shown}");
        assert_eq!(shown["schema_version"], 4, "{shown}");
        fleet.assert_holds(SLUG, &data, &context);
        let event = &fleet.audited(SLUG, "customer.move")[0];
        assert_eq!(event["details"]["from"]["server"], from, "{event}");
        assert_eq!(event["details"]["to"]["server"], to, "{event}");
        assert_eq!(event["details"]["method"], method, "{event}");
        assert_eq!(event["details"]["rows"], report["rows"], "{event}");

        if to != "local" {
            // Its application's password goes along between servers.
            let now = fleet.password(SLUG);
            if from != "local" {
                assert_eq!(password.as_deref(), Some(now.as_str()), "{context}");
            }
            assert!(fleet.can_login(SLUG), "{context}");
            password = Some(now);
            assert_eq!(fleet.owners(to, SLUG), tenant(SLUG), "{context}");
        }
        if to == "pgc" {
            // A whole copy takes what the migrations did not make too.
            assert_eq!(
                fleet.server("pgc").psql(
                    &tenant(SLUG),
                    "SELECT viewowner FROM pg_views WHERE viewname = 'paid_orders'"
                ),
                tenant(SLUG),
                "{context}"
            );
        }

        // The uncommitted insert above took a user id from pga's sequence: a whole
        // copy carries that sequence as it is; a table copy sets it past the highest.
        let ids_taken = i64::from(from == "pga" && method == "dump-restore");
        write_after_move(&fleet, &mut data, n, ids_taken);
        fleet.assert_holds(SLUG, &data, &format!("{context}, then written"));
        assert_kept_then_finish(&fleet, &report, from, &context);
        fleet.assert_holds(SLUG, &data, &format!("{context}, finished"));
    }

    // Home again: every value is stored as the SQLite type it started as (the
    // strict reader above), and the file is a tenant like any other.
    let conn = fleet.sqlite(SLUG);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let version: i64 = conn
        .query_row("SELECT max(version) FROM refinery_schema_history", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(version, 4);
    fleet.refused(SLUG, &["--finish"], 6, "no finished move");
    let run = env.run(&["doctor", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
}

/// The customer of the round trip: a slug with a dash, whose names on the servers
/// have an underscore.
const SLUG: &str = "acme-co";

fn assert_move_report(
    report: &Value,
    from: &str,
    to: &str,
    method: &str,
    data: &[(&Table, Vec<Vec<V>>)],
    context: &str,
) {
    assert_eq!(report["outcome"], "moved", "{context}: {report}");
    assert_eq!(report["customer"], SLUG);
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["online"], false);
    assert_eq!(report["method"], method, "{context}: {report}");
    assert_eq!(report["from"]["server"], from, "{report}");
    assert_eq!(report["to"]["server"], to, "{report}");
    assert_eq!(report["source_kept"], report["from"], "{report}");
    assert_eq!(
        tables_of(report, method),
        expected_tables(data),
        "{context}: {report}"
    );
    let total: usize = data.iter().map(|(_, rows)| rows.len()).sum();
    assert_eq!(report["rows"], total as u64, "{report}");
    assert!(
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| !t["digest"].as_str().unwrap().is_empty()),
        "{report}"
    );
    assert!(report["freeze_ms"].is_u64(), "{report}");
    assert_eq!(report["expected_freeze"], Value::Null, "{report}");
}

/// A user and a sample written without ids after move `n`: each takes the id after
/// the highest (the sequences were set past it), a user's after `users_taken` more
/// that were taken and never committed. Added to `data`.
fn write_after_move(fleet: &Fleet, data: &mut [(&'static Table, Vec<Vec<V>>)], n: usize, users_taken: i64) {
    let at = format!("2026-05-05T05:05:0{n}Z");
    fleet.write(
        SLUG,
        &format!(
            "INSERT INTO users (email, name, created_at) VALUES ('late{n}@example.com', 'Late', '{at}')"
        ),
    );
    fleet.write(
        SLUG,
        &format!("INSERT INTO samples (note) VALUES ('after move {n}')"),
    );
    let users = table_rows(data, "users");
    let next = max_id(users) + 1 + users_taken;
    users.push(vec![
        V::Int(next),
        V::Text(format!("late{n}@example.com")),
        V::text("Late"),
        V::text("member"),
        V::Stamp(at),
    ]);
    let samples = table_rows(data, "samples");
    let next = max_id(samples) + 1;
    samples.push(vec![
        V::Int(next),
        V::Null,
        V::Text(format!("after move {n}")),
        V::Null,
        V::Null,
        V::Null,
    ]);
}

/// The old copy stays, frozen, until `--finish` drops it.
fn assert_kept_then_finish(fleet: &Fleet, report: &Value, from: &str, context: &str) {
    let name = tenant(SLUG);
    let kept_file = fleet.env.home.join(format!("tenants/{SLUG}.db"));
    match from {
        "local" => assert!(kept_file.is_file(), "{context}"),
        "pgb" => assert_eq!(
            fleet.on_target(from, SLUG),
            format!("role {name},schema {name}"),
            "{context}"
        ),
        _ => assert_eq!(
            fleet.on_target(from, SLUG),
            format!("database {name},role {name}"),
            "{context}"
        ),
    }
    if from != "local" {
        assert_eq!(role_login(fleet.server(from), &name), "f", "{context}");
    }
    let finished = fleet.moved(SLUG, &["--finish"]);
    assert_eq!(finished["outcome"], "finished", "{finished}");
    assert_eq!(finished["from"], report["from"], "{finished}");
    assert_eq!(finished["to"], report["to"], "{finished}");
    match from {
        "local" => assert!(!kept_file.exists(), "{context}: the old file is gone"),
        server => assert_eq!(fleet.on_target(server, SLUG), "", "{context}"),
    }
    let event = &fleet.audited(SLUG, "customer.move.finish")[0];
    assert_eq!(event["details"]["dropped"]["server"], from, "{event}");
    assert_eq!(fleet.show(SLUG)["move"], Value::Null);
    assert_eq!(fleet.open_operations(), 0, "{context}");
}

#[test]
fn a_dry_run_reports_the_plan_and_changes_nothing() {
    let fleet = Fleet::new(&[]);
    let env = &fleet.env;
    fleet.customer("l1", "local");
    fleet.customer("a1", "pga");
    for slug in ["l1", "a1"] {
        for n in 0..3 {
            fleet.write(
                slug,
                &format!("INSERT INTO users (email, name) VALUES ('u{n}@{slug}.test', 'U')"),
            );
        }
    }
    let audit_before = env.json(&["audit"]);
    for (slug, to) in [("l1", "pga"), ("a1", "local")] {
        let plan = fleet.moved(slug, &["--to", to, "--dry-run"]);
        assert_eq!(plan["outcome"], "planned", "{plan}");
        assert_eq!(plan["dry_run"], true, "{plan}");
        assert_eq!(plan["method"], "table-copy", "{plan}");
        assert_eq!(plan["to"]["server"], to, "{plan}");
        assert_eq!(plan["source_kept"], Value::Null, "{plan}");
        assert_eq!(plan["freeze_ms"], Value::Null, "{plan}");
        assert!(plan["expected_freeze"].is_string(), "{plan}");
        assert_eq!(plan["rows"], 3, "{plan}");
        let tables = tables_of(&plan, "table-copy");
        assert_eq!(
            tables,
            [
                ("order_items".to_string(), 0),
                ("orders".to_string(), 0),
                ("products".to_string(), 0),
                ("users".to_string(), 3)
            ],
            "{plan}"
        );
        assert_eq!(fleet.on_target(to, slug), "", "{slug}: nothing built on {to}");
        let shown = fleet.show(slug);
        assert_eq!(shown["placement"], plan["from"], "{shown}");
        assert_eq!(shown["move"], Value::Null, "{shown}");
        assert_eq!(shown["status"], "active", "{shown}");
    }
    assert_eq!(env.json(&["audit"]), audit_before, "a dry run audits nothing");
    assert_eq!(fleet.on_target("local", "l1"), "l1.db");
    assert!(fleet.sqlite_writable("l1"));
    assert!(fleet.can_login("a1"));
    assert_eq!(fleet.open_operations(), 0);
}

/// Every value that cannot mean the same on PostgreSQL refuses the move, naming
/// where it is, before anything is frozen or left on the target; a table or column
/// the target's migrations lack likewise.
#[test]
fn values_tables_and_columns_that_cannot_move_refuse_it_before_anything_happens() {
    let fleet = Fleet::new(&[]);
    let env = &fleet.env;
    fleet.customer("l1", "local");
    add_migration(
        env,
        "V4__settings.sql",
        "CREATE TABLE settings (id INTEGER PRIMARY KEY, doc TEXT, code TEXT);",
        "CREATE TABLE settings (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, doc JSONB,
                                code VARCHAR(3) NOT NULL DEFAULT 'x');",
    );
    env.json(&["db", "migrate"]);
    let conn = fleet.sqlite("l1");
    conn.execute_batch(
        "INSERT INTO users (id, email, name) VALUES (7, 'u@l1.test', 'U');
         INSERT INTO products (id, sku, name, price_cents) VALUES (3, 'S', 'P', 5);
         INSERT INTO settings (id, doc, code) VALUES (4, '{\"a\": [1, 2]}', 'eu');",
    )
    .unwrap();
    let cases = [
        (
            "UPDATE products SET price_cents = 'abc' WHERE id = 3",
            "table products, column price_cents, row id=3: 'abc' is not an integer",
            "UPDATE products SET price_cents = 5 WHERE id = 3",
        ),
        (
            "UPDATE users SET created_at = 'yesterday' WHERE id = 7",
            "table users, column created_at, row id=7: 'yesterday' is not a timestamp",
            "UPDATE users SET created_at = '2026-01-01T00:00:00Z' WHERE id = 7",
        ),
        (
            "UPDATE settings SET doc = '{\"a\": ' WHERE id = 4",
            "table settings, column doc, row id=4: not valid JSON",
            "UPDATE settings SET doc = '{}' WHERE id = 4",
        ),
        (
            "UPDATE users SET name = CAST(x'41ff42' AS TEXT) WHERE id = 7",
            "table users, column name, row id=7: bytes that are not UTF-8 text",
            "UPDATE users SET name = 'U' WHERE id = 7",
        ),
        (
            "UPDATE users SET name = 'a' || char(0) || 'b' WHERE id = 7",
            "table users, column name, row id=7: text holding a NUL character",
            "UPDATE users SET name = 'U' WHERE id = 7",
        ),
        (
            "UPDATE products SET active = 2 WHERE id = 3",
            "table products, column active, row id=3: an integer cannot be stored in a boolean column",
            "UPDATE products SET active = 0 WHERE id = 3",
        ),
        (
            "UPDATE settings SET code = 'europe' WHERE id = 4",
            "table settings, column code, row id=4: 6 characters do not fit a character varying(3) column",
            "UPDATE settings SET code = 'eu' WHERE id = 4",
        ),
        (
            "UPDATE settings SET code = NULL WHERE id = 4",
            "table settings, column code, row id=4: NULL in a NOT NULL column",
            "UPDATE settings SET code = 'eu' WHERE id = 4",
        ),
        (
            "ALTER TABLE users ADD COLUMN nickname TEXT",
            "column users.nickname is not in the target's schema",
            "ALTER TABLE users DROP COLUMN nickname",
        ),
        (
            "CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (1)",
            "table extra is not in the target's schema",
            "DROP TABLE extra",
        ),
    ];
    for (break_it, message, fix_it) in cases {
        conn.execute_batch(break_it).unwrap();
        for dry_run in [true, false] {
            let args: &[&str] = match dry_run {
                true => &["--to", "pga", "--dry-run"],
                false => &["--to", "pga"],
            };
            fleet.refused("l1", args, 9, message);
            assert_eq!(fleet.on_target("pga", "l1"), "", "{message}: nothing left on pga");
            assert!(fleet.sqlite_writable("l1"), "{message}: not frozen");
            assert_eq!(fleet.server_of("l1"), "local", "{message}");
            assert_eq!(fleet.show("l1")["move"], Value::Null, "{message}");
            assert_eq!(fleet.open_operations(), 0, "{message}");
        }
        conn.execute_batch(fix_it).unwrap();
    }
    assert!(fleet.audited("l1", "customer.move").is_empty());

    // An integer beyond PostgreSQL's 4-byte `integer` of order_items.quantity is
    // refused by the same check, before the freeze: the column's declared width
    // counts, not only its kind.
    conn.execute_batch(
        "INSERT INTO orders (id, user_id) VALUES (1, 7);
         INSERT INTO order_items VALUES (1, 3, 3000000000, 1);",
    )
    .unwrap();
    let run = env.run(&["customer", "move", "l1", "--to", "pga"]);
    assert_eq!(run.code, 9, "{run:?}");
    assert!(
        run.stderr.contains("order_items, column quantity") && run.stderr.contains("out of range"),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "{run:?}");
    assert_eq!(fleet.on_target("pga", "l1"), "", "nothing left on pga");
    assert!(fleet.sqlite_writable("l1"), "not frozen");
    assert_eq!(fleet.server_of("l1"), "local");
    assert_eq!(fleet.show("l1")["move"], Value::Null);
    assert_eq!(fleet.open_operations(), 0);
    assert!(fleet.audited("l1", "customer.move").is_empty());
    conn.execute_batch("UPDATE order_items SET quantity = 3").unwrap();
    drop(conn);
    // Once every value converts, the same move goes through.
    let report = fleet.moved("l1", &["--to", "pga"]);
    assert_eq!(report["outcome"], "moved", "{report}");
    assert_eq!(
        fleet.a.psql(
            "tenant_l1",
            "SELECT (SELECT doc::text FROM settings) || ' ' || (SELECT quantity FROM order_items)"
        ),
        "{} 3"
    );
}

/// Refusals of a move that is not to be made (exit 6) or whose target name is taken
/// (exit 4): nothing is built, the source is not frozen.
#[test]
fn moves_that_cannot_be_made_are_refused_and_leave_source_and_target_alone() {
    let fleet = Fleet::new(&["pgb"]);
    let env = &fleet.env;
    fleet.customer("l1", "local");
    fleet.customer("l2", "local");
    fleet.customer("a1", "pga");
    fleet.write("l1", "INSERT INTO users (email, name) VALUES ('u@l1.test', 'U')");
    let untouched = |context: &str| {
        for server in ["pga", "pgb"] {
            assert_eq!(fleet.on_target(server, "l1"), "", "{context}: {server}");
        }
        assert_eq!(fleet.server_of("l1"), "local", "{context}");
        assert!(fleet.sqlite_writable("l1"), "{context}");
        assert_eq!(fleet.open_operations(), 0, "{context}");
    };

    // Nowhere, or where it already is.
    fleet.refused("l1", &["--to", "nope"], 3, "nope");
    fleet.refused("l1", &["--to", "local"], 6, "already lives on server local");
    fleet.refused("a1", &["--to", "pga"], 6, "already lives on server pga");
    assert!(fleet.can_login("a1"));
    untouched("to where it is");

    // Nothing under way, nothing kept.
    fleet.refused("l1", &["--abort"], 6, "no move of customer l1 is under way");
    fleet.refused("l1", &["--finish"], 6, "has no finished move");
    assert!(fleet.sqlite_writable("l1"));

    // The target's names are taken: a database, a role, a schema, a file.
    fleet.a.psql("postgres", "CREATE DATABASE tenant_l1");
    fleet.a.psql("tenant_l1", "CREATE TABLE not_ours (x int)");
    let run = fleet.refused(
        "l1",
        &["--to", "pga"],
        4,
        "tenant_l1 already exists on server pga",
    );
    assert!(run.stderr.contains("database"), "{run:?}");
    assert_eq!(
        fleet.on_target("pga", "l1"),
        "database tenant_l1",
        "left as it was"
    );
    assert_eq!(fleet.a.psql("tenant_l1", "SELECT count(*) FROM not_ours"), "0");
    fleet.a.psql("postgres", "DROP DATABASE tenant_l1");
    fleet
        .a
        .psql("postgres", "CREATE ROLE tenant_l1 LOGIN PASSWORD 'theirs'");
    let run = fleet.refused("l1", &["--to", "pga"], 4, "a role named tenant_l1 already exists");
    assert!(run.stderr.contains("pga"), "{run:?}");
    assert_eq!(fleet.on_target("pga", "l1"), "role tenant_l1");
    assert!(
        fleet.a.can_login("postgres", "tenant_l1", "theirs"),
        "their role is theirs still"
    );
    fleet.a.psql("postgres", "DROP ROLE tenant_l1");
    fleet.b().psql(PLATFORM, "CREATE SCHEMA tenant_l1");
    fleet.refused(
        "l1",
        &["--to", "pgb"],
        4,
        "tenant_l1 already exists on server pgb",
    );
    assert_eq!(fleet.on_target("pgb", "l1"), "schema tenant_l1");
    fleet.b().psql(PLATFORM, "DROP SCHEMA tenant_l1");
    untouched("target taken");
    let stray = env.home.join("tenants/a1.db");
    std::fs::write(&stray, b"not a tenant of this home").unwrap();
    fleet.refused("a1", &["--to", "local"], 4, "already exists");
    assert_eq!(std::fs::read(&stray).unwrap(), b"not a tenant of this home");
    assert!(fleet.can_login("a1"));
    assert_eq!(fleet.on_target("pga", "a1"), "database tenant_a1,role tenant_a1");
    std::fs::remove_file(&stray).unwrap();

    // A deleted customer stays where its data waits.
    env.ok(&["customer", "delete", "l2", "--confirm", "l2"]);
    fleet.refused("l2", &["--to", "pga"], 6, "customer l2 is deleted");
    assert_eq!(fleet.on_target("pga", "l2"), "");

    // Behind the newest migration: the target would be built ahead of its data.
    add_migration(
        env,
        "V4__notes.sql",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
        "CREATE TABLE notes (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, body TEXT);",
    );
    let run = fleet.refused("l1", &["--to", "pga"], 6, "tenant migration V3");
    assert!(run.stderr.contains("db migrate l1"), "{run:?}");
    untouched("behind the migrations");
    env.json(&["db", "migrate"]);

    // A finished move keeps its old copy: no other move until --finish.
    let report = fleet.moved("a1", &["--to", "pgb"]);
    assert_eq!(report["outcome"], "moved", "{report}");
    let run = fleet.refused("a1", &["--to", "local"], 6, "is kept until the move is finished");
    assert!(run.stderr.contains("customer move a1 --finish"), "{run:?}");
    fleet.refused("a1", &["--to", "pga"], 6, "is kept until the move is finished");
    fleet.refused("a1", &["--abort"], 6, "is complete");
    assert_eq!(fleet.on_target("local", "a1"), "");
    assert_eq!(fleet.server_of("a1"), "pgb");
    assert!(fleet.can_login("a1"));
    fleet.moved("a1", &["--finish"]);
    fleet.refused("a1", &["--finish"], 6, "has no finished move");
    assert_eq!(fleet.on_target("pga", "a1"), "");
    untouched("at the end");
}

// ---------------------------------------------------------------------------
// Killed moves.

const STEPS: [&str; 7] = [
    "customer.move:provisioned",
    "customer.move:recorded",
    "customer.move:frozen",
    "customer.move:copied",
    "customer.move:publishing",
    "customer.move:published",
    "customer.move:flipped",
];

/// How a killed move is settled.
#[derive(Debug, Clone, Copy)]
enum Settle {
    NextMove,
    Abort,
    Doctor,
}

const SETTLE: [Settle; 3] = [Settle::NextMove, Settle::Abort, Settle::Doctor];

/// One move killed at a step: who, from where, to where.
struct Killed<'f> {
    fleet: &'f Fleet,
    slug: &'f str,
    from: &'f str,
    to: &'f str,
    step: &'f str,
}

impl Killed<'_> {
    /// Whether the kill came after the move was in the ledger.
    fn recorded(&self) -> bool {
        self.step != "customer.move:provisioned"
    }

    /// Whether the kill came after the source was frozen.
    fn frozen(&self) -> bool {
        !matches!(self.step, "customer.move:provisioned" | "customer.move:recorded")
    }

    /// Right after a kill before the flip: still placed at the source, shown as
    /// moving once recorded, frozen once frozen, something of the move on the target.
    fn assert_interrupted(&self) {
        let (fleet, step) = (self.fleet, self.step);
        let shown = fleet.show(self.slug);
        assert_eq!(shown["placement"]["server"], self.from, "{step}: {shown}");
        if self.recorded() {
            assert_eq!(shown["status"], "moving", "{step}: {shown}");
            assert_eq!(shown["move"]["state"], "moving", "{step}: {shown}");
            assert_eq!(shown["move"]["to"]["server"], self.to, "{step}: {shown}");
            assert_eq!(fleet.open_operations(), 1, "{step}");
        } else {
            assert_eq!(shown["status"], "active", "{step}: {shown}");
            assert_eq!(shown["move"], Value::Null, "{step}: {shown}");
            assert_eq!(fleet.open_operations(), 0, "{step}");
        }
        assert_ne!(
            fleet.on_target(self.to, self.slug),
            "",
            "{step}: the kill left nothing to undo"
        );
        if self.from != "local" {
            let login = role_login(fleet.server(self.from), &tenant(self.slug));
            assert_eq!(login, if self.frozen() { "f" } else { "t" }, "{step}");
        }
    }

    /// Settles the kill the way asked; returns the report when that was a move.
    fn settle(&self, how: Settle) -> Option<Value> {
        let (env, slug, context) = (&self.fleet.env, self.slug, format!("{}, {how:?}", self.step));
        let undone = format!("undone an interrupted customer.move of '{slug}'");
        match how {
            Settle::NextMove => {
                let mut cmd = env.cmd(&["customer", "move", slug, "--to", self.to]);
                if self.recorded() {
                    cmd = cmd.stderr_has(&undone);
                }
                Some(cmd.json())
            }
            Settle::Abort if self.recorded() => {
                let report = env
                    .cmd(&["customer", "move", slug, "--abort"])
                    .stderr_has(&undone)
                    .json();
                assert_eq!(report["outcome"], "aborted", "{context}: {report}");
                assert_eq!(report["from"]["server"], self.from, "{context}: {report}");
                assert_eq!(report["to"]["server"], self.to, "{context}: {report}");
                // The undo is in the audit log, with the step the move had reached.
                let undone = self.fleet.audited(slug, "customer.move.undo");
                assert_eq!(undone.len(), 1, "{context}: {undone:?}");
                assert_eq!(undone[0]["details"]["to"]["server"], self.to, "{context}");
                None
            }
            Settle::Abort => {
                // Nothing was recorded, so no move is under way; the staging copy
                // goes with the command's recovery all the same.
                self.fleet.refused(slug, &["--abort"], 6, "no move");
                None
            }
            Settle::Doctor => {
                let run = env.run(&["doctor", "--fix", "--json"]);
                assert_eq!(run.code, 0, "{context}: {run:?}");
                None
            }
        }
    }

    /// After an undo: at the source as before, writable, nothing left on the target.
    fn assert_undone(&self, how: Settle) {
        let (fleet, slug) = (self.fleet, self.slug);
        let context = format!("{}, {how:?}", self.step);
        let shown = fleet.show(slug);
        assert_eq!(shown["placement"]["server"], self.from, "{context}: {shown}");
        assert_eq!(shown["status"], "active", "{context}: {shown}");
        assert_eq!(shown["move"], Value::Null, "{context}: {shown}");
        assert_eq!(
            fleet.on_target(self.to, slug),
            "",
            "{context}: left on {}",
            self.to
        );
        assert_eq!(fleet.open_operations(), 0, "{context}");
        match self.from {
            "local" => assert!(fleet.sqlite_writable(slug), "{context}"),
            _ => assert!(fleet.can_login(slug), "{context}: the login is let in again"),
        }
    }

    /// Moved: at the target with `emails`, the old copy kept and frozen; then the
    /// move is finished and the old copy gone.
    fn assert_moved_then_finish(&self, emails: &[V]) {
        let (fleet, slug, step) = (self.fleet, self.slug, self.step);
        let shown = fleet.show(slug);
        assert_eq!(shown["placement"]["server"], self.to, "{step}: {shown}");
        assert_eq!(shown["status"], "active", "{step}: {shown}");
        assert_eq!(shown["move"]["state"], "moved", "{step}: {shown}");
        assert_eq!(
            shown["move"]["source_kept"]["server"], self.from,
            "{step}: {shown}"
        );
        assert_eq!(fleet.open_operations(), 0, "{step}");
        let moved: Vec<V> = fleet
            .rows(slug, &USERS)
            .into_iter()
            .map(|row| row[1].clone())
            .collect();
        assert_eq!(moved, emails, "{step}");
        match self.from {
            "local" => {
                let old = fleet.env.home.join(format!("tenants/{slug}.db"));
                assert!(old.is_file(), "{step}: the old file is kept");
                // Sealed: a stale application's write fails instead of being lost.
                let conn = rusqlite::Connection::open(&old).unwrap();
                let err = conn
                    .execute(
                        "INSERT INTO users (email, name) VALUES ('late@x.test', 'Late')",
                        [],
                    )
                    .unwrap_err();
                assert!(err.to_string().contains("has moved"), "{step}: {err}");
            }
            from => assert_eq!(
                role_login(fleet.server(from), &tenant(slug)),
                "f",
                "{step}: the old copy is kept frozen"
            ),
        }
        if self.to != "local" {
            assert!(fleet.can_login(slug), "{step}");
        }
        fleet.write(
            slug,
            "INSERT INTO users (email, name) VALUES ('third@x.test', 'T')",
        );
        fleet.moved(slug, &["--finish"]);
        assert_eq!(
            fleet.on_target(self.from, slug),
            "",
            "{step}: the old copy is dropped"
        );
    }
}

/// For each step, a fresh customer on `from` whose move to `to` is killed there.
/// Before the flip the move is undone (by the next move, `--abort` or `doctor --fix`,
/// in turn from `first`), and then the move goes through. Killed after the flip,
/// the move is done.
fn killed_at_every_step(fleet: &Fleet, prefix: &str, from: &str, to: &str, first: usize) {
    for (n, step) in STEPS.into_iter().enumerate() {
        let slug = format!("{prefix}{n}");
        let killed = Killed {
            fleet,
            slug: &slug,
            from,
            to,
            step,
        };
        fleet.customer(&slug, from);
        fleet.write(
            &slug,
            "INSERT INTO users (email, name) VALUES ('first@x.test', 'F')",
        );
        let mut emails = vec![V::text("first@x.test")];
        fleet
            .env
            .cmd(&["customer", "move", &slug, "--to", to])
            .killed_at_step(step);
        if step != "customer.move:flipped" {
            killed.assert_interrupted();
            let how = SETTLE[(n + first) % SETTLE.len()];
            let report = match killed.settle(how) {
                Some(report) => report,
                None => {
                    killed.assert_undone(how);
                    fleet.write(
                        &slug,
                        "INSERT INTO users (email, name) VALUES ('second@x.test', 'S')",
                    );
                    emails.push(V::text("second@x.test"));
                    fleet.moved(&slug, &["--to", to])
                }
            };
            assert_eq!(report["outcome"], "moved", "{step}, {how:?}: {report}");
        }
        killed.assert_moved_then_finish(&emails);
    }
    let run = fleet.env.run(&["doctor", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn a_move_from_local_killed_at_any_step_is_undone_or_done() {
    let fleet = Fleet::new(&[]);
    killed_at_every_step(&fleet, "l", "local", "pga", 0);
}

#[test]
fn a_move_between_servers_killed_at_any_step_is_undone_or_done() {
    let fleet = Fleet::new(&["pgb"]);
    killed_at_every_step(&fleet, "a", "pga", "pgb", 1);
}

#[test]
fn a_whole_copy_between_database_mode_servers_killed_at_any_step_is_undone_or_done() {
    let fleet = Fleet::new(&["pgc"]);
    killed_at_every_step(&fleet, "c", "pga", "pgc", 0);
}

#[test]
fn a_move_from_schema_mode_to_local_killed_at_any_step_is_undone_or_done() {
    let fleet = Fleet::new(&["pgb"]);
    killed_at_every_step(&fleet, "b", "pgb", "local", 2);
}

/// A suspended customer's role stays shut through a move, a killed one's undoing,
/// and at the target, until the customer is reactivated.
#[test]
fn a_suspended_customer_moves_with_its_login_shut() {
    let fleet = Fleet::new(&["pgb"]);
    let env = &fleet.env;
    fleet.customer("a1", "pga");
    fleet.customer("l1", "local");
    for slug in ["a1", "l1"] {
        fleet.write(slug, "INSERT INTO users (email, name) VALUES ('u@x.test', 'U')");
        env.json(&["customer", "suspend", slug, "--reason", "unpaid"]);
    }
    assert_eq!(role_login(&fleet.a, "tenant_a1"), "f");
    env.cmd(&["customer", "move", "a1", "--to", "pgb"])
        .killed_at_step("customer.move:published");
    assert_eq!(role_login(fleet.b(), "tenant_a1"), "f", "published shut");
    let run = env.run(&["doctor", "--fix", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        role_login(&fleet.a, "tenant_a1"),
        "f",
        "undoing lets in only the active"
    );
    assert_eq!(fleet.on_target("pgb", "a1"), "");

    for (slug, to) in [("a1", "pgb"), ("l1", "pga")] {
        let report = fleet.moved(slug, &["--to", to]);
        assert_eq!(report["outcome"], "moved", "{report}");
        let shown = fleet.show(slug);
        assert_eq!(shown["status"], "suspended", "{shown}");
        assert_eq!(role_login(fleet.server(to), &tenant(slug)), "f", "{slug}");
        env.json(&["customer", "reactivate", slug]);
        assert!(fleet.can_login(slug), "{slug}: let in once reactivated");
        assert_eq!(
            fleet.rows(slug, &USERS).len(),
            1,
            "{slug}: its rows moved with it"
        );
    }
}

// ---------------------------------------------------------------------------

/// After local → PostgreSQL, every command that finds the tenant finds it there.
#[test]
fn after_a_move_resolve_url_migrate_backup_and_restore_follow_the_placement() {
    let fleet = Fleet::new(&["pgb"]);
    let env = &fleet.env;
    fleet.customer("l1", "local");
    env.ok(&["site", "create", "l1", "Shop", "--domain", "shop.l1.test"]);
    fleet.write(
        "l1",
        "INSERT INTO users (email, name) VALUES ('before@l1.test', 'B')",
    );
    let before_move = env.json(&["backup"]);
    let before_id = before_move["id"].as_str().unwrap().to_string();
    let local_file = fleet.location("l1");

    let report = fleet.moved("l1", &["--to", "pga"]);
    assert_eq!(report["outcome"], "moved", "{report}");

    let resolved = env.json(&["resolve", "shop.l1.test"]);
    let placement = &resolved["placement"];
    assert_eq!(placement["engine"], "postgres", "{resolved}");
    assert_eq!(placement["server"], "pga", "{resolved}");
    assert_eq!(placement["database"], "tenant_l1", "{resolved}");
    assert_eq!(placement["role"], "tenant_l1", "{resolved}");
    assert_eq!(placement["path"], Value::Null, "{resolved}");
    let url = env.json(&["db", "url", "l1"]);
    let socket = fleet.a.socket_dir().display().to_string().replace('/', "%2F");
    assert_eq!(
        url["url"],
        format!("postgresql://tenant_l1:***@{socket}:5432/tenant_l1"),
        "{url}"
    );
    assert!(fleet.can_login("l1"), "the revealed password logs in");

    // Migrations go to the tenant where it is; the kept copy stays as it was.
    add_migration(
        env,
        "V4__notes.sql",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT);",
        "CREATE TABLE notes (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, body TEXT);",
    );
    let migrated = env.json(&["db", "migrate"]);
    assert_eq!(migrated[0]["customer"], "l1", "{migrated}");
    assert_eq!(migrated[0]["status"], "migrated", "{migrated}");
    assert_eq!(migrated[0]["to"], 4, "{migrated}");
    assert_eq!(
        fleet.a.psql(
            "tenant_l1",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'notes'"
        ),
        "tenant_l1"
    );
    let kept = rusqlite::Connection::open(&local_file).unwrap();
    let kept_tables: i64 = kept
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'notes'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept_tables, 0, "the kept copy is not migrated");
    drop(kept);
    fleet.write("l1", "INSERT INTO notes (body) VALUES ('on pga')");
    assert_eq!(
        fleet.a.psql("tenant_l1", "SELECT id || ':' || body FROM notes"),
        "1:on pga"
    );

    // A backup now holds its PostgreSQL dump, and restores into where it lives.
    let after_move = env.json(&["backup"]);
    let after_id = after_move["id"].as_str().unwrap().to_string();
    let entry = after_move["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["customer_slug"] == "l1")
        .unwrap_or_else(|| panic!("no entry for l1: {after_move}"));
    assert_eq!(entry["server"], "pga", "{entry}");
    assert_eq!(entry["format"], "pg_dump_custom", "{entry}");
    fleet.write(
        "l1",
        "INSERT INTO users (email, name) VALUES ('after@l1.test', 'A')",
    );
    let at = after_move["finished_at_exact"].as_str().unwrap();
    let restored = env.json(&["restore", "--at", at, "--customer", "l1"]);
    assert_eq!(restored["set"], after_id.as_str(), "{restored}");
    assert_eq!(restored["restored"][0]["status"], "restored", "{restored}");
    assert_eq!(
        fleet.a.psql(
            "tenant_l1",
            "SELECT string_agg(email, ',' ORDER BY email) FROM users"
        ),
        "before@l1.test"
    );
    assert!(fleet.can_login("l1"));
    assert_eq!(fleet.server_of("l1"), "pga");

    // The set from before the move holds a SQLite file: restoring it into a
    // PostgreSQL tenant is refused and says what to use instead.
    for args in [
        vec!["restore", before_id.as_str(), "--customer", "l1"],
        vec![
            "restore",
            "--at",
            before_move["finished_at_exact"].as_str().unwrap(),
            "--customer",
            "l1",
        ],
    ] {
        let run = env.fails(&args, 6);
        assert!(run.stderr.contains("customer move"), "{args:?}: {run:?}");
        assert!(run.stderr.contains("sqlite"), "{args:?}: {run:?}");
    }
    assert_eq!(
        fleet.a.psql("tenant_l1", "SELECT count(*) FROM users"),
        "1",
        "the refused restores changed nothing"
    );
    assert!(fleet.can_login("l1"));

    // On to pgb: the set taken on pga is of the same engine, and restores into the
    // schema where the tenant lives now.
    fleet.moved("l1", &["--finish"]);
    assert!(!local_file.exists());
    fleet.moved("l1", &["--to", "pgb"]);
    fleet.moved("l1", &["--finish"]);
    assert_eq!(fleet.on_target("pga", "l1"), "");
    fleet.write(
        "l1",
        "INSERT INTO users (email, name) VALUES ('on-pgb@l1.test', 'P')",
    );
    let restored = env.json(&["restore", "--at", at, "--customer", "l1"]);
    assert_eq!(restored["set"], after_id.as_str(), "{restored}");
    assert_eq!(restored["restored"][0]["status"], "restored", "{restored}");
    assert_eq!(fleet.server_of("l1"), "pgb");
    assert_eq!(
        fleet.b().psql(
            PLATFORM,
            "SELECT string_agg(email, ',' ORDER BY email) FROM tenant_l1.users"
        ),
        "before@l1.test"
    );
    assert_eq!(
        fleet.b().psql(
            PLATFORM,
            "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'tenant_l1'"
        ),
        "tenant_l1"
    );
    assert!(fleet.can_login("l1"));
    assert_eq!(fleet.on_target("pga", "l1"), "", "nothing restored onto pga");
    let run = env.run(&["doctor", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
}
