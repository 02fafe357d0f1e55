//! `backup [list|show|verify|prune]` and `restore`.

use clap::{Args, Subcommand, ValueEnum};

use super::Session;
use crate::backup::states::{BackupKind, PruneAction, RestoreStatus, SaveStatus};
use crate::backup::{Entry, Skipped};
use crate::catalog::Catalog;
use crate::context::OutputFormat;
use crate::ops::backup::{self, BackupReport, BackupRequest, BackupScope, SetReport};
use crate::ops::restore::{self, RestoreRequest, RestoreScope};
use serde_json::{Value, json};

#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  tenantctl backup\n  tenantctl backup --kind scheduled --label nightly\n  \
        tenantctl backup --customer acme --customer globex\n  tenantctl backup list\n  tenantctl backup verify --all"
)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// The catalog and every tenant that is not deleted (the default)
    #[arg(long, conflicts_with_all = ["catalog", "customer"])]
    pub all: bool,
    /// Only the catalog
    #[arg(long, conflicts_with = "customer")]
    pub catalog: bool,
    /// Only these customers' databases (slug, id or email); repeatable
    #[arg(long, value_name = "CUSTOMER")]
    pub customer: Vec<String>,
    /// A label stored in the manifest
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
    /// Why the set was taken
    #[arg(long, value_enum, default_value_t = Kind::Manual)]
    pub kind: Kind,
    /// Dumps run at once on each database server (never more than it has connections free)
    #[arg(long, value_name = "N", default_value_t = crate::fan_out::DEFAULT_JOBS_PER_SERVER, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs_per_server: u16,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Manual,
    Scheduled,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    #[command(
        after_help = "Examples:\n  tenantctl backup list\n  tenantctl backup list --customer acme --json"
    )]
    /// List backup sets from their manifests (works without the catalog)
    List {
        /// Only sets holding this customer (slug or id)
        #[arg(long, value_name = "CUSTOMER")]
        customer: Option<String>,
    },
    #[command(after_help = "Example:\n  tenantctl backup show 20261122T030000000000Z-1a2b")]
    /// Show one set's manifest
    Show {
        /// Backup set id
        id: String,
    },
    #[command(after_help = "Examples:\n  tenantctl backup verify\n  tenantctl backup verify --all")]
    /// Recompute checksums and quick_check every file (default: the newest set)
    ///
    /// A PostgreSQL tenant's archive is checked by its table of contents
    /// (pg_restore --list). --deep goes further: each SQLite copy gets a full
    /// integrity_check, and each archive is restored into a scratch database on its
    /// server (or on --scratch-server) whose rows per table must be those recorded at
    /// backup time; the scratch database is dropped afterwards.
    Verify {
        /// Backup set ids
        ids: Vec<String>,
        /// Verify every set
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Restore every copy to check it, not only its checksum and structure
        #[arg(long)]
        deep: bool,
        /// With --deep, restore archives on this server instead of the one they came from
        #[arg(long, value_name = "NAME", requires = "deep")]
        scratch_server: Option<String>,
    },
    /// Remove sets outside the retention policy; never the newest set
    ///
    /// Only manual and scheduled sets count for --keep-*; a set holding only some
    /// tenants also stays while it holds a tenant's newest copy. A pre-restore set stays
    /// while it is no older than the oldest regular set kept. A set that holds nothing
    /// is removed.
    ///
    /// A flag that is not given takes the catalog's backup_keep_* setting; when the
    /// catalog cannot be read, prune fails with its error rather than guess (give all
    /// four flags to prune without a catalog).
    #[command(
        after_help = "Examples:\n  tenantctl backup prune\n  tenantctl backup prune --keep-last 7 --keep-daily 14 --keep-weekly 8 --keep-monthly 12"
    )]
    Prune {
        /// Keep the N newest sets [default: the backup_keep_last setting]
        #[arg(long, value_name = "N")]
        keep_last: Option<u32>,
        /// Keep the newest set of each of the last N days [default: backup_keep_daily]
        #[arg(long, value_name = "N")]
        keep_daily: Option<u32>,
        /// Keep the newest set of each of the last N weeks [default: backup_keep_weekly]
        #[arg(long, value_name = "N")]
        keep_weekly: Option<u32>,
        /// Keep the newest set of each of the last N months [default: backup_keep_monthly]
        #[arg(long, value_name = "N")]
        keep_monthly: Option<u32>,
        /// Show what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
#[command(
    group(clap::ArgGroup::new("scope").required(true).args(["customer", "catalog", "everything"])),
    group(clap::ArgGroup::new("which").required(true).args(["id", "at"])),
    after_help = "Examples:\n  tenantctl restore 20261122T030000Z-1a2b --customer acme\n  \
        tenantctl restore --at 2026-11-21T12:00:00Z --customer acme\n  \
        tenantctl restore 20261122T030000Z-1a2b --customer acme --into acme-staging\n  \
        tenantctl restore --at 1d --everything --confirm everything\n  \
        tenantctl restore --at 2026-11-21T12:00:00Z --customer acme --dry-run"
)]
pub struct RestoreArgs {
    /// Backup set id
    pub id: Option<String>,
    /// Use the newest set finished at or before TIME, to the microsecond (RFC 3339, date, or age such as 6h)
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Restore these customers' databases; repeatable (a deleted customer comes back
    /// with 'customer undelete CUSTOMER --from-backup')
    #[arg(long, value_name = "CUSTOMER")]
    pub customer: Vec<String>,
    /// Restore the catalog (needs --confirm catalog)
    #[arg(long)]
    pub catalog: bool,
    /// Restore the catalog and every tenant in the set (needs --confirm everything)
    #[arg(long)]
    pub everything: bool,
    /// 'catalog' or 'everything', to confirm
    #[arg(long, value_name = "WORD")]
    pub confirm: Option<String>,
    /// Copy the one --customer's data into this other existing customer
    #[arg(long, value_name = "CUSTOMER")]
    pub into: Option<String>,
    /// Only restore tenants whose database file is absent
    #[arg(long)]
    pub if_missing: bool,
    /// Show the set that would be used, what it would replace or create and what the
    /// pre-restore set would save first; change nothing (needs no --confirm)
    #[arg(long)]
    pub dry_run: bool,
}

const LIST_COLUMNS: &[&str] = &[
    "id",
    "created_at",
    "kind",
    "label",
    "catalog",
    "tenants",
    "linked",
    "skipped",
    "bytes",
];
const FILE_COLUMNS: &[&str] = &[
    "set",
    "scope",
    "customer",
    "file",
    "bytes",
    "schema_version",
    "sha256",
    "stored",
];
const VERIFY_COLUMNS: &[&str] = &["status", "set", "file", "message"];
const PRUNE_COLUMNS: &[&str] = &["action", "id", "created_at", "kind", "reasons"];
const RESTORE_COLUMNS: &[&str] = &[
    "status",
    "scope",
    "customer",
    "file",
    "target",
    "schema_version",
    "reason",
];

fn jobs() -> usize {
    crate::fan_out::default_jobs(crate::fan_out::Load::Fsync)
}

pub fn run(session: &Session, args: BackupArgs) -> crate::error::Result<()> {
    let backup_dir = &session.ctx.backup_dir;
    match args.command {
        None => {
            let catalog = session.catalog()?;
            let scope = if args.catalog {
                BackupScope::Catalog
            } else if !args.customer.is_empty() {
                BackupScope::Customers(args.customer)
            } else {
                BackupScope::All
            };
            let request = BackupRequest {
                scope,
                label: args.label,
                kind: match args.kind {
                    Kind::Manual => BackupKind::Manual,
                    Kind::Scheduled => BackupKind::Scheduled,
                },
                jobs: jobs(),
                jobs_per_server: usize::from(args.jobs_per_server),
            };
            let done = backup::backup(&catalog, backup_dir, &request)?;
            warn_unfinished(
                session,
                done.cleaned_up.half_deleted.len(),
                done.cleaned_up.unfinished.len(),
            );
            let written = done.written;
            print_backup(session, &written.report)?;
            for one in written.report.skipped() {
                session
                    .messages
                    .warning(&format!("{}: {}", one.customer, one.reason));
            }
            written.outcome()?;
        }
        Some(BackupCommand::List { customer }) => session
            .out
            .list(LIST_COLUMNS, backup::list(backup_dir, customer.as_deref())?)?,
        Some(BackupCommand::Show { id }) => print_set(session, &backup::show(backup_dir, &id)?)?,
        Some(BackupCommand::Verify {
            ids,
            all,
            deep,
            scratch_server,
        }) => {
            let catalog = if deep { Some(session.catalog()?) } else { None };
            let deep = catalog.as_ref().map(|catalog| backup::Deep {
                catalog,
                scratch_server: scratch_server.as_deref(),
            });
            let verified = backup::verify(backup_dir, &ids, all, deep)?;
            session.out.list(VERIFY_COLUMNS, &verified.report)?;
            verified.outcome()?;
        }
        Some(BackupCommand::Prune {
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
            dry_run,
        }) => {
            let flags = [keep_last, keep_daily, keep_weekly, keep_monthly];
            // The operator's backup_keep_* settings live in the catalog: a prune that
            // cannot read them fails rather than guess, unless every flag is given. With
            // every flag it is still read when it can be: it knows the servers that
            // pre-restore copies are kept on.
            let catalog = if flags.iter().all(Option::is_some) {
                Catalog::open_ready(&session.home.catalog()).ok()
            } else {
                Some(Catalog::open_ready(&session.home.catalog())?)
            };
            let report = backup::prune(backup_dir, catalog.as_ref(), flags, dry_run)?;
            for remaining in &report.kept_copies_remaining {
                session
                    .messages
                    .warning(&format!("a pre-restore copy could not be dropped: {remaining}"));
            }
            let line = format!(
                "{}{} sets: keep {}, remove {}; {} unfinished sets {}",
                if dry_run { "dry run: " } else { "" },
                report.sets.len(),
                report
                    .sets
                    .iter()
                    .filter(|d| d.action == PruneAction::Keep)
                    .count(),
                report
                    .sets
                    .iter()
                    .filter(|d| d.action == PruneAction::Remove)
                    .count(),
                report.removed_unfinished.len(),
                if dry_run { "to remove" } else { "removed" }
            );
            if !dry_run {
                warn_unfinished(session, report.half_deleted, 0);
            }
            session.out.report(&line, &report, PRUNE_COLUMNS, &report.sets)?;
        }
    }
    Ok(())
}

/// The summary of a restore plan: the set, how many files, what is saved first.
fn dry_run_line(report: &restore::RestoreReport) -> String {
    let to_do = report
        .restored
        .iter()
        .filter(|r| r.status != RestoreStatus::Skipped)
        .count();
    let saved = if report.pre_restore.is_empty() {
        "no pre-restore set (nothing is replaced)".to_string()
    } else {
        let sources: Vec<&str> = report.pre_restore.iter().map(|s| s.source.as_str()).collect();
        format!("first a pre-restore set of {}", sources.join(", "))
    };
    format!(
        "dry run, nothing changed: would restore {to_do} of {} files from set {} (finished {}); {saved}",
        report.restored.len(),
        report.set,
        report.set_finished_at
    )
}

/// What `backup` did: the set written, or, when nothing could be copied, who was
/// skipped.
fn print_backup(session: &Session, report: &BackupReport) -> crate::error::Result<()> {
    match report {
        BackupReport::Written(set) => print_set(session, set),
        BackupReport::NothingWritten(nothing) if session.out.format() == OutputFormat::Csv => {
            let rows = nothing
                .skipped
                .iter()
                .map(|one| led_by_set(Value::Null, skipped_row(one)));
            session.out.list(FILE_COLUMNS, rows)?;
            Ok(())
        }
        BackupReport::NothingWritten(nothing) => Ok(session.out.object(nothing)?),
    }
}

/// A set for people: its manifest's scalars, then one row per file with the same
/// readable columns for every file (the fingerprints stay in JSON). CSV gets those
/// rows alone, each with its set's id, and a row per skipped tenant; JSON and NDJSON
/// the whole report.
fn print_set(session: &Session, report: &SetReport) -> crate::error::Result<()> {
    let m = &report.manifest;
    match session.out.format() {
        OutputFormat::Table => {}
        OutputFormat::Csv => {
            let files = m.entries.iter().map(file_row);
            let skipped = m.skipped.iter().map(skipped_row);
            let rows = files.chain(skipped).map(|row| led_by_set(json!(m.id), row));
            session.out.list(FILE_COLUMNS, rows)?;
            return Ok(());
        }
        OutputFormat::Json | OutputFormat::Ndjson => {
            session.out.object(report)?;
            return Ok(());
        }
    }
    let files: Vec<Value> = m.entries.iter().map(file_row).collect();
    session.out.object(&json!({
        "id": m.id,
        "created_at": m.created_at,
        "finished_at": m.finished_at,
        "label": m.label,
        "kind": m.kind,
        "path": report.path,
        "files": m.entries.len(),
        "copied": report.copied,
        "linked": report.linked,
        "bytes": m.bytes(),
        "entries": files,
        "skipped": m.skipped,
    }))?;
    Ok(())
}

/// The readable columns of one file of a set.
fn file_row(e: &Entry) -> Value {
    let stored = match (&e.damaged, &e.linked_from) {
        (Some(damage), _) => format!("kept damaged: {damage}"),
        (None, Some(linked)) => format!("linked from {linked}"),
        (None, None) => "copied".to_string(),
    };
    json!({
        "scope": e.scope,
        "customer": e.customer_slug,
        "file": e.file,
        "bytes": e.bytes,
        "schema_version": e.schema_version,
        "sha256": e.sha256.get(..12).unwrap_or(&e.sha256),
        "stored": stored,
    })
}

/// A tenant left out of a set, in the columns of its files.
fn skipped_row(one: &Skipped) -> Value {
    json!({
        "scope": "tenant",
        "customer": one.customer,
        "file": null,
        "bytes": null,
        "schema_version": null,
        "sha256": null,
        "stored": format!("skipped: {}", one.reason),
    })
}

/// A row with its set's id first, so CSV rows of several sets can be told apart.
fn led_by_set(set: Value, row: Value) -> Value {
    let Value::Object(fields) = row else {
        return row;
    };
    let mut led = serde_json::Map::new();
    led.insert("set".to_string(), set);
    led.extend(fields);
    Value::Object(led)
}

pub fn restore(session: &Session, args: RestoreArgs) -> crate::error::Result<()> {
    let scope = if args.everything {
        RestoreScope::Everything
    } else if args.catalog {
        RestoreScope::Catalog
    } else {
        RestoreScope::Customers(args.customer)
    };
    let request = RestoreRequest {
        set: args.id,
        at: args.at,
        scope,
        confirm: args.confirm,
        into: args.into,
        if_missing: args.if_missing,
        dry_run: args.dry_run,
        jobs: jobs(),
    };
    let report = restore::restore(
        &session.home.catalog(),
        session.actor(),
        &session.ctx.backup_dir,
        session.ctx.lock_timeout,
        &request,
    )?;
    warn_cleaned_up(session, &report.cleaned_up);
    for line in &report.finished_interrupted {
        session.messages.warning(line);
    }
    for kept in report
        .pre_restore
        .iter()
        .filter(|s| s.status == SaveStatus::KeptDamaged)
    {
        session.messages.warning(&format!(
            "{} fails its check ({}); it is kept as it was, marked damaged, in pre-restore set {}",
            kept.source,
            kept.reason.as_deref().unwrap_or("damaged"),
            report.pre_restore_set.as_deref().unwrap_or("-")
        ));
    }
    for lost in report
        .pre_restore
        .iter()
        .filter(|s| s.status == SaveStatus::NotSaved)
    {
        session.messages.warning(&format!(
            "{} could not be saved before it was replaced: {}",
            lost.source,
            lost.reason.as_deref().unwrap_or("unreadable")
        ));
    }
    if !report.unowned_tenants.is_empty() {
        session.messages.warning(&format!(
            "{} tenant database{} in the home {} no customer in the restored catalog ({}); run 'tenantctl doctor --fix --adopt' to give them customers again, or 'tenantctl doctor --fix --trash' to move them away",
            report.unowned_tenants.len(),
            if report.unowned_tenants.len() == 1 { "" } else { "s" },
            if report.unowned_tenants.len() == 1 { "has" } else { "have" },
            report.unowned_tenants.join(", ")
        ));
    }
    let line = if report.dry_run {
        dry_run_line(&report)
    } else {
        format!(
            "restored {} of {} files from set {}{}",
            report
                .restored
                .iter()
                .filter(|r| r.status == RestoreStatus::Restored)
                .count(),
            report.restored.len(),
            report.set,
            report
                .pre_restore_set
                .as_deref()
                .map(|p| format!(" (what was replaced is in set {p})"))
                .unwrap_or_default()
        )
    };
    session
        .out
        .report(&line, &report, RESTORE_COLUMNS, &report.restored)?;
    report.failure().map_or(Ok(()), Err)
}

/// One line about what killed prunes (`half_deleted` sets they were removing) and
/// killed backups (`unfinished` sets) had left and this command removed first.
fn warn_unfinished(session: &Session, half_deleted: usize, unfinished: usize) {
    let sets = |n: usize| {
        if n == 1 {
            "1 set".to_string()
        } else {
            format!("{n} sets")
        }
    };
    let mut done = Vec::new();
    if half_deleted > 0 {
        done.push(format!(
            "finished an interrupted backup prune ({} half removed)",
            sets(half_deleted)
        ));
    }
    match unfinished {
        0 => {}
        1 => done.push("removed the unfinished set of an interrupted backup or restore".to_string()),
        n => done.push(format!(
            "removed {n} unfinished sets of interrupted backups or restores"
        )),
    }
    if !done.is_empty() {
        session.messages.warning(&done.join("; "));
    }
}

/// One line about what killed restores had left and a restore removed first.
pub fn warn_cleaned_up(session: &Session, cleaned_up: &[String]) {
    match cleaned_up.len() {
        0 => {}
        1 => session
            .messages
            .warning("removed 1 leftover of an interrupted restore"),
        n => session
            .messages
            .warning(&format!("removed {n} leftovers of an interrupted restore")),
    }
}
