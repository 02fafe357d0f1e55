//! Several processes writing to one catalog at once.

use std::process::Stdio;

use crate::support::*;

#[test]
fn concurrent_creates_all_succeed_without_lock_errors() {
    let env = TestEnv::initialised();
    const WRITERS: usize = 8;
    const EACH: usize = 3;
    let children: Vec<_> = (0..WRITERS)
        .map(|w| {
            let script = (0..EACH)
                .map(|i| {
                    format!("\"$TENANTCTL\" customer create w{w}c{i}@example.com W{w} --slug w{w}c{i} -q >/dev/null || exit 1")
                })
                .collect::<Vec<_>>()
                .join("\n");
            env.shell(&script).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "a writer failed: {stderr}");
        assert!(!stderr.contains("locked"), "{stderr}");
    }
    assert_eq!(
        env.count("SELECT count(*) FROM customers"),
        (WRITERS * EACH) as i64
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE action = 'customer.create'"),
        (WRITERS * EACH) as i64
    );
    assert_eq!(env.names_in(&env.home.join("tenants")).len(), WRITERS * EACH);
    let check: String = env
        .catalog()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn racing_for_one_slug_gives_one_winner_and_conflicts() {
    let env = TestEnv::initialised();
    // The first create builds the tenant template; racing that is another matter.
    env.customer("warm@example.com", "W", &["--slug", "warm"]);
    // Several rounds, each a crowd racing for a fresh slug: a loser that looks while the
    // winner is between moving its file in and committing must still hear "taken".
    const ROUNDS: usize = 8;
    for round in 0..ROUNDS {
        let slug = format!("contested{round}");
        let emails: Vec<String> = (0..12).map(|i| format!("r{round}-{i}@example.com")).collect();
        let outcomes: Vec<(i32, String)> = all_at_once(
            emails
                .iter()
                .map(|email| env.cmd(&["customer", "create", email, "R", "--slug", &slug])),
        )
        .into_iter()
        .map(|run| (run.code, run.stderr))
        .collect();
        let winners = outcomes.iter().filter(|(code, _)| *code == 0).count();
        assert_eq!(winners, 1, "{outcomes:?}");
        let taken = format!("error: slug '{slug}' is taken (choose another with --slug)");
        for (code, stderr) in outcomes.iter().filter(|(code, _)| *code != 0) {
            assert_eq!(*code, 4, "{stderr}");
            assert_eq!(stderr.trim(), taken, "{outcomes:?}");
        }
    }
    assert_eq!(
        env.names_in(&env.home.join("tenants")),
        (0..ROUNDS)
            .map(|round| format!("contested{round}.db"))
            .chain(["warm.db".to_string()])
            .collect::<Vec<_>>(),
        "losers leave no file"
    );
}

#[test]
fn a_catalog_held_past_the_lock_timeout_is_refused_naming_the_holder() {
    let env = TestEnv::initialised();
    env.customer("a@example.com", "A", &["--slug", "acme"]);
    // What an operator's open `sqlite3 catalog.db` with `BEGIN IMMEDIATE` does.
    let holder = env.catalog();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let run = env.fails(
        &[
            "customer",
            "create",
            "b@example.com",
            "B",
            "--slug",
            "blocked",
            "--lock-timeout",
            "1s",
        ],
        6,
    );
    assert!(
        run.stderr
            .contains("locked by another tenantctl process or an open sqlite3 session"),
        "{run:?}"
    );
    let json = env.run(&[
        "key",
        "create",
        "acme",
        "--name",
        "x",
        "--lock-timeout",
        "1s",
        "--json",
    ]);
    assert_eq!(json.code, 6, "{json:?}");
    let error: serde_json::Value = serde_json::from_str(json.stderr.lines().nth(1).unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "refused");
    // Reads do not wait for a writer in WAL mode.
    env.ok(&["customer", "show", "acme", "--lock-timeout", "1s"]);
    holder.execute_batch("ROLLBACK").unwrap();

    assert_eq!(env.count("SELECT count(*) FROM customers"), 1);
    assert_eq!(env.count("SELECT count(*) FROM api_keys"), 0);
    assert_eq!(
        env.names_in(&env.home.join("tenants")),
        ["acme.db"],
        "the refused create left no file"
    );
    env.customer("b@example.com", "B", &["--slug", "blocked"]);
}

#[test]
fn first_creates_racing_to_build_the_template_all_succeed() {
    // A fresh home has no tenant template yet: every create in the crowd finds it
    // missing, and only one may build it while the others wait and copy that one.
    for round in 0..6 {
        let env = TestEnv::initialised();
        let emails: Vec<String> = (0..24).map(|i| format!("t{round}-{i}@example.com")).collect();
        let runs = all_at_once(
            emails
                .iter()
                .map(|email| env.cmd(&["customer", "create", email, "T"])),
        );
        for run in runs {
            assert!(run.code == 0 && run.stderr.is_empty(), "round {round}: {run:?}");
        }
        assert_eq!(env.names_in(&env.home.join("tenants")).len(), 24);
        // Two connections closing at once may each leave the WAL files to the other;
        // they are harmless. What must not be left is a second build.
        let templates = env.names_in(&env.home.join("templates"));
        assert!(
            templates.contains(&"tenant.db".to_string())
                && templates.iter().all(|n| n.starts_with("tenant.db")),
            "one template, no staging files: {templates:?}"
        );
    }
}
