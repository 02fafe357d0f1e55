-- Where a moved customer's data was before its move. `customer move` flips the
-- placement in one transaction and keeps the old copy, frozen, until
-- `customer move CUSTOMER --finish` drops it; this row names that copy meanwhile,
-- so that `customer show` can point at it and nothing mistakes it for an orphan.
-- The move itself, until its flip, is an entry of the operation ledger.
CREATE TABLE moved_sources (
    customer_id INTEGER PRIMARY KEY REFERENCES customers(id),
    engine      TEXT NOT NULL,
    server      TEXT NOT NULL,
    location    TEXT NOT NULL,
    moved_at    TEXT NOT NULL
);
