//! What migrating one tenant means, whatever its engine: its own history against the
//! files decides what is pending, or why nothing may run (drift, or past the target).

use std::time::Instant;

use refinery::{Migration, Target};

use super::results::elapsed_ms;
use super::{Outcome, TenantRun};
use crate::migrations::{DownScript, MigrationId};

/// Either the run is decided already, or these migrations are to be applied.
pub enum Plan {
    Decided(TenantRun),
    Apply { run: TenantRun, target: Target },
}

/// Plans a tenant that has `applied` these migrations.
pub fn plan(
    applied: Vec<MigrationId>,
    migrations: &[Migration],
    target: Option<i64>,
    dry_run: bool,
    started: Instant,
) -> Plan {
    let from = applied.iter().map(|m| m.version).max().unwrap_or(0);
    let files: Vec<MigrationId> = migrations.iter().map(MigrationId::of).collect();
    if let Some(problem) = drift(&applied, &files, from) {
        let mut run = TenantRun::failed(from, Outcome::Drift, problem, started);
        run.applied = Some(applied);
        return Plan::Decided(run);
    }
    let limit = target.unwrap_or(i64::MAX);
    let pending: Vec<i64> = files
        .iter()
        .map(|f| f.version)
        .filter(|v| *v > from && *v <= limit)
        .collect();
    let mut run = TenantRun {
        from,
        to: from,
        outcome: Outcome::Current,
        error: None,
        pending: pending.clone(),
        applied: Some(applied),
        millis: 0.0,
        server_down: false,
    };
    if pending.is_empty() {
        if target.is_some_and(|t| from > t) {
            run.outcome = Outcome::Ahead;
            run.error = Some(format!(
                "at V{from}, above target V{limit}; migrations are never undone by db migrate \
                 ('tenantctl db rollback --to {limit}' undoes them)"
            ));
        }
        run.millis = elapsed_ms(started);
        return Plan::Decided(run);
    }
    if dry_run {
        run.outcome = Outcome::Pending;
        run.to = *pending.last().unwrap_or(&from);
        run.millis = elapsed_ms(started);
        return Plan::Decided(run);
    }
    let runner_target = match target.map(i32::try_from) {
        Some(Ok(version)) => Target::Version(version),
        Some(Err(_)) | None => Target::Latest,
    };
    Plan::Apply {
        run,
        target: runner_target,
    }
}

/// Either the rollback is decided already, or these down scripts are to run, in order.
pub enum Undo<'d> {
    Decided(TenantRun),
    Apply {
        run: TenantRun,
        steps: Vec<&'d DownScript>,
    },
}

/// Plans rolling back a tenant that has `applied` these migrations to version `to`:
/// the down scripts of every applied version above it, newest first. An applied
/// migration that no longer matches its file is drift, and nothing runs.
pub fn plan_rollback<'d>(
    applied: Vec<MigrationId>,
    migrations: &[Migration],
    downs: &'d [DownScript],
    to: i64,
    dry_run: bool,
    started: Instant,
) -> Undo<'d> {
    let from = applied.iter().map(|m| m.version).max().unwrap_or(0);
    let files: Vec<MigrationId> = migrations.iter().map(MigrationId::of).collect();
    if let Some(problem) = drift(&applied, &files, from) {
        let mut run = TenantRun::failed(from, Outcome::Drift, problem, started);
        run.applied = Some(applied);
        return Undo::Decided(run);
    }
    let mut undo: Vec<&MigrationId> = applied.iter().filter(|m| m.version > to).collect();
    undo.sort_by_key(|m| std::cmp::Reverse(m.version));
    let landing = applied
        .iter()
        .map(|m| m.version)
        .filter(|v| *v <= to)
        .max()
        .unwrap_or(0);
    let mut run = TenantRun {
        from,
        to: from,
        outcome: Outcome::Current,
        error: None,
        pending: undo.iter().map(|m| m.version).collect(),
        applied: Some(applied.clone()),
        millis: 0.0,
        server_down: false,
    };
    let mut steps = Vec::with_capacity(undo.len());
    for migration in &undo {
        match downs.iter().find(|d| d.version == migration.version) {
            Some(down) => steps.push(down),
            None => {
                run.outcome = Outcome::Failed;
                run.error = Some(format!(
                    "V{}__{} has no down script (V{}__{}.down.sql); nothing was run",
                    migration.version, migration.name, migration.version, migration.name
                ));
                run.millis = elapsed_ms(started);
                return Undo::Decided(run);
            }
        }
    }
    if steps.is_empty() || dry_run {
        if !steps.is_empty() {
            run.outcome = Outcome::Pending;
            run.to = landing;
        }
        run.millis = elapsed_ms(started);
        return Undo::Decided(run);
    }
    Undo::Apply { run, steps }
}

impl TenantRun {
    /// Marks a planned rollback done: at the version below its last step, with the
    /// steps' migrations gone from what it has applied.
    pub(crate) fn rolled_back(&mut self, started: Instant) {
        let applied = self.applied.take().unwrap_or_default();
        let left: Vec<MigrationId> = applied
            .into_iter()
            .filter(|m| !self.pending.contains(&m.version))
            .collect();
        self.to = left.iter().map(|m| m.version).max().unwrap_or(0);
        self.applied = Some(left);
        self.outcome = Outcome::RolledBack;
        self.millis = elapsed_ms(started);
    }
}

/// Why the applied history no longer matches the files, if it does not.
fn drift(applied: &[MigrationId], files: &[MigrationId], newest_applied: i64) -> Option<String> {
    for done in applied {
        match files.iter().find(|f| f.version == done.version) {
            None => {
                return Some(format!(
                    "V{}__{} is applied but its file is gone",
                    done.version, done.name
                ));
            }
            Some(file) if file.checksum != done.checksum => {
                return Some(format!(
                    "V{}__{} changed after it was applied",
                    done.version, done.name
                ));
            }
            Some(_) => {}
        }
    }
    files
        .iter()
        .find(|f| f.version < newest_applied && !applied.iter().any(|a| a.version == f.version))
        .map(|f| {
            format!(
                "V{}__{} is older than applied V{newest_applied} but was never applied",
                f.version, f.name
            )
        })
}
