//! Migrating one tenant database: its own history decides what is pending, all pending
//! migrations (or, rolling back, all down scripts) run in one transaction, so a
//! failure leaves it exactly where it was.

use std::path::Path;
use std::time::Instant;

use super::{applied_migrations, open_tenant};
use crate::engine::plan::{Plan, Undo, plan, plan_rollback};
use crate::engine::results::elapsed_ms;
use crate::engine::{Outcome, TenantRun};
use crate::error::{caused_by_full_disk, disk_full};
use crate::migrations::DownScript;
use crate::ops::recovery::crash_point;
use refinery::{Migration, Runner};

/// Brings the database at `path` up to `target` (default: the newest migration).
pub fn migrate(path: &Path, migrations: &[Migration], target: Option<i64>, dry_run: bool) -> TenantRun {
    let started = Instant::now();
    if !path.is_file() {
        return TenantRun::failed(
            0,
            Outcome::Failed,
            format!("database file {} is missing", path.display()),
            started,
        );
    }
    let mut conn = match open_for_migration(path) {
        Ok(conn) => conn,
        Err(err) => return TenantRun::failed(0, Outcome::Failed, err.to_string(), started),
    };
    let applied = match applied_migrations(&conn) {
        Ok(applied) => applied,
        Err(err) => return TenantRun::failed(0, Outcome::Failed, err.to_string(), started),
    };
    let (mut run, runner_target) = match plan(applied, migrations, target, dry_run, started) {
        Plan::Decided(run) => return run,
        Plan::Apply { run, target } => (run, target),
    };
    let from = run.from;
    let result = Runner::new(migrations)
        .set_grouped(true)
        .set_target(runner_target)
        .run(&mut conn);
    match result {
        Ok(_) => {
            run.outcome = Outcome::Migrated;
            run.to = *run.pending.last().unwrap_or(&from);
        }
        Err(err) => {
            run.outcome = Outcome::Failed;
            run.error = Some(if caused_by_full_disk(&err) {
                disk_full(path).to_string()
            } else {
                error_chain(&err)
            });
        }
    }
    run.applied = applied_migrations(&conn).ok();
    run.millis = elapsed_ms(started);
    run
}

/// Takes the database at `path` back to version `to`: every down script and the
/// removal of its history row in one `BEGIN IMMEDIATE` transaction, committed only
/// when all ran, so the tenant is wholly at its old version or wholly at `to`.
pub fn roll_back(
    path: &Path,
    migrations: &[Migration],
    downs: &[DownScript],
    to: i64,
    dry_run: bool,
) -> TenantRun {
    let started = Instant::now();
    if !path.is_file() {
        return TenantRun::failed(
            0,
            Outcome::Failed,
            format!("database file {} is missing", path.display()),
            started,
        );
    }
    let failed = |err: &dyn std::error::Error, from: i64| {
        let text = error_chain(err);
        TenantRun::failed(from, Outcome::Failed, text, started)
    };
    let mut conn = match open_for_migration(path) {
        Ok(conn) => conn,
        Err(err) => return failed(&err, 0),
    };
    // Taken before the history is read: a second run waits, then finds the work done.
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(err) => return failed(&err, 0),
    };
    let applied = match applied_migrations(&tx) {
        Ok(applied) => applied,
        Err(err) => return failed(&err, 0),
    };
    let (mut run, steps) = match plan_rollback(applied, migrations, downs, to, dry_run, started) {
        Undo::Decided(run) => return run,
        Undo::Apply { run, steps } => (run, steps),
    };
    for step in steps {
        let undone = tx.execute_batch(&step.sql).and_then(|()| {
            tx.execute(
                "DELETE FROM refinery_schema_history WHERE version = ?1",
                [step.version],
            )
        });
        if let Err(err) = undone {
            run.outcome = Outcome::Failed;
            run.error = Some(if caused_by_full_disk(&err) {
                disk_full(path).to_string()
            } else {
                format!("{} failed: {}", step.file_name(), error_chain(&err))
            });
            run.millis = elapsed_ms(started);
            // Dropping the transaction rolls every step back.
            return run;
        }
    }
    crash_point("rollback:before-commit");
    if let Err(err) = tx.commit() {
        run.outcome = Outcome::Failed;
        run.error = Some(error_chain(&err));
        run.millis = elapsed_ms(started);
        return run;
    }
    crash_point("rollback:committed");
    run.rolled_back(started);
    run
}

/// A connection whose commit is durable by itself (the WAL is synced at commit) and
/// that leaves the checkpoint to SQLite's next occasion instead of doing it on close:
/// one fsync a tenant instead of three, which is what bounds a fleet migration.
///
/// When no other process has the database open, the connection takes it in exclusive
/// locking mode: the WAL index then lives in this process's memory, so there is no
/// `-shm` file to create and far fewer lock calls. Whoever opens the database
/// meanwhile waits (busy timeout) until this tenant is done. If someone opened it
/// between the check and the lock, the normal shared mode is used instead.
fn open_for_migration(path: &Path) -> crate::error::Result<rusqlite::Connection> {
    if !crate::lock::sqlite_in_use(path).unwrap_or(true)
        && let Ok(conn) = open_exclusively(path)
    {
        return Ok(conn);
    }
    let conn = open_tenant(path)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    Ok(conn)
}

fn open_exclusively(path: &Path) -> crate::error::Result<rusqlite::Connection> {
    let conn = open_tenant(path)?;
    conn.busy_timeout(std::time::Duration::ZERO)?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    // The first read takes the lock, or fails at once when someone holds it.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    Ok(conn)
}

/// An error with its causes, as one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sqlite::build_fresh;

    fn m(name: &str, sql: &str) -> Migration {
        Migration::unapplied(name, sql).unwrap()
    }

    #[test]
    fn a_failing_migration_leaves_the_tenant_at_its_old_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let base = vec![m("V1__a", "CREATE TABLE a (x);")];
        build_fresh(&db, &base).unwrap();
        let mut next = base.clone();
        next.push(m("V2__b", "CREATE TABLE b (x);"));
        next.push(m(
            "V3__bad",
            "CREATE TABLE c (x); INSERT INTO nowhere VALUES (1);",
        ));
        let run = migrate(&db, &next, None, false);
        assert_eq!(run.outcome, Outcome::Failed);
        assert!(
            run.error.as_deref().unwrap().contains("nowhere"),
            "{:?}",
            run.error
        );
        assert_eq!((run.from, run.to), (1, 1));
        let conn = open_tenant(&db).unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('b', 'c')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "V2 rolled back with V3");
        assert_eq!(applied_migrations(&conn).unwrap().len(), 1);
    }

    #[test]
    fn a_migration_that_fills_the_database_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let base = vec![m("V1__a", "CREATE TABLE a (x);")];
        build_fresh(&db, &base).unwrap();
        let mut next = base.clone();
        // A page limit fails the write with SQLite's full-disk error.
        next.push(m(
            "V2__big",
            "PRAGMA max_page_count = 1; CREATE TABLE b AS SELECT randomblob(1000000) AS x;",
        ));
        let run = migrate(&db, &next, None, false);
        assert_eq!(run.outcome, Outcome::Failed);
        let error = run.error.unwrap();
        assert!(
            error.starts_with(&format!("no space left writing {} (", db.display())),
            "{error}"
        );
    }

    #[test]
    fn pending_target_dry_run_and_drift() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let v1 = m("V1__a", "CREATE TABLE a (x);");
        build_fresh(&db, std::slice::from_ref(&v1)).unwrap();
        let all = vec![
            v1.clone(),
            m("V2__b", "CREATE TABLE b (x);"),
            m("V3__c", "CREATE TABLE c (x);"),
        ];
        let dry = migrate(&db, &all, None, true);
        assert_eq!(
            (dry.outcome, dry.pending.clone(), dry.to),
            (Outcome::Pending, vec![2, 3], 3)
        );
        let to_two = migrate(&db, &all, Some(2), false);
        assert_eq!(
            (to_two.outcome, to_two.from, to_two.to),
            (Outcome::Migrated, 1, 2)
        );
        let rest = migrate(&db, &all, None, false);
        assert_eq!((rest.outcome, rest.to), (Outcome::Migrated, 3));
        assert_eq!(migrate(&db, &all, None, false).outcome, Outcome::Current);
        let changed = vec![
            m("V1__a", "CREATE TABLE a (x, y);"),
            all[1].clone(),
            all[2].clone(),
        ];
        let drifted = migrate(&db, &changed, None, false);
        assert_eq!(drifted.outcome, Outcome::Drift);
        assert!(drifted.error.unwrap().contains("V1__a changed"));
        let missing = migrate(&dir.path().join("nope.db"), &all, None, false);
        assert_eq!(missing.outcome, Outcome::Failed);
    }
}
