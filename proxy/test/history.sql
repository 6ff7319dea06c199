-- Fixture of proxy/test/cache_history.sh: keys with a per-key monotonic
-- version, in four tracked tables, read through cached endpoints and
-- written through write endpoints or directly in SQL.  Groups 0 and 1 are
-- cached under their table's tag (a write invalidates every key of the
-- group); groups 2 and 3 under keyed tags "hist.g<i>:k={k}" (a write
-- invalidates only its key: keyed.h), so the checker holds both kinds to
-- the same bound.  Loaded by a superuser into a database with the pulse
-- extension.
CREATE SCHEMA hist;
CREATE SCHEMA api;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'api') THEN CREATE ROLE api NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pulse_proxy') THEN CREATE ROLE pulse_proxy LOGIN IN ROLE api; END IF;
END $$;
GRANT USAGE ON SCHEMA hist, api, pulse TO api;

-- hist.g<i>(k, v): key k of group i at version v; every write adds 1 to v in its own transaction
DO $$
DECLARE
    i int;
BEGIN
    FOR i IN 0..3 LOOP
        EXECUTE format('CREATE TABLE hist.%I (k int PRIMARY KEY, v bigint NOT NULL DEFAULT 0)', 'g' || i);
        EXECUTE format('INSERT INTO hist.%I (k) SELECT generate_series(0, 63)', 'g' || i);
        EXECUTE format('GRANT SELECT, UPDATE ON hist.%I TO api', 'g' || i);
        EXECUTE format($f$CREATE FUNCTION api.%I(k int) RETURNS json LANGUAGE sql STABLE AS
                         'SELECT json_build_object(''k'', g.k, ''v'', g.v) FROM hist.%I g WHERE g.k = $1'$f$,
                       'kv_g' || i, 'g' || i);
        EXECUTE format($f$CREATE FUNCTION api.%I(k int) RETURNS json LANGUAGE sql VOLATILE AS
                         'UPDATE hist.%I g SET v = g.v + 1 WHERE g.k = $1 RETURNING json_build_object(''k'', g.k, ''v'', g.v)'$f$,
                       'bump_g' || i, 'g' || i);
        IF i < 2 THEN
            PERFORM pulse.track(format('hist.%I', 'g' || i)::regclass);
            PERFORM pulse.expose(format('api.%I(int)', 'kv_g' || i)::regprocedure, 'read', '60 s', ARRAY['hist.g' || i]);
        ELSE
            PERFORM pulse.track(format('hist.%I', 'g' || i)::regclass, keys => '{k}');
            PERFORM pulse.expose(format('api.%I(int)', 'kv_g' || i)::regprocedure, 'read', '60 s',
                                 ARRAY['hist.g' || i || ':k={k}']);
        END IF;
        PERFORM pulse.expose(format('api.%I(int)', 'bump_g' || i)::regprocedure, 'write', NULL, ARRAY['hist.g' || i]);
    END LOOP;
END $$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA api TO api;

-- a cached endpoint on a tag of its own, for the check of notifications that arrive while the catalog
-- connection waits for a query (a raw NOTIFY moves only this tag)
CREATE FUNCTION api.probe() RETURNS json LANGUAGE sql STABLE AS $$ SELECT '{"probe": true}'::json $$;
GRANT EXECUTE ON FUNCTION api.probe() TO api;
SELECT pulse.expose('api.probe()', 'read', '60 s', '{hist.probe}');
