--
-- Cursors: opaque, signed, bound to query, order, arguments and tenant.
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

-- Foreign: another query, another order, other arguments.
SELECT try(:'good', 'SELECT id FROM c_items WHERE id > 0') AS other_query,
       try(:'good', 'SELECT id FROM c_items', 'id DESC') AS other_order,
       try(:'good', 'SELECT id, v FROM c_items', 'v, id') AS other_keys;
SELECT pulse.page('SELECT id FROM c_items WHERE id > $1::int', 'id', NULL, 3, '[1]')->>'next_cursor' AS arg1 \gset
SELECT try(:'arg1', 'SELECT id FROM c_items WHERE id > $1::int', 'id', '[1]') AS same_args,
       try(:'arg1', 'SELECT id FROM c_items WHERE id > $1::int', 'id', '[2]') AS other_args;

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
