-- bench/data/aggregate.sql: the precomputed side of the aggregates scenario,
-- kept fresh incrementally by the pulse workers; its refreshes bump the tag
-- 'bench.tenant_kind_stats'.
--
-- Dropped and created again by every run (bench/run.sh, before api.sql, whose
-- tenant_stats reads the table; about
-- 1.5 s on 10M rows), not kept with the dataset: an aggregate is made the way
-- the pulse that created it worked.  A dataset loaded before pulse's delta
-- maintenance kept an aggregate whose refreshes recomputed every touched
-- group from the 10M rows, 2 to 10 s each, every 5 s (12% of the machine's
-- CPU under the read-heavy mix), in every run until the data was reloaded.
SELECT pulse.drop_aggregate(name) FROM pulse.aggregates WHERE name = 'bench.tenant_kind_stats';
SELECT pulse.create_aggregate('bench.tenant_kind_stats',
    'SELECT tenant_id, kind, count(*) AS n, sum(amount) AS total, max(created_at) AS last_at
       FROM bench.events GROUP BY tenant_id, kind',
    '5 seconds');
GRANT SELECT ON bench.tenant_kind_stats TO api;
ALTER TABLE bench.tenant_kind_stats ENABLE ROW LEVEL SECURITY;
CREATE POLICY stats_tenant ON bench.tenant_kind_stats
    USING (tenant_id = nullif(current_setting('pulse.tenant', true), '')::int);
VACUUM (ANALYZE) bench.tenant_kind_stats;
