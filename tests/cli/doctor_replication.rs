//! `doctor` on what a killed `customer move --online` leaves (SPEC section 7): the
//! `tenantctl_*` publication and replication slot on the source server, the
//! subscription on the target. Each is reported by name, the slot as a failure (it
//! keeps the source's WAL), and `--fix` drops them; real logical replication between
//! two throwaway clusters makes them.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pg_server::{Login, PgServer};
use crate::support::TestEnv;

/// The name a move gives its publication, subscription and slot alike.
const MOVE: &str = "tenantctl_move_1_deadbeef";

/// The server checks of a report that are not ok, as `check target status: message`,
/// sorted.
fn problems(report: &Value) -> Vec<String> {
    let mut found: Vec<String> = report
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"].as_str().unwrap().starts_with("server.") && c["status"] != "ok")
        .map(|c| {
            format!(
                "{} {} {}: {}",
                c["check"].as_str().unwrap(),
                c["target"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
                c["message"].as_str().unwrap()
            )
        })
        .collect();
    found.sort();
    found
}

/// Runs `doctor --json` (with `extra`), expecting `code`, and returns its report.
fn doctor(env: &TestEnv, extra: &[&str], code: i32) -> Value {
    let mut args = vec!["doctor", "--json"];
    args.extend_from_slice(extra);
    let run = env.run(&args);
    assert_eq!(run.code, code, "{run:?}");
    serde_json::from_str(&run.stdout).unwrap()
}

/// A logical cluster registered as `name`, its admin login a superuser when
/// `superuser` (only a superuser may drop another's subscription or end the walsender
/// of the superuser's subscription).
fn add_server(env: &TestEnv, name: &str, superuser: bool) -> (PgServer, Login) {
    let server = PgServer::start_logical();
    let admin = server.admin_login();
    if superuser {
        server.psql("postgres", &format!("ALTER ROLE {} SUPERUSER", admin.user));
    }
    let url = server.url(&admin, "postgres");
    env.json(&["server", "add", name, "--url", &url]);
    (server, admin)
}

/// What a move does before it is killed: on `source`, a publication of the customer's
/// `users`; on `target`, a table of the same shape in `acme_copy` and a subscription
/// to it, which makes the slot on `source` over its unix socket.
fn start_a_move(source: &PgServer, target: &PgServer) {
    source.psql(
        "tenant_acme",
        &format!("CREATE PUBLICATION {MOVE} FOR TABLE users"),
    );
    target.psql("postgres", "CREATE DATABASE acme_copy");
    target.psql(
        "acme_copy",
        "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL, \
         role text NOT NULL, created_at timestamptz NOT NULL)",
    );
    // No initial copy: its table-sync workers would make slots of their own.
    target.psql(
        "acme_copy",
        &format!(
            "CREATE SUBSCRIPTION {MOVE} CONNECTION 'host={} port=5432 dbname=tenant_acme user=postgres' \
             PUBLICATION {MOVE} WITH (copy_data = false)",
            source.socket_dir().display()
        ),
    );
}

/// Waits until the subscription's walsender holds the slot on `source`, so that
/// doctor meets a slot in use, polling with a deadline.
fn wait_for_active_slot(source: &PgServer) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let query = format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{MOVE}' AND active");
    while source.psql("postgres", &query) != "1" {
        assert!(Instant::now() < deadline, "the subscription never took its slot");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How many of the move's objects of one catalog are left on `server`.
fn left(server: &PgServer, database: &str, catalog: &str, column: &str) -> String {
    server.psql(
        database,
        &format!("SELECT count(*) FROM {catalog} WHERE {column} = '{MOVE}'"),
    )
}

#[test]
fn doctor_reports_a_killed_moves_publication_slot_and_subscription_and_fix_drops_them() {
    let env = TestEnv::initialised();
    let (source, _) = add_server(&env, "source", true);
    let (target, _) = add_server(&env, "target", true);
    env.json(&[
        "customer",
        "create",
        "ops@acme.test",
        "Ops",
        "Acme",
        "--server",
        "source",
    ]);
    assert_eq!(problems(&doctor(&env, &[], 0)), Vec::<String>::new());
    start_a_move(&source, &target);
    wait_for_active_slot(&source);

    let report = doctor(&env, &[], 7);
    assert_eq!(
        problems(&report),
        [
            format!(
                "server.replication_leftover source/{MOVE} fail: replication slot {MOVE} in database tenant_acme \
                 on server source is what an interrupted move left; it keeps the server's WAL until it is dropped"
            ),
            format!(
                "server.replication_leftover source/{MOVE} warn: publication {MOVE} in database tenant_acme \
                 on server source is what an interrupted move left"
            ),
            format!(
                "server.replication_leftover target/{MOVE} warn: subscription {MOVE} in database acme_copy \
                 on server target is what an interrupted move left"
            ),
        ],
        "{report}"
    );

    let fixed = doctor(&env, &["--fix"], 0);
    let statuses: Vec<&str> = fixed
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == "server.replication_leftover")
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["fixed", "fixed", "fixed"], "{fixed}");
    assert_eq!(left(&source, "tenant_acme", "pg_publication", "pubname"), "0");
    assert_eq!(
        left(&source, "postgres", "pg_replication_slots", "slot_name"),
        "0"
    );
    assert_eq!(left(&target, "postgres", "pg_subscription", "subname"), "0");
    assert_eq!(problems(&doctor(&env, &[], 0)), Vec::<String>::new());
}

#[test]
fn a_slot_whose_subscription_let_go_of_it_is_found_and_dropped_once_the_admin_login_may() {
    let env = TestEnv::initialised();
    let (source, admin) = add_server(&env, "source", false);
    let target = PgServer::start_logical();
    env.json(&[
        "customer",
        "create",
        "ops@acme.test",
        "Ops",
        "Acme",
        "--server",
        "source",
    ]);
    start_a_move(&source, &target);
    // What a move killed while cleaning up leaves: its subscription dropped without
    // its slot, its publication dropped, the slot still on the source.
    target.psql(
        "acme_copy",
        &format!(
            "ALTER SUBSCRIPTION {MOVE} DISABLE; ALTER SUBSCRIPTION {MOVE} SET (slot_name = NONE); \
             DROP SUBSCRIPTION {MOVE}"
        ),
    );
    source.psql("tenant_acme", &format!("DROP PUBLICATION {MOVE}"));
    let slot = format!(
        "server.replication_leftover source/{MOVE} fail: replication slot {MOVE} in database tenant_acme \
         on server source is what an interrupted move left; it keeps the server's WAL until it is dropped"
    );
    // A login that is no superuser still finds it, but may not drop it.
    assert_eq!(problems(&doctor(&env, &[], 7)), std::slice::from_ref(&slot));
    let refused = problems(&doctor(&env, &["--fix"], 7));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].starts_with(&format!(
            "{slot}; repair failed: server source: cannot drop replication slot {MOVE}"
        )),
        "{refused:?}"
    );
    assert_eq!(
        left(&source, "postgres", "pg_replication_slots", "slot_name"),
        "1"
    );

    source.psql("postgres", &format!("ALTER ROLE {} SUPERUSER", admin.user));
    let fixed = problems(&doctor(&env, &["--fix"], 0));
    assert_eq!(
        fixed,
        [format!("{}; dropped", slot.replace(" fail: ", " fixed: "))]
    );
    assert_eq!(
        left(&source, "postgres", "pg_replication_slots", "slot_name"),
        "0"
    );
    assert_eq!(problems(&doctor(&env, &[], 0)), Vec::<String>::new());
}
