//! site create, list, show, update, delete, deploy, deployments, rollback, snapshots.

use std::process::Stdio;

use serde_json::{Value, json};

use crate::support::*;

const SITE_FIELDS: &[&str] = &[
    "id",
    "customer_id",
    "customer_slug",
    "name",
    "domain",
    "port",
    "business_type",
    "status",
    "config",
    "created_at",
    "updated_at",
    "deployed_at",
    "legacy_id",
];
const DEPLOYMENT_FIELDS: &[&str] = &[
    "id",
    "site_id",
    "number",
    "port",
    "status",
    "log",
    "actor",
    "created_at",
    "config",
];
const SNAPSHOT_FIELDS: &[&str] = &["id", "site_id", "kind", "name", "actor", "created_at", "config"];

fn with_customer() -> TestEnv {
    let env = TestEnv::initialised();
    env.customer("ops@acme.test", "Jane", &["Acme"]);
    env
}

/// Acme with site S on port 3000 and site T on port 3001.
fn with_two_sites() -> TestEnv {
    let env = with_customer();
    for (name, domain, port) in [("S", "s.acme.test", "3000"), ("T", "t.acme.test", "3001")] {
        env.json(&["site", "create", "acme", name, "--domain", domain, "--port", port]);
    }
    env
}

fn snapshot_kinds(env: &TestEnv, site: &str) -> Vec<String> {
    env.json(&["site", "snapshots", site])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn create_records_the_site_with_its_config() {
    let env = with_customer();
    let config = env.root.join("site.json");
    std::fs::write(
        &config,
        r##"{"theme": {"primary": "#0044aa"}, "pages": [{"path": "/"}]}"##,
    )
    .unwrap();
    let site = env.json(&[
        "site",
        "create",
        "acme",
        "Acme Shop",
        "--domain",
        "Shop.Acme.TEST.",
        "--port",
        "3005",
        "--business-type",
        "shop",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_fields(&site, SITE_FIELDS);
    assert_eq!(site["domain"], "shop.acme.test");
    assert_eq!(site["port"], 3005);
    assert_eq!(site["status"], "draft");
    assert_eq!(site["customer_slug"], "acme");
    assert_eq!(
        site["config"],
        json!({"theme": {"primary": "#0044aa"}, "pages": [{"path": "/"}]})
    );
    assert_timestamp(&site["created_at"]);
    assert_eq!(site["deployed_at"], Value::Null);

    let from_stdin = env
        .cmd(&[
            "create-site",
            "acme",
            "Blog",
            "--domain",
            "blog.acme.test",
            "--config",
            "-",
        ])
        .stdin(r#"{"a": 1}"#)
        .json();
    assert_eq!(from_stdin["config"], json!({"a": 1}));
    let audit = env.json(&["audit", "--action", "site.create"]);
    assert_eq!(audit.as_array().unwrap().len(), 2);
    assert_eq!(audit[0]["target"], "blog.acme.test");
}

#[test]
fn default_domain_comes_from_the_platform_domain() {
    let env = with_customer();
    let run = env.fails(&["site", "create", "acme", "Shop"], 2);
    assert!(run.stderr.contains("platform_domain"), "{}", run.stderr);
    env.ok(&["config", "set", "platform_domain", "example.com"]);
    let site = env.json(&["site", "create", "acme", "My Shop"]);
    assert_eq!(site["domain"], "my-shop.acme.example.com");
}

#[test]
fn refusals_write_nothing_and_use_their_exit_codes() {
    let env = with_customer();
    env.json(&[
        "site",
        "create",
        "acme",
        "One",
        "--domain",
        "one.acme.test",
        "--port",
        "3000",
    ]);
    let bad_json = env.root.join("bad.json");
    std::fs::write(&bad_json, "{not json").unwrap();
    let array = env.root.join("array.json");
    std::fs::write(&array, "[1, 2]").unwrap();
    let before = env.count("SELECT count(*) FROM audit_events");
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["site", "create", "acme", "Two", "--domain", "ONE.acme.test"],
            4,
            "domain one.acme.test is taken",
        ),
        (
            &[
                "site",
                "create",
                "acme",
                "Two",
                "--domain",
                "two.acme.test",
                "--port",
                "3000",
            ],
            4,
            "port 3000 is taken",
        ),
        (
            &["site", "create", "acme", "Two", "--domain", "not_a_host"],
            2,
            "invalid hostname",
        ),
        (
            &[
                "site",
                "create",
                "acme",
                "Two",
                "--domain",
                "two.acme.test",
                "--port",
                "0",
            ],
            2,
            "--port",
        ),
        (
            &[
                "site",
                "create",
                "acme",
                "Two",
                "--domain",
                "two.acme.test",
                "--port",
                "65536",
            ],
            2,
            "--port",
        ),
        (
            &[
                "site",
                "create",
                "acme",
                "Two",
                "--domain",
                "two.acme.test",
                "--config",
                bad_json.to_str().unwrap(),
            ],
            9,
            "not valid JSON",
        ),
        (
            &[
                "site",
                "create",
                "acme",
                "Two",
                "--domain",
                "two.acme.test",
                "--config",
                array.to_str().unwrap(),
            ],
            9,
            "JSON object",
        ),
        (
            &[
                "site",
                "create",
                "acme",
                "Two",
                "--domain",
                "two.acme.test",
                "--config",
                "/no/such.json",
            ],
            2,
            "/no/such.json",
        ),
        (
            &["site", "create", "ghost", "Two", "--domain", "two.acme.test"],
            3,
            "no customer 'ghost'",
        ),
    ];
    for (args, code, message) in cases {
        let run = env.fails(args, *code);
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
    assert_eq!(env.count("SELECT count(*) FROM sites"), 1);
    assert_eq!(env.count("SELECT count(*) FROM audit_events"), before);
}

#[test]
fn the_plans_site_limit_and_overrides_are_enforced() {
    let env = with_customer();
    for i in 0..3 {
        env.json(&[
            "site",
            "create",
            "acme",
            "S",
            "--domain",
            &format!("s{i}.acme.test"),
        ]);
    }
    let run = env.fails(&["site", "create", "acme", "S", "--domain", "s3.acme.test"], 5);
    assert!(run.stderr.contains("3 of 3"), "{}", run.stderr);
    env.ok(&["customer", "update", "acme", "--max-sites", "4"]);
    env.json(&["site", "create", "acme", "S", "--domain", "s3.acme.test"]);
    env.fails(&["site", "create", "acme", "S", "--domain", "s4.acme.test"], 5);
    assert_eq!(env.count("SELECT count(*) FROM sites"), 4);
}

#[test]
fn suspended_and_deleted_customers_get_no_new_sites_or_deploys() {
    let env = with_customer();
    env.json(&["site", "create", "acme", "S", "--domain", "s.acme.test"]);
    env.ok(&["customer", "suspend", "acme", "--reason", "unpaid"]);
    env.fails(&["site", "create", "acme", "T", "--domain", "t.acme.test"], 6);
    env.fails(&["site", "deploy", "s.acme.test"], 6);
    env.ok(&["customer", "reactivate", "acme"]);
    env.ok(&["site", "deploy", "s.acme.test"]);
    env.ok(&["customer", "delete", "acme", "--confirm", "acme"]);
    assert_eq!(
        env.json(&["site", "show", "s.acme.test"])["status"],
        "stopped",
        "deleting a customer stops its sites"
    );
    env.fails(&["site", "create", "acme", "T", "--domain", "t.acme.test"], 6);
    env.fails(&["site", "update", "s.acme.test", "--name", "X"], 6);
    env.fails(&["site", "deploy", "s.acme.test"], 6);
}

#[test]
fn list_filters_and_streams_in_every_format() {
    let env = with_customer();
    env.customer("b@example.com", "B", &["Beta", "--plan", "pro"]);
    env.json(&["site", "create", "acme", "A1", "--domain", "a1.acme.test"]);
    env.json(&[
        "site",
        "create",
        "beta",
        "B1",
        "--domain",
        "b1.beta.test",
        "--port",
        "4001",
    ]);
    env.json(&["site", "create", "beta", "B2", "--domain", "b2.beta.test"]);
    env.ok(&["site", "deploy", "b2.beta.test"]);
    let domains = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["site", "list"];
        all.extend_from_slice(args);
        env.json(&all)
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["domain"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(domains(&[]), ["a1.acme.test", "b1.beta.test", "b2.beta.test"]);
    assert_eq!(domains(&["beta"]), ["b1.beta.test", "b2.beta.test"]);
    assert_eq!(domains(&["--status", "deployed"]), ["b2.beta.test"]);
    assert_eq!(domains(&["--domain", "B1"]), ["b1.beta.test"]);
    assert_eq!(domains(&["--limit", "1"]), ["a1.acme.test"]);
    assert!(domains(&["--domain", "nowhere"]).is_empty());
    let all = env.json(&["list-sites"]);
    for site in all.as_array().unwrap() {
        assert_fields(site, SITE_FIELDS);
    }
    let ndjson = env.ok(&["site", "list", "-o", "ndjson"]).stdout;
    let parsed: Vec<Value> = ndjson.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(Value::Array(parsed), all);
    let csv = env.ok(&["site", "list", "-o", "csv"]).stdout;
    assert_eq!(csv.lines().next().unwrap(), SITE_FIELDS.join(","));
    assert_eq!(csv.lines().count(), 4);
    let table = env.ok(&["site", "list"]).stdout;
    assert!(
        table.starts_with("ID") && table.contains("b2.beta.test"),
        "{table}"
    );
    env.fails(&["site", "list", "--status", "gone"], 2);
    env.fails(&["site", "list", "ghost"], 3);
}

#[test]
fn show_finds_a_site_by_id_or_domain() {
    let env = with_customer();
    let site = env.json(&["site", "create", "acme", "S", "--domain", "s.acme.test"]);
    let by_id = env.json(&["site", "show", &site["id"].to_string()]);
    let by_domain = env.json(&["site", "show", "S.ACME.test."]);
    assert_eq!(by_id, by_domain);
    let mut fields = SITE_FIELDS.to_vec();
    fields.extend(["deployment_count", "snapshot_count"]);
    assert_fields(&by_id, &fields);
    env.fails(&["site", "show", "999"], 3);
    env.fails(&["site", "show", "nowhere.test"], 3);
}

#[test]
fn update_snapshots_the_old_config_and_sets_json_paths() {
    let env = with_two_sites();
    let updated = env.json(&[
        "site",
        "update",
        "s.acme.test",
        "--name",
        "Shop",
        "--set",
        "theme.primary=#0044aa",
        "--set",
        "features.chat=true",
        "--set",
        "limits={\"rps\": 5}",
        "--status",
        "stopped",
    ]);
    assert_fields(&updated, SITE_FIELDS);
    assert_eq!(updated["name"], "Shop");
    assert_eq!(updated["status"], "stopped");
    assert_eq!(
        updated["config"],
        json!({"theme": {"primary": "#0044aa"}, "features": {"chat": true}, "limits": {"rps": 5}})
    );
    let snapshots = env.json(&["site", "snapshots", "s.acme.test"]);
    assert_eq!(snapshots.as_array().unwrap().len(), 1);
    assert_fields(&snapshots[0], SNAPSHOT_FIELDS);
    assert_eq!(snapshots[0]["kind"], "manual");
    assert_eq!(
        snapshots[0]["config"],
        json!({}),
        "the snapshot holds the config before the change"
    );

    let replaced = env
        .cmd(&["site", "update", "s.acme.test", "--config", "-"])
        .stdin(r#"{"fresh": 1}"#)
        .json();
    assert_eq!(replaced["config"], json!({"fresh": 1}));
    let moved = env.json(&[
        "site",
        "update",
        "s.acme.test",
        "--domain",
        "shop.acme.test",
        "--port",
        "none",
    ]);
    assert_eq!(moved["domain"], "shop.acme.test");
    assert_eq!(moved["port"], Value::Null);

    let before = env.count("SELECT count(*) FROM snapshots");
    env.fails(
        &["site", "update", "shop.acme.test", "--domain", "t.acme.test"],
        4,
    );
    env.fails(&["site", "update", "shop.acme.test", "--port", "3001"], 4);
    env.fails(&["site", "update", "shop.acme.test", "--port", "70000"], 2);
    env.fails(&["site", "update", "shop.acme.test", "--status", "exploded"], 2);
    env.fails(&["site", "update", "shop.acme.test", "--set", "fresh.x=1"], 2);
    env.fails(&["site", "update", "shop.acme.test", "--set", "novalue"], 2);
    env.fails(&["site", "update", "shop.acme.test"], 2);
    assert_eq!(
        env.count("SELECT count(*) FROM snapshots"),
        before,
        "refusals take no snapshot"
    );
    let actions = env.json(&["audit", "--action", "site.update"]);
    assert_eq!(actions.as_array().unwrap().len(), 3);
    assert_eq!(
        actions[2]["details"]["changes"]["name"],
        json!({"from": "S", "to": "Shop"})
    );
}

#[test]
fn delete_needs_the_domain_or_id_to_confirm() {
    let env = with_customer();
    let site = env.json(&["site", "create", "acme", "S", "--domain", "s.acme.test"]);
    env.ok(&["site", "deploy", "s.acme.test"]);
    let run = env.fails(&["site", "delete", "s.acme.test"], 6);
    assert!(run.stderr.contains("--confirm s.acme.test"), "{}", run.stderr);
    env.fails(&["site", "delete", "s.acme.test", "--confirm", "other.test"], 6);
    let deleted = env.json(&[
        "site",
        "delete",
        "s.acme.test",
        "--confirm",
        &site["id"].to_string(),
    ]);
    assert_eq!(deleted["domain"], "s.acme.test");
    env.fails(&["site", "show", "s.acme.test"], 3);
    assert_eq!(env.count("SELECT count(*) FROM deployments"), 0);
    assert_eq!(env.count("SELECT count(*) FROM snapshots"), 0);
    assert_eq!(
        env.json(&["audit", "--action", "site.delete"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    env.json(&["site", "create", "acme", "S", "--domain", "s2.acme.test"]);
    env.ok(&["site", "delete", "s2.acme.test", "--confirm", "S2.ACME.TEST"]);
}

#[test]
fn deploy_numbers_deployments_and_keeps_the_config_as_deployed() {
    let env = with_two_sites();
    env.ok(&["site", "update", "s.acme.test", "--set", "version=1"]);
    let first = env.json(&["site", "deploy", "s.acme.test"]);
    assert_fields(&first, DEPLOYMENT_FIELDS);
    assert_eq!(first["number"], 1);
    assert_eq!(first["port"], 3000);
    assert_eq!(first["config"], json!({"version": 1}));
    assert_eq!(first["actor"], "tester");
    let site = env.json(&["site", "show", "s.acme.test"]);
    assert_eq!(site["status"], "deployed");
    assert_timestamp(&site["deployed_at"]);

    env.ok(&["site", "update", "s.acme.test", "--set", "version=2"]);
    let second = env.json(&["site", "deploy", "s.acme.test", "--port", "3002"]);
    assert_eq!(second["number"], 2);
    assert_eq!(second["port"], 3002);
    assert_eq!(env.json(&["site", "show", "s.acme.test"])["port"], 3002);
    env.fails(&["site", "deploy", "s.acme.test", "--port", "3001"], 4);

    let history = env.json(&["site", "deployments", "s.acme.test"]);
    let numbers: Vec<i64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2]);
    assert_eq!(history[0]["config"], json!({"version": 1}));
    assert_eq!(
        snapshot_kinds(&env, "s.acme.test"),
        ["manual", "pre-deploy", "manual", "pre-deploy"]
    );
    assert_eq!(
        env.json(&["site", "deployments", "t.acme.test"]),
        json!([]),
        "numbers are per site"
    );
}

#[test]
fn rollback_redeploys_an_earlier_config_as_a_new_deployment() {
    let env = with_customer();
    env.json(&["site", "create", "acme", "S", "--domain", "s.acme.test"]);
    env.fails(&["site", "rollback", "s.acme.test"], 6);
    for version in 1..=3 {
        env.ok(&[
            "site",
            "update",
            "s.acme.test",
            "--set",
            &format!("version={version}"),
        ]);
        env.ok(&["site", "deploy", "s.acme.test"]);
    }
    let back = env.json(&["site", "rollback", "s.acme.test"]);
    assert_fields(&back, DEPLOYMENT_FIELDS);
    assert_eq!(back["number"], 4);
    assert_eq!(back["config"], json!({"version": 2}));
    assert!(back["log"].as_str().unwrap().contains("deployment 2"));
    assert_eq!(
        env.json(&["site", "show", "s.acme.test"])["config"],
        json!({"version": 2})
    );
    let to_first = env.json(&["site", "rollback", "s.acme.test", "--to", "1"]);
    assert_eq!(to_first["number"], 5);
    assert_eq!(to_first["config"], json!({"version": 1}));
    env.fails(&["site", "rollback", "s.acme.test", "--to", "9"], 3);
    env.fails(&["site", "rollback", "s.acme.test", "--to", "5"], 6);
    assert_eq!(
        env.json(&["audit", "--action", "site.rollback"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn rollback_with_one_deployment_is_refused() {
    let env = with_customer();
    env.json(&["site", "create", "acme", "S", "--domain", "s.acme.test"]);
    env.ok(&["site", "deploy", "s.acme.test"]);
    let run = env.fails(&["site", "rollback", "s.acme.test"], 6);
    assert!(run.stderr.contains("nothing to roll back"), "{}", run.stderr);
    assert_eq!(env.count("SELECT count(*) FROM deployments"), 1);
}

#[test]
fn snapshots_are_taken_and_restored_with_a_safety_copy() {
    let env = with_customer();
    env.json(&["site", "create", "acme", "S", "--domain", "s.acme.test"]);
    env.json(&["site", "create", "acme", "T", "--domain", "t.acme.test"]);
    env.ok(&["site", "update", "s.acme.test", "--set", "colour=blue"]);
    let saved = env.json(&["site", "snapshot", "s.acme.test", "--name", "blue"]);
    assert_fields(&saved, SNAPSHOT_FIELDS);
    assert_eq!(saved["kind"], "manual");
    assert_eq!(saved["name"], "blue");
    assert_eq!(saved["config"], json!({"colour": "blue"}));
    env.ok(&["site", "update", "s.acme.test", "--set", "colour=red"]);

    let restored = env.json(&["site", "restore", "s.acme.test", &saved["id"].to_string()]);
    assert_fields(&restored, SITE_FIELDS);
    assert_eq!(restored["config"], json!({"colour": "blue"}));
    let snapshots = env.json(&["site", "snapshots", "s.acme.test"]);
    let last = snapshots.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "pre-restore");
    assert_eq!(last["config"], json!({"colour": "red"}));

    let other = env.json(&["site", "snapshot", "t.acme.test"]);
    let run = env.fails(&["site", "restore", "s.acme.test", &other["id"].to_string()], 3);
    assert!(run.stderr.contains("no snapshot"), "{}", run.stderr);
    env.fails(&["site", "restore", "s.acme.test", "999"], 3);
    env.fails(&["site", "restore", "s.acme.test", "abc"], 2);
    assert_eq!(
        env.json(&["site", "show", "s.acme.test"])["config"],
        json!({"colour": "blue"})
    );
    let actions: Vec<String> = env
        .json(&["audit", "--action", "site."])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert!(actions.contains(&"site.snapshot".to_string()) && actions.contains(&"site.restore".to_string()));
}

#[test]
fn status_and_customer_show_count_sites_by_status() {
    let env = with_customer();
    env.json(&["site", "create", "acme", "S", "--domain", "s.acme.test"]);
    env.json(&["site", "create", "acme", "T", "--domain", "t.acme.test"]);
    env.ok(&["site", "deploy", "t.acme.test"]);
    let status = env.json(&["status"]);
    assert_eq!(
        status["sites"],
        json!({"total": 2, "by_status": {"deployed": 1, "draft": 1}})
    );
    let customer = env.json(&["customer", "show", "acme"]);
    assert_eq!(customer["sites_by_status"], json!({"deployed": 1, "draft": 1}));
    assert_eq!(customer["sites"].as_array().unwrap().len(), 2);
    assert_eq!(
        customer["quota"][0],
        json!({"resource": "sites", "used": 2, "used_bytes": null, "limit": 3, "percent": 66.7, "over": false})
    );
}

#[test]
fn concurrent_creates_never_exceed_the_site_limit() {
    let env = with_customer();
    let domains: Vec<String> = (0..8).map(|i| format!("c{i}.acme.test")).collect();
    let codes: Vec<i32> = all_at_once(
        domains
            .iter()
            .map(|domain| env.cmd(&["site", "create", "acme", "S", "--domain", domain])),
    )
    .iter()
    .map(|run| run.code)
    .collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 3, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 0 || *c == 5), "{codes:?}");
    assert_eq!(env.count("SELECT count(*) FROM sites"), 3);
}

#[test]
fn concurrent_set_updates_all_land() {
    let env = with_customer();
    env.json(&["site", "create", "acme", "S", "--domain", "s.acme.test"]);
    let sets: Vec<String> = (0..8).map(|i| format!("k{i}={i}")).collect();
    let runs = all_at_once(
        sets.iter()
            .map(|set| env.cmd(&["site", "update", "s.acme.test", "--set", set])),
    );
    for run in runs {
        assert!(run.code == 0 && run.stderr.is_empty(), "{run:?}");
    }
    let config = env.json(&["site", "show", "s.acme.test"])["config"].clone();
    assert_eq!(
        config.as_object().unwrap().len(),
        8,
        "no update was lost: {config}"
    );
}

#[test]
fn hostile_configs_are_refused_whole() {
    let env = with_customer();
    env.json(&["site", "create", "acme", "S", "--domain", "s.acme.test"]);
    let deep_path = format!("{}b=1", "a.".repeat(200));
    env.fails(&["site", "update", "s.acme.test", "--set", &deep_path], 2);
    let nested = format!("v={}{}", "[".repeat(100), "]".repeat(100));
    env.fails(&["site", "update", "s.acme.test", "--set", &nested], 2);
    let deep_file = env.root.join("deep.json");
    std::fs::write(
        &deep_file,
        format!("{{\"a\":{}1{}}}", "[".repeat(100), "]".repeat(100)),
    )
    .unwrap();
    env.fails(
        &[
            "site",
            "update",
            "s.acme.test",
            "--config",
            deep_file.to_str().unwrap(),
        ],
        9,
    );
    assert_eq!(env.json(&["site", "show", "s.acme.test"])["config"], json!({}));
    assert_eq!(env.count("SELECT count(*) FROM snapshots"), 0);
}

#[test]
fn big_numbers_and_control_characters_survive_untouched() {
    let env = with_customer();
    let config = env.root.join("c.json");
    std::fs::write(
        &config,
        r#"{"account": 123456789012345678901234567890, "t": "\u001b[31mred"}"#,
    )
    .unwrap();
    env.json(&[
        "site",
        "create",
        "acme",
        "S",
        "--domain",
        "s.acme.test",
        "--config",
        config.to_str().unwrap(),
    ]);
    let raw = env.ok(&["site", "show", "s.acme.test", "--json"]).stdout;
    assert!(raw.contains("123456789012345678901234567890"), "{raw}");
    let table = env.ok(&["site", "show", "s.acme.test"]).stdout;
    assert!(
        !table.contains('\x1b'),
        "escape codes reach the terminal: {table:?}"
    );
}

#[test]
fn rollback_keeps_the_sites_current_port() {
    let env = with_customer();
    env.json(&[
        "site",
        "create",
        "acme",
        "S",
        "--domain",
        "s.acme.test",
        "--port",
        "4000",
    ]);
    env.json(&["site", "create", "acme", "T", "--domain", "t.acme.test"]);
    env.ok(&["site", "deploy", "s.acme.test"]);
    env.ok(&["site", "update", "s.acme.test", "--port", "4001", "--set", "v=2"]);
    env.ok(&["site", "deploy", "s.acme.test"]);
    env.ok(&["site", "update", "t.acme.test", "--port", "4000"]);
    let back = env.json(&["site", "rollback", "s.acme.test"]);
    assert_eq!(back["port"], 4001);
    assert_eq!(back["config"], json!({}));
    assert_eq!(env.json(&["site", "show", "s.acme.test"])["port"], 4001);
}

#[test]
fn a_listing_cut_short_by_its_reader_is_not_an_error() {
    let env = with_customer();
    env.ok(&["customer", "update", "acme", "--max-sites", "2000"]);
    let conn = env.catalog();
    for i in 0..2000 {
        conn.execute(
            "INSERT INTO sites (customer_id, name, domain, created_at, updated_at) VALUES (1, 'x', ?1, 't', 't')",
            [format!("s{i}.acme.test")],
        )
        .unwrap();
    }
    drop(conn);
    for format in ["ndjson", "table", "json"] {
        use std::io::BufRead;
        let mut child = env
            .command()
            .args(["site", "list", "-o", format])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.stderr.is_empty(),
            "{format}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let table = env.ok(&["site", "list"]).stdout;
    assert_eq!(table.lines().count(), 2001);
    let widths: std::collections::HashSet<usize> = table
        .lines()
        .map(|l| l.find("s1").or(l.find("DOMAIN")).unwrap_or(0))
        .filter(|p| *p > 0)
        .collect();
    assert!(widths.len() <= 2, "columns stay aligned past the sample");
}
