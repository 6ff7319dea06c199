--
-- What pulse.endpoints tells pulse-proxy's OpenAPI document: description
-- (COMMENT ON FUNCTION), arg_default_values (constants as JSON values, the
-- rest as SQL expressions), result_columns, and the NOTIFY pulse_reload
-- that a COMMENT, CREATE OR REPLACE or ALTER FUNCTION of an exposed
-- function sends.
--
\set VERBOSITY terse
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT dblink_connect('oa_listener',
       format('dbname=%s port=%s host=%s', current_database(),
              current_setting('port'),
              split_part(current_setting('unix_socket_directories'), ',', 1)));
SELECT dblink_exec('oa_listener', 'LISTEN pulse_reload');
CREATE FUNCTION oa_notifications() RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM * FROM dblink('oa_listener', 'SELECT 1') AS t(x int);
    RETURN QUERY SELECT notify_name || ' ' || extra
                   FROM dblink_get_notify('oa_listener') ORDER BY 1;
END
$$;

CREATE SCHEMA oa;
CREATE TYPE oa.mood AS ENUM ('ok', 'sad');
CREATE DOMAIN oa.small AS int CHECK (VALUE < 10);
CREATE TABLE oa.items (id bigint, label text, price numeric(10, 2));

-- every kind of default
CREATE FUNCTION oa.defaults(
    need        int,
    i           int DEFAULT 20,
    neg         int DEFAULT -5,
    big         bigint DEFAULT 9007199254740993,
    num         numeric DEFAULT 1.5,
    num_int     numeric DEFAULT 5,
    dbl         float8 DEFAULT 2.5,
    flag        boolean DEFAULT true,
    quoted      text DEFAULT 'it''s a \ back',
    nothing     text DEFAULT NULL,
    from_int    text DEFAULT 5,
    day         date DEFAULT '2020-01-02',
    at          timestamptz DEFAULT '2020-01-02 03:04:05+00',
    since       timestamptz DEFAULT now(),
    span        interval DEFAULT '1 day',
    ids         int[] DEFAULT '{1,2}',
    ids_expr    int[] DEFAULT ARRAY[1, 2],
    sum         int DEFAULT 1 + 1,
    doc         jsonb DEFAULT '{"expression": "not one"}',
    list        json DEFAULT '[1, "a", null]',
    id          uuid DEFAULT '6ba7b810-9dad-11d1-80b4-00c04fd430c8',
    vc          varchar DEFAULT 'v',
    m           oa.mood DEFAULT 'sad',
    s           oa.small DEFAULT 3,
    d_as_ts     timestamptz DEFAULT '2020-01-02'::date,
    huge        numeric DEFAULT 123456789012345678901234567890,
    tiny        numeric DEFAULT 0.1234567890123456789,
    far         float8 DEFAULT 1e300,
    big_doc     jsonb DEFAULT '{"a": 12345678901234567890}')
RETURNS jsonb LANGUAGE sql STABLE AS $$ SELECT '{}'::jsonb $$;
COMMENT ON FUNCTION oa.defaults IS 'every kind of default';
CREATE FUNCTION oa.plain(x text) RETURNS json LANGUAGE sql STABLE AS $$ SELECT '1'::json $$;
CREATE FUNCTION oa.table_rows(n int DEFAULT 3) RETURNS TABLE (id int, "Label" text)
    LANGUAGE sql STABLE AS $$ SELECT 1, 'a' $$;
CREATE FUNCTION oa.out_rows(OUT total bigint, INOUT k text) RETURNS SETOF record
    LANGUAGE sql STABLE AS $$ SELECT 1::bigint, k $$;
CREATE FUNCTION oa.item_rows() RETURNS SETOF oa.items
    LANGUAGE sql STABLE AS $$ SELECT * FROM oa.items $$;
CREATE FUNCTION oa.scalar_rows() RETURNS SETOF text
    LANGUAGE sql STABLE AS $$ SELECT 'x' $$;
SELECT pulse.expose('oa.defaults'::regproc::regprocedure);
SELECT pulse.expose('oa.plain(text)');
SELECT pulse.expose('oa.table_rows(int)');
SELECT pulse.expose('oa.out_rows(text)');
SELECT pulse.expose('oa.item_rows()');
SELECT pulse.expose('oa.scalar_rows()');
SELECT * FROM oa_notifications();

SELECT name, description FROM pulse.endpoints WHERE schema = 'oa' ORDER BY name COLLATE "C";
SELECT d.key, d.value
  FROM pulse.endpoints e, jsonb_each(e.arg_default_values) d
 WHERE e.name = 'defaults'
 ORDER BY array_position(e.arg_names, d.key);
-- 28 of 29 arguments have a default; the order of arg_names is kept
SELECT cardinality(arg_names), arg_defaults, (SELECT count(*) FROM jsonb_object_keys(arg_default_values))
  FROM pulse.endpoints WHERE name = 'defaults';
SELECT name, arg_default_values, result_columns
  FROM pulse.endpoints WHERE schema = 'oa' AND name <> 'defaults' ORDER BY name COLLATE "C";
-- the columns of 1.2 keep their places; the new ones come last
SELECT attnum, attname FROM pg_attribute
 WHERE attrelid = 'pulse.endpoints'::regclass AND attnum > 16 ORDER BY attnum;

-- changes of an exposed function reload the proxies; of another, nothing
COMMENT ON FUNCTION oa.plain(text) IS 'plain, described';
SELECT * FROM oa_notifications();
SELECT description FROM pulse.endpoints WHERE name = 'plain';
CREATE OR REPLACE FUNCTION oa.plain(x text DEFAULT 'd') RETURNS json LANGUAGE sql STABLE AS $$ SELECT '2'::json $$;
SELECT * FROM oa_notifications();
SELECT arg_defaults, arg_default_values FROM pulse.endpoints WHERE name = 'plain';
ALTER FUNCTION oa.plain(text) IMMUTABLE;
SELECT * FROM oa_notifications();
CREATE FUNCTION oa.unexposed() RETURNS json LANGUAGE sql STABLE AS $$ SELECT '1'::json $$;
COMMENT ON FUNCTION oa.unexposed() IS 'not an endpoint';
ALTER FUNCTION oa.unexposed() IMMUTABLE;
SELECT * FROM oa_notifications();
-- a comment in a transaction rolled back announces nothing
BEGIN;
COMMENT ON FUNCTION oa.plain(text) IS 'rolled back';
ROLLBACK;
SELECT * FROM oa_notifications();

-- bad input
SELECT pulse._arg_default_values(NULL) IS NULL AS null_fn, pulse._result_columns(NULL) IS NULL AS null_rows;
SELECT pulse._arg_default_values(0) AS no_fn, pulse._result_columns(0) AS no_rows;
SELECT pulse._arg_default_values('oa.unexposed()') AS no_args;

SELECT count(pulse.unexpose(fn)) FROM pulse.endpoint WHERE fn::text LIKE 'oa.%';
SELECT * FROM oa_notifications();
SELECT dblink_disconnect('oa_listener');
DROP SCHEMA oa CASCADE;
DROP FUNCTION oa_notifications();
DROP EXTENSION dblink;
