-- bench/data/api.sql: the api.* functions of the load tests and their
-- endpoints.  Idempotent (CREATE OR REPLACE, pulse.expose upserts): loaded
-- after the dataset and again at the start of every run of bench/run.sh, so
-- changing the API does not need a reload of the data.
--
-- Endpoints (/rpc/<name>; the same for pulse-proxy and the peers):
--   event(id)                                     read    one event by id
--   search_events(kind, since, until, cursor, page_size)
--                                                 search  keyset pages (pulse.page)
--   search_events_offset(kind, since, until, start, page_size)
--                                                 search  the same with LIMIT/OFFSET
--   add_event(kind, amount, note)                 write   insert an event
--   update_event(id, amount)                      write   change an event's amount,
--                                                         bump its version
--   tenant_stats()                                read    per-kind totals from the
--                                                         pulse.create_aggregate table
--   tenant_stats_live()                           read    the same computed on demand

-- The endpoints the read-heavy mix calls (event, search_events, add_event)
-- are PL/pgSQL: PostgreSQL 15 parses and plans the body of a LANGUAGE sql
-- function that is not inlined at every call, while PL/pgSQL keeps its plans
-- for the session (bench/results/2026-11-25-proxy.md measured 24% more
-- uncached reads/s through the proxy; proxy/README.md gives endpoint authors
-- the same advice).  The peers call the same functions.
CREATE OR REPLACE FUNCTION api.event(id bigint)
RETURNS json LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    r json;
BEGIN
    SELECT row_to_json(e) INTO r
      FROM (SELECT id, tenant_id, created_at, kind, amount, note, version
              FROM bench.events WHERE bench.events.id = event.id) AS e;
    RETURN r;
END
$$;

-- Newest first; kind and the [since, until) window are optional.  Two base
-- queries, so that each has one plan that uses its own index.
CREATE OR REPLACE FUNCTION api.search_events(kind text DEFAULT NULL,
                                  since timestamptz DEFAULT NULL,
                                  until timestamptz DEFAULT NULL,
                                  cursor text DEFAULT NULL,
                                  page_size int DEFAULT 20)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF search_events.kind IS NULL THEN
        RETURN pulse.page('SELECT id, tenant_id, created_at, kind, amount, note FROM bench.events
                            WHERE created_at >= coalesce($1::timestamptz, ''-infinity'')
                              AND created_at < coalesce($2::timestamptz, ''infinity'')',
                          'created_at DESC, id DESC', search_events.cursor,
                          least(greatest(search_events.page_size, 1), 100),
                          jsonb_build_array(search_events.since, search_events.until));
    END IF;
    RETURN pulse.page('SELECT id, tenant_id, created_at, kind, amount, note FROM bench.events
                        WHERE kind = $1
                          AND created_at >= coalesce($2::timestamptz, ''-infinity'')
                          AND created_at < coalesce($3::timestamptz, ''infinity'')',
                      'created_at DESC, id DESC', search_events.cursor,
                      least(greatest(search_events.page_size, 1), 100),
                      jsonb_build_array(search_events.kind, search_events.since, search_events.until));
END
$$;

-- The baseline of the pagination scenario: the same rows with LIMIT/OFFSET,
-- in PL/pgSQL so that its plans are prepared and kept per session like the
-- keyset ones, one query per filter shape (no "kind IS NULL OR ...").
CREATE OR REPLACE FUNCTION api.search_events_offset(kind text DEFAULT NULL,
                                                    since timestamptz DEFAULT NULL,
                                                    until timestamptz DEFAULT NULL,
                                                    start int DEFAULT 0,
                                                    page_size int DEFAULT 20)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    n      int := least(greatest(page_size, 1), 100);
    skip   int := greatest(start, 0);
    lo     timestamptz := coalesce(since, '-infinity');
    hi     timestamptz := coalesce(until, 'infinity');
    items  jsonb;
BEGIN
    IF search_events_offset.kind IS NULL THEN
        SELECT coalesce(jsonb_agg(to_jsonb(s) ORDER BY s.created_at DESC, s.id DESC), '[]') INTO items
          FROM (SELECT id, tenant_id, created_at, kind, amount, note FROM bench.events
                 WHERE created_at >= lo AND created_at < hi
                 ORDER BY created_at DESC, id DESC LIMIT n OFFSET skip) AS s;
    ELSE
        SELECT coalesce(jsonb_agg(to_jsonb(s) ORDER BY s.created_at DESC, s.id DESC), '[]') INTO items
          FROM (SELECT id, tenant_id, created_at, kind, amount, note FROM bench.events
                 WHERE kind = search_events_offset.kind AND created_at >= lo AND created_at < hi
                 ORDER BY created_at DESC, id DESC LIMIT n OFFSET skip) AS s;
    END IF;
    RETURN jsonb_build_object('items', items,
                              'next_start', CASE WHEN jsonb_array_length(items) = n THEN skip + n END);
END
$$;

CREATE OR REPLACE FUNCTION api.add_event(kind text, amount numeric, note text DEFAULT NULL)
RETURNS json LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r json;
BEGIN
    INSERT INTO bench.events AS e (tenant_id, created_at, kind, amount, note)
    VALUES (nullif(current_setting('pulse.tenant', true), '')::int, now(),
            add_event.kind, add_event.amount, add_event.note)
    RETURNING json_build_object('id', e.id, 'created_at', e.created_at) INTO r;
    RETURN r;
END
$$;

-- The mix's updates: the version tells a reader which write it sees
-- (bench/staleness.py).  Returns null for an id the tenant does not own.
CREATE OR REPLACE FUNCTION api.update_event(id bigint, amount numeric)
RETURNS json LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r json;
BEGIN
    UPDATE bench.events AS e
       SET amount = update_event.amount, version = e.version + 1
     WHERE e.id = update_event.id
    RETURNING json_build_object('id', e.id, 'version', e.version) INTO r;
    RETURN r;
END
$$;

CREATE OR REPLACE FUNCTION api.tenant_stats()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('kind', kind, 'n', n, 'total', total,
                                                 'last_at', last_at) ORDER BY kind), '[]')
      FROM bench.tenant_kind_stats
     WHERE tenant_id = nullif(current_setting('pulse.tenant', true), '')::int
$$;

CREATE OR REPLACE FUNCTION api.tenant_stats_live()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('kind', kind, 'n', n, 'total', total,
                                                 'last_at', last_at) ORDER BY kind), '[]')
      FROM (SELECT kind, count(*) AS n, sum(amount) AS total, max(created_at) AS last_at
              FROM bench.events
             WHERE tenant_id = nullif(current_setting('pulse.tenant', true), '')::int
             GROUP BY kind) AS s
$$;

GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA api TO api;

-- bench.events is tracked with keys: a write bumps its tenant's and its
-- rows' keyed tags ("bench.events:tenant_id=7", "bench.events:id=42"), so
-- the endpoints below are cached per tenant and per row and a write of one
-- tenant leaves the others' entries cached (README: Keyed tags).
-- bench.use_tags(false) exposes them with the table's tag instead, as
-- before keyed tags: the proxy's variant "tabletags" (bench/run.sh) measures
-- the difference in the same run.  Writes need no tag: the proxy reads what
-- a write bumped after its COMMIT (pulse.last_bumps).
SELECT pulse.track('bench.events', keys => '{tenant_id,id}');
-- read_ttl and search_ttl: the proxy's TTLs of the reads by id and of the
-- searches (bench/run.sh PROXY_TTL_READ, PROXY_TTL_SEARCH).  With exact tags a
-- TTL no longer bounds staleness, only how long an unused entry is kept.
DROP FUNCTION IF EXISTS bench.use_tags(boolean);
CREATE OR REPLACE FUNCTION bench.use_tags(keyed boolean, read_ttl interval DEFAULT '60 seconds',
                                          search_ttl interval DEFAULT '10 seconds') RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    by_tenant text[] := CASE WHEN keyed THEN ARRAY['bench.events:tenant_id={tenant}'] ELSE '{bench.events}' END;
    by_id text[] := CASE WHEN keyed THEN ARRAY['bench.events:id={id}'] ELSE '{bench.events}' END;
BEGIN
    PERFORM pulse.expose('api.event(bigint)', 'read', read_ttl, by_id);
    PERFORM pulse.expose('api.search_events(text, timestamptz, timestamptz, text, int)', 'search', search_ttl, by_tenant);
    PERFORM pulse.expose('api.search_events_offset(text, timestamptz, timestamptz, int, int)', 'search', search_ttl,
                         by_tenant);
    PERFORM pulse.expose('api.tenant_stats_live()', 'read', '10 seconds', by_tenant);
END
$$;
SELECT bench.use_tags(true);
SELECT pulse.expose('api.add_event(text, numeric, text)', 'write');
SELECT pulse.expose('api.update_event(bigint, numeric)', 'write');
SELECT pulse.expose('api.tenant_stats()', 'read', '10 seconds', '{bench.tenant_kind_stats}');
