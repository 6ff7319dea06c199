--
-- Endpoint catalog: pulse.expose/unexpose, the pulse.endpoints view and the
-- NOTIFY pulse_reload, '<name>' messages (read through a dblink listener,
-- as in tags.sql).
--
\set VERBOSITY terse
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT dblink_connect('listener',
       format('dbname=%s port=%s host=%s', current_database(),
              current_setting('port'),
              split_part(current_setting('unix_socket_directories'), ',', 1)));
SELECT dblink_exec('listener', 'LISTEN pulse_reload');
CREATE FUNCTION notifications() RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM * FROM dblink('listener', 'SELECT 1') AS t(x int);
    RETURN QUERY SELECT notify_name || ' ' || extra
                   FROM dblink_get_notify('listener');
END
$$;

CREATE SCHEMA api;
CREATE FUNCTION api.search(q text, lim int DEFAULT 10) RETURNS jsonb
    LANGUAGE sql STABLE AS $$ SELECT jsonb_build_object('q', q, 'lim', lim) $$;
CREATE FUNCTION api.top_events(since date, n int DEFAULT 5)
    RETURNS TABLE (id int, title text)
    LANGUAGE sql STABLE AS $$ SELECT 1, 'one' $$;
CREATE FUNCTION api.stats(OUT total bigint, OUT tenant text) RETURNS SETOF record
    LANGUAGE sql STABLE AS $$ SELECT 1::bigint, 'a' $$;
CREATE FUNCTION api.tags_of(ids int[]) RETURNS SETOF text
    LANGUAGE sql IMMUTABLE AS $$ SELECT 'x' $$;
CREATE FUNCTION api.add_event(title text) RETURNS json
    LANGUAGE sql AS $$ SELECT json_build_object('title', title) $$;

-- expose: the name defaults to the function name and is returned
SELECT pulse.expose('api.search(text,int)', 'search', '30 seconds',
                    '{public.events,a,public.events}');
SELECT pulse.expose('api.top_events(date,int)', ttl => '5 minutes');
SELECT pulse.expose('api.stats()', 'read', name => 'stats-v1');
SELECT pulse.expose('api.tags_of(int[])');
SELECT pulse.expose('api.add_event(text)', 'write');
SELECT * FROM notifications();

\x
SELECT name, schema, function, signature, arg_names, arg_types, arg_type_oids,
       arg_defaults, return_type, returns_set, result, class, ttl, tags,
       volatility
  FROM pulse.endpoints ORDER BY name COLLATE "C";
\x

-- exposing again updates in place (keeping the name unless one is given)
SELECT pulse.expose('api.search(text,int)', 'read', '1 minute', '{b}');
SELECT * FROM notifications();
SELECT pulse.expose('api.search(text,int)', 'read', '1 minute', '{b}', 'find');
SELECT * FROM notifications();
SELECT name, class, ttl, tags FROM pulse.endpoints ORDER BY name COLLATE "C";

-- unexpose
SELECT pulse.unexpose('api.tags_of(int[])');
SELECT * FROM notifications();
SELECT pulse.unexpose('api.tags_of(int[])');
\echo :LAST_ERROR_SQLSTATE

-- dropping an exposed function drops its endpoint
DROP FUNCTION api.add_event(text);
SELECT * FROM notifications();
SELECT name FROM pulse.endpoint ORDER BY name COLLATE "C";

-- a change rolled back announces nothing
BEGIN;
SELECT pulse.unexpose('api.stats()');
ROLLBACK;
SELECT * FROM notifications();

-- errors
CREATE FUNCTION api.volatile_read(x int) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT '1'::jsonb $$;
SELECT pulse.expose('api.volatile_read(int)');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('api.volatile_read(int)', 'search');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('api.volatile_read(int)', 'batch');
SELECT pulse.expose('api.search(text,int)', 'fast');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('api.search(text,int)', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('api.search(text,int)', 'read', '-1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('api.volatile_read(int)', 'batch', '1 minute');
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION api.scalar(x int) RETURNS int
    LANGUAGE sql STABLE AS $$ SELECT 1 $$;
SELECT pulse.expose('api.scalar(int)');
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION api.anon_rows() RETURNS SETOF record
    LANGUAGE sql STABLE AS $$ SELECT 1 $$;
SELECT pulse.expose('api.anon_rows()');
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION api.unnamed(int) RETURNS jsonb
    LANGUAGE sql STABLE AS $$ SELECT '1'::jsonb $$;
SELECT pulse.expose('api.unnamed(int)');
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION api.poly(x anyelement) RETURNS jsonb
    LANGUAGE sql STABLE AS $$ SELECT '1'::jsonb $$;
SELECT pulse.expose('api.poly(anyelement)');
\echo :LAST_ERROR_SQLSTATE
CREATE PROCEDURE api.proc(x int) LANGUAGE sql AS $$ SELECT 1 $$;
SELECT pulse.expose('api.proc(int)', 'write');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('api.scalar(int)', name => 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('api.search(text,int)', name => 'no spaces');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('api.search(text,int)', name => 'stats-v1');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('api.search(text,int)', tags => '{a,""}');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('api.search(text,int)', tags => '{a,NULL}');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('api.search(text,int)', tags => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('api.nothing(int)');
\echo :LAST_ERROR_SQLSTATE
-- direct writes are checked the same way
INSERT INTO pulse.endpoint (fn, name, class) VALUES ('api.volatile_read(int)', 'v', 'read');
\echo :LAST_ERROR_SQLSTATE
UPDATE pulse.endpoint SET ttl = '-1 day';
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM notifications();

-- privileges: everyone reads the catalog; exposing needs ownership of the
-- function and write access to pulse.endpoint
CREATE ROLE regress_pulse_api;
GRANT USAGE ON SCHEMA pulse, api TO regress_pulse_api;
GRANT CREATE ON SCHEMA api TO regress_pulse_api;
SET ROLE regress_pulse_api;
SELECT name FROM pulse.endpoints ORDER BY name COLLATE "C";
CREATE FUNCTION api.mine(x int) RETURNS jsonb
    LANGUAGE sql STABLE AS $$ SELECT '1'::jsonb $$;
SELECT pulse.expose('api.mine(int)');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.unexpose('api.stats()');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT INSERT, UPDATE, DELETE ON pulse.endpoint TO regress_pulse_api;
SET ROLE regress_pulse_api;
SELECT pulse.expose('api.mine(int)');
SELECT pulse.expose('api.stats()', 'read', '1 hour');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.unexpose('api.stats()');
\echo :LAST_ERROR_SQLSTATE
-- dropping one's own exposed function needs no right on pulse.endpoint
RESET ROLE;
REVOKE INSERT, UPDATE, DELETE ON pulse.endpoint FROM regress_pulse_api;
SET ROLE regress_pulse_api;
DROP FUNCTION api.mine(int);
RESET ROLE;
SELECT * FROM notifications();

-- TRUNCATE asks the proxies to reload everything
TRUNCATE pulse.endpoint;
SELECT * FROM notifications();

-- cleanup
SELECT dblink_disconnect('listener');
DROP FUNCTION notifications();
DROP SCHEMA api CASCADE;
DROP EXTENSION dblink;
REVOKE USAGE ON SCHEMA pulse FROM regress_pulse_api;
DROP ROLE regress_pulse_api;
