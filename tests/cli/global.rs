//! Global options, the environment, output formats, error shape and exit codes.

use crate::support::*;

#[test]
fn home_comes_from_flag_then_env_then_xdg_then_home() {
    let env = TestEnv::new();
    let flag_home = env.root.join("flag-home");
    env.ok(&["--home", flag_home.to_str().unwrap(), "init"]);
    assert!(flag_home.join("catalog.db").is_file());
    assert!(!env.home.exists());

    env.ok(&["init"]);
    assert!(env.home.join("catalog.db").is_file(), "TENANTCTL_HOME is used");

    let xdg = env.root.join("xdg");
    env.cmd(&["init", "--json"])
        .env_remove("TENANTCTL_HOME")
        .env("XDG_DATA_HOME", &xdg)
        .run();
    assert!(xdg.join("tenantctl/catalog.db").is_file());

    let user_home = env.root.join("user");
    env.cmd(&["init"])
        .env_remove("TENANTCTL_HOME")
        .env("HOME", &user_home)
        .run();
    assert!(user_home.join(".local/share/tenantctl/catalog.db").is_file());
}

#[test]
fn backup_dir_comes_from_flag_then_env() {
    let env = TestEnv::initialised();
    let status = env.json(&["--backup-dir", "/srv/b1", "status"]);
    assert_eq!(status["backup_dir"], "/srv/b1");
    let status = env.cmd(&["status"]).env("TENANTCTL_BACKUP_DIR", "/srv/b2").json();
    assert_eq!(status["backup_dir"], "/srv/b2");
}

#[test]
fn every_output_format_renders_a_listing() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "Ann", &["Acme, Inc."]);
    env.customer("b@example.com", "Bob", &[]);

    let json = env.json(&["customer", "list"]);
    assert_eq!(json.as_array().unwrap().len(), 2);

    let ndjson = env.ok(&["customer", "list", "-o", "ndjson"]).stdout;
    let lines: Vec<serde_json::Value> = ndjson.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines, json.as_array().unwrap().clone());

    let csv = env.ok(&["customer", "list", "--output", "csv"]).stdout;
    let mut rows = csv.lines();
    assert_eq!(rows.next().unwrap(), CUSTOMER_FIELDS.join(","));
    assert!(rows.next().unwrap().contains("\"Acme, Inc.\""), "{csv}");
    assert_eq!(csv.lines().count(), 3);

    let table = env.ok(&["customer", "list", "-o", "table"]).stdout;
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("SLUG") && header.contains("PLAN"),
        "{table}"
    );
    assert_eq!(lines.count(), 2);

    let listing = |args: &[&str], output: &str| env.cmd(args).env("TENANTCTL_OUTPUT", output).run().stdout;
    assert_eq!(listing(&["customer", "list"], "ndjson"), ndjson);
    assert_eq!(listing(&["customer", "list", "-o", "csv"], "json"), csv);
}

#[test]
fn invalid_output_values_are_usage_errors() {
    let env = TestEnv::initialised();
    env.fails(&["customer", "list", "-o", "yaml"], 2);
    let run = env
        .cmd(&["customer", "list"])
        .env("TENANTCTL_OUTPUT", "xml")
        .expect_code(2)
        .run();
    assert!(run.stderr.contains("TENANTCTL_OUTPUT"));
}

#[test]
fn errors_are_one_line_and_json_on_request() {
    let env = TestEnv::initialised();
    let plain = env.fails(&["customer", "show", "nobody"], 3);
    assert!(
        plain.stderr.starts_with("error: no customer 'nobody' ("),
        "{}",
        plain.stderr
    );

    let run = env.run(&["customer", "show", "nobody", "--json"]);
    assert_eq!(run.code, 3);
    assert!(run.stdout.is_empty());
    let mut lines = run.stderr.lines();
    assert!(lines.next().unwrap().starts_with("error: "));
    let object: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(object["error"]["code"], "not_found");
    assert_eq!(object["error"]["exit_code"], 3);
    assert_eq!(object["error"]["message"], "no customer 'nobody'");

    let usage = env.run(&["customer", "frobnicate", "--json"]);
    assert_eq!(usage.code, 2);
    let object: serde_json::Value = serde_json::from_str(usage.stderr.lines().nth(1).unwrap()).unwrap();
    assert_eq!(object["error"]["code"], "usage");
}

#[test]
fn exit_codes_follow_the_spec_table() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "acme"]);
    env.ok(&[
        "plan",
        "set",
        "tiny",
        "--max-sites",
        "0",
        "--max-storage-mb",
        "0",
        "--max-bandwidth-gb",
        "0",
        "--max-api-calls",
        "0",
    ]);
    // 0 success, 2 usage, 3 not found, 4 conflict, 5 quota, 6 refused.
    env.ok(&["customer", "show", "acme"]);
    env.fails(&["customer", "create", "not-an-email", "X"], 2);
    env.fails(&["customer", "show", "ghost"], 3);
    env.fails(&["customer", "create", "a@example.com", "Again"], 4);
    env.fails(&["customer", "update", "acme", "--plan", "tiny"], 5);
    env.fails(&["customer", "delete", "acme"], 6);
    // 1 unexpected: a tenant migration that fails.
    std::fs::write(
        env.home.join("tenant-migrations/V9__broken.sql"),
        "SELECT * FROM no_such_table;",
    )
    .unwrap();
    env.fails(&["customer", "create", "z@example.com", "Z"], 1);
}

#[test]
fn help_and_version_need_no_home() {
    let env = TestEnv::new();
    let help = env.ok(&["--help"]);
    assert!(help.stdout.contains("Usage: tenantctl"));
    assert!(help.stdout.contains("Exit codes"));
    let version = env.ok(&["--version"]);
    assert!(version.stdout.starts_with("tenantctl "));
    env.ok(&["customer", "create", "--help"]);
    assert!(!env.home.exists());
    let bare = env.run(&[]);
    assert_eq!(bare.code, 2, "no subcommand is a usage error: {bare:?}");
}

#[test]
fn actor_comes_from_flag_then_env_then_user() {
    let env = TestEnv::initialised();
    env.ok(&["--actor", "alice", "customer", "create", "a@example.com", "A"]);
    env.cmd(&["customer", "create", "b@example.com", "B"])
        .env("TENANTCTL_ACTOR", "bob")
        .run();
    env.cmd(&["customer", "create", "c@example.com", "C"])
        .env_remove("TENANTCTL_ACTOR")
        .env("USER", "carol")
        .run();
    env.cmd(&["customer", "create", "d@example.com", "D"])
        .env_remove("TENANTCTL_ACTOR")
        .run();
    let actors: Vec<String> = env
        .json(&["audit", "--action", "customer.create"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actors, ["unknown", "carol", "bob", "alice"]);
}

#[test]
fn colour_only_when_asked_and_never_with_no_color() {
    let env = TestEnv::initialised();
    let plain = env.run(&["customer", "show", "ghost"]);
    assert!(!plain.stderr.contains('\x1b'), "not a terminal: no colour");
    let always = env.run(&["customer", "show", "ghost", "--color", "always"]);
    assert!(always.stderr.contains("\x1b["), "{always:?}");
    let never = env.run(&["customer", "show", "ghost", "--color", "never"]);
    assert!(!never.stderr.contains('\x1b'));
    let no_color = env
        .cmd(&["customer", "show", "ghost", "--color", "auto"])
        .env("NO_COLOR", "1")
        .expect_code(3)
        .run();
    assert!(!no_color.stderr.contains('\x1b'));
}

#[test]
fn quiet_and_verbose_only_change_stderr() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &[]);
    let normal = env.ok(&["customer", "list", "--json"]);
    let verbose = env.ok_warning(&["customer", "list", "--json", "-vv"], "sql: ");
    let quiet = env.ok(&["customer", "list", "--json", "-q", "--no-progress"]);
    assert_eq!(normal.stdout, verbose.stdout);
    assert_eq!(normal.stdout, quiet.stdout);
    assert!(verbose.stderr.contains("catalog"), "{verbose:?}");
    assert!(
        verbose.stderr.contains("sql: ") && verbose.stderr.contains("FROM customers"),
        "{verbose:?}"
    );
    let timings: Vec<&str> = verbose
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("sql: "))
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    for timing in &timings {
        let (amount, unit) = timing.split_once(' ').unwrap();
        match unit {
            "µs" => assert!(amount.parse::<u64>().unwrap() > 0, "{timing}"),
            "ms" => assert!(amount.parse::<f64>().unwrap() >= 1.0, "{timing}"),
            _ => panic!("no unit in {timing}"),
        }
    }
    assert!(
        timings.iter().any(|t| t.ends_with(" µs")),
        "sub-millisecond statements are timed in µs, not as 0.000 ms: {timings:?}"
    );
    let once = env.ok_warning(&["customer", "list", "--json", "-v"], "debug: ");
    assert!(!once.stderr.contains("sql: "), "-v alone does not trace SQL");
    assert!(quiet.stderr.is_empty());
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    use std::process::Stdio;
    let env = TestEnv::initialised();
    for i in 0..3 {
        env.customer(&format!("c{i}@example.com"), "C", &[]);
    }
    let mut child = env
        .command()
        .args(["customer", "list", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn usage_errors_name_what_is_missing_and_honour_json_from_the_environment() {
    let env = TestEnv::initialised();
    let run = env.fails(&["customer", "show"], 2);
    assert!(
        run.stderr.contains("<CUSTOMER>") && run.stderr.contains("tenantctl customer show --help"),
        "{}",
        run.stderr
    );
    let run = env.fails(&["customer"], 2);
    assert!(run.stderr.contains("needs a subcommand"), "{}", run.stderr);
    let run = env
        .cmd(&["customer", "show"])
        .env("TENANTCTL_OUTPUT", "json")
        .expect_code(2)
        .run();
    let object: serde_json::Value = serde_json::from_str(run.stderr.lines().nth(1).unwrap()).unwrap();
    assert_eq!(object["error"]["code"], "usage");
}

#[test]
fn actor_names_are_one_visible_line() {
    let env = TestEnv::initialised();
    env.fails(
        &[
            "--actor",
            "evil\nactor",
            "customer",
            "create",
            "a@example.com",
            "A",
        ],
        2,
    );
    env.fails(
        &[
            "--actor",
            &"a".repeat(101),
            "customer",
            "create",
            "a@example.com",
            "A",
        ],
        2,
    );
    env.ok(&["--actor", "", "customer", "create", "a@example.com", "A"]);
    assert_eq!(
        env.json(&["audit", "--limit", "1"])[0]["actor"],
        "tester",
        "an empty --actor falls back"
    );
}

#[test]
fn writes_leave_the_catalog_file_complete_and_reads_keep_its_wal_files() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "a"]);
    // A command that wrote folds its WAL in: the catalog file alone holds the row.
    let alone = env.home.join("catalog-alone.db");
    std::fs::copy(env.home.join("catalog.db"), &alone).unwrap();
    let count: i64 = rusqlite::Connection::open(&alone)
        .unwrap()
        .query_row("SELECT count(*) FROM customers WHERE slug = 'a'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(count, 1);
    // A command that only read leaves the WAL files for the next one to reuse.
    env.ok(&["customer", "show", "a"]);
    assert_eq!(env.run(&["resolve", "nowhere.example"]).code, 3);
    assert!(env.home.join("catalog.db-wal").exists());
    assert!(env.home.join("catalog.db-shm").exists());
    let wal = std::fs::metadata(env.home.join("catalog.db-wal")).unwrap();
    assert_eq!(wal.len(), 0, "nothing is left only in the WAL");
}

#[test]
fn environment_variables_set_but_empty_count_as_unset() {
    let env = TestEnv::initialised();
    let run = env.run_with(&["status"], |c| {
        c.env("TENANTCTL_OUTPUT", "").env("TENANTCTL_BACKUP_DIR", "");
    });
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("home "), "a table: {run:?}");
    let backups = env.home.join("backups");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("backup_dir ") && l.ends_with(backups.to_str().unwrap())),
        "{run:?}"
    );
    let xdg = env.root.join("xdg");
    let run = env.run_with(&["status", "--json"], |c| {
        c.env("TENANTCTL_HOME", "").env("XDG_DATA_HOME", &xdg);
    });
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["home"], xdg.join("tenantctl").to_str().unwrap());
}

#[test]
fn help_names_each_option_s_environment_variable_but_not_its_value() {
    let env = TestEnv::new();
    let help = env.run_with(&["--help"], |c| {
        c.env("TENANTCTL_OUTPUT", "json")
            .env("TENANTCTL_BACKUP_DIR", "/srv/secret-place");
    });
    assert_eq!(help.code, 0, "{help:?}");
    for name in ["TENANTCTL_HOME", "TENANTCTL_BACKUP_DIR", "TENANTCTL_OUTPUT"] {
        assert!(
            help.stdout.contains(&format!("[env: {name}]")),
            "{name}: {}",
            help.stdout
        );
    }
    assert!(!help.stdout.contains("secret-place"), "{}", help.stdout);
}

#[test]
fn an_invalid_tenantctl_output_matters_only_where_it_is_used() {
    let env = TestEnv::initialised();
    let xml = |c: &mut std::process::Command| {
        c.env("TENANTCTL_OUTPUT", "xml");
    };
    for args in [
        &["-o", "json", "status"][..],
        &["--json", "status"],
        &["status", "-o", "json"],
    ] {
        let run = env.run_with(args, xml);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        assert_eq!(run.json()["home"], env.home.to_str().unwrap());
    }
    let completions = env.run_with(&["completions", "bash"], xml);
    assert_eq!(completions.code, 0, "{completions:?}");
    let usage = env.run_with(&["customer", "show"], xml);
    assert_eq!(usage.code, 2);
    assert!(
        usage.stderr.contains("<CUSTOMER>"),
        "the command line's own error first: {usage:?}"
    );
    let used = env.run_with(&["status"], xml);
    assert_eq!(used.code, 2);
    assert_eq!(
        used.stderr,
        "error: invalid TENANTCTL_OUTPUT 'xml' (use table, json, ndjson or csv)\n"
    );
}
