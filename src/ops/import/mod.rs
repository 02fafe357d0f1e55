//! `import DIR`: the legacy file-based configs into the catalog, all or nothing by
//! default, idempotent; `export DIR` (in `super::export`) writes the same layout back.
//! The files are first planned against the catalog (`plan`), then written (`write`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{Actor, Reported, config};
use crate::catalog::model::Plan;
use crate::catalog::{Catalog, plans};
use crate::error::{Error, Result};
use crate::fan_out::{Load, default_jobs};
use crate::import::scan::scan;
use crate::import::{Digest, ImportAction, Parsed, cross_check};
use crate::lock::HomeLock;
use crate::validate;

mod plan;
mod write;

use plan::{describe_actions, enforce_site_limits, parse_all, plan_against_catalog, plans_from_file};
use write::{Rows, write};

/// One file's line in the import report. Compact, since a big tree has one per file:
/// what most files lack is boxed, and the customer's label is shared.
#[derive(Debug, Clone)]
pub struct FileResult {
    /// The file's path as the scan found it, shared.
    pub path: Arc<str>,
    pub action: ImportAction,
    /// Shared by the files of one customer.
    pub customer: Option<Rc<str>>,
    pub site: Option<Box<str>>,
    pub why: Option<Box<Why>>,
}

/// Why a file failed (the field and the reason) or was skipped (the reason).
#[derive(Debug, Clone)]
pub struct Why {
    pub field: Option<String>,
    pub reason: String,
}

impl FileResult {
    pub fn field(&self) -> Option<&str> {
        self.why.as_ref().and_then(|why| why.field.as_deref())
    }

    pub fn reason(&self) -> Option<&str> {
        self.why.as_ref().map(|why| why.reason.as_str())
    }
}

/// The report's fields: `field` and `reason` flat beside the rest.
impl Serialize for FileResult {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut out = serializer.serialize_struct("FileResult", 6)?;
        out.serialize_field("path", &self.path)?;
        out.serialize_field("action", &self.action)?;
        out.serialize_field("customer", &self.customer)?;
        out.serialize_field("site", &self.site)?;
        out.serialize_field("field", &self.field())?;
        out.serialize_field("reason", &self.reason())?;
        out.end()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub files: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub skipped: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    /// Whether anything was written to the catalog or tenant folder.
    pub written: bool,
    pub summary: Summary,
    pub files: Vec<FileResult>,
}

#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub dir: PathBuf,
    pub dry_run: bool,
    pub continue_on_error: bool,
    pub plan: Option<String>,
    pub jobs: usize,
    /// How long to wait for another import (or restore, or migrate) to finish.
    pub lock_timeout: Duration,
}

/// Imports the folder; the report lists every file, and any invalid file makes the
/// outcome fail: partial with `--continue-on-error`, invalid input without.
pub fn import(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    request: &ImportRequest,
) -> Result<Reported<ImportReport>> {
    // One import at a time: a second one of the same tree then plans against what
    // the first wrote and finds it unchanged, instead of colliding with it.
    let _lock = if request.dry_run {
        None
    } else {
        Some(HomeLock::acquire(&actor.home.lock_file(), request.lock_timeout)?)
    };
    // One read snapshot for the whole plan: every file looks up its site and customer,
    // and outside a transaction each lookup would take and drop the catalog's lock.
    let snapshot = catalog.conn().unchecked_transaction()?;
    let mut known_plans: HashMap<String, Plan> = plans::list(catalog.conn())?
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    if let Some(plan) = &request.plan {
        validate::plan_name(plan)?;
    }
    let sources = scan(&request.dir)?;
    let (mut parsed, reads) = parse_all(&sources, default_jobs(Load::Compute));
    cross_check(&mut parsed, |i| &sources[i].path);
    let mut results: Vec<FileResult> = parsed
        .iter()
        .zip(&sources)
        .map(|(p, source)| FileResult {
            path: Arc::clone(&source.path),
            action: match p {
                Parsed::Skipped(_) => ImportAction::Skipped,
                Parsed::Failed(_) => ImportAction::Failed,
                _ => ImportAction::Unchanged,
            },
            customer: None,
            site: None,
            why: match p {
                Parsed::Failed(problem) => Some(Box::new(Why {
                    field: Some(problem.field.clone()),
                    reason: problem.reason.clone(),
                })),
                Parsed::Skipped(why) => Some(Box::new(Why {
                    field: None,
                    reason: why.clone(),
                })),
                _ => None,
            },
        })
        .collect();
    let plan_updates = plans_from_file(catalog.conn(), &parsed, &mut known_plans, &mut results)?;
    if let Some(plan) = &request.plan
        && !known_plans.contains_key(plan)
    {
        return Err(Error::usage(format!("unknown plan '{plan}'")).with_hint("see 'tenantctl plan list'"));
    }

    let default_plan = match &request.plan {
        Some(plan) => plan.clone(),
        None => config::default_plan(catalog)?,
    };
    let (mut customer_plans, mut site_plans) = plan_against_catalog(
        catalog.conn(),
        &parsed,
        &known_plans,
        &default_plan,
        &sources,
        &reads,
        &mut results,
    )?;
    // The plan is made: what the rest needs of the parsed files is which are customer
    // files, and whose, and of each site file the digest its writes check. The rest
    // goes now, so that a big tree's documents are never held beside the writes.
    let customer_files: Vec<(usize, String)> = parsed
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Parsed::Customer(doc) => Some((i, doc.email.to_ascii_lowercase())),
            _ => None,
        })
        .collect();
    drop(parsed);
    let digests: Vec<Option<Digest>> = reads.iter().map(|read| read.map(|r| r.digest)).collect();
    drop(reads);
    enforce_site_limits(catalog.conn(), &customer_plans, &site_plans, &mut results)?;
    let failed = results.iter().any(|r| r.action == ImportAction::Failed);
    // A customer is written only for files that are written.
    let live = |file: usize| results[file].action != ImportAction::Failed;
    site_plans.retain(|s| live(s.file));
    let mut wanted_customers: HashSet<Rc<str>> = HashSet::with_capacity(customer_plans.len());
    wanted_customers.extend(site_plans.iter().map(|s| Rc::clone(&s.customer_key)));
    wanted_customers.extend(
        customer_files
            .iter()
            .filter(|(i, _)| live(*i))
            .map(|(_, key)| Rc::from(key.as_str())),
    );
    customer_plans.retain(|key, _| wanted_customers.contains(key.as_str()));
    // Which site files describe their customer inline (not through a customer.json).
    let inline: Vec<bool> = sources.iter().map(|s| s.customer_file.is_none()).collect();
    describe_actions(
        &customer_files,
        &inline,
        &customer_plans,
        &site_plans,
        &mut results,
    );

    let mut report = ImportReport {
        dry_run: request.dry_run,
        written: false,
        summary: Summary::default(),
        files: results,
    };
    let nothing_to_do = report.files.iter().all(|r| {
        matches!(
            r.action,
            ImportAction::Unchanged | ImportAction::Skipped | ImportAction::Failed
        )
    });
    if request.dry_run || (failed && !request.continue_on_error) || nothing_to_do {
        report.summary = summarise(&report.files);
        return Ok(with_outcome(report, request.continue_on_error));
    }
    snapshot.rollback()?;
    let rows = Rows {
        sources: &sources,
        digests: &digests,
        files: &report.files,
        plans: &plan_updates,
        customers: &customer_plans,
        sites: &site_plans,
    };
    write(catalog, actor, request, &rows)?;
    report.written = true;
    report.summary = summarise(&report.files);
    Ok(with_outcome(report, request.continue_on_error))
}

/// An import with invalid files fails: exit 8 when the valid ones were (or would be)
/// imported with `--continue-on-error`, exit 9 when nothing is.
fn with_outcome(report: ImportReport, continue_on_error: bool) -> Reported<ImportReport> {
    let s = &report.summary;
    let failure = (s.failed > 0).then(|| match (report.dry_run, continue_on_error) {
        (true, true) => Error::partial(format!(
            "{} of {} files would fail (dry run: nothing written)",
            s.failed, s.files
        )),
        (true, false) => Error::invalid_input(format!(
            "{} of {} files are invalid (dry run: nothing written)",
            s.failed, s.files
        )),
        (false, true) => Error::partial(format!(
            "{} of {} files failed; the valid ones were imported",
            s.failed, s.files
        )),
        (false, false) => Error::invalid_input(format!(
            "{} of {} files are invalid; nothing was written",
            s.failed, s.files
        ))
        .with_hint("fix them, or pass --continue-on-error to import the valid ones"),
    });
    Reported::new(report, failure)
}

fn summarise(files: &[FileResult]) -> Summary {
    let count = |action: ImportAction| files.iter().filter(|f| f.action == action).count();
    Summary {
        files: files.len(),
        created: count(ImportAction::Created),
        updated: count(ImportAction::Updated),
        unchanged: count(ImportAction::Unchanged),
        skipped: count(ImportAction::Skipped),
        failed: count(ImportAction::Failed),
    }
}
