//! `doctor` on PostgreSQL tenants (SPEC section 7): each is owned by its role, closed
//! to PUBLIC, and the catalog's ledger agrees with its own history; things broken
//! directly on the server are found by name and `--fix` puts them back.

use serde_json::Value;

use crate::pg_server::{Login, PgServer};
use crate::support::TestEnv;

/// The tenant checks of a report that are not ok, as `check target status`, sorted.
fn problems(report: &Value) -> Vec<String> {
    let mut found: Vec<String> = report
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"].as_str().unwrap().starts_with("tenant.") && c["status"] != "ok")
        .map(|c| {
            format!(
                "{} {} {}",
                c["check"].as_str().unwrap(),
                c["target"].as_str().unwrap(),
                c["status"].as_str().unwrap()
            )
        })
        .collect();
    found.sort();
    found
}

fn message<'r>(report: &'r Value, check: &str, target: &str) -> &'r str {
    report
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check && c["target"] == target)
        .and_then(|c| c["message"].as_str())
        .unwrap_or_else(|| panic!("no {check} for {target} in {report}"))
}

/// Runs `doctor --json` (with `extra`), expecting `code`, and returns its report.
fn doctor(env: &TestEnv, extra: &[&str], code: i32) -> Value {
    let mut args = vec!["doctor", "--json"];
    args.extend_from_slice(extra);
    let run = env.run(&args);
    assert_eq!(run.code, code, "{run:?}");
    serde_json::from_str(&run.stdout).unwrap()
}

fn create(env: &TestEnv, name: &str, server: Option<&str>) {
    let email = format!("ops@{}.test", name.to_lowercase());
    let mut args = vec!["customer", "create", &email, "Ops", name];
    if let Some(server) = server {
        args.extend(["--server", server]);
    }
    env.json(&args);
}

fn with_server(database: &str, mode: &str) -> (PgServer, TestEnv, Login) {
    let server = PgServer::start();
    let env = TestEnv::initialised();
    let admin = server.admin_login();
    if database != "postgres" {
        server.psql(
            "postgres",
            &format!("CREATE DATABASE {database} OWNER {}", admin.user),
        );
    }
    let url = server.url(&admin, database);
    env.json(&["server", "add", "pg1", "--url", &url, "--mode", mode]);
    (server, env, admin)
}

#[test]
fn doctor_finds_a_server_tenant_given_away_opened_to_public_or_out_of_its_ledger_and_fix_repairs_it() {
    let (server, env, admin) = with_server("postgres", "database");
    create(&env, "Acme", Some("pg1"));
    create(&env, "Beta", Some("pg1"));
    create(&env, "Gamma", Some("pg1"));
    create(&env, "Local", None);
    assert_eq!(problems(&doctor(&env, &[], 0)), Vec::<String>::new());

    server.psql(
        "postgres",
        &format!("ALTER DATABASE tenant_acme OWNER TO {}", admin.user),
    );
    server.psql("postgres", "GRANT CONNECT ON DATABASE tenant_beta TO PUBLIC");
    // The tenant's own history is the truth; the ledger is the catalog's copy of it.
    server.psql(
        "tenant_gamma",
        "DELETE FROM refinery_schema_history WHERE version = 1",
    );
    env.catalog()
        .execute(
            "DELETE FROM tenant_migrations WHERE version = 2
             AND customer_id IN (SELECT id FROM customers WHERE slug IN ('beta', 'local'))",
            [],
        )
        .unwrap();

    let report = doctor(&env, &[], 7);
    assert_eq!(
        problems(&report),
        [
            "tenant.access beta fail",
            "tenant.ledger beta fail",
            "tenant.ledger gamma fail",
            "tenant.ledger local fail",
            "tenant.owner acme fail",
        ],
        "{report}"
    );
    let owner = message(&report, "tenant.owner", "acme");
    assert!(
        owner.contains(&admin.user) && owner.contains("tenant_acme"),
        "{owner}"
    );
    assert!(message(&report, "tenant.ledger", "beta").contains("V2 is applied but not in the ledger"));
    assert!(message(&report, "tenant.ledger", "gamma").contains("V1 is in the ledger but not applied"));

    let fixed = doctor(&env, &["--fix"], 0);
    assert_eq!(
        problems(&fixed),
        [
            "tenant.access beta fixed",
            "tenant.ledger beta fixed",
            "tenant.ledger gamma fixed",
            "tenant.ledger local fixed",
            "tenant.owner acme fixed",
        ],
        "{fixed}"
    );
    assert_eq!(
        server.psql(
            "postgres",
            "SELECT string_agg(pg_get_userbyid(datdba)::text || ':' || \
             has_database_privilege('public', oid, 'CONNECT'), ',' ORDER BY datname) \
             FROM pg_database WHERE datname ~ '^tenant_'"
        ),
        "tenant_acme:false,tenant_beta:false,tenant_gamma:false"
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM tenant_migrations JOIN customers ON customers.id = customer_id \
             WHERE slug IN ('beta', 'local')"
        ),
        6,
        "the missing rows are back"
    );
    assert_eq!(
        env.count(
            "SELECT min(version) * 10 + count(*) FROM tenant_migrations JOIN customers ON customers.id = customer_id \
             WHERE slug = 'gamma'"
        ),
        22,
        "gamma's ledger is its history: V2 and V3"
    );
    assert_eq!(problems(&doctor(&env, &[], 0)), Vec::<String>::new());
}

#[test]
fn doctor_checks_who_owns_a_tenant_schema_and_fix_gives_it_back() {
    let (server, env, admin) = with_server("platform", "schema");
    create(&env, "Acme", Some("pg1"));
    assert_eq!(problems(&doctor(&env, &[], 0)), Vec::<String>::new());

    server.psql(
        "platform",
        &format!("ALTER SCHEMA tenant_acme OWNER TO {}", admin.user),
    );
    server.psql(
        "platform",
        "DELETE FROM tenant_acme.refinery_schema_history WHERE version = 1",
    );
    let report = doctor(&env, &[], 7);
    assert_eq!(
        problems(&report),
        ["tenant.ledger acme fail", "tenant.owner acme fail"],
        "{report}"
    );
    let fixed = doctor(&env, &["--fix"], 0);
    assert_eq!(
        problems(&fixed),
        ["tenant.ledger acme fixed", "tenant.owner acme fixed"],
        "{fixed}"
    );
    assert_eq!(
        server.psql(
            "platform",
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'tenant_acme'"
        ),
        "tenant_acme"
    );
    assert_eq!(problems(&doctor(&env, &[], 0)), Vec::<String>::new());
}

#[test]
fn a_repair_the_admin_login_may_not_make_leaves_the_finding_failed() {
    let (server, env, _admin) = with_server("postgres", "database");
    create(&env, "Acme", Some("pg1"));
    // A role the admin login is no member of: only a superuser can give it back.
    server.psql(
        "postgres",
        "CREATE ROLE stranger NOLOGIN; ALTER DATABASE tenant_acme OWNER TO stranger",
    );
    let fixed = doctor(&env, &["--fix"], 7);
    // Nor may the admin login connect to it any more.
    assert_eq!(
        problems(&fixed),
        ["tenant.owner acme fail", "tenant.quick_check acme fail"],
        "{fixed}"
    );
    assert!(
        message(&fixed, "tenant.owner", "acme").contains("repair failed"),
        "{fixed}"
    );
}
