-- bench/data/load.sql: inserts the events with ids :lo .. :hi (psql
-- variables; also :rows, the dataset size, and :tenants).  Deterministic
-- and order-free: every value is derived from the id through
-- hashint8extended with a different seed per column, so parallel sessions
-- loading disjoint ranges build the same table as one session.
--
-- Tenants follow a Zipf-like (log-uniform, s = 1) law: tenant k owns a
-- share ln((k+1)/k) / ln(T+1) of the rows; with T = 1000, tenant 1 owns
-- 10%, the first 10 tenants 35%, the first 100 67%, the last one 0.014%.
-- created_at grows with the id over one year; kinds are skewed too.
SET synchronous_commit = off;

INSERT INTO bench.events (id, tenant_id, created_at, kind, amount, note)
SELECT i,
       least(:tenants, floor(exp(u1 * ln(:tenants + 1.0))))::int,
       timestamptz '2025-01-01 00:00:00+00'
           + (i * (31536000.0 / :rows) + u2 * 30) * interval '1 second',
       CASE WHEN u3 < 0.60 THEN 'view'
            WHEN u3 < 0.85 THEN 'click'
            WHEN u3 < 0.93 THEN 'signup'
            WHEN u3 < 0.98 THEN 'purchase'
            ELSE 'refund' END,
       round((u2 * 500)::numeric, 2),
       CASE WHEN i % 11 = 0 THEN NULL
            ELSE 'event ' || i || ' from the load-test generator' END
  FROM generate_series(:lo::bigint, :hi::bigint) AS i,
       LATERAL (SELECT (hashint8extended(i, 1) & 2147483647) / 2147483648.0 AS u1,
                       (hashint8extended(i, 2) & 2147483647) / 2147483648.0 AS u2,
                       (hashint8extended(i, 3) & 2147483647) / 2147483648.0 AS u3) AS u;
