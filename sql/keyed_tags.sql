--
-- Keyed cache tags: pulse.track(rel, tag, keys) bumps "<tag>:<col>=<value>"
-- for the key values a committed write touched, the column's epoch
-- "<tag>:<col>=*" beyond pulse.keyed_tag_limit values or on TRUNCATE; tag
-- templates of endpoints; pulse.keyed_state, pulse._tenant_key,
-- pulse.last_bumps and pulse.prune_keyed_tags.
--
-- Notifications are read through a second connection (dblink) that LISTENs,
-- as in tags.sql.
--
\set VERBOSITY terse
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT dblink_connect('kt_listener',
       format('dbname=%s port=%s host=%s', current_database(),
              current_setting('port'),
              split_part(current_setting('unix_socket_directories'), ',', 1)));
SELECT dblink_exec('kt_listener', 'LISTEN pulse_invalidate');
CREATE FUNCTION kt_notifications() RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM * FROM dblink('kt_listener', 'SELECT 1') AS t(x int);
    RETURN QUERY SELECT extra FROM dblink_get_notify('kt_listener');
END
$$;

CREATE TYPE kt_mood AS ENUM ('calm', 'busy');
CREATE TABLE kt_events (
    id        bigint PRIMARY KEY,
    tenant_id int,
    kind      text,
    mood      kt_mood,
    amount    numeric,
    at        date
);

-- key columns: checked when tracking
SELECT pulse.track('kt_events', 'ev', keys => '{tenant_id,nope}');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.track('kt_events', 'ev', keys => '{amount}');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.track('kt_events', 'ev', keys => '{at}');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.track('kt_events', 'ev', keys => '{ctid}');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.track('kt_events', 'ev', keys => ARRAY['id', NULL]);
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.track('kt_events', 'ev', keys => '{{id},{kind}}');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.track('kt_events', repeat('t', 508), keys => '{id}');
\echo :LAST_ERROR_SQLSTATE

SELECT pulse.track('kt_events', 'ev', keys => '{tenant_id,id,tenant_id,mood}');
SELECT rel, tag, keys FROM pulse.tracked WHERE tag = 'ev';
SELECT tgname FROM pg_trigger WHERE tgrelid = 'kt_events'::regclass ORDER BY 1;

-- one tag per key column and distinct value, plus the table tag, at commit
INSERT INTO kt_events VALUES (1, 7, 'a', 'calm'), (2, 7, 'b', 'busy'), (3, 8, 'a', NULL);
SELECT * FROM kt_notifications();
SELECT pulse.tag_generations('{ev,ev:tenant_id=7,ev:tenant_id=8,ev:id=3,ev:mood,ev:tenant_id=9}');

-- an UPDATE bumps the old and the new values of the rows it changed
UPDATE kt_events SET tenant_id = 9 WHERE id = 2;
SELECT * FROM kt_notifications();
-- a DELETE the old ones; a statement that changes no row only the table tag
DELETE FROM kt_events WHERE id = 3;
UPDATE kt_events SET kind = 'z' WHERE id = -1;
SELECT * FROM kt_notifications();

-- several statements of a transaction: each tag once, sorted, at commit
BEGIN;
INSERT INTO kt_events VALUES (4, 7, 'c', 'calm');
UPDATE kt_events SET kind = 'd' WHERE id = 4;
SELECT * FROM kt_notifications();
COMMIT;
SELECT * FROM kt_notifications();
SELECT pulse.last_bumps();

-- rolled back: nothing; a savepoint rolled back forgets only its own values
BEGIN;
INSERT INTO kt_events VALUES (5, 20, 'e', 'calm');
ROLLBACK;
SELECT * FROM kt_notifications();
BEGIN;
INSERT INTO kt_events VALUES (5, 21, 'e', 'calm');
SAVEPOINT s;
INSERT INTO kt_events VALUES (6, 22, 'e', 'calm');
ROLLBACK TO SAVEPOINT s;
INSERT INTO kt_events VALUES (7, 23, 'e', 'calm');
RELEASE SAVEPOINT s;
COMMIT;
SELECT * FROM kt_notifications();

-- beyond pulse.keyed_tag_limit values of a column: its epoch instead
SET pulse.keyed_tag_limit = 3;
INSERT INTO kt_events SELECT i, 7, 'f', 'busy' FROM generate_series(10, 14) i;
SELECT * FROM kt_notifications();
-- an epoch reached in a savepoint survives its rollback: the values it
-- replaced came from before the savepoint too
BEGIN;
INSERT INTO kt_events VALUES (20, 30, 'g', 'calm'), (21, 31, 'g', 'calm');
SAVEPOINT s;
INSERT INTO kt_events VALUES (22, 32, 'g', 'calm'), (23, 33, 'g', 'calm');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT * FROM kt_notifications();
RESET pulse.keyed_tag_limit;

-- TRUNCATE bumps the epochs of every key column
CREATE TABLE kt_small (k int, v text);
SELECT pulse.track('kt_small', 'small', keys => '{k,v}');
TRUNCATE kt_small;
SELECT * FROM kt_notifications();
-- a value too long for a tag: the epoch
INSERT INTO kt_small VALUES (1, repeat('v', 600));
SELECT * FROM kt_notifications();
-- a key column dropped after track(): every write bumps its epoch
ALTER TABLE kt_small DROP COLUMN v;
INSERT INTO kt_small VALUES (2);
SELECT * FROM kt_notifications();
-- tracking again without keys removes the keyed triggers
SELECT pulse.track('kt_small', 'small');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'kt_small'::regclass ORDER BY 1;
INSERT INTO kt_small VALUES (3);
SELECT * FROM kt_notifications();
SELECT pulse.untrack('kt_small');

-- pulse.keyed_state: the statement's snapshot and the generations in it
SELECT (s::json->>'snapshot') ~ '^\d+:\d+:[\d,]*$' AS has_snapshot,
       s::json->'tags' AS tags
  FROM pulse.keyed_state(ARRAY['ev:tenant_id=7', NULL, 'ev:tenant_id=404']) s;
SELECT pulse.keyed_state('{}')::json->'tags' AS no_tags;
SELECT pulse.keyed_state(NULL)::json->'tags' AS null_tags;
-- a two-dimensional array is not a list of tags
SELECT pulse.keyed_state(ARRAY[['ev:tenant_id=7', 'ev:tenant_id=8']]);
\echo :LAST_ERROR_SQLSTATE

-- pulse._tenant_key: the tenant as a key column's value spells it
SELECT pulse._tenant_key('integer');
SET pulse.tenant = '07';
SELECT pulse._tenant_key('integer'), pulse._tenant_key('bigint'), pulse._tenant_key('text');
SET pulse.tenant = ' +8 ';
SELECT pulse._tenant_key('smallint');
SET pulse.tenant = 'acme';
SELECT pulse._tenant_key('integer') IS NULL AS not_an_integer, pulse._tenant_key('text');
SET pulse.tenant = 'CALM';
SELECT pulse._tenant_key('kt_mood') IS NULL AS enum_is_case_sensitive;
SET pulse.tenant = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11';
SELECT pulse._tenant_key('uuid');
RESET pulse.tenant;

-- endpoint tag templates
CREATE FUNCTION kt_by_tenant(t int, n int DEFAULT 10) RETURNS json LANGUAGE sql STABLE
    AS $$ SELECT json_agg(e.id ORDER BY e.id) FROM kt_events e WHERE e.tenant_id = t LIMIT n $$;
CREATE FUNCTION kt_by_id(id bigint) RETURNS json LANGUAGE sql STABLE
    AS $$ SELECT to_json(e) FROM kt_events e WHERE e.id = kt_by_id.id $$;
CREATE FUNCTION kt_by_small_id(id int) RETURNS json LANGUAGE sql STABLE
    AS $$ SELECT to_json(e) FROM kt_events e WHERE e.id = kt_by_small_id.id $$;
CREATE FUNCTION kt_by_text(id text) RETURNS json LANGUAGE sql STABLE
    AS $$ SELECT to_json(e) FROM kt_events e WHERE e.id::text = kt_by_text.id $$;
CREATE FUNCTION kt_mine() RETURNS json LANGUAGE sql STABLE
    AS $$ SELECT json_agg(e.id ORDER BY e.id) FROM kt_events e
          WHERE e.tenant_id = current_setting('pulse.tenant')::int $$;
CREATE FUNCTION kt_add(t int) RETURNS json LANGUAGE sql
    AS $$ INSERT INTO kt_events VALUES (1000 + t, t) RETURNING to_json(id) $$;

SELECT pulse.expose('kt_by_tenant(int, int)', ttl => '1 minute',
                    tags => ARRAY['ev:tenant_id={t}']);
SELECT pulse.expose('kt_by_id(bigint)', ttl => '1 minute', tags => ARRAY['ev:id={id}']);
SELECT pulse.expose('kt_by_small_id(int)', ttl => '1 minute', tags => ARRAY['ev:id={id}']);
SELECT pulse.expose('kt_mine()', class => 'search', ttl => '1 minute',
                    tags => ARRAY['ev:tenant_id={tenant}', 'other']);
SELECT name, tags, key_tags, keyed_sql FROM pulse.endpoints
 WHERE name LIKE 'kt\_%' ORDER BY name COLLATE "C";
-- the filled templates, as pulse-proxy evaluates them in a call's statement
PREPARE kt_fill(int) AS SELECT ARRAY['ev:tenant_id=' || ($1::integer)::integer::text]::text[];
EXECUTE kt_fill(7);
SET pulse.tenant = '07';
SELECT ARRAY['ev:tenant_id=' || pulse._tenant_key('integer'::pg_catalog.regtype)]::text[] AS filled;
RESET pulse.tenant;

-- bad templates
SELECT pulse.expose('kt_by_tenant(int, int)', tags => ARRAY['ev:tenant_id={n}']);
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('kt_by_tenant(int, int)', tags => ARRAY['ev:tenant_id={nobody}']);
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('kt_by_tenant(int, int)', tags => ARRAY['ev:kind={t}']);
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('kt_by_tenant(int, int)', tags => ARRAY['nothing:tenant_id={t}']);
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('kt_by_tenant(int, int)', tags => ARRAY['ev:tenant_id={t}x']);
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('kt_by_tenant(int, int)', tags => ARRAY['ev:tenant_id={}']);
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('kt_by_text(text)', tags => ARRAY['ev:id={id}']);
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.expose('kt_add(int)', class => 'write', tags => ARRAY['ev:tenant_id={t}']);
\echo :LAST_ERROR_SQLSTATE

-- keys an endpoint depends on cannot go away
SELECT pulse.track('kt_events', 'ev', keys => '{id,mood}');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.track('kt_events', 'renamed', keys => '{tenant_id,id}');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.untrack('kt_events');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.track('kt_events', 'ev', keys => '{id,tenant_id}');
SELECT rel, tag, keys FROM pulse.tracked WHERE tag = 'ev';

-- a key column whose type changed: the template still fills it as the
-- column spells it
ALTER TABLE kt_events ALTER COLUMN tenant_id TYPE bigint;
SELECT name, key_tags, keyed_sql FROM pulse.endpoints WHERE name = 'kt_by_tenant';
-- a key column renamed: the writers bump its epoch, and the template that
-- went bad makes the endpoint depend on the whole table
ALTER TABLE kt_events RENAME COLUMN tenant_id TO owner_id;
SELECT name, key_tags, keyed_sql FROM pulse.endpoints WHERE name = 'kt_by_tenant';
INSERT INTO kt_events VALUES (100, 100, 'h', 'calm');
SELECT * FROM kt_notifications();
ALTER TABLE kt_events RENAME COLUMN owner_id TO tenant_id;

-- prune: keyed rows not bumped for a while go, and their columns' epochs move
UPDATE pulse.cache_tags SET updated_at = now() - interval '30 days'
 WHERE tag IN ('ev:id=1', 'ev:id=2');
SELECT family, count(*) FROM pulse.cache_tags WHERE family IS NOT NULL
 GROUP BY family ORDER BY family COLLATE "C";
SELECT pulse.prune_keyed_tags(interval '7 days');
SELECT * FROM kt_notifications();
SELECT pulse.tag_generations('{ev:id=1,ev:id=2,ev:id=4}');
SELECT pulse.prune_keyed_tags(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.prune_keyed_tags(interval '-1 day');
\echo :LAST_ERROR_SQLSTATE
CREATE ROLE kt_plain;
SET ROLE kt_plain;
SELECT pulse.prune_keyed_tags();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE kt_plain;

-- clean up
SELECT pulse.unexpose('kt_by_tenant(int, int)');
SELECT pulse.unexpose('kt_by_id(bigint)');
SELECT pulse.unexpose('kt_by_small_id(int)');
SELECT pulse.unexpose('kt_mine()');
SELECT pulse.untrack('kt_events');
SELECT dblink_disconnect('kt_listener');
DROP TABLE kt_events, kt_small;
DROP TYPE kt_mood;
DROP FUNCTION kt_notifications();
DROP EXTENSION dblink;
