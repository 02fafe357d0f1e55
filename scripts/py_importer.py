#!/usr/bin/env python3
"""Baseline for `tenantctl import`: a straightforward single-threaded importer
doing the same work with the sqlite3 module in one transaction - read and parse
every site file, create each customer with its own tenant database (schema from
the migration files), insert the sites."""
import json, os, sqlite3, sys

folder, catalog_path, tenants_dir, migrations_dir = sys.argv[1:5]
migrations = [open(os.path.join(migrations_dir, f)).read()
              for f in sorted(os.listdir(migrations_dir), key=lambda n: int(n[1:].split("__")[0]))]
db = sqlite3.connect(catalog_path)
db.executescript("""
CREATE TABLE IF NOT EXISTS customers (id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT, company TEXT,
    plan TEXT, slug TEXT UNIQUE, db_path TEXT);
CREATE TABLE IF NOT EXISTS sites (id INTEGER PRIMARY KEY, customer_id INTEGER, name TEXT, domain TEXT UNIQUE,
    port INTEGER UNIQUE, business_type TEXT, status TEXT, config TEXT);
""")
customers = {}
db.execute("BEGIN")
for root, _, files in os.walk(folder):
    for name in sorted(files):
        if not name.endswith(".json"):
            continue
        doc = json.load(open(os.path.join(root, name)))
        owner = doc["customer"]
        if owner["email"] not in customers:
            slug = owner.get("company", owner["email"]).lower().replace(" ", "-")
            path = os.path.join(tenants_dir, slug + ".db")
            tenant = sqlite3.connect(path)
            tenant.execute("PRAGMA journal_mode=WAL")
            for sql in migrations:
                tenant.executescript(sql)
            tenant.commit()
            tenant.close()
            cur = db.execute("INSERT INTO customers (email, name, company, plan, slug, db_path) VALUES (?, ?, ?, ?, ?, ?)",
                             (owner["email"], owner.get("name"), owner.get("company"), owner.get("plan"), slug, path))
            customers[owner["email"]] = cur.lastrowid
        db.execute("INSERT INTO sites (customer_id, name, domain, port, business_type, status, config) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (customers[owner["email"]], doc["name"], doc["domain"], doc.get("port"), doc.get("businessType"),
                    doc.get("status", "draft"), json.dumps(doc)))
db.commit()
