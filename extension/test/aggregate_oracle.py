#!/usr/bin/python3
"""Differential oracle of pulse's materialized aggregates.

Phase 1 (sequential): random cases.  A case is a source table `src` with
columns of every supported type (smallint, integer, bigint, numeric,
numeric(12,2), real, double precision, text, date, timestamptz; some NOT
NULL), initial rows, a random aggregate query (count(*), count(x), sum, avg,
min, max; with DISTINCT, FILTER, WHERE, HAVING, or a GROUP BY expression
in some cases, so that every refresh path runs: delta maintenance,
recomputed groups, full mode), and random batches of writes: INSERT
(NULL keys, NaN and +-Infinity, extremes), UPDATE moving rows between groups
or changing values (or only their scale: 1.5 -> 1.50), DELETE of ids, of
whole groups and of the current min or max of groups, TRUNCATE, COPY,
INSERT ... ON CONFLICT DO UPDATE, MERGE, in autocommit, in transactions,
rolled back, with SAVEPOINT / ROLLBACK TO.  Some cases draw their values
from small domains, so that groups empty and refill, and equal sums of
different terms are frequent.
After each batch pulse.refresh_aggregate (incremental; full once in a
while) must leave the table equal to the query: EXCEPT ALL both ways, and
the text of every row (so 1.0 against 1.00 is a difference).  A failing case
is shrunk (batches, statements, rows, aggregates, keys) and written out as
a psql script.

Phase 2 (concurrent): 3 writers move amounts and rows between groups in
transactions that keep the totals (some rolled back, some with a savepoint
rolled back) while the background worker refreshes three aggregates of
the table (delta, recomputed groups, full mode) every few milliseconds, and
a reader checks, in every snapshot it takes, that each aggregate's totals
are those every committed state has: a half-applied refresh or a delta
applied twice or lost breaks them.  After the writers stop and the worker
caught up, each aggregate must equal its query exactly.

Usage: aggregate_oracle.py --port P --host H --dbname D --seconds S
       [--seed N] [--case N] [--out FILE]
Seeded: the seed is printed at the start and on failure.  A seed always
draws the same cases in the same order (how many run depends on the time
budget), and --case replays one of them exactly; phase 2's writers are
seeded too, but their interleaving is the scheduler's.  Exit status 1 on a
failure.
"""
import argparse
import collections
import io
import random
import re
import sys
import threading
import time

import psycopg2

# --- the source table ---------------------------------------------------------

# name -> (SQL type, class); class picks the value generator
COLUMNS = [
    ('a', 'smallint', 'int2'),
    ('b', 'integer', 'int4'),
    ('c', 'bigint', 'int8'),
    ('n', 'numeric', 'numeric'),
    ('m', 'numeric(12,2)', 'numeric2'),
    ('r', 'real', 'float4'),
    ('f', 'double precision', 'float8'),
    ('t', 'text', 'text'),
    ('d', 'date', 'date'),
    ('ts', 'timestamptz', 'timestamptz'),
]
COLTYPE = {name: cls for name, _, cls in COLUMNS}
SUMMABLE = ['a', 'b', 'c', 'n', 'm', 'r', 'f']
EXACT = ['a', 'b', 'c', 'n', 'm']
ORDERED_NOT_COLLATABLE = ['a', 'b', 'c', 'n', 'm', 'r', 'f', 'd', 'ts']
KEYABLE = ['a', 'b', 'c', 'n', 'm', 'f', 't', 'd', 'ts']
QUOTED = {'text', 'date', 'timestamptz'}


SMALL = {
    'int2': ['0', '1', '-1', '2', '3'],
    'int4': ['0', '1', '-1', '2', '3'],
    'int8': ['0', '1', '-1', '2', '3'],
    'numeric': ['0', '0.5', '-0.5', '1', '1.5', '0.25', '-0.25', '2', 'NaN', 'Infinity'],
    'numeric2': ['0.00', '0.50', '-0.50', '1.00', '1.50', 'NaN'],
    'float4': ['0', '0.5', '-0.5', '1', '1.5', 'NaN', 'Infinity', '-Infinity'],
    'float8': ['0', '0.5', '-0.5', '1', '1.5', 'NaN', 'Infinity', '-Infinity'],
}


def gen_value(rng, cls, key=False, small=False, zeros=False):
    v = gen_value1(rng, cls, key, small)
    # trailing zeros (1.50 for 1.5): only where the query cannot tell which
    # of two equal values it shows (not a key, not a min or max)
    if zeros and cls == 'numeric' and v[-1].isdigit() and rng.random() < 0.4:
        v += ('' if '.' in v else '.') + '0' * rng.randint(1, 3)
    return v


def gen_value1(rng, cls, key, small):
    """A random value of class cls as its text (None for NULL is not
    produced here).  Keys come from small domains so that groups collide;
    numbers avoid -0 and equal values of different scales (1.5 / 1.50),
    whose choice by min, max or GROUP BY is the scan order's; floats are
    multiples of 1/4 well inside the mantissa, so that their sums do not
    depend on the order of the terms."""
    p = rng.random()
    if small and not key and cls in SMALL:
        return rng.choice(SMALL[cls])
    if cls == 'int2':
        if key:
            return str(rng.randint(-2, 3))
        if p < 0.03:
            return rng.choice(['32767', '-32767'])
        return str(rng.randint(-300, 300))
    if cls == 'int4':
        if key:
            return str(rng.randint(0, 5))
        if p < 0.03:
            return rng.choice(['2147483647', '-2147483647'])
        return str(rng.randint(-100000, 100000))
    if cls == 'int8':
        if key:
            return str(rng.choice([0, 1, 2, 3, 9223372036854775807]))
        if p < 0.04:
            return rng.choice(['9223372036854775807', '-9223372036854775807'])
        return str(rng.randint(-10 ** 12, 10 ** 12))
    if cls == 'numeric':
        if key:
            return rng.choice(['0', '1', '1.5', '2.25', '-3', 'NaN'])
        if p < 0.06:
            return nonfinite(rng, p)
        if p < 0.08:
            return str(rng.randint(1, 9)) + '0' * 25
        return trimmed(rng.randint(-100000, 100000), rng.randint(0, 4))
    if cls == 'numeric2':
        if key:
            return rng.choice(['0.00', '1.50', '2.25', '-3.00'])
        if p < 0.04:
            return 'NaN'
        v = rng.randint(-1000000, 1000000)
        return '%s%d.%02d' % ('-' if v < 0 else '', abs(v) // 100, abs(v) % 100)
    if cls in ('float4', 'float8'):
        if key:
            return rng.choice(['0', '0.5', '1', '-2.25', 'NaN', 'Infinity'])
        if p < 0.06:
            return nonfinite(rng, p)
        v = rng.randint(-4000, 4000)
        if v == 0:
            return '0'
        return repr(v / 4)
    if cls == 'text':
        if key:
            return rng.choice(['', 'a', 'b', 'B', 'ab', 'é'])
        return rng.choice(['', 'a', 'b', 'B', 'ab', 'abc', 'z', 'é', 'Zz'])
    if cls == 'date':
        if p < 0.03 and not key:
            return rng.choice(['infinity', '-infinity'])
        return '2024-01-%02d' % rng.randint(1, 6 if key else 28)
    if cls == 'timestamptz':
        if p < 0.03 and not key:
            return rng.choice(['infinity', '-infinity'])
        return '2024-01-01 %02d:%02d:00+00' % (rng.randint(0, 4 if key else 23),
                                              0 if key else rng.randint(0, 59))
    raise ValueError(cls)


def nonfinite(rng, p):
    """NaN for p < 0.03, else an infinity."""
    return 'NaN' if p < 0.03 else rng.choice(['Infinity', '-Infinity'])


def trimmed(units, scale):
    """units / 10^scale as numeric text without trailing fractional zeros."""
    s = str(abs(units)).rjust(scale + 1, '0')
    whole, frac = (s[:-scale], s[-scale:]) if scale else (s, '')
    frac = frac.rstrip('0')
    text = whole + ('.' + frac if frac else '')
    return ('-' if units < 0 and text.strip('0.') else '') + text


def sql_literal(cls, v):
    if v is None:
        return 'NULL'
    if cls in QUOTED or not (v[0].isdigit() or v[0] == '-' and v[1:2].isdigit()):
        return "'" + v.replace("'", "''") + "'"
    return v


# --- a case -------------------------------------------------------------------

class Case:
    """Everything needed to replay a case: the NOT NULL columns, the initial
    rows, the query and the batches (each a (mode, [statement]) where a
    statement is SQL text or ('copy', columns, rows))."""

    def __init__(self):
        self.notnull = set()
        self.rows = []            # list of dict column -> text/None, with 'id'
        self.keys = []            # [(expression, alias)]
        self.values = []          # [(expression, alias)]
        self.where = None
        self.having = None
        self.batches = []         # [(mode, [stmt], full_refresh)]
        self.path = None          # filled in by run: delta / keys / full

    def query(self):
        sel = ', '.join(e if e == a else '%s AS %s' % (e, a) for e, a in self.keys + self.values)
        q = 'SELECT %s FROM src' % sel
        if self.where:
            q += ' WHERE ' + self.where
        q += ' GROUP BY ' + ', '.join(str(i + 1) for i in range(len(self.keys)))
        if self.having:
            q += ' HAVING ' + self.having
        return q

    def ddl(self):
        cols = ['id bigint PRIMARY KEY']
        for name, typ, _ in COLUMNS:
            cols.append('%s %s%s' % (name, typ, ' NOT NULL' if name in self.notnull else ''))
        return 'CREATE TABLE src (%s)' % ', '.join(cols)


class Generator:
    def __init__(self, rng):
        self.rng = rng

    def value(self, case, col, key=False):
        if col not in case.notnull and self.rng.random() < 0.12:
            return None
        return gen_value(self.rng, COLTYPE[col], key, case.small,
                         case.zeros and col == 'n')

    def row(self, case, rid):
        r = {'id': str(rid)}
        for name, _, _ in COLUMNS:
            r[name] = self.value(case, name, key=name in case.keycols)
        return r

    def new_case(self):
        rng = self.rng
        case = Case()
        # small value domains: equal sums of different terms, ties
        case.small = rng.random() < 0.4
        for name, _, _ in COLUMNS:
            if rng.random() < 0.3:
                case.notnull.add(name)
        shape = rng.choices(['delta', 'any', 'full'], [5, 4, 1])[0]
        nkeys = rng.choices([1, 2, 3], [5, 4, 1])[0]
        keycols = rng.sample(KEYABLE, nkeys)
        case.keycols = set(keycols)
        if shape == 'full':
            expr = rng.choice(['b %% 3', "coalesce(t, 'none')", 'date_trunc(\'hour\', ts)'])
            case.keys = [(expr.replace('%%', '%'), 'k1')] + [(k, k) for k in keycols[1:]]
        else:
            case.keys = [(k, k) for k in keycols]
        vals = []
        if shape == 'delta' or rng.random() < 0.7:
            vals.append('count(*)')
        for _ in range(rng.randint(1, 5)):
            kind = rng.choice(['count', 'sum', 'avg', 'min', 'max'])
            if kind in ('sum', 'avg'):
                # mostly exact types in delta-shaped queries (floats and
                # avg(numeric) are recomputed, see aggregate_analyze.c)
                x = rng.choice(EXACT if shape == 'delta' and rng.random() < 0.85 else SUMMABLE)
                if shape == 'delta' and kind == 'avg' and x in ('n', 'm') and rng.random() < 0.7:
                    kind = 'sum'
            elif kind in ('min', 'max'):
                x = rng.choice(ORDERED_NOT_COLLATABLE + (['t'] if shape != 'delta' else []))
            else:
                x = rng.choice([c for c, _, _ in COLUMNS])
            if shape == 'delta':
                vals.append('%s(%s)' % (kind, x))
                if kind in ('sum', 'avg') and x not in case.notnull and rng.random() < 0.9:
                    vals.append('count(%s)' % x)
                if kind == 'avg' and rng.random() < 0.9:
                    vals.append('sum(%s)' % x)
            else:
                mod = rng.random()
                if mod < 0.2 and kind in ('count', 'sum', 'avg'):
                    vals.append('%s(DISTINCT %s)' % (kind, x))
                elif mod < 0.4:
                    vals.append('%s(%s) FILTER (WHERE %s)' % (kind, x, self.condition()))
                else:
                    vals.append('%s(%s)' % (kind, x))
        if shape != 'delta' and rng.random() < 0.5:
            vals.append('sum(n)')
        seen = []
        for v in vals:
            if v not in seen:
                seen.append(v)
        case.values = [(v, 'v%d' % (i + 1)) for i, v in enumerate(seen)]
        case.zeros = ('n' not in case.keycols and 'n' not in (case.keys[0][0] if shape == 'full' else '')
                      and not any(re.search(r'(min|max)\(n\)', v) for v in seen)
                      and rng.random() < 0.6)
        if shape != 'delta':
            if rng.random() < 0.3:
                case.where = self.condition()
            if rng.random() < 0.25:
                case.having = rng.choice(['count(*) > 1', 'sum(b) > 0', 'min(a) < 100'])
        nrows = rng.randint(0, 60)
        case.next_id = 1
        for _ in range(nrows):
            case.rows.append(self.row(case, case.next_id))
            case.next_id += 1
        return case

    def condition(self):
        return self.rng.choice(['b > 0', 'a IS NOT NULL', "t <> 'a'", 'c % 2 = 0',
                                'n > 1', 'f < 100'])

    # -- statements --

    def ids(self, case, k):
        """Up to k ids of rows inserted so far (some may be gone)."""
        if case.next_id == 1:
            return []
        return sorted({self.rng.randint(1, case.next_id - 1) for _ in range(k)})

    def id_list(self, case, k):
        return ', '.join(str(i) for i in self.ids(case, k)) or 'NULL'

    def assignments(self, case, cols, key=False):
        return ', '.join('%s = %s' % (c, sql_literal(COLTYPE[c], self.value(case, c, key)))
                         for c in cols)

    def values_rows(self, case, k):
        rows = []
        for _ in range(k):
            r = self.row(case, case.next_id)
            case.next_id += 1
            rows.append(r)
        return rows

    def statement(self, case):
        rng = self.rng
        kinds = ['insert', 'insert_many', 'move', 'update', 'update_both', 'delete',
                 'delete_group', 'delete_extreme', 'update_extreme', 'truncate', 'copy',
                 'upsert', 'rescale', 'merge']
        weights = [20, 4, 15, 15, 5, 12, 5, 6, 4, 1.5, 5, 6, 6 if case.zeros else 0, 4]
        kind = rng.choices(kinds, weights)[0]
        allcols = [c for c, _, _ in COLUMNS]
        keycols = [k for k, _ in case.keys if k in COLTYPE] or list(case.keycols)
        if kind in ('insert', 'insert_many'):
            rows = self.values_rows(case, rng.randint(1, 6) if kind == 'insert' else rng.randint(20, 60))
            return ('insert', rows, '')
        if kind == 'move':
            return 'UPDATE src SET %s WHERE id IN (%s)' % (
                self.assignments(case, rng.sample(keycols, rng.randint(1, len(keycols))), key=True),
                self.id_list(case, rng.randint(1, 8)))
        if kind == 'update':
            cols = rng.sample(allcols, rng.randint(1, 3))
            return 'UPDATE src SET %s WHERE id IN (%s)' % (
                self.assignments(case, cols), self.id_list(case, rng.randint(1, 8)))
        if kind == 'update_both':
            cols = rng.sample(allcols, rng.randint(2, 4))
            return 'UPDATE src SET %s WHERE id IN (%s)' % (
                ', '.join('%s = %s' % (c, sql_literal(COLTYPE[c], self.value(case, c, c in case.keycols)))
                          for c in cols),
                self.id_list(case, rng.randint(1, 10)))
        if kind == 'delete':
            return 'DELETE FROM src WHERE id IN (%s)' % self.id_list(case, rng.randint(1, 8))
        if kind == 'delete_group':
            k = rng.choice(keycols)
            return 'DELETE FROM src WHERE %s IS NOT DISTINCT FROM %s' % (
                k, sql_literal(COLTYPE[k], self.value(case, k, key=True)))
        if kind in ('delete_extreme', 'update_extreme'):
            x = rng.choice([c for c in allcols if c != 't'])
            desc = rng.choice(['', ' DESC'])
            grp = ', '.join(keycols)
            sub = ('SELECT DISTINCT ON (%s) id FROM src WHERE %s IS NOT NULL ORDER BY %s, %s%s, id'
                   % (grp, x, grp, x, desc))
            if kind == 'delete_extreme':
                return 'DELETE FROM src WHERE id IN (%s)' % sub
            newval = 'NULL' if x not in case.notnull and rng.random() < 0.5 else \
                sql_literal(COLTYPE[x], gen_value(rng, COLTYPE[x], small=case.small,
                                                  zeros=case.zeros and x == 'n'))
            return 'UPDATE src SET %s = %s WHERE id IN (%s)' % (x, newval, sub)
        if kind == 'truncate':
            return 'TRUNCATE src'
        if kind == 'merge':
            rows = [self.row(case, i) for i in self.ids(case, rng.randint(1, 4))]
            rows += self.values_rows(case, rng.randint(0, 2))
            cols = [c for c, _, _ in COLUMNS]
            vals = ', '.join('(%s)' % ', '.join(
                ['%s::bigint' % r['id']] + ['%s::%s' % (sql_literal(COLTYPE[c], r[c]), typ)
                                             for c, typ, _ in COLUMNS]) for r in rows)
            upd = rng.sample(cols, rng.randint(1, 4))
            return ('MERGE INTO src USING (VALUES %s) v (id, %s) ON src.id = v.id '
                    'WHEN MATCHED AND v.id %% 3 = %d THEN DELETE '
                    'WHEN MATCHED THEN UPDATE SET %s '
                    'WHEN NOT MATCHED THEN INSERT VALUES (v.id, %s)'
                    % (vals, ', '.join(cols), rng.randint(0, 3),
                       ', '.join('%s = v.%s' % (c, c) for c in upd),
                       ', '.join('v.' + c for c in cols)))
        if kind == 'rescale':
            # the same values of n with other scales (1.5 -> 1.50 -> 1.5)
            return 'UPDATE src SET n = %s WHERE id IN (%s)' % (
                rng.choice(['n + 0.00', 'trim_scale(n)', 'n + 0.0']), self.id_list(case, rng.randint(1, 10)))
        if kind == 'copy':
            return ('copy', self.values_rows(case, rng.randint(1, 25)))
        if kind == 'upsert':
            rows = []
            for i in self.ids(case, rng.randint(1, 4)):
                rows.append(self.row(case, i))
            rows += self.values_rows(case, rng.randint(0, 2))
            cols = rng.sample(allcols, rng.randint(1, 4))
            return ('insert', rows, ' ON CONFLICT (id) DO UPDATE SET ' +
                    ', '.join('%s = excluded.%s' % (c, c) for c in cols))
        raise ValueError(kind)

    def batch(self, case):
        rng = self.rng
        mode = rng.choices(['auto', 'commit', 'rollback', 'savepoint'], [5, 3, 1.5, 1.5])[0]
        stmts = [self.statement(case) for _ in range(rng.randint(1, 5))]
        return (mode, stmts, rng.random() < 0.08)


def insert_sql(rows):
    cols = ['id'] + [c for c, _, _ in COLUMNS]
    return 'INSERT INTO src (%s) VALUES %s' % (', '.join(cols), ', '.join(
        '(%s)' % ', '.join(r['id'] if c == 'id' else sql_literal(COLTYPE[c], r[c]) for c in cols)
        for r in rows))


def copy_text(rows):
    cols = ['id'] + [c for c, _, _ in COLUMNS]
    out = io.StringIO()
    for r in rows:
        out.write('\t'.join('\\N' if r[c] is None else r[c] for c in cols) + '\n')
    return out.getvalue()


def render(st):
    """A statement as SQL text (COPY: its command; the rows go separately)."""
    if isinstance(st, tuple) and st[0] == 'insert':
        return insert_sql(st[1]) + st[2]
    if isinstance(st, tuple):
        return 'COPY src (%s) FROM STDIN' % ', '.join(['id'] + [c for c, _, _ in COLUMNS])
    return st


def batch_script(mode, stmts):
    """The batch as (kind, payload) steps: SQL text, or ('copy', rows)."""
    steps = []
    if mode != 'auto':
        steps.append('BEGIN')
    for i, s in enumerate(stmts):
        if mode == 'savepoint' and i == len(stmts) // 2:
            steps.append('SAVEPOINT s1')
        steps.append(s)
    if mode == 'savepoint':
        steps.append('ROLLBACK TO SAVEPOINT s1' if len(stmts) > 0 else 'SELECT 1')
    if mode in ('commit', 'savepoint'):
        steps.append('COMMIT')
    elif mode == 'rollback':
        steps.append('ROLLBACK')
    return steps


# --- running a case -------------------------------------------------------------

class Mismatch(Exception):
    pass


class Runner:
    def __init__(self, conn):
        self.conn = conn
        self.cur = conn.cursor()
        self.stats = collections.Counter()

    def execute(self, sql):
        self.cur.execute(sql)

    def step(self, st, in_txn_failed):
        """Runs one step; returns True when it failed inside a transaction."""
        if in_txn_failed and st not in ('COMMIT', 'ROLLBACK'):
            return True
        try:
            if isinstance(st, tuple) and st[0] == 'copy':
                self.cur.copy_expert(render(st), io.StringIO(copy_text(st[1])))
            elif isinstance(st, tuple):
                self.cur.execute(render(st))
            else:
                if st == 'COMMIT' and in_txn_failed:
                    st = 'ROLLBACK'
                self.cur.execute(st)
            self.stats['statements'] += 1
            return False
        except psycopg2.Error:
            self.stats['statement errors'] += 1
            if self.conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR:
                return True
            return False

    def setup(self, case):
        self.cur.execute("SELECT pulse.drop_aggregate('agg') FROM pulse.aggregates WHERE name = 'agg'")
        self.cur.execute('DROP TABLE IF EXISTS src')
        self.cur.execute(case.ddl())
        if case.rows:
            self.cur.execute(insert_sql(case.rows))
        self.cur.execute("SELECT pulse.create_aggregate('agg', %s, '1 hour')", (case.query(),))
        mode = self.cur.fetchone()[0]
        self.cur.execute("SELECT count(*) FROM pg_attribute a JOIN pulse.aggregate_defs d"
                         " ON a.attrelid = format('pulse.aggregate_%s_log', d.id)::regclass"
                         " WHERE d.relid = 'agg'::regclass AND a.attname = '__pulse_n'")
        delta = self.cur.fetchone()[0] > 0
        case.path = 'delta' if delta else ('keys' if mode == 'incremental' else 'full')

    def compare(self, case):
        q = case.query()
        self.cur.execute('SELECT agg_row::text FROM agg agg_row')
        table = collections.Counter(r[0] for r in self.cur.fetchall())
        self.cur.execute('SELECT q_row::text FROM (%s) q_row' % q)
        query = collections.Counter(r[0] for r in self.cur.fetchall())
        self.cur.execute('SELECT count(*) FROM ((TABLE agg EXCEPT ALL (%s)) UNION ALL '
                         '((%s) EXCEPT ALL TABLE agg)) d' % (q, q))
        nexcept = self.cur.fetchone()[0]
        if table != query or nexcept != 0:
            only_t = sorted((table - query).elements(), key=str)
            only_q = sorted((query - table).elements(), key=str)
            raise Mismatch('aggregate differs from its query (EXCEPT ALL: %d rows; by text: '
                           '%d only in the table, %d only in the query)\n'
                           '  only in the table: %s\n  only in the query: %s'
                           % (nexcept, len(only_t), len(only_q), only_t[:8], only_q[:8]))

    def refresh(self, full):
        self.conn.notices.clear()
        self.cur.execute("SELECT pulse.refresh_aggregate('agg', %s)", (full,))
        res = self.cur.fetchone()[0]
        self.stats['refreshes'] += 1
        if res is None:
            raise Mismatch('refresh failed: %s' % ' '.join(self.conn.notices).strip())

    def run(self, case, upto=None):
        """Replays case; raises Mismatch (with .batch set) on a failure."""
        self.setup(case)
        for i, (mode, stmts, full) in enumerate(case.batches[:upto]):
            failed = False
            for st in batch_script(mode, stmts):
                failed = self.step(st, failed)
            if self.conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                self.cur.execute('ROLLBACK')
            try:
                self.refresh(full)
                self.compare(case)
            except Mismatch as e:
                e.batch = i
                raise

    def fails(self, case, strict=False):
        """The Mismatch case ends with, or None.  An error outside the
        statements (creating the table or the aggregate, a check) is a
        failure when strict, else (a shrunk case that no longer sets up, e.g.
        its query lost its keys) not."""
        try:
            self.run(case)
        except Mismatch as e:
            return e
        except psycopg2.Error as e:
            if self.conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                self.cur.execute('ROLLBACK')
            if strict:
                m = Mismatch('error: %s' % str(e).strip())
                m.batch = -1
                return m
            return None
        return None


def copy_case(case, **changes):
    c = Case()
    c.__dict__.update({k: (list(v) if isinstance(v, list) else v) for k, v in case.__dict__.items()})
    c.batches = [(m, list(s), f) for m, s, f in case.batches]
    c.__dict__.update(changes)
    return c


def with_batch(case, bi, mode=None, stmts=None, full=None):
    """case with batch bi changed."""
    m, st, f = case.batches[bi]
    batch = (m if mode is None else mode, st if stmts is None else stmts, f if full is None else full)
    return copy_case(case, batches=case.batches[:bi] + [batch] + case.batches[bi + 1:])


def stmt_rows(case, bi, si):
    """The rows of statement si of batch bi (INSERT or COPY), or []."""
    if bi >= len(case.batches) or si >= len(case.batches[bi][1]):
        return []
    st = case.batches[bi][1][si]
    return st[1] if isinstance(st, tuple) else []


def with_stmt_rows(case, bi, si, rows):
    st = case.batches[bi][1]
    return with_batch(case, bi, stmts=st[:si] + [(st[si][0], rows) + tuple(st[si][2:])] + st[si + 1:])


def shrink(runner, case, deadline, log):
    """Makes a failing case smaller while it still fails: greedily, one
    piece at a time (batches, statements, transaction modes, full
    refreshes, rows of the initial data and of each INSERT or COPY, the
    values of the columns the query does not read, aggregates, keys, WHERE,
    HAVING), until nothing more can go or the deadline passes.  Returns the
    smaller case and its Mismatch."""
    err = runner.fails(case)
    if err is None:
        return case, None
    case = copy_case(case, batches=case.batches[:err.batch + 1])
    trials = 0

    def attempt(candidate):
        nonlocal case, err, trials
        if time.time() > deadline:
            return False
        trials += 1
        e = runner.fails(candidate)
        if e is not None:
            case = copy_case(candidate, batches=candidate.batches[:e.batch + 1])
            err = e
            return True
        return False

    def drop_each(get, put, keep=1, chunk=1):
        """Tries the case without each element (or chunk of elements) of
        the list get(case), put(case, shorter list) making the candidate;
        keeps at least keep elements.  True when something went."""
        changed = False
        i = 0
        while i < len(get(case)):
            items = get(case)
            if len(items) - chunk >= keep and attempt(put(case, items[:i] + items[i + chunk:])):
                changed = True
            else:
                i += chunk
        return changed

    progress = True
    while progress and time.time() < deadline:
        progress = drop_each(lambda c: c.batches, lambda c, b: copy_case(c, batches=b))
        for bi in range(len(case.batches)):
            def stmts(c, bi=bi):
                return c.batches[bi][1] if bi < len(c.batches) else []
            progress |= drop_each(stmts, lambda c, st, bi=bi: with_batch(c, bi, stmts=st))
            if bi < len(case.batches) and case.batches[bi][0] != 'auto':
                progress |= attempt(with_batch(case, bi, mode='auto'))
            if bi < len(case.batches) and case.batches[bi][2]:
                progress |= attempt(with_batch(case, bi, full=False))
            for si in range(len(stmts(case))):
                progress |= drop_each(lambda c, bi=bi, si=si: stmt_rows(c, bi, si),
                                      lambda c, r, bi=bi, si=si: with_stmt_rows(c, bi, si, r))
        chunk = max(len(case.rows) // 2, 1)
        while chunk >= 1:
            progress |= drop_each(lambda c: c.rows, lambda c, r: copy_case(c, rows=r),
                                  keep=0, chunk=chunk)
            chunk //= 2
        # the values of the columns the query does not read: NULL
        used = set(re.findall(r'\b(%s)\b' % '|'.join(COLTYPE), case.query().split(' FROM ')[0]
                              + ' ' + (case.where or '') + ' ' + (case.having or '')))
        unused = [c for c in COLTYPE if c not in used and c not in case.notnull]

        def blank(r):
            return dict(r, **{c: None for c in unused})

        def blank_st(st):
            return (st[0], [blank(r) for r in st[1]]) + tuple(st[2:]) if isinstance(st, tuple) else st
        cand = copy_case(case, rows=[blank(r) for r in case.rows],
                         batches=[(m, [blank_st(x) for x in st], f) for m, st, f in case.batches])
        if cand.rows != case.rows or cand.batches != case.batches:
            progress |= attempt(cand)
        progress |= drop_each(lambda c: c.values, lambda c, v: copy_case(c, values=v))
        progress |= drop_each(lambda c: c.keys, lambda c, k: copy_case(c, keys=k))
        for attr in ('where', 'having'):
            if getattr(case, attr):
                progress |= attempt(copy_case(case, **{attr: None}))
    log('# shrunk in %d trials' % trials)
    return case, err


def case_script(case, seed, case_seed, err):
    out = io.StringIO()
    w = out.write
    w('-- pulse aggregate oracle: minimal failing case\n')
    w('-- run seed %s, case seed %s (replay: AGG_ORACLE_SEED=%s AGG_ORACLE_CASE=%s)\n'
      % (seed, case_seed, seed, case_seed))
    w('-- refresh path: %s\n' % case.path)
    for line in str(err).splitlines():
        w('-- %s\n' % line)
    w('\\set ON_ERROR_STOP 0\n')
    w('CREATE EXTENSION IF NOT EXISTS pulse;\n')
    w("SELECT pulse.drop_aggregate('agg') FROM pulse.aggregates WHERE name = 'agg';\n")
    w('DROP TABLE IF EXISTS src;\n')
    w(case.ddl() + ';\n')
    if case.rows:
        w(insert_sql(case.rows) + ';\n')
    w("SELECT pulse.create_aggregate('agg', $q$%s$q$, '1 hour');\n" % case.query())
    for i, (mode, stmts, full) in enumerate(case.batches):
        w('-- batch %d (%s)\n' % (i + 1, mode))
        for st in batch_script(mode, stmts):
            if isinstance(st, tuple) and st[0] == 'copy':
                w('%s;\n%s\\.\n' % (render(st), copy_text(st[1])))
            else:
                w(render(st) + ';\n')
        w("SELECT pulse.refresh_aggregate('agg'%s);\n" % (', true' if full else ''))
    q = case.query()
    w('-- rows that differ, by text (none when the aggregate is right)\n')
    w("(SELECT 'only in the table' AS side, agg_row::text AS row FROM agg agg_row\n"
      " EXCEPT ALL SELECT 'only in the table', q_row::text FROM (%s) q_row)\n"
      "UNION ALL\n"
      "(SELECT 'only in the query', q_row::text FROM (%s) q_row\n"
      " EXCEPT ALL SELECT 'only in the query', agg_row::text FROM agg agg_row);\n" % (q, q))
    return out.getvalue()


# --- phase 2: concurrent writers, the worker, a reader ---------------------------

CONC_AGGS = {
    'conc_delta': 'SELECT g, count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi, '
                  'count(w) AS cw, sum(w) AS sw FROM acct GROUP BY g',
    'conc_keys': 'SELECT g, count(*) AS n, sum(v) FILTER (WHERE v IS NOT NULL) AS s, '
                 'sum(w) AS sw, count(DISTINCT v) AS dv FROM acct GROUP BY g',
    'conc_full': 'SELECT g % 3 AS g3, count(*) AS n, sum(v) AS s, sum(w) AS sw '
                 'FROM acct GROUP BY 1',
}


def concurrent_phase(connect, rng, seconds):
    """Returns (failure messages, counters, worker refreshes)."""
    failures = []
    stats = collections.Counter()
    conn = connect()
    cur = conn.cursor()
    nrows = 400
    cur.execute('DROP TABLE IF EXISTS acct CASCADE')
    cur.execute('CREATE TABLE acct (id bigint PRIMARY KEY, g int NOT NULL, v bigint NOT NULL, w numeric)')
    cur.execute('CREATE INDEX ON acct (g)')
    cur.execute('INSERT INTO acct SELECT i, i %% 20, (i * 7919) %% 1000, '
                'CASE WHEN i %% 5 = 0 THEN NULL ELSE round(i / 7.0, i %% 3) END '
                'FROM generate_series(1, %s) i', (nrows,))
    cur.execute('SELECT count(*), sum(v), sum(w) FROM acct')
    invariant = cur.fetchone()
    for name, q in CONC_AGGS.items():
        cur.execute("SELECT pulse.drop_aggregate(%s) FROM pulse.aggregates WHERE name = %s", (name, name))
        cur.execute("SELECT pulse.create_aggregate(%s, %s, '10 milliseconds')", (name, q))
    cur.execute('SELECT coalesce(max(id), 0) FROM pulse.aggregate_runs')
    runs_before = cur.fetchone()[0]
    stop = threading.Event()
    contents = collections.defaultdict(set)   # checksums of what the reader saw
    next_id = [nrows + 1]
    id_lock = threading.Lock()

    def writer(wseed):
        wrng = random.Random(wseed)
        c = connect()
        k = c.cursor()
        while not stop.is_set():
            try:
                k.execute('BEGIN')
                for _ in range(wrng.randint(1, 3)):
                    op = wrng.random()
                    i, j = wrng.randint(1, next_id[0] - 1), wrng.randint(1, next_id[0] - 1)
                    if op < 0.6:
                        # a transfer between two rows, both locked first (a
                        # row deleted meanwhile is skipped: no transfer)
                        k.execute('SELECT id FROM acct WHERE id IN (%s, %s) ORDER BY id FOR UPDATE',
                                  (i, j))
                        if k.rowcount == 2 and i != j:
                            if op < 0.4:
                                d = wrng.randint(-500, 500)
                                k.execute('UPDATE acct SET v = v + CASE WHEN id = %s THEN %s ELSE %s END '
                                          'WHERE id IN (%s, %s)', (i, -d, d, i, j))
                            else:
                                dw = '%d.%s' % (wrng.randint(0, 99), '0123456789'[:wrng.randint(0, 3)])
                                k.execute('UPDATE acct SET w = w + CASE WHEN id = %s THEN -%s::numeric '
                                          'ELSE %s::numeric END WHERE id IN (%s, %s) '
                                          'AND (SELECT count(w) FROM acct WHERE id IN (%s, %s)) = 2',
                                          (i, dw, dw, i, j, i, j))
                    elif op < 0.8:
                        k.execute('UPDATE acct SET g = %s WHERE id = %s', (wrng.randint(0, 24), i))
                    else:
                        with id_lock:
                            nid = next_id[0]
                            next_id[0] += 1
                        k.execute('WITH d AS (DELETE FROM acct WHERE id = %s RETURNING v, w) '
                                  'INSERT INTO acct SELECT %s, %s, v, w FROM d',
                                  (i, nid, wrng.randint(0, 24)))
                    if wrng.random() < 0.15:
                        k.execute('SAVEPOINT s')
                        k.execute('UPDATE acct SET v = v + 1000000, w = w + 1 WHERE id = %s', (j,))
                        k.execute('ROLLBACK TO SAVEPOINT s')
                if wrng.random() < 0.15:
                    k.execute('ROLLBACK')
                    stats['writer rollbacks'] += 1
                else:
                    k.execute('COMMIT')
                    stats['writer commits'] += 1
            except psycopg2.Error:
                # a deadlock: this transaction did nothing
                k.execute('ROLLBACK')
                stats['writer errors'] += 1
        c.close()

    def reader():
        c = connect()
        k = c.cursor()
        while not stop.is_set():
            for name in CONC_AGGS:
                k.execute('SELECT coalesce(sum(n), 0), coalesce(sum(s), 0), sum(sw), '
                          'count(*) FILTER (WHERE n <= 0), sum(hashtext(agg_row::text)) '
                          'FROM %s agg_row' % name)
                n, s, sw, empty, checksum = k.fetchone()
                stats['reads'] += 1
                contents[name].add(checksum)
                if (n, s, sw) != tuple(invariant) or empty:
                    failures.append('reader saw %s with totals count=%s sum(v)=%s sum(w)=%s and %s '
                                    'empty groups; every committed state has %s'
                                    % (name, n, s, sw, empty, tuple(invariant)))
                    stop.set()
                    return
        c.close()

    threads = [threading.Thread(target=writer, args=(rng.randrange(1 << 30),)) for _ in range(3)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    # quiescence: the worker applies what is left
    deadline = time.time() + 60
    while time.time() < deadline:
        cur.execute("SELECT coalesce(sum(pending_changes), 0) FROM pulse.aggregates WHERE name LIKE 'conc\\_%'")
        if cur.fetchone()[0] == 0:
            break
        time.sleep(0.1)
    else:
        failures.append('the worker did not apply the pending changes within 60 s')
    for name, q in CONC_AGGS.items():
        cur.execute('SELECT agg_row::text FROM %s agg_row' % name)
        table = collections.Counter(r[0] for r in cur.fetchall())
        cur.execute('SELECT q_row::text FROM (%s) q_row' % q)
        query = collections.Counter(r[0] for r in cur.fetchall())
        if table != query:
            failures.append('after quiescence %s differs from its query: only in the table %s, '
                            'only in the query %s' % (name, sorted((table - query).elements())[:5],
                                                      sorted((query - table).elements())[:5]))
    cur.execute("SELECT coalesce(max(id), 0) - %s, count(*) FILTER (WHERE error IS NOT NULL) "
                "FROM pulse.aggregate_runs WHERE aggregate LIKE 'conc\\_%%'", (runs_before,))
    runs, errors = cur.fetchone()
    if errors:
        cur.execute("SELECT DISTINCT error FROM pulse.aggregate_runs WHERE aggregate LIKE 'conc\\_%' "
                    "AND error IS NOT NULL")
        failures.append('worker refreshes failed: %s' % [r[0] for r in cur.fetchall()])
    stats['contents'] = min(len(v) for v in contents.values()) if contents else 0
    conn.close()
    return failures, stats, runs


# --- main ---------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', required=True)
    ap.add_argument('--port', required=True)
    ap.add_argument('--dbname', required=True)
    ap.add_argument('--user', default='postgres')
    ap.add_argument('--seconds', type=float, default=15)
    ap.add_argument('--seed', type=int)
    ap.add_argument('--case', type=int, help='replay this case seed only')
    ap.add_argument('--out', default='aggregate_oracle_case.sql')
    ap.add_argument('--shrink-seconds', type=float, default=90)
    args = ap.parse_args()

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    print('# aggregate oracle: seed %d (replay with AGG_ORACLE_SEED=%d)' % (seed, seed), flush=True)
    rng = random.Random(seed)

    def connect():
        c = psycopg2.connect(host=args.host, port=args.port, dbname=args.dbname, user=args.user)
        c.autocommit = True
        c.cursor().execute("SET client_min_messages = warning; SET TimeZone = 'UTC'; "
                           "SET extra_float_digits = 1")
        return c

    def log(msg):
        print(msg, flush=True)

    conn = connect()
    runner = Runner(conn)
    start = time.time()
    budget1 = args.seconds * 0.7 if args.case is None else 0
    paths = collections.Counter()
    ncases = nbatches = 0
    failed = False
    case_seeds = [args.case] if args.case is not None else None
    while True:
        if case_seeds is not None:
            if not case_seeds:
                break
            case_seed = case_seeds.pop()
        else:
            if time.time() - start > budget1 and ncases > 0:
                break
            case_seed = rng.randrange(1 << 31)
        crng = random.Random(case_seed)
        gen = Generator(crng)
        case = gen.new_case()
        nb = crng.randint(3, 12)
        case.batches = [gen.batch(case) for _ in range(nb)]
        err = runner.fails(case, strict=True)
        ncases += 1
        nbatches += nb
        paths[case.path] += 1
        if err is not None:
            failed = True
            log('not ok 1 - case %d (seed %d, case seed %d, refresh path %s) fails at batch %d:'
                % (ncases, seed, case_seed, case.path, err.batch + 1))
            for line in str(err).splitlines():
                log('#   ' + line)
            small, serr = shrink(runner, case, time.time() + args.shrink_seconds, log)
            script = case_script(small, seed, case_seed, serr or err)
            with open(args.out, 'w') as fh:
                fh.write(script)
            log('# minimal failing case written to %s:' % args.out)
            for line in script.splitlines():
                log('#   ' + line)
            break
    if not failed:
        log('ok 1 - %d random cases (%s), %d batches, %d statements (%d failed as generated), '
            '%d refreshes in %.0f s: every refresh equals the query'
            % (ncases, ', '.join('%s %d' % kv for kv in sorted(paths.items())), nbatches,
               runner.stats['statements'], runner.stats['statement errors'],
               runner.stats['refreshes'], time.time() - start))
    conn.close()
    if failed or args.case is not None:
        print('# seed %d' % seed)
        print('%d passed, %d failed' % (0 if failed else 1, 1 if failed else 0))
        return 1 if failed else 0

    conc_seconds = max(args.seconds - (time.time() - start), 4)
    conc_start = time.time()
    failures, stats, runs = concurrent_phase(connect, rng, conc_seconds)
    stats['elapsed'] = time.time() - conc_start
    if failures:
        log('not ok 2 - concurrent phase')
        for f in failures:
            log('#   ' + f)
        print('# seed %d' % seed)
        print('1 passed, 1 failed')
        return 1
    log('ok 2 - concurrent phase: %.0f s of writes (%.0f s in all), 3 writers (%d commits, %d rollbacks, %d deadlocks), '
        '%d worker refreshes; %d reads, all with the totals of a committed state (at least %d '
        'different contents per aggregate); all equal to their queries after quiescence'
        % (conc_seconds, stats['elapsed'], stats['writer commits'], stats['writer rollbacks'],
           stats['writer errors'], runs, stats['reads'], stats['contents']))
    print('2 passed, 0 failed')
    return 0


if __name__ == '__main__':
    sys.exit(main())
