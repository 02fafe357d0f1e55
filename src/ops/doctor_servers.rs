//! Doctor's checks of each database server: its password decrypts, it answers, its
//! template holds the current migrations, every tenant role's password decrypts, and
//! no `tenant_*` database that no customer owns, nor a copy a killed create left, sits
//! on it, nor a publication, subscription or replication slot a killed move left.
//! `--fix` rebuilds a stale template and drops the leftovers.

use super::servers::stored_url;
use crate::catalog::servers::{self, ServerRow};
use crate::catalog::{Catalog, customers};
use crate::engine::postgres::role_identity;
use crate::engine::servers::ServerUrl;
use crate::engine::{EngineKind, Engines};
use crate::error::Result;
use crate::home::Home;
use crate::secrets::MasterKey;

/// A finding about a server: check, target, whether it fails (else warns), message,
/// and the repair `--fix` may make.
pub struct ServerFinding {
    pub check: &'static str,
    pub target: String,
    pub fails: bool,
    pub message: String,
    pub repair: Option<Box<dyn Fn() -> Result<String>>>,
    pub ok: bool,
}

impl ServerFinding {
    fn ok(check: &'static str, target: &str, message: String) -> Self {
        ServerFinding {
            check,
            target: target.to_string(),
            fails: false,
            message,
            repair: None,
            ok: true,
        }
    }

    fn problem(check: &'static str, target: &str, fails: bool, message: String) -> Self {
        ServerFinding {
            check,
            target: target.to_string(),
            fails,
            message,
            repair: None,
            ok: false,
        }
    }
}

pub fn server_checks(catalog: &Catalog, home: &Home) -> Result<Vec<ServerFinding>> {
    let mut findings = Vec::new();
    for row in servers::list(catalog.conn())? {
        check_server(catalog, home, &row, &mut findings)?;
    }
    Ok(findings)
}

fn check_server(
    catalog: &Catalog,
    home: &Home,
    row: &ServerRow,
    findings: &mut Vec<ServerFinding>,
) -> Result<()> {
    let name = row.name.as_str();
    let url = match stored_url(row, home) {
        Ok(url) => url,
        Err(err) => {
            findings.push(ServerFinding::problem(
                "server.secret",
                name,
                true,
                err.to_string(),
            ));
            return Ok(());
        }
    };
    let facts = match url.inspect(name) {
        Ok(facts) => facts,
        Err(err) => {
            findings.push(ServerFinding::problem(
                "server.reachable",
                name,
                true,
                err.to_string(),
            ));
            return Ok(());
        }
    };
    findings.push(ServerFinding::ok(
        "server.reachable",
        name,
        format!(
            "{} {} in {:.1} ms",
            match row.engine {
                EngineKind::Mysql => "MySQL",
                _ => "PostgreSQL",
            },
            facts.version,
            facts.latency.as_secs_f64() * 1000.0
        ),
    ));
    role_secret_checks(catalog, home, row, findings)?;
    template_check(catalog, home, row, &url, findings)?;
    leftover_checks(catalog, home, row, findings)?;
    replication_leftover_checks(
        home,
        row,
        &crate::ops::moves::replication_in_use(catalog)?,
        findings,
    );
    Ok(())
}

fn role_secret_checks(
    catalog: &Catalog,
    home: &Home,
    row: &ServerRow,
    findings: &mut Vec<ServerFinding>,
) -> Result<()> {
    let roles = servers::roles_on(catalog.conn(), &row.name)?;
    if roles.is_empty() {
        return Ok(());
    }
    let key = match MasterKey::require(home) {
        Ok(key) => key,
        Err(err) => {
            findings.push(ServerFinding::problem(
                "tenant.secret",
                &row.name,
                true,
                err.to_string(),
            ));
            return Ok(());
        }
    };
    let mut unreadable = 0;
    for (customer_id, role, stored) in &roles {
        if let Err(err) = key.decrypt(stored, &role_identity(*customer_id)) {
            unreadable += 1;
            findings.push(ServerFinding::problem(
                "tenant.secret",
                role,
                true,
                err.to_string(),
            ));
        }
    }
    if unreadable == 0 {
        findings.push(ServerFinding::ok(
            "tenant.secret",
            &row.name,
            format!("{} tenant role passwords decrypt", roles.len()),
        ));
    }
    Ok(())
}

fn template_check(
    catalog: &Catalog,
    home: &Home,
    row: &ServerRow,
    url: &ServerUrl,
    findings: &mut Vec<ServerFinding>,
) -> Result<()> {
    let set = match super::servers::engine_migrations(catalog, home, row.engine) {
        Ok(set) => set,
        Err(err) => {
            findings.push(ServerFinding::problem(
                "server.template",
                &row.name,
                true,
                err.to_string(),
            ));
            return Ok(());
        }
    };
    match url.template_current(row.mode, row.template.as_deref(), &set) {
        // It keeps no template: each tenant replays the migrations.
        None => return Ok(()),
        Some(true) => {
            findings.push(ServerFinding::ok(
                "server.template",
                &row.name,
                "current".to_string(),
            ));
            return Ok(());
        }
        Some(false) => {}
    }
    let (name, url, mode, catalog_path) = (
        row.name.clone(),
        url.clone(),
        row.mode,
        catalog.path().to_path_buf(),
    );
    let mut finding = ServerFinding::problem(
        "server.template",
        &row.name,
        false,
        "the template does not hold the current PostgreSQL migrations; the next create rebuilds it"
            .to_string(),
    );
    finding.repair = Some(Box::new(move || {
        let built = url.prepare(&name, mode, &set)?.unwrap_or_default();
        let mut catalog = Catalog::open(&catalog_path)?;
        catalog.write(|tx| servers::set_template(tx, &name, &built))?;
        Ok("rebuilt".to_string())
    }));
    findings.push(finding);
    Ok(())
}

/// Copies killed restores left (a restored copy never swapped in, a scratch
/// database), unless an interrupted swap still needs them: that one is reported as an
/// open operation, and finishing it comes first.
fn restore_leftover_checks(
    catalog: &Catalog,
    home: &Home,
    row: &ServerRow,
    findings: &mut Vec<ServerFinding>,
) -> Result<()> {
    let swap_open = crate::catalog::operations::list(catalog.conn())?
        .iter()
        .any(|op| op.kind == crate::ops::recovery::SWAP);
    if swap_open {
        return Ok(());
    }
    let engines = Engines::new(home);
    let Ok(leftovers) = engines.server(&row.name)?.restore_leftovers(false) else {
        return Ok(());
    };
    for leftover in leftovers {
        let mut finding = ServerFinding::problem(
            "server.restore_leftover",
            &row.name,
            false,
            format!("{leftover} is what an interrupted restore left"),
        );
        let (home, name) = (home.clone(), row.name.clone());
        finding.repair = Some(Box::new(move || {
            // Restores hold the home lock: with it held, none of these is a live one's.
            let _held =
                crate::lock::HomeLock::acquire(&home.lock_file(), std::time::Duration::from_secs(30))?;
            Engines::new(&home).server(&name)?.restore_leftovers(true)?;
            Ok("dropped".to_string())
        }));
        findings.push(finding);
    }
    Ok(())
}

/// `tenant_*` databases no customer owns, and copies a killed create left.
fn leftover_checks(
    catalog: &Catalog,
    home: &Home,
    row: &ServerRow,
    findings: &mut Vec<ServerFinding>,
) -> Result<()> {
    let engines = Engines::new(home);
    let engine = engines.server(&row.name)?;
    let mut owned = customers::placements_on(catalog.conn(), &row.name)?;
    // A move under way owns its target before the flip makes it the customer's.
    owned.extend(crate::ops::moves::targets_on(catalog, &row.name)?);
    let orphans = match engine.unowned(&owned) {
        Ok(orphans) => orphans,
        Err(err) => {
            findings.push(ServerFinding::problem(
                "server.orphans",
                &row.name,
                true,
                err.to_string(),
            ));
            return Ok(());
        }
    };
    let run_dir = home.run_dir();
    for staging in engine.abandoned_staging(&|owner| crate::lock::owner_alive(&run_dir, owner))? {
        let mut finding = ServerFinding::problem(
            "server.staging",
            &format!("{}/{staging}", row.name),
            false,
            format!(
                "database {staging} on server {} is a copy an interrupted create left",
                row.name
            ),
        );
        let (home, name, staging) = (home.clone(), row.name.clone(), staging.clone());
        finding.repair = Some(Box::new(move || {
            let engines = Engines::new(&home);
            engines.server(&name)?.discard(&crate::engine::Provisioned {
                staging: staging.clone(),
                schema_version: 0,
                applied: Default::default(),
                role_password: None,
            });
            Ok("dropped".to_string())
        }));
        findings.push(finding);
    }
    restore_leftover_checks(catalog, home, row, findings)?;
    for (_, placement) in orphans {
        let mut finding = ServerFinding::problem(
            "server.orphan",
            &format!("{}/{}", row.name, placement.location),
            false,
            format!(
                "database {} on server {} belongs to no customer",
                placement.location, row.name
            ),
        );
        let (home, placement) = (home.clone(), placement.clone());
        finding.repair = Some(Box::new(move || {
            let engines = Engines::new(&home);
            engines.engine(&placement)?.destroy(&placement)?;
            Ok("dropped with its role".to_string())
        }));
        findings.push(finding);
    }
    Ok(())
}

/// `tenantctl_*` publications, subscriptions and replication slots no move in
/// `in_use` still owns: what a killed move left. A slot fails, as it keeps the
/// server's WAL until it is dropped; the others only warn.
fn replication_leftover_checks(
    home: &Home,
    row: &ServerRow,
    in_use: &[String],
    findings: &mut Vec<ServerFinding>,
) {
    let engines = Engines::new(home);
    let found = engines
        .server(&row.name)
        .and_then(|engine| engine.replication_leftovers(in_use, false));
    let leftovers = match found {
        Ok(leftovers) => leftovers,
        Err(err) => {
            let message = format!("cannot look for what interrupted moves left: {err}");
            findings.push(ServerFinding::problem(
                "server.replication_leftover",
                &row.name,
                true,
                message,
            ));
            return;
        }
    };
    for line in leftovers {
        let (slot, name) = slot_and_name(&line);
        let why = match slot {
            true => "; it keeps the server's WAL until it is dropped",
            false => "",
        };
        let mut finding = ServerFinding::problem(
            "server.replication_leftover",
            &format!("{}/{name}", row.name),
            slot,
            format!(
                "{line} on server {} is what an interrupted move left{why}",
                row.name
            ),
        );
        let (home, server, in_use) = (home.clone(), row.name.clone(), in_use.to_vec());
        finding.repair = Some(Box::new(move || {
            drop_replication_leftovers(&home, &server, &in_use, &line)
        }));
        findings.push(finding);
    }
}

/// Drops every replication leftover on `server` at once; the finding for `line` is
/// repaired when that one is gone, whatever became of the others (each has its own
/// finding, which says so).
fn drop_replication_leftovers(home: &Home, server: &str, in_use: &[String], line: &str) -> Result<String> {
    // As for a restore's leftovers: a move that makes these under the home lock is
    // not making one while they are dropped.
    let _held = crate::lock::HomeLock::acquire(&home.lock_file(), std::time::Duration::from_secs(30))?;
    let engines = Engines::new(home);
    let engine = engines.server(server)?;
    let Err(err) = engine.replication_leftovers(in_use, true) else {
        return Ok("dropped".to_string());
    };
    let still_there = engine
        .replication_leftovers(in_use, false)?
        .iter()
        .any(|found| found == line);
    match still_there {
        true => Err(err),
        false => Ok("dropped".to_string()),
    }
}

/// Whether an engine's leftover line is a replication slot, and the name it gives.
fn slot_and_name(line: &str) -> (bool, &str) {
    let (slot, rest) = match line.strip_prefix("replication slot ") {
        Some(rest) => (true, rest),
        None => (false, line.split_once(' ').map_or(line, |(_, rest)| rest)),
    };
    (slot, rest.split(' ').next().unwrap_or(rest))
}
