/* extension/pulse--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pulse UPDATE TO '1.2'" to load this file. \quit

-- 1.2: exactness fixes found by the differential oracles (pages, cursors,
-- aggregates, fingerprints), keyed cache tags.  Each section below names the
-- C file it belongs to, as in pulse--1.0--1.1.sql.

------------------------------------------------------------------------------
-- BEGIN keyed cache tags (tags.c, tag_pending.c, keyed_tags.c)
--
-- pulse.track(rel, tag, keys) also bumps "<tag>:<col>=<value>" for every key
-- column and distinct value a committed write touched, or the column's
-- epoch "<tag>:<col>=*" beyond pulse.keyed_tag_limit values (keyed_tags.c).
-- pulse.cache_tags.family is "<tag>:<col>" on keyed rows (NULL on table tags
-- and epochs): pulse.prune_keyed_tags deletes keyed rows by age and bumps
-- their families' epochs.
------------------------------------------------------------------------------
ALTER TABLE pulse.cache_tags ADD COLUMN family text;
CREATE INDEX cache_tags_family_idx ON pulse.cache_tags (family, updated_at)
    WHERE family IS NOT NULL;

DROP VIEW pulse.tracked;
DROP FUNCTION pulse.track(regclass, text);
CREATE FUNCTION pulse.track(rel regclass, tag text DEFAULT NULL, keys text[] DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'pulse_track'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION pulse.track(regclass, text, text[]) IS
'makes every committed write to rel bump tag (default: its schema-qualified name) once, and with keys one "<tag>:<col>=<value>" per key column and value written; returns the tag';

CREATE FUNCTION pulse._track_keys_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pulse_track_keys_trigger'
LANGUAGE C;
REVOKE ALL ON FUNCTION pulse._track_keys_trigger() FROM PUBLIC;

CREATE FUNCTION pulse._trigger_args(args bytea, nargs integer)
RETURNS text[]
AS 'MODULE_PATHNAME', 'pulse_trigger_args'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE VIEW pulse.tracked AS
SELECT t.tgrelid::regclass AS rel,
       a.args[1] AS tag,
       a.args[2:] AS keys
  FROM pg_catalog.pg_trigger t
 CROSS JOIN LATERAL (SELECT pulse._trigger_args(t.tgargs, t.tgnargs) AS args) a
 WHERE t.tgfoid = 'pulse._track_trigger()'::pg_catalog.regprocedure
   AND t.tgnargs >= 1;
GRANT SELECT ON pulse.tracked TO PUBLIC;
COMMENT ON VIEW pulse.tracked IS 'tables tracked by pulse.track, their tags and key columns';

CREATE FUNCTION pulse.last_bumps()
RETURNS text
AS 'MODULE_PATHNAME', 'pulse_last_bumps'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION pulse.last_bumps() IS
'the "tag:generation" lines bumped by this session''s last committed transaction that bumped tags (NULL: none)';

CREATE FUNCTION pulse._tenant_key(typ regtype)
RETURNS text
AS 'MODULE_PATHNAME', 'pulse_tenant_key'
LANGUAGE C STABLE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION pulse._tenant_key(regtype) IS
'pulse.tenant in the text form of a value of typ, as a keyed tag spells it; NULL when unset or no value of typ equals it';

-- The snapshot the calling statement runs in, and the generations of tags
-- read in it (NULL elements skipped): pulse-proxy calls it in the statement
-- of an endpoint's function to learn which bumps the answer includes.
CREATE FUNCTION pulse.keyed_state(tags text[])
RETURNS text
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pulse_keyed_state';
COMMENT ON FUNCTION pulse.keyed_state(text[]) IS
'{"snapshot": the current snapshot, "tags": [[tag, generation], ...]} read in the calling statement''s snapshot';

CREATE FUNCTION pulse.prune_keyed_tags(older_than interval DEFAULT '7 days')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f text;
    n bigint;
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'older_than must be a non-negative interval'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- epochs first, in tag order like every committing writer: from here on
    -- this transaction never waits for a row lock (SKIP LOCKED below)
    FOR f IN SELECT DISTINCT c.family COLLATE "C" FROM pulse.cache_tags c
              WHERE c.family IS NOT NULL AND c.updated_at < now() - older_than
              ORDER BY 1
    LOOP
        PERFORM pulse.bump_tag(f || '=*');
    END LOOP;
    WITH old AS (
        SELECT c.tag FROM pulse.cache_tags c
         WHERE c.family IS NOT NULL AND c.updated_at < now() - older_than
           AND EXISTS (SELECT 1 FROM pulse.cache_tags e
                        WHERE e.tag = c.family || '=*' AND e.updated_at >= now())
         ORDER BY c.tag COLLATE "C"
           FOR UPDATE SKIP LOCKED)
    DELETE FROM pulse.cache_tags c USING old WHERE c.tag = old.tag;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pulse.prune_keyed_tags(interval) FROM PUBLIC;
COMMENT ON FUNCTION pulse.prune_keyed_tags(interval) IS
'deletes keyed tags not bumped for older_than and bumps their columns'' epochs (which invalidates the cached answers keyed by those columns); returns the rows deleted';

-- Tag templates of an endpoint: "<tag>:<col>={tenant}" or "<tag>:<col>={arg}"
-- where <tag> is tracked with key column <col> and arg an argument without a
-- default whose type is the column's or casts to it implicitly.  Returns
-- key_tags, the tags a cache key depends on (the plain tags, and the epoch
-- "<tag>:<col>=*" of each template), and keyed_sql, an SQL expression of
-- type text[] that fills the templates from the call's parameters ($n is
-- the n-th argument: required arguments come first and are always passed)
-- and from pulse.tenant; NULL without templates.  With raise_errors a bad
-- template raises 22023; without (the view pulse.endpoints), an endpoint
-- whose template went bad since it was declared depends on the whole table
-- tag instead: more invalidation, never less.
CREATE FUNCTION pulse._endpoint_keyed(fn regprocedure, tags text[], class text,
                                      raise_errors boolean,
                                      OUT key_tags text[], OUT keyed_sql text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t       text;
    m       text[];
    problem text;
    coltype oid;
    arg     record;
    fam     text;
    fills   text[] := '{}';
BEGIN
    key_tags := '{}';
    FOREACH t IN ARRAY coalesce(tags, '{}') LOOP
        IF strpos(t, '{') = 0 AND strpos(t, '}') = 0 THEN
            key_tags := key_tags || t;
            CONTINUE;
        END IF;
        problem := NULL;
        coltype := NULL;
        arg := NULL;
        m := regexp_match(t, '^(.+):([^:={}]+)=\{([A-Za-z_][A-Za-z0-9_]*)\}$');
        IF m IS NULL THEN
            problem := format('invalid tag template "%s"', t);
        ELSIF class NOT IN ('read', 'search') THEN
            problem := format('tag template "%s" on a %s endpoint', t, class);
        ELSE
            SELECT a.atttypid INTO coltype
              FROM pulse.tracked k
              JOIN pg_attribute a ON a.attrelid = k.rel AND a.attname = m[2]
                                 AND NOT a.attisdropped
             WHERE k.tag = m[1] AND m[2] = ANY (k.keys)
             LIMIT 1;
            IF coltype IS NULL THEN
                problem := format('no table is tracked with tag "%s" and key column "%s"', m[1], m[2]);
            ELSIF m[3] <> 'tenant' THEN
                SELECT q.n, q.typ INTO arg
                  FROM (SELECT row_number() OVER (ORDER BY x.ord) AS n, x.typ, x.name
                          FROM pg_proc p,
                               unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]),
                                      p.proargnames, p.proargmodes)
                               WITH ORDINALITY AS x(typ, name, mode, ord)
                         WHERE p.oid = fn AND coalesce(x.mode, 'i') IN ('i', 'b', 'v')) q
                 WHERE q.name = m[3];
                IF arg IS NULL THEN
                    problem := format('tag template "%s" names no argument of %s', t, fn);
                ELSIF arg.n > (SELECT p.pronargs - p.pronargdefaults FROM pg_proc p WHERE p.oid = fn) THEN
                    problem := format('argument "%s" of tag template "%s" has a default', m[3], t);
                ELSIF arg.typ <> coltype AND NOT EXISTS (
                          SELECT 1 FROM pg_cast c WHERE c.castsource = arg.typ
                             AND c.casttarget = coltype AND c.castcontext = 'i') THEN
                    problem := format('argument "%s" of type %s does not cast implicitly to %s, the type of key column "%s"',
                                      m[3], format_type(arg.typ, NULL), format_type(coltype, NULL), m[2]);
                END IF;
            END IF;
        END IF;
        IF problem IS NOT NULL THEN
            IF raise_errors THEN
                RAISE EXCEPTION '%', problem
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'A tag template is <tag>:<column>={tenant} or <tag>:<column>={argument}: <tag> tracked with that key column (pulse.track(rel, tag, keys)), the argument required, of the column''s type.';
            END IF;
            -- the whole table, or the tag itself when it names no table tag
            key_tags := key_tags || coalesce(m[1], t);
            CONTINUE;
        END IF;
        fam := m[1] || ':' || m[2];
        key_tags := key_tags || (fam || '=*');
        IF m[3] = 'tenant' THEN
            fills := fills || format('%L || pulse._tenant_key(%L::pg_catalog.regtype)',
                                     fam || '=', format_type(coltype, NULL));
        ELSE
            fills := fills || format('coalesce(%L || ($%s::%s%s)::text, %L)',
                                     fam || '=', arg.n, format_type(arg.typ, NULL),
                                     CASE WHEN arg.typ = coltype THEN ''
                                          ELSE '::' || format_type(coltype, NULL) END,
                                     fam);
        END IF;
    END LOOP;
    key_tags := ARRAY(SELECT DISTINCT x COLLATE "C" FROM unnest(key_tags) AS x ORDER BY 1);
    IF cardinality(fills) > 0 THEN
        keyed_sql := 'ARRAY[' || array_to_string(fills, ', ') || ']::text[]';
    END IF;
END
$$;

-- Checks the tag templates of an endpoint (after endpoint_check, which
-- sorted its tags).
CREATE FUNCTION pulse._endpoint_check_tags()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pulse._endpoint_keyed(NEW.fn, NEW.tags, NEW.class, true);
    RETURN NEW;
END
$$;
CREATE TRIGGER endpoint_check_tags
    BEFORE INSERT OR UPDATE ON pulse.endpoint
    FOR EACH ROW EXECUTE FUNCTION pulse._endpoint_check_tags();

-- pulse.endpoints gains key_tags (the tags a cache key of the endpoint
-- depends on) and keyed_sql (the expression that fills its tag templates,
-- pulse._endpoint_keyed): the view is defined once, with the columns of the
-- OpenAPI section, at the end of that section.
-- END keyed cache tags

------------------------------------------------------------------------------
-- BEGIN OpenAPI description of the endpoints (no C file of the extension:
-- pulse-proxy's proxy/src/openapi.c reads these columns)
--
-- pulse.endpoints gains three columns, after the others:
--   description         the function's COMMENT (NULL without one);
--   arg_default_values  one member per input argument that has a default:
--                       {"value": <JSON>} when the default is a constant,
--                       {"expression": "<SQL>"} otherwise (now(), 1 + 1,
--                       ARRAY[1, 2], a cast that is not the argument's
--                       type, ...); a number of more than 15 digits is
--                       given as a string, e.g. {"page_size": {"value": 20},
--                       "since": {"expression": "now()"}}.  The value is
--                       wrapped because a json or jsonb default may itself
--                       be an object with an "expression" member;
--   result_columns      the columns of a set-returning function's rows,
--                       [[name, type], ...] in order (its OUT or TABLE
--                       parameters, or the attributes of the composite
--                       type it returns); NULL otherwise.
-- A COMMENT ON FUNCTION, CREATE OR REPLACE FUNCTION or ALTER FUNCTION of
-- an exposed function sends NOTIFY pulse_reload, '<name>' like any change
-- of the catalog, so proxies describe the function as it now is.
------------------------------------------------------------------------------

-- The default of each input argument of fn, split by
-- pg_get_function_arg_default (which counts every argument, OUT ones
-- included, from 1).  A default is a constant when its deparsed text is one
-- literal (NULL, true, false, a number, or a quoted string) with no cast or
-- a cast to the argument's own type: ruleutils prints a Const that way and
-- nothing else that way (an implicit cast, which it hides, changes no
-- literal's value).  The literal is then read as a value of the argument's
-- type, bound as a parameter (never executed as SQL), and turned into JSON
-- by to_jsonb; a literal the type refuses stays an expression.
CREATE FUNCTION pulse._arg_default_values(fn regprocedure)
RETURNS jsonb
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    arg  record;
    expr text;
    m    text[];
    lit  text;
    val  jsonb;
    res  jsonb := '{}';
BEGIN
    FOR arg IN
        SELECT x.name, x.typ, x.n::integer AS n
          FROM pg_proc p,
               unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]),
                      p.proargnames, p.proargmodes)
               WITH ORDINALITY AS x(typ, name, mode, n)
         WHERE p.oid = fn AND coalesce(x.mode, 'i') IN ('i', 'b', 'v')
         ORDER BY x.n
    LOOP
        expr := pg_get_function_arg_default(fn, arg.n);
        CONTINUE WHEN expr IS NULL OR arg.name IS NULL;
        val := NULL;
        m := regexp_match(expr, '^(NULL|true|false|-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|''(?:[^'']|'''')*'')(::.+)?$');
        IF m IS NOT NULL AND (m[2] IS NULL OR m[2] = '::' || format_type(arg.typ, NULL)) THEN
            lit := m[1];
            IF lit = 'NULL' THEN
                val := 'null';
            ELSE
                IF left(lit, 1) = '''' THEN
                    lit := replace(substr(lit, 2, length(lit) - 2), '''''', '''');
                END IF;
                BEGIN
                    EXECUTE format('SELECT pg_catalog.to_jsonb($1::%s)', format_type(arg.typ, NULL))
                       INTO val USING lit;
                EXCEPTION WHEN OTHERS THEN
                    val := NULL;
                END;
            END IF;
            -- JSON readers that hold numbers in doubles (JavaScript, jansson
            -- without 64-bit room) would change or refuse a number of more
            -- than 15 digits: such a number is given as its string, and a
            -- document holding one stays an expression
            IF jsonb_typeof(val) = 'number' AND length(regexp_replace(val::text, '[^0-9]', '', 'g')) > 15 THEN
                val := to_jsonb(val::text);
            ELSIF jsonb_typeof(val) IN ('object', 'array') AND val::text ~ '[0-9]{16}' THEN
                val := NULL;
            END IF;
        END IF;
        res := res || jsonb_build_object(arg.name,
                                         CASE WHEN val IS NOT NULL THEN jsonb_build_object('value', val)
                                              ELSE jsonb_build_object('expression', expr) END);
    END LOOP;
    RETURN res;
END
$$;
COMMENT ON FUNCTION pulse._arg_default_values(regprocedure) IS
'{"<argument>": {"value": <JSON>} or {"expression": "<SQL>"}} for each input argument of fn with a default';

-- The row columns of a set-returning function, [[name, type], ...]; NULL
-- when it returns no set, or a set of a scalar type.
CREATE FUNCTION pulse._result_columns(fn regprocedure)
RETURNS jsonb
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE
       WHEN NOT p.proretset THEN NULL
       WHEN p.proargmodes::text[] && ARRAY['o', 't', 'b'] THEN
           (SELECT jsonb_agg(jsonb_build_array(coalesce(x.name, 'column' || x.n), format_type(x.typ, NULL)) ORDER BY x.n)
              FROM unnest(p.proallargtypes, p.proargnames, p.proargmodes)
                   WITH ORDINALITY AS x(typ, name, mode, n)
             WHERE x.mode IN ('o', 't', 'b'))
       WHEN t.typtype = 'c' THEN
           (SELECT jsonb_agg(jsonb_build_array(a.attname, format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
              FROM pg_attribute a
             WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)
       END
  FROM pg_proc p
  JOIN pg_type t ON t.oid = p.prorettype
 WHERE p.oid = fn
$$;

-- pulse.endpoints of 1.2: 1.1's columns; key_tags and keyed_sql (keyed
-- cache tags, above); description, arg_default_values and result_columns.
CREATE OR REPLACE VIEW pulse.endpoints AS
SELECT e.name,
       n.nspname::text AS schema,
       p.proname::text AS function,
       e.fn::text AS signature,
       a.arg_names,
       a.arg_types,
       a.arg_type_oids,
       p.pronargdefaults::integer AS arg_defaults,
       pg_catalog.format_type(p.prorettype, NULL) AS return_type,
       p.proretset AS returns_set,
       CASE WHEN p.proretset THEN 'rows' ELSE 'json' END AS result,
       e.class,
       e.ttl,
       e.tags,
       CASE p.provolatile WHEN 'i' THEN 'immutable'
                          WHEN 's' THEN 'stable'
                          ELSE 'volatile' END AS volatility,
       e.created_at,
       e.updated_at,
       k.key_tags,
       k.keyed_sql,
       pg_catalog.obj_description(e.fn, 'pg_proc') AS description,
       pulse._arg_default_values(e.fn) AS arg_default_values,
       pulse._result_columns(e.fn) AS result_columns
  FROM pulse.endpoint e
  JOIN pg_catalog.pg_proc p ON p.oid = e.fn
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 CROSS JOIN LATERAL (
       SELECT coalesce(array_agg(x.name ORDER BY x.n), '{}') AS arg_names,
              coalesce(array_agg(pg_catalog.format_type(x.typ, NULL) ORDER BY x.n), '{}') AS arg_types,
              coalesce(array_agg(x.typ ORDER BY x.n), '{}') AS arg_type_oids
         FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]),
                     p.proargnames, p.proargmodes)
              WITH ORDINALITY AS x(typ, name, mode, n)
        WHERE coalesce(x.mode, 'i') IN ('i', 'b', 'v')) a
 CROSS JOIN LATERAL pulse._endpoint_keyed(e.fn, e.tags, e.class, false) k;

-- A changed comment, body, default or signature detail of an exposed
-- function reloads the proxies (their OpenAPI document and routes).
CREATE FUNCTION pulse._endpoint_ddl_notify()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    endpoint_name text;
BEGIN
    FOR endpoint_name IN
        SELECT DISTINCT e.name
          FROM pg_event_trigger_ddl_commands() c
          JOIN pulse.endpoint e ON e.fn = c.objid
         WHERE c.classid = 'pg_proc'::regclass
         ORDER BY 1
    LOOP
        PERFORM pg_notify('pulse_reload', endpoint_name);
    END LOOP;
END
$$;
CREATE EVENT TRIGGER pulse_endpoint_ddl ON ddl_command_end
    WHEN TAG IN ('COMMENT', 'CREATE FUNCTION', 'ALTER FUNCTION')
    EXECUTE FUNCTION pulse._endpoint_ddl_notify();
-- END OpenAPI description of the endpoints
