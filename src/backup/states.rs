//! The words a backup set's manifest, verify and prune use, spelt as the manifests on
//! disk and the JSON output have them.

use crate::words::word_enum;

word_enum! {
    /// Why a set was taken.
    pub enum BackupKind ("backup kind") {
        Manual = "manual",
        Scheduled = "scheduled",
        PreRestore = "pre-restore",
    }
}

impl BackupKind {
    /// Taken by the operator or cron, as opposed to saved by a restore.
    pub fn is_regular(self) -> bool {
        matches!(self, BackupKind::Manual | BackupKind::Scheduled)
    }
}

word_enum! {
    /// What a set was taken of: the catalog and every tenant not deleted, the catalog
    /// alone, some customers, or what a restore replaced.
    pub enum SetScope ("backup scope") {
        All = "all",
        Catalog = "catalog",
        Customers = "customers",
        Replaced = "replaced",
    }
}

word_enum! {
    /// What one file of a set holds.
    pub enum EntryScope ("entry scope") {
        Catalog = "catalog",
        Tenant = "tenant",
    }
}

word_enum! {
    /// What a set's entry holds: a SQLite database file, a `pg_dump -Fc` archive, a
    /// `mariadb-dump` script, or nothing in the set at all because the replaced
    /// database was kept on its server under another name (a restore's pre-restore copy
    /// of a server tenant, which costs a rename, not a copy).
    pub enum CopyFormat ("copy format") {
        Sqlite = "sqlite",
        PgDumpCustom = "pg_dump_custom",
        MysqlSql = "mysql_sql",
        KeptOnServer = "kept_on_server",
    }
}

word_enum! {
    /// How a file of a set fared in `backup verify`.
    pub enum FileStatus ("verify status") {
        Ok = "ok",
        /// The file is not there or cannot be read.
        Missing = "missing",
        /// Its size or checksum is not the manifest's.
        Mismatch = "mismatch",
        /// It fails quick_check.
        Damaged = "damaged",
        /// `--deep` could not restore it to check it (its server does not answer).
        Unchecked = "unchecked",
    }
}

word_enum! {
    /// What prune does with a set.
    pub enum PruneAction ("prune action") {
        Keep = "keep",
        Remove = "remove",
    }
}

word_enum! {
    /// Why prune keeps a set (or, for `empty`, removes it).
    pub enum PruneReason ("prune reason") {
        Newest = "newest",
        NewestCopy = "newest-copy",
        Last = "last",
        Daily = "daily",
        Weekly = "weekly",
        Monthly = "monthly",
        Undated = "undated",
        PreRestore = "pre-restore",
        Empty = "empty",
        /// Due to go, but a copy it keeps on a database server could not be dropped
        /// (the server is down, say): it stays until a later prune can.
        KeptCopyRemains = "kept-copy-remains",
    }
}

word_enum! {
    /// What a restore did, or in a dry run would do, with one file of the set.
    pub enum RestoreStatus ("restore status") {
        Restored = "restored",
        /// Left alone, with a reason.
        Skipped = "skipped",
        /// Dry run: a live file is there and would be replaced.
        WouldReplace = "would-replace",
        /// Dry run: no file is there now.
        WouldCreate = "would-create",
        /// Could not be put back (its server does not answer, say), with a reason; the
        /// others were, and the restore exits 8.
        Failed = "failed",
    }
}

word_enum! {
    /// What became of a live file before a restore replaced it.
    pub enum SaveStatus ("pre-restore status") {
        Saved = "saved",
        /// It failed its check and was kept as raw bytes.
        KeptDamaged = "kept-damaged",
        /// It could not be read at all.
        NotSaved = "not-saved",
        /// Dry run: it would be saved.
        WouldSave = "would-save",
    }
}
