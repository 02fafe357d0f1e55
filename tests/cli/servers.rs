//! Database servers (SPEC section 7): the server registry, against real PostgreSQL
//! clusters started for the tests.

use crate::pg_server::PgServer;

#[test]
fn a_throwaway_cluster_starts_takes_logins_and_is_removed_when_dropped() {
    let server = PgServer::start();
    let folder = server.socket_dir().parent().unwrap().to_path_buf();
    assert_eq!(server.psql("postgres", "SELECT 1 + 1"), "2");
    let admin = server.admin_login();
    assert!(server.can_login("postgres", &admin.user, &admin.password));
    assert!(!server.can_login("postgres", &admin.user, "wrong"));
    drop(server);
    assert!(!folder.exists(), "the cluster's folder outlived its handle");
}
