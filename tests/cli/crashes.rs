//! A command killed at each step that changes files: the next run of the same command,
//! and separately `doctor --fix`, must leave the catalog and the files consistent,
//! with no stray file, and a purge must never leave the purged data behind.
//! Debug builds kill themselves at `TENANTCTL_CRASH_AT=<step>` with SIGKILL.

use std::path::Path;

use serde_json::json;

use crate::support::*;

/// Names in `dir` that no finished command leaves: staging files and restore folders.
fn strays(dir: &Path) -> Vec<String> {
    names_matching(dir, |n| n.starts_with('.') && n != ".lock")
        .into_iter()
        .collect()
}

/// What must hold once a command has finished or undone a killed run: no open
/// operation, no customer stuck provisioning, no stray staging file, no owner lock
/// left behind, every live customer's database present, and doctor satisfied.
fn assert_settled(env: &TestEnv, context: &str) {
    assert_eq!(env.count("SELECT count(*) FROM operations"), 0, "{context}");
    assert_eq!(
        env.count("SELECT count(*) FROM customers WHERE status = 'provisioning'"),
        0,
        "{context}"
    );
    for dir in ["tenants", "trash", "templates", "run"] {
        assert_eq!(
            strays(&env.home.join(dir)),
            Vec::<String>::new(),
            "{context}: {dir}"
        );
    }
    assert_eq!(
        env.names_in(&env.home.join("run")),
        Vec::<String>::new(),
        "{context}"
    );
    let catalog = env.catalog();
    let rows: Vec<(String, String, String)> = catalog
        .prepare("SELECT slug, status, location FROM customers")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(catalog);
    let mut tenant_files = env.names_in(&env.home.join("tenants"));
    tenant_files.retain(|n| n.ends_with(".db"));
    let mut live: Vec<String> = rows
        .iter()
        .filter(|(_, status, _)| status != "deleted")
        .map(|(slug, _, location)| {
            assert!(Path::new(location).is_file(), "{context}: {slug} has no database");
            format!("{slug}.db")
        })
        .collect();
    live.sort();
    assert_eq!(
        tenant_files, live,
        "{context}: every file in tenants/ is a live customer's"
    );
    for (slug, _, location) in rows.iter().filter(|(_, status, _)| status == "deleted") {
        assert!(
            Path::new(location).is_file(),
            "{context}: deleted {slug} keeps its database"
        );
    }
    env.ok(&["doctor"]);
}

/// After the kill, `doctor` says something is half done (exit 7); `doctor --fix`
/// settles it.
fn doctor_settles(env: &TestEnv, context: &str) {
    let found = env.run(&["doctor"]);
    assert_eq!(found.code, 7, "{context}: {found:?}");
    assert!(found.stdout.contains("operation.open"), "{context}: {found:?}");
    let fixed = env.run(&["doctor", "--fix"]);
    assert_eq!(fixed.code, 0, "{context}: {fixed:?}");
    assert_settled(env, context);
}

#[test]
fn a_killed_create_is_undone_and_the_same_create_then_succeeds() {
    for step in ["customer.create:reserved", "customer.create:published"] {
        let env = TestEnv::initialised();
        let args = ["customer", "create", "k@example.com", "K", "--slug", "k"];
        env.cmd(&args).killed_at_step(step);
        assert_eq!(
            env.json(&["customer", "list"]),
            json!([]),
            "{step}: invisible while provisioning"
        );
        env.fails(&["customer", "show", "k"], 3);
        let again = env.ok_warning(&args, "undone an interrupted customer.create of 'k'");
        assert!(again.stdout.contains("k@example.com"), "{step}");
        assert_settled(&env, step);

        let env = TestEnv::initialised();
        env.cmd(&args).killed_at_step(step);
        doctor_settles(&env, step);
        assert_eq!(env.count("SELECT count(*) FROM customers"), 0, "{step}");
        env.customer("k@example.com", "K", &["--slug", "k"]);
    }
}

#[test]
fn a_killed_delete_or_undelete_is_finished() {
    for step in ["recorded", "moved"] {
        let env = TestEnv::fleet(&["a", "b"]);
        env.cmd(&["customer", "delete", "a", "--confirm", "a"])
            .killed_at_step(&format!("customer.delete:{step}"));
        // The retry's goal is reached: it succeeds with the customer as it is now.
        let again = env
            .cmd(&["customer", "delete", "a", "--confirm", "a", "--json"])
            .stderr_has("finished an interrupted customer.delete of 'a'")
            .run()
            .json();
        assert_eq!(again["status"], "deleted");
        assert_settled(&env, &format!("delete {step}"));
        assert_eq!(env.json(&["customer", "show", "a"])["status"], "deleted");

        env.cmd(&["customer", "undelete", "a"])
            .killed_at_step(&format!("customer.undelete:{step}"));
        doctor_settles(&env, &format!("undelete {step}"));
        assert_eq!(env.json(&["customer", "show", "a"])["status"], "active");
        assert_eq!(
            env.json(&["db", "status", "a", "--check", "-q"])[0]["check"],
            "ok"
        );
    }
}

#[test]
fn a_killed_purge_never_leaves_the_purged_data() {
    for step in ["customer.purge:recorded", "customer.purge:removed"] {
        for next in ["purge", "doctor"] {
            let env = TestEnv::fleet(&["a", "b"]);
            env.ok(&["customer", "delete", "a", "--confirm", "a"]);
            env.cmd(&["customer", "purge", "a", "--confirm", "a"])
                .killed_at_step(step);
            if next == "purge" {
                let again = env
                    .cmd(&["customer", "purge", "a", "--confirm", "a", "--json"])
                    .stderr_has("finished an interrupted customer.purge of 'a'")
                    .run()
                    .json();
                assert_eq!(again["status"], "purged");
                assert_eq!(again["slug"], "a");
                assert_eq!(again["email"], "a@example.com");
                assert_settled(&env, step);
            } else {
                doctor_settles(&env, step);
            }
            assert_eq!(
                env.names_in(&env.home.join("trash")),
                Vec::<String>::new(),
                "{step}"
            );
            assert_eq!(
                env.count("SELECT count(*) FROM customers WHERE slug = 'a'"),
                0,
                "{step}"
            );
        }
    }
}

fn legacy_tree(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.root.join("legacy");
    for (n, status) in ["active", "suspended", "active"].iter().enumerate() {
        let folder = dir.join(format!("c{n}"));
        std::fs::create_dir_all(folder.join("sites")).unwrap();
        std::fs::write(
            folder.join("customer.json"),
            json!({"email": format!("c{n}@example.com"), "name": format!("C{n}"), "slug": format!("c{n}"),
                   "status": status})
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            folder.join("sites/shop.json"),
            json!({"name": "Shop", "domain": format!("shop.c{n}.test")}).to_string(),
        )
        .unwrap();
    }
    dir
}

#[test]
fn a_killed_import_is_finished_with_every_customer_in_place() {
    for step in ["import:recorded", "import:published"] {
        for next in ["import", "doctor"] {
            let env = TestEnv::initialised();
            let tree = legacy_tree(&env);
            let tree = tree.to_str().unwrap();
            env.cmd(&["import", tree]).killed_at_step(step);
            if next == "import" {
                let again = env
                    .cmd(&["import", tree])
                    .stderr_has("finished an interrupted import")
                    .json();
                assert_eq!(again["summary"]["created"], 0, "{step}: {again}");
                assert_settled(&env, step);
            } else {
                doctor_settles(&env, step);
            }
            let listed = env.json(&["customer", "list"]);
            let statuses: Vec<&str> = listed
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["status"].as_str().unwrap())
                .collect();
            assert_eq!(statuses, ["active", "suspended", "active"], "{step} then {next}");
            assert_eq!(env.json(&["site", "list"]).as_array().unwrap().len(), 3, "{step}");
        }
    }
}

#[test]
fn a_killed_import_of_more_customers_than_one_ledger_row_holds_is_finished_whole() {
    // An import records its new customers 1,000 to a ledger row: a kill after the
    // transaction leaves two rows here, and the next command finishes both.
    let env = TestEnv::initialised();
    let tree = env.root.join("many");
    std::fs::create_dir_all(&tree).unwrap();
    let customers = 1001;
    for n in 0..customers {
        let site = json!({"name": "Shop", "domain": format!("shop.c{n}.test"),
                          "customer": {"email": format!("owner{n}@c{n}.test")}});
        std::fs::write(tree.join(format!("c{n}.json")), site.to_string()).unwrap();
    }
    let tree = tree.to_str().unwrap();
    env.cmd(&["import", tree]).killed_at_step("import:recorded");
    assert_eq!(
        env.count("SELECT count(*) FROM operations WHERE kind = 'import'"),
        2
    );
    let again = env
        .cmd(&["import", tree])
        .stderr_has("finished an interrupted import")
        .json();
    assert_eq!(again["summary"]["created"], 0, "{again}");
    assert_settled(&env, "import:recorded");
    assert_eq!(
        env.count("SELECT count(*) FROM customers WHERE status = 'active'"),
        customers
    );
    let files = std::fs::read_dir(env.home.join("tenants"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".db"))
        .count();
    assert_eq!(files as i64, customers, "every database in place");
}

#[test]
fn doctor_fix_removes_staging_files_whose_command_is_gone_at_once() {
    let env = TestEnv::initialised();
    let tenants = env.home.join("tenants");
    std::fs::create_dir_all(&tenants).unwrap();
    // Left by a command that died before it recorded anything (any age).
    std::fs::write(tenants.join(".provision-4242-0000abcd-00000001.db"), b"").unwrap();
    let found = env.run(&["doctor", "--json"]);
    assert!(found.stdout.contains("orphan.staging"), "{found:?}");
    env.cmd(&["doctor", "--fix"]).run();
    assert_eq!(strays(&tenants), Vec::<String>::new());
}

#[test]
fn the_lock_file_of_a_command_killed_before_it_recorded_anything_goes_with_the_next_run() {
    // Found by scripts/killloop: a kill between taking the owner lock and recording
    // the operation left HOME/run/<token>.lock behind every later command.
    for args in [
        &["customer", "create", "k@example.com", "K", "--slug", "k"][..],
        &["customer", "delete", "a", "--confirm", "a"],
    ] {
        let env = TestEnv::fleet(&["a"]);
        let run = env.home.join("run");
        std::fs::write(run.join("4242-0000abcd.lock"), b"").unwrap();
        std::fs::write(run.join("not-a-token.lock"), b"").unwrap();
        env.ok(args);
        assert_eq!(env.names_in(&run), ["not-a-token.lock"], "{args:?}");
    }
}

#[test]
fn tenants_created_after_a_restored_catalog_are_reported_and_adopted_or_trashed() {
    let env = TestEnv::fleet(&["a"]);
    let set = env.json(&["backup", "--catalog"]);
    let id = set["id"].as_str().unwrap();
    env.customer(
        "b@example.com",
        "Bee",
        &["Bee Ltd", "--slug", "b", "--plan", "pro"],
    );
    env.customer("c@example.com", "Cee", &["--slug", "c"]);
    env.ok(&["backup", "--catalog"]);
    let older = env.json(&["backup", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(older, id);
    // b's details are in the newer set; c's too, but c is trashed below.
    let restored = env
        .cmd(&["restore", id, "--catalog", "--confirm", "catalog", "--json"])
        .stderr_has("2 tenant databases in the home have no customer in the restored catalog (b, c)")
        .run()
        .json();
    assert_eq!(restored["unowned_tenants"], json!(["b", "c"]));
    let found = env.run(&["doctor", "--json"]);
    assert!(found.stdout.contains("orphan.tenant"), "{found:?}");
    // Plain --fix does not choose for the operator.
    env.run(&["doctor", "--fix"]);
    assert!(env.home.join("tenants/b.db").is_file());
    env.fails(&["doctor", "--adopt"], 2);

    std::fs::rename(env.home.join("tenants/c.db"), env.root.join("c.db")).unwrap();
    env.run(&["doctor", "--fix", "--adopt"]);
    let b = env.json(&["customer", "show", "b"]);
    assert_eq!(b["email"], "b@example.com");
    assert_eq!(b["company_name"], "Bee Ltd");
    assert_eq!(b["plan"], "pro");
    assert_eq!(b["status"], "active");
    assert_eq!(b["schema_version"], 3);
    env.ok(&["doctor"]);

    // A database no backup knows gets placeholders and waits suspended.
    std::fs::rename(env.root.join("c.db"), env.home.join("tenants/zed.db")).unwrap();
    env.run(&["doctor", "--fix", "--adopt"]);
    let zed = env.json(&["customer", "show", "zed"]);
    assert_eq!(zed["email"], "zed@adopted.invalid");
    assert_eq!(zed["status"], "suspended");

    env.customer("y@example.com", "Y", &["--slug", "y"]);
    env.catalog()
        .execute("DELETE FROM customers WHERE slug = 'y'", [])
        .unwrap();
    env.run(&["doctor", "--fix", "--trash"]);
    assert!(!env.home.join("tenants/y.db").exists());
    assert_eq!(
        names_matching(&env.home.join("trash"), |n| n.starts_with("y.")).len(),
        1
    );
}

#[test]
fn a_command_killed_before_it_recorded_anything_leaves_nothing_after_the_next_one() {
    let env = TestEnv::initialised();
    let args = ["customer", "create", "k@example.com", "K", "--slug", "k"];
    env.cmd(&args).killed_at_step("customer.create:provisioned");
    assert_eq!(
        names_matching(&env.home.join("tenants"), |n| n.starts_with(".provision-")).len(),
        1
    );
    env.ok(&args);
    assert_settled(&env, "create killed before recording");

    let tree = legacy_tree(&env);
    env.cmd(&["import", tree.to_str().unwrap()])
        .killed_at_step("import:provisioned");
    env.ok(&["import", tree.to_str().unwrap()]);
    assert_settled(&env, "import killed before recording");
    assert_eq!(env.json(&["customer", "list"]).as_array().unwrap().len(), 4);
}

#[test]
fn a_catalog_restore_never_hands_out_an_id_again_nor_restores_another_customer_into_it() {
    let env = TestEnv::fleet(&["a"]);
    let old = env.json(&["backup"])["id"].as_str().unwrap().to_string();
    let late = env.customer("late@example.com", "Late", &["--slug", "late"]);
    let with_late = env.json(&["backup"])["id"].as_str().unwrap().to_string();
    env.cmd(&["restore", &old, "--catalog", "--confirm", "catalog"])
        .stderr_has("(late)")
        .run();
    let newer = env.customer("newer@example.com", "Newer", &["--slug", "newer"]);
    assert!(
        newer["id"].as_i64() > late["id"].as_i64(),
        "{newer} took an id handed out before"
    );
    env.cmd(&["restore", &with_late, "--customer", "newer"])
        .expect_code(3)
        .run();
    // Adopted, 'late' keeps the id its backups carry, and restores from them.
    env.run(&["doctor", "--fix", "--adopt"]);
    assert_eq!(env.json(&["customer", "show", "late"])["id"], late["id"]);
    env.json(&["restore", &with_late, "--customer", "late"]);
}

#[test]
fn sites_of_a_customer_still_provisioning_are_nobody_s_to_see() {
    let env = TestEnv::initialised();
    let tree = legacy_tree(&env);
    env.cmd(&["import", tree.to_str().unwrap()])
        .killed_at_step("import:published");
    assert_eq!(env.json(&["site", "list"]), json!([]));
    env.fails(&["site", "show", "shop.c0.test"], 3);
    env.fails(&["resolve", "shop.c0.test"], 3);
    assert_eq!(env.json(&["status"])["sites"]["total"], 0);
}

#[test]
fn imports_of_the_same_tree_at_once_take_turns() {
    let env = TestEnv::initialised();
    let tree = legacy_tree(&env);
    let tree = tree.to_str().unwrap();
    let runs = all_at_once((0..4).map(|_| env.cmd(&["import", tree, "--json"])));
    let created: i64 = runs
        .iter()
        .map(|run| {
            assert_eq!(run.code, 0, "{run:?}");
            run.json()["summary"]["created"].as_i64().unwrap()
        })
        .sum();
    assert_eq!(
        created, 6,
        "each file is created once: 3 customers with a site each"
    );
    assert_settled(&env, "concurrent imports");
}

#[test]
fn a_deleted_customer_s_database_back_in_tenants_is_its_own_not_unowned() {
    let env = TestEnv::fleet(&["a", "c"]);
    env.ok(&["customer", "delete", "c", "--confirm", "c"]);
    let old = env.json(&["backup", "--catalog"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(&["customer", "undelete", "c"]);
    let restored = env.json(&["restore", &old, "--catalog", "--confirm", "catalog"]);
    assert_eq!(restored["unowned_tenants"], json!([]));
    env.run(&["doctor", "--fix", "--adopt"]);
    assert_eq!(env.json(&["customer", "show", "c"])["status"], "deleted");
    assert!(!env.home.join("tenants/c.db").exists());
    env.ok(&["doctor"]);
    env.ok(&["customer", "undelete", "c"]);
}
