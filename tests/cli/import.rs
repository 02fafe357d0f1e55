//! import (and migrate --from-files) of the legacy configs, and export.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::*;

fn write(dir: &Path, relative: &str, value: &Value) {
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// A legacy tree with both layouts: two inline-customer site files for one customer,
/// and a customer folder with two sites.
fn legacy_tree(env: &TestEnv) -> PathBuf {
    let dir = env.root.join("legacy");
    write(
        &dir,
        "acme-main.json",
        &json!({"siteId": "acme-main", "name": "Acme Translations", "businessType": "translation",
            "domain": "acme-translations.com", "port": 3005, "status": "deployed",
            "customer": {"email": "john@acme.test", "name": "John Doe", "company": "Acme Corp", "plan": "pro"},
            "theme": {"primary": "#0044aa"}, "pages": [{"path": "/", "title": "Home"}]}),
    );
    write(
        &dir,
        "nested/acme-blog.json",
        &json!({"site_id": "acme-blog", "name": "Acme Blog", "business_type": "blog", "domain": "blog.acme-translations.com",
            "customer": {"email": "john@acme.test", "name": "John Doe", "company": "Acme Corp", "plan": "pro"}}),
    );
    write(
        &dir,
        "globex/customer.json",
        &json!({"email": "ops@globex.test", "name": "Hank", "company_name": "Globex", "plan_type": "starter", "slug": "globex"}),
    );
    write(
        &dir,
        "globex/sites/shop.json",
        &json!({"name": "Globex Shop", "domain": "shop.globex.test", "port": 4000, "extra": {"a": 1}}),
    );
    write(
        &dir,
        "globex/sites/blog.json",
        &json!({"siteId": "g2", "name": "Globex Blog", "domain": "blog.globex.test"}),
    );
    write(&dir, "docs/readme.json", &json!({"title": "not a config"}));
    dir
}

fn actions(report: &Value) -> Vec<(String, String)> {
    report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(path: &str, action: &str) -> (String, String) {
    (path.to_string(), action.to_string())
}

#[test]
fn both_layouts_import_with_their_databases_and_whole_documents() {
    let env = TestEnv::initialised();
    let dir = legacy_tree(&env);
    let report = env.json(&["import", dir.to_str().unwrap()]);
    assert_fields(&report, &["dry_run", "written", "summary", "files"]);
    assert_fields(
        &report["files"][0],
        &["path", "action", "customer", "site", "field", "reason"],
    );
    assert_eq!(
        actions(&report),
        [
            pair("acme-main.json", "created"),
            pair("docs/readme.json", "skipped"),
            pair("globex/customer.json", "created"),
            pair("globex/sites/blog.json", "created"),
            pair("globex/sites/shop.json", "created"),
            pair("nested/acme-blog.json", "created"),
        ]
    );
    assert_eq!(
        report["summary"],
        json!({"files": 6, "created": 5, "updated": 0, "unchanged": 0, "skipped": 1, "failed": 0})
    );
    let customers = env.json(&["customer", "list"]);
    assert_eq!(customers.as_array().unwrap().len(), 2);
    let acme = env.json(&["customer", "show", "john@acme.test"]);
    assert_eq!(acme["slug"], "acme-corp");
    assert_eq!(acme["company_name"], "Acme Corp");
    assert_eq!(acme["plan"], "pro");
    assert!(Path::new(acme["db_path"].as_str().unwrap()).is_file());
    assert_eq!(acme["schema_version"], 3);
    let site = env.json(&["site", "show", "acme-translations.com"]);
    assert_eq!(site["port"], 3005);
    assert_eq!(site["status"], "deployed");
    assert_eq!(site["business_type"], "translation");
    assert_eq!(
        site["config"]["theme"],
        json!({"primary": "#0044aa"}),
        "unknown keys are kept"
    );
    assert_eq!(site["config"]["siteId"], "acme-main");
    assert_eq!(
        env.json(&["site", "show", "blog.acme-translations.com"])["business_type"],
        "blog"
    );
    let shop = env.json(&["site", "show", "shop.globex.test"]);
    assert_eq!(shop["customer_slug"], "globex");
    assert_eq!(shop["config"]["extra"], json!({"a": 1}));
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE details LIKE '%\"import\"%'"),
        6
    );
}

#[test]
fn a_second_import_changes_nothing_and_a_changed_file_updates_its_site() {
    let env = TestEnv::initialised();
    let dir = legacy_tree(&env);
    env.ok(&["import", dir.to_str().unwrap()]);
    let audit = env.count("SELECT count(*) FROM audit_events");
    let again = env.json(&["import", dir.to_str().unwrap()]);
    assert_eq!(again["written"], false);
    assert_eq!(again["summary"]["unchanged"], 5);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events"),
        audit,
        "no audit events either"
    );

    write(
        &dir,
        "globex/sites/shop.json",
        &json!({"name": "Globex Store", "domain": "shop.globex.test", "port": 4001, "extra": {"a": 2}}),
    );
    let changed = env.json(&["import", dir.to_str().unwrap()]);
    assert_eq!(changed["summary"]["updated"], 1);
    let shop = env.json(&["site", "show", "shop.globex.test"]);
    assert_eq!(shop["name"], "Globex Store");
    assert_eq!(shop["port"], 4001);
    let snapshots = env.json(&["site", "snapshots", "shop.globex.test"]);
    assert_eq!(snapshots[0]["kind"], "import");
    assert_eq!(
        snapshots[0]["config"]["extra"],
        json!({"a": 1}),
        "the snapshot holds the old config"
    );
}

#[test]
fn an_import_audits_each_customer_and_site_it_writes_in_file_order() {
    let env = TestEnv::initialised();
    let dir = legacy_tree(&env);
    let tree = dir.to_str().unwrap();
    env.cmd(&["import", tree]).json();
    let events = |action: &str| -> Vec<Value> {
        let mut found = env
            .json(&["audit", "--action", action])
            .as_array()
            .unwrap()
            .clone();
        found.reverse(); // oldest first
        found
    };
    let created = events("site.create");
    let summary: Vec<(String, String, Value)> = created
        .iter()
        .map(|e| {
            (
                e["target"].as_str().unwrap().to_string(),
                e["details"]["file"].as_str().unwrap().to_string(),
                e["details"]["legacy_id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "acme-translations.com".to_string(),
                "acme-main.json".to_string(),
                json!("acme-main")
            ),
            (
                "blog.globex.test".to_string(),
                "globex/sites/blog.json".to_string(),
                json!("g2")
            ),
            (
                "shop.globex.test".to_string(),
                "globex/sites/shop.json".to_string(),
                Value::Null
            ),
            (
                "blog.acme-translations.com".to_string(),
                "nested/acme-blog.json".to_string(),
                json!("acme-blog")
            ),
        ]
    );
    let acme = env.json(&["customer", "show", "john@acme.test"]);
    assert_eq!(created[0]["customer_id"], acme["id"], "{}", created[0]);
    assert_eq!(
        events("customer.create")
            .iter()
            .map(|e| (
                e["target"].as_str().unwrap(),
                e["details"]["plan"].as_str().unwrap()
            ))
            .collect::<Vec<_>>(),
        [("acme-corp", "pro"), ("globex", "starter")]
    );

    // A changed file: its site is updated, its old config kept, and the event says so.
    write(
        &dir,
        "globex/sites/blog.json",
        &json!({"siteId": "g2", "name": "Globex Blog", "domain": "news.globex.test"}),
    );
    env.cmd(&["import", tree]).json();
    let updated = events("site.update");
    assert_eq!(updated.len(), 1, "{updated:?}");
    let details = &updated[0]["details"];
    assert_eq!(updated[0]["target"], "news.globex.test");
    assert_eq!(details["file"], "globex/sites/blog.json");
    assert_eq!(
        details["domain"],
        json!({"from": "blog.globex.test", "to": "news.globex.test"})
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM snapshots WHERE id = {}",
            details["snapshot_id"]
        )),
        1
    );
    assert_eq!(events("site.create").len(), 4, "nothing created again");
}

#[test]
fn one_bad_file_writes_nothing_unless_asked_to_go_on() {
    let env = TestEnv::initialised();
    let dir = legacy_tree(&env);
    write(
        &dir,
        "bad.json",
        &json!({"name": "Bad", "domain": "not a domain", "customer": {"email": "x@y.test"}}),
    );
    let run = env.run(&["import", dir.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 9, "{run:?}");
    let report = run.json();
    assert_eq!(report["written"], false);
    let bad = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "bad.json")
        .unwrap()
        .clone();
    assert_eq!(
        (bad["action"].as_str(), bad["field"].as_str()),
        (Some("failed"), Some("domain"))
    );
    assert!(bad["reason"].as_str().unwrap().contains("not a domain"));
    assert_eq!(env.count("SELECT count(*) FROM customers"), 0);
    assert_eq!(env.count("SELECT count(*) FROM sites"), 0);
    assert!(
        env.names_in(&env.home.join("tenants")).is_empty(),
        "no tenant files either"
    );

    let dry = env.run(&[
        "import",
        dir.to_str().unwrap(),
        "--dry-run",
        "--continue-on-error",
        "--json",
    ]);
    assert_eq!(dry.code, 8, "a dry run exits as the real run would");
    assert_eq!(dry.json()["written"], false);
    assert_eq!(env.count("SELECT count(*) FROM customers"), 0);

    let run = env.run(&[
        "migrate",
        "--from-files",
        dir.to_str().unwrap(),
        "--continue-on-error",
        "--json",
    ]);
    assert_eq!(run.code, 8, "{run:?}");
    assert_eq!(run.json()["written"], true);
    assert_eq!(env.count("SELECT count(*) FROM customers"), 2);
    assert_eq!(env.count("SELECT count(*) FROM sites"), 4);
}

#[test]
fn every_kind_of_invalid_file_is_reported_with_its_field() {
    let env = TestEnv::initialised();
    env.customer("other@example.com", "Other", &["--slug", "other"]);
    env.ok(&[
        "site",
        "create",
        "other",
        "Taken",
        "--domain",
        "taken.test",
        "--port",
        "5000",
    ]);
    let dir = env.root.join("bad");
    let customer = json!({"email": "a@b.test"});
    let site = |extra: Value| {
        let mut doc = json!({"name": "S", "domain": "s.test", "customer": customer});
        for (k, v) in extra.as_object().unwrap() {
            doc[k] = v.clone();
        }
        doc
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("not-json.json"), b"{not json").unwrap();
    write(&dir, "not-object.json", &json!([1, 2, 3]));
    write(
        &dir,
        "no-name.json",
        &json!({"domain": "n.test", "customer": customer}),
    );
    write(
        &dir,
        "no-domain.json",
        &json!({"siteId": "x", "name": "S", "customer": customer}),
    );
    write(
        &dir,
        "no-email.json",
        &json!({"name": "S", "domain": "e.test", "customer": {"name": "A"}}),
    );
    write(
        &dir,
        "wrong-type.json",
        &site(json!({"domain": "w.test", "port": "3005"})),
    );
    write(&dir, "bad-domain.json", &site(json!({"domain": "bad_domain"})));
    write(
        &dir,
        "bad-port.json",
        &site(json!({"domain": "p.test", "port": 99999})),
    );
    write(
        &dir,
        "bad-email.json",
        &site(json!({"domain": "m.test", "customer": {"email": "not-an-email"}})),
    );
    write(
        &dir,
        "bad-plan.json",
        &site(json!({"domain": "q.test", "customer": {"email": "plan@b.test", "plan": "gold"}})),
    );
    write(&dir, "dup-1.json", &site(json!({"domain": "dup.test"})));
    write(&dir, "dup-2.json", &site(json!({"domain": "dup.test"})));
    write(&dir, "taken-domain.json", &site(json!({"domain": "taken.test"})));
    write(
        &dir,
        "taken-port.json",
        &site(json!({"domain": "tp.test", "port": 5000})),
    );
    write(
        &dir,
        "evil/customer.json",
        &json!({"email": "evil@b.test", "slug": "../../etc"}),
    );
    std::fs::write(dir.join("huge.json"), vec![b' '; 1024 * 1024 + 1]).unwrap();
    let outside = env.root.join("outside.json");
    write(
        &env.root,
        "outside.json",
        &site(json!({"domain": "outside.test"})),
    );
    std::os::unix::fs::symlink(&outside, dir.join("escape.json")).unwrap();
    let fifo = dir.join("pipe.json");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );

    let run = env.run(&["import", dir.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 9, "{run:?}");
    let report = run.json();
    let failures: Vec<(String, String)> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["action"] == "failed")
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("bad-domain.json", "domain"),
        ("bad-email.json", "customer.email"),
        ("bad-plan.json", "plan"),
        ("bad-port.json", "port"),
        ("dup-2.json", "domain"),
        ("escape.json", "file"),
        ("evil/customer.json", "slug"),
        ("huge.json", "file"),
        ("no-domain.json", "domain"),
        ("no-email.json", "customer.email"),
        ("no-name.json", "name"),
        ("not-json.json", "file"),
        ("not-object.json", "file"),
        ("pipe.json", "file"),
        ("taken-domain.json", "domain"),
        ("taken-port.json", "port"),
        ("wrong-type.json", "port"),
    ];
    for (path, field) in expected {
        assert!(
            failures.contains(&(path.to_string(), field.to_string())),
            "{path} should fail on {field}: {failures:?}"
        );
    }
    assert_eq!(
        env.count("SELECT count(*) FROM customers"),
        1,
        "nothing was written"
    );
    assert_eq!(env.names_in(&env.home.join("tenants")), ["other.db"]);
}

#[test]
fn an_export_imports_back_to_the_same_catalog() {
    let env = TestEnv::initialised();
    let dir = legacy_tree(&env);
    env.ok(&["import", dir.to_str().unwrap()]);
    env.ok(&[
        "site",
        "update",
        "shop.globex.test",
        "--port",
        "4100",
        "--name",
        "Globex Store",
    ]);
    let out = env.root.join("export");
    let exported = env.json(&["export", out.to_str().unwrap()]);
    assert_eq!(
        exported,
        json!({"dir": out.to_str().unwrap(), "plans": 3, "customers": 2, "sites": 4})
    );
    assert!(
        out.join("globex/customer.json").is_file()
            && out.join("globex/sites/shop.globex.test.json").is_file()
    );

    let again = env.json(&["import", out.to_str().unwrap()]);
    assert_eq!(again["written"], false, "{again}");
    assert_eq!(again["summary"]["unchanged"], 7, "six configs and plans.json");

    let fresh = TestEnv::initialised();
    fresh.ok(&["import", out.to_str().unwrap()]);
    let view = |env: &TestEnv| -> (Value, Value) {
        let customers: Vec<Value> = env
            .json(&["customer", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|c| json!({"slug": c["slug"], "email": c["email"], "name": c["name"], "company": c["company_name"], "plan": c["plan"]}))
            .collect();
        let sites: Vec<Value> = env
            .json(&["site", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|s| json!({"customer": s["customer_slug"], "name": s["name"], "domain": s["domain"], "port": s["port"],
                "business_type": s["business_type"], "status": s["status"], "config": s["config"]}))
            .collect();
        let mut sorted = sites;
        sorted.sort_by_key(|s| s["domain"].as_str().unwrap().to_string());
        let mut customers = customers;
        customers.sort_by_key(|c| c["slug"].as_str().unwrap().to_string());
        (Value::Array(customers), Value::Array(sorted))
    };
    assert_eq!(view(&fresh), view(&env));
}

#[test]
fn import_refuses_a_missing_folder_and_an_unknown_default_plan() {
    let env = TestEnv::initialised();
    env.fails(&["import", "/no/such/folder"], 2);
    let dir = legacy_tree(&env);
    env.fails(&["import", dir.to_str().unwrap(), "--plan", "gold"], 2);
}

#[test]
fn a_file_with_a_utf8_byte_order_mark_imports() {
    let env = TestEnv::initialised();
    let dir = env.root.join("bom");
    std::fs::create_dir_all(dir.join("acme/sites")).unwrap();
    let with_bom = |value: Value| {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend(serde_json::to_vec_pretty(&value).unwrap());
        bytes
    };
    std::fs::write(
        dir.join("acme/customer.json"),
        with_bom(json!({"email": "ops@acme.test", "name": "Ops", "slug": "acme"})),
    )
    .unwrap();
    std::fs::write(
        dir.join("acme/sites/main.json"),
        with_bom(json!({"name": "Main", "domain": "main.acme.test"})),
    )
    .unwrap();
    std::fs::write(
        dir.join("inline.json"),
        with_bom(json!({"name": "Other", "domain": "other.test", "customer": {"email": "o@other.test"}})),
    )
    .unwrap();
    let report = env.json(&["import", dir.to_str().unwrap()]);
    assert_eq!(
        actions(&report),
        [
            pair("acme/customer.json", "created"),
            pair("acme/sites/main.json", "created"),
            pair("inline.json", "created"),
        ]
    );
    assert_eq!(
        env.json(&["site", "show", "main.acme.test"])["customer_slug"],
        "acme"
    );
}

fn failure<'a>(report: &'a Value, path: &str) -> (&'a str, &'a str, &'a str) {
    let file = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("no {path} in {report}"));
    (
        file["action"].as_str().unwrap(),
        file["field"].as_str().unwrap_or(""),
        file["reason"].as_str().unwrap_or(""),
    )
}

#[test]
fn import_obeys_max_sites_like_site_create() {
    let env = TestEnv::initialised();
    let dir = env.root.join("legacy");
    write(
        &dir,
        "acme/customer.json",
        &json!({"email": "ops@acme.test", "slug": "acme", "plan_type": "starter"}),
    );
    for n in 1..=5 {
        write(
            &dir,
            &format!("acme/sites/s{n}.json"),
            &json!({"name": format!("S{n}"), "domain": format!("s{n}.acme.test")}),
        );
    }
    let run = env.run(&["import", dir.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 9, "{run:?}");
    let report = run.json();
    for path in ["acme/sites/s1.json", "acme/sites/s2.json", "acme/sites/s3.json"] {
        assert_eq!(failure(&report, path).0, "created", "{report}");
    }
    for path in ["acme/sites/s4.json", "acme/sites/s5.json"] {
        let (action, field, reason) = failure(&report, path);
        assert_eq!((action, field), ("failed", "max_sites"), "{report}");
        assert!(reason.contains("may have 3 sites (plan starter)"), "{reason}");
    }
    assert_eq!(env.count("SELECT count(*) FROM customers"), 0, "nothing written");

    // Going on imports the sites the plan allows, and the catalog's sites count too.
    let run = env.run(&["import", dir.to_str().unwrap(), "--continue-on-error", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    assert_eq!(env.count("SELECT count(*) FROM sites"), 3);
    write(
        &dir,
        "acme/sites/s4.json",
        &json!({"name": "S4", "domain": "s4.acme.test", "siteId": "four"}),
    );
    let again = env.run(&["import", dir.to_str().unwrap(), "--json"]);
    assert_eq!(again.code, 9, "{again:?}");
    assert_eq!(failure(&again.json(), "acme/sites/s4.json").1, "max_sites");
}

#[test]
fn import_applies_the_plan_change_guard_and_reports_customer_changes_as_updates() {
    let env = TestEnv::initialised();
    env.customer("ops@acme.test", "Ops", &["--slug", "acme", "--plan", "pro"]);
    for n in 1..=4 {
        env.ok(&[
            "site",
            "create",
            "acme",
            "S",
            "--domain",
            &format!("s{n}.acme.test"),
        ]);
    }
    let dir = env.root.join("legacy");
    // A new site whose inline customer moves acme to starter (3 sites): over quota.
    write(
        &dir,
        "new-site.json",
        &json!({"name": "New", "domain": "new.acme.test",
                "customer": {"email": "ops@acme.test", "name": "Ops Team", "plan": "starter"}}),
    );
    let audit = env.count("SELECT count(*) FROM audit_events");
    let run = env.run(&["import", dir.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 9, "{run:?}");
    let report = run.json();
    let (action, field, reason) = failure(&report, "new-site.json");
    assert_eq!((action, field), ("failed", "plan"), "{report}");
    assert!(
        reason.contains("acme") && reason.contains("sites 4 > 3"),
        "{reason}"
    );
    assert_eq!(env.json(&["customer", "show", "acme"])["plan"], "pro");
    assert_eq!(env.count("SELECT count(*) FROM audit_events"), audit);

    // A change within the limits is written, and the file that made it says `updated`.
    write(
        &dir,
        "new-site.json",
        &json!({"name": "New", "domain": "new.acme.test",
                "customer": {"email": "ops@acme.test", "name": "Ops Team", "plan": "enterprise"}}),
    );
    let report = env.json(&["import", dir.to_str().unwrap()]);
    assert_eq!(failure(&report, "new-site.json").0, "updated", "{report}");
    let acme = env.json(&["customer", "show", "acme"]);
    assert_eq!(
        (&acme["plan"], &acme["name"]),
        (&json!("enterprise"), &json!("Ops Team"))
    );
    assert_eq!(acme["sites"].as_array().unwrap().len(), 5);
}

#[test]
fn a_site_id_is_the_identity_of_a_site_across_domain_changes() {
    let env = TestEnv::initialised();
    let dir = env.root.join("legacy");
    let site = |domain: &str| {
        json!({"siteId": "acme-main", "name": "Acme", "domain": domain, "theme": "dark",
               "customer": {"email": "ops@acme.test", "slug": "acme"}})
    };
    write(&dir, "acme.json", &site("acme.test"));
    env.ok(&["import", dir.to_str().unwrap()]);
    let before = env.json(&["site", "show", "acme.test"]);
    assert_eq!(before["legacy_id"], "acme-main");

    write(&dir, "acme.json", &site("acme-translations.test"));
    let report = env.json(&["import", dir.to_str().unwrap()]);
    assert_eq!(failure(&report, "acme.json").0, "updated", "{report}");
    assert_eq!(env.count("SELECT count(*) FROM sites"), 1, "no second site");
    let after = env.json(&["site", "show", "acme-translations.test"]);
    assert_eq!(after["id"], before["id"]);
    env.fails(&["site", "show", "acme.test"], 3);
    assert_eq!(
        env.json(&["site", "snapshots", "acme-translations.test"])[0]["kind"],
        "import"
    );
    // site_id in snake case names the same site: nothing changes.
    let mut snake = site("acme-translations.test");
    let id = snake.as_object_mut().unwrap().remove("siteId").unwrap();
    snake["site_id"] = id;
    write(&dir, "acme.json", &snake);
    let report = env.json(&["import", dir.to_str().unwrap()]);
    assert_eq!(failure(&report, "acme.json").0, "unchanged", "{report}");
    assert_eq!(env.count("SELECT count(*) FROM sites"), 1);

    // Another siteId may not take a domain that a site with an id holds.
    write(
        &dir,
        "other.json",
        &json!({"siteId": "other", "name": "O", "domain": "acme-translations.test",
                "customer": {"email": "ops@acme.test", "slug": "acme"}}),
    );
    let run = env.run(&["import", dir.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 9, "{run:?}");
    assert_eq!(failure(&run.json(), "other.json").1, "domain");
    std::fs::remove_file(dir.join("other.json")).unwrap();

    // Without a siteId the domain is the identity, as before.
    env.ok(&["site", "create", "acme", "Plain", "--domain", "plain.acme.test"]);
    write(
        &dir,
        "plain.json",
        &json!({"name": "Plain Site", "domain": "plain.acme.test", "customer": {"email": "ops@acme.test", "slug": "acme"}}),
    );
    let report = env.json(&["import", dir.to_str().unwrap()]);
    assert_eq!(failure(&report, "plain.json").0, "updated", "{report}");
    assert_eq!(env.count("SELECT count(*) FROM sites"), 2);
    assert_eq!(
        env.json(&["site", "show", "plain.acme.test"])["name"],
        "Plain Site"
    );
}

/// A home with what the CLI can give customers and sites, and an imported tree.
fn varied_home() -> TestEnv {
    let env = TestEnv::initialised();
    let dir = legacy_tree(&env);
    env.ok(&["import", dir.to_str().unwrap()]);
    env.customer(
        "ops@initech.test",
        "Bill",
        &[
            "Initech",
            "--plan",
            "pro",
            "--meta",
            "tier=gold",
            "--meta",
            "region=eu",
        ],
    );
    env.ok(&[
        "customer",
        "update",
        "initech",
        "--max-sites",
        "7",
        "--max-api-calls",
        "0",
    ]);
    env.customer("late@payer.test", "Late", &["--slug", "late-payer"]);
    env.ok(&[
        "site",
        "create",
        "late-payer",
        "Bare",
        "--domain",
        "bare.payer.test",
    ]);
    env.ok(&["customer", "suspend", "late-payer", "--reason", "unpaid invoice"]);
    env.customer("gone@example.test", "Gone", &["--slug", "gone"]);
    env.ok(&["customer", "delete", "gone", "--confirm", "gone"]);
    let config = env.root.join("config.json");
    std::fs::write(
        &config,
        br##"{"theme": {"primary": "#112233"}, "pages": [{"path": "/"}]}"##,
    )
    .unwrap();
    env.ok(&[
        "site",
        "create",
        "initech",
        "Portal",
        "--domain",
        "portal.initech.test",
        "--port",
        "8080",
        "--business-type",
        "software",
        "--config",
        config.to_str().unwrap(),
    ]);
    env.ok(&["site", "deploy", "portal.initech.test"]);
    env.ok(&["site", "create", "initech", "Old", "--domain", "old.initech.test"]);
    env.ok(&["site", "update", "old.initech.test", "--status", "stopped"]);
    env
}

fn customers_as_exported(env: &TestEnv) -> Vec<Value> {
    let mut list: Vec<Value> = env
        .json(&["customer", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "deleted")
        .map(|c| {
            let keys = [
                "email",
                "slug",
                "name",
                "company_name",
                "plan",
                "status",
                "status_reason",
                "max_sites",
                "max_storage_mb",
                "max_bandwidth_gb",
                "max_api_calls",
                "metadata",
            ];
            Value::Object(keys.iter().map(|k| (k.to_string(), c[*k].clone())).collect())
        })
        .collect();
    list.sort_by_key(|c| c["slug"].as_str().unwrap().to_string());
    list
}

fn sites_as_exported(env: &TestEnv) -> Vec<Value> {
    let mut list: Vec<Value> = env
        .json(&["site", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let keys = [
                "customer_slug",
                "domain",
                "name",
                "port",
                "business_type",
                "status",
                "config",
                "legacy_id",
            ];
            Value::Object(keys.iter().map(|k| (k.to_string(), s[*k].clone())).collect())
        })
        .collect();
    list.sort_by_key(|s| s["domain"].as_str().unwrap().to_string());
    list
}

fn plans_as_listed(env: &TestEnv) -> Vec<Value> {
    env.json(&["plan", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let keys = [
                "name",
                "max_sites",
                "max_storage_mb",
                "max_bandwidth_gb",
                "max_api_calls",
                "builtin",
            ];
            Value::Object(keys.iter().map(|k| (k.to_string(), p[*k].clone())).collect())
        })
        .collect()
}

#[test]
fn an_export_writes_every_column_and_imports_into_a_fresh_home_exactly() {
    let env = varied_home();
    // A plan of the operator's own, a customer on it, and a built-in plan changed.
    env.ok(&[
        "plan",
        "set",
        "small",
        "--max-sites",
        "2",
        "--max-storage-mb",
        "64",
        "--max-bandwidth-gb",
        "3",
        "--max-api-calls",
        "500",
    ]);
    env.ok(&["plan", "set", "pro", "--max-api-calls", "123456"]);
    env.customer("tiny@small.test", "Tiny", &["--plan", "small", "--slug", "tiny"]);
    let out = env.root.join("export");
    let exported = env.json(&["export", out.to_str().unwrap()]);
    assert_eq!(exported["customers"], 5, "the deleted customer is left out");
    assert_eq!(exported["sites"], 7);
    assert_eq!(exported["plans"], 4);
    let plans: Value = serde_json::from_slice(&std::fs::read(out.join("plans.json")).unwrap()).unwrap();
    assert!(
        plans["plans"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "small", "max_sites": 2,
            "max_storage_mb": 64, "max_bandwidth_gb": 3, "max_api_calls": 500})),
        "{plans}"
    );
    let portal: Value =
        serde_json::from_slice(&std::fs::read(out.join("initech/sites/portal.initech.test.json")).unwrap())
            .unwrap();
    assert_eq!(
        (&portal["port"], &portal["businessType"], &portal["status"]),
        (&json!(8080), &json!("software"), &json!("deployed")),
        "{portal}"
    );
    let initech: Value =
        serde_json::from_slice(&std::fs::read(out.join("initech/customer.json")).unwrap()).unwrap();
    assert_eq!(initech["max_sites"], 7);
    assert_eq!(initech["metadata"], json!({"region": "eu", "tier": "gold"}));

    let again = env.json(&["import", out.to_str().unwrap()]);
    assert_eq!(again["written"], false, "{again}");
    assert_eq!(again["summary"]["unchanged"], 13);
    assert_eq!(failure(&again, "plans.json").0, "unchanged");

    let fresh = TestEnv::initialised();
    let imported = fresh.json(&["import", out.to_str().unwrap()]);
    assert_eq!(
        failure(&imported, "plans.json").0,
        "updated",
        "pro changed, small created"
    );
    assert_eq!(plans_as_listed(&fresh), plans_as_listed(&env));
    let (want, got) = (customers_as_exported(&env), customers_as_exported(&fresh));
    assert_eq!(got.len(), want.len());
    for (want, got) in want.iter().zip(&got) {
        for (field, value) in want.as_object().unwrap() {
            assert_eq!(&got[field], value, "customer {} field {field}", want["slug"]);
        }
    }
    let (want, got) = (sites_as_exported(&env), sites_as_exported(&fresh));
    assert_eq!(got.len(), want.len());
    for (want, got) in want.iter().zip(&got) {
        for (field, value) in want.as_object().unwrap() {
            assert_eq!(&got[field], value, "site {} field {field}", want["domain"]);
        }
    }
    // And the fresh home exports to the same files.
    let out2 = fresh.root.join("export");
    fresh.ok(&["export", out2.to_str().unwrap()]);
    for file in [
        "plans.json",
        "tiny/customer.json",
        "initech/customer.json",
        "initech/sites/portal.initech.test.json",
        "late-payer/sites/bare.payer.test.json",
        "acme-corp/sites/acme-translations.com.json",
    ] {
        assert_eq!(
            std::fs::read(out.join(file)).unwrap(),
            std::fs::read(out2.join(file)).unwrap(),
            "{file}"
        );
    }
}

#[test]
fn export_refuses_a_full_folder_unless_forced_and_never_follows_symlinks() {
    let env = varied_home();
    let out = env.root.join("export");
    env.ok(&["export", out.to_str().unwrap()]);
    let refused = env.fails(&["export", out.to_str().unwrap()], 6);
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);

    // A site deleted since, and a symlink planted where export will write.
    env.ok(&[
        "site",
        "delete",
        "old.initech.test",
        "--confirm",
        "old.initech.test",
    ]);
    let outside = env.root.join("outside.json");
    std::fs::write(&outside, b"untouched").unwrap();
    std::fs::remove_file(out.join("initech/sites/portal.initech.test.json")).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("initech/sites/portal.initech.test.json")).unwrap();
    std::os::unix::fs::symlink(env.root.join("elsewhere"), out.join("initech/linked")).unwrap();

    let forced = env.json(&["export", out.to_str().unwrap(), "--force"]);
    assert_eq!(forced["sites"], 6);
    assert_eq!(std::fs::read(&outside).unwrap(), b"untouched");
    let portal = out.join("initech/sites/portal.initech.test.json");
    assert!(
        !std::fs::symlink_metadata(&portal)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(mode(&portal), 0o600);
    assert!(
        !out.join("initech/sites/old.initech.test.json").exists(),
        "no stale file"
    );
    assert!(std::fs::symlink_metadata(out.join("initech/linked")).is_err());
    assert_eq!(
        env.names_in(&env.root)
            .iter()
            .filter(|n| n.starts_with('.'))
            .count(),
        0,
        "no fresh or old tree is left beside it"
    );

    // Re-importing the forced export does not bring the deleted site back.
    let fresh = TestEnv::initialised();
    fresh.ok(&["import", out.to_str().unwrap()]);
    fresh.fails(&["site", "show", "old.initech.test"], 3);

    let link = env.root.join("export-link");
    std::os::unix::fs::symlink(env.root.join("target"), &link).unwrap();
    std::fs::create_dir(env.root.join("target")).unwrap();
    env.fails(&["export", link.to_str().unwrap(), "--force"], 6);
    assert!(env.names_in(&env.root.join("target")).is_empty());
    let empty = env.root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    env.ok(&["export", empty.to_str().unwrap()]);
    assert!(empty.join("initech/customer.json").is_file());
}

fn plans_file(plans: Value) -> Value {
    json!({ "plans": plans })
}

fn plan_values(name: &str, max_sites: Value) -> Value {
    json!({"name": name, "max_sites": max_sites, "max_storage_mb": 100,
           "max_bandwidth_gb": 10, "max_api_calls": 1000})
}

#[test]
fn a_plans_file_creates_and_changes_plans_with_the_guard_of_plan_set() {
    let env = TestEnv::initialised();
    env.ok(&[
        "plan",
        "set",
        "small",
        "--max-sites",
        "2",
        "--max-storage-mb",
        "100",
        "--max-bandwidth-gb",
        "10",
        "--max-api-calls",
        "1000",
    ]);
    env.customer("two@sites.test", "Two", &["--plan", "small", "--slug", "two"]);
    for domain in ["a.two.test", "b.two.test"] {
        env.ok(&["site", "create", "two", "Site", "--domain", domain]);
    }
    let site = json!({"name": "Big Site", "domain": "big.test",
                      "customer": {"email": "big@big.test", "plan": "big"}});

    // Lowering small under what `two` uses is refused, as `plan set` refuses it.
    let dir = env.root.join("lowered");
    write(
        &dir,
        "plans.json",
        &plans_file(json!([
            plan_values("big", json!(9)),
            plan_values("small", json!(1))
        ])),
    );
    write(&dir, "big.json", &site);
    let run = env.run(&["import", dir.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 9, "{run:?}");
    let report = run.json();
    let (action, field, reason) = failure(&report, "plans.json");
    assert_eq!((action, field), ("failed", "plans[1]"), "{report}");
    assert!(
        reason.contains("over quota") && reason.contains("two"),
        "{reason}"
    );
    assert_eq!(failure(&report, "big.json").0, "failed", "plan big was not made");
    assert_eq!(env.count("SELECT count(*) FROM plans WHERE name = 'big'"), 0);
    assert_eq!(env.count("SELECT max_sites FROM plans WHERE name = 'small'"), 2);

    // A value of the wrong type makes the file invalid, with its field.
    let dir = env.root.join("invalid");
    write(
        &dir,
        "plans.json",
        &plans_file(json!([plan_values("big", json!("many"))])),
    );
    let run = env.run(&["import", dir.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 9, "{run:?}");
    let report = run.json();
    let (action, field, reason) = failure(&report, "plans.json");
    assert_eq!((action, field), ("failed", "plans[0].max_sites"));
    assert!(reason.contains("must be a number"), "{reason}");

    // A dry run says what it would do and writes no plan; the real run creates it.
    let dir = env.root.join("good");
    write(
        &dir,
        "plans.json",
        &plans_file(json!([
            plan_values("big", json!(9)),
            plan_values("small", json!(3))
        ])),
    );
    write(&dir, "big.json", &site);
    let dry = env.json(&["import", dir.to_str().unwrap(), "--dry-run"]);
    assert_eq!(failure(&dry, "plans.json").0, "updated", "{dry}");
    assert_eq!(failure(&dry, "big.json").0, "created", "{dry}");
    assert_eq!(env.count("SELECT count(*) FROM plans WHERE name = 'big'"), 0);
    assert_eq!(env.count("SELECT max_sites FROM plans WHERE name = 'small'"), 2);
    env.json(&["import", dir.to_str().unwrap()]);
    assert_eq!(env.count("SELECT max_sites FROM plans WHERE name = 'big'"), 9);
    assert_eq!(env.count("SELECT max_sites FROM plans WHERE name = 'small'"), 3);
    assert_eq!(env.json(&["customer", "show", "big@big.test"])["plan"], "big");
    let events = env.json(&["audit", "--action", "plan."]);
    let from_import: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["details"]["source"] == "import")
        .collect();
    assert_eq!(from_import.len(), 2, "{events}");

    // A legacy tree's own plans.json without a plans list is skipped, as before.
    let legacy = env.root.join("legacy");
    write(&legacy, "plans.json", &json!({"pricing": "see wiki"}));
    let report = env.json(&["import", legacy.to_str().unwrap()]);
    assert_eq!(failure(&report, "plans.json").0, "skipped");
}
