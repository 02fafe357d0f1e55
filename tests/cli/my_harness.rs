//! The throwaway MariaDB servers themselves (tests/cli/my_server.rs): they start, take
//! real logins, run side by side, and leave nothing behind.

use crate::my_server::MyServer;

#[test]
fn a_throwaway_mariadb_starts_takes_real_logins_and_is_removed_when_dropped() {
    let server = MyServer::start();
    let folder = server
        .socket_path()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    assert_eq!(server.sql("mysql", "SELECT 1 + 1"), "2");
    assert_eq!(
        server.sql("mysql", "SELECT @@skip_networking, @@character_set_server"),
        "1\tutf8mb4"
    );

    let admin = server.admin_login();
    assert!(admin.user.starts_with("admin_"));
    assert!(server.can_login("mysql", &admin.user, &admin.password));
    assert!(!server.can_login("mysql", &admin.user, "wrong"));
    assert!(!server.can_login("mysql", "root", ""), "root needs its password");
    server
        .sql_as(
            &admin.user,
            &admin.password,
            "mysql",
            "CREATE DATABASE made_by_admin",
        )
        .unwrap();
    assert_eq!(
        server.sql("mysql", "SHOW DATABASES LIKE 'made_by_admin'"),
        "made_by_admin"
    );
    // The admin passes rights on: a role it makes can use only what it was given.
    server
        .sql_as(
            &admin.user,
            &admin.password,
            "mysql",
            "CREATE USER 'tenant_a'@'localhost' IDENTIFIED BY 'pw-a';\
         GRANT ALL ON made_by_admin.* TO 'tenant_a'@'localhost'",
        )
        .unwrap();
    server
        .sql_as(
            "tenant_a",
            "pw-a",
            "made_by_admin",
            "CREATE TABLE made_by_admin.t (id int)",
        )
        .unwrap();
    let refused = server
        .sql_as("tenant_a", "pw-a", "made_by_admin", "CREATE DATABASE elsewhere")
        .unwrap_err();
    assert!(refused.contains("Access denied"), "{refused}");

    let url = server.url(&admin, "made_by_admin");
    let socket = server.socket_path().display().to_string().replace('/', "%2F");
    assert_eq!(
        url,
        format!(
            "mysql://{}:{}@localhost/made_by_admin?socket={socket}",
            admin.user, admin.password
        )
    );
    assert_eq!(
        server.url_without_password("tenant_a", "made_by_admin"),
        format!("mysql://tenant_a@localhost/made_by_admin?socket={socket}")
    );

    drop(server);
    assert!(!folder.exists(), "the server's folder outlived its handle");
}

#[test]
fn two_throwaway_mariadbs_run_at_once_and_one_can_be_killed() {
    let first = MyServer::start();
    let second = MyServer::start();
    assert_ne!(first.socket_path(), second.socket_path());
    first.sql("mysql", "CREATE DATABASE only_on_first");
    assert_eq!(
        first.sql("mysql", "SHOW DATABASES LIKE 'only_on%'"),
        "only_on_first"
    );
    assert_eq!(second.sql("mysql", "SHOW DATABASES LIKE 'only_on%'"), "");

    let admin = first.admin_login();
    first.stop();
    assert!(
        !first.can_login("mysql", &admin.user, &admin.password),
        "a stopped server took a login"
    );
    let refused = first
        .sql_as(&admin.user, &admin.password, "mysql", "SELECT 1")
        .unwrap_err();
    assert!(refused.contains("Can't connect"), "{refused}");
    assert_eq!(second.sql("mysql", "SELECT 2"), "2");

    let folder = first
        .socket_path()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    drop(first);
    assert!(!folder.exists(), "a stopped server's folder outlived its handle");
}
