-- Fixture of proxy/test/live.sh and live_checker.py (loaded after
-- fixture.sql, which makes the api role, pulse_proxy and schema api): a
-- table of items in groups, per tenant, isolated by row-level security and
-- tracked with keyed tags on tenant_id and grp, and three live endpoints:
--   lv_group(grp)  keyed by its group  (tag lv:grp={grp}, cached 60 s);
--                  lv_group_slow(grp) the same, 0.2 s late
--   lv_tenant()    keyed by the tenant (tag lv:tenant_id={tenant}, cached 60 s)
--   lv_total()     the plain table tag (tag lv, not cached: no TTL)
-- Group numbers are unique across tenants (tenant * 1000 + n).
CREATE SCHEMA lv;
CREATE TABLE lv.items (
    id        bigint PRIMARY KEY,
    tenant_id int NOT NULL,
    grp       int NOT NULL,
    v         bigint NOT NULL DEFAULT 0
);
CREATE INDEX ON lv.items (grp, id);
CREATE INDEX ON lv.items (tenant_id, id);
GRANT USAGE ON SCHEMA lv TO api;
GRANT SELECT, INSERT, UPDATE, DELETE ON lv.items TO api;
ALTER TABLE lv.items ENABLE ROW LEVEL SECURITY;
CREATE POLICY items_tenant ON lv.items
    USING (tenant_id = nullif(current_setting('pulse.tenant', true), '')::int)
    WITH CHECK (tenant_id = nullif(current_setting('pulse.tenant', true), '')::int);
SELECT pulse.track('lv.items', 'lv', keys => '{tenant_id,grp}');

CREATE FUNCTION api.lv_group(grp int) RETURNS json LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT coalesce(json_agg(json_build_object('id', i.id, 'v', i.v) ORDER BY i.id), '[]')
              FROM lv.items i WHERE i.grp = lv_group.grp);
END
$$;
-- the same, slow: its snapshot is taken 0.2 s before it answers (a first refresh that a bump overtakes)
CREATE FUNCTION api.lv_group_slow(grp int) RETURNS json LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM pg_sleep(0.2);
    RETURN (SELECT coalesce(json_agg(json_build_object('id', i.id, 'v', i.v) ORDER BY i.id), '[]')
              FROM lv.items i WHERE i.grp = lv_group_slow.grp);
END
$$;
CREATE FUNCTION api.lv_tenant() RETURNS json LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT json_build_object('n', count(*), 'sum', coalesce(sum(v), 0)) FROM lv.items);
END
$$;
CREATE FUNCTION api.lv_total() RETURNS json LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT json_build_object('n', count(*), 'sum', coalesce(sum(v), 0), 'max', max(v)) FROM lv.items);
END
$$;
-- a write endpoint, for writes through the proxy
CREATE FUNCTION api.lv_set(id bigint, v bigint) RETURNS json LANGUAGE sql VOLATILE AS $$
    UPDATE lv.items i SET v = lv_set.v WHERE i.id = lv_set.id RETURNING json_build_object('id', i.id, 'v', i.v)
$$;
-- a read without tags: no stream
CREATE FUNCTION api.lv_untagged() RETURNS json LANGUAGE sql STABLE AS $$ SELECT '1'::json $$;
GRANT EXECUTE ON FUNCTION api.lv_group(int), api.lv_group_slow(int), api.lv_tenant(), api.lv_total(), api.lv_set(bigint, bigint),
    api.lv_untagged() TO api;
SELECT pulse.expose('api.lv_group(int)', 'read', '60 s', ARRAY['lv:grp={grp}']);
SELECT pulse.expose('api.lv_group_slow(int)', 'read', '60 s', ARRAY['lv:grp={grp}']);
SELECT pulse.expose('api.lv_tenant()', 'read', '60 s', ARRAY['lv:tenant_id={tenant}']);
SELECT pulse.expose('api.lv_total()', 'search', NULL, ARRAY['lv']);
SELECT pulse.expose('api.lv_set(bigint, bigint)', 'write');
SELECT pulse.expose('api.lv_untagged()', 'read');
-- a large result (~200 kB): a slow consumer's socket fills after a few of them (conflation, proxy/test/live.sh)
CREATE FUNCTION api.lv_big(grp int) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object('pad', repeat('x', 200000),
                             'rows', (SELECT coalesce(json_agg(json_build_object('id', i.id, 'v', i.v) ORDER BY i.id), '[]')
                                        FROM lv.items i WHERE i.grp = lv_big.grp))
$$;
GRANT EXECUTE ON FUNCTION api.lv_big(int) TO api;
SELECT pulse.expose('api.lv_big(int)', 'read', NULL, ARRAY['lv:grp={grp}']);
