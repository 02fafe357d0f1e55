//! A full disk names the file being written and the space left on its file system
//! (issue 16). The disk is "filled" with a file size limit (`ulimit -f`, in 1 KiB
//! blocks) and SIGXFSZ ignored, so writes past it fail with EFBIG: no root, no mount.

use crate::support::TestEnv;

/// Runs `tenantctl ARGS` with writes capped at `kib` KiB per file; returns the exit
/// code and stderr.
fn with_file_limit(env: &TestEnv, kib: u32, args: &str) -> (Option<i32>, String) {
    let output = env
        .shell(&format!(
            "trap '' XFSZ; ulimit -f {kib}; exec \"$TENANTCTL\" {args}"
        ))
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_names_full_disk(stderr: &str, file: &std::path::Path) {
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let said = format!("error: no space left writing {} (", file.display());
    assert!(stderr.starts_with(&said), "{stderr}");
    assert!(stderr.contains(" free on its file system)"), "{stderr}");
    assert!(stderr.contains("(free space on that file system"), "{stderr}");
}

#[test]
fn a_tenant_script_that_fills_the_database_names_the_tenant_file() {
    let env = TestEnv::fleet(&["a"]);
    let script = env.root.join("big.sql");
    // SQLite says "database or disk is full" when a database reaches its page limit,
    // exactly as on a full disk (a file size limit gives only "disk I/O error").
    std::fs::write(
        &script,
        "PRAGMA max_page_count = 1; CREATE TABLE blobs (b BLOB); \
         INSERT INTO blobs VALUES (randomblob(2 * 1024 * 1024));",
    )
    .unwrap();
    let args = format!("db sql a -f '{}' --write", script.display());
    let (code, stderr) = with_file_limit(&env, 1 << 20, &args);
    assert_eq!(code, Some(1), "{stderr}");
    assert_names_full_disk(&stderr, &env.home.join("tenants/a.db"));
    let tables = env.json(&[
        "db",
        "sql",
        "a",
        "SELECT count(*) AS n FROM sqlite_master WHERE name = 'blobs'",
    ]);
    assert_eq!(tables[0]["n"], 0, "the script was rolled back");
}

#[test]
fn a_backup_copy_that_fills_the_disk_names_the_copy() {
    let env = TestEnv::fleet(&["a"]);
    env.ok(&["db", "sql", "a", "CREATE TABLE blobs (b BLOB)", "--write"]);
    env.ok(&[
        "db",
        "sql",
        "a",
        "INSERT INTO blobs VALUES (randomblob(2 * 1024 * 1024))",
        "--write",
    ]);
    let (code, stderr) = with_file_limit(&env, 1024, "backup");
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let backups = env.home.join("backups");
    assert!(
        stderr.starts_with(&format!("error: no space left writing {}/", backups.display())),
        "{stderr}"
    );
    assert!(stderr.contains("/tenants/a.db ("), "{stderr}");
    assert!(stderr.contains(" free on its file system)"), "{stderr}");
}

#[test]
fn an_import_whose_new_databases_cannot_all_be_made_writes_nothing() {
    let env = TestEnv::initialised();
    let tree = env.root.join("legacy");
    let site = |customer: usize| {
        serde_json::json!({"name": "S", "domain": format!("s.c{customer}.test"),
            "customer": {"email": format!("owner@c{customer}.test")}})
    };
    // A first customer builds the template, so the import below only copies it, in
    // parallel, each copy past the file size limit.
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("c0.json"), site(0).to_string()).unwrap();
    env.ok(&["import", tree.to_str().unwrap()]);
    for customer in 1..=24 {
        std::fs::write(tree.join(format!("c{customer}.json")), site(customer).to_string()).unwrap();
    }
    let args = format!("import '{}'", tree.display());
    let (code, stderr) = with_file_limit(&env, 16, &args);
    assert_ne!(code, Some(0), "{stderr}");
    assert_eq!(env.count("SELECT count(*) FROM customers"), 1, "{stderr}");
    assert_eq!(env.count("SELECT count(*) FROM sites"), 1);
    let tenants: Vec<String> = std::fs::read_dir(env.home.join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(tenants.len(), 1, "no staged database is left behind: {tenants:?}");
    let again = env.json(&["import", tree.to_str().unwrap()]);
    assert_eq!(again["summary"]["created"], 24);
}
