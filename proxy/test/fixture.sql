-- Fixture of proxy/test/e2e.sh: three tenants isolated by row-level security
-- on pulse.tenant, and a handful of endpoints covering every answer the
-- proxy gives, cached ones among them.  Loaded by a superuser into a database with the pulse
-- extension.
CREATE SCHEMA demo;
CREATE SCHEMA api;
CREATE TABLE demo.events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   int NOT NULL,
    created_at  timestamptz NOT NULL,
    kind        text NOT NULL,
    note        text
);
INSERT INTO demo.events (tenant_id, created_at, kind, note)
SELECT 1 + (i % 3), timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute',
       (ARRAY['view', 'click', 'buy'])[1 + (i % 7) % 3], 'note ' || i
  FROM generate_series(1, 300) AS i;
CREATE INDEX ON demo.events (tenant_id, created_at DESC, id DESC);
CREATE TABLE demo.secrets (id int PRIMARY KEY, secret text);

DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'api') THEN CREATE ROLE api NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pulse_proxy') THEN CREATE ROLE pulse_proxy LOGIN IN ROLE api; END IF;
END $$;
GRANT USAGE ON SCHEMA demo, api, pulse TO api;
GRANT SELECT, INSERT ON demo.events TO api;
ALTER TABLE demo.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY events_tenant ON demo.events
    USING (tenant_id = nullif(current_setting('pulse.tenant', true), '')::int)
    WITH CHECK (tenant_id = nullif(current_setting('pulse.tenant', true), '')::int);

CREATE FUNCTION api.events_page(cursor text DEFAULT NULL, page_size int DEFAULT 20, kind text DEFAULT NULL)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT pulse.page('SELECT id, tenant_id, created_at, kind FROM demo.events
                        WHERE $1::text IS NULL OR kind = $1',
                      'created_at DESC, id DESC', cursor, page_size, jsonb_build_array(kind))
$$;
CREATE FUNCTION api.event(id bigint) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT row_to_json(e) FROM demo.events e WHERE e.id = event.id
$$;
CREATE FUNCTION api.counts() RETURNS TABLE (kind text, n bigint) LANGUAGE sql STABLE AS $$
    SELECT kind, count(*) FROM demo.events GROUP BY kind ORDER BY kind
$$;
CREATE FUNCTION api.whoami() RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object('tenant', current_setting('pulse.tenant', true),
                             'application_name', current_setting('application_name'))
$$;
CREATE FUNCTION api.slow(seconds float8) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object('slept', pg_sleep(seconds) IS NULL)
$$;
CREATE FUNCTION api.slow_batch(seconds float8) RETURNS json LANGUAGE sql AS $$
    SELECT json_build_object('slept', pg_sleep(seconds) IS NULL)
$$;
CREATE FUNCTION api.secret() RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_agg(secret) FROM demo.secrets
$$;
CREATE FUNCTION api.fail() RETURNS json LANGUAGE plpgsql STABLE AS $$
BEGIN RAISE EXCEPTION 'internal detail that must not leak'; END
$$;
CREATE FUNCTION api.add_event(kind text, note text DEFAULT NULL) RETURNS json LANGUAGE sql VOLATILE AS $$
    INSERT INTO demo.events (tenant_id, created_at, kind, note)
    VALUES (current_setting('pulse.tenant')::int, now(), kind, note)
    RETURNING json_build_object('id', id, 'tenant_id', tenant_id)
$$;
-- counts its calls (demo.calls), for the single-flight and refresh checks;
-- STABLE for the catalog (read endpoints must be), nextval works all the same
CREATE SEQUENCE demo.calls;
GRANT USAGE ON SEQUENCE demo.calls TO api;
CREATE FUNCTION api.counted(k text, sleep float8 DEFAULT 0) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object('k', k, 'call', nextval('demo.calls'), 'slept', pg_sleep(sleep) IS NULL)
$$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA api TO api;

-- every committed write to demo.events bumps the cache tag 'demo.events'
SELECT pulse.track('demo.events');
SELECT pulse.expose('api.events_page(text,int,text)', 'search', '60 s', '{demo.events}');
SELECT pulse.expose('api.event(bigint)', 'read', '60 s', '{demo.events}');
SELECT pulse.expose('api.counted(text,float8)', 'read', '1 s', '{demo.calls}');
SELECT pulse.expose('api.counts()');
SELECT pulse.expose('api.whoami()');
SELECT pulse.expose('api.slow(float8)');
SELECT pulse.expose('api.secret()');
SELECT pulse.expose('api.fail()');
SELECT pulse.expose('api.add_event(text,text)', 'write', NULL, '{demo.events}');
SELECT pulse.expose('api.slow_batch(float8)', 'batch');
