-- The same page with LIMIT/OFFSET, also returned as JSON.
-- pgbench variables (set with -D by run.sh):
--   :depth      rows to skip
--   :page_size  rows per page
SELECT jsonb_agg(to_jsonb(s))
FROM (SELECT id, tenant_id, created_at, kind, amount, note
      FROM bench_events
      ORDER BY created_at, id
      LIMIT :page_size OFFSET :depth) AS s;
