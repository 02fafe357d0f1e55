//! Backup, verify and restore of MySQL/MariaDB tenants (SPEC section 7), against a
//! throwaway MariaDB server: the script and its manifest entry, verify and
//! `--deep`, a cut-short script, a server down while backing up, a restore that
//! swaps every table in one `RENAME TABLE` and keeps the replaced ones on the server,
//! and a restore killed at every step of its swap. Every outcome is read from the
//! server itself, not from what the command says it did.

use std::path::PathBuf;

use serde_json::Value;

use crate::my_server::MyServer;
use crate::support::TestEnv;

/// A home with the MariaDB server `my1`; a slug says where its tenant lives by its
/// first letter: `m…` on my1, anything else in the home.
struct Fleet {
    env: TestEnv,
    my: MyServer,
}

impl Fleet {
    fn new(slugs: &[&str]) -> Self {
        let my = MyServer::start();
        let env = TestEnv::initialised();
        let admin = my.admin_login();
        env.json(&["server", "add", "my1", "--url", &my.url(&admin, "mysql")]);
        for slug in slugs {
            let server = if slug.starts_with('m') { "my1" } else { "local" };
            env.customer(
                &format!("{slug}@example.com"),
                slug,
                &["--slug", slug, "--server", server],
            );
        }
        Fleet { env, my }
    }

    fn add_user(&self, slug: &str, email: &str) {
        self.env.ok(&[
            "db",
            "sql",
            slug,
            "--write",
            &format!("INSERT INTO users (email, name) VALUES ('{email}', 'U')"),
        ]);
    }

    /// The tenant's users' emails, sorted and joined by commas, read from its database.
    fn emails(&self, slug: &str) -> String {
        self.emails_in(&format!("tenant_{slug}"))
    }

    fn emails_in(&self, database: &str) -> String {
        self.my.sql(
            database,
            "SELECT COALESCE(GROUP_CONCAT(email ORDER BY email SEPARATOR ','), '') FROM users",
        )
    }

    /// Databases whose names contain `part`, sorted and joined by commas.
    fn databases_with(&self, part: &str) -> String {
        self.my.sql(
            "mysql",
            &format!(
                "SELECT COALESCE(GROUP_CONCAT(schema_name ORDER BY schema_name SEPARATOR ','), '') \
                 FROM information_schema.schemata WHERE INSTR(schema_name, '{part}') > 0"
            ),
        )
    }

    /// Whether the tenant's user logs in to its database with the password the
    /// catalog keeps.
    fn can_login(&self, slug: &str) -> bool {
        let shown = self.env.json(&["db", "url", slug, "--reveal"]);
        let url = shown["url"].as_str().unwrap();
        let (_, after_scheme) = url.split_once("://").unwrap();
        let (credentials, _) = after_scheme.split_once('@').unwrap();
        let (user, password) = credentials.split_once(':').unwrap();
        self.my.can_login(&format!("tenant_{slug}"), user, password)
    }

    fn open_operations(&self) -> i64 {
        self.env.count("SELECT count(*) FROM operations")
    }

    fn doctor_is_clean(&self) {
        let run = self.env.run(&["doctor", "--json"]);
        assert_eq!(run.code, 0, "{run:?}");
    }
}

fn set_dir(env: &TestEnv, id: &str) -> PathBuf {
    env.home.join("backups").join(id)
}

fn manifest(env: &TestEnv, id: &str) -> Value {
    serde_json::from_slice(&std::fs::read(set_dir(env, id).join("manifest.json")).unwrap()).unwrap()
}

fn write_manifest(env: &TestEnv, id: &str, manifest: &Value) {
    std::fs::write(
        set_dir(env, id).join("manifest.json"),
        serde_json::to_vec(manifest).unwrap(),
    )
    .unwrap();
}

fn entry_of<'m>(manifest: &'m Value, slug: &str) -> &'m Value {
    manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["customer_slug"] == slug)
        .unwrap_or_else(|| panic!("no entry of {slug} in {manifest}"))
}

fn id_of(set: &Value) -> String {
    set["id"].as_str().unwrap().to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// (file, status) of every check not ok.
fn not_ok(checks: &Value) -> Vec<(String, String)> {
    checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "ok")
        .map(|c| {
            (
                c["file"].as_str().unwrap().into(),
                c["status"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[test]
fn a_mysql_backup_is_a_counted_script_that_verifies_deeply_and_restores_keeping_the_old_tables() {
    let fleet = Fleet::new(&["m1", "m2"]);
    let env = &fleet.env;
    fleet.add_user("m1", "marker@m1.test");
    // Quotes, brackets, commas and semicolons in a value: the rows are counted right.
    env.ok(&[
        "db",
        "sql",
        "m1",
        "--write",
        "INSERT INTO users (email, name) VALUES ('o''brien(x),y;z@m1.test', 'U')",
    ]);
    // A trigger and a view must survive the round trip and the swap.
    fleet.my.sql(
        "tenant_m1",
        "CREATE TRIGGER users_name BEFORE INSERT ON users FOR EACH ROW SET NEW.name = UPPER(NEW.name);\
         CREATE VIEW user_emails AS SELECT email FROM users",
    );
    let set = env.json(&["backup"]);
    assert_eq!(set["skipped"], serde_json::json!([]), "{set}");
    let id = id_of(&set);
    let written = manifest(env, &id);
    let entry = entry_of(&written, "m1");
    assert_eq!(
        (
            &entry["engine"],
            &entry["server"],
            &entry["format"],
            &entry["file"]
        ),
        (
            &"mysql".into(),
            &"my1".into(),
            &"mysql_sql".into(),
            &"tenants/m1.sql".into()
        ),
        "{entry}"
    );
    assert_eq!(entry["schema_version"], 3, "{entry}");
    let script = std::fs::read(set_dir(env, &id).join("tenants/m1.sql")).unwrap();
    assert_eq!(entry["bytes"], script.len(), "{entry}");
    assert_eq!(entry["sha256"], sha256_hex(&script), "{entry}");
    // Every table the tenant owns, bookkeeping too, with its rows.
    assert_eq!(
        entry["rows"],
        serde_json::json!({"order_items": 0, "orders": 0, "products": 0,
            "refinery_schema_history": 3, "tenantctl_migration_progress": 0, "users": 2}),
        "{entry}"
    );
    assert_eq!(entry_of(&written, "m2")["rows"]["users"], 0);

    let checks = env.json(&["backup", "verify", &id]);
    assert_eq!(not_ok(&checks), Vec::<(String, String)>::new(), "{checks}");
    assert!(
        checks[1]["message"]
            .as_str()
            .unwrap()
            .contains("-- Dump completed"),
        "{checks}"
    );
    let deep = env.json(&["backup", "verify", &id, "--deep"]);
    assert_eq!(not_ok(&deep), Vec::<(String, String)>::new(), "{deep}");
    assert!(
        deep[1]["message"].as_str().unwrap().contains("rows match"),
        "{deep}"
    );
    assert_eq!(fleet.databases_with("tenantctl_scratch_"), "");

    env.ok(&[
        "db",
        "sql",
        "m1",
        "--write",
        "UPDATE users SET email = 'changed@m1.test' WHERE email = 'marker@m1.test'",
    ]);
    fleet.add_user("m1", "late@m1.test");
    let report = env.json(&["restore", &id, "--customer", "m1"]);
    assert_eq!(report["restored"][0]["status"], "restored", "{report}");
    assert_eq!(fleet.emails("m1"), "marker@m1.test,o'brien(x),y;z@m1.test");
    assert!(fleet.can_login("m1"));
    // The trigger and the view are the restored tenant's, in its own database.
    env.ok(&[
        "db",
        "sql",
        "m1",
        "--write",
        "INSERT INTO users (email, name) VALUES ('after@m1.test', 'lower')",
    ]);
    assert_eq!(
        fleet.my.sql(
            "tenant_m1",
            "SELECT name FROM users WHERE email = 'after@m1.test'"
        ),
        "LOWER"
    );
    assert_eq!(fleet.my.sql("tenant_m1", "SELECT COUNT(*) FROM user_emails"), "3");

    // What was replaced stays on the server, named by the pre-restore set.
    let pre = report["pre_restore_set"].as_str().unwrap().to_string();
    let saved = manifest(env, &pre);
    let kept = entry_of(&saved, "m1");
    assert_eq!(kept["format"], "kept_on_server", "{kept}");
    let kept_db = kept["kept_as"].as_str().unwrap().to_string();
    assert!(kept_db.starts_with("tenant_m1__prerestore_"), "{kept}");
    assert_eq!(fleet.databases_with("__prerestore_"), kept_db);
    assert_eq!(
        fleet.emails_in(&kept_db),
        "changed@m1.test,late@m1.test,o'brien(x),y;z@m1.test"
    );
    assert_eq!(
        fleet.my.sql(&kept_db, "SELECT COUNT(*) FROM user_emails"),
        "3",
        "the replaced tenant's view went with its tables"
    );
    assert_eq!(fleet.databases_with("__restore_"), "");
    env.ok(&["backup", "verify", &pre, "--deep"]);

    // The kept copy goes back in from its pre-restore set, and stays for that set.
    let back = env.json(&["restore", &pre, "--customer", "m1"]);
    assert_eq!(back["restored"][0]["status"], "restored", "{back}");
    assert_eq!(
        fleet.emails("m1"),
        "changed@m1.test,late@m1.test,o'brien(x),y;z@m1.test"
    );
    assert!(fleet.databases_with("__prerestore_").contains(&kept_db));
    assert_eq!(fleet.open_operations(), 0);
    fleet.doctor_is_clean();

    // Pruned with their pre-restore sets once a newer regular set is taken; the live
    // tenant stays as it is.
    env.json(&["backup"]);
    for period in ["daily", "weekly", "monthly"] {
        env.ok(&["config", "set", &format!("backup_keep_{period}"), "0"]);
    }
    env.json(&["backup", "prune", "--keep-last", "1"]);
    assert_eq!(fleet.databases_with("__prerestore_"), "");
    assert_eq!(
        fleet.emails("m1"),
        "changed@m1.test,late@m1.test,o'brien(x),y;z@m1.test"
    );
}

#[test]
fn a_cut_short_or_miscounted_script_fails_verify_and_is_never_restored() {
    let fleet = Fleet::new(&["m1"]);
    let env = &fleet.env;
    fleet.add_user("m1", "marker@m1.test");
    let id = id_of(&env.json(&["backup"]));
    let path = set_dir(env, &id).join("tenants/m1.sql");
    let script = std::fs::read(&path).unwrap();
    let cut = &script[..script.len() - 40];
    std::fs::write(&path, cut).unwrap();

    // The checksum tells first.
    let run = env.run(&["backup", "verify", &id, "--json"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.stderr.contains("tenants/m1.sql"), "{}", run.stderr);
    assert_eq!(
        not_ok(&run.json()),
        [("tenants/m1.sql".into(), "mismatch".into())]
    );
    let refused = env.fails(&["restore", &id, "--customer", "m1"], 7);
    assert!(refused.stderr.contains("m1.sql"), "{}", refused.stderr);
    assert_eq!(fleet.databases_with("__restore_"), "");

    // A manifest that agrees with the cut script: its missing end tells.
    let mut edited = manifest(env, &id);
    let entry = edited["entries"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["file"] == "tenants/m1.sql")
        .unwrap();
    entry["bytes"] = cut.len().into();
    entry["sha256"] = sha256_hex(cut).into();
    write_manifest(env, &id, &edited);
    let run = env.run(&["backup", "verify", &id, "--json"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert_eq!(not_ok(&run.json()), [("tenants/m1.sql".into(), "damaged".into())]);

    // A whole script whose manifest counts other rows: only --deep can tell, and a
    // restore never swaps it in.
    std::fs::write(&path, &script).unwrap();
    let mut edited = manifest(env, &id);
    let entry = edited["entries"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["file"] == "tenants/m1.sql")
        .unwrap();
    entry["bytes"] = script.len().into();
    entry["sha256"] = sha256_hex(&script).into();
    entry["rows"]["users"] = 5.into();
    write_manifest(env, &id, &edited);
    env.ok(&["backup", "verify", &id]);
    let run = env.run(&["backup", "verify", &id, "--deep", "--json"]);
    assert_eq!(run.code, 7, "{run:?}");
    let checks = run.json();
    assert_eq!(not_ok(&checks), [("tenants/m1.sql".into(), "damaged".into())]);
    assert!(checks.to_string().contains("users: 1 rows"), "{checks}");
    assert_eq!(fleet.databases_with("tenantctl_scratch_"), "");
    fleet.add_user("m1", "late@m1.test");
    let refused = env.fails(&["restore", &id, "--customer", "m1"], 7);
    assert!(refused.stderr.contains("rows differ"), "{}", refused.stderr);
    assert_eq!(fleet.emails("m1"), "late@m1.test,marker@m1.test");
    assert_eq!(fleet.databases_with("__restore_"), "");
    assert!(fleet.can_login("m1"));
}

#[test]
fn a_mysql_server_down_during_backup_leaves_its_tenant_out_of_a_set_written_with_the_rest() {
    let fleet = Fleet::new(&["l1", "m1"]);
    let env = &fleet.env;
    fleet.add_user("l1", "kept@l1.test");
    fleet.my.stop();
    let run = env.run(&["backup", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    let set = run.json();
    let files: Vec<&str> = set["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["catalog.db", "tenants/l1.db"], "{set}");
    let skipped = set["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{set}");
    assert_eq!(skipped[0]["customer"], "m1", "{set}");
    let reason = skipped[0]["reason"].as_str().unwrap();
    assert!(reason.contains("my1"), "the reason names the server: {reason}");
    let id = id_of(&set);
    env.ok(&["backup", "verify", &id]);
    assert!(!set_dir(env, &id).join("tenants/m1.sql").exists());
}

#[test]
fn dry_run_changes_nothing_and_into_copies_one_mysql_tenant_into_another() {
    let fleet = Fleet::new(&["m1", "m2"]);
    let env = &fleet.env;
    fleet.add_user("m1", "one@m1.test");
    fleet.add_user("m2", "one@m2.test");
    // Made by m1's own user: it runs as that user, until it is copied into m2.
    env.ok(&[
        "db",
        "sql",
        "m1",
        "--write",
        "CREATE TRIGGER users_name BEFORE INSERT ON users FOR EACH ROW SET NEW.name = UPPER(NEW.name)",
    ]);
    let id = id_of(&env.json(&["backup"]));
    fleet.add_user("m1", "late@m1.test");
    let dry = env.json(&["restore", &id, "--customer", "m1", "--dry-run"]);
    assert_eq!(dry["restored"][0]["status"], "would-replace", "{dry}");
    assert_eq!(fleet.emails("m1"), "late@m1.test,one@m1.test");
    assert_eq!(fleet.databases_with("__"), "");
    let skipped = env.json(&["restore", &id, "--customer", "m1", "--if-missing"]);
    assert_eq!(skipped["restored"][0]["status"], "skipped", "{skipped}");
    assert_eq!(fleet.emails("m1"), "late@m1.test,one@m1.test");

    let report = env.json(&["restore", &id, "--customer", "m1", "--into", "m2"]);
    assert_eq!(report["restored"][0]["status"], "restored", "{report}");
    assert_eq!(fleet.emails("m2"), "one@m1.test");
    assert_eq!(fleet.emails("m1"), "late@m1.test,one@m1.test");
    assert!(fleet.can_login("m2"));
    // The copied trigger runs as m2's user, who can write m2's tables.
    env.ok(&[
        "db",
        "sql",
        "m2",
        "--write",
        "INSERT INTO users (email, name) VALUES ('two@m2.test', 'lower')",
    ]);
    assert_eq!(
        fleet
            .my
            .sql("tenant_m2", "SELECT name FROM users WHERE email = 'two@m2.test'"),
        "LOWER"
    );
    assert_eq!(
        fleet.my.sql(
            "mysql",
            "SELECT definer FROM information_schema.triggers WHERE trigger_schema = 'tenant_m2'"
        ),
        "tenant_m2@localhost"
    );
    // Only m2's user reaches its tables.
    let grantees = fleet.my.sql(
        "mysql",
        "SELECT GROUP_CONCAT(DISTINCT user ORDER BY user) FROM mysql.db WHERE db = 'tenant_m2'",
    );
    assert_eq!(grantees, "tenant_m2");
    fleet.doctor_is_clean();
}

/// Every step a restore of a MySQL tenant can be killed at, in order; the first two
/// come before the swap is recorded in the operation ledger.
const CRASH_STEPS: [&str; 9] = [
    "restore:staged",
    "restore:saved",
    "restore:recorded",
    "restore:my-before-freeze",
    "restore:my-frozen",
    "restore:my-kept",
    // Views and triggers dropped, the tables not moved yet.
    "tables:objects-dropped",
    "restore:my-moved",
    "restore:my-swapped",
];

fn before_recorded(step: &str) -> bool {
    ["restore:staged", "restore:saved"].contains(&step)
}

/// Kills a restore at each step in turn, each time after adding a user the backup
/// does not hold, and settles each kill with `doctor --fix` or the next restore: the
/// tenant ends with the backup's rows, its user logs in, nothing is left beside it
/// but the kept copies, and no operation stays open.
#[test]
fn a_mysql_restore_killed_at_any_step_is_finished_by_the_next_restore_or_doctor_fix() {
    let slug = "m1";
    let fleet = Fleet::new(&[slug]);
    let env = &fleet.env;
    let marker = format!("marker@{slug}.test");
    fleet.add_user(slug, &marker);
    for object in [
        "CREATE TRIGGER users_name BEFORE INSERT ON users FOR EACH ROW SET NEW.name = UPPER(NEW.name)",
        "CREATE VIEW user_emails AS SELECT email FROM users",
    ] {
        env.ok(&["db", "sql", slug, "--write", object]);
    }
    let id = id_of(&env.json(&["backup"]));
    for (n, step) in CRASH_STEPS.iter().copied().enumerate() {
        let late = format!("late{n}@{slug}.test");
        fleet.add_user(slug, &late);
        env.cmd(&["restore", &id, "--customer", slug])
            .killed_at_step(step);
        if before_recorded(step) {
            assert_eq!(fleet.emails(slug), format!("{late},{marker}"), "{step}");
            assert!(fleet.can_login(slug), "{step}");
            assert_eq!(fleet.open_operations(), 0, "{step}");
            assert_eq!(
                fleet.databases_with("__restore_"),
                format!("tenant_{slug}__restore_{id}"),
                "{step}"
            );
        } else {
            assert_eq!(fleet.open_operations(), 1, "{step}");
        }
        let by_doctor = !before_recorded(step) && n % 2 == 0;
        if by_doctor {
            let run = env.run(&["doctor", "--fix", "--json"]);
            assert_eq!(run.code, 0, "{step}: {run:?}");
        } else {
            let report = env
                .cmd(&["restore", &id, "--customer", slug])
                .stderr_has("an interrupted restore")
                .json();
            assert_eq!(report["restored"][0]["status"], "restored", "{step}: {report}");
        }
        assert_eq!(fleet.emails(slug), marker, "{step}");
        assert_eq!(objects_in(&fleet, &format!("tenant_{slug}")), "1,1", "{step}");
        assert!(fleet.can_login(slug), "{step}: the user logs in again");
        assert_eq!(fleet.databases_with("__restore_"), "", "{step}");
        assert_eq!(fleet.open_operations(), 0, "{step}");
        fleet.doctor_is_clean();
        assert_eq!(
            env.json(&["db", "status", slug, "-q"])[0]["schema_version"],
            3,
            "{step}"
        );
    }
    // Every kept copy holds whole tables, the live ones of some restore, with their
    // trigger and view, and nothing of the swap's own.
    for kept in fleet.databases_with("__prerestore_").split(',') {
        let emails = fleet.emails_in(kept);
        assert!(emails.contains(&marker), "{kept}: {emails}");
        assert_eq!(objects_in(&fleet, kept), "1,1", "{kept}");
    }
    assert_eq!(
        fleet.my.sql(
            "mysql",
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'tenantctl_swap_objects'"
        ),
        "0"
    );
}

/// How many triggers and views `database` has, as `triggers,views`.
fn objects_in(fleet: &Fleet, database: &str) -> String {
    fleet.my.sql(
        "mysql",
        &format!(
            "SELECT CONCAT((SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = '{database}'), \
             ',', (SELECT COUNT(*) FROM information_schema.views WHERE table_schema = '{database}'))"
        ),
    )
}
