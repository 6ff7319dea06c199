--
-- Upgrade path: 1.0 installed, then ALTER EXTENSION pulse UPDATE, must end
-- with the same objects as a fresh install of the current version and keep
-- the cursor secret.  Cursors issued by pulse 1.0 and 1.1 (format version 1,
-- bound to the fingerprint) are refused after the upgrade with SQLSTATE
-- 22023 and a hint to start the walk again.
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
SELECT key AS old_key FROM pulse.secret \gset
-- The cursor pulse 1.0 issued for the first page of 3 rows: format version
-- 1, bound to the fingerprint, the order, the arguments and the tenant,
-- signed with the database's secret (pgcrypto's hmac).
CREATE EXTENSION pgcrypto;
SELECT rtrim(translate(encode(payload || hmac(payload, :'old_key'::bytea, 'sha256'), 'base64'),
                       E'+/\n', '-_'), '=') AS old_cursor
FROM (SELECT '\x0100'::bytea
             || substr(sha256(convert_to('pulse.cursor.binding.v1', 'UTF8') || '\x00'::bytea
                              || int8send(4)
                              || (SELECT string_agg('\x01'::bytea || int8send(octet_length(convert_to(p, 'UTF8')))
                                                    || convert_to(p, 'UTF8'), ''::bytea ORDER BY i)
                                  FROM unnest(ARRAY[pulse.fingerprint('SELECT id FROM up_items'),
                                                    'pulse_q.id ASC NULLS LAST', '[]', ''])
                                       WITH ORDINALITY AS u(p, i))), 1, 8)
             || '\x010104'::bytea || int4send(3) AS payload) AS v1 \gset
DROP EXTENSION pgcrypto;

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

-- the secret survives the upgrade; a cursor of the old format is refused
-- with a hint, and the walk starts again from the first page
SELECT key = :'old_key'::bytea AS same_secret FROM pulse.secret;
SELECT pulse.page('SELECT id FROM up_items', 'id', :'old_cursor', 3)->'items' AS page_after_upgrade;
SELECT pulse.page('SELECT id FROM up_items', 'id', NULL, 3)->'items' AS first_page_again;
DROP TABLE up_items;
