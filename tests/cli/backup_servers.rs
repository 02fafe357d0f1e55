//! Backup, verify, restore and prune of PostgreSQL tenants (SPEC sections 3 and 7),
//! against throwaway servers: a cron-style round trip over a fleet that spans
//! engines, a server down while backing up, damaged dumps, a restore killed at every
//! step of its swap, `--into`, `--dry-run`, `--if-missing`, and pruning the copies a
//! restore keeps on the server. Every outcome is read from the servers and the
//! tenant files themselves, not from what the command says it did.

use std::path::PathBuf;

use serde_json::Value;

use crate::pg_server::PgServer;
use crate::support::TestEnv;

/// The database server `pgb` keeps its tenants' schemas in.
const PLATFORM: &str = "platform";

/// A home with `pga` (database mode) and, when asked for, `pgb` (schema mode). A
/// slug says where its tenant lives by its first letter: `a…` on pga, `b…` on pgb,
/// anything else in the home.
struct Fleet {
    env: TestEnv,
    a: PgServer,
    b: Option<PgServer>,
}

impl Fleet {
    fn new(slugs: &[&str]) -> Self {
        let schema_server = slugs.iter().any(|s| s.starts_with('b'));
        let (a, b) = std::thread::scope(|scope| {
            let b = schema_server.then(|| scope.spawn(PgServer::start));
            (PgServer::start(), b.map(|b| b.join().unwrap()))
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
        let fleet = Fleet { env, a, b };
        for slug in slugs {
            fleet.env.customer(
                &format!("{slug}@example.com"),
                slug,
                &["--slug", slug, "--server", server_of(slug)],
            );
        }
        fleet
    }

    fn b(&self) -> &PgServer {
        self.b.as_ref().expect("a fleet with a schema-mode server")
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

    /// The tenant's users' emails, sorted and joined by commas, read from its own
    /// database.
    fn emails(&self, slug: &str) -> String {
        let sql = "SELECT coalesce(string_agg(email, ',' ORDER BY email), '') FROM {s}users";
        match slug.as_bytes()[0] {
            b'a' => self.a.psql(&format!("tenant_{slug}"), &sql.replace("{s}", "")),
            b'b' => self
                .b()
                .psql(PLATFORM, &sql.replace("{s}", &format!("tenant_{slug}."))),
            _ => rusqlite::Connection::open(self.db_path(slug))
                .unwrap()
                .query_row(&sql.replace("{s}", ""), [], |row| row.get(0))
                .unwrap(),
        }
    }

    fn db_path(&self, slug: &str) -> PathBuf {
        let shown = self.env.json(&["customer", "show", slug]);
        PathBuf::from(shown["db_path"].as_str().unwrap())
    }

    /// The tenant role's password, as `db url --reveal` gives it.
    fn password(&self, slug: &str) -> String {
        let shown = self.env.json(&["db", "url", slug, "--reveal"]);
        let url = shown["url"].as_str().unwrap();
        let (_, after_scheme) = url.split_once("://").unwrap();
        let (credentials, _) = after_scheme.split_once('@').unwrap();
        credentials.split_once(':').unwrap().1.to_string()
    }

    /// Whether the tenant's role can log in to its own database.
    fn can_login(&self, slug: &str) -> bool {
        let role = format!("tenant_{slug}");
        match slug.as_bytes()[0] {
            b'a' => self.a.can_login(&role, &role, &self.password(slug)),
            _ => self.b().can_login(PLATFORM, &role, &self.password(slug)),
        }
    }

    /// Databases (pga) or schemas (pgb) on the tenant's server whose names contain
    /// `part`, sorted and joined by commas.
    fn beside(&self, slug: &str, part: &str) -> String {
        match slug.as_bytes()[0] {
            b'a' => databases_with(&self.a, part),
            _ => schemas_with(self.b(), part),
        }
    }

    /// The role that owns the tenant's database or schema.
    fn owner(&self, slug: &str) -> String {
        match slug.as_bytes()[0] {
            b'a' => database_owner(&self.a, &format!("tenant_{slug}")),
            _ => self.b().psql(
                PLATFORM,
                &format!(
                    "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'tenant_{slug}'"
                ),
            ),
        }
    }

    /// The doctor's verdict must be clean, exit 0; returns its report.
    fn doctor_is_clean(&self) -> Value {
        let run = self.env.run(&["doctor", "--json"]);
        assert_eq!(run.code, 0, "{run:?}");
        run.json()
    }

    fn open_operations(&self) -> i64 {
        self.env.count("SELECT count(*) FROM operations")
    }
}

fn server_of(slug: &str) -> &'static str {
    match slug.as_bytes()[0] {
        b'a' => "pga",
        b'b' => "pgb",
        _ => "local",
    }
}

/// Databases on `server` whose names contain `part`, sorted and joined by commas.
fn databases_with(server: &PgServer, part: &str) -> String {
    server.psql(
        "postgres",
        &format!(
            "SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '') FROM pg_database \
             WHERE position('{part}' in datname) > 0"
        ),
    )
}

/// Schemas of the platform database whose names contain `part`, likewise.
fn schemas_with(server: &PgServer, part: &str) -> String {
    server.psql(
        PLATFORM,
        &format!(
            "SELECT coalesce(string_agg(nspname, ',' ORDER BY nspname), '') FROM pg_namespace \
             WHERE position('{part}' in nspname) > 0"
        ),
    )
}

fn database_owner(server: &PgServer, database: &str) -> String {
    server.psql(
        "postgres",
        &format!("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{database}'"),
    )
}

fn set_dir(env: &TestEnv, id: &str) -> PathBuf {
    env.home.join("backups").join(id)
}

fn manifest(env: &TestEnv, id: &str) -> Value {
    let text = std::fs::read(set_dir(env, id).join("manifest.json")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

/// The manifest entry of `slug`'s tenant.
fn entry_of<'m>(manifest: &'m Value, slug: &str) -> &'m Value {
    manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["customer_slug"] == slug)
        .unwrap_or_else(|| panic!("no entry for {slug} in {manifest}"))
}

fn id_of(set: &Value) -> String {
    set["id"].as_str().unwrap().to_string()
}

/// The ids of the sets `backup list` shows of `kind`.
fn listed(env: &TestEnv, kind: &str) -> Vec<String> {
    env.json(&["backup", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == kind)
        .map(id_of)
        .collect()
}

#[test]
fn a_cron_backup_of_a_mixed_fleet_round_trips_through_restore_at() {
    let fleet = Fleet::new(&["l1", "a1", "b1"]);
    let env = &fleet.env;
    let slugs = ["l1", "a1", "b1"];
    for slug in slugs {
        fleet.add_user(slug, &format!("marker@{slug}.test"));
    }
    let set = env.json(&["backup", "--kind", "scheduled"]);
    assert_eq!(set["kind"], "scheduled", "{set}");
    assert_eq!(set["skipped"], serde_json::json!([]), "{set}");
    let id = id_of(&set);
    let written = manifest(env, &id);
    for (slug, engine, server, format, file) in [
        ("l1", "sqlite", "local", "sqlite", "tenants/l1.db"),
        ("a1", "postgres", "pga", "pg_dump_custom", "tenants/a1.dump"),
        ("b1", "postgres", "pgb", "pg_dump_custom", "tenants/b1.dump"),
    ] {
        let entry = entry_of(&written, slug);
        assert_eq!(
            (
                &entry["engine"],
                &entry["server"],
                &entry["format"],
                &entry["file"]
            ),
            (&engine.into(), &server.into(), &format.into(), &file.into()),
            "{entry}"
        );
        assert_eq!(entry["schema_version"], 3, "{entry}");
        let bytes = std::fs::metadata(set_dir(env, &id).join(file)).unwrap().len();
        assert_eq!(entry["bytes"], bytes, "{entry}");
        if engine == "postgres" {
            // Counted in the dump's own snapshot: the one marker user.
            assert_eq!(entry["rows"]["users"], 1, "{entry}");
            assert!(
                entry["rows"]
                    .as_object()
                    .unwrap()
                    .contains_key("refinery_schema_history"),
                "{entry}"
            );
        } else {
            assert!(entry.get("rows").is_none(), "{entry}");
        }
    }

    // After the backup: the marker renamed away and a later user added.
    for slug in slugs {
        env.ok(&[
            "db",
            "sql",
            slug,
            "--write",
            &format!("UPDATE users SET email = 'changed@{slug}.test' WHERE email = 'marker@{slug}.test'"),
        ]);
        fleet.add_user(slug, &format!("late@{slug}.test"));
        assert_eq!(
            fleet.emails(slug),
            format!("changed@{slug}.test,late@{slug}.test")
        );
    }

    let at = set["finished_at_exact"].as_str().unwrap();
    let report = env.json(&[
        "restore",
        "--at",
        at,
        "--customer",
        "l1",
        "--customer",
        "a1",
        "--customer",
        "b1",
    ]);
    assert_eq!(report["set"], id.as_str(), "{report}");
    assert_eq!(report["dry_run"], false);
    let restored: Vec<(&str, &str)> = report["restored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["customer"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        restored,
        [("l1", "restored"), ("a1", "restored"), ("b1", "restored")],
        "{report}"
    );
    for slug in slugs {
        assert_eq!(fleet.emails(slug), format!("marker@{slug}.test"), "{slug}");
    }
    assert!(fleet.can_login("a1") && fleet.can_login("b1"));

    // The replaced data: the local file in the pre-restore set, the server tenants
    // kept on their servers under the kept name, still their roles'.
    let pre = report["pre_restore_set"].as_str().unwrap().to_string();
    assert_eq!(listed(env, "pre-restore"), std::slice::from_ref(&pre));
    let saved = manifest(env, &pre);
    let kept_as = |slug: &str| entry_of(&saved, slug)["kept_as"].as_str().unwrap().to_string();
    let (kept_db, kept_schema) = (kept_as("a1"), kept_as("b1"));
    for (slug, kept) in [("a1", &kept_db), ("b1", &kept_schema)] {
        let entry = entry_of(&saved, slug);
        assert_eq!(entry["format"], "kept_on_server", "{entry}");
        assert!(
            kept.starts_with(&format!("tenant_{slug}__prerestore_")),
            "{entry}"
        );
        assert_eq!(entry["server"], server_of(slug), "{entry}");
    }
    assert_eq!(entry_of(&saved, "l1")["format"], "sqlite");
    assert_eq!(databases_with(&fleet.a, "__prerestore_"), kept_db);
    assert_eq!(database_owner(&fleet.a, &kept_db), "tenant_a1");
    assert_eq!(
        fleet.a.psql(
            &kept_db,
            "SELECT string_agg(email, ',' ORDER BY email) FROM users"
        ),
        "changed@a1.test,late@a1.test"
    );
    assert_eq!(schemas_with(fleet.b(), "__prerestore_"), kept_schema);
    assert_eq!(
        fleet.b().psql(
            PLATFORM,
            &format!("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = '{kept_schema}'")
        ),
        "tenant_b1"
    );
    assert_eq!(
        fleet.b().psql(
            PLATFORM,
            &format!("SELECT string_agg(email, ',' ORDER BY email) FROM \"{kept_schema}\".users")
        ),
        "changed@b1.test,late@b1.test"
    );
    // The restored tenants are their roles' too, and nothing was left beside them.
    assert_eq!(database_owner(&fleet.a, "tenant_a1"), "tenant_a1");
    assert_eq!(
        fleet.a.psql(
            "tenant_a1",
            "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'public'"
        ),
        "tenant_a1"
    );
    assert_eq!(
        fleet.b().psql(
            PLATFORM,
            "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'tenant_b1'"
        ),
        "tenant_b1"
    );
    assert_eq!(databases_with(&fleet.a, "__restore_"), "");
    assert_eq!(schemas_with(fleet.b(), "__restore_"), "");
    assert_eq!(databases_with(fleet.b(), "tenantctl_scratch_"), "");
    env.ok(&["backup", "verify", &pre]);
    assert_eq!(fleet.open_operations(), 0);
    fleet.doctor_is_clean();
}

#[test]
fn a_server_down_during_backup_leaves_its_tenants_out_of_a_set_written_with_the_rest() {
    let fleet = Fleet::new(&["l1", "a1"]);
    let env = &fleet.env;
    fleet.add_user("l1", "kept@l1.test");
    fleet.a.stop();
    let run = env.run(&["backup", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    assert!(
        run.stderr.contains("leaves out 1 tenant database"),
        "{}",
        run.stderr
    );
    let set = run.json();
    let id = id_of(&set);
    let files: Vec<&str> = set["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["catalog.db", "tenants/l1.db"], "{set}");
    let skipped = set["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{set}");
    assert_eq!(skipped[0]["customer"], "a1", "{set}");
    let reason = skipped[0]["reason"].as_str().unwrap();
    assert!(reason.contains("pga"), "the reason names the server: {reason}");
    // Written and whole: listed, verified, and restorable for what it holds.
    assert_eq!(manifest(env, &id)["skipped"], set["skipped"]);
    assert_eq!(listed(env, "manual"), std::slice::from_ref(&id));
    env.ok(&["backup", "verify", &id]);
    assert!(!set_dir(env, &id).join("tenants/a1.dump").exists());
    let report = env.json(&["restore", &id, "--customer", "l1"]);
    assert_eq!(report["restored"][0]["status"], "restored", "{report}");
    assert_eq!(fleet.emails("l1"), "kept@l1.test");
    let run = env.fails(&["restore", &id, "--customer", "a1"], 3);
    assert!(run.stderr.contains("no backup of 'a1'"), "{}", run.stderr);
}

#[test]
fn verify_checks_each_dump_and_names_one_that_was_changed() {
    let fleet = Fleet::new(&["l1", "a1", "a2"]);
    let env = &fleet.env;
    fleet.add_user("a1", "one@a1.test");
    let set = env.json(&["backup"]);
    let id = id_of(&set);
    let checks = env.json(&["backup", "verify", &id]);
    let statuses: Vec<(&str, &str)> = checks
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["file"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("catalog.db", "ok"),
            ("tenants/l1.db", "ok"),
            ("tenants/a1.dump", "ok"),
            ("tenants/a2.dump", "ok"),
        ],
        "{checks}"
    );
    let dump_check = &checks[2];
    assert!(
        dump_check["message"]
            .as_str()
            .unwrap()
            .contains("pg_restore --list"),
        "{dump_check}"
    );

    let dump = set_dir(env, &id).join("tenants/a1.dump");
    let mut bytes = std::fs::read(&dump).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    std::fs::write(&dump, &bytes).unwrap();
    let run = env.run(&["backup", "verify", &id, "--json"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.stderr.contains("tenants/a1.dump"), "{}", run.stderr);
    let bad: Vec<(String, String)> = run
        .json()
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
        .collect();
    assert_eq!(bad, [("tenants/a1.dump".into(), "mismatch".into())]);
    // A restore from it is refused before anything is made on the server.
    let refused = env.fails(&["restore", &id, "--customer", "a1"], 7);
    assert!(refused.stderr.contains("a1.dump"), "{}", refused.stderr);
    assert_eq!(databases_with(&fleet.a, "__restore_"), "");
    assert_eq!(fleet.emails("a1"), "one@a1.test");

    // A dump whose checksum the manifest agrees with but which is no archive: only
    // pg_restore --list can tell.
    std::fs::write(&dump, &bytes[..middle]).unwrap();
    let path = set_dir(env, &id).join("manifest.json");
    let mut edited = manifest(env, &id);
    let entry = edited["entries"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["file"] == "tenants/a1.dump")
        .unwrap();
    entry["bytes"] = middle.into();
    entry["sha256"] = sha256_hex(&bytes[..middle]).into();
    std::fs::write(&path, serde_json::to_vec(&edited).unwrap()).unwrap();
    let run = env.run(&["backup", "verify", &id, "--json"]);
    assert_eq!(run.code, 7, "{run:?}");
    let not_ok: Vec<Value> = run
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "ok")
        .map(|c| c["status"].clone())
        .collect();
    assert_eq!(not_ok, ["damaged"], "{run:?}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    let output = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Every step a restore of a server tenant can be killed at, in order; the first
/// three come before the swap is recorded in the operation ledger.
const CRASH_STEPS: [&str; 7] = [
    "restore:staged",
    "restore:saved",
    "restore:recorded",
    "restore:pg-before-freeze",
    "restore:pg-frozen",
    "restore:pg-kept",
    "restore:pg-swapped",
];

fn before_recorded(step: &str) -> bool {
    ["restore:staged", "restore:saved"].contains(&step)
}

#[test]
fn a_restore_killed_at_any_step_is_finished_by_the_next_restore_or_doctor_fix() {
    killed_at_every_step("a1", &CRASH_STEPS);
}

#[test]
fn a_schema_mode_restore_killed_at_any_step_is_finished_likewise() {
    // Both renames share one transaction: no step between them.
    let steps: Vec<&str> = CRASH_STEPS
        .into_iter()
        .filter(|step| *step != "restore:pg-kept")
        .collect();
    killed_at_every_step("b1", &steps);
}

/// Kills a restore of `slug`'s tenant at each of `steps` in turn, each time after
/// adding a user the backup does not hold, and settles each kill with `doctor --fix`
/// or the next restore: the tenant ends with the backup's rows, its role logs in and
/// owns it, nothing is left beside it and no operation stays open.
fn killed_at_every_step(slug: &str, steps: &[&str]) {
    let fleet = Fleet::new(&[slug]);
    let env = &fleet.env;
    let marker = format!("marker@{slug}.test");
    fleet.add_user(slug, &marker);
    let id = id_of(&env.json(&["backup"]));
    for (n, step) in steps.iter().copied().enumerate() {
        let late = format!("late{n}@{slug}.test");
        fleet.add_user(slug, &late);
        env.cmd(&["restore", &id, "--customer", slug])
            .killed_at_step(step);
        if before_recorded(step) {
            // Nothing live has changed, and the ledger holds nothing.
            assert_eq!(fleet.emails(slug), format!("{late},{marker}"), "{step}");
            assert!(fleet.can_login(slug), "{step}");
            assert_eq!(fleet.open_operations(), 0, "{step}");
            // The checked copy beside the tenant stays behind.
            assert_eq!(
                fleet.beside(slug, "__restore_"),
                format!("tenant_{slug}__restore_{id}"),
                "{step}"
            );
        } else {
            assert_eq!(fleet.open_operations(), 1, "{step}");
            let kind: String = env
                .catalog()
                .query_row("SELECT kind FROM operations", [], |r| r.get(0))
                .unwrap();
            assert_eq!(kind, "restore.swap");
        }
        // Half the steps settled by doctor, half by the next restore; a kill before
        // the swap was recorded needs the restore run again.
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
            let (field, expected) = match before_recorded(step) {
                true => (
                    "cleaned_up",
                    format!("tenant_{slug}__restore_{id} on server {}", server_of(slug)),
                ),
                false => (
                    "finished_interrupted",
                    format!("finished an interrupted restore.swap of '{id}'"),
                ),
            };
            let cleaned: Vec<&str> = report[field]
                .as_array()
                .unwrap()
                .iter()
                .map(|line| line.as_str().unwrap())
                .collect();
            assert!(
                cleaned.iter().any(|line| line.starts_with(&expected)),
                "{step}: {expected:?} not in {report}"
            );
        }
        assert_eq!(fleet.emails(slug), marker, "{step}");
        assert!(fleet.can_login(slug), "{step}: the role logs in again");
        assert_eq!(fleet.beside(slug, "__restore_"), "", "{step}");
        assert_eq!(fleet.owner(slug), format!("tenant_{slug}"), "{step}");
        assert_eq!(fleet.open_operations(), 0, "{step}");
        fleet.doctor_is_clean();
        assert_eq!(
            env.json(&["db", "status", slug, "-q"])[0]["schema_version"],
            3,
            "{step}"
        );
    }
}

/// `backup prune` keeping the newest regular set and nothing by day, week or month,
/// with the policy the catalog holds, as cron runs it.
fn prune_keeping_last_one(env: &TestEnv) -> Value {
    for period in ["daily", "weekly", "monthly"] {
        env.ok(&["config", "set", &format!("backup_keep_{period}"), "0"]);
    }
    env.json(&["backup", "prune", "--keep-last", "1"])
}

/// The kept database each listed pre-restore set names for `slug`, by set.
fn kept_copies(env: &TestEnv, slug: &str) -> Vec<(String, String)> {
    listed(env, "pre-restore")
        .into_iter()
        .map(|pre| {
            let kept = entry_of(&manifest(env, &pre), slug)["kept_as"]
                .as_str()
                .unwrap()
                .to_string();
            (pre, kept)
        })
        .collect()
}

#[test]
fn a_pre_restore_set_left_by_a_killed_restore_never_takes_another_sets_kept_copy_with_it() {
    let fleet = Fleet::new(&["a1"]);
    let env = &fleet.env;
    fleet.add_user("a1", "marker@a1.test");
    let id = id_of(&env.json(&["backup"]));
    fleet.add_user("a1", "late@a1.test");
    // Killed after its pre-restore set was written, before the swap was recorded:
    // that set names a kept database the swap never made.
    env.cmd(&["restore", &id, "--customer", "a1"])
        .killed_at_step("restore:saved");
    env.json(&["backup"]);
    let report = env
        .cmd(&["restore", &id, "--customer", "a1"])
        .stderr_has("of an interrupted restore")
        .json();
    let replaced = report["pre_restore_set"].as_str().unwrap().to_string();
    let claims = kept_copies(env, "a1");
    // The newest regular set is kept; every pre-restore set older than it goes.
    prune_keeping_last_one(env);
    let left = kept_copies(env, "a1");
    assert!(
        left.iter().any(|(pre, _)| *pre == replaced),
        "the newest pre-restore set stays: {left:?}"
    );
    let on_server = databases_with(&fleet.a, "__prerestore_");
    for (pre, kept) in &left {
        assert!(
            on_server.split(',').any(|name| name == kept),
            "pre-restore set {pre} names {kept}, which is gone from the server ({on_server}); \
             before the prune the sets named {claims:?}"
        );
        assert_eq!(
            fleet
                .a
                .psql(kept, "SELECT string_agg(email, ',' ORDER BY email) FROM users"),
            "late@a1.test,marker@a1.test"
        );
    }
}

#[test]
fn into_copies_one_server_tenant_into_another_owned_by_the_new_role() {
    let fleet = Fleet::new(&["l1", "a1", "a2"]);
    let env = &fleet.env;
    fleet.add_user("a1", "source@a1.test");
    fleet.add_user("a2", "own@a2.test");
    fleet.add_user("l1", "own@l1.test");
    let id = id_of(&env.json(&["backup"]));
    let report = env.json(&["restore", &id, "--customer", "a1", "--into", "a2"]);
    assert_eq!(report["restored"][0]["customer"], "a2", "{report}");
    assert_eq!(report["restored"][0]["from_customer"], "a1", "{report}");
    assert_eq!(report["restored"][0]["status"], "restored", "{report}");
    assert_eq!(fleet.emails("a2"), "source@a1.test");
    assert_eq!(fleet.emails("a1"), "source@a1.test", "the source is untouched");
    assert_eq!(database_owner(&fleet.a, "tenant_a2"), "tenant_a2");
    assert_eq!(
        fleet.a.psql(
            "tenant_a2",
            "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'public'"
        ),
        "tenant_a2"
    );
    assert!(
        fleet.a.psql(
            "tenant_a2",
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) <> 'tenant_a2'"
        ) == "0",
        "every object of a2 is its role's"
    );
    assert!(fleet.can_login("a2"));
    // a2's own data is kept on the server under a2's name.
    let pre = report["pre_restore_set"].as_str().unwrap();
    let kept = entry_of(&manifest(env, pre), "a2")["kept_as"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(kept.starts_with("tenant_a2__prerestore_"), "{kept}");
    assert_eq!(
        fleet.a.psql(&kept, "SELECT string_agg(email, ',') FROM users"),
        "own@a2.test"
    );
    fleet.doctor_is_clean();

    // Across engines it is customer move's work, both ways; nothing changes.
    for (from, into) in [("l1", "a2"), ("a1", "l1")] {
        let run = env.fails(&["restore", &id, "--customer", from, "--into", into], 6);
        assert!(
            run.stderr.contains("customer move"),
            "{from} into {into}: {}",
            run.stderr
        );
    }
    assert_eq!(fleet.emails("a2"), "source@a1.test");
    assert_eq!(fleet.emails("l1"), "own@l1.test");
    assert_eq!(databases_with(&fleet.a, "__restore_"), "");
}

#[test]
fn into_copies_a_database_mode_tenant_into_a_schema_mode_one() {
    let fleet = Fleet::new(&["a1", "b1"]);
    let env = &fleet.env;
    fleet.add_user("a1", "source@a1.test");
    fleet.add_user("b1", "own@b1.test");
    let id = id_of(&env.json(&["backup", "--customer", "a1"]));
    let report = env.json(&["restore", &id, "--customer", "a1", "--into", "b1"]);
    assert_eq!(report["restored"][0]["status"], "restored", "{report}");
    assert_eq!(fleet.emails("b1"), "source@a1.test");
    assert_eq!(
        fleet.b().psql(
            PLATFORM,
            "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'tenant_b1'"
        ),
        "tenant_b1"
    );
    fleet.doctor_is_clean();
}

/// A tenant restored twice from its first backup (two kept databases on pga), then
/// backed up again; returns the newest set's id.
fn restored_twice_then_backed_up(fleet: &Fleet) -> String {
    let env = &fleet.env;
    fleet.add_user("a1", "marker@a1.test");
    let first = id_of(&env.json(&["backup"]));
    for n in 0..2 {
        fleet.add_user("a1", &format!("late{n}@a1.test"));
        env.json(&["restore", &first, "--customer", "a1"]);
    }
    let kept: Vec<String> = kept_copies(env, "a1").into_iter().map(|(_, kept)| kept).collect();
    // Each restore keeps its own copy, under a name no other set can give.
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_ne!(kept[0], kept[1]);
    assert!(
        kept.iter().all(|k| k.starts_with("tenant_a1__prerestore_")),
        "{kept:?}"
    );
    assert_eq!(databases_with(&fleet.a, "__prerestore_"), kept.join(","));
    fleet.add_user("a1", "after@a1.test");
    id_of(&env.json(&["backup"]))
}

/// After a prune that kept only `newest`: every kept database is gone with its set,
/// and the live tenant is whole.
fn assert_pruned_to(fleet: &Fleet, pruned: &Value, newest: &str) {
    let removed: Vec<&Value> = pruned["sets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "remove")
        .map(|d| &d["kind"])
        .collect();
    assert_eq!(
        removed,
        ["pre-restore", "pre-restore", "manual"],
        "the first set and both pre-restore sets: {pruned}"
    );
    let env = &fleet.env;
    let ids: Vec<String> = env
        .json(&["backup", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(ids, [newest]);
    assert_eq!(databases_with(&fleet.a, "__prerestore_"), "");
    assert_eq!(databases_with(&fleet.a, "tenant_"), "tenant_a1");
    assert_eq!(fleet.emails("a1"), "after@a1.test,marker@a1.test");
    assert!(fleet.can_login("a1"));
    fleet.doctor_is_clean();
}

#[test]
fn prune_drops_the_databases_old_pre_restore_sets_kept_and_never_the_live_tenant() {
    let fleet = Fleet::new(&["a1"]);
    let newest = restored_twice_then_backed_up(&fleet);
    let pruned = prune_keeping_last_one(&fleet.env);
    assert_pruned_to(&fleet, &pruned, &newest);
}

#[test]
fn prune_given_every_keep_flag_also_drops_the_kept_databases() {
    let fleet = Fleet::new(&["a1"]);
    let newest = restored_twice_then_backed_up(&fleet);
    let pruned = fleet.env.json(&[
        "backup",
        "prune",
        "--keep-last",
        "1",
        "--keep-daily",
        "0",
        "--keep-weekly",
        "0",
        "--keep-monthly",
        "0",
    ]);
    assert_pruned_to(&fleet, &pruned, &newest);
}

/// A restore killed before its swap was recorded leaves its checked copy beside the
/// tenant: a whole copy of the tenant's data, owned by its role.
fn killed_while_staged(fleet: &Fleet) -> String {
    let env = &fleet.env;
    fleet.add_user("a1", "marker@a1.test");
    let id = id_of(&env.json(&["backup"]));
    env.cmd(&["restore", &id, "--customer", "a1"])
        .killed_at_step("restore:staged");
    let left = format!("tenant_a1__restore_{id}");
    assert_eq!(databases_with(&fleet.a, "__restore_"), left);
    left
}

#[test]
fn doctor_fix_removes_the_copy_a_restore_killed_before_recording_left_on_the_server() {
    let fleet = Fleet::new(&["a1"]);
    let left = killed_while_staged(&fleet);
    let run = fleet.env.run(&["doctor", "--fix", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        databases_with(&fleet.a, "__restore_"),
        "",
        "{left} outlived doctor --fix: {}",
        run.stdout
    );
}

#[test]
fn the_next_restore_of_any_set_drops_the_copy_a_killed_restore_left_on_the_server() {
    let fleet = Fleet::new(&["a1"]);
    let env = &fleet.env;
    let left = killed_while_staged(&fleet);
    fleet.add_user("a1", "late@a1.test");
    let other = id_of(&env.json(&["backup"]));
    let report = env
        .cmd(&["restore", &other, "--customer", "a1"])
        .stderr_has("of an interrupted restore")
        .json();
    assert_eq!(
        report["cleaned_up"],
        serde_json::json!([format!("{left} on server pga")]),
        "{report}"
    );
    assert_eq!(databases_with(&fleet.a, "__restore_"), "");
    assert_eq!(fleet.emails("a1"), "late@a1.test,marker@a1.test");
    fleet.doctor_is_clean();
}

#[test]
fn purging_a_restored_customer_removes_its_role_and_every_database_it_owns() {
    let fleet = Fleet::new(&["a1"]);
    let env = &fleet.env;
    // An ordinary restore: the replaced database stays on the server, the role's.
    fleet.add_user("a1", "marker@a1.test");
    let id = id_of(&env.json(&["backup"]));
    env.json(&["restore", &id, "--customer", "a1"]);
    let (_, kept) = kept_copies(env, "a1").pop().unwrap();
    assert_eq!(database_owner(&fleet.a, &kept), "tenant_a1");
    env.ok(&["customer", "delete", "a1", "--confirm", "a1"]);
    let run = env.run(&["customer", "purge", "a1", "--confirm", "a1"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(databases_with(&fleet.a, "tenant_"), "");
    assert_eq!(
        fleet.a.psql(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'tenant_a1'"
        ),
        "0"
    );
}

#[test]
fn into_copies_between_schema_mode_tenants() {
    let fleet = Fleet::new(&["b1", "b2"]);
    let env = &fleet.env;
    fleet.add_user("b1", "source@b1.test");
    fleet.add_user("b2", "own@b2.test");
    let id = id_of(&env.json(&["backup"]));
    let report = env.json(&["restore", &id, "--customer", "b1", "--into", "b2"]);
    assert_eq!(report["restored"][0]["status"], "restored", "{report}");
    assert_eq!(fleet.emails("b2"), "source@b1.test");
    assert_eq!(fleet.emails("b1"), "source@b1.test");
    assert_eq!(
        fleet.b().psql(
            PLATFORM,
            "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'tenant_b2'"
        ),
        "tenant_b2"
    );
    assert!(fleet.can_login("b2"));
    assert_eq!(schemas_with(fleet.b(), "__restore_"), "");
    assert_eq!(databases_with(fleet.b(), "tenantctl_scratch_"), "");
    fleet.doctor_is_clean();
}

#[test]
fn a_dry_run_changes_nothing_and_if_missing_skips_a_present_server_tenant() {
    let fleet = Fleet::new(&["a1", "b1"]);
    let env = &fleet.env;
    for slug in ["a1", "b1"] {
        fleet.add_user(slug, &format!("marker@{slug}.test"));
    }
    let id = id_of(&env.json(&["backup"]));
    for slug in ["a1", "b1"] {
        fleet.add_user(slug, &format!("late@{slug}.test"));
    }
    let sets_before = env.json(&["backup", "list"]);
    let plan = env.json(&[
        "restore",
        &id,
        "--customer",
        "a1",
        "--customer",
        "b1",
        "--dry-run",
    ]);
    assert_eq!(plan["dry_run"], true, "{plan}");
    assert_eq!(plan["pre_restore_set"], Value::Null, "{plan}");
    for (n, slug) in ["a1", "b1"].into_iter().enumerate() {
        assert_eq!(plan["restored"][n]["customer"], slug, "{plan}");
        assert_eq!(plan["restored"][n]["status"], "would-replace", "{plan}");
        assert_eq!(plan["pre_restore"][n]["status"], "would-save", "{plan}");
        assert_eq!(fleet.emails(slug), format!("late@{slug}.test,marker@{slug}.test"));
    }
    assert_eq!(env.json(&["backup", "list"]), sets_before);
    assert_eq!(databases_with(&fleet.a, "__"), "");
    assert_eq!(schemas_with(fleet.b(), "__"), "");
    assert_eq!(databases_with(fleet.b(), "tenantctl_"), "");

    let report = env.json(&[
        "restore",
        &id,
        "--customer",
        "a1",
        "--customer",
        "b1",
        "--if-missing",
    ]);
    for (n, slug) in ["a1", "b1"].into_iter().enumerate() {
        let line = &report["restored"][n];
        assert_eq!(line["status"], "skipped", "{report}");
        assert!(line["reason"].as_str().unwrap().contains("exists"), "{report}");
        assert_eq!(fleet.emails(slug), format!("late@{slug}.test,marker@{slug}.test"));
    }
    assert_eq!(report["pre_restore_set"], Value::Null, "{report}");
    assert_eq!(env.json(&["backup", "list"]), sets_before);
    assert_eq!(databases_with(&fleet.a, "__"), "");
    assert_eq!(schemas_with(fleet.b(), "__"), "");
    assert!(fleet.can_login("a1") && fleet.can_login("b1"));

    // A tenant whose database is gone from its server is put back, and the one still
    // there left alone.
    fleet.a.psql("postgres", "DROP DATABASE tenant_a1 WITH (FORCE)");
    let plan = env.json(&["restore", &id, "--customer", "a1", "--dry-run"]);
    assert_eq!(plan["restored"][0]["status"], "would-create", "{plan}");
    assert_eq!(plan["pre_restore"], serde_json::json!([]), "{plan}");
    let report = env.json(&[
        "restore",
        &id,
        "--customer",
        "a1",
        "--customer",
        "b1",
        "--if-missing",
    ]);
    let statuses: Vec<(&str, &str)> = report["restored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["customer"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("a1", "restored"), ("b1", "skipped")], "{report}");
    assert_eq!(fleet.emails("a1"), "marker@a1.test");
    assert_eq!(fleet.emails("b1"), "late@b1.test,marker@b1.test");
    assert_eq!(fleet.owner("a1"), "tenant_a1");
    assert!(fleet.can_login("a1"));
    assert_eq!(databases_with(&fleet.a, "__"), "");
    fleet.doctor_is_clean();
}

fn role_can_login(server: &PgServer, role: &str) -> String {
    server.psql(
        "postgres",
        &format!("SELECT rolcanlogin FROM pg_roles WHERE rolname = '{role}'"),
    )
}

#[test]
fn a_suspended_customers_role_stays_shut_through_a_restore_and_its_recovery() {
    let fleet = Fleet::new(&["a1"]);
    let env = &fleet.env;
    fleet.add_user("a1", "marker@a1.test");
    let id = id_of(&env.json(&["backup"]));
    fleet.add_user("a1", "late@a1.test");
    env.json(&["customer", "suspend", "a1", "--reason", "unpaid"]);
    assert_eq!(role_can_login(&fleet.a, "tenant_a1"), "f");
    env.json(&["restore", &id, "--customer", "a1"]);
    assert_eq!(role_can_login(&fleet.a, "tenant_a1"), "f", "as it was");

    // The tenant's role may not log in: written by the server's superuser.
    fleet.a.psql(
        "tenant_a1",
        "INSERT INTO users (email, name) VALUES ('later@a1.test', 'U')",
    );
    env.cmd(&["restore", &id, "--customer", "a1"])
        .killed_at_step("restore:pg-frozen");
    let run = env.run(&["doctor", "--fix", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(fleet.open_operations(), 0);
    assert_eq!(
        role_can_login(&fleet.a, "tenant_a1"),
        "f",
        "finishing the swap lets in only an active customer's role"
    );
    env.json(&["customer", "reactivate", "a1"]);
    assert!(fleet.can_login("a1"));
    assert_eq!(fleet.emails("a1"), "marker@a1.test");
    fleet.doctor_is_clean();
}

#[test]
fn a_restored_copy_whose_rows_differ_from_the_manifest_is_never_swapped_in() {
    let fleet = Fleet::new(&["a1"]);
    let env = &fleet.env;
    fleet.add_user("a1", "marker@a1.test");
    let id = id_of(&env.json(&["backup"]));
    fleet.add_user("a1", "late@a1.test");
    // The archive is intact (its checksum still matches); the rows recorded with it
    // say there were more users than it holds.
    let path = set_dir(env, &id).join("manifest.json");
    let mut edited = manifest(env, &id);
    for entry in edited["entries"].as_array_mut().unwrap() {
        if entry["customer_slug"] == "a1" {
            entry["rows"]["users"] = 5.into();
        }
    }
    std::fs::write(&path, serde_json::to_vec(&edited).unwrap()).unwrap();
    let run = env.fails(&["restore", &id, "--customer", "a1"], 7);
    assert!(run.stderr.contains("rows differ"), "{}", run.stderr);
    assert!(run.stderr.contains("users"), "{}", run.stderr);
    assert_eq!(fleet.emails("a1"), "late@a1.test,marker@a1.test");
    assert!(fleet.can_login("a1"));
    assert_eq!(databases_with(&fleet.a, "__"), "");
    assert_eq!(listed(env, "pre-restore"), Vec::<String>::new());
    assert_eq!(fleet.open_operations(), 0);
    fleet.doctor_is_clean();
}

#[test]
fn into_copies_a_schema_mode_tenant_into_a_database_mode_one() {
    let fleet = Fleet::new(&["a1", "b1"]);
    let env = &fleet.env;
    fleet.add_user("a1", "own@a1.test");
    fleet.add_user("b1", "source@b1.test");
    let id = id_of(&env.json(&["backup", "--customer", "b1"]));
    let run = env.run(&["restore", &id, "--customer", "b1", "--into", "a1", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(fleet.emails("a1"), "source@b1.test");
    assert_eq!(
        fleet.a.psql(
            "tenant_a1",
            "SELECT string_agg(DISTINCT schemaname || ':' || tableowner, ',') FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ),
        "public:tenant_a1"
    );
    fleet.doctor_is_clean();
}

/// Disaster recovery (SPEC section 3, `--everything`): the home's catalog and tenant
/// files are gone, the servers and the master key are not. The restored catalog says
/// where each server tenant lives, and each is put back there from its archive.
#[test]
fn restore_everything_puts_server_tenants_back_where_the_restored_catalog_places_them() {
    let fleet = Fleet::new(&["l1", "a1", "b1"]);
    let env = &fleet.env;
    for slug in ["l1", "a1", "b1"] {
        fleet.add_user(slug, &format!("marker@{slug}.test"));
    }
    let id = id_of(&env.json(&["backup", "--kind", "scheduled"]));
    for slug in ["l1", "a1", "b1"] {
        fleet.add_user(slug, &format!("lost@{slug}.test"));
    }
    std::fs::remove_file(env.home.join("catalog.db")).unwrap();
    std::fs::remove_dir_all(env.home.join("tenants")).unwrap();

    let dry = env.json(&["restore", &id, "--everything", "--dry-run"]);
    let would: Vec<&str> = dry["restored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["status"].as_str().unwrap())
        .collect();
    assert_eq!(would.len(), 4, "{dry}");
    assert_eq!(
        fleet.emails("a1"),
        "lost@a1.test,marker@a1.test",
        "a dry run changes nothing"
    );

    let report = env.json(&["restore", &id, "--everything", "--confirm", "everything"]);
    let restored: Vec<(&str, &str)> = report["restored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| (line["target"].as_str().unwrap(), line["status"].as_str().unwrap()))
        .collect();
    assert!(
        restored.iter().all(|(_, status)| *status == "restored"),
        "{report}"
    );
    assert!(
        restored
            .iter()
            .any(|(target, _)| *target == "database tenant_a1 on server pga"),
        "{report}"
    );
    assert!(
        restored
            .iter()
            .any(|(target, _)| *target == "schema tenant_b1 on server pgb"),
        "{report}"
    );
    for slug in ["l1", "a1", "b1"] {
        assert_eq!(fleet.emails(slug), format!("marker@{slug}.test"), "{slug}");
        assert_eq!(fleet.env.json(&["customer", "show", slug])["schema_version"], 3);
    }
    // What was replaced on the servers is kept there, named by the pre-restore set.
    let pre = report["pre_restore_set"].as_str().unwrap();
    let saved = manifest(env, pre);
    let kept = entry_of(&saved, "a1")["kept_as"].as_str().unwrap().to_string();
    assert_eq!(fleet.a.psql(&kept, "SELECT count(*) FROM users"), "2");
    assert!(fleet.can_login("a1") && fleet.can_login("b1"));
    assert_eq!(fleet.open_operations(), 0);
    fleet.doctor_is_clean();
}

#[test]
fn restore_everything_goes_on_without_a_server_that_is_down_and_exits_8() {
    let fleet = Fleet::new(&["l1", "a1"]);
    let env = &fleet.env;
    fleet.add_user("l1", "marker@l1.test");
    let id = id_of(&env.json(&["backup"]));
    fleet.add_user("l1", "lost@l1.test");
    fleet.a.stop();
    let run = env
        .cmd(&[
            "restore",
            &id,
            "--everything",
            "--confirm",
            "everything",
            "--json",
        ])
        .expect_code(8)
        .stderr_has("could not be restored")
        .run();
    let report = run.json();
    let status_of = |file: &str| {
        report["restored"]
            .as_array()
            .unwrap()
            .iter()
            .find(|line| line["file"] == file)
            .map(|line| line["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status_of("catalog.db").as_deref(), Some("restored"), "{report}");
    assert_eq!(
        status_of("tenants/l1.db").as_deref(),
        Some("restored"),
        "{report}"
    );
    assert_eq!(
        status_of("tenants/a1.dump").as_deref(),
        Some("failed"),
        "{report}"
    );
    assert_eq!(fleet.emails("l1"), "marker@l1.test");
}

/// A superuser's session in the tenant's database is one the admin login may not end,
/// and the rename cannot happen while it is there: the restore fails, says why, and
/// leaves the tenant as it was, its login let back in.
#[test]
fn a_swap_a_superuser_session_blocks_fails_and_lets_the_tenant_back_in() {
    let fleet = Fleet::new(&["a1"]);
    let env = &fleet.env;
    fleet.add_user("a1", "marker@a1.test");
    let id = id_of(&env.json(&["backup"]));
    fleet.add_user("a1", "late@a1.test");
    let session = fleet.a.connect("tenant_a1");
    let run = env.fails(&["restore", &id, "--customer", "a1"], 1);
    assert!(run.stderr.contains("being accessed by other users"), "{run:?}");
    assert!(fleet.can_login("a1"), "the login is let back in");
    assert_eq!(fleet.emails("a1"), "late@a1.test,marker@a1.test");
    assert_eq!(databases_with(&fleet.a, "__restore_"), "");
    drop(session);
    // With the session gone, the ledger's swap is settled and the restore goes through.
    env.json(&["restore", &id, "--customer", "a1"]);
    assert_eq!(fleet.emails("a1"), "marker@a1.test");
    assert_eq!(fleet.open_operations(), 0);
    fleet.doctor_is_clean();
}
