-- The control-plane catalog: plans, customers and everything they own.
-- Timestamps are RFC 3339 text in UTC; JSON columns hold valid JSON text.

CREATE TABLE plans (
    name             TEXT PRIMARY KEY,
    max_sites        INTEGER NOT NULL CHECK (max_sites >= 0),
    max_storage_mb   INTEGER NOT NULL CHECK (max_storage_mb >= 0),
    max_bandwidth_gb INTEGER NOT NULL CHECK (max_bandwidth_gb >= 0),
    max_api_calls    INTEGER NOT NULL CHECK (max_api_calls >= 0),
    builtin          INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);

INSERT INTO plans (name, max_sites, max_storage_mb, max_bandwidth_gb, max_api_calls, builtin, created_at, updated_at) VALUES
    ('starter',     3,   1024,   10,   10000, 1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    ('pro',        10,  10240,  100,  100000, 1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    ('enterprise', 100, 102400, 1000, 1000000, 1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));

CREATE TABLE customers (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    slug             TEXT NOT NULL UNIQUE,
    email            TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name             TEXT NOT NULL,
    company_name     TEXT,
    plan             TEXT NOT NULL REFERENCES plans(name) ON UPDATE CASCADE,
    status           TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
    status_reason    TEXT,
    max_sites        INTEGER CHECK (max_sites >= 0),
    max_storage_mb   INTEGER CHECK (max_storage_mb >= 0),
    max_bandwidth_gb INTEGER CHECK (max_bandwidth_gb >= 0),
    max_api_calls    INTEGER CHECK (max_api_calls >= 0),
    metadata         TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    db_path          TEXT NOT NULL,
    schema_version   INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    suspended_at     TEXT,
    deleted_at       TEXT
);
CREATE INDEX customers_plan ON customers(plan);
CREATE INDEX customers_status ON customers(status);

CREATE TABLE sites (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id   INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    domain        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    port          INTEGER UNIQUE CHECK (port BETWEEN 1 AND 65535),
    business_type TEXT,
    status        TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'deployed', 'stopped', 'failed')),
    config        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(config)),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    deployed_at   TEXT
);
CREATE INDEX sites_customer ON sites(customer_id);
CREATE INDEX sites_status ON sites(status);

CREATE TABLE deployments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id    INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    number     INTEGER NOT NULL,
    config     TEXT NOT NULL CHECK (json_valid(config)),
    port       INTEGER,
    status     TEXT NOT NULL,
    log        TEXT NOT NULL DEFAULT '',
    actor      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (site_id, number)
);

CREATE TABLE snapshots (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id    INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('manual', 'pre-deploy', 'pre-restore', 'import')),
    name       TEXT,
    config     TEXT NOT NULL CHECK (json_valid(config)),
    actor      TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX snapshots_site ON snapshots(site_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    customer_id  INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(scopes)),
    secret_hash  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX api_keys_customer ON api_keys(customer_id);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    customer_id  INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    device       TEXT,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    last_seen_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX sessions_customer ON sessions(customer_id);

CREATE TABLE usage (
    customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    metric      TEXT NOT NULL,
    month       TEXT NOT NULL,
    amount      INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (customer_id, metric, month)
);

CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Audit events have no foreign keys: they outlive what they describe.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target      TEXT NOT NULL,
    customer_id INTEGER,
    details     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details))
);
CREATE INDEX audit_events_customer ON audit_events(customer_id, id);
CREATE INDEX audit_events_action ON audit_events(action, id);
CREATE INDEX audit_events_at ON audit_events(at);

CREATE TRIGGER audit_events_are_append_only BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events cannot be changed');
END;
