-- The per-tenant migration ledger, and the query history of `db sql`.

-- ok: at the version recorded; failed: the last run failed (error kept);
-- drift: an applied migration's file has changed since.
ALTER TABLE customers ADD COLUMN migration_status TEXT NOT NULL DEFAULT 'ok'
    CHECK (migration_status IN ('ok', 'failed', 'drift'));
ALTER TABLE customers ADD COLUMN migration_error TEXT;
ALTER TABLE customers ADD COLUMN migrated_at TEXT;

-- What each tenant database has applied, mirrored from its own
-- refinery_schema_history so that current tenants can be skipped without
-- opening their files. The tenant file stays the source of truth.
CREATE TABLE tenant_migrations (
    customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  TEXT NOT NULL,
    PRIMARY KEY (customer_id, version)
) WITHOUT ROWID;
CREATE INDEX tenant_migrations_checksum ON tenant_migrations(version, checksum);

CREATE TABLE query_history (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            TEXT NOT NULL,
    actor         TEXT NOT NULL,
    customer_id   INTEGER,
    customer_slug TEXT NOT NULL,
    sql           TEXT NOT NULL,
    write         INTEGER NOT NULL,
    duration_ms   REAL NOT NULL,
    row_count     INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('running', 'ok', 'error')),
    error         TEXT
);
CREATE INDEX query_history_customer ON query_history(customer_id, id);
