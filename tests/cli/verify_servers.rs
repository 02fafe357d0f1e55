//! `backup verify` of PostgreSQL tenants' archives (SPEC section 7): the checksum and
//! the archive's table of contents by default; with `--deep`, a restore into a
//! scratch database whose rows per table must be the manifest's, dropped afterwards.

use serde_json::Value;

use crate::pg_server::PgServer;
use crate::support::TestEnv;

/// A home with one tenant `acme` on server `pg` holding three rows in `items`, and a
/// backup set of it.
fn backed_up() -> (TestEnv, PgServer, Value) {
    let server = PgServer::start();
    let env = TestEnv::initialised();
    let admin = server.admin_login();
    env.json(&["server", "add", "pg", "--url", &server.url(&admin, "postgres")]);
    env.customer("acme@example.com", "acme", &["--slug", "acme", "--server", "pg"]);
    env.cmd(&["db", "sql", "acme", "--write", "-f", "-"])
        .stdin("CREATE TABLE items (id int PRIMARY KEY);\nINSERT INTO items VALUES (1), (2), (3);\n")
        .run();
    let set = env.json(&["backup", "--customer", "acme"]);
    (env, server, set)
}

fn scratch_databases(server: &PgServer) -> String {
    server.psql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'tenantctl\\_verify\\_%'",
    )
}

#[test]
fn deep_verify_restores_each_archive_and_compares_its_rows_with_the_manifest() {
    let (env, server, set) = backed_up();
    let id = set["id"].as_str().unwrap();
    let entry = &set["entries"][0];
    assert_eq!(entry["format"], "pg_dump_custom");
    assert_eq!(entry["rows"]["items"], 3);

    let quick = env.json(&["backup", "verify", id]);
    assert_eq!(quick[0]["status"], "ok");
    assert!(
        quick[0]["message"]
            .as_str()
            .unwrap()
            .contains("pg_restore --list")
    );

    let deep = env.json(&["backup", "verify", "--deep", id]);
    assert_eq!(deep[0]["status"], "ok", "{deep}");
    assert!(
        deep[0]["message"].as_str().unwrap().contains("rows match"),
        "{deep}"
    );
    assert_eq!(scratch_databases(&server), "0", "the scratch database is dropped");

    // A manifest that promises another count than the archive holds is caught only by
    // restoring: the checksum and the table of contents are fine.
    let manifest_path = env.home.join("backups").join(id).join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["entries"][0]["rows"]["items"] = Value::from(4);
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    assert_eq!(env.json(&["backup", "verify", id])[0]["status"], "ok");
    let run = env
        .cmd(&["backup", "verify", "--deep", id, "--json"])
        .expect_code(7)
        .run();
    let checks = run.json();
    assert_eq!(checks[0]["status"], "damaged");
    let message = checks[0]["message"].as_str().unwrap();
    assert!(message.contains("items: 3 rows, the backup had 4"), "{message}");
    assert_eq!(scratch_databases(&server), "0");
}

#[test]
fn an_archive_whose_server_is_down_is_unchecked_and_the_run_exits_8() {
    let (env, server, set) = backed_up();
    let id = set["id"].as_str().unwrap();
    server.stop();
    let run = env
        .cmd(&["backup", "verify", "--deep", id, "--json"])
        .expect_code(8)
        .run();
    let checks = run.json();
    assert_eq!(checks[0]["status"], "unchecked", "{checks}");
    assert!(checks[0]["message"].as_str().unwrap().contains("pg"), "{checks}");
    assert!(
        run.stderr.contains("could not be restored to check them"),
        "{run:?}"
    );
    // Without --deep the archive is still checked, from the file alone.
    assert_eq!(env.json(&["backup", "verify", id])[0]["status"], "ok");
}

#[test]
fn a_scratch_server_must_be_one_the_catalog_knows() {
    let (env, _server, set) = backed_up();
    let id = set["id"].as_str().unwrap();
    let run = env.fails(
        &["backup", "verify", "--deep", id, "--scratch-server", "nowhere"],
        3,
    );
    assert!(run.stderr.contains("nowhere"), "{run:?}");
    env.fails(&["backup", "verify", id, "--scratch-server", "pg"], 2);
    let deep = env.json(&["backup", "verify", "--deep", id, "--scratch-server", "pg"]);
    assert_eq!(deep[0]["status"], "ok");
}

#[test]
fn deep_verify_finds_a_pre_restore_copy_kept_on_its_server_or_says_it_is_gone() {
    let (env, server, set) = backed_up();
    let id = set["id"].as_str().unwrap();
    let restored = env.json(&["restore", id, "--customer", "acme"]);
    let pre = restored["pre_restore_set"].as_str().unwrap().to_string();
    let shown = env.json(&["backup", "show", &pre]);
    let kept = shown["entries"][0]["kept_as"].as_str().unwrap().to_string();

    let deep = env.json(&["backup", "verify", "--deep", &pre]);
    assert_eq!(deep[0]["status"], "ok", "{deep}");
    assert!(
        deep[0]["message"].as_str().unwrap().ends_with("it is there"),
        "{deep}"
    );

    server.psql("postgres", &format!("DROP DATABASE \"{kept}\""));
    // Only a look at the server tells: the set's folder holds nothing of it.
    assert_eq!(env.json(&["backup", "verify", &pre])[0]["status"], "ok");
    let run = env
        .cmd(&["backup", "verify", "--deep", &pre, "--json"])
        .expect_code(7)
        .run();
    let checks = run.json();
    assert_eq!(checks[0]["status"], "missing", "{checks}");
    assert!(checks[0]["message"].as_str().unwrap().contains(&kept), "{checks}");
}
