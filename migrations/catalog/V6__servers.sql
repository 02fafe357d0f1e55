-- Database servers that host tenants (SPEC section 7). The built-in server 'local'
-- (the home's tenants/ folder) has no row. The URL is kept without its password;
-- the password is encrypted with the master key ('v1.<key id>.<data>', the row's
-- identity 'server:<name>' as associated data).
CREATE TABLE servers (
    name        TEXT PRIMARY KEY CHECK (name <> 'local'),
    engine      TEXT NOT NULL CHECK (engine IN ('postgres', 'mysql')),
    url         TEXT NOT NULL,
    password    TEXT,
    mode        TEXT NOT NULL DEFAULT 'database' CHECK (mode IN ('database', 'schema')),
    capacity    INTEGER CHECK (capacity IS NULL OR capacity >= 0),
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining')),
    version     TEXT NOT NULL,
    -- Which engine migrations the server's template holds (version:checksum list);
    -- a different set means the template is rebuilt before the next provisioning.
    template    TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- Each server tenant's own login role and its password, encrypted as above with
-- 'tenant-role:<customer id>' as associated data.
CREATE TABLE tenant_roles (
    customer_id INTEGER PRIMARY KEY REFERENCES customers(id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    password    TEXT NOT NULL,
    rotated_at  TEXT NOT NULL
);
