-- The identity a legacy config file gives its site (`siteId` / `site_id`), so that
-- `import` matches a site by it even when the file changes the site's domain.
ALTER TABLE sites ADD COLUMN legacy_id TEXT;

-- Sites imported before this column existed keep their siteId in their config:
-- take it where exactly one site has it.
WITH found AS (
    SELECT id, trim(CASE
        WHEN json_type(config, '$.siteId') IN ('text', 'integer') THEN CAST(json_extract(config, '$.siteId') AS TEXT)
        WHEN json_type(config, '$.site_id') IN ('text', 'integer') THEN CAST(json_extract(config, '$.site_id') AS TEXT)
    END) AS legacy_id
    FROM sites
),
unique_ids AS (
    SELECT legacy_id FROM found WHERE legacy_id <> '' GROUP BY legacy_id HAVING count(*) = 1
)
UPDATE sites SET legacy_id = (SELECT f.legacy_id FROM found f WHERE f.id = sites.id)
WHERE id IN (SELECT f.id FROM found f JOIN unique_ids u ON u.legacy_id = f.legacy_id);

CREATE UNIQUE INDEX sites_legacy_id ON sites(legacy_id) WHERE legacy_id IS NOT NULL;
