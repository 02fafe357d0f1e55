//! `customer move --online`: the target, published under the tenant's name but shut
//! to its login, subscribes to the source while the tenant keeps writing; writes are
//! frozen only for the final catch-up, the sequences, a row count of every table and
//! the flip.

use std::time::{Duration, Instant};

use super::copy::{TableCopied, TablePair};
use super::{Work, flip};
use crate::catalog::Catalog;
use crate::engine::transfer::TableShape;
use crate::engine::{Replication, TenantDatabase};
use crate::error::{Error, Result};
use crate::ops::Actor;
use crate::ops::recovery::crash_point;

/// The name the publication, subscription, slot and mark tables share.
pub fn replication_name(customer_id: i64) -> String {
    format!("tenantctl_move_{customer_id}_{:08x}", rand::random::<u32>())
}

fn replication_of<'a>(tenant: &'a dyn TenantDatabase, side: &str) -> Result<&'a dyn Replication> {
    tenant.replication().ok_or_else(|| {
        Error::refused(format!(
            "{} cannot move online: the {side} must be a PostgreSQL server",
            tenant.describe()
        ))
        .with_hint("move it offline (leave out --online)")
    })
}

/// Every precondition, before anything is made: exit 6 with the reason.
pub fn check(source: &dyn TenantDatabase, target: &dyn TenantDatabase, tables: &[TableShape]) -> Result<()> {
    let (from, to) = (
        replication_of(source, "source")?,
        replication_of(target, "target")?,
    );
    if from.table_schema() != to.table_schema() {
        return Err(Error::refused(format!(
            "{} cannot move online to {}: replication matches tables by schema, and the servers keep \
             tenants in different modes (schema {} and {})",
            source.describe(),
            target.describe(),
            from.table_schema(),
            to.table_schema()
        ))
        .with_hint("move it offline (leave out --online)"));
    }
    from.check_publishable(tables)?;
    to.check_subscribable()
}

/// Publish the target, replicate, freeze, catch up, flip. The tables with their
/// rows, and how long the tenant could not write.
pub fn copy_and_flip(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    work: &Work<'_>,
    pairs: &[TablePair],
    name: &str,
) -> Result<(Vec<TableCopied>, Duration)> {
    work.step(catalog, "online-publishing")?;
    work.target_engine.publish(work.built, &work.ledger.to)?;
    let target = work.target_engine.tenant(&work.ledger.to);
    // Shut until the flip: nobody may write to the copy while it follows the source.
    target.set_login(false)?;
    let (from, to) = (
        replication_of(work.source, "source")?,
        replication_of(target.as_ref(), "target")?,
    );
    work.step(catalog, "online-replicating")?;
    let tables: Vec<TableShape> = pairs.iter().map(|p| p.source.clone()).collect();
    let feed = from.publish(name, &tables)?;
    to.subscribe(name, &feed)?;
    to.wait_synced(name)?;
    crash_point("customer.move:synced");

    let freeze_started = Instant::now();
    let frozen = work.source.freeze()?;
    work.step(catalog, "online-frozen")?;
    let mark = from.mark(name)?;
    to.wait_for_mark(name, &mark)?;
    to.set_sequence_values(&from.sequence_values()?)?;
    target.advance_sequences()?;
    let copied = count_both(work.source, target.as_ref(), pairs)?;
    to.unsubscribe(name)?;
    from.unpublish(name)?;
    if work.ledger.login {
        target.set_login(true)?;
    }
    crash_point("customer.move:caught-up");
    flip(
        catalog,
        actor,
        work,
        &copied,
        &work.built.applied,
        freeze_started.elapsed(),
    )?;
    drop(frozen);
    let freeze = freeze_started.elapsed();
    crash_point("customer.move:flipped");
    Ok((copied, freeze))
}

/// Rows per table on both sides, which must agree once the target caught up.
fn count_both(
    source: &dyn TenantDatabase,
    target: &dyn TenantDatabase,
    pairs: &[TablePair],
) -> Result<Vec<TableCopied>> {
    pairs
        .iter()
        .map(|pair| {
            let ours = super::row_count(source, &pair.source)?;
            let theirs = super::row_count(target, &pair.target)?;
            if ours != theirs {
                return Err(Error::verification(format!(
                    "table {} has {ours} rows on the source and {theirs} on the target after catching up; \
                     nothing was switched",
                    pair.target.name
                )));
            }
            Ok(TableCopied {
                table: pair.target.name.clone(),
                rows: ours,
                digest: String::new(),
            })
        })
        .collect()
}
