-- bench/data/schema.sql: tables and roles of the load-test dataset, without
-- indexes (bench/data/finish.sql builds them after the load).  Run by a
-- superuser in a database that has the pulse extension.
--
-- bench.events is filled by bench/data/load.sql, one id range per session,
-- so the load runs in parallel; every column is a pure function of the id.

CREATE SCHEMA bench;
CREATE SCHEMA api;

CREATE TABLE bench.tenants (
    id      int PRIMARY KEY,
    name    text NOT NULL
);

-- No primary key, no identity yet: finish.sql adds both after the load.
CREATE TABLE bench.events (
    id          bigint NOT NULL,
    tenant_id   int NOT NULL,
    created_at  timestamptz NOT NULL,
    kind        text NOT NULL,
    amount      numeric(12,2) NOT NULL,
    note        text,
    -- bumped by every update (api.update_event): the load scripts compare
    -- the version a read returns with the versions the writes committed,
    -- to count stale reads (bench/staleness.py)
    version     int NOT NULL DEFAULT 0
);

-- The role API clients act as (RLS applies to it) and the login role the
-- proxy and the peers connect as: the same privileges for all three.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'api') THEN
        CREATE ROLE api NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pulse_proxy') THEN
        CREATE ROLE pulse_proxy LOGIN IN ROLE api;
    END IF;
END
$$;
