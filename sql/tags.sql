--
-- Cache tags: pulse.bump_tag, pulse.track/untrack, pulse.tag_generations and
-- the NOTIFY pulse_invalidate, 'tag:generation' messages.
--
-- Notifications are read through a second connection (dblink) that LISTENs:
-- a round trip on it delivers everything committed before, and only the
-- channel and payload are shown (never the sender's PID).
--
\set VERBOSITY terse
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT dblink_connect('listener',
       format('dbname=%s port=%s host=%s', current_database(),
              current_setting('port'),
              split_part(current_setting('unix_socket_directories'), ',', 1)));
SELECT dblink_exec('listener', 'LISTEN pulse_invalidate');
CREATE FUNCTION notifications() RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM * FROM dblink('listener', 'SELECT 1') AS t(x int);
    RETURN QUERY SELECT notify_name || ' ' || extra
                   FROM dblink_get_notify('listener');
END
$$;

CREATE TABLE public.events (id int PRIMARY KEY, v text);
CREATE TABLE "Order Lines" (id int);

-- the default tag is the schema-qualified name, quoted as in SQL
SELECT pulse.track('events');
SELECT pulse.track('"Order Lines"');
SELECT rel, tag FROM pulse.tracked ORDER BY tag COLLATE "C";
SELECT pulse.tag_generations('{public.events,"public.\"Order Lines\""}');

-- one bump per writing transaction, delivered at commit
INSERT INTO events VALUES (1, 'a'), (2, 'b');
SELECT * FROM notifications();
SELECT tag, generation FROM pulse.cache_tags WHERE tag IN ('public.events', 'public."Order Lines"') ORDER BY tag COLLATE "C";

-- several statements and tables in one transaction: each tag once, in order
BEGIN;
INSERT INTO events VALUES (3, 'c');
UPDATE events SET v = 'x' WHERE id = 3;
DELETE FROM events WHERE id = 3;
INSERT INTO "Order Lines" VALUES (1);
SELECT * FROM notifications();
COMMIT;
SELECT * FROM notifications();
SELECT pulse.tag_generations('{public.events,"public.\"Order Lines\""}');

-- a rolled-back write bumps nothing
BEGIN;
INSERT INTO events VALUES (4, 'd');
ROLLBACK;
SELECT * FROM notifications();
SELECT pulse.tag_generations('{public.events}');

-- a write undone by ROLLBACK TO SAVEPOINT bumps nothing; a released one does
BEGIN;
SAVEPOINT s;
INSERT INTO events VALUES (5, 'e');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT * FROM notifications();
BEGIN;
SAVEPOINT s;
INSERT INTO events VALUES (5, 'e');
RELEASE SAVEPOINT s;
COMMIT;
SELECT * FROM notifications();

-- a write before a savepoint survives the rollback of the savepoint
BEGIN;
UPDATE events SET v = 'y' WHERE id = 5;
SAVEPOINT s;
UPDATE events SET v = 'z' WHERE id = 5;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT * FROM notifications();

-- INSERT ... ON CONFLICT fires the INSERT and UPDATE triggers: still once
INSERT INTO events VALUES (5, 'f') ON CONFLICT (id) DO UPDATE SET v = 'f';
SELECT * FROM notifications();

-- a statement that changes no row still counts as a write
UPDATE events SET v = 'none' WHERE id = -1;
SELECT * FROM notifications();

TRUNCATE events;
SELECT * FROM notifications();

-- REPEATABLE READ and SERIALIZABLE writers bump the latest generation
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pulse.tag_generations('{public.events}');
SELECT dblink_exec('listener', 'INSERT INTO events VALUES (10, ''other session'')');
INSERT INTO events VALUES (11, 'k');
COMMIT;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT pulse.tag_generations('{public.events}');
SELECT dblink_exec('listener', 'INSERT INTO events VALUES (12, ''other session'')');
INSERT INTO events VALUES (13, 'k');
COMMIT;
SELECT * FROM notifications();
SELECT pulse.tag_generations('{public.events}');

-- tracking again is a no-op; with another tag it replaces the trigger
SELECT pulse.track('events');
SELECT pulse.track('events', 'events-v2');
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'events'::regclass;
SELECT rel, tag FROM pulse.tracked ORDER BY tag COLLATE "C";
INSERT INTO events VALUES (20, 'a');
SELECT * FROM notifications();

-- untracked: writes bump nothing
SELECT pulse.untrack('events');
SELECT rel, tag FROM pulse.tracked ORDER BY tag COLLATE "C";
INSERT INTO events VALUES (21, 'a');
SELECT * FROM notifications();
SELECT pulse.untrack('events');
\echo :LAST_ERROR_SQLSTATE

-- bump_tag bumps at once and returns the generation; NOTIFY at commit
BEGIN;
SELECT pulse.bump_tag('report:daily');
SELECT pulse.bump_tag('report:daily');
SELECT * FROM notifications();
COMMIT;
SELECT * FROM notifications();
BEGIN;
SELECT pulse.bump_tag('report:daily');
ROLLBACK;
SELECT * FROM notifications();
SELECT pulse.bump_tag(NULL);

-- tag_generations: same order, 0 for unknown tags, NULL array -> NULL
SELECT pulse.tag_generations('{report:daily,nope,NULL,events-v2,report:daily}');
SELECT pulse.tag_generations('{}');
SELECT pulse.tag_generations(NULL);

-- partitioned tables can be tracked
CREATE TABLE measures (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE measures_2024 PARTITION OF measures
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
SELECT pulse.track('measures', 'measures');
INSERT INTO measures VALUES (1, '2024-05-01');
SELECT * FROM notifications();

-- errors
SELECT pulse.bump_tag('');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.bump_tag(repeat('x', 513));
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.track('events', '');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.track(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.untrack(NULL);
\echo :LAST_ERROR_SQLSTATE
CREATE VIEW events_view AS SELECT * FROM events;
SELECT pulse.track('events_view');
\echo :LAST_ERROR_SQLSTATE
CREATE TEMP TABLE scratch (id int);
SELECT pulse.track('scratch');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.track('pulse.cache_tags');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE busy (id int);
CREATE FUNCTION busy_trigger() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER pulse_track AFTER INSERT ON busy
    FOR EACH STATEMENT EXECUTE FUNCTION busy_trigger();
SELECT pulse.track('busy');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.untrack('busy');
\echo :LAST_ERROR_SQLSTATE
SELECT tgname, tgfoid::regproc FROM pg_trigger WHERE tgrelid = 'busy'::regclass;
-- the trigger function only works as installed by pulse.track
CREATE TRIGGER by_hand BEFORE INSERT ON busy
    FOR EACH ROW EXECUTE FUNCTION pulse._track_trigger('busy');
INSERT INTO busy VALUES (1);
\echo :LAST_ERROR_SQLSTATE
DROP TABLE busy;
DROP FUNCTION busy_trigger();

-- privileges: tracking needs ownership; writers need no right on pulse's
-- tables; bumping by hand needs EXECUTE on pulse.bump_tag; everyone reads
CREATE ROLE regress_pulse_tags_owner;
CREATE ROLE regress_pulse_tags_writer;
GRANT USAGE ON SCHEMA pulse TO regress_pulse_tags_owner, regress_pulse_tags_writer;
GRANT CREATE ON SCHEMA public TO regress_pulse_tags_owner;
SET ROLE regress_pulse_tags_owner;
CREATE TABLE owned (id int);
GRANT INSERT ON owned TO regress_pulse_tags_writer;
SELECT pulse.track('owned');
SELECT pulse.track('events');
\echo :LAST_ERROR_SQLSTATE
SELECT pulse.untrack('measures');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE mine (id int);
CREATE TRIGGER sneaky AFTER INSERT ON mine
    FOR EACH STATEMENT EXECUTE FUNCTION pulse._track_trigger('events-v2');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_pulse_tags_writer;
INSERT INTO owned VALUES (1);
SELECT pulse.tag_generations('{public.owned}');
SELECT pulse.bump_tag('public.owned');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO pulse.cache_tags VALUES ('public.owned', 100);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT * FROM notifications();

-- dropping a tracked table drops its trigger
DROP TABLE owned, mine;
SELECT rel, tag FROM pulse.tracked ORDER BY tag COLLATE "C";

-- the commit time: one NOTIFY pulse_commit, '<µs since 1970>' per bumping
-- transaction, before its bumps, taken at pre-commit (a listener times what
-- a bump caused from it); a transaction that bumps nothing sends none
SELECT dblink_exec('listener', 'LISTEN pulse_commit');
CREATE FUNCTION notifications_timed(t1 bigint, t2 bigint) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM * FROM dblink('listener', 'SELECT 1') AS t(x int);
    RETURN QUERY SELECT notify_name || ' ' || CASE WHEN notify_name = 'pulse_commit'
                        THEN CASE WHEN extra::bigint BETWEEN t1 AND t2 THEN 'at commit' ELSE extra END
                        ELSE extra END
                   FROM dblink_get_notify('listener');
END
$$;
CREATE TABLE commit_times (id int);
SELECT pulse.track('commit_times');
BEGIN;
INSERT INTO commit_times VALUES (1);
SELECT pg_sleep(0.01);
SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::bigint AS t1 \gset
COMMIT;
SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::bigint AS t2 \gset
SELECT * FROM notifications_timed(:t1, :t2);
SELECT 1 FROM commit_times WHERE id = -1;
SELECT * FROM notifications();
SELECT dblink_exec('listener', 'UNLISTEN pulse_commit');
DROP FUNCTION notifications_timed(bigint, bigint);
DROP TABLE commit_times;

-- cleanup
SELECT dblink_disconnect('listener');
DROP FUNCTION notifications();
DROP VIEW events_view;
DROP TABLE events, "Order Lines", measures;
DROP EXTENSION dblink;
REVOKE CREATE ON SCHEMA public FROM regress_pulse_tags_owner;
REVOKE USAGE ON SCHEMA pulse FROM regress_pulse_tags_owner, regress_pulse_tags_writer;
DROP ROLE regress_pulse_tags_owner;
DROP ROLE regress_pulse_tags_writer;
