//! The layout of a tenantctl home folder.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::validate;

#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn catalog(&self) -> PathBuf {
        self.root.join("catalog.db")
    }

    pub fn tenants_dir(&self) -> PathBuf {
        self.root.join("tenants")
    }

    pub fn trash_dir(&self) -> PathBuf {
        self.root.join("trash")
    }

    /// Where the template database for new tenants lives.
    pub fn templates_dir(&self) -> PathBuf {
        self.root.join("templates")
    }

    pub fn default_tenant_migrations_dir(&self) -> PathBuf {
        self.root.join("tenant-migrations")
    }

    /// Where running commands keep the locks that prove they are alive.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// The key that encrypts stored server and tenant-role passwords; never copied
    /// into a backup set.
    pub fn master_key(&self) -> PathBuf {
        self.root.join("master.key")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join(".lock")
    }

    /// Where a customer's database lives. The slug is checked again here because the
    /// result becomes a path.
    pub fn tenant_db(&self, slug: &str) -> Result<PathBuf> {
        Ok(self.tenants_dir().join(format!("{}.db", safe_label(slug)?)))
    }

    /// Where a soft-deleted customer's database waits for undelete or purge.
    pub fn trashed_tenant_db(&self, slug: &str, id: i64) -> Result<PathBuf> {
        Ok(self.trash_dir().join(format!("{}.{id}.db", safe_label(slug)?)))
    }
}

fn safe_label(slug: &str) -> Result<&str> {
    if validate::is_dns_label(slug) {
        Ok(slug)
    } else {
        Err(Error::unexpected(format!(
            "refusing to build a path from '{}'",
            validate::printable(slug)
        )))
    }
}
