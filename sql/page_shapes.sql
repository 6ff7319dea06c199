--
-- pulse.page over query shapes that make a NOT NULL column nullable: outer
-- joins (in CTEs, subqueries, views, LATERAL), grouping sets, set
-- operations, set-returning functions, window functions, scalar subqueries,
-- inheritance.  A key treated as NOT NULL when it is not loses its NULL
-- rows; a key proven NOT NULL keeps the row-comparison predicate.
--
CREATE TABLE pa (id int PRIMARY KEY, g int NOT NULL);
CREATE TABLE pb (id int PRIMARY KEY, x int NOT NULL);
CREATE TABLE pc (id int PRIMARY KEY, y int NOT NULL);
INSERT INTO pa SELECT i, i % 3 FROM generate_series(1, 9) i;
INSERT INTO pb SELECT i, i * 10 FROM generate_series(1, 9) i WHERE i % 2 = 1;
INSERT INTO pc SELECT i, i * 100 FROM generate_series(1, 9) i WHERE i % 3 = 0;
ANALYZE pa, pb, pc;

-- The example of the report: page 2 holds the row whose key is NULL.
SELECT pulse.page('WITH w AS (SELECT pa.id, pb.x FROM pa LEFT JOIN pb USING (id) WHERE pa.id <= 3) SELECT * FROM w',
                  'x, id', NULL, 2)->>'next_cursor' AS c1 \gset
SELECT pulse.page('WITH w AS (SELECT pa.id, pb.x FROM pa LEFT JOIN pb USING (id) WHERE pa.id <= 3) SELECT * FROM w',
                  'x, id', :'c1', 2)->'items' AS page_2;

-- walk(q, o, ps): every page forward and backward, row by row, against
-- the query ordered by the database
\getenv abs_srcdir PG_ABS_SRCDIR
\set walk_file :abs_srcdir '/sql/page_walk.psql'
\i :walk_file

CREATE VIEW pab AS SELECT pa.id, pa.g, pb.x FROM pa LEFT JOIN pb ON pb.id = pa.id;
CREATE TABLE shapes (shape text, q text, o text);
INSERT INTO shapes VALUES
  ('cte, left join', 'WITH w AS (SELECT pa.id, pb.x FROM pa LEFT JOIN pb USING (id)) SELECT * FROM w', 'x, id'),
  ('materialized cte', 'WITH w AS MATERIALIZED (SELECT pa.id, pb.x FROM pa LEFT JOIN pb USING (id)) SELECT * FROM w', 'x DESC NULLS LAST, id'),
  ('subquery, left join', 'SELECT * FROM (SELECT pa.id, pb.x FROM pa LEFT JOIN pb ON pb.id = pa.id) s', 'x NULLS FIRST, id DESC'),
  ('view, left join', 'SELECT * FROM pab', 'x, g, id'),
  ('right join', 'SELECT pb.id AS bid, pa.id, pa.g FROM pa RIGHT JOIN pb ON pb.id = pa.id + 1', 'g, id, bid'),
  ('full join', 'SELECT pa.id AS aid, pc.id AS cid, pc.y FROM pa FULL JOIN pc ON pc.id = pa.id * 3', 'y, aid, cid'),
  ('left join of an inner join', 'SELECT pa.id, pb.x, pc.y FROM pa LEFT JOIN (pb JOIN pc ON pc.id = pb.id) ON pb.id = pa.id', 'y, x, id'),
  ('left join lateral', 'SELECT pa.id, l.x FROM pa LEFT JOIN LATERAL (SELECT pb.x FROM pb WHERE pb.id = pa.id) l ON true', 'x, id'),
  ('rollup', 'SELECT x, count(*) AS n FROM pb GROUP BY ROLLUP (x)', 'x'),
  ('cube', 'SELECT g, x, count(*) AS n, GROUPING(g, x) AS gr FROM pa JOIN pb USING (id) GROUP BY CUBE (g, x)', 'g, x DESC, gr'),
  ('grouping sets', 'SELECT g, id, GROUPING(g, id) AS gr FROM pa GROUP BY GROUPING SETS ((g), (id), ())', 'id NULLS FIRST, g, gr'),
  ('union all with a null branch', 'SELECT id, x FROM pb UNION ALL SELECT id + 100, NULL FROM pa', 'x, id'),
  ('union', 'SELECT id, x FROM pb UNION SELECT id, NULL FROM pc', 'x DESC, id'),
  ('rows from', 'SELECT pa.id, s.n, s.m FROM pa, ROWS FROM (generate_series(1, 2), generate_series(1, 1)) AS s(n, m)', 'm, id, n'),
  ('srf in the select list', 'SELECT id, unnest(ARRAY[x, NULL]) AS u, generate_series(1, 2) AS k FROM pb', 'u, id, k'),
  ('window function', 'SELECT id, x, lag(x) OVER (ORDER BY id) AS prev FROM pb', 'prev, id'),
  ('distinct on', 'SELECT * FROM (SELECT DISTINCT ON (pa.g) pa.g, pb.x FROM pa LEFT JOIN pb USING (id) ORDER BY pa.g, pa.id) d', 'x, g'),
  ('scalar subquery', 'SELECT id, (SELECT x FROM pb WHERE pb.id = pa.id) AS x FROM pa', 'x, id'),
  ('values', 'SELECT * FROM (VALUES (1, 5), (2, NULL), (3, 5)) v(id, x)', 'x, id');

SELECT shape, (walk(q, o, 2)).*,
       pulse.explain_page(q, o)->'nullable_keys' AS nullable_keys
FROM shapes ORDER BY shape COLLATE "C";
SELECT shape, (walk(q, o, 3)).* FROM shapes ORDER BY shape COLLATE "C";

-- A child of plain inheritance may drop the NOT NULL of its parent: a scan
-- of the parent returns NULL keys.  (A partition may not.)
CREATE TABLE parent_t (id int NOT NULL, k int NOT NULL);
CREATE TABLE child_t () INHERITS (parent_t);
ALTER TABLE child_t ALTER COLUMN k DROP NOT NULL;
INSERT INTO parent_t SELECT i, i FROM generate_series(1, 4) i;
INSERT INTO child_t SELECT i, CASE WHEN i % 2 = 0 THEN i END FROM generate_series(5, 8) i;
SELECT (walk('SELECT * FROM parent_t', 'k, id', 2)).*,
       pulse.explain_page('SELECT * FROM parent_t', 'k, id')->'nullable_keys' AS nullable_keys,
       pulse.explain_page('SELECT * FROM ONLY parent_t', 'k, id')->'nullable_keys' AS only_parent;
DROP TABLE child_t, parent_t;

-- Composite keys: IS NULL is true for a value whose fields are all NULL and
-- IS NOT NULL false for one with a NULL field, but ORDER BY sorts both
-- among the values; only a NULL value sorts as NULL.  (A NOT NULL composite
-- column may hold '(,)'.)
CREATE TYPE pair AS (a int, b text);
CREATE TABLE pairs (id int PRIMARY KEY, p pair, q pair NOT NULL);
INSERT INTO pairs VALUES (1, '(1,x)', '(,)'), (2, '(1,)', '(1,)'), (3, '(,)', '(,x)'),
                         (4, NULL, '(2,y)'), (5, '(2,y)', '(,)'), (6, '(,x)', '(1,x)');
SELECT o, (walk('SELECT * FROM pairs', o, 1)).*
FROM unnest(ARRAY['p, id', 'p DESC, id', 'p NULLS FIRST, id', 'p DESC NULLS LAST, id DESC',
                  'q, p, id', 'q DESC, p DESC, id']) AS o
ORDER BY o COLLATE "C";
DROP TABLE pairs;
DROP TYPE pair;

-- What stays proven NOT NULL: table columns through inner joins, CTEs,
-- subqueries and views without outer joins, the preserved side of an outer
-- join, UNION branches that are all NOT NULL, count(), row_number(),
-- COALESCE with a NOT NULL argument, constants; their predicate is the row
-- comparison an index can start from.
SELECT q, pulse.explain_page(q, o)->'nullable_keys' AS nullable_keys
FROM (VALUES
  ('SELECT * FROM pa', 'g, id'),
  ('SELECT pa.id, pa.g, pb.x FROM pa JOIN pb USING (id)', 'x, g, id'),
  ('WITH w AS (SELECT pa.id, pb.x FROM pa JOIN pb USING (id)) SELECT * FROM w', 'x, id'),
  ('SELECT * FROM (SELECT id, g FROM pa) s', 'g, id'),
  ('SELECT pa.id, pa.g, pb.x FROM pa LEFT JOIN pb USING (id)', 'g, id'),
  ('SELECT id, g FROM pa UNION ALL SELECT id, x FROM pb', 'g, id'),
  ('SELECT g, count(*) AS n FROM pa GROUP BY g', 'n, g'),
  ('SELECT id, row_number() OVER (ORDER BY g) AS r FROM pa', 'r'),
  ('SELECT pa.id, coalesce(pb.x, 0) AS x FROM pa LEFT JOIN pb USING (id)', 'x, id'),
  ('SELECT id, 7 AS k FROM pa', 'k, id')) AS t(q, o)
ORDER BY q COLLATE "C";
SELECT pulse.explain_page('SELECT pa.id, pb.x FROM pa JOIN pb USING (id)', 'x, id')->>'sql' AS row_comparison;

DROP TABLE shapes;
DROP VIEW pab;
DROP FUNCTION walk(text, text, int, jsonb);
DROP TABLE pa, pb, pc;
