//! A MySQL tenant's part in backups and restores (being built).

use std::path::Path;

use super::tenant::{MyEngine, MyTenant};
use crate::backup::Entry;
use crate::engine::{BackedUp, BackupTarget, RestoreSource, Staged};
use crate::error::{Error, Result};

impl MyTenant {
    pub(super) fn dump_into(&self, _target: &BackupTarget<'_>) -> Result<BackedUp> {
        Err(Error::refused("MySQL backups are not built yet"))
    }
    pub(super) fn stage(&self, _source: &RestoreSource<'_>) -> Result<Staged> {
        Err(Error::refused("MySQL restores are not built yet"))
    }
    pub(super) fn complete_swap(&self, _staged: &Staged, _login: Option<bool>) -> Result<()> {
        Err(Error::refused("MySQL restores are not built yet"))
    }
    pub(super) fn drop_staged(&self, _staged: &Staged) {}
    pub(super) fn kept_entry(&self, _staged: &Staged, _customer_id: i64, _slug: &str) -> Option<Entry> {
        None
    }
}

impl MyEngine {
    pub(super) fn find_restore_leftovers(&self, _remove: bool) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    pub(super) fn restore_to_check(&self, _file: &Path, _entry: &Entry) -> Result<()> {
        Err(Error::refused("MySQL backups are not built yet"))
    }
}
