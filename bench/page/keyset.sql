-- One keyset page of bench_events in (created_at, id) order through pulse.page.
-- pgbench variables (set with -D by run.sh):
--   :cursor     the next_cursor that ends at the wanted depth, '-' for the first page
--   :page_size  rows per page
SELECT pulse.page('SELECT id, tenant_id, created_at, kind, amount, note FROM bench_events',
                  'created_at, id',
                  NULLIF(:cursor, '-'),
                  :page_size);
