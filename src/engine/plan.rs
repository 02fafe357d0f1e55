//! What migrating one tenant means, whatever its engine: its own history against the
//! files decides what is pending, or why nothing may run (drift, or past the target).

use std::time::Instant;

use refinery::{Migration, Target};

use super::results::elapsed_ms;
use super::{Outcome, TenantRun};
use crate::migrations::MigrationId;

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
                "at V{from}, above target V{limit}; migrations are never undone"
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
