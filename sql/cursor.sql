--
-- Cursors: opaque, signed, bound to the exact query text, order, arguments,
-- tenant and key types.
-- Every bad cursor is refused with SQLSTATE 22023 and a message starting
-- "invalid cursor"; none crashes the backend or returns a wrong page.
--
CREATE TABLE c_items (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO c_items SELECT i, 'v' || i FROM generate_series(1, 20) i;

-- try(cursor): the page's ids, or the error's SQLSTATE and message.
CREATE FUNCTION try(cur text, q text DEFAULT 'SELECT id FROM c_items',
                    o text DEFAULT 'id', args jsonb DEFAULT '[]')
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RETURN (SELECT string_agg(e->>'id', ',')
            FROM jsonb_array_elements(pulse.page(q, o, cur, 3, args)->'items') e);
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

SELECT pulse.page('SELECT id FROM c_items', 'id', NULL, 3)->>'next_cursor' AS good \gset
SELECT pulse.page('SELECT id FROM c_items', 'id', :'good', 3)->>'prev_cursor' AS back \gset

-- A good cursor works, forward and backward; it is base64url without padding.
SELECT try(:'good') AS forward, try(:'back') AS backward;
SELECT :'good' ~ '^[A-Za-z0-9_-]+$' AS base64url, length(:'good') < 120 AS compact;

-- Tampered: every single character of the token changed in turn.
SELECT count(*) AS tampered_variants,
       count(*) FILTER (WHERE r LIKE '22023: invalid cursor%') AS refused
FROM (SELECT try(overlay(:'good' PLACING
                 CASE WHEN substr(:'good', i, 1) = 'A' THEN 'B' ELSE 'A' END
                 FROM i FOR 1)) AS r
      FROM generate_series(1, length(:'good')) AS i) t;

-- Truncated at every length.
SELECT count(*) AS truncations,
       count(*) FILTER (WHERE r LIKE '22023: invalid cursor%') AS refused
FROM (SELECT try(left(:'good', i)) AS r
      FROM generate_series(0, length(:'good') - 1) AS i) t;

-- Garbage of all kinds.
SELECT left(g, 20) AS garbage, try(g) AS result
FROM unnest(ARRAY['', 'x', 'not a cursor', '====', 'AAAA', 'a+b/c=',
                  repeat('A', 10000), 'ünïcødé', E'tab\there']) AS g;

-- Extended (a valid token with bytes appended) and padded.
SELECT try(:'good' || 'AA') AS extended, try(:'good' || '=') AS padded;

-- Foreign: another query, another order, other arguments, another tenant.
SELECT try(:'good', 'SELECT id FROM c_items WHERE id > 0') AS other_query,
       try(:'good', 'SELECT id FROM c_items', 'id DESC') AS other_order,
       try(:'good', 'SELECT id, v FROM c_items', 'v, id') AS other_keys;
SELECT pulse.page('SELECT id FROM c_items WHERE id > $1::int', 'id', NULL, 3, '[1]')->>'next_cursor' AS arg1 \gset
SELECT try(:'arg1', 'SELECT id FROM c_items WHERE id > $1::int', 'id', '[1]') AS same_args,
       try(:'arg1', 'SELECT id FROM c_items WHERE id > $1::int', 'id', '[2]') AS other_args;
SET pulse.tenant = 'tenant one';
SELECT pulse.page('SELECT id FROM c_items', 'id', NULL, 3)->>'next_cursor' AS t1 \gset
SELECT try(:'t1') AS same_tenant;
SET pulse.tenant = 'tenant two';
SELECT try(:'t1') AS other_tenant;
RESET pulse.tenant;
SELECT try(:'t1') AS no_tenant;

-- Bound to the exact query text, literal values included: queries that
-- differ only in a literal share a fingerprint, not their cursors (whose
-- keys would be read with the other query's types or compared with its
-- values).  Another spelling of the same query is another query too.
SELECT pulse.page('SELECT g AS id, 10000000000 AS k FROM generate_series(1, 6) g',
                  'k, id', NULL, 2)->>'next_cursor' AS big \gset
SELECT try(:'big', 'SELECT g AS id, 10000000000 AS k FROM generate_series(1, 6) g', 'k, id') AS same_query;
SELECT try(:'big', 'SELECT g AS id, 1 AS k FROM generate_series(1, 6) g', 'k, id') AS int4_literal;
SELECT try(:'big', 'SELECT g AS id, 1.5 AS k FROM generate_series(1, 6) g', 'k, id') AS numeric_literal;
SELECT try(:'big', 'SELECT g AS id, ''x'' AS k FROM generate_series(1, 6) g', 'k, id') AS text_literal;
SELECT try(:'big', 'SELECT g AS id, 20000000000 AS k FROM generate_series(1, 6) g', 'k, id') AS same_type_literal;
SELECT try(:'big', 'SELECT g AS id, 10000000000 AS k FROM generate_series(1, 7) g', 'k, id') AS other_bound;
SELECT try(:'big', 'select g as id, 10000000000 as k from generate_series(1, 6) g', 'k, id') AS other_spelling;

-- Bound to the tables the text names: the same query text under another
-- search_path reads other tables, and refuses the cursors of the first.
CREATE SCHEMA c_one;
CREATE SCHEMA c_two;
CREATE TABLE c_one.t (id int PRIMARY KEY);
CREATE TABLE c_two.t (id int PRIMARY KEY);
INSERT INTO c_one.t SELECT generate_series(1, 9);
INSERT INTO c_two.t SELECT generate_series(1, 9);
SET search_path = c_one, public;
SELECT pulse.page('SELECT id FROM t', 'id', NULL, 3)->>'next_cursor' AS one \gset
SELECT try(:'one', 'SELECT id FROM t') AS same_path;
SET search_path = c_two, public;
SELECT try(:'one', 'SELECT id FROM t') AS other_path;
RESET search_path;
DROP SCHEMA c_one CASCADE;
DROP SCHEMA c_two CASCADE;

-- Bound to the key types: a cursor issued before a key's type changed is
-- refused before its bytes are read; back to the same type, it is valid.
CREATE TABLE c_alter (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO c_alter SELECT i, i % 3 FROM generate_series(1, 9) i;
SELECT pulse.page('SELECT id, v FROM c_alter', 'v, id', NULL, 2)->>'next_cursor' AS before_alter \gset
ALTER TABLE c_alter ALTER COLUMN v TYPE bigint;
SELECT try(:'before_alter', 'SELECT id, v FROM c_alter', 'v, id') AS after_type_change;
ALTER TABLE c_alter ALTER COLUMN v TYPE int;
SELECT try(:'before_alter', 'SELECT id, v FROM c_alter', 'v, id') AS same_type_again;
ALTER TABLE c_alter ALTER COLUMN v TYPE text;
SELECT try(:'before_alter', 'SELECT id, v FROM c_alter', 'v, id') AS int_to_text;
DROP TABLE c_alter;

-- Cursors signed here with the database's secret (pgcrypto's hmac), to
-- reach what a valid signature guards: the format version and key bytes
-- that do not fit the key's type.  The layout is that of cursor_codec.c;
-- keys shorter than 128 bytes only.
CREATE EXTENSION pgcrypto;
CREATE FUNCTION b64url(b bytea) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT rtrim(translate(encode(b, 'base64'), E'+/\n', '-_'), '=') $$;
CREATE FUNCTION cursor_binding(parts text[]) RETURNS bytea LANGUAGE sql AS $$
    SELECT substr(sha256(convert_to('pulse.cursor.binding.v1', 'UTF8') || '\x00'::bytea
                         || int8send(cardinality(parts))
                         || (SELECT string_agg('\x01'::bytea || int8send(octet_length(convert_to(p, 'UTF8')))
                                               || convert_to(p, 'UTF8'), ''::bytea ORDER BY i)
                             FROM unnest(parts) WITH ORDINALITY AS u(p, i))), 1, 8)
$$;
CREATE FUNCTION signed_cursor(version int, binding bytea, keys bytea[]) RETURNS text
LANGUAGE sql AS $$
    WITH p AS (
        SELECT set_byte('\x00'::bytea, 0, version) || '\x00'::bytea || binding
               || set_byte('\x00'::bytea, 0, cardinality(keys))
               || (SELECT string_agg(CASE WHEN k IS NULL THEN '\x00'::bytea
                                     ELSE '\x01'::bytea || set_byte('\x00'::bytea, 0, octet_length(k)) || k END,
                                     ''::bytea ORDER BY i)
                   FROM unnest(keys) WITH ORDINALITY AS u(k, i)) AS payload)
    SELECT b64url(payload || hmac(payload, (SELECT key FROM pulse.secret), 'sha256')) FROM p
$$;
CREATE TABLE c_kinds (id int PRIMARY KEY, t text NOT NULL, n numeric NOT NULL);
INSERT INTO c_kinds SELECT i, 't' || i, i FROM generate_series(1, 6) i;
-- the binding of 'SELECT * FROM c_kinds' ordered by one key of type typ:
-- query text, order, args, tenant, signature (key type/typmod/collation,
-- parameter types, tables read)
CREATE FUNCTION kinds_binding(key text, typ oid) RETURNS bytea LANGUAGE sql AS $$
    SELECT cursor_binding(ARRAY['SELECT * FROM c_kinds', 'pulse_q.' || key || ' ASC NULLS LAST',
                                '[]', '', format('k%s/-1/%s;r%s;', typ,
                                                 CASE WHEN typ = 'text'::regtype THEN 100 ELSE 0 END,
                                                 'c_kinds'::regclass::oid)])
$$;
-- A well-formed one is accepted: the forgery matches the real thing.
SELECT try(signed_cursor(2, kinds_binding('id', 'int4'::regtype), ARRAY[int4send(3)]),
           'SELECT * FROM c_kinds') AS forged_ok;
-- Key bytes that the type's receive function rejects, whatever it raises
-- (08P01, 22021, 22P03, ...): 22023 "invalid cursor".
SELECT try(signed_cursor(2, kinds_binding('id', 'int4'::regtype), ARRAY['\x000003'::bytea]),
           'SELECT * FROM c_kinds') AS short_int4;
SELECT try(signed_cursor(2, kinds_binding('id', 'int4'::regtype), ARRAY['\x0000000300'::bytea]),
           'SELECT * FROM c_kinds') AS long_int4;
SELECT try(signed_cursor(2, kinds_binding('t', 'text'::regtype), ARRAY['\xff'::bytea]),
           'SELECT * FROM c_kinds', 't') AS bad_utf8;
SELECT try(signed_cursor(2, kinds_binding('n', 'numeric'::regtype), ARRAY['\x0001000000070000'::bytea]),
           'SELECT * FROM c_kinds', 'n') AS bad_numeric_sign;
SELECT pulse.page('SELECT * FROM c_kinds', 'id',
                  signed_cursor(2, kinds_binding('id', 'int4'::regtype), ARRAY['\x03'::bytea]), 3);
-- A cursor of the format of pulse 1.0 and 1.1 (version 1) is refused with a
-- hint to start again (sql/upgrade.sql shows one issued before an upgrade).
SELECT pulse.page('SELECT * FROM c_kinds', 'id',
                  signed_cursor(1, kinds_binding('id', 'int4'::regtype), ARRAY[int4send(3)]), 3);
DROP TABLE c_kinds;
DROP FUNCTION kinds_binding(text, oid);
DROP FUNCTION signed_cursor(int, bytea, bytea[]);
DROP FUNCTION cursor_binding(text[]);
DROP FUNCTION b64url(bytea);
DROP EXTENSION pgcrypto;

-- The secret is per database and not readable by ordinary roles.
CREATE ROLE regress_cursor_nobody;
SET ROLE regress_cursor_nobody;
SELECT key FROM pulse.secret;
RESET ROLE;
SELECT octet_length(key) AS secret_bytes FROM pulse.secret;

-- Rotating the secret invalidates every cursor issued so far.
SELECT pulse.rotate_secret();
SELECT try(:'good') AS after_rotation;
SELECT try(pulse.page('SELECT id FROM c_items', 'id', NULL, 3)->>'next_cursor') AS new_cursor;

-- Key values travel in binary form: a cursor issued under one DateStyle and
-- TimeZone means the same instant under another.
CREATE TABLE c_times (at timestamptz NOT NULL, id int PRIMARY KEY);
INSERT INTO c_times SELECT timestamptz '2026-03-01 12:00:00+00' + i * interval '1 minute', i
FROM generate_series(1, 6) i;
SET DateStyle = 'ISO, MDY';
SET TimeZone = 'UTC';
SELECT pulse.page('SELECT id, at FROM c_times', 'at, id', NULL, 2)->>'next_cursor' AS tcur \gset
SET DateStyle = 'SQL, DMY';
SET TimeZone = 'Asia/Kolkata';
SELECT string_agg(e->>'id', ',') AS next_ids
FROM jsonb_array_elements(pulse.page('SELECT id, at FROM c_times', 'at, id', :'tcur', 2)->'items') e;
RESET DateStyle;
RESET TimeZone;

DROP OWNED BY regress_cursor_nobody;
DROP ROLE regress_cursor_nobody;
