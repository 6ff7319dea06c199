/* extension/pulse--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pulse" to load this file. \quit

-- The schema "pulse" is created by CREATE EXTENSION (pulse.control: schema).
-- Every role may call the API; what is private (the cursor secret) is revoked
-- object by object.
GRANT USAGE ON SCHEMA pulse TO PUBLIC;

------------------------------------------------------------------------------
-- Per-database secret that signs cursors.  Not readable by ordinary roles:
-- the C code reads it directly, without going through the executor's
-- permission checks.  Dumped with the database so cursors survive a
-- dump/restore.
------------------------------------------------------------------------------
CREATE FUNCTION pulse._random_bytes(n int)
RETURNS bytea
AS 'MODULE_PATHNAME', 'pulse_random_bytes'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;
REVOKE ALL ON FUNCTION pulse._random_bytes(int) FROM PUBLIC;

CREATE TABLE pulse.secret (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    key         bytea NOT NULL CHECK (octet_length(key) >= 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON TABLE pulse.secret FROM PUBLIC;
INSERT INTO pulse.secret (key) VALUES (pulse._random_bytes(32));
SELECT pg_catalog.pg_extension_config_dump('pulse.secret', '');

-- Replaces the secret: every cursor issued so far becomes invalid.
CREATE FUNCTION pulse.rotate_secret()
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ UPDATE pulse.secret SET key = pulse._random_bytes(32), created_at = now() $$;
REVOKE ALL ON FUNCTION pulse.rotate_secret() FROM PUBLIC;

------------------------------------------------------------------------------
-- Query fingerprints (fingerprint.c)
------------------------------------------------------------------------------
CREATE FUNCTION pulse.fingerprint(query text)
RETURNS text
AS 'MODULE_PATHNAME', 'pulse_fingerprint'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION pulse.fingerprint(text) IS
'16 hex digits identifying the structure of a query: the same when only literals, whitespace, comments, keyword case or IN-list lengths differ';

CREATE FUNCTION pulse.normalize(query text)
RETURNS text
AS 'MODULE_PATHNAME', 'pulse_normalize'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION pulse.normalize(text) IS
'the query with its literals replaced by $n placeholders';

------------------------------------------------------------------------------
-- Keyset pagination (page.c, cursor.c)
------------------------------------------------------------------------------
CREATE FUNCTION pulse.page(query text,
                           order_by text,
                           cursor text DEFAULT NULL,
                           page_size int DEFAULT 50,
                           args jsonb DEFAULT '[]')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pulse_page'
LANGUAGE C STABLE PARALLEL UNSAFE;
COMMENT ON FUNCTION pulse.page(text, text, text, int, jsonb) IS
'one page of query ordered by order_by after (or before) cursor: {"items": [...], "next_cursor": ..., "prev_cursor": ...}';

CREATE FUNCTION pulse.page_cache_stats(OUT entries int, OUT hits bigint,
                                       OUT prepares bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'pulse_page_cache_stats'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION pulse.page_cache_stats() IS
'this backend''s cache of prepared pulse.page plans: entries, hits and prepares since the backend started';

CREATE FUNCTION pulse.explain_page(query text,
                                   order_by text,
                                   args jsonb DEFAULT '[]')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pulse_explain_page'
LANGUAGE C STABLE PARALLEL UNSAFE;
COMMENT ON FUNCTION pulse.explain_page(text, text, jsonb) IS
'whether an index serves the order of a pulse.page query, or a sort over a scan is needed';
