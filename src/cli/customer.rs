//! `customer create|list|show|update|suspend|reactivate|delete|undelete|purge|move`.

use clap::{Args, Subcommand};

use super::Session;
use crate::catalog::customers::LimitChanges;
use crate::catalog::states::CustomerStatus;
use crate::ops::customers::{self, CreateCustomer, ListCustomers, UpdateCustomer};
use crate::ops::moves::{self, MoveRequest};
use crate::ops::recovery;

#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Create a customer and its own tenant database
    #[command(visible_alias = "add")]
    Create(CreateArgs),
    /// List customers
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show a customer with usage against quota and its sites
    #[command(
        after_help = "Examples:\n  tenantctl customer show acme\n  tenantctl customer show ops@acme.test --json"
    )]
    Show {
        /// Slug, numeric id or email
        customer: String,
    },
    /// Change a customer's details, plan, quota overrides or metadata
    Update(UpdateArgs),
    /// Suspend a customer (its keys stop working)
    #[command(after_help = "Example:\n  tenantctl customer suspend acme --reason 'unpaid invoice 2026-11'")]
    Suspend {
        /// Slug, numeric id or email
        customer: String,
        /// Why, for the audit log and the customer record
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    #[command(after_help = "Example:\n  tenantctl customer reactivate acme")]
    /// Make a suspended customer active again
    Reactivate {
        /// Slug, numeric id or email
        customer: String,
    },
    /// Soft-delete: stop sites, revoke keys and sessions, move the database to the trash
    #[command(after_help = "Example:\n  tenantctl customer delete acme --confirm acme")]
    Delete {
        /// Slug, numeric id or email
        customer: String,
        /// The customer's slug (or id), to confirm
        #[arg(long, value_name = "SLUG")]
        confirm: Option<String>,
    },
    #[command(
        after_help = "Examples:\n  tenantctl customer undelete acme\n  tenantctl customer undelete acme --from-backup\n  \
            tenantctl customer undelete acme --from-backup 20261122T030000000000Z-1a2b\n  \
            tenantctl customer undelete acme --from-backup --at 2026-11-21T12:00:00Z"
    )]
    /// Reverse a soft delete
    ///
    /// The database comes back from the trash. When it is gone from there (the trash
    /// was cleaned), --from-backup takes it from a backup set instead: the one named,
    /// the newest finished by --at, or the newest holding this customer. The copy is
    /// checked (checksum, integrity_check) before the customer is undeleted with it.
    Undelete {
        /// Slug, numeric id or email
        customer: String,
        /// Take the database from a backup set (default: the newest holding the customer)
        #[arg(long, value_name = "ID", num_args = 0..=1, default_missing_value = "")]
        from_backup: Option<String>,
        /// With --from-backup: the newest set finished at or before TIME
        #[arg(long, value_name = "TIME", requires = "from_backup")]
        at: Option<String>,
    },
    /// Remove a deleted customer's database, sites, snapshots and keys for good
    #[command(after_help = "Example:\n  tenantctl customer purge acme --confirm acme")]
    Purge {
        /// Slug, numeric id or email
        customer: String,
        /// The customer's slug (or id), to confirm
        #[arg(long, value_name = "SLUG")]
        confirm: Option<String>,
    },
    #[command(
        after_help = "Examples:\n  tenantctl customer move acme --to pg1 --dry-run\n  tenantctl customer move acme --to pg1\n  \
            tenantctl customer move acme --finish\n  tenantctl customer move acme --to local"
    )]
    /// Move a customer's tenant database to another server or engine
    ///
    /// Offline: the tenant's writes are frozen while every table is copied in key
    /// order, compared on both sides (row count and checksum), and the placement is
    /// switched in one catalog transaction. The old copy stays, frozen, until
    /// --finish drops it. A move that dies is undone by the next command.
    Move(MoveArgs),
}

#[derive(Debug, Args)]
pub struct MoveArgs {
    /// Slug, numeric id or email
    pub customer: String,
    /// Where to: a server name, or 'local' for the home's SQLite folder
    #[arg(long, value_name = "SERVER|local", required_unless_present_any = ["finish", "abort"],
          conflicts_with_all = ["finish", "abort"])]
    pub to: Option<String>,
    /// Keep the tenant writable while its rows copy: logical replication from one
    /// PostgreSQL server to another; writes freeze only for the final catch-up
    #[arg(long, conflicts_with_all = ["finish", "abort"])]
    pub online: bool,
    /// Print the plan (tables, rows, size, method, freeze) and check every value
    /// converts, changing nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Drop the old copy that a finished move kept
    #[arg(long, conflicts_with_all = ["abort", "dry_run"])]
    pub finish: bool,
    /// Undo a move that has not switched the placement yet
    #[arg(long, conflicts_with = "dry_run")]
    pub abort: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl customer create ops@acme.test 'Jane Doe' 'Acme Corp' --plan pro\n  \
    tenantctl customer create bob@example.com 'Bob' --slug bob --meta region=eu --meta seats=5"
)]
pub struct CreateArgs {
    /// Contact email, unique across customers
    pub email: String,
    /// Contact name
    pub name: String,
    /// Company name
    pub company: Option<String>,
    /// Plan [default: the default_plan setting, or starter]
    #[arg(long, value_name = "PLAN")]
    pub plan: Option<String>,
    /// Slug (DNS label) [default: derived from the company or the email]
    #[arg(long, value_name = "SLUG")]
    pub slug: Option<String>,
    /// Metadata entry key=value (value parsed as JSON when it can be); repeatable
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Where its database goes: 'local', a server name, or 'auto' (the active server
    /// with the most free capacity) [default: the default_server setting, or local]
    #[arg(long, value_name = "NAME|auto")]
    pub server: Option<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl customer list --plan pro --status active\n  tenantctl customer list --search acme --json"
)]
pub struct ListArgs {
    /// Only customers on this plan
    #[arg(long, value_name = "PLAN")]
    pub plan: Option<String>,
    /// Only customers in this status
    #[arg(long, value_name = "STATUS")]
    pub status: Option<CustomerStatus>,
    /// Only customers whose slug, email, name or company contains TEXT
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// Show at most N customers; 0 for all
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tenantctl customer update acme --plan enterprise\n  \
    tenantctl customer update acme --max-sites 25 --meta region=us\n  tenantctl customer update acme --max-sites none"
)]
pub struct UpdateArgs {
    /// Slug, numeric id or email
    pub customer: String,
    /// New contact email
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,
    /// New contact name
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// New company name ('' clears it)
    #[arg(long, value_name = "COMPANY")]
    pub company: Option<String>,
    /// New plan; refused (exit 5) when it would put the customer over a quota
    #[arg(long, value_name = "PLAN")]
    pub plan: Option<String>,
    /// Override the plan's max sites ('none' goes back to the plan's)
    #[arg(long, value_name = "N|none", value_parser = parse_override)]
    pub max_sites: Option<Override>,
    /// Override the plan's storage in MiB ('none' goes back to the plan's)
    #[arg(long, value_name = "N|none", value_parser = parse_override)]
    pub max_storage_mb: Option<Override>,
    /// Override the plan's monthly bandwidth in GiB ('none' goes back to the plan's)
    #[arg(long, value_name = "N|none", value_parser = parse_override)]
    pub max_bandwidth_gb: Option<Override>,
    /// Override the plan's monthly API calls ('none' goes back to the plan's)
    #[arg(long, value_name = "N|none", value_parser = parse_override)]
    pub max_api_calls: Option<Override>,
    /// Set metadata key=value (an empty value removes the key); repeatable
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Apply a change even when it puts the customer over a quota
    #[arg(long)]
    pub force: bool,
}

/// A quota override from the command line: a number, or `none` for the plan's value.
#[derive(Debug, Clone, Copy)]
pub struct Override(Option<i64>);

fn parse_override(text: &str) -> Result<Override, String> {
    if text == "none" {
        return Ok(Override(None));
    }
    match text.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Override(Some(n))),
        _ => Err(format!("'{text}' is not a whole number of 0 or more, nor 'none'")),
    }
}

const LIST_COLUMNS: &[&str] = &[
    "id",
    "slug",
    "email",
    "name",
    "company_name",
    "plan",
    "status",
    "created_at",
];

pub fn run(session: &Session, command: CustomerCommand) -> crate::error::Result<()> {
    let moves_databases = matches!(
        command,
        CustomerCommand::Create(_)
            | CustomerCommand::Delete { .. }
            | CustomerCommand::Undelete { .. }
            | CustomerCommand::Purge { .. }
            | CustomerCommand::Move(_)
    );
    let (mut catalog, recovered) = if moves_databases {
        session.catalog_recovered()?
    } else {
        (session.catalog()?, Vec::new())
    };
    let actor = session.actor();
    let out = &session.out;
    match command {
        CustomerCommand::Create(args) => {
            let request = CreateCustomer {
                email: args.email,
                name: args.name,
                company: args.company,
                plan: args.plan,
                slug: args.slug,
                meta: args.meta,
                server: args.server,
            };
            out.object(&customers::create(&mut catalog, actor, &request)?)?;
        }
        CustomerCommand::List(args) => {
            let request = ListCustomers {
                plan: args.plan,
                status: args.status,
                search: args.search,
                limit: args.limit,
            };
            out.list(LIST_COLUMNS, customers::list(&catalog, &request)?)?;
        }
        CustomerCommand::Show { customer } => out.object(&customers::show(&catalog, &customer)?)?,
        CustomerCommand::Update(args) => {
            let request = UpdateCustomer {
                email: args.email,
                name: args.name,
                company: args.company,
                plan: args.plan,
                limits: LimitChanges {
                    max_sites: args.max_sites.map(|o| o.0),
                    max_storage_mb: args.max_storage_mb.map(|o| o.0),
                    max_bandwidth_gb: args.max_bandwidth_gb.map(|o| o.0),
                    max_api_calls: args.max_api_calls.map(|o| o.0),
                },
                meta: args.meta,
                force: args.force,
            };
            out.object(&customers::update(&mut catalog, actor, &args.customer, &request)?)?;
        }
        CustomerCommand::Suspend { customer, reason } => {
            out.object(&customers::suspend(&mut catalog, actor, &customer, &reason)?)?
        }
        CustomerCommand::Reactivate { customer } => {
            out.object(&customers::reactivate(&mut catalog, actor, &customer)?)?
        }
        CustomerCommand::Delete { customer, confirm } => {
            let finished =
                customers::finished_by_recovery(&catalog, &customer, recovery::DELETE, &recovered)?
                    .filter(|done| confirm.as_deref() == Some(done.slug.as_str()));
            let deleted = match finished {
                Some(done) => done,
                None => customers::delete(&mut catalog, actor, &customer, confirm.as_deref())?,
            };
            out.object(&deleted)?
        }
        CustomerCommand::Undelete {
            customer,
            from_backup: None,
            ..
        } => {
            let undeleted =
                match customers::finished_by_recovery(&catalog, &customer, recovery::UNDELETE, &recovered)? {
                    Some(done) => done,
                    None => customers::undelete(&mut catalog, actor, &customer)?,
                };
            out.object(&undeleted)?
        }
        CustomerCommand::Undelete {
            customer,
            from_backup: Some(id),
            at,
        } => {
            drop(catalog);
            let undeleted = crate::ops::restore::undelete_from_backup(
                &session.home.catalog(),
                actor,
                &session.ctx.backup_dir,
                session.ctx.lock_timeout,
                &customer,
                Some(id).filter(|id| !id.is_empty()),
                at,
            )?;
            super::backup::warn_cleaned_up(session, &undeleted.cleaned_up);
            session.messages.note(&format!(
                "undeleted {} with its database from backup set {}",
                undeleted.customer.slug, undeleted.set
            ));
            out.object(&undeleted.customer)?;
        }
        CustomerCommand::Move(args) => {
            let report = if args.finish {
                moves::finish(&mut catalog, actor, &args.customer, session.ctx.lock_timeout)?
            } else if args.abort {
                moves::abort(&catalog, actor, &args.customer, &recovered)?
            } else {
                let request = MoveRequest {
                    customer: args.customer,
                    to: args.to.unwrap_or_default(),
                    online: args.online,
                    dry_run: args.dry_run,
                    lock_timeout: session.ctx.lock_timeout,
                };
                moves::run(&mut catalog, actor, &request)?
            };
            out.object(&report)?
        }
        CustomerCommand::Purge { customer, confirm } => {
            let purged = match customers::purged_by_recovery(&customer, confirm.as_deref(), &recovered) {
                Some(done) => done,
                None => customers::purge(&mut catalog, actor, &customer, confirm.as_deref())?,
            };
            out.object(&purged)?
        }
    }
    Ok(())
}
