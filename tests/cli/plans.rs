//! plan list and plan set.

use serde_json::json;

use crate::support::*;

const PLAN_FIELDS: &[&str] = &[
    "name",
    "max_sites",
    "max_storage_mb",
    "max_bandwidth_gb",
    "max_api_calls",
    "builtin",
    "customers",
    "created_at",
    "updated_at",
];

#[test]
fn built_in_plans_are_listed_with_customer_counts() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--plan", "pro"]);
    let plans = env.json(&["plan", "list"]);
    let names: Vec<&str> = plans
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["starter", "pro", "enterprise"]);
    for plan in plans.as_array().unwrap() {
        assert_fields(plan, PLAN_FIELDS);
        assert_eq!(plan["builtin"], true);
    }
    assert_eq!(plans[1]["customers"], 1);
    assert_eq!(plans[0]["max_sites"], 3);
}

#[test]
fn plan_set_changes_and_creates_plans_with_audit() {
    let env = TestEnv::initialised();
    let pro = env.json(&["plan", "set", "pro", "--max-sites", "20"]);
    assert_fields(&pro, PLAN_FIELDS);
    assert_eq!(pro["max_sites"], 20);
    assert_eq!(pro["max_storage_mb"], 10240, "other values are kept");
    let missing = env.fails(&["plan", "set", "team", "--max-sites", "5"], 2);
    assert!(missing.stderr.contains("--max-storage-mb"), "{}", missing.stderr);
    let team = env.json(&[
        "plan",
        "set",
        "team",
        "--max-sites",
        "5",
        "--max-storage-mb",
        "5120",
        "--max-bandwidth-gb",
        "50",
        "--max-api-calls",
        "50000",
    ]);
    assert_eq!(team["builtin"], false);
    assert_eq!(
        env.customer("a@example.com", "A", &["--plan", "team"])["plan"],
        "team"
    );
    env.fails(&["plan", "set", "Team!", "--max-sites", "1"], 2);
    env.fails(&["plan", "set", "pro", "--max-sites", "-1"], 2);
    let events = env.json(&["audit", "--action", "plan."]);
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["plan.create", "plan.update"]);
    assert_eq!(events[1]["details"]["from"]["max_sites"], 10);
    assert_eq!(events[1]["details"]["to"]["max_sites"], 20);
    // Setting the same values again is not a change.
    env.ok(&["plan", "set", "pro", "--max-sites", "20"]);
    assert_eq!(
        env.json(&["audit", "--action", "plan."])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(env.json(&["plan", "list"]).as_array().unwrap().len(), 4);
}

#[test]
fn a_plan_change_that_puts_customers_over_quota_needs_force() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "acme"]);
    env.customer("b@example.com", "B", &["--slug", "beta"]);
    env.customer("c@example.com", "C", &["--slug", "own-limit"]);
    env.ok(&["customer", "update", "own-limit", "--max-sites", "5"]);
    for (customer, domain) in [
        ("acme", "one.acme.test"),
        ("acme", "two.acme.test"),
        ("own-limit", "one.own.test"),
        ("own-limit", "two.own.test"),
    ] {
        env.ok(&["site", "create", customer, "S", "--domain", domain]);
    }
    let audit = env.count("SELECT count(*) FROM audit_events");
    let refused = env.fails(&["plan", "set", "starter", "--max-sites", "1"], 5);
    assert!(
        refused.stderr.contains("acme: sites 2 > 1") && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains("beta") && !refused.stderr.contains("own-limit"),
        "only customers the change puts over are named: {}",
        refused.stderr
    );
    assert_eq!(env.json(&["plan", "list"])[0]["max_sites"], 3);
    assert_eq!(env.count("SELECT count(*) FROM audit_events"), audit);

    let forced = env.run(&["plan", "set", "starter", "--max-sites", "1", "--force", "--json"]);
    assert_eq!(forced.code, 0, "{forced:?}");
    assert_eq!(forced.json()["max_sites"], 1);
    assert_eq!(
        forced.stderr.trim(),
        "warning: plan starter now puts customers over quota: acme: sites 2 > 1"
    );
    let event = &env.json(&["audit", "--action", "plan.update"])[0];
    assert_eq!(
        event["details"]["forced_over_quota"],
        json!(["acme: sites 2 > 1"])
    );
    // Raising a limit is never refused, even while customers are over another.
    env.json(&["plan", "set", "starter", "--max-sites", "2"]);
}
