--
-- pulse.explain_page and pulse.require_index_for_page: whether an index
-- serves the order of a page, and refusing pages that would sort a scan.
--
CREATE TABLE e_events (
    id          bigint PRIMARY KEY,
    tenant_id   int NOT NULL,
    created_at  timestamptz NOT NULL,
    kind        text
);
INSERT INTO e_events
SELECT i, i % 10, timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute',
       CASE WHEN i % 3 = 0 THEN NULL ELSE 'k' || (i % 3) END
FROM generate_series(1, 20000) i;
CREATE INDEX e_events_tenant_created ON e_events (tenant_id, created_at DESC, id DESC);
ANALYZE e_events;

-- Served by an index: no sort, the index is named.
SELECT x->'index_serves_order' AS served, x->'index' AS index, x->'sort_needed' AS sort,
       x->'suggested_index' AS suggestion, x->'nullable_keys' AS nullable
FROM pulse.explain_page('SELECT id, created_at FROM e_events WHERE tenant_id = $1::int',
                        'created_at DESC, id DESC', '[3]') AS x;
SELECT x->'index_serves_order' AS served, x->'index' AS index
FROM pulse.explain_page('SELECT * FROM e_events', 'id') AS x;

-- The deep-page predicate is a row comparison the index starts from.
SELECT x->>'sql' AS sql
FROM pulse.explain_page('SELECT id, created_at FROM e_events WHERE tenant_id = $1::int',
                        'created_at DESC, id DESC', '[3]') AS x;
SELECT x->>'sql' AS mixed_directions_sql
FROM pulse.explain_page('SELECT * FROM e_events', 'tenant_id, created_at DESC, id') AS x;
SELECT x->>'sql' AS nullable_sql, x->'nullable_keys' AS nullable
FROM pulse.explain_page('SELECT * FROM e_events', 'kind NULLS FIRST, id') AS x;

-- Not served: a sort is needed, and the index to create is suggested, with
-- the equality-filtered column first.
SELECT x->'index_serves_order' AS served, x->'sort_needed' AS sort, x->'suggested_index' AS suggestion
FROM pulse.explain_page('SELECT id, kind FROM e_events WHERE tenant_id = $1::int',
                        'kind DESC NULLS LAST, id', '[1]') AS x;

-- pulse.require_index_for_page refuses such a page with SQLSTATE 55000.
SHOW pulse.require_index_for_page;
SET pulse.require_index_for_page = on;
\set VERBOSITY default
SELECT pulse.page('SELECT id, kind FROM e_events WHERE tenant_id = $1::int',
                  'kind DESC NULLS LAST, id', NULL, 5, '[1]');
\set VERBOSITY sqlstate
SELECT pulse.page('SELECT id, kind FROM e_events WHERE tenant_id = $1::int',
                  'kind DESC NULLS LAST, id', NULL, 5, '[1]');
\set VERBOSITY default
-- ... and still serves pages an index orders.
SELECT jsonb_array_length(pulse.page('SELECT id, created_at FROM e_events WHERE tenant_id = $1::int',
                          'created_at DESC, id DESC', NULL, 5, '[3]')->'items') AS served_rows;
-- After the index exists, the same page is served.
CREATE INDEX e_events_tenant_kind ON e_events (tenant_id, kind DESC NULLS LAST, id);
SELECT jsonb_array_length(pulse.page('SELECT id, kind FROM e_events WHERE tenant_id = $1::int',
                          'kind DESC NULLS LAST, id', NULL, 5, '[1]')->'items') AS now_served;
RESET pulse.require_index_for_page;
