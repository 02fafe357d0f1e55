-- What each tenant database looked like when doctor last found it passing its
-- integrity check: the engine's change stamp (for SQLite, the file's identity, size
-- and change times). Doctor skips the check while the stamp is the same, unless
-- --full; a stamp that differs, or none, means check again.
CREATE TABLE tenant_check_stamps (
    customer_id INTEGER PRIMARY KEY REFERENCES customers(id) ON DELETE CASCADE,
    stamp       TEXT NOT NULL,
    checked_at  TEXT NOT NULL
);
