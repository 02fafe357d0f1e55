//! Database servers (SPEC section 7): the server registry, against real PostgreSQL
//! clusters started for the tests.

use std::path::{Path, PathBuf};

use crate::pg_server::{Login, PgServer};
use serde_json::Value;

use crate::support::{TestEnv, mode};

#[test]
fn a_throwaway_cluster_starts_takes_logins_and_is_removed_when_dropped() {
    let server = PgServer::start();
    let folder = server.socket_dir().parent().unwrap().to_path_buf();
    assert_eq!(server.psql("postgres", "SELECT 1 + 1"), "2");
    let admin = server.admin_login();
    assert!(server.can_login("postgres", &admin.user, &admin.password));
    assert!(!server.can_login("postgres", &admin.user, "wrong"));
    drop(server);
    assert!(!folder.exists(), "the cluster's folder outlived its handle");
}

/// Every file under `dir` (the catalog's WAL included) and every output must be free
/// of `password`.
fn assert_nowhere(dir: &Path, password: &str, outputs: &[&str]) {
    for output in outputs {
        assert!(!output.contains(password), "a password was printed: {output}");
    }
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap();
        let found = bytes.windows(password.len()).any(|w| w == password.as_bytes());
        assert!(!found, "{} holds a password in plaintext", entry.display());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn server_add_checks_the_server_builds_its_template_and_keeps_the_password_encrypted() {
    let server = PgServer::start();
    let env = TestEnv::initialised();
    let admin = server.admin_login();
    let url = server.url(&admin, "postgres");
    let added = env.json(&["server", "add", "pg1", "--url", &url, "--capacity", "10"]);
    assert_eq!(added["name"], "pg1");
    assert_eq!(added["engine"], "postgres");
    assert_eq!(added["mode"], "database");
    assert_eq!(added["status"], "active");
    assert_eq!(added["capacity"], 10);
    assert_eq!(added["free_capacity"], 10);
    assert_eq!(added["tenants"], 0);
    assert!(added["version"].as_str().unwrap().starts_with("15"), "{added}");
    assert_eq!(
        added["url"],
        server.url(
            &Login {
                user: admin.user.clone(),
                password: "***".into()
            },
            "postgres"
        )
    );
    assert_eq!(mode(&env.home.join("master.key")), 0o600);
    assert_eq!(std::fs::read(env.home.join("master.key")).unwrap().len(), 32);

    // The template holds the PostgreSQL starter set, owned apart from the admin.
    let tables = server.psql(
        "postgres",
        "SELECT datallowconn FROM pg_database WHERE datname = 'tenantctl_template'",
    );
    assert_eq!(tables, "f", "the template takes no connections");
    server.psql(
        "postgres",
        "ALTER DATABASE tenantctl_template ALLOW_CONNECTIONS true",
    );
    let owned = server.psql(
        "tenantctl_template",
        "SELECT string_agg(tablename || ':' || tableowner, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
    );
    assert_eq!(
        owned,
        "order_items:tenantctl_template_owner,orders:tenantctl_template_owner,products:tenantctl_template_owner,\
         refinery_schema_history:tenantctl_template_owner,users:tenantctl_template_owner"
    );

    let listed = env.json(&["server", "list"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["local", "pg1"]);
    assert_eq!(listed[0]["engine"], "sqlite");
    assert_eq!(listed[0]["builtin"], true);
    let shown = env.json(&["server", "show", "pg1"]);
    assert_eq!(shown["url"], added["url"]);
    let tested = env.json(&["server", "test", "pg1"]);
    assert_eq!(tested["reachable"], true);
    assert_eq!(tested["template_current"], true);
    assert!(tested["latency_ms"].as_f64().unwrap() >= 0.0);
    let table = env.ok(&["server", "list"]);
    let audit = env.ok(&["audit", "--json"]);
    assert!(audit.stdout.contains("server.add"), "{}", audit.stdout);
    assert_nowhere(
        &env.home,
        &admin.password,
        &[
            &table.stdout,
            &audit.stdout,
            &shown.to_string(),
            &tested.to_string(),
            &added.to_string(),
        ],
    );
}

#[test]
fn the_password_can_come_from_stdin_and_never_from_the_url_alone() {
    let server = PgServer::start();
    let env = TestEnv::initialised();
    let admin = server.admin_login();
    let bare = server.url_without_password(&admin.user, "postgres");
    let run = env.run(&["server", "add", "pg1", "--url", &bare]);
    assert_eq!(run.code, 1, "no password: the server refuses the login: {run:?}");
    assert!(run.stderr.contains("server pg1"), "{run:?}");
    let added = env
        .cmd(&["server", "add", "pg1", "--url", &bare, "--password-stdin"])
        .stdin(format!("{}\n", admin.password))
        .json();
    assert_eq!(added["url"], format!("{}", bare.replace("@", ":***@")));
    assert_eq!(env.json(&["server", "test", "pg1"])["reachable"], true);
    assert_nowhere(&env.home, &admin.password, &[&added.to_string()]);
}

#[test]
fn bad_server_input_gets_its_exit_code_and_never_shows_the_password() {
    let server = PgServer::start();
    let env = TestEnv::initialised();
    let admin = server.admin_login();
    let url = server.url(&admin, "postgres");
    let malformed = format!("postgresql//{}:{}@nowhere", admin.user, admin.password);
    let run = env.fails(&["server", "add", "pg1", "--url", &malformed], 2);
    assert_nowhere(&env.home, &admin.password, &[&run.stderr]);
    env.fails(&["server", "add", "pg1", "--url", &url, "--mode", "shard"], 2);
    env.fails(&["server", "add", "local", "--url", &url], 2);
    env.fails(&["server", "add", "Bad_Name", "--url", &url], 2);

    let down = url.replace(
        &server.socket_dir().display().to_string().replace('/', "%2F"),
        "%2Ftmp%2Fnowhere",
    );
    let run = env.fails(&["server", "add", "pg1", "--url", &down], 1);
    assert!(run.stderr.contains("server pg1"), "{run:?}");
    let run = env.fails(
        &[
            "server",
            "add",
            "pg1",
            "--url",
            &url.replace(&admin.password, "wrong"),
        ],
        1,
    );
    assert!(run.stderr.contains("password authentication failed"), "{run:?}");

    server.psql("postgres", "CREATE ROLE weak LOGIN PASSWORD 'weak-pass'");
    let weak = server.url(
        &Login {
            user: "weak".into(),
            password: "weak-pass".into(),
        },
        "postgres",
    );
    let run = env.fails(&["server", "add", "pg1", "--url", &weak], 6);
    assert!(
        run.stderr.contains("cannot create databases and roles"),
        "{run:?}"
    );

    env.json(&["server", "add", "pg1", "--url", &url]);
    env.fails(&["server", "add", "pg1", "--url", &url], 4);
    env.fails(&["server", "show", "pg9"], 3);
    env.fails(&["server", "test", "pg9"], 3);
    assert_eq!(env.count("SELECT count(*) FROM servers"), 1);
    assert_nowhere(&env.home, &admin.password, &[]);
}

#[test]
fn a_missing_or_wrong_master_key_is_refused_with_a_hint() {
    let server = PgServer::start();
    let env = TestEnv::initialised();
    let admin = server.admin_login();
    env.json(&["server", "add", "pg1", "--url", &server.url(&admin, "postgres")]);
    let key = std::fs::read(env.home.join("master.key")).unwrap();
    std::fs::remove_file(env.home.join("master.key")).unwrap();
    let run = env.fails(&["server", "test", "pg1"], 6);
    assert!(run.stderr.contains("no master key"), "{run:?}");
    let other = "A".repeat(43) + "=";
    let run = env
        .cmd(&["server", "test", "pg1"])
        .env("TENANTCTL_MASTER_KEY", &other)
        .expect_code(6)
        .run();
    assert!(run.stderr.contains("master key"), "{run:?}");
    let run = env
        .cmd(&["server", "test", "pg1"])
        .env("TENANTCTL_MASTER_KEY", "not base64!")
        .expect_code(6)
        .run();
    assert!(run.stderr.contains("not base64"), "{run:?}");
    use base64::Engine as _;
    let right = base64::engine::general_purpose::STANDARD.encode(&key);
    let tested = env
        .cmd(&["server", "test", "pg1"])
        .env("TENANTCTL_MASTER_KEY", &right)
        .json();
    assert_eq!(tested["reachable"], true);
}

#[test]
fn server_update_checks_a_new_login_and_remove_refuses_while_tenants_live_there() {
    let server = PgServer::start();
    let env = TestEnv::initialised();
    let admin = server.admin_login();
    env.json(&["server", "add", "pg1", "--url", &server.url(&admin, "postgres")]);
    let drained = env.json(&[
        "server",
        "update",
        "pg1",
        "--status",
        "draining",
        "--capacity",
        "3",
    ]);
    assert_eq!(drained["status"], "draining");
    assert_eq!(drained["capacity"], 3);
    env.fails(&["server", "update", "pg1"], 2);
    let other = server.admin_login();
    let wrong = server.url(
        &Login {
            user: other.user.clone(),
            password: "nope".into(),
        },
        "postgres",
    );
    env.fails(&["server", "update", "pg1", "--url", &wrong], 1);
    assert_eq!(
        env.json(&["server", "test", "pg1"])["reachable"],
        true,
        "the old login stays"
    );
    let moved = env.json(&[
        "server",
        "update",
        "pg1",
        "--url",
        &server.url(&other, "postgres"),
    ]);
    assert!(moved["url"].as_str().unwrap().contains(&other.user), "{moved}");
    assert_eq!(env.json(&["server", "test", "pg1"])["reachable"], true);

    env.fails(&["server", "remove", "pg1"], 6);
    env.fails(&["server", "remove", "pg1", "--confirm", "pg2"], 6);
    env.customer("a@acme.test", "A", &[]);
    env.catalog()
        .execute("UPDATE customers SET server = 'pg1', engine = 'postgres'", [])
        .unwrap();
    let run = env.fails(&["server", "remove", "pg1", "--confirm", "pg1"], 6);
    assert!(run.stderr.contains("hosts 1 tenants"), "{run:?}");
    env.catalog()
        .execute("UPDATE customers SET server = 'local', engine = 'sqlite'", [])
        .unwrap();
    env.json(&["server", "remove", "pg1", "--confirm", "pg1"]);
    assert_eq!(env.count("SELECT count(*) FROM servers"), 0);
    assert_nowhere(&env.home, &admin.password, &[]);
    assert_nowhere(&env.home, &other.password, &[]);
}

/// A home with one PostgreSQL server `pg1` (database mode) on its own cluster.
fn home_with_server() -> (PgServer, TestEnv, Login) {
    let server = PgServer::start();
    let env = TestEnv::initialised();
    let admin = server.admin_login();
    env.json(&["server", "add", "pg1", "--url", &server.url(&admin, "postgres")]);
    (server, env, admin)
}

#[test]
fn customer_create_on_a_server_copies_the_template_into_a_database_its_own_role_owns() {
    let (server, env, admin) = home_with_server();
    let acme = env.json(&[
        "customer",
        "create",
        "ops@acme.test",
        "Ops",
        "Acme",
        "--server",
        "pg1",
    ]);
    assert_eq!(acme["slug"], "acme");
    assert_eq!(acme["status"], "active");
    assert_eq!(acme["schema_version"], 3);
    let beta = env.json(&[
        "customer",
        "create",
        "ops@beta.test",
        "Ops",
        "Beta",
        "--server",
        "pg1",
    ]);
    assert_eq!(
        server.psql(
            "postgres",
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'tenant_acme'"
        ),
        "tenant_acme"
    );
    assert_eq!(
        server.psql(
            "tenant_acme",
            "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'public'"
        ),
        "tenant_acme"
    );
    // Each role reaches its own database only, and nobody else reaches it.
    assert_eq!(
        server.psql(
            "postgres",
            "SELECT has_database_privilege('tenant_acme', 'tenant_beta', 'CONNECT'), \
             has_database_privilege('tenant_beta', 'tenant_acme', 'CONNECT'), \
             has_database_privilege('tenant_acme', 'tenant_acme', 'CONNECT')"
        ),
        "f|f|t"
    );
    assert_eq!(
        server.psql("postgres", "SELECT rolcanlogin, rolcreaterole, rolcreatedb, rolsuper FROM pg_roles WHERE rolname = 'tenant_acme'"),
        "t|f|f|f"
    );
    // The catalog keeps each role's password encrypted; no staging copy is left.
    assert_eq!(
        env.count("SELECT count(*) FROM tenant_roles WHERE password LIKE 'v1.%'"),
        2
    );
    assert_eq!(
        server.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'tenantctl_new_%'"
        ),
        "0"
    );
    assert_eq!(beta["slug"], "beta");
    assert_nowhere(&env.home, &admin.password, &[&acme.to_string()]);
}

#[test]
fn db_sql_on_a_server_tenant_runs_as_its_role_read_only_unless_write() {
    let (_server, env, _admin) = home_with_server();
    env.json(&[
        "customer",
        "create",
        "ops@acme.test",
        "Ops",
        "Acme",
        "--server",
        "pg1",
    ]);
    let who = env.json(&[
        "db",
        "sql",
        "acme",
        "SELECT current_user AS who, 1 + 1 AS two, true AS yes",
    ]);
    assert_eq!(who[0]["who"], "tenant_acme", "{who}");
    assert_eq!(who[0]["two"], 2, "{who}");
    assert_eq!(who[0]["yes"], true, "{who}");
    let run = env.fails(
        &[
            "db",
            "sql",
            "acme",
            "INSERT INTO users (email, name) VALUES ('a@b.c', 'A')",
        ],
        6,
    );
    assert!(run.stderr.contains("read-only"), "{run:?}");
    env.json(&[
        "db",
        "sql",
        "acme",
        "--write",
        "INSERT INTO users (email, name) VALUES ('a@b.c', 'A')",
    ]);
    let count = env.json(&["db", "sql", "acme", "SELECT count(*) AS n FROM users"]);
    assert_eq!(count[0]["n"], 1, "{count}");
    // The server, not string matching, stops what the role may not do.
    for denied in [
        "COPY (SELECT 1) TO PROGRAM 'id'",
        "CREATE ROLE sneaky LOGIN",
        "SELECT pg_read_file('/etc/passwd')",
    ] {
        let run = env.run(&["db", "sql", "acme", "--write", denied]);
        assert_eq!(run.code, 6, "{denied}: {run:?}");
    }
    env.fails(&["db", "sql", "acme", "SELEC nonsense"], 2);
}

#[test]
fn suspend_delete_undelete_and_purge_act_on_the_server_itself() {
    let (server, env, _admin) = home_with_server();
    env.json(&[
        "customer",
        "create",
        "ops@acme.test",
        "Ops",
        "Acme",
        "--server",
        "pg1",
    ]);
    let can_login = || {
        server.psql(
            "postgres",
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'tenant_acme'",
        )
    };
    let databases = || {
        server.psql(
            "postgres",
            "SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '') FROM pg_database WHERE datname LIKE '%tenant_acme'",
        )
    };
    env.json(&["customer", "suspend", "acme", "--reason", "unpaid"]);
    assert_eq!(can_login(), "f");
    assert_ne!(
        env.run(&["db", "sql", "acme", "SELECT 1"]).code,
        0,
        "a suspended role cannot log in"
    );
    env.json(&["customer", "reactivate", "acme"]);
    assert_eq!(can_login(), "t");
    env.json(&["db", "sql", "acme", "SELECT 1 AS one"]);

    env.json(&["customer", "delete", "acme", "--confirm", "acme"]);
    assert_eq!(can_login(), "f");
    let id = env.count("SELECT id FROM customers WHERE slug = 'acme'");
    assert_eq!(databases(), format!("tenantctl_deleted_{id}_tenant_acme"));
    env.json(&["customer", "undelete", "acme"]);
    assert_eq!(databases(), "tenant_acme");
    assert_eq!(can_login(), "t");
    env.json(&["db", "sql", "acme", "SELECT 1 AS one"]);

    env.json(&["customer", "delete", "acme", "--confirm", "acme"]);
    env.json(&["customer", "purge", "acme", "--confirm", "acme"]);
    assert_eq!(databases(), "");
    assert_eq!(
        server.psql(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'tenant_acme'"
        ),
        "0"
    );
    assert_eq!(env.count("SELECT count(*) FROM tenant_roles"), 0);
}

#[test]
fn resolve_show_path_and_url_report_the_placement_and_passwords_rotate() {
    let (server, env, _admin) = home_with_server();
    env.json(&[
        "customer",
        "create",
        "ops@acme.test",
        "Ops",
        "Acme",
        "--server",
        "pg1",
    ]);
    env.json(&["customer", "create", "ops@local.test", "Ops", "Local"]);
    env.ok(&["config", "set", "platform_domain", "platform.test"]);
    let resolved = env.json(&["resolve", "acme.platform.test"]);
    let placement = &resolved["placement"];
    assert_eq!(placement["engine"], "postgres");
    assert_eq!(placement["server"], "pg1");
    assert_eq!(placement["host"], server.socket_dir().display().to_string());
    assert_eq!(placement["port"], 5432);
    assert_eq!(placement["database"], "tenant_acme");
    assert_eq!(placement["schema"], "public");
    assert_eq!(placement["role"], "tenant_acme");
    assert_eq!(placement["path"], Value::Null);
    assert_eq!(env.json(&["customer", "show", "acme"])["placement"], *placement);
    let local = env.json(&["resolve", "local.platform.test"]);
    assert_eq!(local["placement"]["engine"], "sqlite");
    assert_eq!(local["placement"]["path"], local["db_path"]);

    let path = env.json(&["db", "path", "acme"]);
    let socket = server.socket_dir().display().to_string().replace('/', "%2F");
    assert_eq!(
        path["path"],
        format!("postgresql://tenant_acme@{socket}:5432/tenant_acme")
    );
    let hidden = env.json(&["db", "url", "acme"]);
    assert_eq!(
        hidden["url"],
        format!("postgresql://tenant_acme:***@{socket}:5432/tenant_acme")
    );
    assert_eq!(hidden["revealed"], false);
    let password = |env: &TestEnv| {
        let shown = env.json(&["db", "url", "acme", "--reveal"]);
        let url = shown["url"].as_str().unwrap().to_string();
        url.split_once(':')
            .unwrap()
            .1
            .split_once(':')
            .unwrap()
            .1
            .split_once('@')
            .unwrap()
            .0
            .to_string()
    };
    let first = password(&env);
    assert!(server.can_login("tenant_acme", "tenant_acme", &first));
    assert!(env.ok(&["audit", "--json"]).stdout.contains("db.url.reveal"));
    assert_nowhere(&env.home, &first, &[]);

    let rotated = env.json(&["db", "rotate-password", "acme"]);
    assert_eq!(rotated[0]["role"], "tenant_acme");
    let second = password(&env);
    assert_ne!(first, second);
    assert!(!server.can_login("tenant_acme", "tenant_acme", &first));
    assert!(server.can_login("tenant_acme", "tenant_acme", &second));
    assert_eq!(
        env.json(&["db", "rotate-password", "--all"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(server.can_login("tenant_acme", "tenant_acme", &password(&env)));
    env.fails(&["db", "rotate-password", "local"], 6);
    env.fails(&["db", "rotate-password"], 2);
    assert!(
        env.json(&["db", "url", "local"])["url"]
            .as_str()
            .unwrap()
            .starts_with("sqlite:///")
    );
}

#[test]
fn a_create_killed_at_any_step_leaves_nothing_on_the_server_once_recovered() {
    let (server, env, _admin) = home_with_server();
    let leftovers = || {
        server.psql(
            "postgres",
            "SELECT (SELECT count(*) FROM pg_database WHERE datname LIKE 'tenant%' AND datname <> 'tenantctl_template') \
             || '/' || (SELECT count(*) FROM pg_roles WHERE rolname LIKE 'tenant\\_%')",
        )
    };
    for step in [
        "customer.create:provisioned",
        "customer.create:reserved",
        "customer.create:published",
    ] {
        env.cmd(&[
            "customer",
            "create",
            "ops@acme.test",
            "Ops",
            "Acme",
            "--server",
            "pg1",
        ])
        .killed_at_step(step);
        assert_ne!(leftovers(), "0/0", "{step} left nothing to clean");
        // doctor --fix finishes the work: the create is undone and its copy gone.
        env.run(&["doctor", "--fix", "--json"]);
        assert_eq!(leftovers(), "0/0", "after {step}");
        assert_eq!(env.count("SELECT count(*) FROM customers"), 0, "after {step}");
    }
    let acme = env.json(&[
        "customer",
        "create",
        "ops@acme.test",
        "Ops",
        "Acme",
        "--server",
        "pg1",
    ]);
    assert_eq!(acme["slug"], "acme", "the slug is free again");
}

#[test]
fn doctor_checks_each_server_and_fix_drops_orphans_and_rebuilds_a_stale_template() {
    let (server, env, admin) = home_with_server();
    env.json(&[
        "customer",
        "create",
        "ops@acme.test",
        "Ops",
        "Acme",
        "--server",
        "pg1",
    ]);
    let report = env.json(&["doctor"]);
    let find = |report: &Value, check: &str| -> Vec<Value> {
        report
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["check"] == check)
            .cloned()
            .collect()
    };
    assert_eq!(find(&report, "server.reachable")[0]["status"], "ok", "{report}");
    assert_eq!(find(&report, "server.template")[0]["status"], "ok", "{report}");
    assert_eq!(find(&report, "tenant.secret")[0]["status"], "ok", "{report}");
    assert!(find(&report, "tenant.drift").is_empty(), "{report}");

    // What a create killed before the catalog knew of it would leave.
    server.psql(
        "postgres",
        &format!("CREATE DATABASE tenant_ghost OWNER {}", admin.user),
    );
    for dir in ["tenant-migrations", "tenant-migrations/postgres"] {
        std::fs::write(
            env.home.join(dir).join("V4__notes.sql"),
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
        )
        .unwrap();
    }
    let report = env.json(&["doctor"]);
    let orphan = find(&report, "server.orphan");
    assert_eq!(orphan[0]["status"], "warn", "{report}");
    assert_eq!(orphan[0]["target"], "pg1/tenant_ghost");
    assert_eq!(find(&report, "server.template")[0]["status"], "warn", "{report}");
    let fixed = env.cmd(&["doctor", "--fix"]).json();
    assert_eq!(find(&fixed, "server.orphan")[0]["status"], "fixed", "{fixed}");
    assert_eq!(find(&fixed, "server.template")[0]["status"], "fixed", "{fixed}");
    assert_eq!(
        server.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'tenant_ghost'"
        ),
        "0"
    );
    assert_eq!(
        server.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'tenant_acme'"
        ),
        "1"
    );
    let report = env.json(&["doctor"]);
    assert_eq!(find(&report, "server.template")[0]["status"], "ok", "{report}");

    std::fs::remove_file(env.home.join("master.key")).unwrap();
    let run = env.run(&["doctor", "--json"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.stdout.contains("server.secret"), "{run:?}");
}

#[test]
fn a_version_missing_for_postgres_is_refused_before_anything_runs() {
    let (server, env, _admin) = home_with_server();
    std::fs::write(
        env.home.join("tenant-migrations/V4__notes.sql"),
        "CREATE TABLE notes (id INTEGER PRIMARY KEY);",
    )
    .unwrap();
    let run = env.fails(
        &[
            "customer",
            "create",
            "ops@acme.test",
            "Ops",
            "Acme",
            "--server",
            "pg1",
        ],
        9,
    );
    assert!(run.stderr.contains("V4__notes.sql"), "{run:?}");
    assert_eq!(
        server.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'tenant\\_%'"
        ),
        "0"
    );
    assert_eq!(env.count("SELECT count(*) FROM customers"), 0);
}

#[test]
fn status_and_stats_show_tenants_per_server_and_reachability() {
    let (server, env, _admin) = home_with_server();
    env.json(&[
        "customer",
        "create",
        "ops@acme.test",
        "Ops",
        "Acme",
        "--server",
        "pg1",
    ]);
    env.json(&["customer", "create", "ops@local.test", "Ops", "Local"]);
    let status = env.json(&["status"]);
    let servers = status["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{status}");
    assert_eq!(servers[1]["name"], "pg1");
    assert_eq!(servers[1]["tenants"], 1);
    assert_eq!(servers[1]["reachable"], true);
    let stats = env.json(&["stats"]);
    assert_eq!(stats["customers_by_server"]["pg1"], 1, "{stats}");
    assert_eq!(stats["customers_by_server"]["local"], 1, "{stats}");
    drop(server);
    let status = env.json(&["status"]);
    assert_eq!(status["servers"][1]["reachable"], false, "{status}");
    assert!(
        status["servers"][1]["error"].as_str().unwrap().contains("pg1"),
        "{status}"
    );
}

#[test]
fn schema_mode_keeps_each_tenant_in_its_own_schema_of_one_database() {
    let server = PgServer::start();
    let env = TestEnv::initialised();
    let admin = server.admin_login();
    server.psql(
        "postgres",
        &format!("CREATE DATABASE platform OWNER {}", admin.user),
    );
    let added = env.json(&[
        "server",
        "add",
        "pgs",
        "--url",
        &server.url(&admin, "platform"),
        "--mode",
        "schema",
    ]);
    assert_eq!(added["mode"], "schema");
    env.json(&[
        "customer",
        "create",
        "ops@acme.test",
        "Ops",
        "Acme",
        "--server",
        "pgs",
    ]);
    env.json(&[
        "customer",
        "create",
        "ops@beta.test",
        "Ops",
        "Beta",
        "--server",
        "pgs",
    ]);
    assert_eq!(
        server.psql("platform", "SELECT string_agg(nspname || ':' || pg_get_userbyid(nspowner), ',' ORDER BY nspname) FROM pg_namespace WHERE nspname LIKE 'tenant%'"),
        "tenant_acme:tenant_acme,tenant_beta:tenant_beta"
    );
    assert_eq!(
        server.psql(
            "platform",
            "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'tenant_acme'"
        ),
        "tenant_acme"
    );
    assert_eq!(
        server.psql(
            "platform",
            "SELECT has_schema_privilege('tenant_acme', 'tenant_beta', 'USAGE'), \
             has_schema_privilege('tenant_acme', 'public', 'USAGE'), \
             has_schema_privilege('tenant_acme', 'tenant_acme', 'CREATE')"
        ),
        "f|f|t"
    );
    let placement = env.json(&["customer", "show", "acme"])["placement"].clone();
    assert_eq!(placement["database"], "platform");
    assert_eq!(placement["schema"], "tenant_acme");
    let who = env.json(&[
        "db",
        "sql",
        "acme",
        "SELECT current_user AS who, current_schema() AS s",
    ]);
    assert_eq!(who[0]["who"], "tenant_acme");
    assert_eq!(who[0]["s"], "tenant_acme");
    env.json(&[
        "db",
        "sql",
        "acme",
        "--write",
        "INSERT INTO users (email, name) VALUES ('a@b.c', 'A')",
    ]);
    let run = env.run(&["db", "sql", "acme", "SELECT count(*) FROM tenant_beta.users"]);
    assert_eq!(run.code, 6, "{run:?}");
    let status = env
        .cmd(&["db", "status"])
        .stderr_has("2 tenants: 2 current")
        .json();
    assert_eq!(status[0]["path"], "tenant_acme", "{status}");
    assert!(status[0]["size_bytes"].as_u64().unwrap() > 0, "{status}");

    env.json(&["customer", "suspend", "acme", "--reason", "x"]);
    assert_eq!(
        server.psql(
            "postgres",
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'tenant_acme'"
        ),
        "f"
    );
    env.json(&["customer", "reactivate", "acme"]);
    env.json(&["customer", "delete", "acme", "--confirm", "acme"]);
    env.json(&["customer", "undelete", "acme"]);
    let count = env.json(&["db", "sql", "acme", "SELECT count(*) AS n FROM users"]);
    assert_eq!(count[0]["n"], 1, "the data came back with the schema");
    env.json(&["customer", "delete", "acme", "--confirm", "acme"]);
    env.json(&["customer", "purge", "acme", "--confirm", "acme"]);
    assert_eq!(
        server.psql(
            "platform",
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%tenant_acme'"
        ),
        "0"
    );
    assert_eq!(
        server.psql(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'tenant_acme'"
        ),
        "0"
    );
    let doctor = env.json(&["doctor"]);
    assert!(!doctor.to_string().contains("\"status\":\"fail\""), "{doctor}");
}

#[test]
fn placement_follows_server_auto_default_server_capacity_and_draining() {
    let (_server, env, admin) = home_with_server();
    let other = PgServer::start();
    let other_admin = other.admin_login();
    env.json(&[
        "server",
        "add",
        "pg2",
        "--url",
        &other.url(&other_admin, "postgres"),
        "--capacity",
        "5",
    ]);
    env.json(&["server", "update", "pg1", "--capacity", "1"]);
    // auto: the active server with the most room.
    let first = env.json(&["customer", "create", "a@a.test", "A", "--server", "auto"]);
    assert_eq!(
        env.json(&["customer", "show", first["slug"].as_str().unwrap()])["placement"]["server"],
        "pg2"
    );
    env.json(&["server", "update", "pg2", "--status", "draining"]);
    let second = env.json(&["customer", "create", "b@b.test", "B", "--server", "auto"]);
    assert_eq!(
        env.json(&["customer", "show", second["slug"].as_str().unwrap()])["placement"]["server"],
        "pg1"
    );
    // pg1 is full now, pg2 drains: nothing takes a tenant.
    env.fails(&["customer", "create", "c@c.test", "C", "--server", "auto"], 6);
    env.fails(&["customer", "create", "c@c.test", "C", "--server", "pg1"], 6);
    env.fails(&["customer", "create", "c@c.test", "C", "--server", "pg2"], 6);
    env.fails(&["customer", "create", "c@c.test", "C", "--server", "nope"], 3);
    env.json(&["server", "update", "pg2", "--status", "active"]);
    env.ok(&["config", "set", "default_server", "pg2"]);
    let third = env.json(&["customer", "create", "c@c.test", "C"]);
    assert_eq!(
        env.json(&["customer", "show", third["slug"].as_str().unwrap()])["placement"]["server"],
        "pg2"
    );
    env.fails(&["config", "set", "default_server", "nope"], 2);
    env.ok(&["config", "set", "default_server", "local"]);
    let fourth = env.json(&["customer", "create", "d@d.test", "D"]);
    assert_eq!(
        env.json(&["customer", "show", fourth["slug"].as_str().unwrap()])["placement"]["engine"],
        "sqlite"
    );
    assert_nowhere(&env.home, &admin.password, &[]);
}

#[test]
fn db_migrate_brings_server_tenants_along_as_their_own_roles() {
    let (server, env, _admin) = home_with_server();
    env.json(&[
        "customer",
        "create",
        "ops@acme.test",
        "Ops",
        "Acme",
        "--server",
        "pg1",
    ]);
    env.json(&["customer", "create", "ops@local.test", "Ops", "Local"]);
    let write = |name: &str, sqlite: &str, postgres: &str| {
        std::fs::write(env.home.join("tenant-migrations").join(name), sqlite).unwrap();
        std::fs::write(env.home.join("tenant-migrations/postgres").join(name), postgres).unwrap();
    };
    write(
        "V4__notes.sql",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
        "CREATE TABLE notes (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, body TEXT);",
    );
    let dry = env.json(&["db", "migrate", "--dry-run"]);
    assert!(
        dry.as_array().unwrap().iter().all(|t| t["status"] == "pending"),
        "{dry}"
    );
    let run = env.json(&["db", "migrate"]);
    assert!(
        run.as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "migrated" && t["to"] == 4),
        "{run}"
    );
    assert_eq!(
        server.psql(
            "tenant_acme",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'notes'"
        ),
        "tenant_acme"
    );
    let again = env.json(&["db", "migrate"]);
    assert!(
        again.as_array().unwrap().iter().all(|t| t["status"] == "current"),
        "{again}"
    );

    // A failing migration leaves the server tenant where it was.
    write(
        "V5__bad.sql",
        "CREATE TABLE ok5 (x INTEGER);",
        "CREATE TABLE bad5 (x INTEGER); SELECT * FROM nowhere;",
    );
    let run = env.run(&["db", "migrate", "--continue-on-error", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    assert_eq!(
        server.psql(
            "tenant_acme",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'bad5'"
        ),
        "0"
    );
    assert_eq!(env.json(&["customer", "show", "acme"])["schema_version"], 4);
    let report = env.json(&["doctor"]).to_string();
    assert!(!report.contains("tenant.drift"), "{report}");
}
