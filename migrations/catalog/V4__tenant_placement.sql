-- Where each tenant lives: the engine and server beside the engine's own name for it
-- (for SQLite tenants on the built-in server 'local', the file path that db_path held).
ALTER TABLE customers RENAME COLUMN db_path TO location;
ALTER TABLE customers ADD COLUMN engine TEXT NOT NULL DEFAULT 'sqlite';
ALTER TABLE customers ADD COLUMN server TEXT NOT NULL DEFAULT 'local';
