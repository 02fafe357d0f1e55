//! key, session, usage, quota and stats.

use serde_json::{Value, json};

use crate::support::*;

fn with_customer() -> TestEnv {
    let env = TestEnv::initialised();
    env.customer("ops@acme.test", "Jane", &["--slug", "acme"]);
    env
}

fn catalog_bytes(env: &TestEnv) -> Vec<u8> {
    let mut bytes = Vec::new();
    for file in ["catalog.db", "catalog.db-wal"] {
        bytes.extend(std::fs::read(env.home.join(file)).unwrap_or_default());
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

const KEY_FIELDS: &[&str] = &[
    "id",
    "customer_id",
    "customer",
    "name",
    "scopes",
    "created_at",
    "expires_at",
    "last_used_at",
    "revoked_at",
    "status",
];

#[test]
fn keys_are_shown_once_stored_hashed_and_verified() {
    let env = with_customer();
    let created = env.json(&[
        "key",
        "create",
        "acme",
        "--name",
        "ci",
        "--scope",
        "deploy",
        "--scope",
        "sites:read",
        "--expires-in",
        "90d",
    ]);
    let mut fields = KEY_FIELDS.to_vec();
    fields.push("token");
    assert_fields(&created, &fields);
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap();
    assert!(token.starts_with(&format!("tk_{id}_")), "{token}");
    assert!(
        token.len() >= 3 + 8 + 1 + 32,
        "at least 128 bits of secret: {token}"
    );
    assert_eq!(created["scopes"], json!(["deploy", "sites:read"]));
    assert!(
        !contains(&catalog_bytes(&env), &token),
        "the token is stored nowhere"
    );
    let secret = token.rsplit('_').next().unwrap();
    assert!(!contains(&catalog_bytes(&env), secret));

    let listed = env.json(&["key", "list", "acme"]);
    assert_fields(&listed[0], KEY_FIELDS);
    assert!(!env.ok(&["key", "list", "-o", "csv"]).stdout.contains(secret));

    let verified = env.json(&["key", "verify", &token]);
    assert_fields(
        &verified,
        &[
            "valid",
            "key_id",
            "customer",
            "customer_id",
            "scopes",
            "expires_at",
        ],
    );
    assert_eq!(verified["customer"], "acme");
    assert_eq!(verified["scopes"], json!(["deploy", "sites:read"]));
    assert_timestamp(&env.json(&["key", "list"])[0]["last_used_at"]);

    let wrong_secret = format!("tk_{id}_{}", "x".repeat(40));
    for bad in [wrong_secret.as_str(), "tk_nothere1_abc", "garbage", ""] {
        env.fails(&["key", "verify", bad], 3);
    }
    let revoked = env.json(&["key", "revoke", id]);
    assert_eq!(revoked["status"], "revoked");
    env.fails(&["key", "verify", &token], 3);
    env.fails(&["key", "revoke", "nosuchid"], 3);
    let actions: Vec<String> = env
        .json(&["audit", "--action", "key."])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["key.revoke", "key.create"]);
}

#[test]
fn expired_suspended_and_deleted_keys_do_not_verify() {
    let env = with_customer();
    let expired = env.json(&["key", "create", "acme", "--name", "old", "--expires-in", "1h"]);
    let expired_id = expired["id"].as_str().unwrap();
    env.catalog()
        .execute(
            "UPDATE api_keys SET expires_at = '2000-01-01T00:00:00Z' WHERE id = ?1",
            [expired_id],
        )
        .unwrap();
    assert_eq!(env.json(&["key", "list"])[0]["status"], "expired");
    env.fails(&["key", "verify", expired["token"].as_str().unwrap()], 3);
    let token = env.json(&["key", "create", "acme", "--name", "live"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(&["key", "verify", &token]);
    env.ok(&["customer", "suspend", "acme", "--reason", "unpaid"]);
    env.fails(&["key", "verify", &token], 3);
    env.fails(&["key", "create", "acme", "--name", "more"], 6);
    env.ok(&["customer", "reactivate", "acme"]);
    env.ok(&["key", "verify", &token]);
    env.ok(&["customer", "delete", "acme", "--confirm", "acme"]);
    env.fails(&["key", "verify", &token], 3);
    assert_eq!(
        env.json(&["key", "list"])[1]["status"],
        "revoked",
        "deleting a customer revokes its keys"
    );
}

#[test]
fn bad_key_input_is_a_usage_error_and_writes_nothing() {
    let env = with_customer();
    let before = env.count("SELECT count(*) FROM api_keys");
    env.fails(&["key", "create", "acme", "--name", "x", "--scope", "Root!"], 2);
    env.fails(
        &[
            "key",
            "create",
            "acme",
            "--name",
            "x",
            "--expires-in",
            "ninety days",
        ],
        2,
    );
    env.fails(&["key", "create", "acme"], 2);
    env.fails(&["key", "create", "ghost", "--name", "x"], 3);
    assert_eq!(env.count("SELECT count(*) FROM api_keys"), before);
}

#[test]
fn a_key_or_session_that_would_be_born_expired_is_a_usage_error() {
    let env = with_customer();
    for lifetime in ["0d", "0s", "0"] {
        let run = env.fails(
            &["key", "create", "acme", "--name", "x", "--expires-in", lifetime],
            2,
        );
        assert!(run.stderr.contains("above zero"), "{run:?}");
        env.fails(&["session", "create", "acme", "--ttl", lifetime], 2);
    }
    assert_eq!(env.count("SELECT count(*) FROM api_keys"), 0);
    assert_eq!(env.count("SELECT count(*) FROM sessions"), 0);
    let key = env.json(&["key", "create", "acme", "--name", "x", "--expires-in", "1s"]);
    assert_eq!(key["status"], "active");
}

#[test]
fn revoking_twice_is_a_noop_for_keys_and_sessions_alike() {
    let env = with_customer();
    let key = env.json(&["key", "create", "acme", "--name", "ci"]);
    let key_id = key["id"].as_str().unwrap();
    let first = env.json(&["key", "revoke", key_id]);
    let again = env.run(&["key", "revoke", key_id, "--json"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json(), first, "the key is shown as it is");
    assert_eq!(
        again.stderr.trim(),
        format!(
            "key {key_id} was already revoked at {}; nothing changed",
            first["revoked_at"].as_str().unwrap()
        )
    );
    assert!(env.ok(&["key", "revoke", key_id, "-q"]).stderr.is_empty());

    let session = env.json(&["session", "create", "acme"]);
    let session_id = session["id"].as_str().unwrap();
    let first = env.json(&["session", "revoke", session_id]);
    assert_eq!(first["revoked"], 1);
    let again = env.run(&["session", "revoke", session_id, "--json"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json()["revoked"], 0);
    assert_eq!(again.json()["sessions"], first["sessions"]);
    assert_eq!(
        again.stderr.trim(),
        format!("session {session_id} was already revoked; nothing changed")
    );
    let again = env.run(&["session", "revoke", "--customer", "acme", "--all"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("nothing changed"), "{again:?}");

    let count = |action: &str| {
        env.count(&format!(
            "SELECT count(*) FROM audit_events WHERE action = '{action}'"
        ))
    };
    assert_eq!(count("key.revoke"), 1, "a no-op writes no audit event");
    assert_eq!(count("session.revoke"), 1, "a no-op writes no audit event");
}

#[test]
fn any_well_formed_scope_is_accepted_unless_the_operator_restricts_them() {
    let env = with_customer();
    let key = env.json(&[
        "key",
        "create",
        "acme",
        "--name",
        "x",
        "--scope",
        "read",
        "--scope",
        "billing.invoices:write",
    ]);
    assert_eq!(key["scopes"], json!(["billing.invoices:write", "read"]));
    for bad in ["Read", "9read", "re ad", "read,write", ""] {
        env.fails(&["key", "create", "acme", "--name", "x", "--scope", bad], 2);
    }

    let set = env.json(&["config", "set", "key_scopes", "read, deploy,read"]);
    assert_eq!(set["value"], "read,deploy");
    env.fails(&["config", "set", "key_scopes", "read,Bad"], 2);
    env.fails(&["config", "set", "key_scopes", " , "], 2);
    assert_eq!(env.json(&["config", "get", "key_scopes"])["value"], "read,deploy");

    let before = env.count("SELECT count(*) FROM api_keys");
    let refused = env.fails(&["key", "create", "acme", "--name", "x", "--scope", "admin"], 2);
    assert!(
        refused.stderr.contains("scope 'admin' is not allowed") && refused.stderr.contains("read, deploy"),
        "{refused:?}"
    );
    assert_eq!(env.count("SELECT count(*) FROM api_keys"), before);
    let no_scope = env.fails(&["key", "create", "acme", "--name", "x"], 2);
    assert!(
        no_scope.stderr.contains("give --scope") && no_scope.stderr.contains("read, deploy"),
        "{no_scope:?}"
    );
    let key = env.json(&["key", "create", "acme", "--name", "x", "--scope", "deploy"]);
    assert_eq!(key["scopes"], json!(["deploy"]));
    env.ok(&["config", "unset", "key_scopes"]);
    env.json(&["key", "create", "acme", "--name", "x", "--scope", "admin"]);
}

#[test]
fn sessions_are_created_listed_revoked_and_pruned() {
    let env = with_customer();
    let created = env.json(&["session", "create", "acme", "--device", "Firefox", "--ttl", "7d"]);
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ts_"));
    assert!(!contains(&catalog_bytes(&env), &token));
    let id = created["id"].as_str().unwrap().to_string();
    let ending = env.json(&["session", "create", "acme", "--ttl", "1h"]);
    env.catalog()
        .execute(
            "UPDATE sessions SET expires_at = '2000-01-01T00:00:00Z' WHERE id = ?1",
            [ending["id"].as_str().unwrap()],
        )
        .unwrap();
    let other = env.json(&["session", "create", "acme"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let all = env.json(&["session", "list", "acme"]);
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|s| s.get("token").is_none() && s.get("token_hash").is_none())
    );
    assert_eq!(
        env.json(&["session", "list", "--active"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let revoked = env.json(&["session", "revoke", &id]);
    assert_eq!(revoked["revoked"], 1);
    assert_eq!(revoked["sessions"][0]["status"], "revoked");
    env.fails(&["session", "revoke", "nosuchid"], 3);
    let pruned = env.json(&["session", "prune"]);
    assert_eq!(pruned, json!({"removed": 1}));
    assert_eq!(env.json(&["session", "prune"]), json!({"removed": 0}));
    let all_revoked = env.json(&["session", "revoke", "--customer", "acme", "--all"]);
    assert_eq!(all_revoked["revoked"], 1);
    assert!(
        env.json(&["session", "list", "--active"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    env.fails(&["session", "revoke", "--customer", "acme"], 2);
    env.fails(&["session", "create", "acme", "--ttl", "soon"], 2);
    let _ = other;
}

#[test]
fn suspending_blocks_sessions_and_deleting_revokes_them() {
    let env = with_customer();
    env.json(&["session", "create", "acme"]);
    env.ok(&["customer", "suspend", "acme", "--reason", "r"]);
    assert_eq!(env.json(&["session", "list"])[0]["status"], "blocked");
    assert!(
        env.json(&["session", "list", "--active"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    env.ok(&["customer", "reactivate", "acme"]);
    env.ok(&["customer", "delete", "acme", "--confirm", "acme"]);
    assert_eq!(env.json(&["session", "list"])[0]["status"], "revoked");
}

#[test]
fn usage_is_recorded_per_month_and_reported_with_storage() {
    let env = with_customer();
    let first = env.json(&[
        "usage",
        "record",
        "acme",
        "bandwidth_mb",
        "512",
        "--at",
        "2026-10-15",
    ]);
    assert_eq!(
        first,
        json!({"customer": "acme", "metric": "bandwidth_mb", "month": "2026-10", "amount": 512, "month_total": 512})
    );
    env.ok(&[
        "usage",
        "record",
        "acme",
        "bandwidth_mb",
        "100",
        "--at",
        "2026-10-20T10:00:00Z",
    ]);
    env.ok(&["usage", "record", "acme", "api_calls", "7", "--at", "2026-10-01"]);
    env.ok(&["usage", "record", "acme", "api_calls", "3"]);
    let october = env.json(&["usage", "report", "acme", "--month", "2026-10"]);
    assert_fields(
        &october[0],
        &[
            "customer",
            "month",
            "bandwidth_mb",
            "api_calls",
            "storage_mb",
            "storage_bytes",
        ],
    );
    assert_eq!(
        (
            october[0]["bandwidth_mb"].as_i64(),
            october[0]["api_calls"].as_i64()
        ),
        (Some(612), Some(7))
    );
    assert!(october[0]["storage_mb"].as_f64().unwrap() > 0.0);
    assert_eq!(
        env.json(&["usage", "report"])[0]["api_calls"],
        3,
        "this month by default"
    );
    for bad in [
        &["usage", "record", "acme", "bandwidth_mb", "-5"][..],
        &["usage", "record", "acme", "bandwidth_mb", "lots"],
        &["usage", "record", "acme", "storage_mb", "5"],
        &["usage", "record", "acme", "bandwidth_mb", "5", "--at", "someday"],
        &["usage", "report", "--month", "2026-13"],
        &["usage", "report", "--month", "Nov"],
    ] {
        env.fails(bad, 2);
    }
    env.fails(&["usage", "record", "ghost", "api_calls", "1"], 3);
}

#[test]
fn quota_check_exits_5_when_over_and_enforce_warns_then_suspends() {
    let env = with_customer();
    env.customer("b@example.com", "B", &["--slug", "beta"]);
    let ok = env.json(&["quota", "check"]);
    assert_fields(
        &ok[0],
        &[
            "customer",
            "plan",
            "resource",
            "used",
            "used_bytes",
            "limit",
            "percent",
            "over",
        ],
    );
    env.ok(&["db", "sql", "acme", "CREATE TABLE blobs (b BLOB)", "--write"]);
    env.ok(&[
        "db",
        "sql",
        "acme",
        "INSERT INTO blobs SELECT randomblob(1000000) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4)",
        "--write",
    ]);
    // Four blobs of a million bytes are about 3.8 MiB: over 80 % of 4 MB, under 100 %.
    env.ok(&["customer", "update", "acme", "--max-storage-mb", "4", "--force"]);
    let warned = env.json(&["quota", "enforce"]);
    assert_eq!(warned[0]["action"], "warned", "{warned}");
    assert_eq!(env.json(&["customer", "show", "acme"])["status"], "active");

    env.ok(&["customer", "update", "acme", "--max-storage-mb", "2", "--force"]);
    let run = env.run(&["quota", "check", "--json"]);
    assert_eq!(run.code, 5, "{run:?}");
    assert!(
        run.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["customer"] == "acme" && r["over"] == true)
    );
    env.ok(&["quota", "check", "beta"]);

    let dry = env.json(&["quota", "enforce", "--dry-run"]);
    assert_eq!(dry[0]["action"], "would_suspend");
    assert_eq!(env.json(&["customer", "show", "acme"])["status"], "active");
    let enforced = env.json(&["quota", "enforce"]);
    assert_fields(
        &enforced[0],
        &[
            "customer",
            "resource",
            "used",
            "used_bytes",
            "limit",
            "percent",
            "action",
        ],
    );
    assert_eq!(enforced[0]["action"], "suspended");
    let acme = env.json(&["customer", "show", "acme"]);
    assert_eq!(acme["status"], "suspended");
    assert!(
        acme["status_reason"]
            .as_str()
            .unwrap()
            .starts_with("storage quota exceeded")
    );
    let audits = env.count("SELECT count(*) FROM audit_events");
    assert_eq!(
        env.json(&["quota", "enforce"]),
        json!([]),
        "a second run does nothing new"
    );
    assert_eq!(env.count("SELECT count(*) FROM audit_events"), audits);
}

#[test]
fn stats_summarise_the_platform() {
    let env = with_customer();
    env.customer("b@example.com", "B", &["--slug", "beta", "--plan", "pro"]);
    env.ok(&["site", "create", "acme", "S", "--domain", "s.acme.test"]);
    env.ok(&["site", "deploy", "s.acme.test"]);
    env.ok(&["usage", "record", "acme", "api_calls", "42"]);
    let stats = env.json(&["stats"]);
    assert_fields(
        &stats,
        &[
            "customers",
            "customers_by_plan",
            "customers_by_server",
            "sites",
            "deployments_last_30_days",
            "storage_bytes",
            "usage_this_month",
            "top_customers_by_storage",
        ],
    );
    assert_eq!(
        stats["customers"],
        json!({"total": 2, "by_status": {"active": 2}})
    );
    assert_eq!(stats["customers_by_plan"], json!({"pro": 1, "starter": 1}));
    assert_eq!(stats["sites"]["total"], 1);
    assert_eq!(stats["deployments_last_30_days"], 1);
    assert_eq!(
        stats["usage_this_month"],
        json!({"api_calls": 42, "bandwidth_mb": 0})
    );
    let top = stats["top_customers_by_storage"].as_array().unwrap();
    assert_eq!(top.len(), 2);
    assert_fields(&top[0], &["customer", "plan", "storage_bytes"]);
    assert!(stats["storage_bytes"].as_u64().unwrap() >= top[0]["storage_bytes"].as_u64().unwrap());
    let _: Value = stats;
}

/// Grows acme's tenant database to about `bytes` with one blob.
fn grow_tenant(env: &TestEnv, bytes: u64) {
    env.ok(&[
        "db",
        "sql",
        "acme",
        "CREATE TABLE IF NOT EXISTS blobs (b BLOB)",
        "--write",
    ]);
    env.ok(&[
        "db",
        "sql",
        "acme",
        &format!("INSERT INTO blobs VALUES (zeroblob({bytes}))"),
        "--write",
    ]);
}

/// The storage figure of acme as (bytes, MiB) from each command that reports it.
fn storage_figures(env: &TestEnv) -> Vec<(String, u64, f64)> {
    let storage_row = |rows: Value| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["customer"] == "acme" && r["resource"] == "storage_mb")
            .cloned()
            .unwrap_or_else(|| json!({}))
    };
    let check = storage_row(env.json(&["quota", "check", "acme"]));
    let show = env.json(&["customer", "show", "acme"]);
    let show_line = show["quota"][1].clone();
    let report = env.json(&["usage", "report", "acme"])[0].clone();
    vec![
        (
            "quota check".into(),
            check["used_bytes"].as_u64().unwrap(),
            check["used"].as_f64().unwrap(),
        ),
        (
            "customer show".into(),
            show["storage_bytes"].as_u64().unwrap(),
            show["storage_mb"].as_f64().unwrap(),
        ),
        (
            "customer show quota".into(),
            show_line["used_bytes"].as_u64().unwrap(),
            show_line["used"].as_f64().unwrap(),
        ),
        (
            "usage report".into(),
            report["storage_bytes"].as_u64().unwrap(),
            report["storage_mb"].as_f64().unwrap(),
        ),
    ]
}

#[test]
fn storage_is_compared_in_exact_bytes_and_reported_alike_everywhere() {
    let env = with_customer();
    // A fresh tenant is some KiB: well under 1 MiB, so lowering the limit to 1 MB is no
    // breach and nothing is suspended.
    env.ok(&["customer", "update", "acme", "--max-storage-mb", "1"]);
    let check = env.json(&["quota", "check", "acme"]);
    let storage = &check[1];
    assert_fields(
        storage,
        &[
            "customer",
            "plan",
            "resource",
            "used",
            "used_bytes",
            "limit",
            "percent",
            "over",
        ],
    );
    assert_eq!(
        (&storage["resource"], &storage["over"]),
        (&json!("storage_mb"), &json!(false))
    );
    let bytes = storage["used_bytes"].as_u64().unwrap();
    assert!(bytes < 1024 * 1024, "{storage}");
    let expected_mb = (bytes as f64 * 100.0 / 1_048_576.0).round() / 100.0;
    assert_eq!(storage["used"].as_f64(), Some(expected_mb), "{storage}");
    assert!(storage["percent"].as_f64().unwrap() < 100.0, "{storage}");
    assert_eq!(check[0]["used_bytes"], Value::Null, "only storage has bytes");
    assert_eq!(env.json(&["quota", "enforce"]), json!([]));
    assert_eq!(env.json(&["customer", "show", "acme"])["status"], "active");

    // About 2.34 MiB against 3 MB is 78 %: neither warned nor suspended.
    env.ok(&["customer", "update", "acme", "--max-storage-mb", "3"]);
    grow_tenant(&env, 2_400_000);
    let figures = storage_figures(&env);
    let (_, bytes, mb) = figures[0].clone();
    assert!((2.2..2.6).contains(&mb) && bytes > 2_400_000, "{figures:?}");
    for (command, other_bytes, other_mb) in &figures {
        assert_eq!((*other_bytes, *other_mb), (bytes, mb), "{command}: {figures:?}");
    }
    let storage = env.json(&["quota", "check", "acme"])[1].clone();
    let percent = storage["percent"].as_f64().unwrap();
    assert!((70.0..80.0).contains(&percent), "{storage}");
    assert_eq!(env.json(&["quota", "enforce"]), json!([]));
    assert_eq!(env.json(&["customer", "show", "acme"])["status"], "active");
}
