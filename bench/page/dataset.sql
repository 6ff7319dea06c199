-- Deterministic event table for the pagination benchmark.
-- psql -v rows=N -f dataset.sql
--
-- Rows arrive roughly in time order, as events do: created_at advances 0.6 s
-- per id with up to 6 minutes of deterministic jitter, truncated to whole
-- seconds, so the heap is almost (not exactly) in created_at order and about
-- half the rows share their created_at with another row; id is the unique
-- tiebreaker.  A normal (logged) table; indexes are built after the load.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
SET maintenance_work_mem = '512MB';
SET max_parallel_maintenance_workers = 2;

DROP TABLE IF EXISTS bench_events, bench_cursor;
CREATE TABLE bench_events (
	id          bigint      NOT NULL,
	tenant_id   int         NOT NULL,
	created_at  timestamptz NOT NULL,
	kind        text        NOT NULL,
	amount      numeric(12,2) NOT NULL,
	note        text        NOT NULL
);

INSERT INTO bench_events
SELECT i,
       1 + (i * 7919) % 100,
       timestamptz '2026-01-01 00:00:00+00'
         + make_interval(secs => (i * 6 + (i * 2654435761) % 3600) / 10),
       (ARRAY['view', 'click', 'search', 'purchase', 'refund'])[1 + (i * 31) % 5],
       ((i * 48271) % 100000) / 100.0,
       md5(i::text)
FROM generate_series(1, :rows::bigint) AS i;

ALTER TABLE bench_events ADD PRIMARY KEY (id);
CREATE INDEX bench_events_created_at_id ON bench_events (created_at, id);
VACUUM (ANALYZE) bench_events;
CHECKPOINT;

-- Deep cursors: depth -> the next_cursor of the page that ends at that depth.
CREATE TABLE bench_cursor (depth bigint PRIMARY KEY, c text NOT NULL);
