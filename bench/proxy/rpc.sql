-- bench/proxy/rpc.sql: pgbench script sending what pulse-proxy sends for one
-- uncached GET /rpc/item?id= (proxy/README.md, "What runs in PostgreSQL"):
-- one pipeline, one implicit transaction.  Run as pulse_proxy (under RLS)
-- with -M prepared -D maxk=ROWS/TENANTS -D tenants=TENANTS.
\set k random(1, :maxk)
\set id :k * :tenants
\startpipeline
SELECT set_config('pulse.tenant', '1', true), set_config('application_name', 'pulse-proxy bench', true), set_config('statement_timeout', '2000', true);
SELECT "api"."item"("id" => :id)::text;
\endpipeline
