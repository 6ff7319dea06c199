--
-- Upgrade path: 1.0 installed, then ALTER EXTENSION pulse UPDATE, must end
-- with the same objects as a fresh install of the current version, and keep
-- the cursor secret (cursors issued before the upgrade stay valid).
--
-- the objects of a fresh install of the default version
CREATE TEMP TABLE fresh AS
SELECT pg_describe_object(classid, objid, objsubid) COLLATE "C" AS object
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pulse');
SELECT extversion FROM pg_extension WHERE extname = 'pulse';
SELECT count(*) > 25 AS has_objects,
       count(*) FILTER (WHERE object LIKE 'function pulse.page(%') AS page_fn,
       count(*) FILTER (WHERE object LIKE 'function pulse.create_aggregate(%') AS aggregate_fn
FROM fresh;

DROP EXTENSION pulse CASCADE;
CREATE EXTENSION pulse VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'pulse';
CREATE TABLE up_items (id int PRIMARY KEY);
INSERT INTO up_items SELECT generate_series(1, 10);
SELECT pulse.page('SELECT id FROM up_items', 'id', NULL, 3)->>'next_cursor' AS old_cursor \gset
SELECT key AS old_key FROM pulse.secret \gset

ALTER EXTENSION pulse UPDATE;
SELECT extversion = (SELECT default_version FROM pg_available_extensions WHERE name = 'pulse') AS at_default
FROM pg_extension WHERE extname = 'pulse';

-- same objects as a fresh install
SELECT object AS missing_after_upgrade FROM fresh
EXCEPT
SELECT pg_describe_object(classid, objid, objsubid) COLLATE "C"
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pulse')
ORDER BY 1;
SELECT pg_describe_object(classid, objid, objsubid) COLLATE "C" AS extra_after_upgrade
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pulse')
EXCEPT
SELECT object FROM fresh
ORDER BY 1;

-- the secret and the cursors issued before the upgrade survive it
SELECT key = :'old_key'::bytea AS same_secret FROM pulse.secret;
SELECT pulse.page('SELECT id FROM up_items', 'id', :'old_cursor', 3)->'items' AS page_after_upgrade;
DROP TABLE up_items;
