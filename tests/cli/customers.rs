//! customer create, list, show, update, suspend, reactivate, delete, undelete, purge.

use std::path::Path;

use serde_json::json;

use crate::support::*;

#[test]
fn create_provisions_a_private_migrated_tenant_database() {
    let env = TestEnv::initialised();
    let customer = env.customer(
        "Ops@Acme.TEST",
        "Jane Doe",
        &[
            "Acme Corp",
            "--plan",
            "pro",
            "--meta",
            "region=eu",
            "--meta",
            "seats=5",
        ],
    );
    assert_fields(&customer, CUSTOMER_FIELDS);
    assert_eq!(customer["slug"], "acme-corp");
    assert_eq!(customer["email"], "Ops@acme.test");
    assert_eq!(customer["company_name"], "Acme Corp");
    assert_eq!(customer["plan"], "pro");
    assert_eq!(customer["status"], "active");
    assert_eq!(customer["metadata"], json!({"region": "eu", "seats": 5}));
    assert_eq!(customer["schema_version"], 3);
    assert_timestamp(&customer["created_at"]);
    let db = Path::new(customer["db_path"].as_str().unwrap());
    assert_eq!(db, env.home.join("tenants/acme-corp.db"));
    assert_eq!(mode(db), 0o600);
    let tenant = rusqlite::Connection::open(db).unwrap();
    let journal: String = tenant.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(journal, "wal");
    let tables: i64 = tenant
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('users', 'products', 'orders')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 3);
    drop(tenant);
    assert_eq!(
        env.names_in(&env.home.join("tenants")),
        ["acme-corp.db"],
        "no staging file left"
    );
    let audit = env.json(&["audit", "--customer", "acme-corp"]);
    assert_eq!(audit[0]["action"], "customer.create");
}

#[test]
fn the_legacy_alias_and_default_plan_work() {
    let env = TestEnv::initialised();
    let created = env.json(&["create-customer", "bob@example.com", "Bob"]);
    assert_eq!(created["slug"], "bob");
    assert_eq!(created["plan"], "starter");
    env.ok(&["config", "set", "default_plan", "pro"]);
    assert_eq!(env.customer("c@example.com", "C", &[])["plan"], "pro");
    let listed = env.json(&["list-customers"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
}

#[test]
fn slugs_are_derived_suffixed_and_validated() {
    let env = TestEnv::initialised();
    assert_eq!(
        env.customer("john.doe@example.com", "John", &[])["slug"],
        "john-doe"
    );
    assert_eq!(env.customer("x@example.com", "X", &["Acme"])["slug"], "acme");
    assert_eq!(env.customer("y@example.com", "Y", &["ACME"])["slug"], "acme-2");
    assert_eq!(
        env.customer("z@example.com", "Z", &["Admin"])["slug"],
        "admin-2",
        "reserved words are skipped"
    );
    for bad in ["www", "api", "Acme", "-a", "../../etc", "a_b", &"x".repeat(64)] {
        let run = env.fails(
            &[
                "customer",
                "create",
                "n@example.com",
                "N",
                &format!("--slug={bad}"),
            ],
            2,
        );
        assert!(run.stderr.contains("slug"), "{bad}: {}", run.stderr);
    }
    env.fails(&["customer", "create", "n@example.com", "N", "--slug", "acme"], 4);
    assert_eq!(env.count("SELECT count(*) FROM customers"), 4);
}

#[test]
fn bad_input_writes_nothing() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "acme"]);
    let audit = env.count("SELECT count(*) FROM audit_events");
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["customer", "create", "not-an-email", "N"],
            2,
            "invalid email 'not-an-email'",
        ),
        (&["customer", "create", "n@localhost", "N"], 2, "invalid email"),
        (
            &["customer", "create", "n@example.com", "  "],
            2,
            "name must not be empty",
        ),
        (
            &["customer", "create", "n@example.com", "N", "--plan", "gold"],
            2,
            "unknown plan 'gold'",
        ),
        (
            &["customer", "create", "n@example.com", "N", "--plan", "Bad Plan"],
            2,
            "invalid plan name",
        ),
        (
            &["customer", "create", "n@example.com", "N", "--meta", "novalue"],
            2,
            "invalid --meta",
        ),
        (&["customer", "create", "A@EXAMPLE.com", "N"], 4, "already exists"),
        (
            &["customer", "create", "n@example.com", "N", "--slug", "acme"],
            4,
            "taken",
        ),
        (
            &["customer", "create", "n@example.com", "line\nbreak"],
            2,
            "control or invisible",
        ),
    ];
    for (args, code, message) in cases {
        let run = env.fails(args, *code);
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
    assert_eq!(env.count("SELECT count(*) FROM customers"), 1);
    assert_eq!(env.count("SELECT count(*) FROM audit_events"), audit);
    assert_eq!(env.names_in(&env.home.join("tenants")), ["acme.db"]);
}

#[test]
fn a_failed_provision_leaves_no_row_and_no_file() {
    let env = TestEnv::initialised();
    std::fs::write(
        env.home.join("tenant-migrations/V4__half.sql"),
        "CREATE TABLE half (x);\nINSERT INTO missing_table VALUES (1);",
    )
    .unwrap();
    let run = env.fails(&["customer", "create", "a@example.com", "A"], 1);
    assert!(run.stderr.contains("missing_table"), "{}", run.stderr);
    assert_eq!(env.count("SELECT count(*) FROM customers"), 0);
    assert!(env.names_in(&env.home.join("tenants")).is_empty());

    std::fs::remove_file(env.home.join("tenant-migrations/V4__half.sql")).unwrap();
    std::fs::write(env.home.join("tenant-migrations/notes.sql"), "-- not a migration").unwrap();
    let run = env.fails(&["customer", "create", "a@example.com", "A"], 9);
    assert!(run.stderr.contains("notes.sql"), "{}", run.stderr);
    std::fs::remove_file(env.home.join("tenant-migrations/notes.sql")).unwrap();
    std::fs::remove_dir_all(env.home.join("tenant-migrations")).unwrap();
    let run = env.fails(&["customer", "create", "a@example.com", "A"], 2);
    assert!(run.stderr.contains("tenant-migrations"), "{}", run.stderr);
    assert_eq!(env.count("SELECT count(*) FROM customers"), 0);
}

#[test]
fn an_orphan_tenant_file_is_never_overwritten() {
    let env = TestEnv::initialised();
    std::fs::write(env.home.join("tenants/acme.db"), b"precious").unwrap();
    env.fails(&["customer", "create", "a@example.com", "A", "--slug", "acme"], 4);
    assert_eq!(
        std::fs::read(env.home.join("tenants/acme.db")).unwrap(),
        b"precious"
    );
    assert_eq!(env.customer("a@example.com", "A", &["Acme"])["slug"], "acme-2");
}

#[test]
fn list_filters_by_plan_status_and_search_with_a_limit() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "Ann", &["Acme", "--plan", "pro"]);
    env.customer("b@example.com", "Bob", &["Globex"]);
    env.customer("c@example.com", "Cat", &["Initech", "--plan", "pro"]);
    env.ok(&["customer", "suspend", "initech", "--reason", "unpaid"]);
    let slugs = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["customer", "list"];
        all.extend_from_slice(args);
        env.json(&all)
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["slug"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(slugs(&[]), ["acme", "globex", "initech"]);
    assert_eq!(slugs(&["--plan", "pro"]), ["acme", "initech"]);
    assert_eq!(slugs(&["--status", "suspended"]), ["initech"]);
    assert_eq!(slugs(&["--plan", "pro", "--status", "active"]), ["acme"]);
    assert_eq!(slugs(&["--search", "GLOB"]), ["globex"]);
    assert_eq!(slugs(&["--search", "b@example"]), ["globex"]);
    assert_eq!(slugs(&["--limit", "2"]), ["acme", "globex"]);
    assert!(slugs(&["--search", "nothing-matches"]).is_empty());
    env.fails(&["customer", "list", "--status", "gone"], 2);
    env.fails(&["customer", "list", "--plan", "gold"], 2);
    env.fails(&["customer", "list", "--limit", "-1"], 2);
}

#[test]
fn slugs_are_found_whatever_their_case_like_emails() {
    let env = TestEnv::initialised();
    env.customer("ops@acme.test", "Jane", &["--slug", "acme"]);
    let shown = env.json(&["customer", "show", "acme"]);
    for spelling in ["ACME", "Acme", "aCmE"] {
        assert_eq!(env.json(&["customer", "show", spelling]), shown, "{spelling}");
    }
    let site = env.json(&["site", "create", "ACME", "Shop", "--domain", "shop.acme.test"]);
    assert_eq!(site["customer_id"], shown["id"]);
    assert_eq!(env.json(&["site", "list", "Acme"]).as_array().unwrap().len(), 1);
    env.json(&["key", "create", "AcMe", "--name", "ci"]);
    assert_eq!(
        env.ok(&["db", "path", "ACME"]).stdout.trim(),
        shown["db_path"].as_str().unwrap()
    );
    env.ok(&["backup", "--customer", "ACME", "-q"]);
    assert_eq!(
        env.json(&["backup", "list", "--customer", "ACME"])
            .as_array()
            .unwrap()
            .len(),
        1,
        "backup list reads manifests, and matches slugs whatever the case too"
    );
    env.ok(&["customer", "delete", "ACME", "--confirm", "acme"]);
    env.ok(&["customer", "purge", "ACME", "--confirm", "acme"]);
    assert!(
        !env.json(&["audit", "--customer", "ACME"])
            .as_array()
            .unwrap()
            .is_empty(),
        "a purged customer's trail is found by slug in any case"
    );
}

#[test]
fn table_columns_line_up_with_wide_characters() {
    use unicode_width::UnicodeWidthStr;
    let env = TestEnv::initialised();
    env.customer(
        "a@example.com",
        "東京太郎",
        &["株式会社テスト", "--slug", "tokyo"],
    );
    env.customer("b@example.com", "Zoë 😀", &["Café ☕ Ltd", "--slug", "zoe"]);
    env.customer("c@example.com", "Bob", &["Plain Ltd", "--slug", "bob"]);
    let table = env.ok(&["customer", "list"]).stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let column_at = |line: &str, text: &str| line[..line.find(text).unwrap()].width();
    let plan_at = column_at(lines[0], "PLAN");
    for line in &lines[1..] {
        assert_eq!(column_at(line, "starter"), plan_at, "misaligned:\n{table}");
    }
}

#[test]
fn slugs_from_non_ascii_names_keep_their_letters() {
    let env = TestEnv::initialised();
    let created = env.customer("u@example.com", "U", &["Ünïcödé GmbH"]);
    assert_eq!(created["slug"], "unicode-gmbh");
    assert_eq!(created["company_name"], "Ünïcödé GmbH");
    assert!(env.home.join("tenants/unicode-gmbh.db").is_file());
    assert_eq!(
        env.customer("l@example.com", "L", &["Łódź Café"])["slug"],
        "lodz-cafe"
    );
}

#[test]
fn show_finds_by_slug_id_or_email_with_quota_and_sites() {
    let env = TestEnv::initialised();
    let created = env.customer("ops@acme.test", "Jane", &["Acme", "--plan", "pro"]);
    let by_slug = env.json(&["customer", "show", "acme"]);
    let by_id = env.json(&["customer", "show", &created["id"].to_string()]);
    let by_email = env.json(&["customer", "show", "OPS@acme.test"]);
    assert_eq!(by_slug, by_id);
    assert_eq!(by_slug, by_email);
    let mut fields: Vec<&str> = CUSTOMER_FIELDS.to_vec();
    fields.extend([
        "limits",
        "storage_bytes",
        "storage_mb",
        "quota",
        "sites_by_status",
        "sites",
        "placement",
        "move",
    ]);
    assert_fields(&by_slug, &fields);
    assert_eq!(by_slug["placement"]["engine"], "sqlite");
    assert_eq!(by_slug["placement"]["server"], "local");
    assert_eq!(by_slug["placement"]["path"], by_slug["db_path"]);
    assert_eq!(
        by_slug["limits"],
        json!({"max_sites": 10, "max_storage_mb": 10240, "max_bandwidth_gb": 100, "max_api_calls": 100000})
    );
    let quota = by_slug["quota"].as_array().unwrap();
    let resources: Vec<&str> = quota.iter().map(|q| q["resource"].as_str().unwrap()).collect();
    assert_eq!(resources, ["sites", "storage_mb", "bandwidth_mb", "api_calls"]);
    assert_fields(
        &quota[0],
        &["resource", "used", "used_bytes", "limit", "percent", "over"],
    );
    assert_eq!(quota[2]["limit"], 100 * 1024);
    assert!(by_slug["storage_bytes"].as_u64().unwrap() > 0);
    assert_eq!(by_slug["sites"], json!([]));
    let table = env.ok(&["customer", "show", "acme"]).stdout;
    assert!(
        table.contains("quota:") && table.contains("sites: none"),
        "{table}"
    );
    env.fails(&["customer", "show", "999"], 3);
    env.fails(&["customer", "show", "nobody@example.com"], 3);
}

#[test]
fn update_changes_fields_overrides_and_metadata_with_an_audit_diff() {
    let env = TestEnv::initialised();
    env.customer(
        "a@example.com",
        "Ann",
        &["Acme", "--meta", "tier=silver", "--meta", "keep=1"],
    );
    let updated = env.json(&[
        "customer",
        "update",
        "acme",
        "--email",
        "new@example.com",
        "--name",
        "Ann B",
        "--company",
        "Acme Ltd",
        "--plan",
        "enterprise",
        "--max-sites",
        "250",
        "--meta",
        "tier=gold",
        "--meta",
        "keep=",
    ]);
    assert_fields(&updated, CUSTOMER_FIELDS);
    assert_eq!(updated["email"], "new@example.com");
    assert_eq!(updated["name"], "Ann B");
    assert_eq!(updated["company_name"], "Acme Ltd");
    assert_eq!(updated["plan"], "enterprise");
    assert_eq!(updated["max_sites"], 250);
    assert_eq!(updated["metadata"], json!({"tier": "gold"}));
    assert_eq!(updated["slug"], "acme", "the slug never changes");
    let shown = env.json(&["customer", "show", "acme"]);
    assert_eq!(shown["limits"]["max_sites"], 250);
    let event = &env.json(&["audit", "--action", "customer.update"])[0];
    assert_eq!(
        event["details"]["changes"]["plan"],
        json!({"from": "starter", "to": "enterprise"})
    );
    assert_eq!(
        event["details"]["changes"]["max_sites"],
        json!({"from": null, "to": 250})
    );

    let back = env.json(&[
        "customer",
        "update",
        "acme",
        "--max-sites",
        "none",
        "--company",
        "",
    ]);
    assert_eq!(back["max_sites"], serde_json::Value::Null);
    assert_eq!(back["company_name"], serde_json::Value::Null);

    env.fails(&["customer", "update", "acme"], 2);
    env.fails(&["customer", "update", "acme", "--max-sites", "-3"], 2);
    env.fails(&["customer", "update", "acme", "--max-sites", "many"], 2);
    env.fails(&["customer", "update", "acme", "--plan", "gold"], 2);
    env.fails(&["customer", "update", "acme", "--email", "bad"], 2);
    env.customer("b@example.com", "B", &[]);
    env.fails(&["customer", "update", "acme", "--email", "b@example.com"], 4);
    env.fails(&["customer", "update", "ghost", "--name", "X"], 3);
}

#[test]
fn a_plan_change_over_quota_needs_force() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "acme", "--plan", "pro"]);
    env.ok(&[
        "plan",
        "set",
        "tiny",
        "--max-sites",
        "5",
        "--max-storage-mb",
        "0",
        "--max-bandwidth-gb",
        "1",
        "--max-api-calls",
        "10",
    ]);
    let audit = env.count("SELECT count(*) FROM audit_events");
    let run = env.fails(&["customer", "update", "acme", "--plan", "tiny"], 5);
    assert!(
        run.stderr.contains("storage_mb") && run.stderr.contains("--force"),
        "{}",
        run.stderr
    );
    env.fails(&["customer", "update", "acme", "--max-storage-mb", "0"], 5);
    assert_eq!(env.json(&["customer", "show", "acme"])["plan"], "pro");
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events"),
        audit,
        "a refusal writes nothing"
    );

    let forced = env.json(&["customer", "update", "acme", "--plan", "tiny", "--force"]);
    assert_eq!(forced["plan"], "tiny");
    let event = &env.json(&["audit", "--action", "customer.update"])[0];
    assert!(
        event["details"]["forced_over_quota"][0]
            .as_str()
            .unwrap()
            .starts_with("storage_mb")
    );
    // Raising a limit is never refused, even while over another one.
    env.ok(&["customer", "update", "acme", "--max-sites", "50"]);
}

#[test]
fn suspend_and_reactivate() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "acme"]);
    let suspended = env.json(&["customer", "suspend", "acme", "--reason", "unpaid invoice"]);
    assert_eq!(suspended["status"], "suspended");
    assert_eq!(suspended["status_reason"], "unpaid invoice");
    assert_timestamp(&suspended["suspended_at"]);
    env.fails(&["customer", "suspend", "acme", "--reason", "again"], 6);
    env.fails(&["customer", "suspend", "acme"], 2);
    let active = env.json(&["customer", "reactivate", "acme"]);
    assert_eq!(active["status"], "active");
    assert_eq!(active["status_reason"], serde_json::Value::Null);
    assert_eq!(active["suspended_at"], serde_json::Value::Null);
    env.fails(&["customer", "reactivate", "acme"], 6);
    let actions: Vec<String> = env
        .json(&["audit", "--action", "customer."])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        ["customer.reactivate", "customer.suspend", "customer.create"]
    );
}

#[test]
fn delete_is_soft_confirmed_and_reversible() {
    let env = TestEnv::initialised();
    let created = env.customer("a@example.com", "A", &["--slug", "acme"]);
    let live = env.home.join("tenants/acme.db");
    let id = created["id"].as_i64().unwrap();
    let conn = env.catalog();
    conn.execute(
        "INSERT INTO sites (customer_id, name, domain, status, created_at, updated_at) VALUES (?1, 's', 'shop.acme.test', 'deployed', 't', 't')",
        [id],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO api_keys (id, customer_id, name, secret_hash, created_at) VALUES ('k1', ?1, 'ci', 'h', 't')",
        [id],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO sessions (id, customer_id, token_hash, created_at, expires_at) VALUES ('s1', ?1, 'h', 't', '2999-01-01T00:00:00Z')",
        [id],
    )
    .unwrap();
    drop(conn);

    let missing = env.fails(&["customer", "delete", "acme"], 6);
    assert!(missing.stderr.contains("--confirm acme"), "{}", missing.stderr);
    env.fails(&["customer", "delete", "acme", "--confirm", "other"], 6);
    assert!(live.is_file());

    let deleted = env.json(&["customer", "delete", "acme", "--confirm", "acme"]);
    assert_eq!(deleted["status"], "deleted");
    assert_timestamp(&deleted["deleted_at"]);
    let trashed = env.home.join(format!("trash/acme.{id}.db"));
    assert_eq!(deleted["db_path"], trashed.to_str().unwrap());
    assert!(!live.exists() && trashed.is_file());
    assert_eq!(
        env.count("SELECT count(*) FROM sites WHERE status = 'stopped'"),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL"),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL"),
        1
    );
    assert_eq!(
        env.json(&["customer", "show", "acme"])["sites_by_status"],
        json!({"stopped": 1})
    );
    env.fails(&["customer", "delete", "acme", "--confirm", "acme"], 6);
    env.fails(&["customer", "update", "acme", "--name", "X"], 6);
    env.fails(&["customer", "suspend", "acme", "--reason", "x"], 6);
    env.fails(&["customer", "create", "b@example.com", "B", "--slug", "acme"], 4);

    let back = env.json(&["customer", "undelete", "acme"]);
    assert_eq!(back["status"], "active");
    assert_eq!(back["deleted_at"], serde_json::Value::Null);
    assert_eq!(back["db_path"], live.to_str().unwrap());
    assert!(live.is_file() && !trashed.exists());
    let tenant = rusqlite::Connection::open(&live).unwrap();
    let n: i64 = tenant
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0, "the database came back intact");
    env.fails(&["customer", "undelete", "acme"], 6);
}

#[test]
fn purge_removes_a_deleted_customer_for_good_but_keeps_the_audit_trail() {
    let env = TestEnv::initialised();
    let created = env.customer("a@example.com", "A", &["--slug", "acme"]);
    let id = created["id"].as_i64().unwrap();
    env.catalog()
        .execute(
            "INSERT INTO sites (customer_id, name, domain, created_at, updated_at) VALUES (?1, 's', 'shop.acme.test', 't', 't')",
            [id],
        )
        .unwrap();
    env.fails(&["customer", "purge", "acme", "--confirm", "acme"], 6);
    env.ok(&["customer", "delete", "acme", "--confirm", "acme"]);
    env.fails(&["customer", "purge", "acme"], 6);
    let purged = env.json(&["customer", "purge", "acme", "--confirm", "acme"]);
    assert_fields(
        &purged,
        &["id", "slug", "email", "status", "removed_db_path", "purged_at"],
    );
    assert_eq!(purged["status"], "purged");
    assert!(env.names_in(&env.home.join("trash")).is_empty());
    assert!(env.names_in(&env.home.join("tenants")).is_empty());
    env.fails(&["customer", "show", "acme"], 3);
    assert_eq!(env.count("SELECT count(*) FROM sites"), 0);
    let trail = env.json(&["audit", "--customer", &id.to_string()]);
    let actions: Vec<&str> = trail
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["customer.purge", "customer.delete", "customer.create"]);
    // The slug is free again, and the new customer gets a new id.
    let again = env.customer("a@example.com", "A", &["--slug", "acme"]);
    assert!(again["id"].as_i64().unwrap() > id);
}

#[test]
fn numeric_slugs_are_refused_so_ids_stay_unambiguous() {
    let env = TestEnv::initialised();
    let run = env.fails(&["customer", "create", "n@example.com", "N", "--slug", "2"], 2);
    assert!(run.stderr.contains("no letter"), "{}", run.stderr);
    assert_eq!(env.customer("123@example.com", "N", &[])["slug"], "customer-123");
    assert_eq!(env.customer("b@example.com", "B", &["42"])["slug"], "customer-42");
}

#[test]
fn invisible_formatting_characters_are_refused_in_names() {
    let env = TestEnv::initialised();
    env.fails(&["customer", "create", "n@example.com", "Evil\u{202e}name"], 2);
    env.fails(
        &[
            "customer",
            "create",
            "n@example.com",
            "N",
            "Zero\u{200b}Width Ltd",
        ],
        2,
    );
    assert_eq!(env.count("SELECT count(*) FROM customers"), 0);
}

#[test]
fn undelete_brings_back_a_suspension() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "acme"]);
    env.ok(&["customer", "suspend", "acme", "--reason", "unpaid"]);
    env.ok(&["customer", "delete", "acme", "--confirm", "acme"]);
    let back = env.json(&["customer", "undelete", "acme"]);
    assert_eq!(back["status"], "suspended");
    assert_eq!(back["status_reason"], "unpaid");
    assert_eq!(back["deleted_at"], serde_json::Value::Null);
    let event = &env.json(&["audit", "--action", "customer.delete"])[0];
    assert_eq!(event["details"]["status_was"], "suspended");
}

#[test]
fn a_damaged_tenant_file_can_still_be_deleted_and_undeleted() {
    let env = TestEnv::initialised();
    let created = env.customer("a@example.com", "A", &["--slug", "junk"]);
    let live = env.home.join("tenants/junk.db");
    std::fs::write(&live, b"this is not a database").unwrap();
    env.ok(&["customer", "delete", "junk", "--confirm", "junk"]);
    let trashed = env.home.join(format!("trash/junk.{}.db", created["id"]));
    assert_eq!(std::fs::read(&trashed).unwrap(), b"this is not a database");
    env.ok(&["customer", "undelete", "junk"]);
    assert_eq!(std::fs::read(&live).unwrap(), b"this is not a database");
}

#[test]
fn an_update_that_changes_nothing_writes_nothing() {
    let env = TestEnv::initialised();
    let created = env.customer("a@example.com", "Ann", &["--slug", "acme"]);
    let audit = env.count("SELECT count(*) FROM audit_events");
    let same = env.json(&["customer", "update", "acme", "--name", "Ann", "--plan", "starter"]);
    assert_eq!(same, created);
    assert_eq!(env.count("SELECT count(*) FROM audit_events"), audit);
}

#[test]
fn concurrent_creates_with_derived_slugs_all_get_one() {
    let env = TestEnv::initialised();
    let emails: Vec<String> = (0..6).map(|i| format!("c{i}@example.com")).collect();
    let runs = all_at_once(
        emails
            .iter()
            .map(|email| env.cmd(&["customer", "create", email, "C", "Globex", "--json"])),
    );
    let mut slugs: Vec<String> = runs
        .iter()
        .map(|run| {
            assert!(run.code == 0 && run.stderr.is_empty(), "{run:?}");
            run.json()["slug"].as_str().unwrap().to_string()
        })
        .collect();
    slugs.sort();
    assert_eq!(
        slugs,
        [
            "globex", "globex-2", "globex-3", "globex-4", "globex-5", "globex-6"
        ]
    );
    assert_eq!(env.names_in(&env.home.join("tenants")).len(), 6);
}
