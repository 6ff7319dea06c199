/* extension/pulse--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pulse UPDATE TO '1.1'" to load this file. \quit

-- 1.1: cache tags and invalidation, the endpoint catalog, materialized
-- aggregates kept fresh by background workers, and async jobs.

------------------------------------------------------------------------------
-- BEGIN cache tags (tags.c)
--
-- pulse.cache_tags holds one generation per tag.  It is written only by
-- tags.c, as the owner of the table; everyone may read it (the same data is
-- broadcast on the pulse_invalidate channel, which any role can LISTEN to).
-- It is dumped with the database: generations must never go back, or cache
-- entries keyed by an old generation would be served again.
------------------------------------------------------------------------------
CREATE TABLE pulse.cache_tags (
    tag         text PRIMARY KEY,
    generation  bigint NOT NULL CHECK (generation > 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON TABLE pulse.cache_tags FROM PUBLIC;
GRANT SELECT ON TABLE pulse.cache_tags TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pulse.cache_tags', '');

CREATE FUNCTION pulse.bump_tag(tag text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pulse_bump_tag'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION pulse.bump_tag(text) FROM PUBLIC;
COMMENT ON FUNCTION pulse.bump_tag(text) IS
'adds one to the generation of tag and returns it; sends NOTIFY pulse_invalidate, ''tag:generation'' at commit';

CREATE FUNCTION pulse.tag_generations(tags text[])
RETURNS bigint[]
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT coalesce(array_agg(coalesce(c.generation, 0) ORDER BY t.ord), '{}')
  FROM unnest(tags) WITH ORDINALITY AS t(tag, ord)
  LEFT JOIN pulse.cache_tags c ON c.tag = t.tag
$$;
COMMENT ON FUNCTION pulse.tag_generations(text[]) IS
'the generations of tags, in the same order; 0 for a tag never bumped';

-- Statement-level trigger installed by pulse.track; not executable by
-- PUBLIC, so only pulse.track (as the extension owner) attaches it.
CREATE FUNCTION pulse._track_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pulse_track_trigger'
LANGUAGE C;
REVOKE ALL ON FUNCTION pulse._track_trigger() FROM PUBLIC;

CREATE FUNCTION pulse.track(rel regclass, tag text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'pulse_track'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION pulse.track(regclass, text) IS
'makes every committed write to rel bump tag (default: its schema-qualified name) once; returns the tag';

CREATE FUNCTION pulse.untrack(rel regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'pulse_untrack'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION pulse.untrack(regclass) IS
'stops tracking rel (42704 when it is not tracked)';

CREATE VIEW pulse.tracked AS
SELECT t.tgrelid::regclass AS rel,
       pg_catalog.convert_from(pg_catalog.substring(t.tgargs, 1,
                                   pg_catalog.octet_length(t.tgargs) - 1),
                               pg_catalog.getdatabaseencoding()) AS tag
  FROM pg_catalog.pg_trigger t
 WHERE t.tgfoid = 'pulse._track_trigger()'::pg_catalog.regprocedure
   AND t.tgnargs = 1;
GRANT SELECT ON pulse.tracked TO PUBLIC;
COMMENT ON VIEW pulse.tracked IS 'tables tracked by pulse.track and their tags';
-- END cache tags

------------------------------------------------------------------------------
-- BEGIN endpoint catalog
--
-- One row per SQL function served by pulse-proxy as /rpc/<name>.  Every
-- write (through pulse.expose/unexpose or directly) is validated by
-- pulse._endpoint_check and announced with NOTIFY pulse_reload, '<name>'
-- ('*' after a TRUNCATE).  Dropping an exposed function removes its
-- endpoint.  Readable by everyone (function signatures are public in
-- pg_proc anyway); written by the extension owner, or by roles it grants
-- INSERT, UPDATE, DELETE on pulse.endpoint to, and only for functions they
-- own.
--
-- What the proxy can serve (anything else is refused with 22023):
--   result 'json': a function returning json or jsonb, passed through;
--   result 'rows': a set-returning function (RETURNS TABLE, SETOF a type, or
--     SETOF record with OUT parameters), whose rows the proxy aggregates
--     into a JSON array.
-- Every input argument must be named (requests pass them by name) and of a
-- concrete type; read and search endpoints must be STABLE or IMMUTABLE; only
-- they may have a ttl (a cache lifetime; NULL: the proxy's default).
------------------------------------------------------------------------------
CREATE TABLE pulse.endpoint (
    fn          regprocedure PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    class       text NOT NULL DEFAULT 'read'
                CHECK (class IN ('read', 'search', 'write', 'batch')),
    ttl         interval CHECK (ttl >= interval '0'),
    tags        text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON TABLE pulse.endpoint FROM PUBLIC;
GRANT SELECT ON TABLE pulse.endpoint TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pulse.endpoint', '');

CREATE FUNCTION pulse._endpoint_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p       pg_proc;
    a       record;
    rettype pg_type;
BEGIN
    SELECT * INTO p FROM pg_proc WHERE oid = NEW.fn;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'function with OID % does not exist', NEW.fn::oid
            USING ERRCODE = 'undefined_function';
    END IF;
    IF NOT pg_has_role(p.proowner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of function %', NEW.fn
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p.prokind <> 'f' THEN
        RAISE EXCEPTION '% is not a plain function', NEW.fn
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Procedures, aggregates and window functions cannot be exposed.';
    END IF;

    IF NEW.class IS NULL OR NEW.class NOT IN ('read', 'search', 'write', 'batch') THEN
        RAISE EXCEPTION 'invalid endpoint class "%"', NEW.class
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The classes are read, search, write and batch.';
    END IF;
    IF NEW.class IN ('read', 'search') AND p.provolatile = 'v' THEN
        RAISE EXCEPTION 'a % endpoint must be STABLE or IMMUTABLE, and % is VOLATILE',
                        NEW.class, NEW.fn
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Declare the function STABLE, or expose it as a write or batch endpoint.';
    END IF;
    IF NEW.ttl < interval '0' THEN
        RAISE EXCEPTION 'endpoint ttl must not be negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NEW.ttl IS NOT NULL AND NEW.class IN ('write', 'batch') THEN
        RAISE EXCEPTION 'a % endpoint cannot have a ttl', NEW.class
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Only read and search endpoints are cached.';
    END IF;

    IF NEW.tags IS NULL THEN
        RAISE EXCEPTION 'endpoint tags must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass ''{}'' for no tags.';
    END IF;
    IF array_ndims(NEW.tags) > 1 OR array_position(NEW.tags, NULL) IS NOT NULL
       OR '' = ANY (NEW.tags) THEN
        RAISE EXCEPTION 'endpoint tags must be a one-dimensional array of non-empty strings'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    NEW.tags := ARRAY(SELECT DISTINCT t COLLATE "C" FROM unnest(NEW.tags) AS t ORDER BY 1);

    SELECT * INTO rettype FROM pg_type WHERE oid = p.prorettype;
    IF p.proretset THEN
        IF p.prorettype = 'record'::regtype AND p.proallargtypes IS NULL THEN
            RAISE EXCEPTION '% returns SETOF record without OUT parameters', NEW.fn
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Declare the columns with RETURNS TABLE (...) or OUT parameters.';
        ELSIF rettype.typtype = 'p' AND p.prorettype <> 'record'::regtype THEN
            RAISE EXCEPTION '% returns SETOF %, which an endpoint cannot serve',
                            NEW.fn, format_type(p.prorettype, NULL)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSIF p.prorettype NOT IN ('json'::regtype, 'jsonb'::regtype) THEN
        RAISE EXCEPTION '% returns %, which an endpoint cannot serve',
                        NEW.fn, format_type(p.prorettype, NULL)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Return json or jsonb, or a set of rows (RETURNS TABLE or RETURNS SETOF).';
    END IF;

    FOR a IN
        SELECT x.n, x.name, x.typ
          FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]),
                      p.proargnames, p.proargmodes)
               WITH ORDINALITY AS x(typ, name, mode, n)
         WHERE coalesce(x.mode, 'i') IN ('i', 'b', 'v')
    LOOP
        IF a.name IS NULL OR a.name = '' THEN
            RAISE EXCEPTION 'argument % of % has no name', a.n, NEW.fn
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Requests pass arguments by name.';
        END IF;
        IF (SELECT typtype FROM pg_type WHERE oid = a.typ) = 'p' THEN
            RAISE EXCEPTION 'argument "%" of % has pseudo-type %',
                            a.name, NEW.fn, format_type(a.typ, NULL)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;

    IF NEW.name IS NULL THEN
        NEW.name := p.proname;
    END IF;
    IF NEW.name !~ '^[A-Za-z_][A-Za-z0-9_-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid endpoint name "%"', NEW.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'An endpoint name has 1 to 63 letters, digits, "_" or "-", and starts with a letter or "_".';
    END IF;
    IF EXISTS (SELECT 1 FROM pulse.endpoint e
                WHERE e.name = NEW.name AND e.fn <> NEW.fn) THEN
        RAISE EXCEPTION 'endpoint name "%" is already taken', NEW.name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Pass another name to pulse.expose.';
    END IF;

    IF TG_OP = 'INSERT' THEN
        NEW.created_at := now();
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER endpoint_check
    BEFORE INSERT OR UPDATE ON pulse.endpoint
    FOR EACH ROW EXECUTE FUNCTION pulse._endpoint_check();

CREATE FUNCTION pulse._endpoint_notify()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('pulse_reload', '*');
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('pulse_reload', OLD.name);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.name <> OLD.name) THEN
        PERFORM pg_notify('pulse_reload', NEW.name);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoint_notify
    AFTER INSERT OR UPDATE OR DELETE ON pulse.endpoint
    FOR EACH ROW EXECUTE FUNCTION pulse._endpoint_notify();
CREATE TRIGGER endpoint_notify_truncate
    AFTER TRUNCATE ON pulse.endpoint
    FOR EACH STATEMENT EXECUTE FUNCTION pulse._endpoint_notify();

-- Dropping an exposed function drops its endpoint.  SECURITY DEFINER: the
-- role dropping its function need not be able to write pulse.endpoint.
CREATE FUNCTION pulse._endpoint_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM pulse.endpoint e
     USING pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_proc'::regclass AND e.fn = d.objid;
END
$$;
REVOKE ALL ON FUNCTION pulse._endpoint_drop() FROM PUBLIC;
CREATE EVENT TRIGGER pulse_endpoint_drop ON sql_drop
    EXECUTE FUNCTION pulse._endpoint_drop();

CREATE FUNCTION pulse.expose(fn regprocedure,
                             class text DEFAULT 'read',
                             ttl interval DEFAULT NULL,
                             tags text[] DEFAULT '{}',
                             name text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    endpoint_name text;
BEGIN
    IF expose.fn IS NULL THEN
        RAISE EXCEPTION 'function to expose must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    endpoint_name := coalesce(expose.name,
                              (SELECT e.name FROM pulse.endpoint e WHERE e.fn = expose.fn),
                              (SELECT p.proname::text FROM pg_proc p WHERE p.oid = expose.fn));
    INSERT INTO pulse.endpoint AS e (fn, name, class, ttl, tags)
    VALUES (expose.fn, endpoint_name, expose.class, expose.ttl, expose.tags)
    ON CONFLICT (fn) DO UPDATE
       SET name = EXCLUDED.name, class = EXCLUDED.class,
           ttl = EXCLUDED.ttl, tags = EXCLUDED.tags
    RETURNING e.name INTO endpoint_name;
    RETURN endpoint_name;
END
$$;
COMMENT ON FUNCTION pulse.expose(regprocedure, text, interval, text[], text) IS
'declares (or updates) the endpoint /rpc/<name> serving fn; name defaults to the function name; returns the name';

CREATE FUNCTION pulse.unexpose(fn regprocedure)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = unexpose.fn
                  AND NOT pg_has_role(p.proowner, 'USAGE')) THEN
        RAISE EXCEPTION 'must be owner of function %', unexpose.fn
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM pulse.endpoint e WHERE e.fn = unexpose.fn;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'function % is not exposed', unexpose.fn
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;
COMMENT ON FUNCTION pulse.unexpose(regprocedure) IS
'removes the endpoint of fn (42704 when it has none)';

-- What the proxy reads.  arg_names/arg_types/arg_type_oids list the input
-- arguments in call order; the last arg_defaults of them may be omitted.
CREATE VIEW pulse.endpoints AS
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
       e.updated_at
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
        WHERE coalesce(x.mode, 'i') IN ('i', 'b', 'v')) a;
GRANT SELECT ON pulse.endpoints TO PUBLIC;
COMMENT ON VIEW pulse.endpoints IS 'the endpoints pulse-proxy serves, with everything it needs to call them';
-- END endpoint catalog

------------------------------------------------------------------------------
-- BEGIN jobs (jobs.c)
--
-- Not accessible to PUBLIC: jobs are submitted, read and canceled through
-- the functions below, which check the caller (see jobs.c).  Not dumped:
-- jobs are transient and name roles by OID.
--
-- state: queued (waiting), running, done (result holds the rows as a JSON
-- array), failed (an attempt failed; due again at run_after), dead (out of
-- attempts, or canceled).
------------------------------------------------------------------------------
CREATE TABLE pulse.jobs (
    id                bigserial PRIMARY KEY,
    query             text NOT NULL,
    args              jsonb NOT NULL DEFAULT '[]'
                      CHECK (jsonb_typeof(args) = 'array'),
    idempotency_key   text CHECK (idempotency_key <> ''),
    state             text NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'done', 'failed', 'dead')),
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts      integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    timeout           interval NOT NULL DEFAULT '5 minutes'
                      CHECK (timeout > interval '0'),
    run_after         timestamptz NOT NULL DEFAULT now(),
    submitted_by      oid NOT NULL,
    tenant            text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    progress          real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    cancel_requested  boolean NOT NULL DEFAULT false,
    error             text,
    sqlstate          text,
    result            jsonb
);
-- the worker's pick: due jobs in order
CREATE INDEX jobs_due_idx ON pulse.jobs (run_after, id)
    WHERE state IN ('queued', 'failed');
-- orphan detection
CREATE INDEX jobs_running_idx ON pulse.jobs (id) WHERE state = 'running';
-- one job per idempotency key, role and tenant
CREATE UNIQUE INDEX jobs_idempotency_idx
    ON pulse.jobs (submitted_by, tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
REVOKE ALL ON TABLE pulse.jobs FROM PUBLIC;
REVOKE ALL ON SEQUENCE pulse.jobs_id_seq FROM PUBLIC;

CREATE FUNCTION pulse.submit_job(query text,
                                 args jsonb DEFAULT '[]',
                                 idempotency_key text DEFAULT NULL,
                                 timeout interval DEFAULT '5 minutes')
RETURNS bigint
AS 'MODULE_PATHNAME', 'pulse_submit_job'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION pulse.submit_job(text, jsonb, text, interval) IS
'queues a SELECT (args bound to $1..$n) to run in the background as the current role and tenant; returns the job id';

CREATE FUNCTION pulse.job(id bigint)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pulse_job'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION pulse.job(bigint) IS
'status of a job of the current role and tenant (result when done); NULL when unknown or not visible';

CREATE FUNCTION pulse.cancel_job(id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'pulse_cancel_job'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION pulse.cancel_job(bigint) IS
'cancels a queued or waiting job, or asks the worker to drop a running one; false when already finished, NULL when unknown or not visible';
-- END jobs

------------------------------------------------------------------------------
-- BEGIN aggregates (aggregate.c, worker.c)
--
-- pulse.aggregate_defs has one row per materialized aggregate; aggregate N
-- also owns pulse.aggregate_N_log (its change log), the trigger function
-- pulse.aggregate_N_capture() and the triggers pulse_aggregate_N* on its
-- source tables, all created and dropped by aggregate.c.  The tables are
-- written by aggregate.c only.  The definitions are dumped with the
-- database; the history of runs is not.
------------------------------------------------------------------------------
CREATE TABLE pulse.aggregate_defs (
    id               serial PRIMARY KEY,
    relid            regclass NOT NULL UNIQUE,
    query            text NOT NULL,
    search_path      text NOT NULL,
    mode             text NOT NULL CHECK (mode IN ('incremental', 'full')),
    tracked          boolean NOT NULL,
    key_columns      text[] NOT NULL,
    value_columns    text[] NOT NULL,
    refresh_interval interval NOT NULL CHECK (refresh_interval > '0'),
    schedule         text,
    cron_jobid       bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_attempt     timestamptz,
    last_refresh     timestamptz,
    last_duration    interval,
    last_rows        bigint,
    last_error       text
);
REVOKE ALL ON TABLE pulse.aggregate_defs FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pulse.aggregate_defs', '');
SELECT pg_catalog.pg_extension_config_dump('pulse.aggregate_defs_id_seq', '');

CREATE TABLE pulse.aggregate_runs (
    id            bigserial PRIMARY KEY,
    aggregate_id  integer NOT NULL
                  REFERENCES pulse.aggregate_defs (id) ON DELETE CASCADE,
    aggregate     text NOT NULL,
    started       timestamptz NOT NULL,
    duration      interval NOT NULL,
    mode          text NOT NULL CHECK (mode IN ('incremental', 'full')),
    rows_changed  bigint,
    error         text
);
CREATE INDEX ON pulse.aggregate_runs (aggregate_id, id);
REVOKE ALL ON TABLE pulse.aggregate_runs FROM PUBLIC;
COMMENT ON TABLE pulse.aggregate_runs IS
'the last 200 refreshes of each aggregate: when, how long, which mode, how many rows changed, or the error';

CREATE FUNCTION pulse.create_aggregate(name text,
                                       query text,
                                       refresh interval DEFAULT '10 seconds',
                                       schedule text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'pulse_create_aggregate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION pulse.create_aggregate(text, text, interval, text) FROM PUBLIC;
COMMENT ON FUNCTION pulse.create_aggregate(text, text, interval, text) IS
'creates and fills table name from a SELECT ... GROUP BY query, kept fresh by the pulse workers every refresh (or by pg_cron on schedule); returns the mode, incremental or full';

CREATE FUNCTION pulse.refresh_aggregate(name text, "full" boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pulse_refresh_aggregate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION pulse.refresh_aggregate(text, boolean) FROM PUBLIC;
COMMENT ON FUNCTION pulse.refresh_aggregate(text, boolean) IS
'refreshes the aggregate now and returns the number of rows changed; on failure keeps the old contents, records the error, warns and returns NULL';

CREATE FUNCTION pulse.drop_aggregate(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'pulse_drop_aggregate'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION pulse.drop_aggregate(text) FROM PUBLIC;
COMMENT ON FUNCTION pulse.drop_aggregate(text) IS
'drops the aggregate table, its triggers, change log, pg_cron job and history';

-- Number and age of the changes not yet applied to aggregate id.
CREATE FUNCTION pulse._aggregate_pending(aggregate_id integer,
                                         OUT changes bigint,
                                         OUT oldest timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    log text := format('pulse.%I', 'aggregate_' || aggregate_id || '_log');
BEGIN
    IF to_regclass(log) IS NOT NULL THEN
        EXECUTE format('SELECT count(*), min(__pulse_at) FROM %s', log)
           INTO changes, oldest;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION pulse._aggregate_pending(integer) FROM PUBLIC;

CREATE VIEW pulse.aggregates AS
SELECT d.relid::text AS name,
       d.query,
       d.mode,
       d.refresh_interval AS refresh,
       d.schedule,
       d.last_refresh,
       CASE
           WHEN d.mode = 'full' AND NOT d.tracked
               THEN now() - coalesce(d.last_refresh, d.created_at)
           WHEN p.changes > 0 THEN greatest(now() - p.oldest, interval '0')
           ELSE interval '0'
       END AS staleness,
       d.last_duration,
       d.last_rows AS rows_changed,
       p.changes AS pending_changes,
       d.last_error
  FROM pulse.aggregate_defs d
 CROSS JOIN LATERAL pulse._aggregate_pending(d.id) p;
COMMENT ON VIEW pulse.aggregates IS
'materialized aggregates: definition, mode, freshness (staleness = age of the oldest change not yet applied) and last refresh';

-- Forgets aggregates whose table is dropped by a plain DROP TABLE.
CREATE FUNCTION pulse._aggregate_forget(relid oid)
RETURNS void
AS 'MODULE_PATHNAME', 'pulse_aggregate_forget'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION pulse._aggregate_forget(oid) FROM PUBLIC;

-- SECURITY DEFINER: it runs for every role's DROP, and only the extension
-- owner may read pulse.aggregate_defs.
CREATE FUNCTION pulse._aggregate_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT d.relid
               FROM pg_event_trigger_dropped_objects() o
               JOIN pulse.aggregate_defs d ON d.relid = o.objid
              WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0
    LOOP
        PERFORM pulse._aggregate_forget(r.relid);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pulse._aggregate_sql_drop() FROM PUBLIC;
CREATE EVENT TRIGGER pulse_aggregate_sql_drop ON sql_drop
    EXECUTE FUNCTION pulse._aggregate_sql_drop();
-- END aggregates
