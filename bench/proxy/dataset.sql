-- bench/proxy/dataset.sql: the dataset and endpoints of bench/proxy/run.sh.
-- Deterministic (generate_series, every value a function of the id).
-- psql variables: rows, tenants.  Loaded by a superuser into a database
-- with the pulse extension.
CREATE SCHEMA benchp;
CREATE SCHEMA api;
CREATE TABLE benchp.items (
    id          bigint NOT NULL,
    tenant_id   int NOT NULL,
    created_at  timestamptz NOT NULL,
    kind        text NOT NULL,
    amount      numeric(12,2) NOT NULL,
    note        text NOT NULL
);
INSERT INTO benchp.items
SELECT i, 1 + i % :tenants,
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second',
       (ARRAY['view', 'click', 'buy'])[1 + i % 3],
       (i % 100000) / 100.0,
       'note ' || i
  FROM generate_series(1, :rows) AS i;
ALTER TABLE benchp.items ADD PRIMARY KEY (id);
CREATE INDEX items_tenant_created ON benchp.items (tenant_id, created_at DESC, id DESC);
VACUUM ANALYZE benchp.items;

DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'api') THEN CREATE ROLE api NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pulse_proxy') THEN CREATE ROLE pulse_proxy LOGIN IN ROLE api; END IF;
END $$;
GRANT USAGE ON SCHEMA benchp, api, pulse TO api;
GRANT SELECT ON benchp.items TO api;
ALTER TABLE benchp.items ENABLE ROW LEVEL SECURITY;
CREATE POLICY items_tenant ON benchp.items
    USING (tenant_id = nullif(current_setting('pulse.tenant', true), '')::int);

-- uncached primary-key lookup (no ttl: PostgreSQL on every request)
CREATE FUNCTION api.item(id bigint) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT row_to_json(i)
      FROM (SELECT id, tenant_id, created_at, kind, amount, note
              FROM benchp.items WHERE benchp.items.id = item.id) AS i
$$;
-- the same lookup in PL/pgSQL: PostgreSQL 15 plans a LANGUAGE sql function's
-- query again on every call (its plan lives only as long as the calling
-- query's executor), while PL/pgSQL keeps its plans for the session
CREATE FUNCTION api.item_pl(id bigint) RETURNS json LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT row_to_json(i)
              FROM (SELECT b.id, b.tenant_id, b.created_at, b.kind, b.amount, b.note
                      FROM benchp.items b WHERE b.id = item_pl.id) AS i);
END
$$;
-- the same lookup, cached (ttl 60 s)
CREATE FUNCTION api.item_cached(id bigint) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT row_to_json(i)
      FROM (SELECT id, tenant_id, created_at, kind, amount, note
              FROM benchp.items WHERE benchp.items.id = item_cached.id) AS i
$$;
-- keyset pages of the caller's tenant, newest first (no ttl)
CREATE FUNCTION api.items_page(cursor text DEFAULT NULL, page_size int DEFAULT 20)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT pulse.page('SELECT id, tenant_id, created_at, kind, amount, note FROM benchp.items',
                      'created_at DESC, id DESC', cursor, least(greatest(page_size, 1), 100))
$$;
-- a write: one row's amount, through a tracked table (its tag is bumped at commit)
CREATE FUNCTION api.touch_item(id bigint) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    r json;
BEGIN
    UPDATE benchp.items b SET amount = b.amount + 0.01
     WHERE b.id = touch_item.id RETURNING json_build_object('id', b.id, 'amount', b.amount) INTO r;
    RETURN r;
END
$$;
GRANT UPDATE ON benchp.items TO api;
SELECT pulse.track('benchp.items');
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA api TO api;

SELECT pulse.expose('api.item(bigint)', 'read');
SELECT pulse.expose('api.item_pl(bigint)', 'read');
SELECT pulse.expose('api.item_cached(bigint)', 'read', '60 s');
SELECT pulse.expose('api.items_page(text,int)', 'search');
SELECT pulse.expose('api.touch_item(bigint)', 'write');
