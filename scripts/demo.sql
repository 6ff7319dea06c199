-- Demo schema and dataset for `make run`: events of 50 tenants, isolated by
-- row-level security on the pulse.tenant setting, and an API function that
-- pages through them with pulse.page.  Deterministic (setseed).

CREATE SCHEMA demo;
CREATE SCHEMA api;

CREATE TABLE demo.tenants (
    id      int PRIMARY KEY,
    name    text NOT NULL
);

CREATE TABLE demo.events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   int NOT NULL REFERENCES demo.tenants,
    created_at  timestamptz NOT NULL,
    kind        text NOT NULL,
    amount      numeric(12,2) NOT NULL,
    note        text
);

INSERT INTO demo.tenants
SELECT i, 'tenant ' || i FROM generate_series(1, 50) AS i;

DO $$ BEGIN PERFORM setseed(0.42); END $$;
INSERT INTO demo.events (tenant_id, created_at, kind, amount, note)
SELECT 1 + (i % 50),
       timestamptz '2026-01-01 00:00:00+00' + (i * interval '37 seconds'),
       (ARRAY['view', 'click', 'signup', 'purchase', 'refund'])[1 + (random() * 4)::int],
       round((random() * 500)::numeric, 2),
       CASE WHEN i % 7 = 0 THEN NULL ELSE 'note ' || i END
FROM generate_series(1, 200000) AS i;

CREATE INDEX events_tenant_created_idx ON demo.events (tenant_id, created_at DESC, id DESC);
CREATE INDEX events_tenant_kind_idx ON demo.events (tenant_id, kind, id);
ANALYZE demo.tenants, demo.events;

-- The role API clients act as; it sees only its tenant's rows.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'api') THEN
        CREATE ROLE api NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA demo, api, pulse TO api;
GRANT SELECT ON demo.tenants, demo.events TO api;

ALTER TABLE demo.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY events_tenant ON demo.events
    USING (tenant_id = nullif(current_setting('pulse.tenant', true), '')::int);

-- Newest events of the caller's tenant, optionally of one kind, one page at
-- a time.
CREATE FUNCTION api.events_page(cursor text DEFAULT NULL,
                                page_size int DEFAULT 20,
                                kind text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT pulse.page(
        'SELECT id, created_at, kind, amount, note FROM demo.events
          WHERE $1::text IS NULL OR kind = $1',
        'created_at DESC, id DESC',
        cursor, page_size, jsonb_build_array(kind))
$$;
GRANT EXECUTE ON FUNCTION api.events_page(text, int, text) TO api;
