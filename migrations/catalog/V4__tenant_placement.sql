-- Where each tenant lives, customers still being provisioned, and the ledger of
-- operations that change files as well as rows.
--
-- db_path becomes location, beside the engine and server that hold it (for SQLite
-- tenants on the built-in server 'local', the file path db_path held). Status gains
-- 'provisioning': a customer whose database is not in place yet, which no command
-- lists, resolves or works on. SQLite cannot change a CHECK constraint in place, so
-- the table is rebuilt; tenantctl runs catalog migrations with foreign keys off and
-- checks them afterwards, so the rows that point at customers stay as they are.
CREATE TABLE customers_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    slug             TEXT NOT NULL UNIQUE,
    email            TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name             TEXT NOT NULL,
    company_name     TEXT,
    plan             TEXT NOT NULL REFERENCES plans(name) ON UPDATE CASCADE,
    status           TEXT NOT NULL DEFAULT 'active'
                     CHECK (status IN ('provisioning', 'active', 'suspended', 'deleted')),
    status_reason    TEXT,
    max_sites        INTEGER CHECK (max_sites >= 0),
    max_storage_mb   INTEGER CHECK (max_storage_mb >= 0),
    max_bandwidth_gb INTEGER CHECK (max_bandwidth_gb >= 0),
    max_api_calls    INTEGER CHECK (max_api_calls >= 0),
    metadata         TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    engine           TEXT NOT NULL DEFAULT 'sqlite',
    server           TEXT NOT NULL DEFAULT 'local',
    location         TEXT NOT NULL,
    schema_version   INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    suspended_at     TEXT,
    deleted_at       TEXT,
    migration_status TEXT NOT NULL DEFAULT 'ok' CHECK (migration_status IN ('ok', 'failed', 'drift')),
    migration_error  TEXT,
    migrated_at      TEXT
);
INSERT INTO customers_new (id, slug, email, name, company_name, plan, status, status_reason,
        max_sites, max_storage_mb, max_bandwidth_gb, max_api_calls, metadata, location,
        schema_version, created_at, updated_at, suspended_at, deleted_at,
        migration_status, migration_error, migrated_at)
    SELECT id, slug, email, name, company_name, plan, status, status_reason,
        max_sites, max_storage_mb, max_bandwidth_gb, max_api_calls, metadata, db_path,
        schema_version, created_at, updated_at, suspended_at, deleted_at,
        migration_status, migration_error, migrated_at
    FROM customers;
-- AUTOINCREMENT's high-water mark goes with the old table: keep it, so that the id
-- of a purged customer is never handed out again.
CREATE TABLE customers_high_water AS
    SELECT max(seq) AS seq FROM sqlite_sequence WHERE name = 'customers';
DROP TABLE customers;
ALTER TABLE customers_new RENAME TO customers;
DELETE FROM sqlite_sequence WHERE name = 'customers';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'customers', max(coalesce(h.seq, 0), coalesce((SELECT max(id) FROM customers), 0))
    FROM customers_high_water h;
DROP TABLE customers_high_water;
CREATE INDEX customers_plan ON customers(plan);
CREATE INDEX customers_status ON customers(status);

-- A command that changes files as well as rows records here what it is about to
-- do before it touches a file, and removes the row in the transaction that makes
-- the result visible. A row whose owner (a lock its process holds) is gone is work
-- a killed run left half done: the next command on the same customer, set or tree
-- (or 'doctor --fix') finishes or undoes it. The customer is not a foreign key: a
-- purge's row outlives the customer it removes.
CREATE TABLE operations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    customer_id INTEGER,
    owner       TEXT NOT NULL,
    steps       TEXT NOT NULL CHECK (json_valid(steps)),
    started_at  TEXT NOT NULL
);
CREATE INDEX operations_customer ON operations(customer_id);
