//! A MySQL tenant's rows for a move (being built).

use super::tenant::MyTenant;
use crate::engine::transfer::{Cell, TableShape};
use crate::error::{Error, Result};

impl MyTenant {
    pub(super) fn shapes(&self) -> Result<Vec<TableShape>> {
        Err(Error::refused("MySQL moves are not built yet"))
    }
    pub(super) fn rows_out(
        &self,
        _table: &TableShape,
        _each: &mut dyn FnMut(Vec<Cell>) -> Result<()>,
    ) -> Result<()> {
        Err(Error::refused("MySQL moves are not built yet"))
    }
    pub(super) fn rows_in(
        &self,
        _table: &TableShape,
        _next: &mut dyn FnMut() -> Result<Option<Vec<Cell>>>,
    ) -> Result<u64> {
        Err(Error::refused("MySQL moves are not built yet"))
    }
    pub(super) fn exact_count(&self, _table: &TableShape) -> Result<u64> {
        Err(Error::refused("MySQL moves are not built yet"))
    }
    pub(super) fn move_counters_past_ids(&self) -> Result<()> {
        Ok(())
    }
}
