-- What each tenant database looked like when doctor last found it passing its
-- integrity check: the engine's change stamp (for SQLite, the file's identity, size
-- and change times) and the migrations it had applied then (a JSON array of
-- version, name, checksum). While the stamp is the same, doctor neither checks nor
-- opens the database again, unless --full; a stamp that differs, or none, means
-- check again.
CREATE TABLE tenant_check_stamps (
    customer_id INTEGER PRIMARY KEY REFERENCES customers(id) ON DELETE CASCADE,
    stamp       TEXT NOT NULL,
    applied     TEXT NOT NULL CHECK (json_valid(applied)),
    checked_at  TEXT NOT NULL
);
