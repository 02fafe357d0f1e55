//! config get, set, unset and list.

use crate::support::*;

#[test]
fn settings_are_listed_set_read_and_unset() {
    let env = TestEnv::initialised();
    let list = env.json(&["config", "list"]);
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    for key in [
        "platform_domain",
        "tenant_migrations_dir",
        "default_plan",
        "backup_keep_daily",
    ] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    assert_fields(
        &list[0],
        &[
            "key",
            "value",
            "default",
            "description",
            "updated_at",
            "is_default",
        ],
    );

    let set = env.json(&["config", "set", "platform_domain", "Example.COM."]);
    assert_eq!(set["value"], "example.com");
    assert_eq!(
        env.ok(&["config", "get", "platform_domain"]).stdout,
        "example.com\n"
    );
    assert_eq!(
        env.json(&["config", "get", "platform_domain"])["value"],
        "example.com"
    );
    assert_eq!(
        env.ok_warning(&["config", "get", "default_plan"], "this is its default")
            .stdout,
        "starter\n",
        "defaults show"
    );

    let unset = env.json(&["config", "unset", "platform_domain"]);
    assert_eq!(unset["value"], serde_json::Value::Null);
    assert_eq!(
        env.ok(&["config", "get", "platform_domain"]).stdout,
        "",
        "unset prints nothing"
    );

    let events = env.json(&["audit", "--action", "config."]);
    assert_eq!(events.as_array().unwrap().len(), 2);
    assert_eq!(events[1]["details"]["to"], "example.com");
}

#[test]
fn bad_keys_and_values_are_usage_errors() {
    let env = TestEnv::initialised();
    let run = env.fails(&["config", "get", "colour"], 2);
    assert!(run.stderr.contains("known settings"), "{}", run.stderr);
    env.fails(&["config", "set", "platform_domain", "not a domain"], 2);
    env.fails(&["config", "set", "default_plan", "gold"], 2);
    env.fails(&["config", "set", "backup_keep_daily", "-1"], 2);
    env.fails(&["config", "set", "tenant_migrations_dir", "/no/such/folder"], 2);
    env.fails(&["config", "set", "platform_domain"], 2);
    assert_eq!(env.count("SELECT count(*) FROM settings"), 0);
}

#[test]
fn tenant_migrations_dir_setting_is_used_by_customer_create() {
    let env = TestEnv::initialised();
    let dir = env.root.join("schema");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("V7__seven.sql"), "CREATE TABLE seven (x);").unwrap();
    env.ok(&["config", "set", "tenant_migrations_dir", dir.to_str().unwrap()]);
    assert_eq!(env.customer("a@example.com", "A", &[])["schema_version"], 7);
}

#[test]
fn the_migrations_folder_of_a_live_home_moves_only_with_every_applied_migration() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "a"]);
    let current = env.home.join("tenant-migrations");
    let new = env.root.join("schema");
    std::fs::create_dir_all(&new).unwrap();
    let new_text = new.to_str().unwrap();

    let run = env.fails(&["config", "set", "tenant_migrations_dir", new_text], 6);
    assert!(run.stderr.contains("V1__users (missing)"), "{run:?}");
    std::fs::copy(current.join("V1__users.sql"), new.join("V1__users.sql")).unwrap();
    std::fs::copy(current.join("V2__products.sql"), new.join("V2__products.sql")).unwrap();
    std::fs::write(new.join("V3__orders.sql"), "CREATE TABLE orders_v2 (x);").unwrap();
    let run = env.fails(&["config", "set", "tenant_migrations_dir", new_text], 6);
    assert!(
        run.stderr.contains("V3__orders (changed)") && !run.stderr.contains("V1__users"),
        "{run:?}"
    );
    assert_eq!(env.count("SELECT count(*) FROM settings"), 0, "nothing changed");

    std::fs::copy(current.join("V3__orders.sql"), new.join("V3__orders.sql")).unwrap();
    std::fs::write(new.join("V4__more.sql"), "CREATE TABLE more (x);").unwrap();
    let set = env.json(&["config", "set", "tenant_migrations_dir", new_text]);
    assert_eq!(set["value"], new_text);
    assert_eq!(env.customer("b@example.com", "B", &[])["schema_version"], 4);

    // Going back to the default folder is refused too: it lacks V4, which b has.
    let run = env.fails(&["config", "unset", "tenant_migrations_dir"], 6);
    assert!(run.stderr.contains("V4__more (missing)"), "{run:?}");
    assert_eq!(
        env.json(&["config", "get", "tenant_migrations_dir"])["value"],
        new_text
    );
}

#[test]
fn a_setting_that_is_not_set_shows_its_default_and_says_so() {
    let env = TestEnv::initialised();
    let folder = env.home.join("tenant-migrations");
    let folder_text = folder.to_str().unwrap();
    // What `status` uses is what `config get` prints.
    let status = env.json(&["status"]);
    assert_eq!(status["tenant_migrations_dir"], folder_text, "{status}");
    let run = env.ok_warning(&["config", "get", "tenant_migrations_dir"], "default");
    assert_eq!(run.stdout, format!("{folder_text}\n"));
    assert_eq!(
        run.stderr,
        "tenant_migrations_dir is not set; this is its default\n"
    );
    assert_eq!(
        env.json(&["config", "get", "tenant_migrations_dir"]),
        serde_json::json!({"key": "tenant_migrations_dir", "value": folder_text, "default": folder_text,
            "description": "folder of tenant migrations V<n>__<name>.sql", "updated_at": null, "is_default": true})
    );
    assert_eq!(
        env.ok(&["config", "get", "tenant_migrations_dir", "-q"]).stderr,
        ""
    );
    let default_plan = env.json(&["config", "get", "default_plan"]);
    assert_eq!(
        (&default_plan["value"], &default_plan["is_default"]),
        (&serde_json::json!("starter"), &serde_json::json!(true))
    );

    // A stored value, even one equal to the default, is not the default.
    env.ok(&["config", "set", "default_plan", "starter"]);
    let run = env.ok(&["config", "get", "default_plan"]);
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("starter\n", ""));
    assert_eq!(env.json(&["config", "get", "default_plan"])["is_default"], false);
    // A key without a default prints nothing and says nothing.
    let run = env.ok(&["config", "get", "platform_domain"]);
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""));
}
