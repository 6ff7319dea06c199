--
-- pulse.normalize(query): the query with its literals replaced by $n,
-- numbered after the highest $n already present, in text order; all other
-- text (whitespace, comments, keyword case) is kept as written.
--

-- err(q): the SQLSTATE and message pulse.normalize(q) fails with
CREATE FUNCTION pg_temp.err(q text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pulse.normalize(q);
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

SELECT pulse.normalize(NULL) IS NULL AS null_in_null_out;

-- nothing to replace
SELECT pulse.normalize('select a, b from t where c is not null order by a');

-- kinds of literals
SELECT pulse.normalize('select 1, 42.5, 1.5e10, .5, -7, - 8, 3 - 4, -x from t');
SELECT pulse.normalize($q$select 'x', E'a\'b\n', $$dollar$$, $tag$ta'g$tag$, B'101', X'1F' from t$q$);
SELECT pulse.normalize($q$select U&'d\0061t', U&'d!0061t' UESCAPE '!', N'national' from t$q$);
SELECT pulse.normalize(E'select ''continued''\n       ''string'', 2');
SELECT pulse.normalize('select ''héllo'', ''wörld'', 3');

-- TRUE, FALSE and NULL literals are replaced; IS NULL / IS TRUE are not literals
SELECT pulse.normalize('select true, false, null from t where a is null and b is true and c = false');

-- casts keep their type; a type prefix is kept
SELECT pulse.normalize('select ''5''::int, cast(''6'' as bigint), ''{1,2}''::int[] from t');
SELECT pulse.normalize('select interval ''1 day'', int ''5'', timestamp with time zone ''2020-01-01'' from t');

-- constants made up by the grammar and type modifiers are not literals
SELECT pulse.normalize('select * from t limit all');
SELECT pulse.normalize('select * from t order by a fetch first row only');
SELECT pulse.normalize('select * from t order by a fetch first 5 rows only');
SELECT pulse.normalize('select extract(year from d), a::varchar(10), b::numeric(10, 2), interval ''1'' day from t');
SELECT pulse.normalize('select substring(s from 2 for 3), normalize(s, nfc), s is nfkd normalized from t');

-- numbering continues after existing parameters
SELECT pulse.normalize('select * from t where a = $2 and b = 5 and c = $1 and d = ''x''');
SELECT pulse.normalize('select * from t where a = $1');

-- lists of two or more literals are squashed as in PostgreSQL 18's
-- pg_stat_statements; one element of each distinct form is kept (casts
-- count); lists with parameters, lists of one, and lists with other
-- expressions are not squashed
SELECT pulse.normalize('select * from t where a in (1, 2, 3) and b = any(array[4, 5]) and c[6] = 7');
SELECT pulse.normalize('select * from t where a in (1) and b not in (''x'', ''y'')');
SELECT pulse.normalize('select * from t where a in (1::int8, 2::int8, ''3''::text, 4)');
SELECT pulse.normalize('select * from t where a in ($1, $2, 3) and b in (1, c, 2)');
SELECT pulse.normalize('select * from t where (a, b) in ((1, 2), (3, 4)) and c = any(array[[1, 2], [3, 4]])');
SELECT pulse.normalize(E'select * from t where a in (1 /* one */,\n 2, -- two\n 3)');

-- type-prefixed literals become casts (the prefix syntax takes no $n)
SELECT pulse.normalize('select date ''2020-01-01'', time ''10:00'', bigint ''5'', pg_catalog.date ''2020-01-01'', double precision ''1.5''');
SELECT pulse.normalize('select interval ''1'' day, interval ''1'' day to hour, interval ''1'' second(3), interval(3) ''1'', interval /* c */ ''2''  year to month');
SELECT pulse.normalize('select char ''x'', character ''y'', char(3) ''z'', varchar ''v'', bit ''101'', bit(3) ''101''');

-- a signed FETCH FIRST count: the grammar takes no $n after the sign
SELECT pulse.normalize('select * from t order by a offset +2 rows fetch first +5 rows only');
SELECT pulse.normalize('select * from t order by a offset -2 rows fetch first -5 rows only');

-- the field of EXTRACT is structure, also when written as a string
SELECT pulse.normalize('select extract(''year'' from d), extract(month from d) from t');

-- CYCLE ... SET c TO v DEFAULT w takes constants only: they are kept
SELECT pulse.normalize('with recursive s(i) as (select 1 union all select i + 1 from s where i < 5) cycle i set c to true default false using p select * from s');

-- comments and whitespace are kept verbatim; literals inside them are not replaced
SELECT pulse.normalize(E'SELECT a /* keep 1 */\n  FROM t   -- and ''2''\n WHERE b = 3');

-- DML
SELECT pulse.normalize('insert into t (a, b) values (1, ''x''), (2, default) on conflict (a) do update set b = excluded.b || ''y'' returning a');
SELECT pulse.normalize('update t set a = a + 1, b = ''z'' where id = 42');
SELECT pulse.normalize('delete from t where id in (select id from u where v < 0.5)');
SELECT pulse.normalize('merge into t using s on t.id = s.id when matched and s.v > 5 then update set v = 1 when not matched then insert values (s.id, 2)');
SELECT pulse.normalize('with x as (select 1 as v) select v, sum(v) filter (where v > 2) over (order by v rows 3 preceding) from x');

-- utility statements: literals are replaced where the grammar takes a $n
-- (expressions); SET values, strings the grammar keeps as names or options,
-- and type modifiers are kept
SELECT pulse.normalize('create table z (a varchar(10) default ''x'', b int check (b > 0))');
SELECT pulse.normalize('set work_mem = ''64MB''');
SELECT pulse.normalize('set local statement_timeout to -1');
SELECT pulse.normalize('explain select * from t where a = 1');
SELECT pulse.normalize('execute p(1, ''x'', true, null)');
SELECT pulse.normalize('create policy p on t using (tenant = 7 and flag = true)');
SELECT pulse.normalize('create table p1 partition of p for values from (1, ''a'') to (10, ''b'')');
SELECT pulse.normalize('alter table t add constraint c check (a in (1, 2, 3)), alter column b set default 5');
SELECT pulse.normalize('create index i on t (a) with (fillfactor = 70) where b > 5');
SELECT pulse.normalize('copy t from ''/tmp/f.csv'' with (format csv, delimiter '','') where a > 1');
SELECT pulse.normalize('comment on table t is ''keep me''');
SELECT pulse.normalize('create function f(a int default 1) returns int language sql as ''select 2''');
SELECT pulse.normalize('create sequence s start 5 increment 2');

-- several statements: one numbering for the whole text
SELECT pulse.normalize('select 1; select ''a'' from t where b = $1; create table z (c int default 7)');

-- normalizing twice changes nothing more
SELECT pulse.normalize(pulse.normalize(q)) = pulse.normalize(q) AS idempotent
FROM (VALUES ('select 1, ''x'', -2 from t where a in (3, 4) limit 5'),
			 ('update t set a = true where b = null'),
			 ('create table z (a int default 1)'),
			 ('select date ''2020-01-01'', interval ''1'' day, N''x'''),
			 ('select * from t where a in (1::int8, 2::int8, ''3''::text, 4)'),
			 ('select * from t fetch first +5 rows only')) AS v(q);

-- and keeps the fingerprint
SELECT pulse.fingerprint(pulse.normalize(q)) = pulse.fingerprint(q) AS same_fingerprint
FROM (VALUES ('select * from t where a = 1 and b in (1, 2, 3)'),
			 ('select date ''2020-01-01'', interval ''1'' day to hour, N''x'', char ''y'''),
			 ('select * from t where a in (1::int8, 2::int8, ''3''::text, 4)'),
			 ('select * from t offset +2 rows fetch first +5 rows only'),
			 ('set work_mem = ''1MB'''),
			 ('create table p1 partition of p for values in (1, 2)')) AS v(q);

-- errors: invalid SQL is the parser's 42601, no statement is 22023
SELECT pulse.normalize('select * from t where');
SELECT pg_temp.err('select * from t where');
SELECT pg_temp.err('');
SELECT pg_temp.err('/* nothing */');
