-- bench/proxy/rpc_pl.sql: pgbench script sending what pulse-proxy sends for one
-- uncached GET /rpc/item_pl?id= (the PL/pgSQL variant of rpc.sql) (proxy/README.md, "What runs in PostgreSQL"):
-- one pipeline, one implicit transaction.  Run as pulse_proxy (under RLS)
-- with -M prepared -D maxk=ROWS/TENANTS -D tenants=TENANTS.
\set k random(1, :maxk)
\set id :k * :tenants
\startpipeline
SELECT set_config('pulse.tenant', '1', true), set_config('application_name', 'pulse-proxy bench', true), set_config('statement_timeout', '2000', true);
SELECT "api"."item_pl"("id" => :id)::text;
\endpipeline
