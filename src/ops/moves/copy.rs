//! The data of a move: which source table goes into which target table, the check
//! that every value converts before anything is frozen, the copy itself (a reader
//! thread per table feeding the writer), and the comparison of both sides after.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde::Serialize;

use crate::engine::TenantDatabase;
use crate::engine::transfer::{self, Cell, ColumnKind, Digest, TableShape, Unconvertible};
use crate::error::{Error, Result};

/// One table as it is read on the source and written on the target: the same
/// columns, in the same order, each with its own side's kind.
#[derive(Debug, Clone)]
pub struct TablePair {
    pub source: TableShape,
    pub target: TableShape,
}

impl TablePair {
    fn target_kinds(&self) -> Vec<ColumnKind> {
        self.target.columns.iter().map(|c| c.kind).collect()
    }

    /// How a row is named in a message: its key values, or its position.
    fn row_name(&self, row: &[Cell], position: u64) -> String {
        let keys: Vec<String> = self
            .target
            .key
            .iter()
            .filter_map(|key| {
                let i = self.source.columns.iter().position(|c| &c.name == key)?;
                Some(format!("{key}={}", shown_cell(&row[i])))
            })
            .collect();
        match keys.is_empty() {
            true => format!("#{position}"),
            false => keys.join(","),
        }
    }
}

fn shown_cell(cell: &Cell) -> String {
    match cell {
        Cell::Int(n) => n.to_string(),
        Cell::Text(t) => crate::validate::printable(t),
        other => format!("{other:?}"),
    }
}

/// What a move did with one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableCopied {
    pub table: String,
    pub rows: u64,
    /// The digest both sides agreed on.
    pub digest: String,
}

/// Pairs every source table with the target's table of the same name, in an order
/// that fills referenced tables first. A table or column the target lacks is data
/// the move would lose: exit 9 naming it.
pub fn pair_tables(source: Vec<TableShape>, target: Vec<TableShape>) -> Result<Vec<TablePair>> {
    let mut ordered = target.clone();
    transfer::fill_order(&mut ordered);
    for table in &source {
        let Some(theirs) = target.iter().find(|t| t.name == table.name) else {
            return Err(Error::invalid_input(format!(
                "table {} is not in the target's schema: the move would leave its rows behind",
                table.name
            ))
            .with_hint("add it to the target engine's tenant migrations, or drop it first"));
        };
        if let Some(column) = table.columns.iter().find(|c| theirs.column(&c.name).is_none()) {
            return Err(Error::invalid_input(format!(
                "column {}.{} is not in the target's schema: the move would leave its values behind",
                table.name, column.name
            ))
            .with_hint("add it to the target engine's tenant migrations, or drop it first"));
        }
    }
    Ok(ordered
        .into_iter()
        .filter_map(|theirs| {
            let ours = source.iter().find(|s| s.name == theirs.name)?;
            let names: Vec<&str> = ours.columns.iter().map(|c| c.name.as_str()).collect();
            Some(TablePair {
                source: ours.clone(),
                target: theirs.with_columns(&names),
            })
        })
        .collect())
}

/// Reads every source row and converts it, writing nothing: the first value that
/// cannot go into its target column refuses the move (exit 9). Returns the rows of
/// each table.
pub fn check_conversions(source: &dyn TenantDatabase, pairs: &[TablePair]) -> Result<Vec<u64>> {
    let mut counts = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let kinds = pair.target_kinds();
        let mut rows = 0u64;
        source.read_rows(&pair.source, &mut |row| {
            rows += 1;
            convert_row(pair, &kinds, row, rows).map(drop)
        })?;
        counts.push(rows);
    }
    Ok(counts)
}

fn convert_row(pair: &TablePair, kinds: &[ColumnKind], row: Vec<Cell>, position: u64) -> Result<Vec<Cell>> {
    let name = pair.row_name(&row, position);
    row.into_iter()
        .zip(kinds)
        .enumerate()
        .map(|(i, (cell, kind))| {
            let column = &pair.target.columns[i];
            transfer::convert(cell, *kind)
                .and_then(|cell| transfer::fits(cell, column))
                .map_err(|why| {
                    let problem = Unconvertible {
                        table: pair.target.name.clone(),
                        column: pair.target.columns[i].name.clone(),
                        row: name.clone(),
                        why,
                    };
                    Error::invalid_input(format!("cannot move this tenant: {problem}"))
                        .with_hint("fix or remove the value (tenantctl db sql … --write), then move again")
                })
        })
        .collect()
}

/// Rows travel in batches: fewer hand-overs between the threads.
const BATCH: usize = 512;

/// Copies every table, each read on its own thread while the target writes; the
/// digest of the rows read, which are the source's whole table while it is frozen.
pub fn copy_tables(
    source: &dyn TenantDatabase,
    target: &dyn TenantDatabase,
    pairs: &[TablePair],
) -> Result<Vec<Digest>> {
    pairs
        .iter()
        .map(|pair| copy_table(source, target, pair))
        .collect()
}

fn copy_table(source: &dyn TenantDatabase, target: &dyn TenantDatabase, pair: &TablePair) -> Result<Digest> {
    let kinds = pair.target_kinds();
    let (sender, receiver) = sync_channel::<Vec<Vec<Cell>>>(8);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| read_into(source, pair, &kinds, sender));
        let written = write_from(target, &pair.target, receiver);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(Error::unexpected("the reading thread of a move panicked")));
        // The reader's error (a value that does not convert, say) explains the
        // writer's, which only saw the rows stop.
        let digest = read?;
        let written = written?;
        if written != digest.rows {
            return Err(Error::verification(format!(
                "table {}: {} rows read, {written} written; nothing was switched",
                pair.target.name, digest.rows
            )));
        }
        Ok(digest)
    })
}

fn read_into(
    source: &dyn TenantDatabase,
    pair: &TablePair,
    kinds: &[ColumnKind],
    sender: SyncSender<Vec<Vec<Cell>>>,
) -> Result<Digest> {
    let mut batch = Vec::with_capacity(BATCH);
    let mut position = 0u64;
    let mut digest = Digest::default();
    source.read_rows(&pair.source, &mut |row| {
        position += 1;
        let row = convert_row(pair, kinds, row, position)?;
        digest.add(&row, kinds);
        batch.push(row);
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            sender
                .send(full)
                .map_err(|_| Error::unexpected("the target stopped taking rows"))?;
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        let _ = sender.send(batch);
    }
    Ok(digest)
}

fn write_from(
    target: &dyn TenantDatabase,
    table: &TableShape,
    receiver: Receiver<Vec<Vec<Cell>>>,
) -> Result<u64> {
    let mut pending = Vec::new().into_iter();
    target.write_rows(table, &mut || loop {
        if let Some(row) = pending.next() {
            return Ok(Some(row));
        }
        match receiver.recv() {
            Ok(batch) => pending = batch.into_iter(),
            Err(_) => return Ok(None),
        }
    })
}

/// Compares every table on both sides: the engine's own digest where both sides
/// are the same engine and can compute it where the data is, else the target's
/// rows read back here against `read`, the digests of the source's rows taken while
/// they were copied (the source was frozen). A difference fails the move (exit 7)
/// naming the table.
pub fn verify(
    source: &dyn TenantDatabase,
    target: &dyn TenantDatabase,
    pairs: &[TablePair],
    read: &[Digest],
    same_engine: bool,
) -> Result<Vec<TableCopied>> {
    let mut copied = Vec::with_capacity(pairs.len());
    for (pair, read) in pairs.iter().zip(read) {
        let native = match same_engine {
            true => both_sides(
                || source.native_digest(&pair.source),
                || target.native_digest(&pair.target),
            )?,
            false => None,
        };
        let (ours, theirs) = match native {
            Some(both) => both,
            None => {
                let ours = *read;
                let theirs = portable_digest(target, &pair.target, pair)?;
                (
                    format!("{}:{}", ours.rows, ours.hex()),
                    format!("{}:{}", theirs.rows, theirs.hex()),
                )
            }
        };
        if ours != theirs {
            return Err(Error::verification(format!(
                "table {} differs after the copy (source {ours}, target {theirs}); nothing was switched",
                pair.target.name
            )));
        }
        let (rows, digest) = ours.split_once(':').unwrap_or(("0", &ours));
        copied.push(TableCopied {
            table: pair.target.name.clone(),
            rows: rows.parse().unwrap_or(0),
            digest: digest.to_string(),
        });
    }
    Ok(copied)
}

/// The two sides' digests, computed at once: each is its own server's work.
fn both_sides(
    ours: impl FnOnce() -> Result<Option<String>> + Send,
    theirs: impl FnOnce() -> Result<Option<String>> + Send,
) -> Result<Option<(String, String)>> {
    let (ours, theirs) = std::thread::scope(|scope| {
        let ours = scope.spawn(ours);
        let theirs = theirs();
        (ours.join(), theirs)
    });
    let ours = ours.unwrap_or_else(|_| Err(Error::unexpected("a digest thread panicked")))?;
    Ok(ours.zip(theirs?))
}

fn portable_digest(side: &dyn TenantDatabase, table: &TableShape, pair: &TablePair) -> Result<Digest> {
    let kinds = pair.target_kinds();
    let mut digest = Digest::default();
    let mut position = 0u64;
    side.read_rows(table, &mut |row| {
        position += 1;
        let converted = convert_row(pair, &kinds, row, position)?;
        digest.add(&converted, &kinds);
        Ok(())
    })?;
    Ok(digest)
}

/// Only used to keep the pairs' shapes honest in tests of the pairing.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transfer::Column;

    fn table(name: &str, columns: &[(&str, ColumnKind)]) -> TableShape {
        TableShape {
            name: name.into(),
            columns: columns
                .iter()
                .map(|(n, k)| Column {
                    name: n.to_string(),
                    kind: *k,
                    declared: String::new(),
                    required: false,
                    max_bytes: None,
                })
                .collect(),
            key: vec!["id".into()],
            references: vec![],
        }
    }

    #[test]
    fn a_table_or_column_the_target_lacks_refuses_the_move() {
        let source = vec![table(
            "users",
            &[("id", ColumnKind::Integer), ("nick", ColumnKind::Text)],
        )];
        let target = vec![table("users", &[("id", ColumnKind::Integer)])];
        let err = pair_tables(source, target).unwrap_err();
        assert_eq!(err.exit_code(), 9);
        assert!(err.to_string().contains("users.nick"), "{err}");
        let err = pair_tables(vec![table("extra", &[])], vec![]).unwrap_err();
        assert!(err.to_string().contains("table extra"), "{err}");
    }

    #[test]
    fn pairs_keep_the_source_columns_with_the_target_kinds() {
        let source = vec![table(
            "p",
            &[("active", ColumnKind::Integer), ("id", ColumnKind::Integer)],
        )];
        let target = vec![table(
            "p",
            &[
                ("id", ColumnKind::Integer),
                ("active", ColumnKind::Boolean),
                ("note", ColumnKind::Text),
            ],
        )];
        let pairs = pair_tables(source, target).unwrap();
        let kinds: Vec<_> = pairs[0]
            .target
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.kind))
            .collect();
        assert_eq!(
            kinds,
            [("active", ColumnKind::Boolean), ("id", ColumnKind::Integer)]
        );
    }
}
