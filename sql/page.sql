--
-- pulse.page: keyset pagination, forward and backward, mixed directions,
-- NULL sort keys, bound arguments, row-level security.
--
CREATE TABLE items (
    id      int PRIMARY KEY,
    grp     int NOT NULL,
    score   numeric NOT NULL,
    label   text COLLATE "C",
    at      timestamptz NOT NULL,
    maybe   int
);
INSERT INTO items
SELECT i,
       i % 4,
       (i * 7) % 11,
       CASE WHEN i % 5 = 0 THEN NULL ELSE 'label ' || (i % 6) END,
       timestamptz '2026-01-01 00:00:00+00' + (i % 9) * interval '1 hour',
       CASE WHEN i % 3 = 0 THEN NULL ELSE i % 4 END
FROM generate_series(1, 97) AS i;
CREATE INDEX items_grp_id ON items (grp, id);
ANALYZE items;

-- One page: the shape of the result.  Cursors are signed with this database's
-- secret, so only their presence is shown.
SELECT jsonb_pretty(p - 'next_cursor' - 'prev_cursor') AS page,
       p->>'next_cursor' IS NOT NULL AS has_next,
       p->'prev_cursor' = 'null'::jsonb AS prev_is_null
FROM pulse.page('SELECT id, grp, label FROM items', 'id', NULL, 3) AS p;

-- The last page has no next_cursor.
SELECT jsonb_array_length(p->'items') AS n, p->'next_cursor' AS next
FROM pulse.page('SELECT id FROM items WHERE id > 95', 'id', NULL, 5) AS p;

-- walk(q, o, ps, args): every page forward and backward against ORDER BY
\getenv abs_srcdir PG_ABS_SRCDIR
\set walk_file :abs_srcdir '/sql/page_walk.psql'
\i :walk_file

-- Single keys, multi-column keys, mixed directions, every page size.
SELECT o, ps, (walk('SELECT * FROM items', o, ps)).*
FROM unnest(ARRAY[
        'id', 'id DESC', 'grp, id', 'grp DESC, id DESC', 'grp, id DESC',
        'grp DESC, score, id', 'score DESC, grp, id DESC', 'at, id',
        'at DESC, grp, id']) AS o,
     unnest(ARRAY[1, 3, 10, 200]) AS ps
ORDER BY o COLLATE "C", ps;

-- NULL sort keys in every position of NULLS FIRST / LAST and direction.
SELECT o, ps, (walk('SELECT * FROM items', o, ps)).*
FROM unnest(ARRAY[
        'maybe, id', 'maybe DESC, id', 'maybe NULLS FIRST, id',
        'maybe DESC NULLS LAST, id DESC', 'label, maybe, id',
        'label DESC NULLS LAST, maybe NULLS FIRST, id',
        'maybe, label DESC, id DESC']) AS o,
     unnest(ARRAY[1, 4, 25]) AS ps
ORDER BY o COLLATE "C", ps;

-- A key type without binary I/O (contrib's seg) travels in its text form.
CREATE EXTENSION seg;
CREATE TABLE segs (id int PRIMARY KEY, r seg NOT NULL);
INSERT INTO segs
SELECT i, ((i % 7)::text || ' .. ' || (i % 7 + i % 3)::text)::seg FROM generate_series(1, 30) i;
SELECT (walk('SELECT * FROM segs', 'r, id', 4)).*;
SELECT (walk('SELECT * FROM segs', 'r DESC, id', 7)).*;
DROP TABLE segs;
DROP EXTENSION seg;

-- Bound arguments: the query's $1..$n come from args, never from the text.
SELECT (walk('SELECT * FROM items WHERE grp = $1::int', 'score, id', 4, '[2]')).*;
SELECT jsonb_array_length(pulse.page('SELECT id FROM items WHERE label = $1', 'id', NULL, 100,
                                     '["label 1"]')->'items') AS label_1_rows;
SELECT pulse.page('SELECT id FROM items WHERE label = $1', 'id', NULL, 100,
                  '["x''); DROP TABLE items; --"]')->'items' AS injection_is_a_value;
SELECT count(*) AS items_still_there FROM items;
SELECT pulse.page('SELECT id FROM items WHERE id = ANY($1)', 'id', NULL, 10, '[[3, 5, 8]]')->'items' AS any_array;
SELECT pulse.page('SELECT id FROM items WHERE maybe IS NOT DISTINCT FROM $1::int AND id < 10', 'id', NULL, 10, '[null]')->'items' AS null_arg;
SELECT pulse.page('SELECT id, $1::jsonb AS doc FROM items WHERE id = 1', 'id', NULL, 10, '[{"a": [1, 2]}]')->'items' AS json_arg;
SELECT pulse.page('SELECT id FROM items WHERE at > $1 AND grp = $2 AND id < 40', 'id', NULL, 3,
                  '["2026-01-01 05:30:00+00", 1]')->'items' AS typed_args;

-- The same query text with the order and arguments in another form reuses
-- the cursor; another text of the query does not (cursor.sql has more).
SELECT pulse.page('SELECT id FROM items', 'id', NULL, 2)->>'next_cursor' AS items_cursor \gset
SELECT pulse.page('SELECT id FROM items', ' ID  ASC NULLS LAST', :'items_cursor', 2)->'items' AS same_binding;
SELECT pulse.page('select id from items', 'id', :'items_cursor', 2)->'items' AS other_text;

-- Row-level security applies: pages only ever hold the tenant's rows, and a
-- cursor of one tenant is refused under another.
CREATE TABLE tenant_rows (tenant text NOT NULL, id int NOT NULL, PRIMARY KEY (tenant, id));
INSERT INTO tenant_rows SELECT t, i FROM unnest(ARRAY['a', 'b']) t, generate_series(1, 10) i;
ALTER TABLE tenant_rows ENABLE ROW LEVEL SECURITY;
CREATE POLICY by_tenant ON tenant_rows USING (tenant = current_setting('pulse.tenant', true));
CREATE ROLE regress_page_reader;
GRANT SELECT ON tenant_rows TO regress_page_reader;
GRANT USAGE ON SCHEMA pulse TO regress_page_reader;
SET ROLE regress_page_reader;
SET pulse.tenant = 'a';
SELECT p->'items' AS tenant_a_page, p->>'next_cursor' IS NOT NULL AS has_next
FROM pulse.page('SELECT tenant, id FROM tenant_rows', 'id', NULL, 3) AS p;
SELECT pulse.page('SELECT tenant, id FROM tenant_rows', 'id', NULL, 3)->>'next_cursor' AS a_cursor \gset
SET pulse.tenant = 'b';
SELECT pulse.page('SELECT tenant, id FROM tenant_rows', 'id', :'a_cursor', 3);
SELECT count(*) AS tenant_b_rows,
       bool_and(e->>'tenant' = 'b') AS only_b
FROM jsonb_array_elements(pulse.page('SELECT tenant, id FROM tenant_rows', 'id', NULL, 100)->'items') e;
RESET pulse.tenant;
RESET ROLE;

-- Plans are prepared once per query, order and direction, then reused
-- (autovacuum is off on the table so that no ANALYZE invalidates them here).
CREATE TABLE reuse (id int PRIMARY KEY, g int NOT NULL) WITH (autovacuum_enabled = off);
INSERT INTO reuse SELECT i, i % 4 FROM generate_series(1, 40) i;
SELECT prepares AS p0, hits AS h0 FROM pulse.page_cache_stats() \gset
SELECT count(*) AS pages
FROM generate_series(0, 3) g,
     LATERAL pulse.page('SELECT id FROM reuse WHERE g = $1::int', 'id', NULL, 5, jsonb_build_array(g)) p;
SELECT prepares - :p0 AS new_prepares, hits - :h0 AS new_hits FROM pulse.page_cache_stats();
SELECT pulse.page('SELECT id FROM reuse WHERE g = $1::int', 'id', NULL, 5, '[1]')->>'next_cursor' AS rc \gset
SELECT count(*) AS pages
FROM generate_series(1, 3) i,
     LATERAL pulse.page('SELECT id FROM reuse WHERE g = $1::int', 'id', :'rc', 5 + 0 * i, '[1]') p;
SELECT prepares - :p0 AS new_prepares, hits - :h0 AS new_hits FROM pulse.page_cache_stats();
-- A schema change re-prepares the plans that read the changed table only.
CREATE TABLE other (id int PRIMARY KEY) WITH (autovacuum_enabled = off);
SELECT pulse.page('SELECT id FROM other', 'id')->'items' AS other_items;
SELECT prepares AS p1 FROM pulse.page_cache_stats() \gset
ALTER TABLE reuse ADD COLUMN extra text;
SELECT jsonb_array_length(pulse.page('SELECT id FROM reuse WHERE g = $1::int', 'id', NULL, 5, '[1]')->'items') AS reprepared;
SELECT pulse.page('SELECT id FROM other', 'id')->'items' AS still_cached;
SELECT prepares - :p1 AS new_prepares FROM pulse.page_cache_stats();
DROP TABLE other;
DROP TABLE reuse;

-- The same query text under another search_path names other tables: its
-- plans and its analysis (here: k is NOT NULL in one table, not in the
-- other) are cached apart.
CREATE SCHEMA path_one;
CREATE SCHEMA path_two;
CREATE TABLE path_one.t (id int PRIMARY KEY, k int NOT NULL);
CREATE TABLE path_two.t (id int PRIMARY KEY, k int);
INSERT INTO path_one.t SELECT i, i FROM generate_series(1, 6) i;
INSERT INTO path_two.t SELECT i, CASE WHEN i % 2 = 0 THEN i END FROM generate_series(1, 6) i;
SET search_path = path_one, public;
SELECT (walk('SELECT * FROM t', 'k, id', 2)).*;
SET search_path = path_two, public;
SELECT (walk('SELECT * FROM t', 'k, id', 2)).*;
SELECT pulse.explain_page('SELECT * FROM t', 'k, id')->'nullable_keys' AS nullable_in_path_two;
RESET search_path;
DROP SCHEMA path_one CASCADE;
DROP SCHEMA path_two CASCADE;

-- Cached plans still return the right rows after the table changes.
SELECT pulse.page('SELECT id FROM items WHERE id <= 4', 'id', NULL, 2)->'items' AS before_insert;
INSERT INTO items VALUES (0, 0, 0, 'zero', now(), 0);
SELECT pulse.page('SELECT id FROM items WHERE id <= 4', 'id', NULL, 2)->'items' AS after_insert;
ALTER TABLE items ALTER COLUMN maybe TYPE bigint;
SELECT (walk('SELECT * FROM items', 'maybe, id', 7)).*;

DROP TABLE tenant_rows;
DROP OWNED BY regress_page_reader;
DROP ROLE regress_page_reader;
DROP FUNCTION walk(text, text, int, jsonb);
