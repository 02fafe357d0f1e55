//! Commands that show their whole report and then fail: the exit code and the error
//! line on stderr, word for word. The operation decides both (`ops::Reported`); these
//! pin what the operator sees, whichever layer builds it.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::*;

/// Tenants `a` and `b`, with `b`'s file turned into a symbolic link to `a`'s: every
/// command that opens `b` refuses it and goes on with `a`.
fn fleet_with_a_broken_tenant() -> TestEnv {
    let env = TestEnv::fleet(&["a", "b"]);
    let b = env.home.join("tenants/b.db");
    std::fs::rename(&b, env.root.join("b-aside.db")).unwrap();
    std::os::unix::fs::symlink(env.home.join("tenants/a.db"), &b).unwrap();
    env
}

/// The one `error:` line of a run, after any warnings and notes.
fn error_line(run: &Run) -> &str {
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {run:?}");
    errors[0]
}

/// Runs with `--json`: expects `code`, the report on stdout, and `error` on stderr.
fn reported_failure(env: &TestEnv, args: &[&str], code: i32, error: &str) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let run = env.run(&all);
    assert_eq!(run.code, code, "{run:?}");
    assert_eq!(error_line(&run), error, "{run:?}");
    run.json()
}

#[test]
fn fleet_commands_show_every_tenant_then_exit_partial_or_verification() {
    let env = fleet_with_a_broken_tenant();

    let vacuumed = reported_failure(
        &env,
        &["db", "vacuum", "--all"],
        8,
        "error: vacuum failed on 1 of 2 tenants (see the error column)",
    );
    assert_eq!(vacuumed.as_array().unwrap().len(), 2, "{vacuumed}");

    let fleet = reported_failure(
        &env,
        &["db", "sql", "--all", "SELECT 1 AS one"],
        8,
        "error: the query failed on 1 of 2 tenants",
    );
    assert_eq!(fleet["rows"], json!([{"tenant": "a", "one": 1}]));

    let migrated = reported_failure(
        &env,
        &["db", "migrate"],
        8,
        "error: 1 of 2 tenants failed, 0 not started (see the error column; fix the migration and \
         run 'tenantctl db migrate' again)",
    );
    assert_eq!(migrated.as_array().unwrap().len(), 2, "{migrated}");

    let status = reported_failure(
        &env,
        &["db", "status", "--check"],
        7,
        "error: 1 tenant database failed the check (see the check column; 'tenantctl doctor' says more)",
    );
    assert_eq!(status.as_array().unwrap().len(), 2, "{status}");
}

#[test]
fn doctor_lists_every_check_then_counts_the_problems() {
    let env = fleet_with_a_broken_tenant();
    let fails = |checks: &Value| {
        checks
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "fail")
            .count()
    };
    let run = env.run(&["doctor", "--json"]);
    assert_eq!(run.code, 7, "{run:?}");
    let count = fails(&run.json());
    assert!(count >= 1, "{run:?}");
    let problems = if count == 1 { "problem" } else { "problems" };
    assert_eq!(
        error_line(&run),
        format!(
            "error: doctor found {count} {problems} (run 'tenantctl doctor --fix' for what is safe to repair)"
        )
    );

    let run = env.run(&["doctor", "--fix", "--json"]);
    assert_eq!(run.code, 7, "a link is not safe to repair: {run:?}");
    let count = fails(&run.json());
    let problems = if count == 1 { "problem" } else { "problems" };
    assert_eq!(
        error_line(&run),
        format!("error: doctor found {count} {problems} (the rest needs a person)")
    );
}

#[test]
fn a_backup_that_leaves_a_tenant_out_is_partial_and_says_which() {
    let env = fleet_with_a_broken_tenant();
    let run = env.run(&["backup", "--json"]);
    assert_eq!(run.code, 8, "{run:?}");
    let set = run.json();
    let id = set["id"].as_str().unwrap();
    assert_eq!(set["skipped"][0]["customer"], "b", "{set}");
    assert_eq!(
        error_line(&run),
        format!(
            "error: set {id} is complete but leaves out 1 tenant database that could not be backed up \
             (run 'tenantctl doctor')"
        )
    );
    assert!(
        run.stderr.starts_with("warning: b: "),
        "the tenant left out is named first: {run:?}"
    );
}

#[test]
fn verify_lists_every_file_then_names_the_first_bad_one() {
    let env = TestEnv::fleet(&["a", "b"]);
    let set = env.json(&["backup"]);
    let id = set["id"].as_str().unwrap();
    let victim = Path::new(set["path"].as_str().unwrap()).join("tenants/b.db");
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0xFF;
    std::fs::write(&victim, bytes).unwrap();

    let run = env.run(&["backup", "verify", id, "--json"]);
    assert_eq!(run.code, 7, "{run:?}");
    let files = run.json().as_array().unwrap().len();
    assert_eq!(
        error_line(&run),
        format!("error: 1 of {files} files failed verification, first {id}/tenants/b.db: mismatch")
    );
}

#[test]
fn quota_check_lists_every_row_then_names_each_overage() {
    let env = TestEnv::fleet(&["a", "b"]);
    for (slug, domain) in [("a", "one.a.test"), ("a", "two.a.test"), ("b", "one.b.test")] {
        env.json(&["site", "create", slug, "S", "--domain", domain]);
    }
    env.ok(&["customer", "update", "a", "--max-sites", "1", "--force"]);
    let rows = reported_failure(&env, &["quota", "check"], 5, "error: over quota: a sites");
    assert!(
        rows.as_array().unwrap().iter().any(|r| r["customer"] == "b"),
        "{rows}"
    );
    env.ok(&["customer", "update", "b", "--max-sites", "0", "--force"]);
    reported_failure(
        &env,
        &["quota", "check"],
        5,
        "error: over quota: a sites, b sites",
    );
}

#[test]
fn an_import_with_an_invalid_file_reports_every_file_then_fails() {
    let env = TestEnv::initialised();
    let dir = env.root.join("legacy");
    std::fs::create_dir_all(&dir).unwrap();
    let good = json!({"siteId": "good", "name": "Good", "domain": "good.test",
        "customer": {"email": "good@example.com", "name": "Good"}});
    let bad = json!({"name": "Bad", "domain": "not a domain", "customer": {"email": "x@y.test"}});
    std::fs::write(dir.join("good.json"), good.to_string()).unwrap();
    std::fs::write(dir.join("bad.json"), bad.to_string()).unwrap();
    let folder = dir.to_str().unwrap();

    let cases: [(&[&str], i32, &str); 4] = [
        (
            &["--dry-run"],
            9,
            "error: 1 of 2 files are invalid (dry run: nothing written)",
        ),
        (
            &["--dry-run", "--continue-on-error"],
            8,
            "error: 1 of 2 files would fail (dry run: nothing written)",
        ),
        (
            &[],
            9,
            "error: 1 of 2 files are invalid; nothing was written (fix them, or pass \
             --continue-on-error to import the valid ones)",
        ),
        (
            &["--continue-on-error"],
            8,
            "error: 1 of 2 files failed; the valid ones were imported",
        ),
    ];
    for (flags, code, error) in cases {
        let mut args = vec!["import", folder];
        args.extend_from_slice(flags);
        let report = reported_failure(&env, &args, code, error);
        assert_eq!(report["files"].as_array().unwrap().len(), 2, "{report}");
    }
    assert_eq!(
        env.count("SELECT count(*) FROM customers"),
        1,
        "only the last run wrote"
    );
}
