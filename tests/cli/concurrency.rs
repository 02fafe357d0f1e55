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
    let children: Vec<_> = (0..6)
        .map(|i| {
            env.command()
                .args([
                    "customer",
                    "create",
                    &format!("r{i}@example.com"),
                    "R",
                    "--slug",
                    "contested",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 0 || *c == 4), "{codes:?}");
    assert_eq!(
        env.names_in(&env.home.join("tenants")),
        ["contested.db"],
        "losers leave no file"
    );
}
