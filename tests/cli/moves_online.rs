//! `customer move --online` (SPEC section 7): PostgreSQL to PostgreSQL by logical
//! replication between throwaway clusters. A writer that keeps inserting as the
//! tenant's own role while the tenant moves loses none of its committed rows, in
//! database and in schema mode; every missing precondition is refused (exit 6) before
//! anything is made on either server; a move killed at each of its steps is undone
//! (or, once flipped, complete) with nothing of its replication left behind, and the
//! next move succeeds. Threads wait on channels and flags, never on sleeps.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pg_server::{Login, PgServer};
use crate::support::TestEnv;

/// The database a schema-mode server keeps its tenants' schemas in.
const PLATFORM: &str = "platform";
const SLUG: &str = "acme";
/// Rows the tenant holds before anything moves.
const SEEDED: i64 = 300;
/// What recovery says on stderr when it undoes a killed move.
const UNDONE: &str = "undone an interrupted customer.move of 'acme' left by a killed run";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Database,
    Schema,
}

/// Registers `server` as `name` in `mode`, its admin login a superuser (on
/// PostgreSQL 15 only a superuser may subscribe); returns the login.
fn add_server(env: &TestEnv, name: &str, server: &PgServer, mode: Mode) -> Login {
    let admin = server.admin_login();
    server.psql("postgres", &format!("ALTER ROLE {} SUPERUSER", admin.user));
    match mode {
        Mode::Database => env.json(&["server", "add", name, "--url", &server.url(&admin, "postgres")]),
        Mode::Schema => {
            server.psql(
                "postgres",
                &format!("CREATE DATABASE {PLATFORM} OWNER {}", admin.user),
            );
            env.json(&[
                "server",
                "add",
                name,
                "--url",
                &server.url(&admin, PLATFORM),
                "--mode",
                "schema",
            ])
        }
    };
    admin
}

/// Two logical clusters in one mode, registered as `pga` and `pgb`, and the
/// customer `acme` on `pga` with [`SEEDED`] products.
struct Pair {
    env: TestEnv,
    a: PgServer,
    b: PgServer,
    mode: Mode,
}

impl Pair {
    fn new(mode: Mode) -> Pair {
        let (a, b) = std::thread::scope(|scope| {
            let b = scope.spawn(PgServer::start_logical);
            (PgServer::start_logical(), b.join().unwrap())
        });
        let env = TestEnv::initialised();
        add_server(&env, "pga", &a, mode);
        add_server(&env, "pgb", &b, mode);
        env.customer("ops@acme.test", "Ops", &["--slug", SLUG, "--server", "pga"]);
        let pair = Pair { env, a, b, mode };
        pair.tenant_sql(
            "pga",
            &format!(
                "INSERT INTO {{s}}products (sku, name, price_cents) \
                 SELECT 'seed-' || g, 'seed', g FROM generate_series(1, {SEEDED}) g"
            ),
        );
        pair
    }

    fn server(&self, name: &str) -> &PgServer {
        match name {
            "pga" => &self.a,
            "pgb" => &self.b,
            other => panic!("no server {other}"),
        }
    }

    /// Runs `sql` as the superuser in the tenant's tables on `server`, `{s}` standing
    /// for the schema they are in (none in database mode).
    fn tenant_sql(&self, server: &str, sql: &str) -> String {
        match self.mode {
            Mode::Database => self
                .server(server)
                .psql(&format!("tenant_{SLUG}"), &sql.replace("{s}", "")),
            Mode::Schema => self
                .server(server)
                .psql(PLATFORM, &sql.replace("{s}", &format!("tenant_{SLUG}."))),
        }
    }

    fn products(&self, server: &str) -> i64 {
        self.tenant_sql(server, "SELECT count(*) FROM {s}products")
            .parse()
            .unwrap()
    }

    /// Whether the tenant role logs in where the tenant's own database is on `server`.
    fn can_login(&self, server: &str) -> bool {
        let database = match self.mode {
            Mode::Database => format!("tenant_{SLUG}"),
            Mode::Schema => PLATFORM.to_string(),
        };
        let role = format!("tenant_{SLUG}");
        self.server(server)
            .can_login(&database, &role, &password(&self.env, SLUG))
    }

    fn placed_on(&self) -> String {
        self.env.json(&["customer", "show", SLUG])["placement"]["server"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// The tenant role's password, as `db url --reveal` gives it.
fn password(env: &TestEnv, slug: &str) -> String {
    let shown = env.json(&["db", "url", slug, "--reveal"]);
    let url = shown["url"].as_str().unwrap();
    let (_, after_scheme) = url.split_once("://").unwrap();
    let (credentials, _) = after_scheme.split_once('@').unwrap();
    credentials.split_once(':').unwrap().1.to_string()
}

/// The databases that take connections on `server`.
fn databases(server: &PgServer) -> Vec<String> {
    server
        .psql(
            "postgres",
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
        )
        .lines()
        .map(str::to_string)
        .collect()
}

/// Everything of logical replication on `server`, and every `tenantctl_*` table (a
/// move's mark table) in any of its databases: empty once a move is over or undone.
/// Slots of any name count: a table-sync worker's left behind would keep WAL too.
fn replication_objects(server: &PgServer) -> Vec<String> {
    let mut found: Vec<String> = server
        .psql(
            "postgres",
            "SELECT 'subscription ' || subname FROM pg_subscription
             UNION ALL SELECT 'slot ' || slot_name FROM pg_replication_slots ORDER BY 1",
        )
        .lines()
        .map(str::to_string)
        .collect();
    for database in databases(server) {
        let here = server.psql(
            &database,
            "SELECT 'publication ' || pubname FROM pg_publication
             UNION ALL SELECT 'table ' || schemaname || '.' || tablename FROM pg_tables
                       WHERE tablename LIKE 'tenantctl\\_%' ORDER BY 1",
        );
        found.extend(here.lines().map(|line| format!("{line} in {database}")));
    }
    found
}

/// The tenants' databases, schemas, staging copies and roles on `server`.
fn tenant_objects(server: &PgServer) -> Vec<String> {
    let named = "LIKE 'tenant\\_%' OR {c} LIKE 'tenantctl\\_new\\_%'";
    let mut found: Vec<String> = server
        .psql(
            "postgres",
            &format!(
                "SELECT 'database ' || datname FROM pg_database WHERE datname {}
                 UNION ALL SELECT 'role ' || rolname FROM pg_roles WHERE rolname {} ORDER BY 1",
                named.replace("{c}", "datname"),
                named.replace("{c}", "rolname")
            ),
        )
        .lines()
        .map(str::to_string)
        .collect();
    if databases(server).iter().any(|d| d == PLATFORM) {
        let schemas = server.psql(
            PLATFORM,
            &format!(
                "SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname {} ORDER BY 1",
                named.replace("{c}", "nspname")
            ),
        );
        found.extend(schemas.lines().map(str::to_string));
    }
    found
}

/// `doctor --json`'s checks of servers and of interrupted operations that are not ok,
/// as `check target status: message` (a fresh home has no backups yet, which doctor
/// rightly warns of).
fn doctor_problems(env: &TestEnv) -> Vec<String> {
    let run = env.run(&["doctor", "--json"]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"));
    report
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "ok")
        .filter(|c| {
            let check = c["check"].as_str().unwrap();
            check.starts_with("server.") || check.starts_with("operation.") || check.starts_with("orphan.")
        })
        .map(|c| format!("{} {} {}: {}", c["check"], c["target"], c["status"], c["message"]))
        .collect()
}

// ---------------------------------------------------------------------------------
// A writer during the move

/// Commits the writer makes before the move starts, and after it ended.
const WARM_UP: usize = 20;
const AFTER: usize = 5;

/// What the writer did: the numbers whose insert committed, in order, how many it
/// tried, how many sessions it opened, how many commits it made after its warm-up
/// and before the move ended.
#[derive(Debug, Default)]
struct Writes {
    committed: Vec<i64>,
    tried: i64,
    sessions: usize,
    during: usize,
}

/// A session as the tenant role, at wherever `db url --reveal` says the tenant is now.
fn connect(env: &TestEnv) -> Result<postgres::Client, postgres::Error> {
    let shown = env.json(&["db", "url", SLUG, "--reveal"]);
    let url = shown["url"].as_str().unwrap();
    postgres::Config::from_str(url)
        .unwrap_or_else(|e| panic!("db url printed what libpq would not take ({e}): {url}"))
        .connect(postgres::NoTls)
}

/// A session the freeze ended, a login it shuts out, a socket that went away: the
/// writer tries again. Anything else (a key taken twice, a table missing) is a fault.
fn retryable(err: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    match err.code() {
        None => true,
        Some(code) => [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code),
    }
}

/// Inserts numbered products as the tenant role, one per statement, recording each
/// that committed; says on `warmed` when [`WARM_UP`] have, and stops [`AFTER`] commits
/// made once `moved` is set. A failed session is opened again where the catalog
/// places the tenant then.
fn keep_writing(env: &TestEnv, moved: &AtomicBool, warmed: mpsc::Sender<()>) -> Writes {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut writes = Writes::default();
    let mut session: Option<postgres::Client> = None;
    let mut after = 0;
    while after < AFTER {
        assert!(
            Instant::now() < deadline,
            "the writer could not write for three minutes: {writes:?}"
        );
        // Read before the insert: a commit counted here began after the move ended.
        let move_over = moved.load(Ordering::SeqCst);
        if session.is_none() {
            match connect(env) {
                Ok(client) => {
                    writes.sessions += 1;
                    session = Some(client);
                }
                Err(err) => {
                    assert!(retryable(&err), "the writer cannot connect: {err}");
                    pause();
                    continue;
                }
            }
        }
        let client = session.as_mut().unwrap();
        let n = writes.tried;
        writes.tried += 1;
        match client.execute(
            "INSERT INTO products (sku, name, price_cents) VALUES ($1, 'writer', $2)",
            &[&format!("w-{n}"), &n],
        ) {
            Ok(_) => {
                writes.committed.push(n);
                match move_over {
                    true => after += 1,
                    false if writes.committed.len() > WARM_UP => writes.during += 1,
                    false => {}
                }
                if writes.committed.len() == WARM_UP {
                    let _ = warmed.send(());
                }
            }
            Err(err) => {
                assert!(retryable(&err), "insert {n} failed: {err}");
                session = None;
            }
        }
        pause();
    }
    writes
}

/// A breath between the writer's statements, so that it does not take a core from
/// the servers; it orders nothing.
fn pause() {
    std::thread::sleep(Duration::from_millis(2));
}

/// Sets the flag when dropped, so that the writer stops even when the move panics.
struct Raise<'a>(&'a AtomicBool);

impl Drop for Raise<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Moves `acme` from `pga` to `pgb` online while a writer keeps inserting, then
/// checks that every committed row is on `pgb` exactly once.
fn a_writer_keeps_every_committed_row(mode: Mode) {
    let pair = Pair::new(mode);
    let moved = AtomicBool::new(false);
    let (warmed, warm) = mpsc::channel();
    let (report, writes) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| keep_writing(&pair.env, &moved, warmed));
        let raise = Raise(&moved);
        warm.recv().expect("the writer stopped before its first rows");
        let report = pair
            .env
            .json(&["customer", "move", SLUG, "--to", "pgb", "--online"]);
        drop(raise);
        let writes = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (report, writes)
    });

    let freeze_ms = report["freeze_ms"].as_u64();
    let context = format!(
        "freeze_ms {freeze_ms:?}; the writer committed {} of {} inserts in {} sessions, {} while the \
         move ran; report {report}",
        writes.committed.len(),
        writes.tried,
        writes.sessions,
        writes.during
    );
    assert_eq!(report["outcome"], "moved", "{context}");
    assert_eq!(report["online"], true, "{context}");
    assert_eq!(report["method"], "logical-replication", "{context}");
    assert!(freeze_ms.is_some(), "{context}");
    assert_eq!(pair.placed_on(), "pgb", "{context}");
    // The tenant wrote while its rows were replicated; the freeze ended the writer's
    // session at least once, and it came back at pgb.
    assert!(writes.during > 0, "{context}");
    assert!(writes.sessions >= 2, "{context}");

    let on_b: Vec<i64> = pair
        .tenant_sql(
            "pgb",
            "SELECT price_cents FROM {s}products WHERE name = 'writer' ORDER BY 1",
        )
        .lines()
        .map(|line| line.parse().unwrap())
        .collect();
    let present: BTreeSet<i64> = on_b.iter().copied().collect();
    assert_eq!(present.len(), on_b.len(), "a row arrived twice; {context}");
    let lost: Vec<i64> = writes
        .committed
        .iter()
        .copied()
        .filter(|n| !present.contains(n))
        .collect();
    assert_eq!(lost, Vec::<i64>::new(), "committed rows lost; {context}");
    assert!(
        present.iter().all(|n| *n < writes.tried),
        "rows nobody wrote; {context}"
    );
    assert_eq!(
        pair.tenant_sql("pgb", "SELECT count(*) FROM {s}products WHERE name = 'seed'"),
        SEEDED.to_string(),
        "{context}"
    );
    // The old copy stays, shut, until --finish.
    assert!(!pair.can_login_on_source_now(), "{context}");

    let audited = pair.env.json(&["audit", "--action", "customer.move"]);
    let details = &audited[0]["details"];
    assert_eq!(details["method"], "logical-replication", "{audited}");
    assert!(details["freeze_ms"].is_u64(), "{audited}");

    for server in [&pair.a, &pair.b] {
        assert_eq!(replication_objects(server), Vec::<String>::new(), "{context}");
    }
    assert_eq!(doctor_problems(&pair.env), Vec::<String>::new(), "{context}");
}

impl Pair {
    /// Whether the tenant role may log in on `pga`, where the move left the old copy.
    fn can_login_on_source_now(&self) -> bool {
        self.a
            .psql(
                "postgres",
                &format!("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'tenant_{SLUG}'"),
            )
            .starts_with('t')
    }
}

#[test]
fn a_writer_inserting_through_an_online_move_between_database_mode_servers_loses_no_committed_row() {
    a_writer_keeps_every_committed_row(Mode::Database);
}

#[test]
fn a_writer_inserting_through_an_online_move_between_schema_mode_servers_loses_no_committed_row() {
    a_writer_keeps_every_committed_row(Mode::Schema);
}

// ---------------------------------------------------------------------------------
// Preconditions

/// Asserts that `customer move acme --to TO --online` is refused with exit 6 and
/// `reason` in its error, and that nothing of a move is on `servers` after it.
fn refused(env: &TestEnv, to: &str, reason: &str, servers: &[&PgServer], source_login: impl Fn() -> bool) {
    let before: Vec<Vec<String>> = servers.iter().map(|s| tenant_objects(s)).collect();
    let run = env.fails(&["customer", "move", SLUG, "--to", to, "--online"], 6);
    assert!(run.stderr.contains(reason), "{reason:?} not in {run:?}");
    for (server, before) in servers.iter().zip(before) {
        assert_eq!(replication_objects(server), Vec::<String>::new(), "{run:?}");
        assert_eq!(tenant_objects(server), before, "{run:?}");
    }
    assert!(source_login(), "the tenant's login was shut: {run:?}");
    assert_eq!(
        env.json(&["customer", "show", SLUG])["placement"]["server"],
        "pga"
    );
}

#[test]
fn every_missing_precondition_is_refused_before_anything_is_made() {
    // pga and pgb logical in database mode, plain (wal_level=replica), pgs logical in
    // schema mode.
    let (a, b, plain, s) = std::thread::scope(|scope| {
        let b = scope.spawn(PgServer::start_logical);
        let plain = scope.spawn(PgServer::start);
        let s = scope.spawn(PgServer::start_logical);
        (
            PgServer::start_logical(),
            b.join().unwrap(),
            plain.join().unwrap(),
            s.join().unwrap(),
        )
    });
    let env = TestEnv::initialised();
    let admin_a = add_server(&env, "pga", &a, Mode::Database);
    let admin_b = add_server(&env, "pgb", &b, Mode::Database);
    add_server(&env, "plain", &plain, Mode::Database);
    add_server(&env, "pgs", &s, Mode::Schema);
    env.customer("ops@acme.test", "Ops", &["--slug", SLUG, "--server", "pga"]);
    env.customer(
        "ops@replica.test",
        "Ops",
        &["--slug", "replica", "--server", "plain"],
    );
    let acme_login = || a.can_login("tenant_acme", "tenant_acme", &password(&env, SLUG));
    assert!(acme_login());
    let everywhere = [&a, &b, &s];

    // wal_level=replica on the source.
    let run = env.fails(&["customer", "move", "replica", "--to", "pgb", "--online"], 6);
    assert!(
        run.stderr
            .contains("runs with wal_level=replica; logical replication needs wal_level=logical"),
        "{run:?}"
    );
    assert_eq!(replication_objects(&b), Vec::<String>::new());
    assert_eq!(tenant_objects(&b), Vec::<String>::new());
    assert!(plain.can_login("tenant_replica", "tenant_replica", &password(&env, "replica")));

    // A table without a primary key.
    env.ok(&["db", "sql", SLUG, "CREATE TABLE nokey (x int)", "--write"]);
    refused(
        &env,
        "pgb",
        "table nokey has no primary key or replica identity",
        &everywhere,
        acme_login,
    );
    env.ok(&["db", "sql", SLUG, "DROP TABLE nokey", "--write"]);

    // The source's login may not replicate.
    a.psql("postgres", &format!("ALTER ROLE {} NOSUPERUSER", admin_a.user));
    refused(
        &env,
        "pgb",
        "the login of server pga has no REPLICATION right",
        &everywhere,
        acme_login,
    );
    a.psql("postgres", &format!("ALTER ROLE {} SUPERUSER", admin_a.user));

    // The target's login may not subscribe.
    b.psql("postgres", &format!("ALTER ROLE {} NOSUPERUSER", admin_b.user));
    refused(
        &env,
        "pgb",
        "the login of server pgb may not create subscriptions",
        &everywhere,
        acme_login,
    );
    b.psql("postgres", &format!("ALTER ROLE {} SUPERUSER", admin_b.user));

    // No free replication slot on the source.
    a.psql(
        "postgres",
        "SELECT pg_create_logical_replication_slot('filler_' || g, 'pgoutput') FROM generate_series(1, 4) g",
    );
    let run = env.fails(&["customer", "move", SLUG, "--to", "pgb", "--online"], 6);
    assert!(
        run.stderr.contains("server pga has no free replication slot"),
        "{run:?}"
    );
    a.psql(
        "postgres",
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots",
    );
    for server in everywhere {
        assert_eq!(replication_objects(server), Vec::<String>::new());
    }
    assert!(acme_login());

    // Database mode to schema mode: replication matches tables by schema.
    refused(
        &env,
        "pgs",
        "the servers keep tenants in different modes",
        &everywhere,
        acme_login,
    );

    // To the local folder.
    refused(
        &env,
        "local",
        "the target must be a PostgreSQL server",
        &everywhere,
        acme_login,
    );
    assert_eq!(env.names_in(&env.home.join("tenants")), Vec::<String>::new());

    // With every precondition met again, the move goes.
    let moved = env.json(&["customer", "move", SLUG, "--to", "pgb", "--online"]);
    assert_eq!(moved["outcome"], "moved", "{moved}");
    for server in everywhere {
        assert_eq!(replication_objects(server), Vec::<String>::new());
    }
}

// ---------------------------------------------------------------------------------
// Killed moves

/// How a killed move is settled.
#[derive(Debug, Clone, Copy)]
enum Settle {
    /// `customer move acme --abort`.
    Abort,
    /// `doctor --fix`.
    DoctorFix,
    /// The next `customer move acme --to … --online` undoes it, then moves.
    NextMove,
    /// Killed after the flip: the move is complete.
    Complete,
}

const KILLS: &[(&str, Settle)] = &[
    ("customer.move:provisioned", Settle::DoctorFix),
    ("customer.move:recorded", Settle::Abort),
    ("customer.move:online-publishing", Settle::Abort),
    ("customer.move:online-replicating", Settle::DoctorFix),
    ("customer.move:synced", Settle::Abort),
    ("customer.move:online-frozen", Settle::NextMove),
    ("customer.move:caught-up", Settle::Abort),
    ("customer.move:synced", Settle::NextMove),
    ("customer.move:flipped", Settle::Complete),
];

#[test]
fn an_online_move_killed_at_any_step_is_undone_or_complete_and_leaves_no_replication_behind() {
    let pair = Pair::new(Mode::Database);
    let env = &pair.env;
    let mut products = SEEDED;
    let (mut from, mut to) = ("pga", "pgb");
    for &(step, settle) in KILLS {
        let context = format!("killed at {step}, moving from {from} to {to}, settled by {settle:?}");
        env.cmd(&["customer", "move", SLUG, "--to", to, "--online"])
            .killed_at_step(step);
        let moved = match settle {
            Settle::Abort => {
                let aborted = env
                    .cmd(&["customer", "move", SLUG, "--abort"])
                    .stderr_has(UNDONE)
                    .json();
                assert_eq!(aborted["outcome"], "aborted", "{context}: {aborted}");
                None
            }
            Settle::DoctorFix => {
                let run = env.run(&["doctor", "--fix", "--json"]);
                assert_eq!(run.code, 0, "{context}: {run:?}");
                None
            }
            Settle::NextMove => Some(
                env.cmd(&["customer", "move", SLUG, "--to", to, "--online"])
                    .stderr_has(UNDONE)
                    .json(),
            ),
            Settle::Complete => None,
        };
        if moved.is_none() && !matches!(settle, Settle::Complete) {
            // Undone: the tenant is where it was, whole, and its role writes again.
            assert_eq!(pair.placed_on(), from, "{context}");
            assert_eq!(pair.products(from), products, "{context}");
            assert!(pair.can_login(from), "{context}");
            env.ok(&[
                "db",
                "sql",
                SLUG,
                &format!("INSERT INTO products (sku, name, price_cents) VALUES ('after-{products}', 'x', 1)"),
                "--write",
            ]);
            products += 1;
            for server in [&pair.a, &pair.b] {
                assert_eq!(replication_objects(server), Vec::<String>::new(), "{context}");
            }
            assert_eq!(tenant_objects(pair.server(to)), Vec::<String>::new(), "{context}");
            assert_eq!(doctor_problems(env), Vec::<String>::new(), "{context}");
        }
        let moved = match (moved, settle) {
            (Some(moved), _) => moved,
            (None, Settle::Complete) => Value::Null,
            (None, _) => env.json(&["customer", "move", SLUG, "--to", to, "--online"]),
        };
        if moved != Value::Null {
            assert_eq!(moved["outcome"], "moved", "{context}: {moved}");
        }
        // Moved: at the target with every row, nothing of the replication left.
        assert_eq!(pair.placed_on(), to, "{context}");
        assert_eq!(pair.products(to), products, "{context}");
        assert!(pair.can_login(to), "{context}");
        for server in [&pair.a, &pair.b] {
            assert_eq!(replication_objects(server), Vec::<String>::new(), "{context}");
        }
        // Killed after the flip, nothing recovered its lock file yet: the next command
        // that recovers (--finish here) removes it.
        if !matches!(settle, Settle::Complete) {
            assert_eq!(doctor_problems(env), Vec::<String>::new(), "{context}");
        }
        let finished = env.json(&["customer", "move", SLUG, "--finish"]);
        assert_eq!(finished["outcome"], "finished", "{context}: {finished}");
        assert_eq!(doctor_problems(env), Vec::<String>::new(), "{context}");
        std::mem::swap(&mut from, &mut to);
    }
}
