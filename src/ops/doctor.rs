//! `doctor [--fix]`: deep checks of the catalog and every tenant file, and repairs that
//! cannot lose data.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Actor, Reported, config};
use crate::backup::restore;
use crate::catalog::Catalog;
use crate::catalog::states::{CatalogMigrationStatus, TenantMigrationStatus};
use crate::catalog::tenants::{self, CleanCheck, TenantRow};
use crate::engine::{AccessFinding, AccessProblem, EngineKind, Engines, Placement, sqlite};
use crate::error::{Error, IoContext, Result};
use crate::fan_out::{DEFAULT_JOBS_PER_SERVER, Load, default_jobs, fan_out_all_in_lanes};
use crate::files::{self, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};
use crate::home::Home;
use crate::lock;
use crate::migrations::{self, MigrationId};
use crate::ops::recovery;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    /// It was wrong and `--fix` repaired it.
    Fixed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub target: String,
    pub status: Verdict,
    pub message: String,
}

/// What `--fix` does with a tenant database that no customer owns: nothing unless the
/// operator chose (`--adopt` or `--trash`), since either choice may be wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unowned {
    #[default]
    Leave,
    Adopt,
    Trash,
}

/// Collects findings; a repair is attempted only when `fix` is set.
struct Doctor {
    fix: bool,
    checks: Vec<Check>,
}

impl Doctor {
    fn add(&mut self, check: &str, target: impl Into<String>, status: Verdict, message: impl Into<String>) {
        self.checks.push(Check {
            check: check.to_string(),
            target: target.into(),
            status,
            message: message.into(),
        });
    }

    /// Records a problem, repairing it with `repair` under `--fix`.
    fn problem(
        &mut self,
        check: &str,
        target: impl Into<String>,
        status: Verdict,
        message: String,
        repair: Option<&dyn Fn() -> Result<String>>,
    ) {
        match repair {
            Some(repair) if self.fix => match repair() {
                Ok(done) => self.add(check, target, Verdict::Fixed, format!("{message}; {done}")),
                Err(err) => self.add(check, target, status, format!("{message}; repair failed: {err}")),
            },
            _ => self.add(check, target, status, message),
        }
    }

    /// Records a finding of the read-only pass, making its repair under `--fix`.
    fn record(&mut self, finding: Finding) {
        let Finding {
            check,
            target,
            status,
            message,
            repair,
        } = finding;
        match repair {
            Some(repair) => {
                let run = || repair.run();
                self.problem(check, target, status, message, Some(&run));
            }
            None => self.problem(check, target, status, message, None),
        }
    }
}

/// A finding of the read-only pass over the tenants, which runs in parallel; the
/// findings are recorded, and their repairs made, afterwards in customer order.
struct Finding {
    check: &'static str,
    target: String,
    status: Verdict,
    message: String,
    repair: Option<Repair>,
}

impl Finding {
    fn new(
        check: &'static str,
        target: impl Into<String>,
        status: Verdict,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            check,
            target: target.into(),
            status,
            message: message.into(),
            repair: None,
        }
    }
}

/// What `--fix` does about a finding.
enum Repair {
    Mode {
        path: PathBuf,
        wanted: u32,
    },
    /// A crash while deleting can leave the file in the trash under a live row.
    FromTrash {
        trashed: PathBuf,
        path: PathBuf,
    },
    RecordVersion {
        catalog: PathBuf,
        customer_id: i64,
        applied: Vec<MigrationId>,
        actual: i64,
    },
    /// The version is right but the ledger is not: only the ledger is rewritten, so a
    /// failed last migration stays on record.
    RecordLedger {
        catalog: PathBuf,
        customer_id: i64,
        applied: Vec<MigrationId>,
    },
    /// Accepts a down script edited since its migration was applied, as it is now.
    AcceptDown {
        catalog: PathBuf,
        customer_id: i64,
        version: i64,
        checksum: String,
    },
    /// Puts back what provisioning set up about who reaches a server tenant. The
    /// tenant is reached again then: a tenant database held until the repairs would
    /// hold its server connection too.
    Access {
        home: Home,
        placement: Placement,
        problem: AccessProblem,
    },
}

impl Repair {
    fn run(&self) -> Result<String> {
        match self {
            Repair::Mode { path, wanted } => {
                files::restrict_mode(path, *wanted).map(|_| format!("set to {wanted:o}"))
            }
            Repair::FromTrash { trashed, path } => {
                files::move_database(trashed, path).map(|_| "moved back from the trash".to_string())
            }
            Repair::RecordVersion {
                catalog,
                customer_id,
                applied,
                actual,
            } => {
                let mut conn = Catalog::open(catalog)?;
                conn.write(|tx| {
                    tenants::record_applied(tx, *customer_id, applied)?;
                    tenants::record_run(tx, *customer_id, *actual, TenantMigrationStatus::Ok, None)
                })?;
                Ok(format!("recorded V{actual}"))
            }
            Repair::RecordLedger {
                catalog,
                customer_id,
                applied,
            } => {
                let mut conn = Catalog::open(catalog)?;
                conn.write(|tx| tenants::record_applied(tx, *customer_id, applied))?;
                Ok("ledger rewritten from the database's history".to_string())
            }
            Repair::AcceptDown {
                catalog,
                customer_id,
                version,
                checksum,
            } => {
                let mut conn = Catalog::open(catalog)?;
                conn.write(|tx| tenants::accept_down_script(tx, *customer_id, *version, checksum))?;
                Ok(format!("accepted the down script of V{version} as it is now"))
            }
            Repair::Access {
                home,
                placement,
                problem,
            } => Engines::new(home).tenant(placement)?.repair_access(*problem),
        }
    }
}

/// Runs every check, with `fix` repairing what is safe to repair. A check that failed
/// and stayed failed makes the outcome a verification failure, exit 7.
pub fn doctor(
    actor: Actor<'_>,
    backup_dir: &Path,
    fix: bool,
    full: bool,
    unowned: Unowned,
) -> Result<Reported<Vec<Check>>> {
    let checks = run_checks(actor, backup_dir, fix, full, unowned)?;
    let count = checks.iter().filter(|c| c.status == Verdict::Fail).count();
    let failure = (count > 0).then(|| {
        Error::verification(format!(
            "doctor found {count} problem{}",
            if count == 1 { "" } else { "s" }
        ))
        .with_hint(if fix {
            "the rest needs a person"
        } else {
            "run 'tenantctl doctor --fix' for what is safe to repair"
        })
    });
    Ok(Reported::new(checks, failure))
}

fn run_checks(
    actor: Actor<'_>,
    backup_dir: &Path,
    fix: bool,
    full: bool,
    unowned: Unowned,
) -> Result<Vec<Check>> {
    let home = actor.home;
    let mut doctor = Doctor {
        fix,
        checks: Vec::new(),
    };
    check_mode(&mut doctor, home.root(), PRIVATE_DIR_MODE);
    let catalog_path = home.catalog();
    if !catalog_path.is_file() {
        doctor.add(
            "catalog.present",
            path_text(&catalog_path),
            Verdict::Fail,
            "no catalog; run 'tenantctl init'",
        );
        return Ok(doctor.checks);
    }
    check_mode(&mut doctor, &catalog_path, PRIVATE_FILE_MODE);
    let mut catalog = match Catalog::open(&catalog_path) {
        Ok(catalog) => catalog,
        Err(err) => {
            doctor.add(
                "catalog.open",
                path_text(&catalog_path),
                Verdict::Fail,
                err.to_string(),
            );
            return Ok(doctor.checks);
        }
    };
    if !catalog_checks(&mut doctor, &catalog)? {
        return Ok(doctor.checks);
    }
    // First, so that the checks below see what the repairs leave.
    operation_checks(&mut doctor, &catalog, home)?;
    for dir in [home.tenants_dir(), home.trash_dir()] {
        if dir.is_dir() {
            check_mode(&mut doctor, &dir, PRIVATE_DIR_MODE);
        }
    }
    let files = match migrations::load_migrations(&config::tenant_migrations_dir(&catalog, home)?) {
        Ok(migrations) => {
            doctor.add(
                "tenant_migrations",
                "",
                Verdict::Ok,
                format!("{} migrations", migrations.len()),
            );
            Some(migrations.iter().map(MigrationId::of).collect::<Vec<_>>())
        }
        Err(err) => {
            doctor.add("tenant_migrations", "", Verdict::Fail, err.to_string());
            None
        }
    };
    let live = tenants::live_tenants(catalog.conn(), None)?;
    // Server tenants are held to their engine's own migration files.
    let server_files: Vec<(EngineKind, Vec<MigrationId>)> = [EngineKind::Postgres, EngineKind::Mysql]
        .into_iter()
        .filter(|engine| live.iter().any(|t| t.placement.engine == *engine))
        .filter_map(|engine| {
            let dir = config::tenant_migrations_dir(&catalog, home).ok()?;
            let set = migrations::load_engine_migrations(&dir, engine, &[EngineKind::Sqlite]).ok()?;
            Some((engine, set.iter().map(MigrationId::of).collect()))
        })
        .collect();
    let ledgers = tenants::ledgers(catalog.conn())?;
    let stamps = if full {
        HashMap::new()
    } else {
        tenants::clean_checks(catalog.conn())?
    };
    let engines = Engines::new(home);
    let catalog_file = catalog.path().to_path_buf();
    // Server tenants are checked a few at a time per server, never a connection each.
    let lanes = engines.lanes(
        live.iter().map(|t| &t.placement),
        default_jobs(Load::Compute),
        usize::from(DEFAULT_JOBS_PER_SERVER),
    );
    let reports = fan_out_all_in_lanes(&live, &lanes, |tenant| {
        let last_clean = stamps.get(&tenant.customer_id);
        let engine_files = match tenant.placement.engine {
            EngineKind::Sqlite => files.as_deref(),
            engine => server_files
                .iter()
                .find(|(kind, _)| *kind == engine)
                .map(|(_, files)| files.as_slice()),
        };
        let ledger = ledgers.get(&tenant.customer_id).map_or(&[][..], Vec::as_slice);
        let known = Known {
            files: engine_files,
            ledger,
            last_clean,
        };
        tenant_checks(&engines, home, &catalog_file, tenant, &known)
    });
    let mut tally = TenantTally::default();
    let mut stamped = Vec::with_capacity(live.len());
    for (tenant, report) in live.iter().zip(reports) {
        let report = report?;
        let first = doctor.checks.len();
        for finding in report.findings {
            doctor.record(finding);
        }
        tally.count(&doctor.checks[first..], report.integrity == Integrity::Unchanged);
        stamped.push((tenant.customer_id, report.integrity));
    }
    // Only spares later runs work: a catalog that cannot take the stamps now just
    // means those tenants are checked again next time.
    let _ = record_integrity(&mut catalog, &stamped);
    doctor.add(
        "tenants",
        format!("{} tenants", live.len()),
        tally.verdict(),
        tally.summary(live.len()),
    );
    down_script_checks(&mut doctor, &catalog, home, &live)?;
    backup_checks(&mut doctor, backup_dir, &live)?;
    deleted_checks(&mut doctor, &catalog, home)?;
    template_checks(&mut doctor, home);
    for finding in super::doctor_servers::server_checks(&catalog, home)? {
        let status = match (finding.ok, finding.fails) {
            (true, _) => Verdict::Ok,
            (false, true) => Verdict::Fail,
            (false, false) => Verdict::Warn,
        };
        let repair = finding.repair.as_deref();
        doctor.problem(finding.check, finding.target, status, finding.message, repair);
    }
    orphan_checks(&mut doctor, &catalog, home)?;
    unowned_checks(&mut doctor, &catalog, actor, backup_dir, unowned)?;
    leftover_checks(&mut doctor, home, backup_dir);
    Ok(doctor.checks)
}

/// Down scripts edited since their migration was applied (drift: a rollback would run
/// other text than the one that shipped with the migration), or gone since.
fn down_script_checks(doctor: &mut Doctor, catalog: &Catalog, home: &Home, live: &[TenantRow]) -> Result<()> {
    let recorded = tenants::down_checksums(catalog.conn())?;
    if recorded.is_empty() {
        return Ok(());
    }
    let dir = config::tenant_migrations_dir(catalog, home)?;
    let mut downs: Vec<(EngineKind, Vec<migrations::DownScript>)> = Vec::new();
    for engine in [EngineKind::Sqlite, EngineKind::Postgres, EngineKind::Mysql] {
        if !live.iter().any(|t| t.placement.engine == engine) {
            continue;
        }
        let own = migrations::engine_dir(&dir, engine);
        let loaded =
            migrations::load_migrations(&own).and_then(|ups| migrations::load_down_scripts(&own, &ups));
        match loaded {
            Ok(found) => downs.push((engine, found)),
            // A folder that cannot be read is the tenant_migrations check's to report.
            Err(err) => doctor.add(
                "tenant_migrations",
                engine.as_str(),
                Verdict::Fail,
                err.to_string(),
            ),
        }
    }
    for tenant in live {
        let Some(files) = downs.iter().find(|(e, _)| *e == tenant.placement.engine) else {
            continue;
        };
        for (version, checksum) in recorded.get(&tenant.customer_id).into_iter().flatten() {
            match files.1.iter().find(|d| d.version == *version) {
                Some(file) if file.checksum == *checksum => {}
                Some(file) => doctor.record(Finding {
                    repair: Some(Repair::AcceptDown {
                        catalog: catalog.path().to_path_buf(),
                        customer_id: tenant.customer_id,
                        version: *version,
                        checksum: file.checksum.clone(),
                    }),
                    ..Finding::new(
                        "tenant.drift",
                        &tenant.slug,
                        Verdict::Fail,
                        format!(
                            "{} changed after V{version} was applied; 'db rollback' refuses it until \
                             the change is accepted (--fix) or undone",
                            file.file_name()
                        ),
                    )
                }),
                None => doctor.record(Finding::new(
                    "tenant.drift",
                    &tenant.slug,
                    Verdict::Warn,
                    format!("the down script of V{version} is gone since V{version} was applied; no rollback can pass it"),
                )),
            }
        }
    }
    Ok(())
}

/// What doctor learnt of a tenant's integrity, to keep in the catalog.
#[derive(Debug, PartialEq, Eq)]
enum Integrity {
    /// Its change stamp is the one of its last clean check, which was not repeated.
    Unchanged,
    /// It passed the check as of this stamp.
    Passed(CleanCheck),
    /// It passed, but the engine could not say as of what, or it was not checked.
    NotStamped,
    /// It failed the check: the next run checks it again whatever its stamp says.
    Failed,
}

/// Records the stamps of tenants that passed and forgets those of tenants that
/// failed, in one write, and none when nothing changed.
fn record_integrity(catalog: &mut Catalog, stamped: &[(i64, Integrity)]) -> Result<()> {
    let changed =
        |(_, integrity): &&(i64, Integrity)| matches!(integrity, Integrity::Passed(_) | Integrity::Failed);
    if !stamped.iter().any(|s| changed(&s)) {
        return Ok(());
    }
    catalog.write(|tx| {
        for (customer_id, integrity) in stamped.iter().filter(changed) {
            match integrity {
                Integrity::Passed(clean) => tenants::record_clean_check(tx, *customer_id, clean)?,
                _ => tenants::forget_check_stamp(tx, *customer_id)?,
            }
        }
        Ok(())
    })
}

/// Live tenants by the worst verdict of their own checks, for the summary row.
#[derive(Debug, Default)]
struct TenantTally {
    healthy: usize,
    failed: usize,
    warned: usize,
    repaired: usize,
    /// Tenants whose integrity check was skipped as unchanged since it last passed.
    unchanged: usize,
}

impl TenantTally {
    fn count(&mut self, checks: &[Check], unchanged: bool) {
        self.unchanged += usize::from(unchanged);
        let has = |verdict: Verdict| checks.iter().any(|c| c.status == verdict);
        if has(Verdict::Fail) {
            self.failed += 1;
        } else if has(Verdict::Warn) {
            self.warned += 1;
        } else if has(Verdict::Fixed) {
            self.repaired += 1;
        } else {
            self.healthy += 1;
        }
    }

    /// `18 of 20 without problems; 2 failed`: every tenant counted once, by its worst.
    fn summary(&self, total: usize) -> String {
        let mut text = format!("{} of {total} without problems", self.healthy);
        for (count, what) in [
            (self.failed, "failed"),
            (self.warned, "with warnings"),
            (self.repaired, "repaired"),
        ] {
            if count > 0 {
                text.push_str(&format!("; {count} {what}"));
            }
        }
        if self.unchanged > 0 {
            text.push_str(&format!(
                "; quick_check skipped for {} unchanged since their last clean check (--full checks them)",
                self.unchanged
            ));
        }
        text
    }

    /// Never "ok" beside tenants that are not; the tenants' own rows carry the failures,
    /// so the summary does not count as one more.
    fn verdict(&self) -> Verdict {
        if self.failed + self.warned > 0 {
            Verdict::Warn
        } else {
            Verdict::Ok
        }
    }
}

/// Integrity, foreign keys and migrations; false when the rest cannot be checked.
fn catalog_checks(doctor: &mut Doctor, catalog: &Catalog) -> Result<bool> {
    let target = path_text(catalog.path());
    let integrity = catalog.integrity_check()?;
    if integrity == ["ok"] {
        doctor.add("catalog.integrity", &target, Verdict::Ok, "integrity_check ok");
    } else {
        doctor.add("catalog.integrity", &target, Verdict::Fail, integrity.join("; "));
    }
    let violations = catalog.foreign_key_violations()?;
    if violations.is_empty() {
        doctor.add(
            "catalog.foreign_keys",
            &target,
            Verdict::Ok,
            "foreign_key_check ok",
        );
    } else {
        doctor.add(
            "catalog.foreign_keys",
            &target,
            Verdict::Fail,
            format!("{} violations", violations.len()),
        );
    }
    let migrations = catalog.migrations()?;
    let pending: Vec<String> = migrations
        .iter()
        .filter(|m| m.status != CatalogMigrationStatus::Applied)
        .map(|m| format!("V{} {}", m.version, m.status))
        .collect();
    if pending.is_empty() {
        doctor.add(
            "catalog.migrations",
            &target,
            Verdict::Ok,
            format!("schema version {}", catalog.schema_version()?),
        );
        Ok(true)
    } else {
        doctor.add(
            "catalog.migrations",
            &target,
            Verdict::Fail,
            format!("{}; run 'tenantctl migrate'", pending.join(", ")),
        );
        Ok(false)
    }
}

fn check_mode(doctor: &mut Doctor, path: &Path, wanted: u32) {
    if let Some(finding) = mode_finding(path, wanted) {
        doctor.record(finding);
    }
}

fn mode_finding(path: &Path, wanted: u32) -> Option<Finding> {
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.permissions().mode() & 0o777;
    (mode & !wanted != 0).then(|| Finding {
        repair: Some(Repair::Mode {
            path: path.to_path_buf(),
            wanted,
        }),
        ..Finding::new(
            "permissions",
            path_text(path),
            Verdict::Fail,
            format!("mode {mode:o}, wanted {wanted:o}"),
        )
    })
}

/// One tenant's findings, and what the catalog should keep of its integrity check.
struct TenantReport {
    findings: Vec<Finding>,
    integrity: Integrity,
}

impl TenantReport {
    fn fail(mut self, check: &'static str, target: &str, message: impl Into<String>) -> Self {
        self.findings
            .push(Finding::new(check, target, Verdict::Fail, message));
        self
    }
}

/// What doctor holds a tenant to, besides its catalog row.
struct Known<'a> {
    /// Its engine's migration files, when they could be read.
    files: Option<&'a [MigrationId]>,
    /// The catalog's ledger of what it has applied.
    ledger: &'a [MigrationId],
    /// Its last clean integrity check; `None` under `--full`.
    last_clean: Option<&'a CleanCheck>,
}

/// Checks one live tenant without changing anything (repairs are the caller's, after).
/// While its change stamp is the one of its last clean check, the database is neither
/// checked nor opened: what it had applied then it still has.
fn tenant_checks(
    engines: &Engines,
    home: &Home,
    catalog_path: &Path,
    tenant: &TenantRow,
    known: &Known<'_>,
) -> Result<TenantReport> {
    let Known {
        files,
        ledger,
        last_clean,
    } = *known;
    let mut report = TenantReport {
        findings: Vec::new(),
        integrity: Integrity::NotStamped,
    };
    let database = engines.tenant(&tenant.placement)?;
    let path = PathBuf::from(&tenant.placement.location);
    if let Err(err) = database.check_own() {
        return Ok(report.fail("tenant.symlink", &tenant.slug, err.to_string()));
    }
    // Asked before presence, whose check may then reuse the connection; a server that
    // cannot be asked this cannot say whether the tenant is there either.
    let access = match database.access_problems() {
        Ok(access) => access,
        Err(err) => return Ok(report.fail("tenant.reachable", &tenant.slug, err.to_string())),
    };
    let present = match database.presence() {
        Ok(present) => present,
        Err(err) => return Ok(report.fail("tenant.reachable", &tenant.slug, err.to_string())),
    };
    if !present {
        let trashed = home.trashed_tenant_db(&tenant.slug, tenant.customer_id)?;
        let repair = trashed.is_file().then(|| Repair::FromTrash {
            trashed,
            path: path.clone(),
        });
        report.findings.push(Finding {
            repair,
            ..Finding::new(
                "tenant.present",
                &tenant.slug,
                Verdict::Fail,
                format!("{} is missing", database.describe()),
            )
        });
        return Ok(report);
    }
    report.findings.extend(
        access
            .into_iter()
            .map(|found| access_finding(home, tenant, found)),
    );
    if tenant.placement.engine == EngineKind::Sqlite {
        report.findings.extend(mode_finding(&path, PRIVATE_FILE_MODE));
        for side in files::sqlite_side_files(&path) {
            report.findings.extend(mode_finding(&side, PRIVATE_FILE_MODE));
        }
    }
    // Taken before the check: a change during it makes the next run check again.
    let stamp = database.change_stamp();
    let applied = match last_clean.filter(|clean| stamp.as_ref() == Some(&clean.stamp)) {
        Some(clean) => {
            report.integrity = Integrity::Unchanged;
            clean.applied.clone()
        }
        None => {
            let applied = match database.check_then_applied() {
                Err(err) => {
                    report.integrity = Integrity::Failed;
                    return Ok(report.fail("tenant.quick_check", &tenant.slug, err.to_string()));
                }
                Ok(Err(err)) => return Ok(report.fail("tenant.open", &tenant.slug, err.to_string())),
                Ok(Ok(applied)) => applied,
            };
            if let Some(stamp) = stamp {
                report.integrity = Integrity::Passed(CleanCheck {
                    stamp,
                    applied: applied.clone(),
                });
            }
            applied
        }
    };
    let actual = applied.iter().map(|m| m.version).max().unwrap_or(0);
    if actual != tenant.schema_version {
        // A wrong record makes `db migrate` skip or misjudge the tenant: a failure.
        report.findings.push(Finding {
            repair: Some(Repair::RecordVersion {
                catalog: catalog_path.to_path_buf(),
                customer_id: tenant.customer_id,
                applied: applied.clone(),
                actual,
            }),
            ..Finding::new(
                "tenant.version",
                &tenant.slug,
                Verdict::Fail,
                format!("file is at V{actual}, catalog says V{}", tenant.schema_version),
            )
        });
    } else if let Some(message) = ledger_disagreement(ledger, &applied) {
        // The version finding's repair rewrites the ledger too, hence only here.
        report.findings.push(Finding {
            repair: Some(Repair::RecordLedger {
                catalog: catalog_path.to_path_buf(),
                customer_id: tenant.customer_id,
                applied: applied.clone(),
            }),
            ..Finding::new("tenant.ledger", &tenant.slug, Verdict::Fail, message)
        });
    }
    if let Some(files) = files {
        for done in &applied {
            let message = match files.iter().find(|f| f.version == done.version) {
                Some(file) if file.checksum == done.checksum => continue,
                Some(_) => format!("V{}__{} changed after it was applied", done.version, done.name),
                None => format!("V{}__{} is applied but its file is gone", done.version, done.name),
            };
            report
                .findings
                .push(Finding::new("tenant.drift", &tenant.slug, Verdict::Fail, message));
        }
        let newest = files.iter().map(|f| f.version).max().unwrap_or(0);
        if actual < newest {
            report.findings.push(Finding::new(
                "tenant.behind",
                &tenant.slug,
                Verdict::Warn,
                format!("at V{actual}, newest is V{newest}; run 'tenantctl db migrate'"),
            ));
        }
    }
    if tenant.migration_status == TenantMigrationStatus::Failed {
        let error = tenant.migration_error.clone().unwrap_or_default();
        report.findings.push(Finding::new(
            "tenant.last_migration",
            &tenant.slug,
            Verdict::Warn,
            format!("last migration failed: {error}"),
        ));
    }
    Ok(report)
}

/// A server tenant reachable by more than its own role: a failure, since the server no
/// longer keeps the tenant to itself.
fn access_finding(home: &Home, tenant: &TenantRow, found: AccessFinding) -> Finding {
    let check = match found.problem {
        AccessProblem::NotOwnedByTenantRole => "tenant.owner",
        AccessProblem::OpenToPublic => "tenant.access",
    };
    Finding {
        repair: Some(Repair::Access {
            home: home.clone(),
            placement: tenant.placement.clone(),
            problem: found.problem,
        }),
        ..Finding::new(check, &tenant.slug, Verdict::Fail, found.message)
    }
}

/// How the catalog's ledger of a tenant differs from the history in its database, the
/// source of truth; `None` when they agree on every version and checksum. A wrong
/// ledger makes `db migrate` skip tenants or misjudge drift.
fn ledger_disagreement(ledger: &[MigrationId], applied: &[MigrationId]) -> Option<String> {
    let recorded: HashMap<i64, &MigrationId> = ledger.iter().map(|m| (m.version, m)).collect();
    let done: HashMap<i64, &MigrationId> = applied.iter().map(|m| (m.version, m)).collect();
    let mut versions: Vec<i64> = recorded.keys().chain(done.keys()).copied().collect();
    versions.sort_unstable();
    versions.dedup();
    let differences: Vec<String> = versions
        .into_iter()
        .filter_map(|version| match (recorded.get(&version), done.get(&version)) {
            (Some(r), Some(d)) if r.checksum == d.checksum => None,
            (Some(_), Some(_)) => Some(format!("V{version} has another checksum in the ledger")),
            (Some(_), None) => Some(format!("V{version} is in the ledger but not applied")),
            (None, _) => Some(format!("V{version} is applied but not in the ledger")),
        })
        .collect();
    (!differences.is_empty()).then(|| {
        format!(
            "the catalog's ledger disagrees with the database's history: {}",
            differences.join("; ")
        )
    })
}

/// How recent a tenant's newest backup must be before doctor warns.
pub const BACKUP_MAX_AGE: chrono::Duration = chrono::Duration::hours(48);

/// Warns about tenants with no backup newer than [`BACKUP_MAX_AGE`].
fn backup_checks(doctor: &mut Doctor, backup_dir: &Path, live: &[TenantRow]) -> Result<()> {
    let cutoff = chrono::Utc::now() - BACKUP_MAX_AGE;
    let mut fresh = HashSet::new();
    for set in crate::backup::list_sets(backup_dir)?.iter().rev() {
        if set.manifest.created().is_none_or(|c| c < cutoff) {
            break;
        }
        // A damaged copy kept before a restore is no backup of the tenant.
        fresh.extend(
            set.manifest
                .entries
                .iter()
                .filter(|e| e.damaged.is_none())
                .filter_map(|e| e.customer_id),
        );
    }
    let stale: Vec<&str> = live
        .iter()
        .filter(|t| !fresh.contains(&t.customer_id))
        .map(|t| t.slug.as_str())
        .collect();
    if stale.is_empty() {
        doctor.add(
            "backups",
            path_text(backup_dir),
            Verdict::Ok,
            "every tenant has a backup newer than 48 hours",
        );
    } else {
        let names = stale.iter().take(10).copied().collect::<Vec<_>>().join(", ");
        let more = if stale.len() > 10 {
            format!(" and {} more", stale.len() - 10)
        } else {
            String::new()
        };
        doctor.add(
            "backups",
            path_text(backup_dir),
            Verdict::Warn,
            format!(
                "{} tenants have no backup newer than 48 hours: {names}{more}",
                stale.len()
            ),
        );
    }
    Ok(())
}

/// Deleted customers keep their file in the trash until purged.
fn deleted_checks(doctor: &mut Doctor, catalog: &Catalog, home: &Home) -> Result<()> {
    for (id, slug, placement) in crate::catalog::customers::deleted_placements(catalog.conn())? {
        let path = PathBuf::from(&placement.location);
        if path.is_file() {
            check_mode(doctor, &path, PRIVATE_FILE_MODE);
            continue;
        }
        let live = home.tenant_db(&slug)?;
        // A crash while deleting can leave the file where it was under a deleted row.
        let repair = || files::move_database(&live, &path).map(|_| "moved to the trash".to_string());
        let repair: Option<&dyn Fn() -> Result<String>> = if live.is_file() { Some(&repair) } else { None };
        doctor.problem(
            "tenant.trashed",
            format!("{slug} (id {id})"),
            Verdict::Warn,
            format!("deleted customer's database {} is missing", path.display()),
            repair,
        );
    }
    Ok(())
}

/// The template new tenants are copied from; a damaged one is removed by `--fix` and
/// rebuilt by the next `customer create`.
fn template_checks(doctor: &mut Doctor, home: &Home) {
    let dir = home.templates_dir();
    if !dir.is_dir() {
        return;
    }
    check_mode(doctor, &dir, PRIVATE_DIR_MODE);
    let template = dir.join(sqlite::template::FILE_NAME);
    if !template.is_file() {
        return;
    }
    check_mode(doctor, &template, PRIVATE_FILE_MODE);
    if let Err(err) = sqlite::quick_check(&template) {
        let repair = || {
            files::remove_database(&template)
                .map(|_| "removed; the next customer create rebuilds it".to_string())
        };
        doctor.problem(
            "template",
            path_text(&template),
            Verdict::Fail,
            err.to_string(),
            Some(&repair),
        );
    }
}

/// Operations a killed command left half done: each is a failure until `--fix`
/// finishes or undoes it (see ops/recovery.rs), however old it is.
fn operation_checks(doctor: &mut Doctor, catalog: &Catalog, home: &Home) -> Result<()> {
    for op in recovery::abandoned(catalog, home)? {
        let repair = || {
            let mut catalog = Catalog::open(catalog.path())?;
            let engines = Engines::new(home);
            match crate::catalog::operations::get(catalog.conn(), op.id)? {
                Some(open) => recovery::resolve(&mut catalog, &engines, &open).map(str::to_string),
                None => Ok("finished by another command meanwhile".to_string()),
            }
        };
        doctor.problem(
            "operation.open",
            format!("{} {}", op.kind, op.subject),
            Verdict::Fail,
            format!(
                "an interrupted {} of '{}' (started {}) was left half done",
                op.kind, op.subject, op.started_at
            ),
            Some(&repair),
        );
    }
    for path in lock::dead_owner_files(&home.run_dir()) {
        let repair = || {
            std::fs::remove_file(&path)
                .map(|()| "removed".to_string())
                .io_context(|| format!("removing {}", path.display()))
        };
        doctor.problem(
            "orphan.owner_lock",
            path_text(&path),
            Verdict::Warn,
            "lock file of a command that is gone".to_string(),
            Some(&repair),
        );
    }
    Ok(())
}

/// Whether a staging file is still someone's work: its owner lock is held (or, for the
/// template's, a rebuild holds the templates lock). Anything else is a leftover.
fn staging_in_use(home: &Home, dir: &Path, name: &str) -> bool {
    match sqlite::staging_owner(name) {
        Some(owner) => lock::owner_alive(&home.run_dir(), owner),
        None => dir == home.templates_dir() && sqlite::template::rebuild_in_progress(dir),
    }
}

/// Files in `tenants/` and `trash/` that no customer owns; staging files whose
/// command is gone are removed by `--fix` at once.
fn orphan_checks(doctor: &mut Doctor, catalog: &Catalog, home: &Home) -> Result<()> {
    let owned: HashSet<PathBuf> = crate::catalog::customers::all_placements(catalog.conn())?
        .into_iter()
        .map(|p| PathBuf::from(p.location))
        .collect();
    for dir in [home.tenants_dir(), home.trash_dir(), home.templates_dir()] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".db")
                || name.starts_with(restore::STAGING_PREFIX)
                || owned.contains(&path)
                || dir == home.templates_dir() && name == "tenant.db"
            {
                continue;
            }
            if sqlite::is_staging_name(&name) {
                if staging_in_use(home, &dir, &name) {
                    continue;
                }
                let repair = || files::remove_database(&path).map(|_| "removed".to_string());
                doctor.problem(
                    "orphan.staging",
                    path_text(&path),
                    Verdict::Warn,
                    "unfinished provision left by a crash".to_string(),
                    Some(&repair),
                );
            } else if dir == home.tenants_dir() {
                // A tenant database named for a slug is the engine's to report (see
                // unowned_checks); anything else here is a stray file.
                if name
                    .strip_suffix(".db")
                    .is_some_and(|slug| crate::validate::slug(slug).is_ok())
                {
                    continue;
                }
                doctor.add(
                    "orphan.file",
                    path_text(&path),
                    Verdict::Warn,
                    "no customer owns this database file",
                );
            } else {
                doctor.add(
                    "orphan.file",
                    path_text(&path),
                    Verdict::Warn,
                    "no customer owns this database file",
                );
            }
        }
    }
    Ok(())
}

/// What killed commands left outside the catalog's ledger: in the backup folder, sets
/// killed backups, restores and prunes left (see [`crate::backup::leftovers`]; a lock
/// tells whether anyone still works on each, so they go whatever their age); and the
/// staging folders of restores that died.
fn leftover_checks(doctor: &mut Doctor, home: &Home, backup_dir: &Path) {
    for name in crate::backup::leftovers(backup_dir) {
        let path = backup_dir.join(&name);
        let repair = || {
            crate::backup::remove_leftover(backup_dir, &name).map(|removed| {
                if removed {
                    "removed"
                } else {
                    "taken over by another command meanwhile"
                }
                .to_string()
            })
        };
        doctor.problem(
            "orphan.backup",
            path_text(&path),
            Verdict::Warn,
            crate::backup::Leftover::of(&name).describe().to_string(),
            Some(&repair),
        );
    }
    restore_staging_checks(doctor, home);
}

/// Staging folders of restores that died, found while the home lock is free (with it
/// held, a restore is running and they may be its own); `--fix` removes them, still
/// holding the lock.
fn restore_staging_checks(doctor: &mut Doctor, home: &Home) {
    let dirs = [home.root().to_path_buf(), home.tenants_dir()];
    let staged = |dir: &PathBuf| restore::names_in(dir, |name| name.starts_with(restore::STAGING_PREFIX));
    // Looked for first, so that a home without any never gets a lock file from doctor.
    if dirs.iter().all(|dir| staged(dir).is_empty()) {
        return;
    }
    let Ok(held) = crate::lock::HomeLock::acquire(&home.lock_file(), std::time::Duration::ZERO) else {
        return;
    };
    for path in restore::staging_leftovers(&held, &dirs) {
        let repair = || restore::remove_any(&path).map(|()| "removed".to_string());
        doctor.problem(
            "orphan.staging",
            path_text(&path),
            Verdict::Warn,
            "left by an interrupted restore".to_string(),
            Some(&repair),
        );
    }
}

/// Tenant databases that no customer owns: a catalog restored from an older backup,
/// or a file put there by hand. `--fix --adopt` gives each its customer again,
/// `--fix --trash` moves it to the trash; plain `--fix` leaves the choice to a person.
fn unowned_checks(
    doctor: &mut Doctor,
    catalog: &Catalog,
    actor: Actor<'_>,
    backup_dir: &Path,
    unowned: Unowned,
) -> Result<()> {
    let home = actor.home;
    let engines = Engines::new(home);
    let engine = engines.default_engine();
    for (slug, placement) in super::adopt::unowned_tenants(catalog.conn(), engine)? {
        let describe = engine.tenant(&placement).describe();
        let adopt = || {
            let mut catalog = Catalog::open(catalog.path())?;
            super::adopt::adopt(&mut catalog, actor, backup_dir, &slug, &placement)
        };
        let trash = || {
            let aside = engine.retired_placement(&slug, chrono::Utc::now().timestamp())?;
            engine.relocate(&placement, &aside)?;
            Ok(format!("moved to {}", engine.tenant(&aside).describe()))
        };
        let repair: Option<&dyn Fn() -> Result<String>> = match unowned {
            Unowned::Leave => None,
            Unowned::Adopt => Some(&adopt),
            Unowned::Trash => Some(&trash),
        };
        doctor.problem(
            "orphan.tenant",
            describe,
            Verdict::Warn,
            format!(
                "no customer owns the tenant database of '{slug}'; 'doctor --fix --adopt' gives it its customer again, 'doctor --fix --trash' moves it away"
            ),
            repair,
        );
    }
    Ok(())
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(pairs: &[(i64, &str)]) -> Vec<MigrationId> {
        pairs
            .iter()
            .map(|&(version, checksum)| MigrationId {
                version,
                name: format!("m{version}"),
                checksum: checksum.to_string(),
            })
            .collect()
    }

    #[test]
    fn a_ledger_agrees_only_on_every_version_and_checksum() {
        let history = applied(&[(1, "a"), (2, "b"), (3, "c")]);
        assert_eq!(ledger_disagreement(&history, &history), None);
        let ledger = applied(&[(1, "a"), (2, "x"), (4, "d")]);
        assert_eq!(
            ledger_disagreement(&ledger, &history).unwrap(),
            "the catalog's ledger disagrees with the database's history: \
             V2 has another checksum in the ledger; V3 is applied but not in the ledger; \
             V4 is in the ledger but not applied"
        );
    }
}
