-- Rolling tenant migrations back (`db rollback`).

-- The checksum of each applied migration's down script as it was when the
-- tenant applied the migration (or when the script was first seen after), so
-- that a down script edited since is drift; NULL: it has none yet.
ALTER TABLE tenant_migrations ADD COLUMN down_checksum TEXT;

-- Which way the tenant's last run went: 'migrate' (forward) or 'rollback'.
ALTER TABLE customers ADD COLUMN migration_action TEXT NOT NULL DEFAULT 'migrate'
    CHECK (migration_action IN ('migrate', 'rollback'));
