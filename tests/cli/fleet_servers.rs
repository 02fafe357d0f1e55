//! Fleets that span engines (SPEC section 7): `db migrate` over local SQLite files
//! and two PostgreSQL servers at once, one in database mode and one in schema mode,
//! when a migration fails, when the command is killed, when a server goes away, and
//! how many connections it holds. A test that must catch a migration in the act makes
//! it wait on an advisory lock the test holds, and watches pg_stat_activity for the
//! wait: no sleep stands in for synchronisation.

use std::collections::BTreeMap;
use std::os::unix::net::UnixListener;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pg_server::PgServer;
use crate::support::{Run, TestEnv};

/// The advisory lock a gated PostgreSQL migration takes first; a test holds it to
/// stop the migration there.
const GATE: i64 = 4242;
/// Where every tenant starts: the starter set.
const STARTER: i64 = 3;
/// The database server `pgb` keeps its tenants' schemas in.
const PLATFORM: &str = "platform";
const LOCAL: [&str; 3] = ["l1", "l2", "l3"];
const ON_A: [&str; 3] = ["a1", "a2", "a3"];
const ON_B: [&str; 3] = ["b1", "b2", "b3"];

/// A home whose tenants live on the local folder, on `pga` (database mode) and on
/// `pgb` (schema mode), three on each.
struct Fleet {
    env: TestEnv,
    a: PgServer,
    b: PgServer,
}

impl Fleet {
    fn new() -> Self {
        let (a, b) = std::thread::scope(|scope| {
            let b = scope.spawn(PgServer::start);
            (PgServer::start(), b.join().unwrap())
        });
        let env = TestEnv::initialised();
        let admin = a.admin_login();
        env.json(&["server", "add", "pga", "--url", &a.url(&admin, "postgres")]);
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
        let fleet = Fleet { env, a, b };
        for slug in fleet.slugs() {
            let server = match slug.as_bytes()[0] {
                b'a' => "pga",
                b'b' => "pgb",
                _ => "local",
            };
            fleet.env.customer(
                &format!("{slug}@example.com"),
                slug,
                &["--slug", slug, "--server", server],
            );
        }
        fleet
    }

    fn slugs(&self) -> impl Iterator<Item = &'static str> {
        LOCAL.into_iter().chain(ON_A).chain(ON_B)
    }

    /// Writes migration `V<version>__<name>.sql` for SQLite and for PostgreSQL.
    fn write_migration(&self, version: i64, name: &str, sqlite: &str, postgres: &str) {
        let file = format!("V{version}__{name}.sql");
        let dir = self.env.home.join("tenant-migrations");
        std::fs::write(dir.join(&file), sqlite).unwrap();
        std::fs::write(dir.join("postgres").join(&file), postgres).unwrap();
    }

    /// A number read from the tenant's own database, not the catalog: `sql` names the
    /// tenant's tables after `{s}`, which becomes the tenant's schema in schema mode.
    fn number(&self, slug: &str, sql: &str) -> i64 {
        match slug.as_bytes()[0] {
            b'a' => self.a.psql(&format!("tenant_{slug}"), &sql.replace("{s}", "")),
            b'b' => self
                .b
                .psql(PLATFORM, &sql.replace("{s}", &format!("tenant_{slug}."))),
            _ => {
                let path = self.env.json(&["customer", "show", slug])["db_path"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let conn = rusqlite::Connection::open(path).unwrap();
                let number: i64 = conn
                    .query_row(&sql.replace("{s}", ""), [], |row| row.get(0))
                    .unwrap();
                return number;
            }
        }
        .parse()
        .unwrap()
    }

    /// The newest version in the tenant's own migration history.
    fn version(&self, slug: &str) -> i64 {
        self.number(
            slug,
            "SELECT coalesce(max(version), 0) FROM {s}refinery_schema_history",
        )
    }

    fn history_rows(&self, slug: &str, version: i64) -> i64 {
        self.number(
            slug,
            &format!("SELECT count(*) FROM {{s}}refinery_schema_history WHERE version = {version}"),
        )
    }

    fn has_table(&self, slug: &str, table: &str) -> bool {
        let sql = match slug.as_bytes()[0] {
            b'a' => format!(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = '{table}'"
            ),
            b'b' => format!(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant_{slug}' AND tablename = '{table}'"
            ),
            _ => format!("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'"),
        };
        self.number(slug, &sql) == 1
    }

    /// Asserts the tenant is wholly at `version`: its history says so, exactly once,
    /// and `marker` (the table that version makes) is there exactly when it does.
    fn assert_at(&self, slug: &str, version: i64, newest: i64, marker: &str) {
        assert_eq!(self.version(slug), version, "{slug}'s own history");
        assert_eq!(self.history_rows(slug, version), 1, "{slug}: one history row");
        assert_eq!(
            self.has_table(slug, marker),
            version >= newest,
            "{slug} at V{version}: {marker} must be there exactly from V{newest}"
        );
    }

    /// What the catalog says of each tenant, by slug.
    fn catalog_versions(&self) -> BTreeMap<String, i64> {
        self.slugs()
            .map(|slug| {
                let shown = self.env.json(&["customer", "show", slug]);
                (slug.to_string(), shown["schema_version"].as_i64().unwrap())
            })
            .collect()
    }
}

/// A migrate report by customer slug.
fn by_customer(report: &Value) -> BTreeMap<String, Value> {
    report
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {report}"))
        .iter()
        .map(|row| (row["customer"].as_str().unwrap().to_string(), row.clone()))
        .collect()
}

fn finished(child: Child) -> Run {
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The advisory lock [`GATE`] held in one database by a session of the test: a gated
/// migration there waits until the gate is dropped.
struct Gate {
    _session: postgres::Client,
}

impl Gate {
    fn close(server: &PgServer, database: &str) -> Gate {
        let mut client = server.connect(database);
        client.execute("SELECT pg_advisory_lock($1)", &[&GATE]).unwrap();
        Gate { _session: client }
    }
}

/// Waits until at least `waiting` tenantctl sessions in `database` wait on an
/// advisory lock, polling with a deadline. Returns how many tenantctl sessions the
/// server has then, all databases together.
fn wait_for_gated(server: &PgServer, database: &str, waiting: i64) -> i64 {
    wait_with(&mut server.connect("postgres"), Some(database), waiting)
}

#[test]
fn a_migration_failing_on_some_tenants_of_each_engine_leaves_them_wholly_at_the_old_version() {
    let fleet = Fleet::new();
    let env = &fleet.env;
    // The first tenant of each engine already has the user V4 adds.
    let failing = ["l1", "a1", "b1"];
    for slug in failing {
        env.json(&[
            "db",
            "sql",
            slug,
            "--write",
            "INSERT INTO users (email, name) VALUES ('taken@example.com', 'Seed')",
        ]);
    }
    // The table first, so a tenant that fails must also lose it.
    let v4 = "CREATE TABLE v4_marker (id INTEGER); \
              INSERT INTO users (email, name) VALUES ('taken@example.com', 'V4');";
    fleet.write_migration(4, "taken", v4, v4);

    // One at a time per lane: each lane's first tenant fails, and no lane starts a
    // second tenant after that.
    let run = env.run(&["db", "migrate", "--jobs", "1", "--jobs-per-server", "1", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    let report = by_customer(&run.json());
    assert_eq!(report.len(), 9, "{report:?}");
    for (slug, row) in &report {
        let expected: &[&str] = match failing.contains(&slug.as_str()) {
            // A lane whose worker had not begun when another failed never starts.
            true => &["failed", "skipped"],
            false => &["skipped"],
        };
        assert!(
            expected.contains(&row["status"].as_str().unwrap()),
            "{slug}: {row}"
        );
        if row["status"] == "skipped" {
            assert_eq!(row["error"], "an earlier tenant failed", "{row}");
            assert_eq!(row["pending"], serde_json::json!([4]), "{row}");
        }
    }
    assert!(report.values().any(|row| row["status"] == "failed"), "{report:?}");
    for slug in fleet.slugs() {
        fleet.assert_at(slug, STARTER, 4, "v4_marker");
    }

    let run = env.run(&["db", "migrate", "--continue-on-error", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    assert!(run.stderr.contains("3 of 9 tenants failed"), "{run:?}");
    let report = by_customer(&run.json());
    for slug in fleet.slugs() {
        let row = &report[slug];
        if failing.contains(&slug) {
            assert_eq!(row["status"], "failed", "{row}");
            assert_eq!(
                (&row["from"], &row["to"]),
                (&STARTER.into(), &STARTER.into()),
                "{row}"
            );
            let error = row["error"].as_str().unwrap().to_lowercase();
            assert!(error.contains("unique"), "{slug}: {row}");
            fleet.assert_at(slug, STARTER, 4, "v4_marker");
            let seeded = "SELECT count(*) FROM {s}users WHERE email = 'taken@example.com'";
            assert_eq!(fleet.number(slug, seeded), 1, "{slug}: only the seed");
        } else {
            assert_eq!(row["status"], "migrated", "{row}");
            assert_eq!(row["to"], 4, "{row}");
            fleet.assert_at(slug, 4, 4, "v4_marker");
        }
    }
    let failed = env
        .cmd(&["db", "status", "--failed"])
        .stderr_has("3 failed")
        .json();
    let names: Vec<&str> = failed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["customer"].as_str().unwrap())
        .collect();
    assert_eq!(names, failing, "{failed}");
    assert!(
        failed
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["migration_status"] == "failed" && t["schema_version"] == STARTER),
        "{failed}"
    );
    let catalog = fleet.catalog_versions();
    for slug in fleet.slugs() {
        assert_eq!(catalog[slug], fleet.version(slug), "the catalog on {slug}");
    }
}

#[test]
fn a_second_migrate_waits_for_the_first_and_a_killed_one_is_finished_by_the_next() {
    let fleet = Fleet::new();
    let env = &fleet.env;
    let gated =
        |table: &str| format!("SELECT pg_advisory_xact_lock({GATE}); CREATE TABLE {table} (id INTEGER);");

    // Two at once: the second gives up on the home lock while the first is held up
    // on a tenant of pga.
    fleet.write_migration(
        4,
        "one",
        "CREATE TABLE v4_marker (id INTEGER);",
        &gated("v4_marker"),
    );
    let gate = Gate::close(&fleet.a, "tenant_a1");
    let first = env.cmd(&["db", "migrate", "--json"]).spawn();
    wait_for_gated(&fleet.a, "tenant_a1", 1);
    let second = env.fails(&["db", "migrate", "--lock-timeout", "1s"], 6);
    assert!(second.stderr.contains("another tenantctl holds"), "{second:?}");
    drop(gate);
    let first = finished(first);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        by_customer(&first.json())
            .values()
            .all(|row| row["status"] == "migrated" && row["to"] == 4),
        "{first:?}"
    );

    // Killed while pgb's tenants (one schema each, one database) wait at the gate.
    fleet.write_migration(
        5,
        "two",
        "CREATE TABLE v5_marker (id INTEGER);",
        &gated("v5_marker"),
    );
    let gate = Gate::close(&fleet.b, PLATFORM);
    let mut killed = env.cmd(&["db", "migrate"]).spawn();
    wait_for_gated(&fleet.b, PLATFORM, 1);
    killed.kill().unwrap();
    killed.wait().unwrap();
    for slug in ON_B {
        fleet.assert_at(slug, 4, 5, "v5_marker");
    }
    // The dead command's sessions run what it had sent them, but the COMMIT was never
    // sent: released, they roll back, and the server's tenants stay wholly old.
    drop(gate);
    wait_for_no_sessions(&fleet.a);
    wait_for_no_sessions(&fleet.b);
    for slug in ON_B {
        fleet.assert_at(slug, 4, 5, "v5_marker");
    }
    for slug in fleet.slugs() {
        let version = fleet.version(slug);
        assert!([4, 5].contains(&version), "{slug} at {version}");
        fleet.assert_at(slug, version, 5, "v5_marker");
    }

    let rerun = env.json(&["db", "migrate"]);
    let rerun = by_customer(&rerun);
    for slug in fleet.slugs() {
        fleet.assert_at(slug, 5, 5, "v5_marker");
        assert_eq!(rerun[slug]["to"], 5, "{rerun:?}");
    }
    env.cmd(&["db", "status", "--check"])
        .stderr_has("9 tenants: 9 current, 0 behind, 0 failed")
        .json();
    assert!(
        fleet.catalog_versions().values().all(|v| *v == 5),
        "{:?}",
        fleet.catalog_versions()
    );
}

/// Waits until no tenantctl session is left on the server (a killed command's
/// sessions end when they next talk to it), polling with a deadline.
fn wait_for_no_sessions(server: &PgServer) {
    let mut watcher = server.connect("postgres");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenantctl'",
                &[],
            )
            .unwrap()
            .get(0);
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} tenantctl sessions outlived the command"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Accepts connections on a stopped server's socket and closes them unanswered,
/// counting them: a server that is there and says nothing.
struct Mute {
    accepted: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
    path: std::path::PathBuf,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Mute {
    fn on(server: &PgServer) -> Mute {
        let path = server.socket_file();
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, done) = (Arc::clone(&accepted), Arc::clone(&done));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if done.load(Ordering::SeqCst) {
                        break;
                    }
                    accepted.fetch_add(1, Ordering::SeqCst);
                    drop(stream);
                }
            })
        };
        Mute {
            accepted,
            done,
            path,
            thread: Some(thread),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Mute {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so it sees it is done.
        let _ = std::os::unix::net::UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_server_that_goes_away_fails_its_own_tenants_by_name_and_the_rollout_goes_on() {
    let fleet = Fleet::new();
    let env = &fleet.env;
    fleet.write_migration(
        4,
        "gated",
        "CREATE TABLE v4_marker (id INTEGER);",
        &format!("SELECT pg_advisory_xact_lock({GATE}); CREATE TABLE v4_marker (id INTEGER);"),
    );
    // One tenant at a time on each server, pgb's first and pga's first held at the
    // gate. No --continue-on-error: pgb stops, its tenants fail, and only then may
    // pga go on to a2 and a3, as a rollout does when the failure is a server's.
    let gate_b = Gate::close(&fleet.b, PLATFORM);
    let gate_a = Gate::close(&fleet.a, "tenant_a1");
    let run = env
        .cmd(&["db", "migrate", "--jobs", "1", "--jobs-per-server", "1", "--json"])
        .spawn();
    wait_for_gated(&fleet.b, PLATFORM, 1);
    wait_for_gated(&fleet.a, "tenant_a1", 1);
    fleet.b.stop();
    drop(gate_b);
    let deadline = Instant::now() + Duration::from_secs(60);
    let b_failed = "SELECT count(*) FROM customers WHERE slug LIKE 'b%' AND migration_status = 'failed'";
    while env.count(b_failed) < 3 {
        assert!(
            Instant::now() < deadline,
            "pgb's tenants were never recorded as failed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(gate_a);
    let run = finished(run);
    assert_eq!(run.code, 8, "{run:?}");
    let report = by_customer(&run.json());
    for slug in LOCAL.into_iter().chain(ON_A) {
        assert_eq!(report[slug]["status"], "migrated", "{run:?}");
        fleet.assert_at(slug, 4, 4, "v4_marker");
    }
    for slug in ON_B {
        let row = &report[slug];
        assert_eq!(row["status"], "failed", "{row}");
        assert_eq!(row["to"], STARTER, "{row}");
        assert!(row["error"].as_str().unwrap().contains("server pgb"), "{row}");
    }
    let catalog = fleet.catalog_versions();
    assert!(ON_B.iter().all(|slug| catalog[*slug] == STARTER), "{catalog:?}");

    // Down from the start, and answering nothing: one attempt tells, not one a tenant.
    fleet.write_migration(
        5,
        "more",
        "CREATE TABLE v5_marker (id INTEGER);",
        "CREATE TABLE v5_marker (id INTEGER);",
    );
    let mute = Mute::on(&fleet.b);
    let run = env.run(&["db", "migrate", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    let report = by_customer(&run.json());
    for slug in LOCAL.into_iter().chain(ON_A) {
        assert_eq!(report[slug]["status"], "migrated", "{run:?}");
        fleet.assert_at(slug, 5, 5, "v5_marker");
    }
    for slug in ON_B {
        let row = &report[slug];
        assert_eq!(row["status"], "failed", "{row}");
        assert!(
            row["error"]
                .as_str()
                .unwrap()
                .contains("server pgb is unreachable"),
            "{row}"
        );
    }
    assert_eq!(mute.accepted(), 1, "connection attempts on the silent server");
    assert!(run.stderr.contains("3 of 9 tenants failed"), "{run:?}");

    // The fleet's SQL as well: the others answer, pgb's tenants fail by name, after
    // one attempt on pgb.
    let attempts = mute.accepted();
    let run = env.run(&["db", "sql", "--all", "SELECT count(*) AS n FROM users", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    let rows = run.json()["rows"].clone();
    let answered: Vec<&str> = rows
        .as_array()
        .unwrap_or_else(|| panic!("{run:?}"))
        .iter()
        .map(|row| row["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(answered, ["l1", "l2", "l3", "a1", "a2", "a3"], "{run:?}");
    for slug in ON_B {
        assert!(
            run.stderr.contains(&format!("{slug}: server pgb is unreachable")),
            "{run:?}"
        );
    }
    assert_eq!(
        mute.accepted() - attempts,
        1,
        "db sql attempts on the silent server"
    );

    // A check cannot tell a silent server's tenants missing or damaged: it cannot
    // ask. That is a partial result, exit 8, not damage found (7).
    let attempts = mute.accepted();
    let run = env.run(&["db", "status", "--check", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    assert!(
        run.stderr.contains("3 tenant databases could not be checked"),
        "{run:?}"
    );
    let status = by_customer(&run.json());
    for slug in LOCAL.into_iter().chain(ON_A) {
        assert_eq!(status[slug]["check"], "ok", "{run:?}");
    }
    for slug in ON_B {
        let check = status[slug]["check"].as_str().unwrap();
        assert!(check.contains("server pgb is unreachable"), "{slug}: {check}");
    }
    assert_eq!(
        mute.accepted() - attempts,
        1,
        "db status attempts on the silent server"
    );

    let attempts = mute.accepted();
    let run = env.run(&["db", "vacuum", "--all", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    let vacuumed = by_customer(&run.json());
    for slug in LOCAL.into_iter().chain(ON_A) {
        assert_eq!(vacuumed[slug]["error"], Value::Null, "{run:?}");
    }
    for slug in ON_B {
        let error = vacuumed[slug]["error"].as_str().unwrap();
        assert!(error.contains("server pgb is unreachable"), "{slug}: {error}");
    }
    assert_eq!(
        mute.accepted() - attempts,
        1,
        "db vacuum attempts on the silent server"
    );
}

#[test]
fn db_status_tells_engines_and_servers_apart_and_a_current_fleet_needs_no_server() {
    let fleet = Fleet::new();
    let env = &fleet.env;
    fleet.write_migration(
        4,
        "notes",
        "CREATE TABLE v4_marker (id INTEGER);",
        "CREATE TABLE v4_marker (id INTEGER);",
    );
    env.json(&["db", "migrate"]);

    let status = env
        .cmd(&["db", "status", "--check"])
        .stderr_has("9 tenants: 9 current")
        .json();
    let status = by_customer(&status);
    for slug in fleet.slugs() {
        let (engine, server) = match slug.as_bytes()[0] {
            b'a' => ("postgres", "pga"),
            b'b' => ("postgres", "pgb"),
            _ => ("sqlite", "local"),
        };
        assert_eq!(status[slug]["engine"], engine, "{:?}", status[slug]);
        assert_eq!(status[slug]["server"], server, "{:?}", status[slug]);
        assert_eq!(status[slug]["check"], "ok", "{:?}", status[slug]);
        assert_eq!(status[slug]["schema_version"], 4, "{:?}", status[slug]);
    }
    for (server, slugs) in [("pga", ON_A), ("pgb", ON_B), ("local", LOCAL)] {
        let only = env
            .cmd(&["db", "status", "--server", server])
            .stderr_has("3 tenants: 3 current")
            .json();
        assert_eq!(
            by_customer(&only).keys().map(String::as_str).collect::<Vec<_>>(),
            slugs,
            "{only}"
        );
    }
    let run = env.fails(&["db", "status", "--server", "nope"], 3);
    assert!(run.stderr.contains("nope"), "{run:?}");

    // Nothing pending: no server is asked, so none needs to be up.
    fleet.a.stop();
    fleet.b.stop();
    let again = env.json(&["db", "migrate"]);
    assert!(
        by_customer(&again).values().all(|row| row["status"] == "current"),
        "{again}"
    );

    // A tenant that cannot be measured is not taken for an empty one.
    let run = env.run(&["quota", "check", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    assert!(run.stderr.contains("could not be measured"), "{run:?}");
    let rows = run.json();
    for row in rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resource"] == "storage_mb")
    {
        let on_server = row["customer"] != "l1" && row["customer"] != "l2" && row["customer"] != "l3";
        assert_eq!(row["used_bytes"].is_null(), on_server, "{row}");
    }
    let run = env.run(&["quota", "enforce", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    let unmeasured = run.json();
    let unmeasured: Vec<&str> = unmeasured
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "unmeasured")
        .map(|r| r["customer"].as_str().unwrap())
        .collect();
    assert_eq!(unmeasured, ["a1", "a2", "a3", "b1", "b2", "b3"]);
}

#[test]
fn a_fan_out_holds_no_more_connections_on_a_server_than_jobs_per_server() {
    let server = PgServer::start();
    let env = TestEnv::initialised();
    let admin = server.admin_login();
    env.json(&["server", "add", "pga", "--url", &server.url(&admin, "postgres")]);
    let slugs: Vec<String> = (1..=8).map(|n| format!("a{n}")).collect();
    for slug in &slugs {
        env.customer(
            &format!("{slug}@example.com"),
            slug,
            &["--slug", slug, "--server", "pga"],
        );
    }
    let dir = env.home.join("tenant-migrations");
    // Each tenant records how many tenantctl sessions the server had as it migrated.
    let count_sessions = |version: i64| {
        let file = format!("V{version}__peak.sql");
        std::fs::write(
            dir.join(&file),
            format!("CREATE TABLE peak{version} (n INTEGER);"),
        )
        .unwrap();
        std::fs::write(
            dir.join("postgres").join(&file),
            format!(
                "SELECT pg_advisory_xact_lock({GATE});
                 CREATE TABLE peak{version} AS
                     SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'tenantctl';"
            ),
        )
        .unwrap();
    };
    let peak = |version: i64| {
        slugs
            .iter()
            .map(|slug| {
                server
                    .psql(&format!("tenant_{slug}"), &format!("SELECT n FROM peak{version}"))
                    .parse::<i64>()
                    .unwrap()
            })
            .max()
            .unwrap()
    };
    let all_gated = || {
        slugs
            .iter()
            .map(|slug| Gate::close(&server, &format!("tenant_{slug}")))
            .collect::<Vec<_>>()
    };

    // Every tenant gated: the lanes fill up to their width and wait there.
    for (version, width) in [(4, 2), (5, 4)] {
        count_sessions(version);
        let gates = all_gated();
        let mut args = vec!["db", "migrate", "--json"];
        let width_arg = width.to_string();
        if width != 4 {
            args.extend(["--jobs-per-server", &width_arg]);
        }
        let run = env.cmd(&args).spawn();
        let sessions = wait_until_waiting(&server, width);
        assert_eq!(sessions, width, "tenantctl sessions while {width} wait");
        drop(gates);
        let run = finished(run);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(
            by_customer(&run.json())
                .values()
                .all(|r| r["status"] == "migrated"),
            "{run:?}"
        );
        let most = peak(version);
        assert!(
            most <= width,
            "V{version}: {most} sessions at once, {width} allowed"
        );
    }
    // The count does see a wider fan-out when one is allowed.
    assert!(peak(5) > 2, "V5: {} sessions at most", peak(5));

    // A busy server: other roles' sessions (here the superuser's, which the admin
    // login may not inspect) leave two connections free. The fan-out must narrow to
    // what is free rather than meet "too many clients".
    count_sessions(6);
    let gates = all_gated();
    let mut watcher = server.connect("postgres");
    let _others = fill_until_free(&server, 2);
    let run = env.cmd(&["db", "migrate", "--json"]).spawn();
    let sessions = wait_with(&mut watcher, None, 1);
    assert_eq!(sessions, 1, "tenantctl sessions on a busy server");
    drop(gates);
    let run = finished(run);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(peak(6), 1);
}

/// Sessions of the superuser until only `free` connections are left for other
/// roles: a server busy with work that is not tenantctl's.
fn fill_until_free(server: &PgServer, free: i64) -> Vec<postgres::Client> {
    let mut sessions = vec![server.connect("postgres")];
    loop {
        let left: i64 = sessions[0]
            .query_one(
                "SELECT current_setting('max_connections')::bigint
                      - current_setting('superuser_reserved_connections')::bigint
                      - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
                &[],
            )
            .unwrap()
            .get(0);
        if left <= free {
            return sessions;
        }
        sessions.push(server.connect("postgres"));
    }
}

/// Waits until `waiting` tenantctl sessions, in any databases, wait on an advisory
/// lock; returns how many tenantctl sessions the server has then.
fn wait_until_waiting(server: &PgServer, waiting: i64) -> i64 {
    wait_with(&mut server.connect("postgres"), None, waiting)
}

/// Polls on `watcher` until at least `waiting` tenantctl sessions (in `database`, or
/// in any) wait on an advisory lock; returns how many tenantctl sessions the server
/// has then, all databases together.
fn wait_with(watcher: &mut postgres::Client, database: Option<&str>, waiting: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = watcher
            .query_one(
                "SELECT count(*) FILTER (WHERE ($1::text IS NULL OR datname = $1)
                                          AND wait_event_type = 'Lock' AND wait_event = 'advisory'),
                        count(*)
                 FROM pg_stat_activity WHERE application_name = 'tenantctl'",
                &[&database],
            )
            .unwrap();
        let (gated, all): (i64, i64) = (row.get(0), row.get(1));
        if gated >= waiting {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "only {gated} tenantctl sessions came to wait (in {database:?})"
        );
        // A pause between polls, not a guess at how long the command takes.
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_session_ended_under_a_migration_fails_its_tenant_not_its_server() {
    let fleet = Fleet::new();
    let env = &fleet.env;
    fleet.write_migration(
        4,
        "gated",
        "CREATE TABLE v4_marker (id INTEGER);",
        &format!("SELECT pg_advisory_xact_lock({GATE}); CREATE TABLE v4_marker (id INTEGER);"),
    );
    // a1 waits at the gate; its session is ended by hand (an administrator's
    // pg_terminate_backend) while pga itself stays up.
    let gate = Gate::close(&fleet.a, "tenant_a1");
    let run = env
        .cmd(&[
            "db",
            "migrate",
            "--jobs-per-server",
            "1",
            "--continue-on-error",
            "--json",
        ])
        .spawn();
    wait_for_gated(&fleet.a, "tenant_a1", 1);
    let ended = fleet.a.psql(
        "postgres",
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name = 'tenantctl' AND datname = 'tenant_a1'",
    );
    assert_eq!(ended, "1");
    drop(gate);
    let run = finished(run);
    assert_eq!(run.code, 8, "{run:?}");
    let report = by_customer(&run.json());
    let a1 = &report["a1"];
    assert_eq!(a1["status"], "failed", "{a1}");
    let error = a1["error"].as_str().unwrap();
    assert!(
        !error.contains("unreachable"),
        "a healthy server was called down: {a1}"
    );
    fleet.assert_at("a1", STARTER, 4, "v4_marker");
    // The server's other tenants were not given up on.
    for slug in LOCAL.into_iter().chain(["a2", "a3"]).chain(ON_B) {
        assert_eq!(report[slug]["status"], "migrated", "{run:?}");
        fleet.assert_at(slug, 4, 4, "v4_marker");
    }
}
