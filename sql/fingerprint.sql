--
-- pulse.fingerprint(query): 16 hex digits identifying the structure of a
-- query, computed from the raw parse tree (the tables need not exist).
--

-- same(a, b): do two queries have the same fingerprint?
CREATE FUNCTION pg_temp.same(a text, b text) RETURNS boolean
LANGUAGE sql AS $$ SELECT pulse.fingerprint(a) = pulse.fingerprint(b) $$;

-- err(q): the SQLSTATE and message pulse.fingerprint(q) fails with
CREATE FUNCTION pg_temp.err(q text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pulse.fingerprint(q);
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- format
SELECT pulse.fingerprint('select * from t where a = 1') ~ '^[0-9a-f]{16}$' AS format_ok;
SELECT pulse.fingerprint('create table t (a int)') ~ '^[0-9a-f]{16}$' AS format_ok;

-- STRICT: NULL in, NULL out
SELECT pulse.fingerprint(NULL) IS NULL AS null_in_null_out;

-- stability: these values are part of the contract (cursors and cached
-- plans embed fingerprints); a change here is a change of algorithm.
SELECT pulse.fingerprint('SELECT id, name FROM users WHERE tenant_id = 1 AND id IN (1, 2, 3) ORDER BY id DESC LIMIT 10') AS select_fp;
SELECT pulse.fingerprint('select id, name from users where tenant_id = 42 and id in (7) order by id desc limit 99;') AS same_select_fp;
SELECT pulse.fingerprint('INSERT INTO t (a, b) VALUES (1, ''x'') RETURNING id') AS insert_fp;
SELECT pulse.fingerprint('CREATE INDEX ON t (a) WHERE b > 5') AS utility_fp;
SELECT pulse.fingerprint('SELECT 1; SELECT 2') AS multi_fp;

-- pairs that must have the same fingerprint: literals, whitespace,
-- comments, keyword case, IN-list and ARRAY lengths
SELECT n, what, pg_temp.same(a, b) AS same
FROM (VALUES
	(1, 'integer value', 'select * from t where a = 1', 'SELECT *  FROM t /* c */ WHERE a = 42'),
	(2, 'whitespace and comments', 'select a from t', E'SELECT\n\ta -- comment\nFROM   t /* x */'),
	(3, 'keyword case', 'select a from t where b is null order by a', 'SELECT a FROM t WHERE b IS NULL ORDER BY a'),
	(4, 'string value', 'select * from t where s = ''x''', 'select * from t where s = ''a longer string'''),
	(5, 'dollar vs plain string', 'select * from t where s = $$x$$', 'select * from t where s = $q$y$q$'),
	(6, 'escape string', 'select * from t where s = E''a\nb''', 'select * from t where s = ''c'''),
	(7, 'negative number', 'select * from t where a = -5', 'select * from t where a = 7'),
	(8, 'numeric vs integer', 'select * from t where a = 1.5e3', 'select * from t where a = 2'),
	(9, 'NULL literal', 'select * from t where a = NULL', 'select * from t where a = 3'),
	(10, 'boolean literal', 'select * from t where flag = true', 'select * from t where flag = false'),
	(11, 'typed literal', 'select * from t where s = ''x''::text', 'select * from t where s = ''y''::text'),
	(12, 'type-prefixed literal', 'select * from t where d > now() - interval ''1 day''', 'select * from t where d > now() - ''2 hours''::interval'),
	(13, 'bit strings', 'select B''101''', 'select X''1F'''),
	(14, 'IN-list length', 'select * from t where a in (1,2,3)', 'select * from t where a in (7)'),
	(15, 'IN-list of strings', 'select * from t where s in (''a'', ''b'', ''c'')', 'select * from t where s in (''z'')'),
	(16, 'NOT IN-list length', 'select * from t where a not in (1, 2)', 'select * from t where a not in (3, 4, 5, 6)'),
	(17, 'IN-list of casts', 'select * from t where s in (''a''::text, ''b''::text)', 'select * from t where s in (''c''::text)'),
	(18, 'ARRAY length', 'select * from t where a = any(array[1, 2, 3])', 'select * from t where a = any(ARRAY[9])'),
	(19, 'nested ARRAY length', 'select array[[1, 2], [3, 4]]', 'select array[[5]]'),
	(20, 'row IN-list length', 'select * from t where (a, b) in ((1, 2), (3, 4))', 'select * from t where (a, b) in ((5, 6))'),
	(21, 'LIMIT and OFFSET values', 'select * from t limit 10 offset 20', 'select * from t limit 1 offset 0'),
	(22, 'trailing semicolon', 'select 1', 'select 1;'),
	(23, 'unquoted vs quoted lower case', 'select a from t', 'select "a" from "t"'),
	(24, 'INSERT values', 'insert into t (a, b) values (1, ''x'')', 'INSERT INTO t (a, b) VALUES (2, ''y'')'),
	(25, 'UPDATE values', 'update t set a = 1 where id = 2', 'update t set a = 10 where id = 20'),
	(26, 'DELETE values', 'delete from t where id in (1, 2)', 'delete from t where id in (3)'),
	(27, 'ON CONFLICT values', 'insert into t values (1) on conflict (a) do update set b = 1', 'insert into t values (2) on conflict (a) do update set b = 2'),
	(28, 'subquery literals', 'select * from t where a in (select a from u where b = 1)', 'select * from t where a in (select a from u where b = 2)'),
	(29, 'CTE literals', 'with x as (select 1 as v) select * from x where v > 0', 'WITH x AS (SELECT 2 AS v) SELECT * FROM x WHERE v > 5'),
	(30, 'window frame offset', 'select sum(a) over (order by b rows 3 preceding) from t', 'select sum(a) over (order by b rows 5 preceding) from t'),
	(31, 'utility statement literals', 'create table t (a int default 1)', 'CREATE TABLE t (a INT DEFAULT 2);'),
	(32, 'multi-statement literals', 'select 1; select ''a''', 'select 2; select ''b'';'),
	(33, 'literal vs parameter', 'select * from t where a = 1', 'select * from t where a = $1'),
	(34, 'parameter number', 'select * from t where a = $1', 'select * from t where a = $2'),
	(35, 'IN list vs IN parameters', 'select * from t where a in (1, 2, 3)', 'select * from t where a in ($1, $2)'),
	(36, 'IN list vs = ANY(ARRAY)', 'select * from t where a in (1, 2, 3)', 'select * from t where a = any(array[4, 5])'),
	(37, 'NOT IN vs <> ALL(ARRAY)', 'select * from t where a not in (1, 2)', 'select * from t where a <> all(array[$1])'),
	(38, 'squashed list as normalize writes it', 'select * from t where a in (1, 2, 3)', 'select * from t where a in ($1 /*, ... */)'),
	(39, 'EXTRACT field as string', 'select extract(year from d) from t', 'select extract(''year'' from d) from t'),
	(40, 'FETCH FIRST vs LIMIT', 'select * from t fetch first 5 rows only', 'select * from t limit 10'),
	(41, 'type-prefixed literal vs cast', 'select date ''2020-01-01''', 'select $1::date'),
	(42, 'interval qualifier', 'select interval ''1'' day', 'select $1::interval day'),
	(43, 'N'''' vs bpchar cast', 'select N''x''', 'select $1::pg_catalog.bpchar')
) AS v(n, what, a, b)
ORDER BY n;

-- utility statements are fingerprinted from their raw tree: literals in
-- them are literals (TRUE, FALSE, NULL and signed numbers too), and their
-- IN lists are squashed
SELECT n, what, pg_temp.same(a, b) AS same
FROM (VALUES
	(1, 'SET number', 'set statement_timeout = 10', 'set statement_timeout = -1'),
	(2, 'SET boolean', 'set enable_seqscan = true', 'set enable_seqscan = false'),
	(3, 'SET string', 'set work_mem = ''64MB''', 'set work_mem = ''1GB'''),
	(4, 'EXECUTE arguments', 'execute p(1, true)', 'execute p(''x'', null)'),
	(5, 'EXPLAIN query', 'explain select * from t where a = true', 'explain select * from t where a = null'),
	(6, 'CREATE POLICY', 'create policy p on t using (flag = true)', 'create policy p on t using (flag = false)'),
	(7, 'DEFAULT', 'alter table t alter column c set default 1', 'alter table t alter column c set default -2'),
	(8, 'column DEFAULT', 'create table t (a bool default true)', 'create table t (a bool default null)'),
	(9, 'partition bounds', 'create table p1 partition of p for values from (1) to (10)', 'create table p1 partition of p for values from (-5) to (7)'),
	(10, 'CHECK', 'create table t (a int check (a > 0))', 'create table t (a int check (a > -1))'),
	(11, 'CHECK IN-list length', 'create table t (a int check (a in (5, 6)))', 'create table t (a int check (a in (5, 6, 7)))'),
	(12, 'index predicate', 'create index on t (a) where b = true', 'create index on t (a) where b = false'),
	(13, 'COPY WHERE', 'copy t from stdin where a > 5', 'copy t from stdin where a > 6'),
	(14, 'CALL arguments', 'call p(1)', 'call p(2)'),
	(15, 'PREPARE query', 'prepare q as select * from t where a = 1', 'prepare q as select * from t where a = $1')
) AS v(n, what, a, b)
ORDER BY n;

-- keyword synonyms that give the same raw tree
SELECT n, what, pg_temp.same(a, b) AS same
FROM (VALUES
	(1, 'SET = / TO', 'set work_mem = ''1MB''', 'SET work_mem TO ''2MB'''),
	(2, 'BEGIN / BEGIN WORK', 'begin', 'BEGIN WORK'),
	(3, 'BEGIN / BEGIN TRANSACTION', 'begin', 'begin transaction'),
	(4, 'COMMIT / END', 'commit', 'end'),
	(5, 'COMMIT / COMMIT WORK', 'commit', 'commit work'),
	(6, 'ROLLBACK / ABORT', 'rollback', 'abort'),
	(7, 'DEALLOCATE [PREPARE]', 'deallocate q', 'deallocate prepare q'),
	(8, 'RELEASE [SAVEPOINT]', 'release s', 'release savepoint s'),
	(9, 'ROLLBACK TO [SAVEPOINT]', 'rollback to s', 'rollback to savepoint s'),
	(10, '!= / <>', 'select * from t where a != 1', 'select * from t where a <> 1')
) AS v(n, what, a, b)
ORDER BY n;

-- pairs that must have different fingerprints: structure and names
SELECT n, what, pg_temp.same(a, b) AS same
FROM (VALUES
	(1, 'table', 'select * from t', 'select * from u'),
	(2, 'schema', 'select * from s.t', 'select * from t'),
	(3, 'column', 'select a from t', 'select b from t'),
	(4, 'quoted upper-case identifier', 'select "A" from t', 'select a from t'),
	(5, 'column alias', 'select a as x from t', 'select a as y from t'),
	(6, 'operator', 'select * from t where a < 1', 'select * from t where a > 1'),
	(7, 'function', 'select lower(a) from t', 'select upper(a) from t'),
	(8, 'aggregate argument', 'select count(*) from t', 'select count(a) from t'),
	(9, 'ORDER BY direction', 'select * from t order by a', 'select * from t order by a desc'),
	(10, 'ORDER BY NULLS', 'select * from t order by a desc', 'select * from t order by a desc nulls last'),
	(11, 'ORDER BY column', 'select * from t order by a', 'select * from t order by b'),
	(12, 'extra WHERE clause', 'select * from t where a = 1', 'select * from t where a = 1 and b = 2'),
	(13, 'AND vs OR', 'select * from t where a = 1 and b = 2', 'select * from t where a = 1 or b = 2'),
	(14, 'LIMIT present', 'select * from t', 'select * from t limit 10'),
	(15, 'OFFSET present', 'select * from t limit 10', 'select * from t limit 10 offset 5'),
	(16, 'LIMIT ALL is not a literal', 'select * from t limit all', 'select * from t limit 5'),
	(17, 'GROUP BY column', 'select count(*) from t group by a', 'select count(*) from t group by b'),
	(18, 'HAVING present', 'select a from t group by a', 'select a from t group by a having count(*) > 1'),
	(19, 'DISTINCT', 'select a from t', 'select distinct a from t'),
	(20, 'join type', 'select * from t join u on t.id = u.id', 'select * from t left join u on t.id = u.id'),
	(21, 'join condition', 'select * from t join u on t.id = u.id', 'select * from t join u on t.id = u.tid'),
	(22, 'subquery vs IN-list', 'select * from t where a in (select a from u)', 'select * from t where a in (1)'),
	(23, 'IN vs =', 'select * from t where a in (1)', 'select * from t where a = 1'),
	(24, 'IN-list with a column', 'select * from t where a in (1, b)', 'select * from t where a in (1)'),
	(25, 'CTE materialized', 'with x as (select 1) select * from x', 'with x as materialized (select 1) select * from x'),
	(26, 'UNION vs UNION ALL', 'select a from t union select a from u', 'select a from t union all select a from u'),
	(27, 'IN-list with a parameter and a column', 'select * from t where a in ($1, b)', 'select * from t where a in ($1)'),
	(28, 'VALUES rows (arity counts)', 'values (1), (2)', 'values (1)'),
	(29, 'cast vs no cast', 'select * from t where a = ''1''::int', 'select * from t where a = 1'),
	(30, 'cast type', 'select * from t where a = ''1''::int', 'select * from t where a = ''1''::bigint'),
	(31, 'type modifier', 'select a::varchar(10) from t', 'select a::varchar(20) from t'),
	(32, 'EXTRACT field', 'select extract(year from d) from t', 'select extract(month from d) from t'),
	(33, 'FOR UPDATE', 'select * from t', 'select * from t for update'),
	(34, 'INSERT columns', 'insert into t (a) values (1)', 'insert into t (b) values (1)'),
	(35, 'INSERT rows', 'insert into t values (1)', 'insert into t values (1), (2)'),
	(36, 'UPDATE column', 'update t set a = 1', 'update t set b = 1'),
	(37, 'RETURNING', 'delete from t where id = 1', 'delete from t where id = 1 returning id'),
	(38, 'DELETE vs SELECT', 'delete from t where id = 1', 'select * from t where id = 1'),
	(39, 'utility statement table', 'create table t (a int)', 'create table u (a int)'),
	(40, 'utility vs query', 'explain select 1', 'select 1'),
	(41, 'one vs two statements', 'select 1', 'select 1; select 1'),
	(42, 'statement order', 'select 1; select a from t', 'select a from t; select 1'),
	(43, 'IN list vs = ANY of a string', 'select * from t where a in (1, 2)', 'select * from t where a = any(''{1,2}'')'),
	(44, 'typmod in a cast', 'select ''x''::char', 'select char ''x'''),
	(45, 'SET name', 'set work_mem = 1', 'set maintenance_work_mem = 1'),
	(46, 'SET LOCAL', 'set work_mem = 1', 'set local work_mem = 1'),
	(47, 'SET value as identifier (structure)', 'set search_path = a', 'set search_path = b'),
	(48, 'BEGIN vs START TRANSACTION', 'begin', 'start transaction'),
	(49, 'COMMIT vs COMMIT AND CHAIN', 'commit', 'commit and chain'),
	(50, 'EXPLAIN options', 'explain select 1', 'explain analyze select 1'),
	(51, 'COMMENT text (a string the grammar keeps)', 'comment on table t is ''a''', 'comment on table t is ''b'''),
	(52, 'function body', 'create function f() returns int language sql as ''select 1''', 'create function f() returns int language sql as ''select 2'''),
	(53, 'partition bound kind', 'create table p1 partition of p for values in (1)', 'create table p1 partition of p for values from (1) to (2)'),
	(54, 'partition list arity', 'create table p1 partition of p for values in (1)', 'create table p1 partition of p for values in (1, 2)'),
	(55, 'CHECK operator', 'create table t (a int check (a > 0))', 'create table t (a int check (a >= 0))'),
	(56, 'policy column', 'create policy p on t using (a = 1)', 'create policy p on t using (b = 1)'),
	(57, 'SET vs RESET', 'set work_mem = default', 'reset work_mem')
) AS v(n, what, a, b)
ORDER BY n;

-- no warnings about the text being fingerprinted, whatever the settings
SET standard_conforming_strings = off;
SELECT pg_temp.same(E'select ''a\\nb''', 'select ''c''') AS backslash_string;
RESET standard_conforming_strings;

-- errors: the parser's own, with SQLSTATE 42601, reported against the
-- fingerprinted text
SELECT pulse.fingerprint('select * from where a = 1');
SELECT pg_temp.err('select * from where a = 1');
SELECT pg_temp.err('selec * from t');
SELECT pg_temp.err('select ''unterminated');
SELECT pg_temp.err('select 1; select (');
-- a query without any statement is rejected with 22023
SELECT pulse.fingerprint('');
SELECT pg_temp.err('   ');
SELECT pg_temp.err('-- only a comment');
SELECT pg_temp.err(' ; ; ');
